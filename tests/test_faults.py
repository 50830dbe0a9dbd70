"""Faults against a real mosquitto on 127.0.0.1, counted: nothing the daemon promised is lost.

Each test injects one fault while the real daemon runs on real RAVDESS speech, then counts, from the
daemon's own figures and from a persistent QoS 1 subscriber:

- produced: state + event messages the daemon made (its `states`/`events` counters, each with a seq);
- acknowledged: PUBACKed by the broker (the publisher's final `acked`);
- received: distinct (kind, boot_id, seq) the subscriber got; duplicated: arrivals beyond that;
- lost (daemon) = produced - acknowledged - still queued/spooled - counted drops: must be 0;
- lost (broker): acknowledged but never received (mosquitto SIGKILLed before its autosave): reported;
- recovery: the broker back (listening / SIGCONT) -> the subscriber's first arrival of a new message.

Two ways to drive the daemon: `moodmic run` as a subprocess (what systemd starts; counts from its log),
and the same Daemon + MqttPublisher in this process, fed real speech through a GeneratorSource at
5x real time with a 0.05 s heartbeat, where many messages and exact key sets are wanted.

RELIABILITY.md's fault table comes from a real run of this module:

    MOODMIC_RELIABILITY_REPORT=RELIABILITY.md .venv/bin/python -m pytest tests/test_faults.py -m faults
"""

from __future__ import annotations

import configparser
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.config import Settings
from edge.daemon import Daemon
from edge.errors import EXIT_CONFIG
from edge.model import EmotionModel
from edge.mqtt import MqttPublisher, Tuning
from edge.sources import GeneratorSource

from broker import Broker, broker_fixture, daemon_config, start_daemon  # noqa: F401  (the `broker` fixture)
from conftest import REPO, SR, run_moodmic, sigterm, speech_file, wait_until
from faults_lib import Tally, TimedRecorder, daemon_counts, render_faults, speech_audio, tally, update_section

pytestmark = pytest.mark.faults

DEVICE = "testpi"
BASE = f"moodmic/{DEVICE}"
TOPICS = [f"{BASE}/state", f"{BASE}/event", f"{BASE}/availability"]
REPORT_ENV = "MOODMIC_RELIABILITY_REPORT"
COMMAND = f"{REPORT_ENV}=RELIABILITY.md .venv/bin/python -m pytest tests/test_faults.py -m faults"
_TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="module", autouse=True)
def reliability_report(request: pytest.FixtureRequest):
    """With $MOODMIC_RELIABILITY_REPORT set, write the tallies into that file's `faults` section."""
    t0 = time.monotonic()
    yield
    out = os.environ.get(REPORT_ENV)
    if not out:
        return
    if request.session.testsfailed or len(_TALLIES) < len(FAULTS):
        print(f"\n{REPORT_ENV}: not written ({request.session.testsfailed} failed, "
              f"{len(_TALLIES)}/{len(FAULTS)} faults counted)")
        return
    update_section(Path(out), "faults", render_faults([_TALLIES[f] for f in FAULTS], COMMAND,
                                                      time.monotonic() - t0))


FAULTS = ["broker SIGKILL + restart", "broker SIGKILL, subscriber offline", "broker unreachable at start-up",
          "broker refuses credentials", "slow subscriber", "partition (SIGSTOP > keepalive)",
          "SIGTERM during an outage", "outage beyond the queue bound"]


_LEFT: list = []  # what a failed test left running: DaemonRuns, `moodmic run` processes, recorders


@pytest.fixture(autouse=True)
def stop_what_is_left():
    """A failing test must not leave a daemon producing (or retrying) through the next tests."""
    yield
    while _LEFT:
        thing = _LEFT.pop()
        try:
            if isinstance(thing, subprocess.Popen):
                if thing.poll() is None:
                    thing.kill()
                    thing.wait(10)
            elif isinstance(thing, DaemonRun):
                thing.daemon.stop()
                thing._thread.join(10)
            else:
                thing.client.loop_stop()
        except Exception as exc:  # noqa: BLE001  (cleanup only)
            print(f"cleanup of {thing!r}: {exc}")


