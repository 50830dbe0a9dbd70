"""Settings: one frozen dataclass per subsystem; the defaults live here and nowhere else.

`config.yaml` at the repository root is generated from these dataclasses (edge/config_yaml.py: section
comments are the class docstrings, key comments the fields' docs; a test keeps the file equal).
Lookup order: `--config FILE` > `$MOODMIC_CONFIG` > /etc/moodmic/config.yaml > defaults.
An unknown key, a wrong type or an out-of-range value is a one-line ConfigError naming the key.
A config file is plain YAML of bounded size: anchors and aliases, deep nesting, non-finite numbers, control
characters and over-long strings are refused too (issue [11]), and a message shows at most a cut of a value.
Window length and every feature parameter come from the model bundle only: the config decides how
often to decide (the hop), never what a window is.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, shown

SYSTEM_CONFIG = Path("/etc/moodmic/config.yaml")
ENV_CONFIG = "MOODMIC_CONFIG"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_CONFIG_BYTES = 1 << 20  # the full config.yaml is about 5 kB: a bigger file is the wrong one
MAX_DEPTH = 8  # a config is 2 levels (sections of keys); the margin lets a wrong value be named, not parsed deep
MAX_NUMBER_CHARS = 100  # int() of thousands of digits is refused or, in base 60, quadratic
MAX_STRING = 4096  # PATH_MAX: the longest a string setting may be unless its field says less
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # NUL makes open() raise; none belongs in a path, host or topic


def _opt(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
         choices: tuple[Any, ...] | None = None, max_len: int = MAX_STRING,
         check: Callable[[str], str | None] | None = None) -> Any:
    """A settings field with its documentation and the rules a loader enforces: a number's range, a string's
    length (`max_len`) and `check` (value -> why it is refused, or None)."""
    return field(default=default, metadata={"doc": doc, "min": min, "max": max, "choices": choices,
                                            "max_len": max_len, "check": check})


def topic_rule(value: str) -> str | None:
    """Why `value` cannot be the leading levels of the topics moodmic publishes to, or None."""
    if not value:
        return "is empty; use e.g. 'moodmic'"
    if value.startswith("$"):
        return "starts with '$', which brokers keep for their own topics ($SYS/...)"
    if "+" in value or "#" in value:
        return "has a wildcard (+ or #), which a published topic cannot hold"
    if "\x00" in value:
        return "holds a NUL character, which no topic can"
    if "" in value.split("/"):
        return "has an empty level (a leading, trailing or double '/')"
    return None


@dataclass(frozen=True)
class ModelSettings:
    """The model bundle (labels, window length and every feature parameter come from it)."""

    path: str = _opt("", "model bundle directory; empty = the model shipped with moodmic")
    threads: int = _opt(1, "interpreter threads (1 leaves the Pi's other cores to other services)", min=1, max=16)


@dataclass(frozen=True)
class AudioSettings:
    """Where audio comes from."""

    source: str = _opt("mic", "'mic' (a sound card) or 'file:PATH' (replay a recording)")
    device: str = _opt("", "input device name (substring) or index; empty = the system default", max_len=256)
    capture_rate: int = _opt(0, "capture rate in hertz; 0 = the device's default (resampled to the model's)",
                             min=0, max=384000)
    block_seconds: float = _opt(0.1, "capture block length in seconds", min=0.01, max=1.0)
    queue_seconds: float = _opt(10.0, "capture queue bound in seconds of audio; blocks beyond it count as overruns",
                                min=1.0, max=600.0)
    max_file_seconds: float = _opt(600.0, "longest audio file `predict` and the page accept, seconds",
                                   min=1.0, max=86400.0)
    dead_after_seconds: float = _opt(5.0, "no audio, or exact zeros, for this long is a dead microphone (exit 75)",
                                     min=0.5, max=3600.0)


@dataclass(frozen=True)
class WindowSettings:
    """How often to decide. The window length (2.6 s) is the model's, not a setting."""

    hop_seconds: float = _opt(1.0, "decide every this many seconds (a multiple of the model's 20 ms frame hop)",
                              min=0.02, max=60.0)


