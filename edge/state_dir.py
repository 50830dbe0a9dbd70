"""The state directory: where the spool of undelivered messages and the device id are kept."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import MqttSettings
from .errors import ConfigError


def state_dir(settings: MqttSettings) -> Path:
    """mqtt.state_dir, else systemd's $STATE_DIRECTORY, else ~/.local/state/moodmic."""
    return Path(settings.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
                or Path.home() / ".local" / "state" / "moodmic")


def check_writable(path: Path) -> None:
    """Found at start, not at exit, where the spool would be lost: ConfigError (exit 78) if `path` cannot
    be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"mqtt.state_dir {path} cannot be written ({exc.strerror or exc}): undelivered messages "
                          "could not be kept there; fix its owner, or set mqtt.state_dir to a writable folder") from None