def left(thing):
    _LEFT.append(thing)
    return thing


def record(t: Tally) -> Tally:
    """Keep a fault's tally for the report (before the test's assertions, so a failure still prints it)."""
    assert t.fault in FAULTS
    t.test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    _TALLIES[t.fault] = t
    print("\n" + t.line())
    return t


def in_order(keys: list[tuple[str, str, int]], kind: str = "state") -> list[tuple[str, int]]:
    """First arrivals of `kind`, asserting each (boot_id, seq) first arrived after every smaller seq of its boot."""
    first = list(dict.fromkeys((b, s) for k, b, s in keys if k == kind))
    for boot in {b for b, _ in first}:
        seqs = [s for b, s in first if b == boot]
        assert seqs == sorted(seqs), f"{kind} of {boot} out of order: {seqs}"
    return first


# -- the daemon in this process -------------------------------------------------------------------
_MODEL: EmotionModel | None = None


def shipped_model() -> EmotionModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = EmotionModel.load()
    return _MODEL


class TapPublisher(MqttPublisher):
    """The real publisher, noting the key of every state and event the daemon hands it."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.made: list[tuple[str, str, int]] = []

    def publish_state(self, msg) -> None:  # type: ignore[no-untyped-def]
        self.made.append(("state", msg.boot_id, msg.seq))
        super().publish_state(msg)

    def publish_event(self, payload) -> None:  # type: ignore[no-untyped-def]
        self.made.append(("event", payload["boot_id"], payload["seq"]))
        super().publish_event(payload)


def paced(audio: np.ndarray, speed: float, block: int = 1600):
    """0.1 s blocks of `audio` at `speed` x real time."""
    t0 = time.monotonic()
    for i, start in enumerate(range(0, len(audio), block)):
        wait = t0 + i * block / SR / speed - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield audio[start:start + block]


class DaemonRun:
    """Daemon(settings, shipped model, paced real speech, MqttPublisher) in a thread; the queue is sampled."""

    def __init__(self, broker: Broker, tmp: Path, audio: np.ndarray, *, speed: float = 5.0,
                 state_interval: float = 0.05, queue_size: int = 1000, keepalive: int = 60) -> None:
        s = Settings()
        mqtt = replace(s.mqtt, host=broker.host, port=broker.port, device_id=DEVICE, state_interval=state_interval,
                       health_interval=1.0, queue_size=queue_size, keepalive=keepalive)
        self.settings = replace(s, mqtt=mqtt)
        model = shipped_model()
        self.spool = tmp / "state" / "spool.jsonl"
        self.pub = TapPublisher(mqtt, labels=model.labels, model_name=model.bundle.name,
                                model_sha=model.bundle.tflite_sha256, spool_path=self.spool, tuning=Tuning())
        self.daemon = Daemon(self.settings, model, GeneratorSource(paced(audio, speed), SR, SR), self.pub)
        self.max_queued = 0
        self.code: int | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="daemon", daemon=True)
        self._sampler = threading.Thread(target=self._sample, name="sampler", daemon=True)

    def _run(self) -> None:
        try:
            self.code = self.daemon.run()
        except BaseException as exc:  # noqa: BLE001  (reported by finish())
            self.code = exc

    def _sample(self) -> None:
        while self._thread.is_alive():
            self.max_queued = max(self.max_queued, self.pub.stats()["queued"])
            time.sleep(0.02)

    def start(self) -> DaemonRun:
        self._thread.start()
        self._sampler.start()
        return self

    def finish(self, timeout: float = 20.0) -> dict:
        self.daemon.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the daemon did not stop"
        assert self.code == 0, self.code
        return self.pub.stats()

    def spooled_keys(self) -> set[tuple[str, str, int]]:
        if not self.spool.exists():
            return set()
        out = set()
        for line in self.spool.read_text().splitlines():
            d = json.loads(line)
            p = json.loads(d["payload"])
            out.add((d["topic"].rsplit("/", 1)[-1], p["boot_id"], p["seq"]))
        return out


def settle(rec: TimedRecorder, expected: int, boots: set[str], timeout: float = 10.0) -> None:
    """Wait until the subscriber holds `expected` distinct keys of `boots` (or the timeout: broker loss)."""
    wait_until(lambda: len({k for _, k in rec.keyed(BASE) if k[1] in boots}) >= expected, timeout, every=0.2)


def availability(rec: TimedRecorder) -> list[str]:
    return [m.text() for m in rec.on(f"{BASE}/availability")]


# -- (1) broker SIGKILL ---------------------------------------------------------------------------
def test_broker_sigkilled_and_restarted_5_times_during_a_replay(broker, ravdess, tmp_path):
    rec = left(TimedRecorder(broker, TOPICS).start())
    broker.wait_saved(since=time.time())  # the subscriber's session survives the first SIGKILL
    run = left(DaemonRun(broker, tmp_path, speech_audio(ravdess, 400, seed=1)).start())
    assert wait_until(lambda: run.pub.stats()["acked"] >= 20, 20)
    recoveries, queued_in_outage = [], []
    for _ in range(5):  # the scenario's timing: 2.5 s up and delivering, then 2 s down
        time.sleep(2.5)
        broker.kill()
        time.sleep(2.0)  # the daemon keeps producing into its queue meanwhile
        queued_in_outage.append(run.pub.stats()["queued"])
        broker.start()
        back = time.monotonic()
        assert wait_until(lambda back=back: rec.first_new_after(BASE, back) is not None, 40), "no delivery after the restart"
        recoveries.append(rec.first_new_after(BASE, back))
    time.sleep(1.0)  # the scenario: 1 s more of delivery after the last recovery
    st = run.finish()
    boot = run.daemon.boot_id
    pending = run.spooled_keys()
    settle(rec, len(set(run.pub.made)) - len(pending), {boot})
    keys = [k for _, k in rec.keyed(BASE)]
    t = record(tally("broker SIGKILL + restart", 5, produced=run.pub.made,
                     arrivals=keys, acked=st["acked"], dropped=st["dropped"], pending=pending, recovery_s=recoveries,
                     boots={boot},
                     notes=f"In-process daemon, 5x real time, 0.05 s heartbeat; {st['reconnects']} reconnects; "
                           f"queued during the outages {queued_in_outage}; re-sent after reconnects {st['resent']} "
                           "(in flight at the kill, or the last state repeated)."))
    assert len(run.pub.made) == run.daemon.counters.states + run.daemon.counters.events
    assert t.lost_daemon == 0 and t.dropped == 0 and st["reconnects"] == 5
    assert min(queued_in_outage) > 0  # the daemon really produced during every outage
    in_order(keys)
    assert availability(rec)[-1] == "offline"  # the clean shutdown's
    rec.stop()


def test_broker_sigkilled_while_the_subscriber_is_offline_loses_only_what_it_had_not_saved(broker, ravdess,
                                                                                         tmp_path):
    """The broker's own loss, counted apart: it acknowledged messages for an offline persistent subscriber,
    then died before its autosave (every 1 s here; mosquitto's default is 1800 s)."""
    rec = left(TimedRecorder(broker, TOPICS).start())
    broker.wait_saved(since=time.time())  # the subscriber's session survives the SIGKILL
    run = left(DaemonRun(broker, tmp_path, speech_audio(ravdess, 200, seed=2)).start())
    assert wait_until(lambda: run.pub.stats()["acked"] >= 20, 20)
    rec.stop()  # Home Assistant restarting: its session (and what arrives for it) stays in the broker
    time.sleep(2.5)  # the scenario: the subscriber is away for 2.5 s before the SIGKILL
    acked_offline = run.pub.stats()["acked"]
    broker.kill()
    before_kill = set(run.pub.made)
    time.sleep(1.0)  # the scenario: the broker is down for 1 s
    broker.start()
    back = time.monotonic()
    rec.client.connect_async(broker.host, broker.port, keepalive=5)  # the same session again
    rec.client.loop_start()
    # recovery: the first message the daemon produced after the SIGKILL (not the broker's saved backlog)
    assert wait_until(lambda: rec.first_new_after(BASE, back, before_kill) is not None, 40)
    recovery = rec.first_new_after(BASE, back, before_kill)
    time.sleep(1.0)  # the scenario: 1 s more of delivery after the recovery
    st = run.finish()
    boot = run.daemon.boot_id
    pending = run.spooled_keys()
    settle(rec, len(set(run.pub.made)) - len(pending), {boot}, timeout=5)
    keys = [k for _, k in rec.keyed(BASE)]
    t = record(tally("broker SIGKILL, subscriber offline", 1, produced=run.pub.made, arrivals=keys, acked=st["acked"],
                     dropped=st["dropped"], pending=pending, recovery_s=[recovery], boots={boot},
                     notes=f"In-process daemon; the subscriber was offline for the 2.5 s before the SIGKILL, while "
                           f"the broker acknowledged {acked_offline} messages in all; lost (broker) are those it had "
                           "acknowledged since its last autosave (`autosave_interval 1` in tests/broker.py)."))
    assert t.lost_daemon == 0 and t.dropped == 0
    rec.stop()


# -- (2) broker unreachable at start-up ------------------------------------------------------------
def notify_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.05)
    return server


