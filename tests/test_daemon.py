"""The daemon's pipeline: sources, gate, smoothing, counters, faults, signals, the notify protocol."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from edge.audio import load_audio
from edge.config import GateSettings, Settings, SmoothingSettings
from edge.daemon import Daemon
from edge.errors import EXIT_CONFIG, TemporaryFault
from edge.features import FeatureParams, Frontend, file_windows
from edge.gate import Gate
from edge.model import EmotionModel
from edge.notify import Notifier
from edge.schema import SILENCE, UNCERTAIN
from edge.smoothing import Smoother
from edge.sources import FileSource, GeneratorSource

from conftest import (
    REPO,
    SR,
    TINY_FLOAT,
    TINY_INT8,
    ravdess_clips,
    readline_within,
    run_moodmic,
    sigterm,
    speechlike,
    start_moodmic,
    write,
)

LABELS = ("a", "b", "c")


class Recorder:
    """Stands in for the MQTT publisher (tested on its own against a real broker)."""

    def __init__(self):
        self.states, self.events, self.health, self.closed = [], [], [], False

    def start(self): pass
    def wait_connected(self, timeout): return True
    def publish_state(self, msg): self.states.append(msg)
    def publish_event(self, payload): self.events.append(payload)
    def publish_health(self, payload): self.health.append(payload)
    def check(self): pass
    def stats(self): return {"connected": True, "queued": 0, "acked": len(self.states), "dropped": 0, "reconnects": 0}
    def close(self, timeout=2.0): self.closed = True


def settings(**sections) -> Settings:
    s = Settings()
    return replace(s, **{name: replace(getattr(s, name), **values) for name, values in sections.items()})


def chunks(audio, size=1600):
    return [audio[i : i + size] for i in range(0, len(audio), size)]


# -- smoothing ---------------------------------------------------------------------------------
def test_smoother_needs_confidence_and_hysteresis_to_change():
    sm = Smoother(LABELS, SmoothingSettings(method="mean", windows=1, min_confidence=0.5, hysteresis=0.2),
                  GateSettings(silence_after=2))
    assert not sm.inferred(np.array([0.4, 0.3, 0.3]))  # below min_confidence: no state yet
    assert sm.label is None
    assert sm.inferred(np.array([0.6, 0.2, 0.2])) and sm.label == "a"
    assert not sm.inferred(np.array([0.45, 0.55, 0.0]))  # b leads by 0.1 < hysteresis
    assert sm.label == "a"
    assert sm.inferred(np.array([0.2, 0.7, 0.1])) and sm.label == "b" and sm.confidence == pytest.approx(0.7)
    assert not sm.gated() and sm.gated() and sm.label == SILENCE  # silence after 2 gated windows
    assert sm.probabilities() is None and sm.confidence is None
    assert sm.inferred(np.array([0.1, 0.1, 0.8])) and sm.label == "c"  # fresh start after silence


def test_smoother_says_uncertain_below_the_abstention_threshold_instead_of_holding():
    sm = Smoother(LABELS, SmoothingSettings(method="mean", windows=1, min_confidence=0.4, hysteresis=0.1),
                  GateSettings(silence_after=2), abstain_below=0.5)
    assert sm.inferred(np.array([0.7, 0.2, 0.1])) and sm.label == "a"
    assert sm.inferred(np.array([0.45, 0.35, 0.2])) and sm.label == UNCERTAIN  # held "a" without a threshold
    assert sm.confidence == pytest.approx(0.45) and sm.probabilities() == {"a": 0.45, "b": 0.35, "c": 0.2}
    assert not sm.inferred(np.array([0.3, 0.4, 0.3]))  # still uncertain: no change, no new state
    assert sm.inferred(np.array([0.1, 0.8, 0.1])) and sm.label == "b"  # sure again: straight to the emotion
    assert not sm.gated() and sm.gated() and sm.label == SILENCE
    holding = Smoother(LABELS, SmoothingSettings(method="mean", windows=1, min_confidence=0.4), GateSettings())
    assert holding.inferred(np.array([0.7, 0.2, 0.1])) and not holding.inferred(np.array([0.45, 0.35, 0.2]))
    assert holding.label == "a"  # no threshold (0): the last emotion is held, as before


def test_a_bundles_abstention_threshold_reaches_predict_and_the_daemon(tmp_path):
    """The bundle's threshold marks predict's result uncertain (the label stays the top emotion) and makes
    the daemon publish `uncertain`; smoothing.uncertain: false keeps the old holding behaviour."""
    from edge.bundle import META_FILE

    unsure = tmp_path / "unsure"
    shutil.copytree(TINY_INT8, unsure)
    meta = json.loads((unsure / META_FILE).read_text())
    meta["output"]["abstain_below"] = 0.999  # the tiny model is never that sure
    (unsure / META_FILE).write_text(json.dumps(meta))
    wav = write(tmp_path / "s.wav", speechlike(6.0, seed=3))
    plain, marked = (json.loads(run_moodmic("predict", "--model", str(m), str(wav)).stdout) for m in (TINY_INT8, unsure))
    assert plain["uncertain"] is False and marked["uncertain"] is True
    assert marked["label"] == plain["label"] and marked["confidence"] == plain["confidence"]
    cfg = tmp_path / "c.yaml"

    def states(uncertain: bool) -> list[str]:
        cfg.write_text(f"gate:\n  enabled: false\nsmoothing:\n  min_confidence: 0.0\n  uncertain: {str(uncertain).lower()}\n")
        out = run_moodmic("run", "--config", str(cfg), "--model", str(unsure), "--source", f"file:{wav}", "--fast",
                          "--mqtt", "off")
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["label"] for line in out.stdout.splitlines()]

    assert set(states(True)) == {UNCERTAIN}
    assert UNCERTAIN not in states(False)


def test_ema_and_mean_smoothing():
    ema = Smoother(LABELS, SmoothingSettings(method="ema", windows=3, min_confidence=0.0), GateSettings())
    ema.inferred(np.array([1.0, 0.0, 0.0]))
    ema.inferred(np.array([0.0, 1.0, 0.0]))
    assert np.allclose(ema.smoothed, [0.5, 0.5, 0.0])  # alpha = 2 / (3 + 1)
    mean = Smoother(LABELS, SmoothingSettings(method="mean", windows=2, min_confidence=0.0), GateSettings())
    for p in ([1, 0, 0], [0, 1, 0], [0, 0, 1]):
        mean.inferred(np.array(p, float))
    assert np.allclose(mean.smoothed, [0, 0.5, 0.5])  # only the last 2 windows


def test_the_span_is_the_configs_else_the_bundles_else_three(tmp_path):
    """A bundle's threshold was chosen under one EMA span (output.smoothing_windows); smoothing.windows: 0 (the
    default) takes it, an explicit value wins, and a bundle naming none gets the span of every earlier bundle."""
    from edge.bundle import META_FILE
    from edge.daemon import StdoutPublisher

    spanned = tmp_path / "spanned"
    shutil.copytree(TINY_INT8, spanned)
    meta = json.loads((spanned / META_FILE).read_text())
    meta["output"]["smoothing_windows"] = 5
    (spanned / META_FILE).write_text(json.dumps(meta))

    def span(bundle, windows: int) -> int:
        model = EmotionModel.load(bundle)
        source = GeneratorSource(iter(()), model.bundle.features.sample_rate, model.bundle.features.sample_rate)
        return Daemon(Settings(smoothing=SmoothingSettings(windows=windows)), model, source, StdoutPublisher()).smoother.windows

    assert (span(spanned, 0), span(spanned, 2), span(TINY_INT8, 0), span(TINY_INT8, 7)) == (5, 2, 3, 7)
    five = Smoother(LABELS, SmoothingSettings(method="ema", min_confidence=0.0), GateSettings(), bundle_windows=5)
    five.inferred(np.array([1.0, 0.0, 0.0]))
    five.inferred(np.array([0.0, 1.0, 0.0]))
    assert np.allclose(five.smoothed, [2 / 3, 1 / 3, 0.0])  # alpha = 2 / (5 + 1)


# -- the gate ----------------------------------------------------------------------------------
def non_speech(seconds=8.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    notes = [220, 247, 262, 294, 330, 349, 392, 440]
    half = t[: SR // 2]
    melody = np.concatenate([sum(np.sin(2 * np.pi * k * notes[j % 8] * half) / k for k in range(1, 6)) * np.exp(-3 * half)
                             for j in range(int(seconds * 2))])[:n]
    drums = np.zeros(n)
    for k in range(0, n - 800, SR // 4):
        drums[k : k + 800] += rng.standard_normal(800) * np.exp(-np.arange(800) / 100)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), n)
    return {
        "white noise": rng.standard_normal(n),
        "pink noise": pink,
        "vacuum cleaner": np.convolve(rng.standard_normal(n), np.ones(5) / 5, "same") + 0.3 * np.sin(2 * np.pi * 120 * t),
        "tone": np.sin(2 * np.pi * 440 * t),
        "sweep": np.sin(2 * np.pi * (100 * t + 200 * t**2)),
        "chords": sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392)),
        "melody": melody,
        "drums": drums,
        "music": melody + 0.5 * drums,
    }


def test_gate_keeps_noise_tones_and_music_from_the_model():
    p = FeatureParams()
    fe, gate = Frontend(p), Gate(GateSettings(), p)
    passed = total = 0
    for signal_ in non_speech().values():
        for level in (0.03, 0.1, 0.3, 0.9):
            audio = (level * signal_ / np.max(np.abs(signal_))).astype(np.float32)
            for w in file_windows(fe, audio, 50):
                passed += gate.check(w).speech
                total += 1
    rate = passed / total
    print(f"gate: {passed}/{total} non-speech windows ({rate:.1%}) given to the model")
    assert rate <= 0.25


def test_gate_passes_real_speech_at_all_levels(ravdess):
    p = FeatureParams()
    fe, gate = Frontend(p), Gate(GateSettings(), p)
    clips = [c for c in ravdess_clips(ravdess, 400, seed=5) if "/speech/" in str(c)][:120]
    results = [gate.check(w) for c in clips for w in file_windows(fe, load_audio(c, SR), 50)]
    rate = np.mean([r.speech for r in results])
    print(f"gate: {rate:.1%} of {len(results)} RAVDESS speech windows given to the model")
    assert rate >= 0.90
    off = Gate(GateSettings(enabled=False), p)
    assert all(off.check(w).speech for w in file_windows(fe, np.zeros(SR * 3, np.float32), 50))


# -- the loop ----------------------------------------------------------------------------------
def run_daemon(source, s=None, raw=False, model=TINY_FLOAT, out=None):
    rec = Recorder()
    daemon = Daemon(s or settings(), EmotionModel.load(model), source, rec, raw=raw, out=out or sys.stdout)
    return daemon, rec, daemon.run()


def test_every_window_is_counted_and_states_carry_the_schema():
    speech, quiet = speechlike(6.0, seed=1), np.full(5 * SR, 1e-4, np.float32)
    audio = np.concatenate([speech, quiet, speechlike(6.0, seed=2)])
    s = settings(smoothing={"min_confidence": 0.0, "hysteresis": 0.0}, gate={"silence_after": 2, "vad": False})
    daemon, rec, code = run_daemon(GeneratorSource(chunks(audio), SR, SR), s)
    c = daemon.counters
    assert code == 0 and rec.closed
    assert c.consumed == c.gated + c.inferred == (len(audio) - FeatureParams().window_samples) // SR + 1
    assert c.gated >= 2 and SILENCE in [m.label for m in rec.states]
    silence = next(m for m in rec.states if m.label == SILENCE)
    assert silence.probabilities is None and silence.confidence is None
    first = rec.states[0].to_dict()
    assert set(first) == {"label", "confidence", "probabilities", "seq", "boot_id", "window_start", "window_end",
                          "rms_dbfs", "model_sha"}
    assert [m.seq for m in rec.states] == list(range(1, len(rec.states) + 1))
    assert first["window_end"].endswith("Z") and first["model_sha"] == daemon.model.bundle.tflite_sha256
    assert len(rec.events) == c.events == len(rec.states)  # no heartbeat within a fast replay
    assert rec.events[0]["event_type"] == first["label"] and rec.events[0]["previous"] is None
    final = rec.health[-1]
    assert final["consumed"] == final["gated"] + final["inferred"] and final["fault"] is None


def test_raw_run_equals_predict_windows(tmp_path):
    wav = write(tmp_path / "a.wav", speechlike(7.3, sr=44100, seed=3), 44100)
    raw = run_moodmic("run", "--model", str(TINY_INT8), "--source", f"file:{wav}", "--fast", "--mqtt", "off", "--raw")
    predicted = run_moodmic("predict", "--windows", "--model", str(TINY_INT8), str(wav))
    assert raw.returncode == 0, raw.stderr
    windows = [json.loads(line) for line in raw.stdout.splitlines()]
    assert windows == json.loads(predicted.stdout)["per_window"] and len(windows) == 5


def test_raw_run_equals_predict_on_a_real_clip(ravdess):
    clip = ravdess_clips(ravdess, 1, seed=9)[0]
    raw = run_moodmic("run", "--model", str(TINY_INT8), "--source", f"file:{clip}", "--fast", "--mqtt", "off", "--raw")
    predicted = run_moodmic("predict", "--windows", "--model", str(TINY_INT8), str(clip))
    assert [json.loads(x) for x in raw.stdout.splitlines()] == json.loads(predicted.stdout)["per_window"]


def test_bad_samples_are_silenced_and_counted():
    audio = speechlike(4.0)
    audio[1000:1010] = np.nan
    audio[5000] = np.inf
    daemon, _, code = run_daemon(GeneratorSource(chunks(audio), SR, SR))
    assert code == 0 and daemon.counters.bad_samples == 11 and daemon.counters.consumed == 2


def test_a_stalled_microphone_is_a_fault():
    stalled = [speechlike(1.0)] + [None] * 100  # reads that time out, like a mic whose callbacks stopped
    with pytest.raises(TemporaryFault, match="no audio from .* for 5.0 s"):
        run_daemon(GeneratorSource(stalled, SR, SR, live=True), settings(audio={"dead_after_seconds": 5.0}))
    # a finite source that is merely slow is not a dead device
    daemon, _, code = run_daemon(GeneratorSource([speechlike(3.0)] + [None] * 100, SR, SR, live=False))
    assert code == 0


def test_exact_zeros_are_a_dead_microphone_but_quiet_noise_is_not():
    zeros = [speechlike(2.0)] + [np.zeros(SR // 10, np.float32)] * 60
    with pytest.raises(TemporaryFault, match="exact digital silence for 5.0 s"):
        run_daemon(GeneratorSource(zeros, SR, SR, live=True))
    # a recording may hold digital silence (an edited file): not a microphone to diagnose
    assert run_daemon(GeneratorSource(zeros, SR, SR, live=False))[2] == 0
    hiss = np.random.default_rng(0).normal(0, 1e-4, 8 * SR).astype(np.float32)
    assert run_daemon(GeneratorSource(chunks(hiss), SR, SR))[2] == 0


def test_a_replayed_file_of_digital_silence_is_silence_and_bad_config_78(tmp_path):
    """Exit 75, "the microphone is dead or muted", is for microphones (test above), not for a file."""
    zeros = write(tmp_path / "zeros.wav", np.zeros(7 * SR, np.float32))
    proc = run_moodmic("run", "--model", str(TINY_INT8), "--source", f"file:{zeros}", "--fast", "--mqtt", "off")
    assert proc.returncode == 0 and "microphone" not in proc.stderr, proc.stderr
    assert {json.loads(line)["label"] for line in proc.stdout.splitlines()} == {SILENCE}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gate:\n  min_rms: -50\n")
    proc = run_moodmic("run", "--config", str(cfg), "--source", f"file:{zeros}", "--mqtt", "off")
    assert proc.returncode == EXIT_CONFIG and "gate.min_rms: unknown key (did you mean 'gate.min_rms_dbfs'?)" in proc.stderr
    proc = run_moodmic("run", "--model", str(TINY_INT8), "--source", "speaker", "--mqtt", "off")
    assert proc.returncode == EXIT_CONFIG and "audio source 'speaker' is unknown" in proc.stderr


def test_file_source_streams_the_same_audio_as_loading_it(tmp_path):
    wav = write(tmp_path / "a.wav", speechlike(3.3, sr=48000, seed=4), 48000)
    src = FileSource(wav, SR, block_seconds=0.1, realtime=False)
    got = []
    while True:
        try:
            chunk = src.read(0.1)
        except Exception:
            break
        got.append(chunk)
    streamed, whole = np.concatenate(got), load_audio(wav, SR)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[200 : n - 200] - whole[200 : n - 200])) < 1e-3


def test_sigterm_stops_promptly_with_exit_0(tmp_path):
    wav = write(tmp_path / "long.wav", speechlike(60.0))
    proc = start_moodmic("run", "--model", str(TINY_INT8), "--source", f"file:{wav}", "--mqtt", "off")
    first = readline_within(proc.stdout, 30)  # its first state: real-time replay, so it is mid-file now
    assert first.startswith("{"), first
    seconds, err = sigterm(proc)
    assert proc.returncode == 0, err
    assert seconds < 2.0
    assert "health:" in err


def test_notify_protocol_ready_watchdog_and_no_ping_while_stalled(tmp_path, monkeypatch):
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # ping every 10 ms while windows flow
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    def slow(audio):
        for c in chunks(audio, 3200):
            time.sleep(0.02)  # the scenario: audio arrives paced, so windows flow while the watchdog ticks
            yield c
        for _ in range(8):  # then a stall: reads that return nothing
            yield None

    daemon = Daemon(settings(), EmotionModel.load(TINY_FLOAT), GeneratorSource(slow(speechlike(8.0)), SR, SR),
                    Recorder(), notifier=Notifier())
    assert daemon.run() == 0
    messages = []
    while True:
        try:
            messages.append(server.recv(4096).decode())
        except TimeoutError:
            break
    ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
    pings = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    assert pings and min(pings) > ready
    assert messages[-1] == "STOPPING=1"
    assert 2 <= len(pings) <= daemon.counters.consumed  # pings only ever follow consumed windows


WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def files_opened_for_writing(trace: str) -> list[str]:
    """Paths that open/openat/creat calls in an `strace -f` log opened with a write flag (and succeeded)."""
    import re

    paths = []
    for line in trace.splitlines():
        m = re.search(r'(open|openat|creat)\((?:AT_FDCWD|\d+, )?,? ?"([^"]+)", ([A-Z_|]+)', line)
        if m and "= -1" not in line and (m.group(1) == "creat" or any(f in m.group(3) for f in WRITE_FLAGS)):
            paths.append(m.group(2))
    return paths


def test_run_writes_no_file_checked_with_strace(tmp_path, ravdess):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    clip = ravdess_clips(ravdess, 1, seed=3)[0]
    trace = tmp_path / "trace.txt"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,creat", "-o", str(trace), sys.executable,
                           "-m", "edge.cli", "run", "--model", str(TINY_INT8), "--source", f"file:{clip}", "--fast",
                           "--mqtt", "off"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # .pyc caches are the installer's job
    assert proc.returncode == 0, proc.stderr
    log = trace.read_text()
    assert log.count("openat(") > 50  # strace really saw the run (the model, the audio, the libraries)
    assert str(clip) in log
    assert files_opened_for_writing(log) == []
    # the parser does see writes when there are some
    assert files_opened_for_writing('123 openat(AT_FDCWD, "/x/spool.jsonl", O_WRONLY|O_CREAT|O_TRUNC, 0600) = 3') \
        == ["/x/spool.jsonl"]


def test_readme_documents_every_key_of_the_health_message():
    import re

    daemon, _, _ = run_daemon(GeneratorSource(chunks(speechlike(3.0)), SR, SR))
    text = (REPO / "README.md").read_text()
    section = text[text.index("Health message keys:"):]
    section = section[: section.index("\n\n")]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    missing = set(daemon.health()) - documented
    assert not missing, f"README's health keys lack {sorted(missing)}"
