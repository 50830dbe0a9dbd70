"""The real capture path: sounddevice -> PortAudio -> ALSA -> PulseAudio, fed a known recording.

PulseAudio runs as a plain process with a pipe source (../shared/SYSTEMS.md): what we write into
its FIFO is what the microphone "hears", paced by the writer. The daemon reads it with
`--source mic` exactly as on a Pi, at the device's own rate (44.1 kHz here), resampling to 16 kHz.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY_FLOAT, readline_within, run_moodmic, speechlike, wait_until, write

PROB_TOLERANCE = 0.02  # the device path resamples twice (16 -> 44.1 -> 16 kHz)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if not shutil.which("pulseaudio") or not shutil.which("pactl"):
        pytest.skip("pulseaudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    root = tmp_path_factory.mktemp("pulse")
    (root / "home").mkdir()
    (root / "run").mkdir()
    env = {**os.environ, "HOME": str(root / "home"), "XDG_RUNTIME_DIR": str(root / "run"),
           "PULSE_SERVER": f"unix:{root}/native"}
    server = subprocess.Popen(["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "-L",
                               f"module-native-protocol-unix auth-anonymous=1 socket={root}/native"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fifo = root / "src.fifo"
    load = ["pactl", "load-module", "module-pipe-source", "source_name=wavsrc", f"file={fifo}", "format=s16le",
            "rate=16000", "channels=1"]
    if not wait_until(lambda: subprocess.run(load, env=env, capture_output=True, timeout=10).returncode == 0, 5, every=0.1):
        server.kill()
        pytest.skip("pulseaudio did not start here")
    yield {**env, "PULSE_SOURCE": "wavsrc"}, fifo
    server.kill()
    server.wait()


def feed(fifo, pcm: bytes, within: float = 30.0) -> None:
    """Write 16-kHz 16-bit `pcm` into a pipe source's FIFO in 0.1-s blocks at the pace of real time, as a
    microphone delivers it: PulseAudio passes on at once whatever the FIFO holds, and a burst of seconds can
    overrun the daemon's record buffer (audio lost, windows missing) on a busy machine. PulseAudio reads the
    FIFO only while a client records from it, so a plain blocking write hangs for ever once the daemon has
    gone: fail instead, naming it."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # PulseAudio holds the FIFO open, so this never blocks
    block = 16000 * 2 // 10
    try:
        start = time.monotonic()
        deadline = start + len(pcm) / (2 * 16000) + within
        for k in range(0, len(pcm), block):
            time.sleep(max(0.0, start + k / (2 * 16000) - time.monotonic()))
            rest = memoryview(pcm)[k : k + block]
            while rest:
                if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                    raise AssertionError(f"PulseAudio stopped reading {fifo}: {len(pcm) - k} of {len(pcm)} bytes unwritten")
                try:
                    rest = rest[os.write(fd, rest):]
                except BlockingIOError:  # the pipe filled between select and write
                    continue
    finally:
        os.close(fd)


def recording(env: dict) -> bool:
    """A client has a record stream open on the PulseAudio server: the daemon's microphone is listening."""
    out = subprocess.run(["pactl", "list", "short", "source-outputs"], env=env, capture_output=True, text=True, timeout=10)
    return out.returncode == 0 and bool(out.stdout.strip())


def test_devices_lists_the_capture_device(pulse):
    env, _ = pulse
    proc = run_moodmic("devices", env=env)
    assert proc.returncode == 0 and "pulse" in proc.stdout