def drain(server: socket.socket, into: list[tuple[float, str]]) -> list[tuple[float, str]]:
    while True:
        try:
            into.append((time.monotonic(), server.recv(4096).decode()))
        except (TimeoutError, BlockingIOError):
            return into


def statuses(messages: list[tuple[float, str]]) -> list[tuple[float, str]]:
    return [(t, line[len("STATUS="):]) for t, m in messages for line in m.splitlines() if line.startswith("STATUS=")]


def test_broker_unreachable_at_start_up_waits_reports_status_and_delivers(broker, ravdess, tmp_path, monkeypatch):
    rec = left(TimedRecorder(broker, TOPICS).start())
    broker.stop()  # SIGTERM: mosquitto saves the subscriber's session on exit; nothing listens on the port now
    server = notify_socket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    wav = speech_file(ravdess, tmp_path / "speech.wav", clips=4, seed=3)
    daemon = left(start_daemon(daemon_config(tmp_path / "c.yaml", broker), wav))
    messages: list[tuple[float, str]] = []
    deadline = time.monotonic() + 7.0  # the scenario: the broker stays away for the first 7 s of the replay
    while time.monotonic() < deadline:
        drain(server, messages)
        time.sleep(0.05)
    assert daemon.poll() is None, daemon.communicate()[1]
    before = statuses(messages)
    assert any(m.startswith("READY=1") for _, m in messages)  # the service is up without its broker
    assert any("MQTT" in s and "unreachable" in s for _, s in before), before
    broker.start()
    back = time.monotonic()
    assert wait_until(lambda: rec.first_new_after(BASE, back) is not None, 40)
    recovery = rec.first_new_after(BASE, back)
    assert wait_until(lambda: "unreachable" not in statuses(drain(server, messages))[-1][1], 10), \
        statuses(messages)[-3:]
    _, err = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, err
    c = daemon_counts(err)
    boots = {k[1] for _, k in rec.keyed(BASE)}
    settle(rec, c["states"] + c["events"] - c["spooled"], boots)
    keys = [k for _, k in rec.keyed(BASE)]
    shown = [s for _, s in before if "unreachable" in s]
    t = record(tally("broker unreachable at start-up", 1,
                     produced=c["states"] + c["events"], arrivals=keys, acked=c["acked"], dropped=c["dropped"],
                     pending=c["spooled"], recovery_s=[recovery],
                     notes=f"`moodmic run` (real time, 1 s heartbeat), broker away for the first 7 s; the daemon "
                           f"was READY and said `STATUS={shown[-1]}`."))
    assert len(boots) == 1 and t.lost_daemon == 0 and t.lost_broker == 0 and t.pending == 0
    assert [s for _, s in in_order(keys)] == list(range(1, c["states"] + 1))  # every seq from 1, in order
    rec.stop()


