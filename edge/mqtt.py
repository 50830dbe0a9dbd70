"""MQTT publisher: states and events delivered at least once, in order, through outages and restarts.

Delivery path: publish_state/publish_event append to our bounded queue (oldest dropped and counted);
one pump thread hands messages to paho only while connected, at most `Tuning.inflight` unacknowledged
at a time; paho's network thread runs the callbacks. A message handed but not yet acknowledged when
the connection drops stays in paho's session store, and paho re-sends it (DUP) right after the next
CONNACK, before anything newer: after a (re)connect the pump resumes only once the birth message
("online", published from on_connect) is acknowledged, and paho handles that PUBACK only after it
has queued the re-send. close() spools whatever is still unacknowledged; the next start() sends it
first.

Locking: `_cv` guards our state. Paho holds its own mutex while it calls on_publish, so nothing here
calls into paho while holding `_cv` (that order would deadlock).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from .config import MqttSettings
from .discovery import discovery_configs
from .errors import ConfigError
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
}


@dataclass(frozen=True)
class Tuning:
    """Delivery constants that are not user settings (tests shorten the delays)."""

    inflight: int = 20  # our messages handed to paho and not yet acknowledged
    reconnect_min_s: float = 1.0  # paho doubles the delay after each failed attempt ...
    reconnect_max_s: float = 30.0  # ... up to this
    connect_timeout_s: float = 5.0  # TCP connect + TLS handshake


@dataclass(frozen=True)
class _Msg:
    topic: str
    payload: str
    retain: bool
    qos: int
    from_spool: bool = False
    repeat: bool = False  # the last state again after a reconnect: counted as `resent`, never spooled


def device_id(settings: MqttSettings) -> str:
    """The configured device id, else the host name: lowercase, [a-z0-9_-] only (HA's id alphabet)."""
    raw = settings.device_id or socket.gethostname().split(".")[0]
    clean = re.sub(r"[^a-z0-9_-]+", "_", raw.lower()).strip("_")
    if not clean:
        if settings.device_id:
            raise ConfigError(f"mqtt.device_id: {settings.device_id!r} has no letters or digits; "
                              "use e.g. 'kitchen'")
        return "moodmic"
    return clean


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
                 spool_path: Path | None, tuning: Tuning = Tuning()) -> None:
        self._s, self._t, self._spool_path = settings, tuning, spool_path
        self._model = f"{model_name} ({model_sha[:12]})"
        self.device_id = device_id(settings)
        for key in ("base_topic", "discovery_prefix"):
            if not getattr(settings, key) or re.search(r"[+#\x00]", getattr(settings, key)):
                raise ConfigError(f"mqtt.{key}: {getattr(settings, key)!r} is not a topic (empty, or has + # NUL)")
        base = f"{settings.base_topic}/{self.device_id}"
        self.topics = Topics.under(base)
        self._ha_status = ha_status_topic(settings.discovery_prefix)
        self._discovery = [(topic, json.dumps(payload)) for topic, payload in discovery_configs(
            prefix=settings.discovery_prefix, device_id=self.device_id, base=base, labels=labels,
            model_name=model_name, qos=settings.qos)] if settings.discovery else []
        self._client_id = settings.client_id or f"moodmic-{self.device_id}"
        self._client = self._make_client()
        self._cv = threading.Condition()
        self._queue: deque[_Msg] = deque()
        self._inflight: OrderedDict[int, _Msg] = OrderedDict()  # mid -> message, in the order handed
        self._n = dict.fromkeys(("handed", "acked", "dropped", "reconnects", "spooled", "unspooled", "resent"), 0)
        self._connected = self._ready = self._ever_connected = self._outage_logged = False
        self._stop = self._closing = self._handing = False
        self._refused: str | None = None
        self._last_state: _Msg | None = None
        self._birth_mid: int | None = None
        self._early: set[int] = set()  # PUBACKs that beat the pump's bookkeeping of their mid
        self._epoch = 0  # connections so far: a QoS 0 hand that straddles a reconnect is re-queued
        self._spool_left = 0  # messages from the previous spool neither acknowledged nor dropped yet
        self._spool_loaded = False
        self._pump_thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self._s
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)  # the broker keeps our session
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
        client.reconnect_delay_set(self._t.reconnect_min_s, self._t.reconnect_max_s)  # type: ignore[arg-type]
        client.connect_timeout = self._t.connect_timeout_s
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background (retrying forever with backoff) and start handing messages."""
        if self._pump_thread is not None:
            return
        self._unspool()
        s = self._s
        _LOG.info("MQTT: publishing to %s/%s/* on %s:%d%s as client %s, model %s", s.base_topic, self.device_id,
                  s.host, s.port, " (TLS)" if s.tls else "", self._client_id, self._model)
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
        with self._cv:
            if self._refused is not None:
                raise ConfigError(self._refused)

    def stats(self) -> dict[str, Any]:
        with self._cv:
            return {"connected": self._connected, "queued": len(self._queue), **self._n}

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
                info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
                try:
                    info.wait_for_publish(left() / 2)
                except (RuntimeError, ValueError):
                    pass
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
                    self._ready and bool(self._queue) and len(self._inflight) < self._t.inflight))
                if self._stop:
                    return
                if self._spool_loaded and self._spool_left == 0:  # all of it delivered: a crash must not resend
                    self._spool_loaded = False
                    _save_spool(self._spool_path, [])
                    continue
                m, epoch = self._queue.popleft(), self._epoch
                self._handing = True
                self._early.clear()
            info = self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
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
        self._send_discovery()
        client.subscribe(self._ha_status, qos=1)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: mqtt.ReasonCode,
                    _props: Any) -> None:
        with self._cv:
            if mid == self._birth_mid:
                self._birth_mid, self._ready = None, True
                self._cv.notify_all()
            elif (m := self._inflight.pop(mid, None)) is not None:
                if reason.is_failure:  # MQTT 5 only; a 3.1.1 broker acknowledges even what it discards
                    _LOG.warning("MQTT broker rejected a message on %s (%s)", m.topic, reason)
                    self._n["dropped"] += 1
                    self._cv.notify_all()
                else:
                    self._acked(m)
            elif self._handing:
                self._early.add(mid)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: mqtt.ReasonCode,
                       _props: Any) -> None:
        with self._cv:
            was, self._connected, self._ready, self._birth_mid = self._connected, False, False, None
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
        if msg.topic == self._ha_status and msg.payload == ONLINE.encode():
            _LOG.info("Home Assistant is online: discovery re-sent")
            self._send_discovery()

    def _send_discovery(self) -> None:
        for topic, payload in self._discovery:
            self._client.publish(topic, payload, qos=1, retain=True)

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
        loaded = _load_spool(self._spool_path)
        with self._cv:
            both = [*loaded, *self._queue]
            excess = max(0, len(both) - self._s.queue_size)
            self._n["dropped"] += excess
            self._queue = deque(both[excess:])
            self._spool_left, self._spool_loaded = max(0, len(loaded) - excess), True
        _LOG.info("MQTT: %d undelivered messages from %s are sent first", len(loaded), self._spool_path)


def _load_spool(path: Path) -> list[_Msg]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        _LOG.error("MQTT: spool %s cannot be read (%s); its messages are lost", path, exc)
        return []
    out = []
    for line in lines:
        try:
            d = json.loads(line)
            out.append(_Msg(str(d["topic"]), str(d["payload"]), bool(d["retain"]), int(d["qos"]), from_spool=True))
        except (ValueError, KeyError, TypeError):
            _LOG.warning("MQTT: spool %s: skipped an unreadable line", path)
    return out


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