def test_mic_path_gives_the_windows_of_the_file_path(pulse, tmp_path):
    env, fifo = pulse
    audio = speechlike(6.5, seed=11)
    wav = write(tmp_path / "known.wav", audio)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    mic = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--model", str(TINY_FLOAT), "--source", "mic",
                            "--device", "pulse", "--mqtt", "off", "--raw"], cwd=REPO, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the stream is open and waiting on the pipe
    assert wait_until(lambda: recording(env) or mic.poll() is not None, 30) and mic.poll() is None, mic.communicate()
    feed(fifo, pcm)
    out, err = mic.communicate(timeout=30)  # after the recording, the source runs dry: a dead microphone
    assert mic.returncode == 75 and "no audio from microphone" in err, err
    heard = [json.loads(line) for line in out.splitlines()]
    reference = [json.loads(line) for line in run_moodmic("run", "--model", str(TINY_FLOAT), "--source", f"file:{wav}",
                                                           "--fast", "--mqtt", "off", "--raw").stdout.splitlines()]
    assert len(heard) == len(reference) == 4
    for h, r in zip(heard, reference):
        assert h["start_s"] == r["start_s"]
        diff = max(abs(h["probabilities"][k] - r["probabilities"][k]) for k in r["probabilities"])
        assert diff < PROB_TOLERANCE
        top2 = sorted(r["probabilities"].values())[-2:]
        if top2[1] - top2[0] > 2 * PROB_TOLERANCE:  # a near-tie may flip; anything clearer may not
            assert h["label"] == r["label"]
        assert abs(h["rms_dbfs"] - r["rms_dbfs"]) < 0.5


def test_a_device_vanishing_mid_stream_is_a_dead_microphone(pulse, tmp_path):
    """Unplugging: the capture device disappears while the daemon reads it -> exit 75 (systemd restarts)."""
    env, _ = pulse
    fifo = tmp_path / "gone.fifo"
    module = subprocess.run(["pactl", "load-module", "module-pipe-source", "source_name=gone", f"file={fifo}",
                             "format=s16le", "rate=16000", "channels=1"], env=env, capture_output=True, text=True,
                            check=True, timeout=10).stdout.strip()
    mic = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--model", str(TINY_FLOAT), "--source", "mic",
                            "--device", "pulse", "--mqtt", "off", "--raw"], cwd=REPO,
                           env={**env, "PULSE_SOURCE": "gone"}, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: recording(env) or mic.poll() is not None, 30) and mic.poll() is None, mic.communicate()
    audio = (np.clip(speechlike(4.0, seed=12), -1, 1) * 32767).astype("<i2").tobytes()
    feed(fifo, audio)
    first = readline_within(mic.stdout, 30)  # a window out: it was really listening before the device went
    subprocess.run(["pactl", "unload-module", module], env=env, check=True, timeout=10)
    t0 = time.monotonic()
    out, err = mic.communicate(timeout=30)
    assert mic.returncode == 75 and "stopped or was unplugged" in err, err
    assert time.monotonic() - t0 < 10  # dead_after_seconds (5 s) plus start-up slack
    assert json.loads(first)["label"], (first, out)


def test_a_capture_thread_that_dies_is_reported_and_exits_75(pulse, tmp_path):
    """The audio callback runs in PortAudio's thread: if it raises, sounddevice stops calling it and says
    nothing. The daemon names the error and exits 75 (systemd restarts it) instead of hanging."""
    env, fifo = pulse
    script = ("import sys\n"
              "from edge import sources\n"
              "calls = [0]\n"
              "orig = sources.MicSource._callback\n"
              "def poisoned(self, *a):\n"
              "    calls[0] += 1\n"
              "    if calls[0] > 10:\n"
              "        raise RuntimeError('poisoned capture callback')\n"
              "    orig(self, *a)\n"
              "sources.MicSource._callback = poisoned\n"
              "from edge.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    mic = subprocess.Popen([sys.executable, "-c", script, "run", "--model", str(TINY_FLOAT), "--source", "mic",
                            "--device", "pulse", "--mqtt", "off"], cwd=REPO, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: recording(env) or mic.poll() is not None, 30) and mic.poll() is None, mic.communicate()
    # 2 s of sound: the callback dies after its 10th block (1 s); then nobody reads the FIFO, but 64,000 bytes
    # fit in the pipe's 64 KiB
    feed(fifo, (np.clip(speechlike(2.0, seed=13), -1, 1) * 32767).astype("<i2").tobytes())
    t0 = time.monotonic()
    _, err = mic.communicate(timeout=30)
    assert mic.returncode == 75, err
    (line,) = [x for x in err.splitlines() if x.startswith("moodmic: error:")]
    assert "capture callback" in line and "RuntimeError: poisoned capture callback" in line, line
    assert time.monotonic() - t0 < 5  # reported at once, not after dead_after_seconds
