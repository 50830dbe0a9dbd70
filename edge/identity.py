"""This device's id: the MQTT topics' and Home Assistant's name for it, unique per machine and stable.

Pi OS names every Pi `raspberrypi`, so the host name alone gave two Pis one id and one client id: they
disconnected each other every second and published into one Home Assistant device. The default is now
the host name plus a short hash of /etc/machine-id (systemd's per-installation id, hashed so the id does
not reveal it), kept in the state directory so that renaming the host later changes nothing. An explicit
`mqtt.device_id` is used as it is; an install from before this rule keeps the bare host name that its
Home Assistant entities already use.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import socket
import time
from pathlib import Path

from .config import MqttSettings
from .errors import ConfigError

_LOG = logging.getLogger(__name__)
MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
ID_FILE = "device_id"
# A state directory older than this when moodmic starts existed before this run (systemd's
# StateDirectory= creates it just before the first start of a fresh install).
EXISTING_INSTALL_AGE_S = 60.0


def clean_id(raw: str) -> str:
    """Lowercase, [a-z0-9_-] only (Home Assistant's id alphabet); '' if nothing is left."""
    return re.sub(r"[^a-z0-9_-]+", "_", raw.lower()).strip("_")


def _machine_hash(paths: tuple[Path, ...]) -> str | None:
    for path in paths:
        try:
            machine_id = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if machine_id:  # hashed with our name, as machine-id(5) asks of applications
            return hashlib.sha256(f"moodmic:{machine_id}".encode()).hexdigest()[:6]
    return None


def device_identity(settings: MqttSettings, state_dir: Path | None, *, hostname: str | None = None,
                    machine_id_path: Path | None = None) -> str:
    """mqtt.device_id if set; else the id kept in `state_dir`; else a new one, kept there."""
    if settings.device_id:
        explicit = clean_id(settings.device_id)
        if not explicit:
            raise ConfigError(f"mqtt.device_id: {settings.device_id[:60]!r} has no letters or digits; use e.g. 'kitchen'")
        return explicit
    kept = state_dir / ID_FILE if state_dir is not None else None
    if kept is not None and kept.is_file():
        value = clean_id(kept.read_text(encoding="utf-8", errors="replace").strip()[:64])
        if value:
            return value
    host = clean_id((hostname if hostname is not None else socket.gethostname()).split(".")[0]) or "moodmic"
    existing = (state_dir is not None and state_dir.is_dir()
                and time.time() - state_dir.stat().st_mtime > EXISTING_INSTALL_AGE_S)
    if existing:
        chosen = host  # what every version before this one used: its Home Assistant entities are named so
    else:
        suffix = _machine_hash((machine_id_path,) if machine_id_path else MACHINE_ID_PATHS)
        if suffix is None:  # a container without a machine id: a random suffix, kept like the rest
            suffix = secrets.token_hex(3)
        chosen = f"{host}-{suffix}"
    if kept is not None:
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(chosen + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"mqtt.state_dir {state_dir} cannot be written ({exc.strerror or exc}); "
                              "fix its owner or set mqtt.state_dir") from None
        _LOG.info("device id %s (kept in %s)", chosen, kept)
    return chosen