@dataclass(frozen=True)
class GateSettings:
    """Which windows are classified at all."""

    enabled: bool = _opt(True, "skip windows without speech instead of classifying them")
    # -75, not -55: a far talker on a cheap microphone reads -70..-55 dBFS (research/gate_in_rooms.py)
    min_rms_dbfs: float = _opt(-75.0, "windows quieter than this (dBFS) are not classified", min=-120.0, max=0.0)
    vad: bool = _opt(True, "also require voice activity, so music or a vacuum cleaner is not given an emotion")
    silence_after: int = _opt(3, "consecutive gated windows after which the state becomes 'silence'", min=1, max=3600)


DEFAULT_SMOOTHING_WINDOWS = 3  # a bundle that names no span of its own (every bundle before issue [10]'s grid)


@dataclass(frozen=True)
class SmoothingSettings:
    """How window results become the published state."""

    method: str = _opt("ema", "how window probabilities are smoothed", choices=("ema", "mean"))
    windows: int = _opt(0, "windows averaged (mean) or the EMA's span; 0: the model bundle's, chosen with its "
                           f"abstention threshold ({DEFAULT_SMOOTHING_WINDOWS} if it names none)", min=0, max=100)
    min_confidence: float = _opt(0.4, "a new label needs at least this smoothed probability", min=0.0, max=1.0)
    hysteresis: float = _opt(0.1, "and must beat the current label's probability by this margin", min=0.0, max=1.0)
    uncertain: bool = _opt(True, "say 'uncertain' when the smoothed top probability is below the model bundle's "
                                 "abstention threshold (false: hold the last emotion)")


@dataclass(frozen=True)
class MqttSettings:
    """Publishing to an MQTT broker (Home Assistant's, typically)."""

    mode: str = _opt("on", "on: publish, retrying an absent broker; off: print states to stdout; "
                           "auto: the broker if reachable at start, else stdout", choices=("on", "off", "auto"))
    host: str = _opt("localhost", "broker host name or address", max_len=253)
    port: int = _opt(1883, "broker port (8883 is usual with TLS)", min=1, max=65535)
    # 5, not 3.1.1: only MQTT 5 PUBACKs say "not authorized"; a 3.1.1 broker acknowledges what its ACL discards
    protocol: str = _opt("5", "MQTT version: '5', or '3.1.1' for old brokers (which cannot report a denied publish)",
                         choices=("5", "3.1.1"))
    device_id: str = _opt("", "topic and Home Assistant id of this device; empty = the host name plus a short hash "
                              "of /etc/machine-id, kept in state_dir (edge/identity.py)", max_len=64)
    # Bounded: a topic over 65,535 bytes kills paho's network thread (struct.error), silently.
    base_topic: str = _opt("moodmic", "topics are <base_topic>/<device_id>/...", max_len=128, check=topic_rule)
    discovery: bool = _opt(True, "announce entities with Home Assistant MQTT discovery")
    discovery_prefix: str = _opt("homeassistant", "Home Assistant's discovery prefix", max_len=128,
                                 check=topic_rule)
    client_id: str = _opt("", "MQTT client id; empty = moodmic-<device_id>", max_len=128)
    username: str = _opt("", "broker user name; empty = anonymous", max_len=256)
    password_file: str = _opt("", "file holding the broker password (or set $MOODMIC_MQTT_PASSWORD)")
    tls: bool = _opt(False, "connect with TLS (certificates are verified)")
    ca_certs: str = _opt("", "CA bundle for TLS; empty = the system's")
    certfile: str = _opt("", "client certificate for TLS; empty = none")
    keyfile: str = _opt("", "client certificate's key for TLS")
    qos: int = _opt(1, "QoS of state and event messages", choices=(0, 1))
    keepalive: int = _opt(60, "MQTT keepalive in seconds", min=5, max=3600)
    state_interval: float = _opt(60.0, "re-publish the unchanged state every this many seconds", min=1.0, max=86400.0)
    health_interval: float = _opt(60.0, "publish health counters every this many seconds", min=1.0, max=86400.0)
    queue_size: int = _opt(1000, "messages kept while the broker is unreachable; older ones are dropped and counted",
                           min=1, max=1000000)
    state_dir: str = _opt("", "where undelivered messages are spooled on exit; empty = $STATE_DIRECTORY, "
                              "else ~/.local/state/moodmic")


@dataclass(frozen=True)
class AppSettings:
    """The web page (moodmic app)."""

    max_upload_mb: int = _opt(100, "largest upload the web page takes, MB", min=1, max=2000)


