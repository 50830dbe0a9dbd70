"""Configuration: config.yaml documents exactly the defaults; bad values fail naming the key."""

from __future__ import annotations

import pytest
import yaml

from edge import config_yaml
from edge.config import ENV_CONFIG, Settings, find_config, iter_fields, load_settings, settings_from_dict
from edge.errors import EXIT_CONFIG, ConfigError

from conftest import REPO, TINY_INT8, run_moodmic, speechlike, write


def flatten(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_config_yaml_is_generated_from_edge_config():
    assert (REPO / "config.yaml").read_text() == config_yaml.render(), "run: python -m edge.config_yaml config.yaml"


def test_config_yaml_states_exactly_the_defaults():
    text = (REPO / "config.yaml").read_text()
    assert load_settings(REPO / "config.yaml") == Settings()
    in_file = dict(flatten(yaml.safe_load(text)))
    in_code = {key: default for key, default, _ in iter_fields()}
    assert in_file == in_code  # every key, no extra key, the same values
    commented, section = set(), ""
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.split(":")[0]
        elif line.startswith("  ") and "#" in line:
            commented.add(f"{section}.{line.split(':')[0].strip()}")
    for key, _, doc in iter_fields():
        assert doc, f"{key} has no documentation in edge/config.py"
        assert key in commented, f"{key} has no comment in config.yaml"


def test_empty_file_means_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("# nothing\n")
    assert load_settings(tmp_path / "c.yaml") == Settings()


def test_values_are_read_and_typed(tmp_path):
    (tmp_path / "c.yaml").write_text("mqtt:\n  port: 8883\n  tls: true\nwindows:\n  hop_seconds: 2\n")
    s = load_settings(tmp_path / "c.yaml")
    assert s.mqtt.port == 8883 and s.mqtt.tls is True and s.windows.hop_seconds == 2.0
    assert isinstance(s.windows.hop_seconds, float) and s.mqtt.host == "localhost"
    (tmp_path / "c.yaml").write_text("mqtt:\n  mode: off\n")  # YAML 1.1 makes a bare off a boolean
    assert load_settings(tmp_path / "c.yaml").mqtt.mode == "off"


@pytest.mark.parametrize("data, message", [
    ({"mqtt": {"hots": "x"}}, "mqtt.hots: unknown key (did you mean 'mqtt.host'?)"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"mqtt": {"port": "1883"}}, "mqtt.port: expected an integer, got str '1883'"),
    ({"mqtt": {"port": 70000}}, "mqtt.port: 70000 is out of range 1..65535"),
    ({"mqtt": {"tls": "yes please"}}, "mqtt.tls: expected true or false"),
    ({"gate": {"min_rms_dbfs": True}}, "gate.min_rms_dbfs: expected a number, got bool"),
    ({"smoothing": {"method": "median"}}, "smoothing.method: 'median' is not one of 'ema', 'mean'"),
    ({"model": {"threads": 0}}, "model.threads: 0 is out of range 1..16"),
    ({"mqtt": ["host"]}, "mqtt.: expected a mapping"),
    (["a"], "the config: expected a mapping"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    assert message in str(info.value)


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "a.yaml", tmp_path / "b.yaml"
    monkeypatch.setenv(ENV_CONFIG, str(env))
    assert find_config(explicit) == explicit
    assert find_config(None) == env
    monkeypatch.delenv(ENV_CONFIG)
    monkeypatch.setattr("edge.config.SYSTEM_CONFIG", tmp_path / "system.yaml")
    assert find_config(None) is None and load_settings(None) == Settings()
    (tmp_path / "system.yaml").write_text("model:\n  threads: 2\n")
    assert load_settings(None).model.threads == 2


def test_a_config_anyone_can_write_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  threads: 2\n")
    cfg.chmod(0o666)
    with pytest.raises(ConfigError, match=f"config file {cfg} is writable by every user; run: chmod o-w {cfg}"):
        load_settings(cfg)
    cfg.chmod(0o644)
    assert load_settings(cfg).model.threads == 2


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("mqtt:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(tmp_path / "bad.yaml")


def test_cli_bad_config_exits_78_naming_the_key_and_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audio:\n  max_file_secs: 10\n")
    wav = write(tmp_path / "a.wav", speechlike(3.0))
    for args, env in ((["--config", str(cfg), "predict"], None), (["predict", "--config", str(cfg)], None),
                      (["predict"], {ENV_CONFIG: str(cfg)})):
        proc = run_moodmic(*args, "--model", str(TINY_INT8), str(wav), env=env)
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        assert proc.stderr.strip() == (f"moodmic: error: config file {cfg}: audio.max_file_secs: unknown key "
                                       "(did you mean 'audio.max_file_seconds'?)")


def test_config_limits_reach_predict(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audio:\n  max_file_seconds: 2\n")
    wav = write(tmp_path / "a.wav", speechlike(3.0))
    proc = run_moodmic("predict", "--config", str(cfg), "--model", str(TINY_INT8), str(wav))
    assert proc.returncode == 65 and "over the 2 s limit" in proc.stderr
