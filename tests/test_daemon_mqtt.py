"""`moodmic run` end to end against a real mosquitto: the whole contract, credentials, outages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from broker import Broker, Recorder, broker_fixture  # noqa: F401  (the `broker` fixture)
from conftest import REPO, SR, ravdess_clips, run_moodmic
from edge.audio import load_audio
from edge.bundle import load_bundle
from edge.errors import EXIT_CONFIG

DEVICE = "testpi"
BASE = f"moodmic/{DEVICE}"
STATE_KEYS = {"label", "confidence", "probabilities", "seq", "boot_id", "window_start", "window_end", "rms_dbfs",
              "model_sha"}


def config(path: Path, broker: Broker, **mqtt) -> Path:
    values = {"host": broker.host, "port": broker.port, "device_id": DEVICE, "state_dir": str(path.parent / "state"),
              "state_interval": 1.0, "health_interval": 1.0, **mqtt}
    lines = ["mqtt:"] + [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def speech_file(ravdess: Path, path: Path, clips: int, seed: int = 0) -> Path:
    """Real RAVDESS speech of several emotions back to back, with a quiet pause in the middle."""
    chosen = [c for c in ravdess_clips(ravdess, 60, seed=seed) if "/speech/" in str(c)][:clips]
    audio = [load_audio(c, SR) for c in chosen]
    hiss = np.random.default_rng(seed).normal(0, 3e-5, 4 * SR).astype(np.float32)  # a quiet room, not a dead mic
    audio.insert(len(audio) // 2, hiss)
    sf.write(path, np.concatenate(audio), SR)
    return path


def start_daemon(cfg: Path, wav: Path) -> subprocess.Popen:
    """`moodmic run` replaying `wav` in real time, publishing to the broker `cfg` names."""
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", f"file:{wav}",
                             "--mqtt", "on"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_daemon(daemon: subprocess.Popen) -> tuple[float, str]:
    """SIGTERM the daemon and wait for it: (seconds until it exited, its stderr)."""
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=10)
    return time.monotonic() - t0, err


def payloads(rec: Recorder, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in rec.on(topic)]


def first_arrivals(states: list[dict]) -> list[tuple[str, int]]:
    seen, out = set(), []
    for s in states:
        key = (s["boot_id"], s["seq"])
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def test_a_real_recording_yields_every_topic_of_the_contract(broker, ravdess, tmp_path):
    rec = Recorder(broker, ["moodmic/#", "homeassistant/#"]).start()
    wav = speech_file(ravdess, tmp_path / "speech.wav", clips=2)
    cfg = config(tmp_path / "c.yaml", broker)
    proc = run_moodmic("run", "--config", str(cfg), "--source", f"file:{wav}", "--mqtt", "on", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert rec.wait_for(lambda m: any(x.topic == f"{BASE}/availability" and x.payload == b"offline" for x in m), 10)
    availability = [m.text() for m in rec.on(f"{BASE}/availability")]
    assert availability[0] == "online" and availability[-1] == "offline"

    states = payloads(rec, f"{BASE}/state")
    labels = load_bundle().labels
    assert states and all(set(s) == STATE_KEYS for s in states)
    assert [seq for _, seq in first_arrivals(states)] == list(range(1, len(first_arrivals(states)) + 1))
    assert len({s["boot_id"] for s in states}) == 1 and states[0]["model_sha"] == load_bundle().tflite_sha256
    for s in states:
        if s["label"] == "silence":
            assert s["probabilities"] is None and s["confidence"] is None
        else:
            assert s["label"] in labels and list(s["probabilities"]) == list(labels)
    assert len(states) > len({s["label"] for s in states})  # heartbeats between changes (state_interval 1 s)
    events = payloads(rec, f"{BASE}/event")
    assert events and all(e["event_type"] in (*labels, "silence") for e in events)
    assert not any(m.retain for m in rec.on(f"{BASE}/event"))
    health = payloads(rec, f"{BASE}/health")
    assert health and all(h["consumed"] == h["gated"] + h["inferred"] for h in health)
    assert health[-1]["gated"] >= 2 and health[-1]["fault"] is None  # the quiet pause was gated

    configs = {m.topic: json.loads(m.payload) for m in rec.messages if m.topic.startswith("homeassistant/")}
    assert set(configs) == {f"homeassistant/sensor/{DEVICE}/emotion/config",
                            f"homeassistant/sensor/{DEVICE}/confidence/config",
                            f"homeassistant/event/{DEVICE}/emotion_change/config"}
    for topic, c in configs.items():
        assert {"name", "unique_id", "state_topic", "device", "availability_topic", "origin"} <= set(c), topic
        assert c["device"]["identifiers"] and c["origin"]["name"] == "moodmic"
        for key in ("state_topic", "json_attributes_topic", "availability_topic"):
            if key in c:  # every topic HA is told about really receives messages
                assert rec.on(c[key]), f"{topic}: nothing arrived on its {key} {c[key]}"
    emotion = configs[f"homeassistant/sensor/{DEVICE}/emotion/config"]
    assert emotion["device_class"] == "enum" and emotion["options"] == [*labels, "silence"]
    assert configs[f"homeassistant/event/{DEVICE}/emotion_change/config"]["event_types"] == [*labels, "silence"]
    rec.stop()
    late = Recorder(broker, [f"{BASE}/#"], client_id="late", clean_session=True).start()
    assert late.wait_for(lambda m: any(x.topic == f"{BASE}/state" and x.retain for x in m), 5)
    assert [m.text() for m in late.on(f"{BASE}/availability")] == ["offline"]  # retained
    late.stop()


def test_tls_and_password(tmp_path, ravdess):
    with Broker(tmp_path / "b", users={"moodmic": "s3cret"}, tls=True) as b:
        rec = Recorder(b, ["moodmic/#"], username="moodmic", password="s3cret").start()
        secret = tmp_path / "pw"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        cfg = config(tmp_path / "c.yaml", b, tls=True, ca_certs=str(b.ca), host="localhost", username="moodmic",
                     password_file=str(secret))
        proc = run_moodmic("run", "--config", str(cfg), "--source", f"file:{speech_file(ravdess, tmp_path / 's.wav', 1)}",
                           "--fast", "--mqtt", "on", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stderr
        assert rec.wait_for(lambda m: any(x.topic == f"{BASE}/state" for x in m), 10)
        rec.stop()


def test_wrong_password_exits_78_with_a_clear_message(tmp_path, ravdess):
    with Broker(tmp_path / "b", users={"moodmic": "right"}) as b:
        cfg = config(tmp_path / "c.yaml", b, username="moodmic")
        wav = speech_file(ravdess, tmp_path / "s.wav", 2)
        proc = run_moodmic("run", "--config", str(cfg), "--source", f"file:{wav}", "--mqtt", "on",
                           env={"MOODMIC_MQTT_PASSWORD": "Xq7-not-it"}, timeout=60)
        assert proc.returncode == EXIT_CONFIG
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("moodmic: error:") and "Xq7-not-it" not in proc.stderr
        assert any(word in last.lower() for word in ("password", "not authori", "credentials")), last


def test_broker_outage_mid_replay_loses_nothing(broker, ravdess, tmp_path):
    rec = Recorder(broker, [f"{BASE}/state"]).start()
    wav = speech_file(ravdess, tmp_path / "speech.wav", clips=5, seed=1)
    cfg = config(tmp_path / "c.yaml", broker)
    daemon = start_daemon(cfg, wav)
    assert rec.wait_for(lambda m: len(m) >= 2, 20)
    broker.stop()
    time.sleep(10)  # the daemon keeps producing heartbeats and changes meanwhile
    broker.start()
    _, err = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, err
    assert rec.wait_for(lambda m: len(first_arrivals([json.loads(x.payload) for x in m])) >= 10, 30)
    time.sleep(2)
    keys = first_arrivals(payloads(rec, f"{BASE}/state"))
    assert [seq for _, seq in keys] == list(range(1, len(keys) + 1))  # every seq, in order
    assert "0 dropped" in err.strip().splitlines()[-1]
    rec.stop()


def test_sigterm_during_an_outage_spools_and_the_next_start_delivers(broker, ravdess, tmp_path):
    rec = Recorder(broker, [f"{BASE}/state"]).start()
    wav = speech_file(ravdess, tmp_path / "speech.wav", clips=4, seed=2)
    cfg = config(tmp_path / "c.yaml", broker)
    daemon = start_daemon(cfg, wav)
    assert rec.wait_for(lambda m: len(m) >= 1, 20)
    broker.stop()
    time.sleep(4)  # heartbeats every second pile up in the daemon's queue
    seconds, err = stop_daemon(daemon)
    assert daemon.returncode == 0, err
    assert seconds < 3.0
    spool = tmp_path / "state" / "spool.jsonl"
    spooled = [json.loads(line) for line in spool.read_text().splitlines()]
    assert len(spooled) >= 2
    first_boot = payloads(rec, f"{BASE}/state")[0]["boot_id"]
    broker.start()
    again = run_moodmic("run", "--config", str(cfg), "--sample", "--fast", "--mqtt", "on", timeout=60)
    assert again.returncode == 0, again.stderr
    assert rec.wait_for(lambda m: len({json.loads(x.payload)["boot_id"] for x in m}) >= 2, 15)
    keys = first_arrivals(payloads(rec, f"{BASE}/state"))
    before = [seq for boot, seq in keys if boot == first_boot]
    assert before == list(range(1, len(before) + 1)) and len(before) >= 3  # the spooled ones arrived, in order
    assert keys.index(next(k for k in keys if k[0] != first_boot)) == len(before)  # spool first, then new states
    assert not spool.exists() or not spool.read_text().strip()
    rec.stop()


def test_sigterm_publishes_offline_and_exits_0(broker, ravdess, tmp_path):
    rec = Recorder(broker, [f"{BASE}/#"]).start()
    daemon = start_daemon(config(tmp_path / "c.yaml", broker), speech_file(ravdess, tmp_path / "s.wav", clips=4))
    assert rec.wait_for(lambda m: any(x.topic == f"{BASE}/state" for x in m), 20)
    seconds, err = stop_daemon(daemon)
    assert daemon.returncode == 0, err
    assert seconds < 2.5
    assert rec.wait_for(lambda m: [x.text() for x in m if x.topic == f"{BASE}/availability"][-1:] == ["offline"], 5)
    assert not (tmp_path / "state" / "spool.jsonl").exists()  # the broker was there: nothing left to spool
    rec.stop()
