"""edge.mqtt against a real mosquitto: the MQTT contract, Home Assistant discovery, credentials and TLS,
outages, the bounded queue's drop count, and the spool. No mocks of paho.

A wrong password, a broker outage and the spool at shutdown are tested here, at the publisher, in
seconds (the default run); the same faults with the real daemon, counted for RELIABILITY.md, are in
tests/test_faults.py (`-m faults`)."""

from __future__ import annotations

import json
import logging
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge import __version__
from edge.config import MqttSettings
from edge.errors import ConfigError
from edge.identity import device_identity
from edge.mqtt import MqttPublisher, Tuning, read_password
from edge.schema import SILENCE, UNCERTAIN, StateMessage

from broker import Broker, Recorder, broker_fixture, make_ca  # noqa: F401  (the `broker` fixture)
from conftest import REPO, wait_until

LABELS = ("angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
FAST = Tuning(reconnect_min_s=0.1, reconnect_max_s=0.5, connect_timeout_s=1.0, discovery_jitter_s=0.5)
BASE = "moodmic/test"


def settings(b: Broker, **kw: Any) -> MqttSettings:
    return MqttSettings(**{"host": b.host, "port": b.port, "device_id": "test", "keepalive": 5, **kw})


def state(seq: int, label: str = "happy", boot: str = "boot-a") -> StateMessage:
    silent = label == SILENCE
    probs = None if silent else {name: (0.65 if name == label else 0.05) for name in LABELS}
    return StateMessage(label=label, confidence=None if silent else 0.65, probabilities=probs, seq=seq, boot_id=boot,
                        window_start="2026-01-01T00:00:00.000Z", window_end="2026-01-01T00:00:03.000Z",
                        rms_dbfs=-20.0, model_sha="ab" * 32)


@pytest.fixture
def make_publisher() -> Iterator[Any]:
    made: list[MqttPublisher] = []

    def make(s: MqttSettings, spool: Path | None = None) -> MqttPublisher:
        """A started publisher with short reconnect delays, closed after the test."""
        p = MqttPublisher(s, labels=LABELS, model_name="tiny", model_sha="cd" * 32, spool_path=spool, tuning=FAST)
        made.append(p)
        p.start()
        return p

    yield make
    for p in made:
        p.close(timeout=1.0)


def seqs(rec: Recorder, boot: str = "boot-a") -> list[int]:
    """seq of the live (not retained) state messages of one boot, in arrival order."""
    out = [json.loads(m.payload) for m in rec.on(f"{BASE}/state") if not m.retain]
    return [d["seq"] for d in out if d["boot_id"] == boot]


def in_order_once_at_least(got: list[int]) -> list[int]:
    """The distinct seqs, asserting each first arrived after every smaller one (at-least-once: a repeat
    is a re-delivery of something already seen, e.g. the broker re-sending what a subscriber had not
    acknowledged when the broker stopped)."""
    firsts = list(dict.fromkeys(got))
    assert firsts == sorted(firsts), f"out of order: {got}"
    return firsts


# -- settings helpers ---------------------------------------------------------------------------------
def test_device_id_is_sanitised(tmp_path: Path) -> None:
    def device_id(s: MqttSettings) -> str:
        return device_identity(s, None)

    assert device_id(MqttSettings(device_id="Kitchen Pi #2")) == "kitchen_pi_2"
    assert device_id(MqttSettings(device_id="den-1")) == "den-1"
    import re
    assert re.fullmatch(r"[a-z0-9_-]+-[0-9a-f]{6}", device_id(MqttSettings()))  # the host name + machine hash
    with pytest.raises(ConfigError, match="mqtt.device_id"):
        device_id(MqttSettings(device_id="!!!"))


def test_password_sources_and_file_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOODMIC_MQTT_PASSWORD", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    assert read_password(MqttSettings(password_file=str(pw))) == "s3cret"
    assert read_password(MqttSettings()) is None
    pw.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        read_password(MqttSettings(password_file=str(pw)))
    assert str(pw) in str(err.value) and f"chmod 600 {pw}" in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_password(MqttSettings(password_file=str(tmp_path / "missing")))
    monkeypatch.setenv("MOODMIC_MQTT_PASSWORD", "from-env")
    assert read_password(MqttSettings(password_file=str(pw))) == "from-env"  # env first: the file is not read
    with pytest.raises(ConfigError, match="mqtt.username"):
        MqttPublisher(MqttSettings(), labels=LABELS, model_name="m", model_sha="0" * 64, spool_path=None)


# -- the contract -------------------------------------------------------------------------------------
def test_topics_payloads_retained_flags_and_availability(broker: Broker, make_publisher: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.mqtt")
    rec = Recorder(broker, ["moodmic/#"]).start()
    pub = make_publisher(settings(broker, discovery=False))
    assert pub.wait_connected(5)
    s1, s2 = state(1, "happy"), state(2, SILENCE)
    pub.publish_state(s1)
    pub.publish_event(s1.event(None))
    pub.publish_state(s2)
    pub.publish_event(s2.event("happy"))
    pub.publish_health({"consumed": 10, "gated": 4, "inferred": 6})
    own = (f"{BASE}/availability", f"{BASE}/claim")  # published by the publisher itself at connect
    assert rec.wait_for(lambda ms: len([m for m in ms if m.topic not in own]) >= 5, 5)
    assert [m.text() for m in rec.on(f"{BASE}/availability")] == ["online"]
    states = [json.loads(m.payload) for m in rec.on(f"{BASE}/state")]
    assert states == [s1.to_dict(), s2.to_dict()]
    assert states[1]["label"] == SILENCE and states[1]["probabilities"] is None and states[1]["confidence"] is None
    events = [json.loads(m.payload) for m in rec.on(f"{BASE}/event")]
    assert events == [s1.event(None), s2.event("happy")] and events[1]["event_type"] == SILENCE
    assert json.loads(rec.on(f"{BASE}/health")[0].payload) == {"consumed": 10, "gated": 4, "inferred": 6}
    assert wait_until(lambda: pub.stats()["acked"] == 4, 5)
    st = pub.stats()
    assert set(st) == {"connected", "queued", "handed", "acked", "dropped", "reconnects", "spooled", "unspooled",
                       "resent", "spool_rejected", "takeovers", "client_id"}
    assert st["connected"] and (st["handed"], st["queued"], st["dropped"], st["reconnects"]) == (4, 0, 0, 0)

    pub.close()
    availability = lambda ms: [m.text() for m in ms if m.topic == f"{BASE}/availability"]  # noqa: E731
    assert rec.wait_for(lambda ms: availability(ms) == ["online", "offline"], 5)
    late = Recorder(broker, ["moodmic/#"], client_id="late", clean_session=True).start()
    retained = lambda ms: {m.topic: m.text() for m in ms if m.retain}  # noqa: E731
    expected = {f"{BASE}/availability": "offline", f"{BASE}/state": json.dumps(s2.to_dict())}
    # the broker sends every retained message at once on SUBACK: one too many never equals `expected`
    assert late.wait_for(lambda ms: len(retained(ms)) == 3, 5), retained(late.messages)
    claim = json.loads(retained(late.messages).pop(f"{BASE}/claim"))
    assert set(claim) == {"id", "host", "since"} and abs(claim["since"] - time.time()) < 60
    assert {k: v for k, v in retained(late.messages).items() if k != f"{BASE}/claim"} == expected
    late.stop()
    rec.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.mqtt"]
    assert len(lines) == 3, lines  # publishing to ..., connected, closed: nothing per message


def test_last_will_is_offline_when_the_process_is_killed(broker: Broker, tmp_path: Path) -> None:
    rec = Recorder(broker, [f"{BASE}/availability"]).start()
    script = (
        "import sys, time\n"
        "from edge.config import MqttSettings\n"
        "from edge.mqtt import MqttPublisher\n"
        f"s = MqttSettings(host={broker.host!r}, port={broker.port}, device_id='test', keepalive=5)\n"
        "p = MqttPublisher(s, labels=('a',), model_name='m', model_sha='0' * 64, spool_path=None)\n"
        "p.start()\n"
        "print('ready' if p.wait_connected(10) else 'no broker', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and select.select([proc.stdout], [], [], 15)[0], "the publisher is silent"
        assert proc.stdout.readline().strip() == "ready"
        assert rec.wait_for(lambda ms: [m.text() for m in ms] == ["online"], 5)
        proc.send_signal(signal.SIGKILL)
        assert rec.wait_for(lambda ms: [m.text() for m in ms] == ["online", "offline"], 5), rec.messages
    finally:
        proc.kill()
        proc.wait(10)
        rec.stop()


# -- Home Assistant discovery -------------------------------------------------------------------------
def discovery(rec: Recorder) -> dict[str, dict[str, Any]]:
    return {m.topic: json.loads(m.payload) for m in rec.messages if m.topic.endswith("/config")}


def test_discovery_payloads_topics_and_resend_on_ha_online(broker: Broker, make_publisher: Any) -> None:
    rec = Recorder(broker, ["homeassistant/#", "moodmic/#"]).start()
    pub = make_publisher(settings(broker))
    assert rec.wait_for(lambda ms: len(discovery(rec)) == 3, 5)
    configs = discovery(rec)
    assert set(configs) == {"homeassistant/sensor/test/emotion/config", "homeassistant/sensor/test/confidence/config",
                            "homeassistant/event/test/emotion_change/config"}
    options = [*LABELS, SILENCE, UNCERTAIN]
    for topic, c in configs.items():
        component = topic.split("/")[1]
        for key in ("name", "unique_id", "default_entity_id", "state_topic", "availability_topic", "device", "origin"):
            assert key in c, (topic, key)
        assert c["default_entity_id"].startswith(f"{component}.moodmic_test_")
        assert c["device"] == {"identifiers": ["moodmic_test"], "name": "moodmic test", "model": "tiny",
                               "sw_version": __version__, "manufacturer": "moodmic"}
        assert c["origin"]["name"] == "moodmic" and c["origin"]["sw_version"] == __version__
    emotion = configs["homeassistant/sensor/test/emotion/config"]
    assert emotion["device_class"] == "enum" and emotion["options"] == options
    assert "unit_of_measurement" not in emotion and "state_class" not in emotion  # HA rejects them with options
    # three missed heartbeats (mqtt.state_interval) and a stale retained state turns unavailable
    assert emotion["expire_after"] == 3 * MqttSettings().state_interval
    assert emotion["json_attributes_topic"] == f"{BASE}/state"
    confidence = configs["homeassistant/sensor/test/confidence/config"]
    assert confidence["unit_of_measurement"] == "%" and confidence["state_class"] == "measurement"
    assert confidence["expire_after"] == emotion["expire_after"]
    event = configs["homeassistant/event/test/emotion_change/config"]
    assert event["event_types"] == options and event["state_topic"] == f"{BASE}/event"
    assert len({c["unique_id"] for c in configs.values()}) == 3

    # every topic they advertise really receives messages
    pub.publish_state(state(1))
    pub.publish_event(state(1).event(None))
    advertised = {v for c in configs.values() for k, v in c.items() if k.endswith("_topic")}
    assert advertised == {f"{BASE}/state", f"{BASE}/event", f"{BASE}/availability"}
    assert rec.wait_for(lambda ms: advertised <= {m.topic for m in ms}, 5)

    # Home Assistant restarted: its birth message makes us announce again
    ha = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha")
    ha.connect(broker.host, broker.port)
    ha.loop_start()
    ha.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    ha.disconnect()
    ha.loop_stop()
    assert rec.wait_for(lambda ms: sum(m.topic.endswith("/config") for m in ms) == 6, 5)
    rec.stop()


def test_discovery_templates_render_as_home_assistant_would() -> None:
    jinja2 = pytest.importorskip("jinja2")
    from edge.discovery import discovery_configs

    configs = dict(discovery_configs(prefix="homeassistant", device_id="test", base=BASE, labels=LABELS,
                                     model_name="tiny", qos=1, expire_after=180))
    env = jinja2.Environment()

    def render(object_id: str, msg: StateMessage) -> str:
        c = configs[f"homeassistant/sensor/test/{object_id}/config"]
        return env.from_string(c["value_template"]).render(value_json=msg.to_dict())

    assert render("emotion", state(1, "sad")) == "sad"
    assert render("emotion", state(2, SILENCE)) == SILENCE
    assert render("confidence", state(1, "sad")) == "65.0"
    assert render("confidence", state(2, SILENCE)) == "None"  # HA's PAYLOAD_NONE: state unknown
    assert render("emotion", state(3, UNCERTAIN)) == UNCERTAIN  # an enum option, with its top probability
    assert render("confidence", state(3, UNCERTAIN)) == "65.0"


# -- credentials and TLS ------------------------------------------------------------------------------
def test_tls_and_password(tmp_path: Path, make_publisher: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOODMIC_MQTT_PASSWORD", raising=False)
    with Broker(tmp_path / "b", users={"moodmic": "s3cret", "ha": "ha-pw"}, tls=True) as b:
        pw = tmp_path / "pw"
        pw.write_text("s3cret\n")
        pw.chmod(0o600)
        rec = Recorder(b, ["moodmic/#"], username="ha", password="ha-pw").start()
        s = settings(b, tls=True, ca_certs=str(b.ca), username="moodmic", password_file=str(pw), discovery=False)
        pub = make_publisher(s)
        assert pub.wait_connected(5)
        pub.publish_state(state(1))
        assert rec.wait_for(lambda ms: any(m.topic == f"{BASE}/state" for m in ms), 5)
        pub.check()
        rec.stop()

        other_ca = make_ca(tmp_path, "other")[0]  # a broker certificate we must not trust
        bad = make_publisher(settings(b, tls=True, ca_certs=str(other_ca), username="moodmic", password_file=str(pw)))
        assert wait_until(lambda: _raises(bad.check), 5)
        with pytest.raises(ConfigError, match="TLS verification .* failed .*mqtt.ca_certs"):
            bad.check()


def _raises(check: Any) -> bool:
    try:
        check()
    except ConfigError:
        return True
    return False


def test_wrong_password_raises_config_error_once(tmp_path: Path, make_publisher: Any,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password at the publisher, fast; `moodmic run` exiting 78, counted: tests/test_faults.py."""
    with Broker(tmp_path / "b", users={"moodmic": "s3cret"}) as b:
        monkeypatch.setenv("MOODMIC_MQTT_PASSWORD", "wrong-pw")
        pub = make_publisher(settings(b, username="moodmic"))
        t0 = time.monotonic()
        assert wait_until(lambda: _raises(pub.check), 5)
        assert time.monotonic() - t0 < 5 and not pub.wait_connected(0.1)
        with pytest.raises(ConfigError, match="refused the connection .*Not authorized.*mqtt.username") as err:
            pub.check()
        assert err.value.exit_code == 78 and "wrong-pw" not in str(err.value)
        time.sleep(1.5)  # the scenario: several backoff periods (0.1-0.5 s) pass, and no retry may follow
        assert b.log_text().count("not authorised") == 1
        assert sum("refused" in r.message for r in caplog.records) == 1
        assert not any("wrong-pw" in r.getMessage() for r in caplog.records)


def test_no_broker_wait_connected_false_and_close_is_prompt(tmp_path: Path, make_publisher: Any) -> None:
    b = Broker(tmp_path / "b")  # configured, never started: nothing listens on its port
    pub = make_publisher(settings(b), spool=tmp_path / "spool.jsonl")
    assert not pub.wait_connected(0.5)
    pub.publish_state(state(1))
    t0 = time.monotonic()
    pub.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert pub.stats()["spooled"] == 1 and not pub.stats()["connected"]


# -- outages, the bound, the spool --------------------------------------------------------------------
def test_broker_down_3s_mid_stream_every_seq_arrives_in_order(tmp_path: Path, make_publisher: Any) -> None:
    """The outage at the publisher, fast; with the real daemon and counted: tests/test_faults.py."""
    with Broker(tmp_path / "b") as b:
        rec = Recorder(b, [f"{BASE}/state"]).start()
        pub = make_publisher(settings(b, discovery=False))
        assert pub.wait_connected(5)
        n, down_at, up_at = 100, 20, 80  # one state per 0.05 s: the broker is away for 3 s (6+ reconnect tries)
        for seq in range(1, n + 1):
            pub.publish_state(state(seq))
            if seq == down_at:
                b.stop()
            elif seq == up_at:
                assert not pub.stats()["connected"] and pub.stats()["queued"] > 40
                b.start()
            time.sleep(0.05)  # the scenario's pace, not a wait for something
        assert rec.wait_for(lambda ms: n in seqs(rec), 15), seqs(rec)
        assert in_order_once_at_least(seqs(rec)) == list(range(1, n + 1))
        assert wait_until(lambda: pub.stats()["acked"] == n, 5)
        st = pub.stats()
        assert (st["dropped"], st["queued"], st["handed"]) == (0, 0, n) and st["reconnects"] >= 1
        rec.stop()


def test_messages_in_flight_when_the_link_dies_are_resent(tmp_path: Path, make_publisher: Any) -> None:
    """SIGSTOP: the broker neither reads nor acknowledges; keepalive ends the connection with messages
    handed to paho but unacknowledged. After SIGCONT they are re-sent: none lost, duplicates counted."""
    with Broker(tmp_path / "b") as b:
        rec = Recorder(b, [f"{BASE}/state"]).start()
        pub = make_publisher(settings(b, discovery=False))
        assert pub.wait_connected(5)
        b.pause()
        for seq in range(1, 31):
            pub.publish_state(state(seq))
        assert wait_until(lambda: pub.stats()["handed"] == 20, 2)  # the in-flight cap; 10 wait in our queue
        assert wait_until(lambda: not pub.stats()["connected"], 15)
        assert (pub.stats()["acked"], pub.stats()["queued"]) == (0, 10)
        b.resume()
        assert rec.wait_for(lambda ms: 30 in seqs(rec), 15), seqs(rec)
        assert in_order_once_at_least(seqs(rec)) == list(range(1, 31))
        assert wait_until(lambda: pub.stats()["acked"] == 30, 5)
        st = pub.stats()
        assert (st["handed"], st["dropped"], st["reconnects"], st["resent"]) == (30, 0, 1, 20)
        rec.stop()


def test_queue_bound_drops_oldest_and_counts_exactly(tmp_path: Path, make_publisher: Any) -> None:
    with Broker(tmp_path / "b") as b:
        rec = Recorder(b, [f"{BASE}/state"]).start()
        pub = make_publisher(settings(b, discovery=False, queue_size=10))
        assert pub.wait_connected(5)
        for seq in range(1, 6):
            pub.publish_state(state(seq))
        assert rec.wait_for(lambda ms: 5 in seqs(rec), 5)
        b.stop()
        assert wait_until(lambda: not pub.stats()["connected"], 5)
        for seq in range(6, 56):  # 50 during the outage, 10 fit
            pub.publish_state(state(seq))
        assert pub.stats()["queued"] == 10 and pub.stats()["dropped"] == 40
        b.start()
        assert rec.wait_for(lambda ms: 55 in seqs(rec), 10), seqs(rec)
        got = in_order_once_at_least(seqs(rec))
        assert got == [*range(1, 6), *range(46, 56)]
        assert 55 - len(got) == pub.stats()["dropped"] == 40  # the gaps are exactly the drop count
        rec.stop()


def test_close_during_outage_spools_and_the_next_start_sends_it_first(tmp_path: Path, make_publisher: Any) -> None:
    """The spool at the publisher, fast; `moodmic run` SIGTERMed in an outage, counted: tests/test_faults.py."""
    spool = tmp_path / "state" / "spool.jsonl"
    with Broker(tmp_path / "b") as b:
        rec = Recorder(b, [f"{BASE}/state", f"{BASE}/event"]).start()
        first = make_publisher(settings(b, discovery=False), spool=spool)
        assert first.wait_connected(5)
        for seq in (1, 2, 3):
            first.publish_state(state(seq))
        assert rec.wait_for(lambda ms: 3 in seqs(rec), 5)
        b.stop()
        assert wait_until(lambda: not first.stats()["connected"], 5)
        for seq in range(4, 9):
            first.publish_state(state(seq))
        first.publish_event(state(8, "sad").event("happy"))
        t0 = time.monotonic()
        first.close(timeout=2.0)
        assert time.monotonic() - t0 < 2.5
        lines = [json.loads(line) for line in spool.read_text().splitlines()]
        assert first.stats()["spooled"] == len(lines) == 6 and spool.stat().st_mode & 0o077 == 0
        assert [json.loads(d["payload"]).get("seq") for d in lines] == [4, 5, 6, 7, 8, 8]

        b.start()
        second = make_publisher(settings(b, discovery=False), spool=spool)
        second.publish_state(state(1, "calm", boot="boot-b"))  # the new run's first state comes after the spool
        assert rec.wait_for(lambda ms: seqs(rec, "boot-b") == [1], 10), rec.messages
        assert in_order_once_at_least(seqs(rec)) == list(range(1, 9))
        live = [json.loads(m.payload) for m in rec.on(f"{BASE}/state") if not m.retain]
        assert [(d["boot_id"], d["seq"]) for d in live][-1] == ("boot-b", 1)
        assert [json.loads(m.payload)["event_type"] for m in rec.on(f"{BASE}/event")] == ["sad"]
        assert wait_until(lambda: second.stats()["unspooled"] == 6 and not spool.exists(), 5)
        rec.stop()
