"""The publisher and the daemon where nobody had looked: a broker ACL that denies our topics, a thread that
dies, a poisoned spool line, a state directory that cannot be written, and two machines with one host name.
Real mosquitto, real paho, no mocks; each test reproduces a defect of issue [11]."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_mqtt import FAST as FAST_MQTT
from test_mqtt import LABELS, state

from edge.config import MqttSettings
from edge.errors import EXIT_CONFIG, EXIT_SOFTWARE
from edge.mqtt import MqttPublisher, Tuning

from broker import Broker, Recorder, broker_fixture, daemon_config  # noqa: F401  (the `broker` fixture)
from conftest import run_moodmic, wait_until

# test_mqtt's short delays, but Home Assistant's discovery answer keeps its real jitter (one test measures it)
FAST = replace(FAST_MQTT, discovery_jitter_s=Tuning().discovery_jitter_s)
CLOSED = re.compile(r"MQTT closed: (\d+) acknowledged, (\d+) dropped, (\d+) spooled")


def publisher(s: MqttSettings, spool: Path | None = None, **kw: Any) -> MqttPublisher:
    return MqttPublisher(s, labels=LABELS, model_name="tiny", model_sha="cd" * 32, spool_path=spool, tuning=FAST, **kw)


def raised(check: Any) -> BaseException | None:
    try:
        check()
    except Exception as exc:  # noqa: BLE001  (the test inspects which)
        return exc
    return None


def internal_fault(pub: MqttPublisher) -> bool:
    """check() raises the error a dead thread is (exit 70: systemd restarts the service)."""
    return getattr(raised(pub.check), "exit_code", None) == EXIT_SOFTWARE


def device_identity(*args: Any, **kw: Any) -> str:
    from edge.identity import device_identity

    return device_identity(*args, **kw)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("moodmic: error:")]


# -- a broker ACL that denies our topics ----------------------------------------------------------------
@pytest.mark.parametrize("acl, denied", [
    # the case: the user may only read moodmic/#, so even the birth message is denied
    ("user moodmic\ntopic read moodmic/#\ntopic readwrite homeassistant/#", "moodmic/testpi/availability"),
    # its availability may be written (so the daemon gets going), its states and events may not
    ("user moodmic\ntopic read moodmic/#\ntopic readwrite moodmic/testpi/availability\n"
     "topic readwrite homeassistant/#", "moodmic/testpi/state"),
], ids=["read-only", "state-denied"])
def test_an_acl_denying_our_topics_exits_78_naming_the_topic_and_loses_nothing(tmp_path: Path, acl: str,
                                                                                denied: str) -> None:
    """mosquitto logs "Denied PUBLISH"; under MQTT 3.1.1 it still PUBACKs, so the daemon used to count the
    messages as delivered and exit 0. MQTT 5's PUBACK says "Not authorized": a configuration fault."""
    with Broker(tmp_path / "b", users={"moodmic": "pw"}, acl=acl) as b:
        cfg = daemon_config(tmp_path / "c.yaml", b, username="moodmic")
        proc = run_moodmic("run", "--config", str(cfg), "--sample", "--fast", "--mqtt", "on",
                           env={"MOODMIC_MQTT_PASSWORD": "pw"}, timeout=90)
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        (line,) = error_lines(proc.stderr)
        assert "not authorized" in line.lower() and denied in line and "ACL" in line, line
        acked, dropped, spooled = map(int, CLOSED.findall(proc.stderr)[-1])
        spool = tmp_path / "state" / "spool.jsonl"
        assert acked == 0 and dropped == 0  # nothing counted as delivered, nothing thrown away
        assert (len(spool.read_text().splitlines()) if spool.exists() else 0) == spooled  # kept for the next start
        if denied.endswith("/state"):
            assert spooled >= 1  # the denied state itself
        assert "Denied PUBLISH" in b.log_text()