@dataclass(frozen=True)
class LoggingSettings:
    """Logging (to stderr, which systemd sends to the journal)."""

    level: str = _opt("INFO", "log level", choices=LOG_LEVELS)


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    windows: WindowSettings = field(default_factory=WindowSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    app: AppSettings = field(default_factory=AppSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(key: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    if tp is str and isinstance(value, bool) and {"on", "off"} <= set(meta.get("choices") or ()):
        value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
    if tp is str and type(value) is int and str(value) in (meta.get("choices") or ()):
        value = str(value)  # `protocol: 5` reads as a number
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {shown(value)}")
    choices, lo, hi = meta.get("choices"), meta.get("min"), meta.get("max")
    if tp is float:
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        # NaN passes every comparison: a NaN interval would stop heartbeats, a NaN limit lift the limit.
        if not math.isfinite(number):
            raise ConfigError(f"{key}: {shown(value)} is not a finite number (give one in {lo}..{hi})")
        value = number
    if tp is str:
        problem = _string_problem(value, meta)
        if problem:
            raise ConfigError(f"{key}: {shown(value)} {problem}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {shown(value)} is not one of {', '.join(map(repr, choices))}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key}: {shown(value)} is out of range {lo}..{hi}")
    return value


def _string_problem(value: str, meta: Mapping[str, Any]) -> str | None:
    max_len = meta.get("max_len", MAX_STRING)
    if len(value) > max_len:
        return f"is over {max_len} characters ({len(value)}); shorten it"
    if _CONTROL.search(value):
        return "holds a control character (NUL, newline, ...); remove it"
    check = meta.get("check")
    return check(value) if check else None


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'the config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = key if isinstance(key, str) and len(key) <= 60 else shown(key)
        full = f"{prefix}{name}"
        if key not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"{full}: unknown key{hint}")
        tp = hints[key]
        if isinstance(tp, type) and is_dataclass(tp):
            kwargs[key] = _build(tp, value, full + ".")
        else:
            kwargs[key] = _convert(full, tp, value, known[key].metadata)
    return cls(**kwargs)


def settings_from_dict(data: Any) -> Settings:
    return _build(Settings, data, "")


def find_config(explicit: str | os.PathLike | None = None) -> Path | None:
    """The config file to read, by the lookup order; None = built-in defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML without anchors or aliases (9 levels of 9 aliases, 340 bytes, are 387 million strings),
    nesting deeper than MAX_DEPTH (the composer recurses) or numbers longer than MAX_NUMBER_CHARS."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(f"line {line}: a YAML anchor or alias (& or *); a moodmic config needs no anchors "
                              "or aliases: write the value out")
        if self.depth >= MAX_DEPTH:
            raise ConfigError(f"line {line}: nested over {MAX_DEPTH} levels; a moodmic config is sections of keys")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _bounded_number(construct: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def number(loader: Any, node: Any) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise ConfigError(f"line {node.start_mark.line + 1}: a number of {len(node.value)} characters; "
                              "no setting needs one that long")
        return construct(loader, node)
    return number


_PlainLoader.add_constructor("tag:yaml.org,2002:int", _bounded_number(yaml.SafeLoader.construct_yaml_int))
_PlainLoader.add_constructor("tag:yaml.org,2002:float", _bounded_number(yaml.SafeLoader.construct_yaml_float))


def _read(path: Path) -> str:
    try:
        if path.stat().st_mode & 0o002:  # anyone could point the service at another broker or model
            raise ConfigError(f"config file {path} is writable by every user; run: chmod o-w {path}")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # never more: --config /dev/zero must not fill memory
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix --config or ${ENV_CONFIG}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc})") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is over {MAX_CONFIG_BYTES >> 20} MiB, where a moodmic config is "
                          f"a few kB; fix --config or ${ENV_CONFIG}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc})") from exc


def load_settings(explicit: str | os.PathLike | None = None) -> Settings:
    path = find_config(explicit)
    if path is None:
        return Settings()
    text = _read(path)
    try:
        data = yaml.load(text, Loader=_PlainLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}; fix the syntax") from exc
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    try:
        return settings_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def iter_fields(cls: type = Settings, prefix: str = "") -> typing.Iterator[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every leaf setting: used to check config.yaml documents them all."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not MISSING else None
            yield f"{prefix}{f.name}", default, f.metadata.get("doc", "")