# -- (3) broker refusing credentials ----------------------------------------------------------------
def unit_service(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(path.read_text())
    return parser["Service"]


def test_broker_refusing_credentials_exits_78_once_and_systemd_does_not_restart(tmp_path, ravdess, monkeypatch):
    for unit in ("moodmic.service", "moodmic-user.service"):  # systemd: 78 ends it, no restart loop
        service = unit_service(REPO / "systemd" / unit)
        assert service["Restart"] == "on-failure", unit
        assert "78" in service["RestartPreventExitStatus"].split(), unit
    with Broker(tmp_path / "b", users={"moodmic": "right", "ha": "ha-pw"}) as b:
        rec = left(TimedRecorder(b, TOPICS, username="ha", password="ha-pw").start())
        cfg = daemon_config(tmp_path / "c.yaml", b, username="moodmic")
        wav = speech_file(ravdess, tmp_path / "s.wav", 3)
        refused = lambda: b.log_text().count("not authorised")  # noqa: E731

        # a wrong password from the start: one CONNECT, exit 78
        t0 = time.monotonic()
        first = run_moodmic("run", "--config", str(cfg), "--source", f"file:{wav}", "--mqtt", "on",
                            env={"MOODMIC_MQTT_PASSWORD": "Xq7-not-it"}, timeout=60)
        took_first = time.monotonic() - t0
        assert first.returncode == EXIT_CONFIG, first.stderr
        assert took_first < 15, took_first  # model load + one refused CONNECT, not a replay of the whole file
        assert wait_until(lambda: refused() >= 1, 5), b.log_text()  # the broker's log file lags a little
        assert refused() == 1, "the daemon retried a refused login"  # it has exited: no more can come
        assert first.stderr.count("moodmic: error:") == 1 and "Xq7-not-it" not in first.stderr
        last_line = first.stderr.strip().splitlines()[-1]  # the error says what is wrong
        assert last_line.startswith("moodmic: error:"), last_line
        assert any(word in last_line.lower() for word in ("password", "not authori", "credentials")), last_line

        # the password changed on the broker mid-run: the reconnect is refused, exit 78, the rest spooled
        monkeypatch.setenv("MOODMIC_MQTT_PASSWORD", "right")
        daemon = left(start_daemon(cfg, wav))
        assert rec.wait_for(lambda m: sum(x.topic == f"{BASE}/state" for x in m) >= 3, 20)
        subprocess.run(["mosquitto_passwd", "-b", str(b.root / "passwd"), "moodmic", "rotated"], check=True,
                       capture_output=True, timeout=30)
        b.stop()
        b.start()
        t1 = time.monotonic()
        _, err = daemon.communicate(timeout=30)
        took_mid = time.monotonic() - t1
        assert daemon.returncode == EXIT_CONFIG, err
        assert wait_until(lambda: refused() >= 2, 5), b.log_text()
        assert took_mid < 10 and refused() == 2, (took_mid, refused())
        mid = daemon_counts(err)
        assert mid["spooled"] > 0

        # fixed: the next start sends the spool first
        again = run_moodmic("run", "--config", str(cfg), "--sample", "--fast", "--mqtt", "on",
                            env={"MOODMIC_MQTT_PASSWORD": "rotated"}, timeout=60)
        assert again.returncode == 0, again.stderr
        last = daemon_counts(again.stderr)
        counts = [daemon_counts(first.stderr), mid, last]
        produced = sum(c["states"] + c["events"] for c in counts)
        assert wait_until(lambda: len({k[1] for _, k in rec.keyed(BASE)}) == 2, 10)
        settle(rec, produced - last["spooled"], {k[1] for _, k in rec.keyed(BASE)})
        keys = [k for _, k in rec.keyed(BASE)]
        rec.stop()
    t = record(tally("broker refuses credentials", 2, produced=produced, arrivals=keys,
                     acked=sum(c.get("acked", 0) for c in counts), dropped=sum(c.get("dropped", 0) for c in counts),
                     pending=last["spooled"],
                     notes=f"`moodmic run`: a wrong password at start-up exits 78 after {took_first:.1f} s (model load "
                           f"included); the password changed on the broker mid-run exits 78 {took_mid:.1f} s after the "
                           f"broker's restart with {mid['spooled']} spooled, which the next start with the "
                           "new password delivers first. One refused CONNECT per run in the broker's log; both units "
                           "have Restart=on-failure with RestartPreventExitStatus=78, so systemd does not restart it."))
    assert last["loaded"] == mid["spooled"] and t.lost_daemon == 0 and t.lost_broker == 0 and t.pending == 0
    in_order(keys)


# -- (4) a slow subscriber --------------------------------------------------------------------------
class SlowSubscriber(TimedRecorder):
    """MQTT 5, persistent session, Receive Maximum 1 (one unacknowledged message at a time from the
    broker), and `delay` seconds of work per message in the network thread."""

    def __init__(self, broker: Broker, topics: list[str], delay: float) -> None:
        super().__init__(broker, topics, client_id="slow")
        import paho.mqtt.client as mqtt

        self.delay = delay
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="slow", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect, self.client.on_subscribe = self._on_connect, self._on_subscribe
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        super()._on_message(client, userdata, msg)

    def start(self, timeout: float = 10.0) -> SlowSubscriber:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 1
        self.client.connect_async(self._broker.host, self._broker.port, keepalive=5, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        with self._cv:
            if not self._cv.wait_for(lambda: self._subscribed, timeout):
                raise TimeoutError("slow subscriber not subscribed")
        return self


def test_slow_subscriber_loses_nothing_and_the_daemon_queue_stays_bounded(broker, ravdess, tmp_path):
    rec = left(SlowSubscriber(broker, [f"{BASE}/state", f"{BASE}/event"], delay=0.04).start())
    run = left(DaemonRun(broker, tmp_path, speech_audio(ravdess, 200, seed=4), state_interval=0.02,
                         queue_size=100).start())
    time.sleep(10.0)  # the scenario: 10 s of production faster than the subscriber takes it
    made = len(set(run.pub.made))
    behind = made - len(rec.keyed(BASE))  # what the broker holds for the slow subscriber
    st = run.finish()
    lag_acked = made - st["acked"]
    boot = run.daemon.boot_id
    t0 = time.monotonic()
    settle(rec, len(set(run.pub.made)) - len(run.spooled_keys()), {boot}, timeout=60)
    drained = time.monotonic() - t0
    keys = [k for _, k in rec.keyed(BASE)]
    t = record(tally("slow subscriber", 1,
                     produced=run.pub.made, arrivals=keys, acked=st["acked"], dropped=st["dropped"],
                     pending=run.spooled_keys(),
                     notes=f"In-process daemon, 0.02 s heartbeat (~{made / 10:.0f} messages/s), queue_size 100; the "
                           f"subscriber (MQTT 5, Receive Maximum 1, 40 ms per message) was {behind} messages behind "
                           f"after 10 s and needed {drained:.1f} s more; the daemon's queue never held more than "
                           f"{run.max_queued} (the broker holds the backlog, up to its max_queued_messages, 1000 by "
                           "default)."))
    assert behind > 50, "the subscriber was not slow enough to test anything"
    assert run.max_queued <= 50 and lag_acked < behind  # PUBACKs do not wait for the subscriber
    assert t.lost_daemon == 0 and t.dropped == 0 and t.lost_broker == 0 and t.duplicated == 0
    assert t.received == t.produced
    in_order(keys)
    rec.stop()


# -- (5) partition: SIGSTOP longer than keepalive ---------------------------------------------------
def test_partition_by_sigstop_longer_than_keepalive(broker, ravdess, tmp_path):
    rec = left(TimedRecorder(broker, TOPICS).start())
    run = left(DaemonRun(broker, tmp_path, speech_audio(ravdess, 300, seed=5), keepalive=5).start())
    assert wait_until(lambda: run.pub.stats()["acked"] >= 20, 20)
    time.sleep(1.0)  # the scenario: 1 s more of normal delivery before the partition
    broker.pause()
    paused = time.monotonic()
    assert wait_until(lambda: not run.pub.stats()["connected"], 20), "keepalive did not end the connection"
    detected, detect_s, before_cut = run.pub.stats(), time.monotonic() - paused, set(run.pub.made)
    time.sleep(4.0)  # the scenario: 4 s past the detection, the daemon queueing and retrying
    queued = run.pub.stats()["queued"]
    broker.resume()
    back = time.monotonic()
    # New: produced after the link was declared dead. (What was in flight at SIGSTOP sits in the
    # broker's socket buffer and is forwarded the moment it runs again: that is not the daemon's recovery.)
    new_after = lambda: rec.first_new_after(BASE, back, before_cut)  # noqa: E731
    assert wait_until(lambda: new_after() is not None, 40)
    recovery = new_after()
    time.sleep(2.0)  # the scenario: 2 s for a stale Last Will to show up, if the broker were to send one
    online_at_end = availability(rec)[-1]
    st = run.finish()
    boot = run.daemon.boot_id
    pending = run.spooled_keys()
    settle(rec, len(set(run.pub.made)) - len(pending), {boot})
    keys = [k for _, k in rec.keyed(BASE)]
    t = record(tally("partition (SIGSTOP > keepalive)", 1, produced=run.pub.made,
                     arrivals=keys, acked=st["acked"], dropped=st["dropped"], pending=pending, recovery_s=[recovery],
                     notes=f"In-process daemon, mqtt.keepalive 5 s; the broker was stopped for {back - paused:.0f} s, "
                           f"the daemon declared the link dead after {detect_s:.1f} s; {queued} queued at SIGCONT; "
                           f"re-sent {st['resent']}; recovery = SIGCONT -> first message produced after the link was "
                           "declared dead."))
    assert detected["acked"] > 0 and queued > 0
    assert t.lost_daemon == 0 and t.dropped == 0
    assert online_at_end == "online", availability(rec)  # a late Last Will must not mark a live daemon offline
    in_order(keys)
    rec.stop()


# -- (6) SIGTERM during an outage --------------------------------------------------------------------
def test_sigterm_during_an_outage_spools_then_delivers_after_restart(broker, ravdess, tmp_path):
    """`moodmic run` SIGTERMed in an outage: it spools, exits 0 promptly, and the next start sends the spool
    first, in order, counted. (The spool file itself, at the publisher: tests/test_mqtt.py.)"""
    rec = left(TimedRecorder(broker, TOPICS).start())
    cfg = daemon_config(tmp_path / "c.yaml", broker)
    daemon = left(start_daemon(cfg, speech_file(ravdess, tmp_path / "speech.wav", clips=4, seed=6)))
    assert rec.wait_for(lambda m: any(x.topic == f"{BASE}/state" for x in m), 20)
    broker.stop()
    time.sleep(6.0)  # the scenario: 6 s of outage, heartbeats every second piling up in the daemon's queue
    stop_s, err1 = sigterm(daemon)
    assert daemon.returncode == 0, err1
    first = daemon_counts(err1)
    spool = tmp_path / "state" / "spool.jsonl"
    spooled = len(spool.read_text().splitlines())
    spool_keys = set()
    for line in spool.read_text().splitlines():
        d = json.loads(line)
        p = json.loads(d["payload"])
        spool_keys.add((d["topic"].rsplit("/", 1)[-1], p["boot_id"], p["seq"]))
    broker.start()
    back = time.monotonic()
    again = run_moodmic("run", "--config", str(cfg), "--sample", "--fast", "--mqtt", "on", timeout=60)
    assert again.returncode == 0, again.stderr
    second = daemon_counts(again.stderr)
    produced = first["states"] + first["events"] + second["states"] + second["events"]
    assert wait_until(lambda: len({k[1] for _, k in rec.keyed(BASE)}) == 2, 10)
    boots = {k[1] for _, k in rec.keyed(BASE)}
    settle(rec, produced - second["spooled"], boots)
    keys = [k for _, k in rec.keyed(BASE)]
    first_boot = keys[0][1]
    # recovery: until every spooled message has arrived (one may come sooner from the broker's own
    # store: handed before the outage, never acknowledged)
    first_seen = {}
    for t_, k in rec.keyed(BASE):
        first_seen.setdefault(k, t_)
    recovery = max(first_seen[k] for k in spool_keys) - back
    second_boot = next(b for b in boots if b != first_boot)
    assert recovery < min(t_ for k, t_ in first_seen.items() if k[1] == second_boot) - back  # the spool came first
    t = record(tally("SIGTERM during an outage", 1,
                     produced=produced, arrivals=keys, acked=first["acked"] + second["acked"],
                     dropped=first["dropped"] + second["dropped"], pending=second["spooled"], recovery_s=[recovery],
                     notes=f"`moodmic run` SIGTERMed 6 s into a broker outage: exit 0 in {stop_s:.1f} s, {spooled} "
                           f"spooled; the next start (`run --sample --fast`) sent them first ({second['loaded']} "
                           "loaded); recovery = broker back -> the last spooled message at the subscriber, the new "
                           "process's start-up included. The same fault at the publisher alone, in the default "
                           "tests: `tests/test_mqtt.py::"
                           "test_close_during_outage_spools_and_the_next_start_sends_it_first`."))
    assert first["spooled"] == spooled >= 2 and second["loaded"] == spooled and stop_s < 3.0
    assert len(boots) == 2 and t.lost_daemon == 0 and t.lost_broker == 0 and t.pending == 0
    assert [s for b, s in in_order(keys) if b == first_boot] == list(range(1, first["states"] + 1))
    assert not spool.exists()
    rec.stop()


# -- beyond the queue bound ---------------------------------------------------------------------------
def test_an_outage_beyond_the_queue_bound_drops_the_oldest_and_counts_them(broker, ravdess, tmp_path):
    """The one place the daemon gives messages up: more than mqtt.queue_size while the broker is away.
    Every one of them is counted (`dropped`), so the daemon's own loss stays 0."""
    rec = left(TimedRecorder(broker, TOPICS).start())
    run = left(DaemonRun(broker, tmp_path, speech_audio(ravdess, 200, seed=7), queue_size=30).start())
    assert wait_until(lambda: run.pub.stats()["acked"] >= 20, 20)
    broker.stop()
    time.sleep(5.0)  # the scenario: the broker away for 5 s, more than the queue holds
    broker.start()
    back = time.monotonic()
    assert wait_until(lambda: rec.first_new_after(BASE, back) is not None, 40)
    recovery = rec.first_new_after(BASE, back)
    time.sleep(1.0)  # the scenario: 1 s more of delivery after the recovery
    st = run.finish()
    boot = run.daemon.boot_id
    pending = run.spooled_keys()
    settle(rec, len(set(run.pub.made)) - len(pending) - st["dropped"], {boot})
    keys = [k for _, k in rec.keyed(BASE)]
    missing = set(run.pub.made) - set(keys) - pending
    t = record(tally("outage beyond the queue bound", 1, produced=run.pub.made, arrivals=keys, acked=st["acked"],
                     dropped=st["dropped"], pending=pending, recovery_s=[recovery], boots={boot},
                     notes=f"In-process daemon, mqtt.queue_size 30, broker stopped for 5 s (~20 messages/s; the "
                           f"reconnect came {recovery:.1f} s after it was back): {st['dropped']} dropped, exactly the "
                           "messages missing at the subscriber, one run of the oldest; each is counted in `dropped`, "
                           "so lost (daemon) stays 0."))
    assert st["dropped"] > 0 and len(missing) == st["dropped"]
    where = sorted(run.pub.made.index(k) for k in missing)  # the oldest in the queue: one run of production order
    assert where == list(range(where[0], where[0] + len(where)))
    assert t.lost_daemon == 0 and t.lost_broker == 0
    in_order(keys)
    rec.stop()
