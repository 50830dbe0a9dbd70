"""A real mosquitto for tests, and a persistent subscriber that records what it receives.

    with Broker(tmp_path, users={"moodmic": "pw"}, tls=True) as b:   # 127.0.0.1, a free port
        rec = Recorder(b, ["moodmic/#"], username="moodmic", password="pw").start()
        b.stop(); b.start()            # SIGTERM (saves persistence) and back on the same port
        b.kill(); b.pause(); b.resume() # SIGKILL, SIGSTOP, SIGCONT
        rec.wait_for(lambda msgs: len(msgs) >= 3, timeout=10)
        b.wait_saved(since=time.time())  # its persistence file written after now

    cfg = daemon_config(tmp_path / "c.yaml", b, username="moodmic")   # `moodmic run` publishing to b
    daemon = start_daemon(cfg, wav)                                    # real-time replay of wav

Mosquitto runs with persistence (autosave every second), so persistent sessions and retained
messages survive stop/start; a SIGKILL within ~1 s of a change can lose it (../shared/SYSTEMS.md).
Every wait has a timeout. Without /usr/sbin/mosquitto the `broker` fixture skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=30)


def make_ca(root: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA (EC keys: fast): (certificate, key)."""
    crt, key = root / f"{name}.crt", root / f"{name}.key"
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN=moodmic test {name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def make_cert(root: Path, ca: tuple[Path, Path], name: str = "server",
              san: str = "DNS:localhost,IP:127.0.0.1") -> tuple[Path, Path]:
    """A certificate signed by `ca` for `san`: (certificate, key)."""
    crt, key, csr, ext = (root / f"{name}.{x}" for x in ("crt", "key", "csr", "ext"))
    _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
         "-out", csr, "-subj", f"/CN={name}")
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                   "extendedKeyUsage=serverAuth,clientAuth\nauthorityKeyIdentifier=keyid\n")
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext)
    return crt, key


class Broker:
    """mosquitto -c <root>/mosquitto.conf on 127.0.0.1:<port>, with persistence in <root>."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None, tls: bool = False,
                 port: int | None = None, acl: str | None = None) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.skip(f"mosquitto is not installed ({MOSQUITTO}); apt-get install mosquitto mosquitto-clients")
        self.root, self.host, self.port = root, HOST, port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = root / "mosquitto.log"
        self.ca: Path | None = None  # the CA a client needs when tls=True
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {HOST}"]
        if tls:
            ca = make_ca(root)
            crt, key = make_cert(root, ca)
            self.ca = ca[0]
            lines += [f"cafile {ca[0]}", f"certfile {crt}", f"keyfile {key}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot write a root-owned dir
        lines += ["persistence true", f"persistence_location {root}/", "autosave_interval 1",
                  f"log_dest file {self.log}", "log_type all", "connection_messages true"]
        if users:
            passwd = root / "passwd"
            for i, (user, password) in enumerate(users.items()):
                _run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", passwd, user, password)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:  # mosquitto's acl_file syntax, e.g. "user moodmic\ntopic read moodmic/#"
            (root / "acl").write_text(acl + "\n")
            lines.append(f"acl_file {root / 'acl'}")
        self.conf = root / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> Broker:
        """Start (or restart, on the same port) and wait until it accepts TCP connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode() if self.proc.stderr else ''}{self.log_text()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.log_text()}")

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused broker cannot handle SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: whatever changed since the last autosave is lost."""
        self._signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (a network partition)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> Broker:
        self.stop()
        return self.start()

    def wait_saved(self, since: float, timeout: float = 10.0) -> None:
        """Wait until mosquitto has written its persistence file after `since` (a time.time()): what
        changed before then (a new persistent session, say) survives a SIGKILL from now on."""
        db = self.root / "mosquitto.db"
        deadline = time.monotonic() + timeout
        while not (db.exists() and db.stat().st_mtime > since):
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not save {db} within {timeout} s")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    dup: bool  # the broker re-sent it (it had not seen our PUBACK)

    def text(self) -> str:
        return self.payload.decode()


class Recorder:
    """A subscriber (paho, QoS 1, persistent session by default) recording messages in arrival order."""

    def __init__(self, broker: Broker, topics: list[str], *, client_id: str = "recorder", clean_session: bool = False,
                 username: str | None = None, password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.topics = topics
        self.messages: list[Received] = []
        self._cv = threading.Condition()
        self._subscribed = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=clean_session)
        if username:
            self.client.username_pw_set(username, password)
        if broker.ca is not None:
            self.client.tls_set(ca_certs=str(broker.ca))
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._broker = broker

    def _on_connect(self, client, _userdata, flags, reason, _props) -> None:  # type: ignore[no-untyped-def]
        if not reason.is_failure and not flags.session_present:  # a resumed session keeps its subscriptions
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, *_args: object) -> None:
        with self._cv:
            self._subscribed = True
            self._cv.notify_all()

    def _on_message(self, _client, _userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._cv:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), bool(msg.dup)))
            self._cv.notify_all()

    def start(self, timeout: float = 10.0) -> Recorder:
        self.client.connect_async(self._broker.host, self._broker.port, keepalive=5)
        self.client.loop_start()
        with self._cv:
            if not self._cv.wait_for(lambda: self._subscribed, timeout):
                raise TimeoutError(f"recorder not subscribed within {timeout} s")
        return self

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """True once predicate(messages so far) holds; False after `timeout` seconds."""
        with self._cv:
            return self._cv.wait_for(lambda: predicate(self.messages), timeout)

    def on(self, topic: str) -> list[Received]:
        with self._cv:
            return [m for m in self.messages if m.topic == topic]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def daemon_config(path: Path, broker: Broker, device_id: str = "testpi", **mqtt: object) -> Path:
    """A config.yaml for `moodmic run` publishing to `broker` as moodmic/<device_id>, with a 1 s heartbeat
    and health interval and its spool under <path's folder>/state; `mqtt` adds or overrides mqtt.* keys."""
    values = {"host": broker.host, "port": broker.port, "device_id": device_id,
              "state_dir": str(path.parent / "state"), "state_interval": 1.0, "health_interval": 1.0, **mqtt}
    path.write_text("\n".join(["mqtt:"] + [f"  {k}: {json.dumps(v)}" for k, v in values.items()]) + "\n")
    return path


def start_daemon(cfg: Path, wav: Path) -> subprocess.Popen:
    """`moodmic run` replaying `wav` in real time, publishing to the broker `cfg` names (text pipes)."""
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", f"file:{wav}",
                             "--mqtt", "on"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(name="broker")
def broker_fixture(tmp_path: Path) -> Iterator[Broker]:
    """`broker`: a fresh anonymous mosquitto, stopped after the test (import broker_fixture to use it)."""
    with Broker(tmp_path / "broker") as b:
        yield b