def test_mqtt_311_is_an_option_for_old_brokers(broker: Broker) -> None:
    pub = publisher(MqttSettings(host=broker.host, port=broker.port, device_id="old", protocol="3.1.1",
                                 discovery=False))
    rec = Recorder(broker, ["moodmic/old/state"]).start()
    pub.start()
    try:
        assert pub.wait_connected(5)
        pub.publish_state(state(1))
        assert rec.wait_for(lambda ms: len(ms) == 1, 5)
    finally:
        pub.close(1.0)
        rec.stop()


# -- threads that die -----------------------------------------------------------------------------------
def test_a_dead_network_thread_is_an_internal_fault_not_a_silent_daemon(broker: Broker) -> None:
    """A client id over 65,535 bytes made paho's network thread die on struct.error: the daemon ran on,
    never connected and said nothing. (The config refuses such ids now; this poisons the thread directly.)"""
    pub = publisher(MqttSettings(host=broker.host, port=broker.port, device_id="t", client_id="c" * 70000))
    pub.start()
    try:
        assert wait_until(lambda: internal_fault(pub), 5), raised(pub.check)
        assert "network thread" in str(raised(pub.check))
    finally:
        pub.close(1.0)


def test_a_dead_pump_thread_is_an_internal_fault(broker: Broker, tmp_path: Path) -> None:
    pub = publisher(MqttSettings(host=broker.host, port=broker.port, device_id="t", discovery=False),
                    spool=tmp_path / "spool.jsonl")
    pub.start()
    assert pub.wait_connected(5)

    def poison(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("poisoned")

    pub._client.publish = poison  # type: ignore[method-assign]  (what a paho bug would do)
    pub.publish_state(state(1))
    try:
        assert wait_until(lambda: internal_fault(pub), 5), raised(pub.check)
        assert "delivery thread" in str(raised(pub.check))
    finally:
        pub.close(1.0)
    assert pub.stats()["spooled"] == 1  # the message it was handing is kept, not lost


def test_the_daemon_exits_non_zero_when_a_publisher_thread_dies(tmp_path: Path) -> None:
    """End to end: `moodmic run` with a publisher whose thread dies exits 70 (systemd restarts it)."""
    import subprocess
    import sys

    from conftest import REPO

    script = (
        "import sys, threading\n"
        "from edge import mqtt\n"
        "orig = mqtt.MqttPublisher.start\n"
        "def start(self):\n"
        "    orig(self)\n"
        "    publish = self._client.publish\n"
        "    def poisoned(*a, **k):  # in the delivery thread only\n"
        "        if threading.current_thread().name == 'moodmic-mqtt-pump':\n"
        "            return 1 / 0\n"
        "        return publish(*a, **k)\n"
        "    self._client.publish = poisoned\n"
        "mqtt.MqttPublisher.start = start\n"
        "from edge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with Broker(tmp_path / "b") as b:
        cfg = daemon_config(tmp_path / "c.yaml", b)
        proc = subprocess.run([sys.executable, "-c", script, "run", "--config", str(cfg), "--sample", "--mqtt", "on"],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 70, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "delivery thread" in line and "ZeroDivisionError" in line


def test_a_poisoned_spool_line_is_set_aside_and_counted_and_the_rest_delivered(broker: Broker, tmp_path: Path,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A spool line with "qos": 3 killed the delivery thread: nothing more was delivered in that run."""
    spool = tmp_path / "state" / "spool.jsonl"
    spool.parent.mkdir()
    topic = "moodmic/t/state"
    good = [json.dumps({"topic": topic, "payload": json.dumps(state(i).to_dict()), "retain": True, "qos": 1})
            for i in (1, 2, 3)]
    bad = [json.dumps({"topic": topic, "payload": "x", "retain": True, "qos": 3}),
           json.dumps({"topic": "moodmic/#", "payload": "x", "retain": False, "qos": 1}),
           json.dumps({"topic": topic, "payload": {"not": "text"}, "retain": False, "qos": 1}),
           "{not json"]
    spool.write_text("\n".join([good[0], bad[0], good[1], bad[1], bad[2], bad[3], good[2]]) + "\n")
    rec = Recorder(broker, [topic]).start()
    pub = publisher(MqttSettings(host=broker.host, port=broker.port, device_id="t", discovery=False), spool=spool)
    with caplog.at_level(logging.WARNING):
        pub.start()
        try:
            assert rec.wait_for(lambda ms: len([m for m in ms if not m.retain]) >= 3, 10), rec.messages
            pub.publish_state(state(4, boot="boot-b"))
            assert rec.wait_for(lambda ms: any(b'"boot-b"' in m.payload for m in ms), 10)
            assert wait_until(lambda: not spool.exists(), 5)
        finally:
            pub.close(1.0)
    got = [json.loads(m.payload)["seq"] for m in rec.messages if not m.retain]
    assert got == [1, 2, 3, 4]
    assert pub.stats()["spool_rejected"] == 4
    rejected = spool.with_name("spool.rejected.jsonl").read_text().splitlines()
    assert rejected == bad  # kept as they were, for a person to look at
    assert sum("spool" in r.getMessage() and "set aside" in r.getMessage() for r in caplog.records) == 4
    rec.stop()


# -- the state directory --------------------------------------------------------------------------------
def test_a_state_directory_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    """It used to be found only at exit, where the spool was lost uncounted."""
    (tmp_path / "a_file").write_text("in the way\n")
    b = Broker(tmp_path / "b")  # never started: whatever the daemon makes must be spooled
    cfg = daemon_config(tmp_path / "c.yaml", b, state_dir=str(tmp_path / "a_file" / "state"))
    proc = run_moodmic("run", "--config", str(cfg), "--sample", "--fast", "--mqtt", "on", timeout=60)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "mqtt.state_dir" in line and str(tmp_path / "a_file" / "state") in line
    assert "listening" not in proc.stderr  # refused before any audio


# -- many devices ---------------------------------------------------------------------------------------
def test_two_machines_named_raspberrypi_get_different_stable_ids(tmp_path: Path) -> None:
    ids = []
    for n in (1, 2):
        mid = tmp_path / f"machine-id-{n}"
        mid.write_text(f"{n:032x}\n")
        first = device_identity(MqttSettings(), tmp_path / f"state{n}", hostname="raspberrypi", machine_id_path=mid)
        again = device_identity(MqttSettings(), tmp_path / f"state{n}", hostname="raspberrypi", machine_id_path=mid)
        renamed = device_identity(MqttSettings(), tmp_path / f"state{n}", hostname="kitchen", machine_id_path=mid)
        assert first == again == renamed  # stable across restarts and a renamed host
        assert re.fullmatch(r"raspberrypi-[0-9a-f]{6}", first), first
        ids.append(first)
    assert ids[0] != ids[1]
    explicit = device_identity(MqttSettings(device_id="Living Room"), tmp_path / "state1", hostname="raspberrypi",
                               machine_id_path=tmp_path / "machine-id-1")
    assert explicit == "living_room"


def test_an_existing_install_keeps_the_id_its_home_assistant_entities_use(tmp_path: Path) -> None:
    """A state directory from before this version (it outlived a previous run) keeps the bare host name."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "spool.jsonl").write_text("")
    old = time.time() - 3600
    import os

    os.utime(state_dir, (old, old))
    mid = tmp_path / "machine-id"
    mid.write_text("ab" * 16 + "\n")
    assert device_identity(MqttSettings(), state_dir, hostname="raspberrypi", machine_id_path=mid) == "raspberrypi"
    assert (state_dir / "device_id").read_text().strip() == "raspberrypi"  # and keeps it from now on


def test_two_simulated_machines_with_default_settings_do_not_disconnect_each_other(broker: Broker,
                                                                                     tmp_path: Path) -> None:
    pubs = []
    for n in (1, 2):
        mid = tmp_path / f"machine-id-{n}"
        mid.write_text(f"{n:032x}\n")
        s = MqttSettings(host=broker.host, port=broker.port, keepalive=5)  # device_id and client_id: defaults
        ident = device_identity(s, tmp_path / f"state{n}", hostname="raspberrypi", machine_id_path=mid)
        pubs.append(publisher(s, tmp_path / f"state{n}" / "spool.jsonl", device=ident))
    for p in pubs:
        p.start()
    try:
        assert all(p.wait_connected(5) for p in pubs)
        for seq in range(1, 21):
            for p in pubs:
                p.publish_state(state(seq))
            time.sleep(0.1)  # the scenario's pace: 2 s of both publishing
        assert wait_until(lambda: all(p.stats()["acked"] == 20 for p in pubs), 5)
        assert [p.stats()["reconnects"] for p in pubs] == [0, 0]
        assert [p.stats()["takeovers"] for p in pubs] == [0, 0]
        assert pubs[0].topics.state != pubs[1].topics.state
    finally:
        for p in pubs:
            p.close(1.0)


def test_a_forced_takeover_is_reported_in_one_log_line(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    """Two devices configured with one explicit device id: the broker hands the session to the newer one."""
    s = MqttSettings(host=broker.host, port=broker.port, device_id="kitchen", keepalive=5, discovery=False)
    first, second = publisher(s), publisher(s)
    with caplog.at_level(logging.WARNING):
        first.start()
        assert first.wait_connected(5)
        second.start()
        try:
            assert wait_until(lambda: first.stats()["takeovers"] + second.stats()["takeovers"] >= 3, 15)
        finally:
            second.close(1.0)
            first.close(1.0)
    lines = [r.getMessage() for r in caplog.records if "publishes as device" in r.getMessage()]
    assert len(lines) == 2, lines  # one per publisher, not one per takeover
    assert all("moodmic-kitchen" in line and "mqtt.device_id" in line and "kitchen" in line for line in lines)


def test_the_health_message_and_status_say_so_after_a_takeover(broker: Broker) -> None:
    from edge.daemon import Daemon

    s = MqttSettings(host=broker.host, port=broker.port, device_id="kitchen", keepalive=5, discovery=False)
    first, second = publisher(s), publisher(s)
    first.start()
    assert first.wait_connected(5)
    second.start()
    try:
        assert wait_until(lambda: first.stats()["takeovers"] >= 1, 10)
        text = Daemon.link_text(first.stats())
        assert "client id moodmic-kitchen taken over" in text, text
    finally:
        second.close(1.0)
        first.close(1.0)


def test_discovery_resend_on_home_assistant_online_is_spread(broker: Broker) -> None:
    """A hundred devices must not answer `homeassistant/status: online` in the same millisecond."""
    rec = Recorder(broker, ["homeassistant/#"], client_id="ha").start()
    pubs = [publisher(MqttSettings(host=broker.host, port=broker.port, device_id=f"d{i}")) for i in range(6)]
    for p in pubs:
        p.start()
    try:
        assert all(p.wait_connected(5) for p in pubs)
        assert rec.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/config")]) >= 18, 5)
        n0 = len(rec.messages)
        t0 = time.monotonic()
        arrivals: list[float] = []
        lock = threading.Lock()
        orig = rec._on_message

        def timed(*a: Any) -> None:
            with lock:
                arrivals.append(time.monotonic() - t0)
            orig(*a)

        rec.client.on_message = timed
        rec.client.publish("homeassistant/status", "online", qos=1)
        assert rec.wait_for(lambda ms: len(ms) >= n0 + 1 + 18, 15)
    finally:
        for p in pubs:
            p.close(1.0)
        rec.stop()
    configs = sorted(arrivals[1:])  # the first arrival is the status message itself
    assert configs[-1] - configs[0] > 0.5, configs  # spread, not a burst


@pytest.mark.parametrize("key, value", [("base_topic", "$SYS"), ("base_topic", "a/#"), ("base_topic", "a//b"),
                                        ("discovery_prefix", "ha\x00x"), ("discovery_prefix", "")])
def test_the_publisher_refuses_what_the_config_refuses_for_settings_made_in_code(key: str, value: str) -> None:
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=f"mqtt.{key}: "):
        publisher(MqttSettings(device_id="t", **{key: value}))
