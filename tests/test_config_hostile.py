"""Hostile config files (issue [11]): each is refused at load with one bounded line naming the key, exit 78,
never a hang, a traceback or a setting that silently disables a safety (a NaN interval, a 70,000-char topic)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from edge.config import Settings, iter_fields, load_settings, settings_from_dict
from edge.errors import EXIT_CONFIG, ConfigError

from conftest import REPO

MESSAGE_BOUND = 400  # characters: a message names the problem and shows at most a short cut of the value


def alias_bomb() -> str:
    """Nine levels of nine aliases: about 340 bytes that expand to 9**9 (387 million) strings."""
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"&{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "mqtt:\n  host: [" + ", ".join(levels) + "]\n"


def bounded_moodmic(*args: str, memory: int = 1 << 30, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in a child limited to `memory` bytes of address space and `timeout` seconds, so a regression
    (an alias bomb expanded again) fails the test instead of hanging CI or eating the machine's memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, preexec_fn=limit)


def refused(tmp_path, text: str) -> str:
    """load_settings' one-line message for a config file holding `text` (which must be refused)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    message = str(info.value)
    assert info.value.exit_code == EXIT_CONFIG
    assert "\n" not in message and len(message) < MESSAGE_BOUND, message[:1000]
    return message


def one_line_78(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moodmic: error: config file "), proc.stderr[-2000:]
    assert len(lines[0]) < MESSAGE_BOUND + 100
    return lines[0]


# --- 1. alias bombs and oversized values ---------------------------------------------------------------

def test_alias_bomb_is_refused_quickly_in_bounded_memory(tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(alias_bomb())
    assert cfg.stat().st_size < 400
    line = one_line_78(bounded_moodmic("run", "--config", str(cfg), "--mqtt", "off"))
    assert "line 2" in line and "anchors" in line and "aliases" in line


@pytest.mark.parametrize("text", [
    pytest.param("mqtt:\n  host: &h broker\n", id="anchor"),
    pytest.param("base: &b {host: broker}\nmqtt:\n  <<: *b\n", id="merge-key"),
])
def test_anchors_and_aliases_are_refused(tmp_path, text):
    message = refused(tmp_path, text)
    assert "a moodmic config needs no anchors or aliases" in message and "line " in message


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path):
    message = refused(tmp_path, "# padding\n" * 200_000 + "model:\n  threads: 2\n")
    assert "over 1 MiB" in message


@pytest.mark.parametrize("text, key", [
    pytest.param("mqtt:\n  host: " + "x" * 500_000 + "\n", "mqtt.host", id="long-string"),
    pytest.param("mqtt:\n  port: '" + "9" * 4000 + "'\n", "mqtt.port", id="long-wrong-type"),
    pytest.param("mqtt:\n  port: " + "9" * 90 + "\n", "mqtt.port", id="long-out-of-range"),
    pytest.param("mqtt:\n  port: " + "9" * 5000 + "\n", "line 2", id="int-over-4300-digits"),
    pytest.param("mqtt:\n  port: " + "1:" * 200_000 + "1\n", "line 2", id="base-60-quadratic"),
    pytest.param("mqtt:\n  host: [" + ", ".join(["x"] * 50_000) + "]\n", "mqtt.host", id="long-list"),
    pytest.param("mqtt:\n  ? " + "k" * 4000 + "\n  : 1\n", "unknown key", id="long-unknown-key"),
    pytest.param("mqtt:\n  host: " + "[" * 50_000 + "]" * 50_000 + "\n", "line 2", id="deep-nesting"),
    pytest.param('model:\n  path: "a\\0b"\n', "model.path", id="NUL"),  # open() would raise ValueError
    pytest.param('mqtt:\n  host: "broker\\nevil"\n', "mqtt.host", id="newline"),
])
def test_oversized_or_odd_values_are_refused_with_a_bounded_message(tmp_path, text, key):
    assert key in refused(tmp_path, text)


# --- 2. non-finite numbers ------------------------------------------------------------------------------

FLOAT_KEYS = [key for key, default, _ in iter_fields() if isinstance(default, float)]


def test_float_keys_are_found():
    assert {"windows.hop_seconds", "audio.dead_after_seconds", "audio.max_file_seconds",
            "mqtt.health_interval", "mqtt.state_interval"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "1.0e+999", "-1.0e+999"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_numbers_are_refused_for_every_float_setting(tmp_path, key, value):
    section, name = key.split(".")
    message = refused(tmp_path, f"{section}:\n  {name}: {value}\n")
    assert f"{key}: " in message and "not a finite number" in message


def test_an_integer_too_big_for_a_float_is_not_finite():
    with pytest.raises(ConfigError, match="windows.hop_seconds: 1000.* is not a finite number"):
        settings_from_dict({"windows": {"hop_seconds": 10**400}})


def test_cli_nan_hop_exits_78_with_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("windows:\n  hop_seconds: .nan\n")
    line = one_line_78(bounded_moodmic("run", "--config", str(cfg), "--sample", "--mqtt", "off", "--fast"))
    assert line == f"moodmic: error: config file {cfg}: windows.hop_seconds: nan is not a finite number " \
                   "(give one in 0.02..60.0)"


# --- 4. identifiers and topics --------------------------------------------------------------------------

def case(key: str, value: str, problem: str):
    label = value if len(value) <= 20 else f"{value[0]}x{len(value)}"
    return pytest.param(key, value, problem, id=f"{key}={label}")


@pytest.mark.parametrize("key, value, problem", [
    case("mqtt.device_id", "d" * 65, "over 64 characters"),
    case("mqtt.device_id", "d" * 70_000, "over 64 characters"),
    case("mqtt.base_topic", "b" * 70_000, "over 128 characters"),
    case("mqtt.base_topic", "b" * 129, "over 128 characters"),
    case("mqtt.base_topic", "$SYS/moodmic", "starts with '$'"),
    case("mqtt.base_topic", "", "is empty"),
    case("mqtt.base_topic", "home/+/moodmic", "wildcard"),
    case("mqtt.base_topic", "home/#", "wildcard"),
    case("mqtt.base_topic", "/moodmic", "empty level"),
    case("mqtt.base_topic", "moodmic/", "empty level"),
    case("mqtt.base_topic", "home//moodmic", "empty level"),
    case("mqtt.discovery_prefix", "$homeassistant", "starts with '$'"),
    case("mqtt.discovery_prefix", "h" * 129, "over 128 characters"),
    case("mqtt.discovery_prefix", "", "is empty"),
    case("mqtt.client_id", "c" * 129, "over 128 characters"),
    case("mqtt.username", "u" * 257, "over 256 characters"),
    case("mqtt.host", "h" * 254, "over 253 characters"),
    case("audio.device", "d" * 257, "over 256 characters"),
    case("model.path", "p" * 4097, "over 4096 characters"),
    case("audio.source", "file:" + "p" * 4092, "over 4096 characters"),
    case("mqtt.password_file", "p" * 4097, "over 4096 characters"),
    case("mqtt.ca_certs", "p" * 4097, "over 4096 characters"),
    case("mqtt.certfile", "p" * 4097, "over 4096 characters"),
    case("mqtt.keyfile", "p" * 4097, "over 4096 characters"),
    case("mqtt.state_dir", "p" * 4097, "over 4096 characters"),
])
def test_identifiers_and_topics_are_bounded_at_load(tmp_path, key, value, problem):
    section, name = key.split(".")
    message = refused(tmp_path, f'{section}:\n  {name}: "{value}"\n')
    assert f"{key}: " in message and problem in message


@pytest.mark.parametrize("key, value", [
    ("mqtt.device_id", "d" * 64), ("mqtt.base_topic", "home/moodmic"), ("mqtt.base_topic", "b" * 128),
    ("mqtt.discovery_prefix", "ha/discovery"), ("mqtt.client_id", "c" * 128), ("model.path", "p" * 4096),
])
def test_identifiers_at_their_bounds_are_accepted(tmp_path, key, value):
    section, name = key.split(".")
    (tmp_path / "c.yaml").write_text(f'{section}:\n  {name}: "{value}"\n')
    assert getattr(getattr(load_settings(tmp_path / "c.yaml"), section), name) == value


def test_every_string_setting_has_a_length_bound(tmp_path):
    for key, default, _ in iter_fields():
        if isinstance(default, str):
            section, name = key.split(".")
            (tmp_path / "c.yaml").write_text(f'{section}:\n  {name}: "{"x" * 4097}"\n')
            with pytest.raises(ConfigError, match=f"{key}: "):
                load_settings(tmp_path / "c.yaml")
    assert load_settings(REPO / "config.yaml") == Settings()


def test_cli_long_device_id_exits_78_naming_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  device_id: {'d' * 70_000}\n")
    line = one_line_78(bounded_moodmic("run", "--config", str(cfg), "--sample", "--mqtt", "off", "--fast"))
    assert "mqtt.device_id: " in line
