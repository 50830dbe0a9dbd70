"""`moodmic run` end to end against a real mosquitto: the whole contract, TLS with a password, SIGTERM.

A wrong password, broker outages and SIGTERM during an outage are tested once each: fast, at the
publisher, in tests/test_mqtt.py (default run), and counted with the real daemon in tests/test_faults.py
(`-m faults`)."""

from __future__ import annotations

import json

from edge.bundle import load_bundle

from broker import Broker, Recorder, broker_fixture, daemon_config, start_daemon  # noqa: F401  (`broker`)
from conftest import run_moodmic, sigterm, speech_file

DEVICE = "testpi"
BASE = f"moodmic/{DEVICE}"
STATE_KEYS = {"label", "confidence", "probabilities", "seq", "boot_id", "window_start", "window_end", "rms_dbfs",
              "model_sha"}


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
    cfg = daemon_config(tmp_path / "c.yaml", broker)
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
        elif s["label"] == "uncertain":  # under the bundle's abstention threshold: the top emotion's probability
            assert s["confidence"] == max(s["probabilities"].values()) < load_bundle().abstain_below
        else:
            assert s["label"] in labels and list(s["probabilities"]) == list(labels)
    assert len(states) > len({s["label"] for s in states})  # heartbeats between changes (state_interval 1 s)
    events = payloads(rec, f"{BASE}/event")
    assert events and all(e["event_type"] in (*labels, "silence", "uncertain") for e in events)
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
    assert emotion["device_class"] == "enum" and emotion["options"] == [*labels, "silence", "uncertain"]
    assert configs[f"homeassistant/event/{DEVICE}/emotion_change/config"]["event_types"] == [*labels, "silence", "uncertain"]
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
        cfg = daemon_config(tmp_path / "c.yaml", b, tls=True, ca_certs=str(b.ca), host="localhost",
                            username="moodmic", password_file=str(secret))
        proc = run_moodmic("run", "--config", str(cfg), "--source", f"file:{speech_file(ravdess, tmp_path / 's.wav', 1)}",
                           "--fast", "--mqtt", "on", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stderr
        assert rec.wait_for(lambda m: any(x.topic == f"{BASE}/state" for x in m), 10)
        rec.stop()


def test_sigterm_publishes_offline_and_exits_0(broker, ravdess, tmp_path):
    rec = Recorder(broker, [f"{BASE}/#"]).start()
    daemon = start_daemon(daemon_config(tmp_path / "c.yaml", broker), speech_file(ravdess, tmp_path / "s.wav", clips=4))
    seconds, err = sigterm(daemon, once=lambda: rec.on(f"{BASE}/state"))
    assert daemon.returncode == 0, err
    assert seconds < 2.5
    assert rec.wait_for(lambda m: [x.text() for x in m if x.topic == f"{BASE}/availability"][-1:] == ["offline"], 5)
    assert not (tmp_path / "state" / "spool.jsonl").exists()  # the broker was there: nothing left to spool
    rec.stop()
