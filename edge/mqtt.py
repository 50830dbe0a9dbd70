"""MQTT publisher: states and events delivered at least once, in order, through outages and restarts.

Delivery path: publish_state/publish_event append to our bounded queue (oldest dropped and counted);
one pump thread hands messages to paho only while connected, at most `Tuning.inflight` unacknowledged
at a time; paho's network thread runs the callbacks. A message handed but not yet acknowledged when
the connection drops stays in paho's session store, and paho re-sends it (DUP) right after the next
CONNACK, before anything newer: after a (re)connect the pump resumes only once the birth message
("online", published from on_connect) is acknowledged, and paho handles that PUBACK only after it
has queued the re-send. close() spools whatever is still unacknowledged; the next start() sends it
first.

MQTT 5 by default: its PUBACK carries a reason code, so a broker ACL that denies our topics is a
configuration fault (exit 78, the messages spooled) instead of messages acknowledged and discarded, as
a 3.1.1 broker does (mqtt.protocol: "3.1.1" remains for old brokers, with that limit).

Two devices with one device id (two Pis named `raspberrypi` before edge.identity, or one config copied)
take the client id from each other, and mosquitto 2.0 just closes the older connection. So each process
claims the device: a retained `claim` message with its own id. On a reconnect it first reads the
retained claim, then claims again; a claim by another process, made after this one started, is a
takeover: logged once, counted in health (`takeovers`) and shown in STATUS=.

Threads: check() raises InternalFault if paho's network thread or our delivery thread has died, so
the daemon exits non-zero and systemd restarts it.

Locking: `_cv` guards our state. Paho holds its own mutex while it calls on_publish, so nothing here
calls into paho while holding `_cv` (that order would deadlock).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import threads
from .config import MqttSettings, topic_rule
from .discovery import discovery_configs
from .errors import ConfigError, shown
from .identity import device_identity
from .schema import StateMessage
from .topics import Topics, ha_status_topic

_LOG = logging.getLogger(__name__)
ENV_PASSWORD = "MOODMIC_MQTT_PASSWORD"
ONLINE, OFFLINE = "online", "offline"
# CONNACK refusals that retrying cannot fix (MQTT 5 reason codes; paho maps 3.1.1's 2, 4, 5 to them).
_FATAL_CONNACK = {
    133: "fix mqtt.client_id",
    134: "fix mqtt.username and the password (mqtt.password_file or $" + ENV_PASSWORD + ")",
    135: "fix mqtt.username and the password (mqtt.password_file or $" + ENV_PASSWORD + "), or the broker's ACL",
    138: "the broker has banned this client; ask its administrator",
}
NOT_AUTHORIZED = 135  # an MQTT 5 PUBACK's reason code when the broker's ACL denies the topic
CLOCK_SLACK_S = 5.0  # a claim stamped this long before our start is from a previous run, not a rival
SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5: the broker keeps our session (as 3.1.1's clean_session=False)
MAX_SPOOL_PAYLOAD = 1 << 20  # bytes; our own messages are a few hundred


@dataclass(frozen=True)
class Tuning:
    """Delivery constants that are not user settings (tests shorten the delays)."""

    inflight: int = 20  # our messages handed to paho and not yet acknowledged
    reconnect_min_s: float = 1.0  # paho doubles the delay after each failed attempt ...
    reconnect_max_s: float = 30.0  # ... up to this; each publisher stretches both by a random 0-50 % (jitter)
    connect_timeout_s: float = 5.0  # TCP connect + TLS handshake
    # Home Assistant's `online` reaches every device at once: each answers after a random 0..this delay
    discovery_jitter_s: float = 5.0


class _Client(mqtt.Client):
    """paho's client, remembering its network thread: paho forgets it when the thread ends, and a thread
    that dies at once (a struct.error on a 70,000-character client id) may end before loop_start returns."""

    network_thread: threading.Thread | None = None

    def _thread_main(self) -> None:
        self.network_thread = threading.current_thread()
        super()._thread_main()


@dataclass(frozen=True)
class _Msg:
    topic: str
    payload: str
    retain: bool
    qos: int
    from_spool: bool = False
    repeat: bool = False  # the last state again after a reconnect: counted as `resent`, never spooled


def read_password(settings: MqttSettings) -> str | None:
    """$MOODMIC_MQTT_PASSWORD, else mqtt.password_file without its trailing newline; None if neither is set."""
    if ENV_PASSWORD in os.environ:
        return os.environ[ENV_PASSWORD]
    if not settings.password_file:
        return None
    path = Path(settings.password_file)
    try:
        if os.stat(path).st_mode & 0o066:
            raise ConfigError(f"mqtt.password_file {path} is readable or writable by group or others; "
                              f"run: chmod 600 {path}")
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mqtt.password_file {path} cannot be read ({exc.__class__.__name__}: "
                          f"{getattr(exc, 'strerror', None) or exc}); fix the path or its owner") from None


class MqttPublisher:
    """Publishes one device's availability, discovery, state, event and health messages."""

    def __init__(self, settings: MqttSettings, *, labels: tuple[str, ...], model_name: str, model_sha: str,
                 spool_path: Path | None, tuning: Tuning = Tuning(), device: str | None = None) -> None:
        """`device`: this device's id (edge.identity); by default resolved from the settings and the
        spool's folder (the state directory)."""
        self._s, self._t, self._spool_path = settings, tuning, spool_path
        self._model = f"{model_name} ({model_sha[:12]})"
        self.device_id = device or device_identity(settings, spool_path.parent if spool_path else None)
        for key in ("base_topic", "discovery_prefix"):  # the config checked them; settings made in code too
            if (why := topic_rule(getattr(settings, key))) is not None:
                raise ConfigError(f"mqtt.{key}: {shown(getattr(settings, key))} {why}")
        base = f"{settings.base_topic}/{self.device_id}"
        self.topics = Topics.under(base)
        self._ha_status = ha_status_topic(settings.discovery_prefix)
        self._discovery = [(topic, json.dumps(payload)) for topic, payload in discovery_configs(
            prefix=settings.discovery_prefix, device_id=self.device_id, base=base, labels=labels,
            model_name=model_name, qos=settings.qos, expire_after=expire_after(settings))] if settings.discovery else []
        self._client_id = settings.client_id or f"moodmic-{self.device_id}"
        self._client = self._make_client()
        self._cv = threading.Condition()
        self._queue: deque[_Msg] = deque()
        self._inflight: OrderedDict[int, _Msg] = OrderedDict()  # mid -> message, in the order handed
        self._n = dict.fromkeys(("handed", "acked", "dropped", "reconnects", "spooled", "unspooled", "resent",
                                 "spool_rejected", "takeovers"), 0)
        self._connected = self._ready = self._ever_connected = self._outage_logged = False
        self._stop = self._closing = self._handing = False
        self._refused: str | None = None
        self._last_state: _Msg | None = None
        self._birth_mid: int | None = None
        self._own: dict[int, str] = {}  # mid -> topic of our birth and discovery messages (not in _inflight)
        self._early: set[int] = set()  # PUBACKs that beat the pump's bookkeeping of their mid
        self._epoch = 0  # connections so far: a QoS 0 hand that straddles a reconnect is re-queued
        self._spool_left = 0  # messages from the previous spool neither acknowledged nor dropped yet
        self._spool_loaded = False
        self._pump_thread: threading.Thread | None = None
        self._claim_id, self._since = uuid.uuid4().hex[:12], round(time.time(), 3)
        self._claim = json.dumps({"id": self._claim_id, "host": socket.gethostname(), "since": self._since})

    # -- set-up -------------------------------------------------------------------------------------
    def _make_client(self) -> _Client:
        s = self._s
        if s.protocol == "5":
            client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5)
        else:  # the broker keeps our session
            client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311,
                             clean_session=False)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        password = read_password(s)
        if s.username:
            client.username_pw_set(s.username, password)
        elif password is not None:
            raise ConfigError("a broker password is set but mqtt.username is empty; set mqtt.username")
        if s.tls:
            if s.keyfile and not s.certfile:
                raise ConfigError("mqtt.keyfile is set without mqtt.certfile; set both or neither")
            try:  # verification stays on: CERT_REQUIRED and the host name must match the certificate
                client.tls_set(ca_certs=s.ca_certs or None, certfile=s.certfile or None, keyfile=s.keyfile or None,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mqtt TLS files cannot be used ({exc}); fix mqtt.ca_certs, mqtt.certfile "
                                  "and mqtt.keyfile") from None
        elif s.ca_certs or s.certfile or s.keyfile:
            raise ConfigError("mqtt.ca_certs/certfile/keyfile are set but mqtt.tls is false; set mqtt.tls: true")
        elif password is not None:
            _LOG.warning("the MQTT password is sent without TLS (mqtt.tls is false)")
        # paho never queues on its own: everything it holds is in flight, so its re-send keeps our order.
        cap = self._t.inflight + len(self._discovery) + 8  # + birth, offline, repeat of the last state
        client.max_inflight_messages_set(cap)
        client.max_queued_messages_set(cap)
        # Jitter: after a broker restart, a hundred devices must not reconnect in the same instant.
        stretch = 1.0 + random.random() / 2
        client.reconnect_delay_set(self._t.reconnect_min_s * stretch, self._t.reconnect_max_s * stretch)  # type: ignore[arg-type]
        client.connect_timeout = self._t.connect_timeout_s
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background (retrying forever with backoff) and start handing messages."""
        if self._pump_thread is not None:
            return
        threads.install()
        self._unspool()
        s = self._s
        _LOG.info("MQTT %s: publishing to %s/%s/* on %s:%d%s as client %s, model %s", s.protocol, s.base_topic,
                  self.device_id, s.host, s.port, " (TLS)" if s.tls else "", self._client_id, self._model)
        if s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False, properties=props)
        else:
            _LOG.warning("MQTT 3.1.1: a broker whose ACL denies our topics still acknowledges them; mqtt.protocol "
                         "'5' reports that")
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive)
        self._client.loop_start()
        self._pump_thread = threading.Thread(target=self._pump, name="moodmic-mqtt-pump", daemon=True)
        self._pump_thread.start()

    # -- the daemon's calls -------------------------------------------------------------------------
    def wait_connected(self, timeout: float) -> bool:
        with self._cv:
            self._cv.wait_for(lambda: self._ready or self._refused is not None, timeout)
            return self._ready

    def publish_state(self, msg: StateMessage) -> None:
        m = _Msg(self.topics.state, json.dumps(msg.to_dict()), retain=True, qos=self._s.qos)
        with self._cv:
            self._last_state = m
            self._enqueue(m)

    def publish_event(self, payload: dict[str, Any]) -> None:
        with self._cv:
            self._enqueue(_Msg(self.topics.event, json.dumps(payload), retain=False, qos=self._s.qos))

    def publish_health(self, payload: dict[str, Any]) -> None:
        """QoS 0 straight to paho, outside our queue: a health message is stale by the next one."""
        with self._cv:
            ready = self._ready and not self._closing
        if ready:
            self._client.publish(self.topics.health, json.dumps(payload), qos=0, retain=False)

    def check(self) -> None:
        """Raise what the daemon must exit on: a refusal (ConfigError, 78) or a dead thread (InternalFault, 70)."""
        with self._cv:
            if self._refused is not None:
                raise ConfigError(self._refused)
            if self._stop:
                return
        threads.check_alive(self._pump_thread, "MQTT delivery thread")
        threads.check_alive(self._client.network_thread, "MQTT network thread (paho)")

    def stats(self) -> dict[str, Any]:
        with self._cv:
            return {"connected": self._connected, "queued": len(self._queue), "client_id": self._client_id, **self._n}

    def close(self, timeout: float = 2.0) -> None:
        """Spool what is unacknowledged, publish `offline`, disconnect; returns within about `timeout`."""
        deadline = time.monotonic() + timeout
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        with self._cv:  # a healthy connection gets a moment to drain, so a restart leaves no spool
            self._cv.wait_for(lambda: not self._ready or not (self._queue or self._inflight), timeout / 2)
            self._stop = self._closing = True
            connected = self._connected
            self._cv.notify_all()
        if self._pump_thread is not None:
            self._pump_thread.join(left())
            if connected:  # PUBACKs come in order: once `offline` is acknowledged, so is all before it
                try:
                    info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
                    info.wait_for_publish(left() / 2)
                except Exception as exc:  # noqa: BLE001  (whatever paho does, the spool below must be written)
                    _LOG.warning("MQTT: `offline` not published at close (%s)", exc)
            self._client.disconnect()
            stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
            stopper.start()
            stopper.join(left())  # a connect stuck in TCP/TLS is abandoned (daemon thread)
        with self._cv:
            rest = [m for m in (*self._inflight.values(), *self._queue) if not m.repeat]
            self._n["spooled"] = len(rest) if _save_spool(self._spool_path, rest) else 0
            n = dict(self._n)
        _LOG.info("MQTT closed: %d acknowledged, %d dropped, %d spooled", n["acked"], n["dropped"], n["spooled"])

    # -- our queue and the pump ---------------------------------------------------------------------
    def _enqueue(self, m: _Msg) -> None:  # holding _cv
        if len(self._queue) >= self._s.queue_size:
            old = self._queue.popleft()
            self._n["dropped"] += 1
            self._spool_left -= old.from_spool
        self._queue.append(m)
        self._cv.notify_all()

    def _pump(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or (self._spool_loaded and self._spool_left == 0) or (
                    self._ready and self._refused is None and bool(self._queue)
                    and len(self._inflight) < self._t.inflight))
                if self._stop:
                    return
                if self._spool_loaded and self._spool_left == 0:  # all of it delivered: a crash must not resend
                    self._spool_loaded = False
                    _save_spool(self._spool_path, [])
                    continue
                m, epoch = self._queue.popleft(), self._epoch
                self._handing = True
                self._early.clear()
            try:
                info = self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            except BaseException:  # the thread dies (check() reports it); the message is kept for the spool
                with self._cv:
                    self._handing = False
                    self._queue.appendleft(m)
                raise
            with self._cv:
                self._handing = False
                lost = m.qos == 0 and (info.rc != mqtt.MQTT_ERR_SUCCESS or epoch != self._epoch)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or lost:  # not held by paho: hand it again later
                    self._queue.appendleft(m)
                    self._cv.wait(0.05)
                    continue
                self._n["resent" if m.repeat else "handed"] += 1
                if info.mid in self._early:  # its PUBACK came before we got here
                    self._acked(m)
                else:  # QoS 1 held by paho, also when rc is NO_CONN: it is sent after the reconnect
                    self._inflight[info.mid] = m

    def _acked(self, m: _Msg) -> None:  # holding _cv
        if not m.repeat:
            self._n["acked"] += 1
            self._n["unspooled"] += m.from_spool
            self._spool_left -= m.from_spool
        self._cv.notify_all()

    # -- paho callbacks (network thread) ------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, _props: Any) -> None:
        where = f"{self._s.host}:{self._s.port}"
        if reason.is_failure:
            if reason.value in _FATAL_CONNACK:
                self._refuse(f"MQTT broker {where} refused the connection ({reason}): {_FATAL_CONNACK[reason.value]}")
            elif self._first_failure():
                _LOG.warning("MQTT broker %s refused the connection (%s); retrying", where, reason)
            return
        with self._cv:
            self._n["reconnects"] += self._ever_connected
            self._connected = self._ever_connected = True
            self._outage_logged = False
            self._epoch += 1
            self._n["resent"] += len(self._inflight)  # paho re-sends these after this callback: maybe twice
            last = self._last_state
            pending = any(m is last for m in (*self._queue, *self._inflight.values()))
            if last is not None and not pending and len(self._queue) < self._s.queue_size:
                self._enqueue(replace(last, repeat=True))  # the broker may have lost the retained state
        _LOG.info("MQTT connected to %s (%s session)", where, "resumed" if flags.session_present else "new")
        birth = client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        with self._cv:  # its PUBACK cannot be handled before this callback returns
            self._birth_mid = birth.mid
            self._own[birth.mid] = self.topics.availability
            first = self._n["reconnects"] == 0
        self._send_discovery()
        # The broker handles these in order. First connect: claim, then read (our own claim comes back).
        # Later: read the claim first, so a rival's claim since our last connect is seen, then claim again.
        if first:
            client.publish(self.topics.claim, self._claim, qos=1, retain=True)
        client.subscribe([(self._ha_status, 1), (self.topics.claim, 1)])
        if not first:
            client.publish(self.topics.claim, self._claim, qos=1, retain=True)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: mqtt.ReasonCode,
                    _props: Any) -> None:
        # Reason codes are MQTT 5's; a 3.1.1 broker acknowledges even what its ACL discards.
        if reason.is_failure and reason.value == NOT_AUTHORIZED:
            with self._cv:
                topic = self._own.get(mid) or (m.topic if (m := self._inflight.get(mid)) else None)
            if topic is not None:  # kept in flight, so close() spools it for the start after the fix
                self._refuse(self._denied(topic, reason))
                return
        with self._cv:
            own = self._own.pop(mid, None)
            if mid == self._birth_mid:
                self._birth_mid, self._ready = None, True
                self._cv.notify_all()
            elif own is not None:
                pass  # a discovery config, acknowledged
            elif (m := self._inflight.pop(mid, None)) is not None:
                if reason.is_failure:  # e.g. quota exceeded: the broker will not take this one
                    _LOG.warning("MQTT broker rejected a message on %s (%s); counted as dropped", m.topic, reason)
                    self._n["dropped"] += 1
                    self._cv.notify_all()
                else:
                    self._acked(m)
            elif self._handing:
                self._early.add(mid)

    def _denied(self, topic: str, reason: mqtt.ReasonCode) -> str:
        s = self._s
        user = f"user {s.username}" if s.username else "anonymous clients"
        discovery = f" and {s.discovery_prefix}/# (or set mqtt.discovery: false)" if s.discovery else ""
        return (f"MQTT broker {s.host}:{s.port} denied our publish to {topic} ({reason}): its ACL must let {user} "
                f"write {s.base_topic}/{self.device_id}/#{discovery}; fix the broker's ACL, or mqtt.username")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: mqtt.ReasonCode,
                       _props: Any) -> None:
        with self._cv:
            was, self._connected, self._ready, self._birth_mid = self._connected, False, False, None
            self._own.clear()  # a re-sent birth or config is checked on the next connect's copy; keeps it bounded
            for mid in reversed([mid for mid, m in self._inflight.items() if m.qos == 0]):  # paho forgets QoS 0
                self._queue.appendleft(self._inflight.pop(mid))
            resend = len(self._inflight)
            quiet = self._closing or self._refused is not None
            self._outage_logged = True
        if was and not quiet:
            why = "connection lost" if reason.value == 128 else str(reason)  # 128: paho's "Unspecified error"
            _LOG.warning("MQTT disconnected from %s:%d (%s); reconnecting, %d unacknowledged will be re-sent",
                         self._s.host, self._s.port, why, resend)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError` block
        where = f"{self._s.host}:{self._s.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            self._refuse(f"TLS verification of the MQTT broker {where} failed ({exc.verify_message}): fix "
                         "mqtt.ca_certs, or set mqtt.host to a name in the broker's certificate")
            return
        if self._first_failure():
            _LOG.warning("MQTT broker %s unreachable (%s); retrying every %g-%g s", where, exc,
                         self._t.reconnect_min_s, self._t.reconnect_max_s)

    def _first_failure(self) -> bool:
        """True once per outage: one log line, not one per attempt."""
        with self._cv:
            first, self._outage_logged = not self._outage_logged, True
            return first

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.claim:
            self._check_claim(bytes(msg.payload))
        elif msg.topic == self._ha_status and msg.payload == ONLINE.encode() and self._discovery:
            delay = random.uniform(0, self._t.discovery_jitter_s)  # not all devices in one burst
            _LOG.info("Home Assistant is online: discovery re-sent in %.1f s", delay)
            timer = threading.Timer(delay, self._send_discovery)
            timer.daemon = True
            timer.start()

    def _check_claim(self, payload: bytes) -> None:
        try:
            claim = json.loads(payload)
            rival, since = claim["id"] != self._claim_id, float(claim["since"])
        except (ValueError, KeyError, TypeError):
            return  # not a claim of ours (someone else's message on our topic): nothing to compare
        if not rival or since < self._since - CLOCK_SLACK_S:
            return
        with self._cv:
            self._n["takeovers"] += 1
            first = self._n["takeovers"] == 1
        if first:  # then only counted (health, STATUS=): the two keep taking the device from each other
            _LOG.error("MQTT: another moodmic (host %s) publishes as device %s with client id %s: two devices share "
                       "one mqtt.device_id; give each its own (counted in health as takeovers)",
                       str(claim.get("host"))[:64], self.device_id, self._client_id)

    def _send_discovery(self) -> None:
        for topic, payload in self._discovery:
            info = self._client.publish(topic, payload, qos=1, retain=True)
            with self._cv:
                if info.rc == mqtt.MQTT_ERR_SUCCESS and not self._closing:
                    self._own[info.mid] = topic

    def _refuse(self, message: str) -> None:
        """A refusal retrying cannot fix: log it once, stop retrying, and let check() raise."""
        with self._cv:
            if self._refused is not None:
                return
            self._refused = message
            self._cv.notify_all()
        _LOG.error("%s", message)
        self._client.disconnect()

    def _unspool(self) -> None:
        if self._spool_path is None or not self._spool_path.is_file():
            return
        loaded, rejected = _load_spool(self._spool_path)
        with self._cv:
            self._n["spool_rejected"] += rejected
            both = [*loaded, *self._queue]
            excess = max(0, len(both) - self._s.queue_size)
            self._n["dropped"] += excess
            self._queue = deque(both[excess:])
            self._spool_left, self._spool_loaded = max(0, len(loaded) - excess), True
        _LOG.info("MQTT: %d undelivered messages from %s are sent first", len(loaded), self._spool_path)


def expire_after(settings: MqttSettings) -> int:
    """Home Assistant's `expire_after` for the sensors: three missed state heartbeats, and a state from a
    daemon that is gone (or from a previous boot, retained) turns unavailable instead of looking current."""
    return int(3 * settings.state_interval + 0.999)


def _spool_message(line: str) -> _Msg:
    """One spool line as a message; ValueError saying what is wrong with it."""
    d = json.loads(line)
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    topic, payload, retain, qos = (d.get(k) for k in ("topic", "payload", "retain", "qos"))
    if not isinstance(topic, str) or topic_rule(topic) is not None or len(topic.encode()) > 65535:
        raise ValueError("no valid topic")
    if not isinstance(payload, str) or len(payload) > MAX_SPOOL_PAYLOAD:
        raise ValueError("no text payload")
    if not isinstance(retain, bool) or qos not in (0, 1) or isinstance(qos, bool):
        raise ValueError("retain must be true/false and qos 0 or 1")
    return _Msg(topic, payload, retain, qos, from_spool=True)


def _load_spool(path: Path) -> tuple[list[_Msg], int]:
    """(the spool's messages, how many lines were set aside). A line that is not one of our messages
    (hand-edited, truncated, corrupted) would otherwise reach paho and kill the delivery thread: it is
    logged, counted and appended to spool.rejected.jsonl beside the spool, as it was."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        _LOG.error("MQTT: spool %s cannot be read (%s); its messages are lost", path, exc)
        return [], 0
    out, rejected = [], []
    for n, line in enumerate(lines, 1):
        try:
            out.append(_spool_message(line))
        except ValueError as exc:  # json.JSONDecodeError is one
            why = str(exc).split(":")[0]
            _LOG.warning("MQTT: spool %s line %d set aside (%s) in %s", path, n, why, path.with_suffix(".rejected.jsonl"))
            rejected.append(line)
    if rejected:
        try:
            with open(path.with_suffix(".rejected.jsonl"), "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in rejected)
        except OSError as exc:
            _LOG.error("MQTT: %d rejected spool lines could not be kept (%s)", len(rejected), exc)
    return out, len(rejected)


def _save_spool(path: Path | None, msgs: list[_Msg]) -> bool:
    """JSON lines, replaced atomically (no file when there is nothing); False if it could not be written."""
    if path is None:
        return False
    try:
        if not msgs:
            path.unlink(missing_ok=True)
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"topic": m.topic, "payload": m.payload, "retain": m.retain, "qos": m.qos})
                         + "\n" for m in msgs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        _LOG.error("MQTT: %d undelivered messages could not be spooled to %s (%s)", len(msgs), path, exc)
        return False
