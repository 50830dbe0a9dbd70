"""Hostile model bundles (issue [11]): every number of model.json is checked against the range this runtime
supports, so a corrupt or crafted bundle is refused with one line naming the key (exit 78), never a
traceback, gigabytes of filterbank or `"confidence": NaN` printed as JSON and published."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys

import pytest

from edge.bundle import META_FILE, load_bundle
from edge.errors import EXIT_CONFIG, BundleError

from conftest import REPO, TINY_FLOAT, TINY_INT8, speechlike, write

NAN, INF = float("nan"), float("inf")
MESSAGE_BOUND = 500  # the bundle's path, the key, a cut of the value and the fix


def corrupt(tmp_path, key: str, value, source=TINY_FLOAT):
    """A copy of `source` whose model.json holds `value` at dotted `key` (written as Python's json writes NaN)."""
    dest = tmp_path / "bad"
    shutil.copytree(source, dest)
    meta = json.loads((dest / META_FILE).read_text())
    *parents, last = key.split(".")
    node = meta
    for part in parents:
        node = node[part]
    node[last] = value
    (dest / META_FILE).write_text(json.dumps(meta))
    return dest


def case(key: str, value, source=TINY_FLOAT):
    text = repr(value)
    label = text if len(text) <= 24 else f"{type(value).__name__}x{len(value) if hasattr(value, '__len__') else len(text)}"
    return pytest.param(key, value, source, id=f"{key}={label}")


CORRUPTIONS = [
    case("features.sample_rate", NAN), case("features.sample_rate", 2**40), case("features.sample_rate", 100),
    case("features.sample_rate", 96000), case("features.sample_rate", True), case("features.sample_rate", "16000"),
    case("features.sample_rate", 16000.5),
    case("features.n_fft", 2**40), case("features.n_fft", 2**20), case("features.n_fft", 32),
    case("features.n_fft", NAN), case("features.n_fft", 1024.0), case("features.n_fft", -1024),
    case("features.n_fft", 4096),  # 12.8x the hop: more overlap than this runtime supports
    case("features.hop_length", 0), case("features.hop_length", 2**40), case("features.hop_length", INF),
    case("features.n_mels", 0), case("features.n_mels", 4), case("features.n_mels", 2**20), case("features.n_mels", NAN),
    case("features.fmin", NAN), case("features.fmin", -1.0), case("features.fmin", INF), case("features.fmin", 8000.0),
    case("features.fmax", NAN), case("features.fmax", INF), case("features.fmax", 9000.0),
    case("features.ref_power", NAN), case("features.ref_power", INF), case("features.ref_power", 0.0),
    case("features.amin", NAN), case("features.amin", 0.0), case("features.amin", INF),
    case("features.floor_db", NAN), case("features.floor_db", INF), case("features.floor_db", -INF),
    case("features.floor_db", 10.0),
    case("features.n_frames", NAN), case("features.n_frames", 0), case("features.n_frames", 10**6),
    case("features.n_frames", 2000),  # a 40 s window
    case("features.feature_version", NAN), case("features.window", "x" * 100_000),
    case("eval_hop_s", NAN), case("eval_hop_s", INF), case("eval_hop_s", -1.0), case("eval_hop_s", 0.0),
    case("eval_hop_s", 1e300), case("eval_hop_s", 10**400), case("eval_hop_s", "1.0"),
    case("input.scale", NAN, TINY_INT8), case("input.scale", INF, TINY_INT8), case("input.scale", -0.5, TINY_INT8),
    case("input.scale", 0.0, TINY_INT8), case("output.scale", NAN, TINY_INT8),
    case("input.zero_point", INF, TINY_INT8), case("input.zero_point", NAN, TINY_INT8),
    case("input.zero_point", 1000, TINY_INT8), case("input.zero_point", 0.5, TINY_INT8),
    case("output.zero_point", 2**70, TINY_INT8),
    case("input.shape", [1, INF, 128]), case("input.shape", [1, 130, "128"]), case("input.dtype", "complex128"),
    case("output.temperature", 1e-320), case("output.temperature", 1e308), case("output.temperature", 0.0),
    case("output.temperature", INF), case("output.temperature", "2"),
    case("output.abstain_below", -0.1), case("output.abstain_below", 1.0), case("output.abstain_below", INF),
    case("output.smoothing_windows", -1), case("output.smoothing_windows", 101), case("output.smoothing_windows", 2.5),
    case("output.smoothing_windows", True),
    case("labels", ["x" * 10_000] + ["calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]),
    case("labels", [1, 2, 3, 4, 5, 6, 7, 8]),
    case("name", ["not", "a", "name"]), case("name", "n" * 100_000),
    case("format_version", "x" * 100_000),
    case("tflite_sha256", 12345),
]


@pytest.mark.parametrize("key, value, source", CORRUPTIONS)
def test_every_number_of_model_json_is_checked(tmp_path, key, value, source):
    bad = corrupt(tmp_path, key, value, source)
    with pytest.raises(BundleError) as info:
        load_bundle(bad)
    message = str(info.value)
    assert info.value.exit_code == EXIT_CONFIG
    assert key.split(".")[-1] in message and str(bad) in message, message[:1000]
    assert "\n" not in message and len(message) < MESSAGE_BOUND, message[:1000]


def test_the_ranges_admit_the_shipped_and_fixture_bundles():
    for path in (None, TINY_INT8, TINY_FLOAT):
        load_bundle(path)


def test_json_nested_past_the_recursion_limit_is_not_valid_json(tmp_path):
    bad = corrupt(tmp_path, "name", "x")
    (bad / META_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bad)


def test_an_oversized_model_json_is_refused_unread(tmp_path):
    bad = corrupt(tmp_path, "training", {"padding": "x" * (5 << 20)})
    with pytest.raises(BundleError, match="model.json is over 4 MiB"):
        load_bundle(bad)


@pytest.mark.parametrize("key, value", [
    ("features.n_fft", 2**40),  # was: a traceback (8 TiB np.arange)
    ("features.n_fft", 2**20),  # was: 2.7 GB of filterbank
    ("output.temperature", 1e-320),  # was: "confidence": NaN, exit 0
    ("eval_hop_s", INF),  # was: OverflowError traceback
    ("input.zero_point", INF),  # was: OverflowError traceback
    ("features.floor_db", NAN),
])
def test_cli_predict_with_a_bad_bundle_exits_78_with_one_line(tmp_path, key, value):
    source = TINY_INT8 if key.startswith("input.") else TINY_FLOAT
    bad = corrupt(tmp_path, key, value, source)
    wav = write(tmp_path / "a.wav", speechlike(3.0))

    def limit() -> None:  # a regression fails the test instead of eating the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "edge.cli", "predict", "--model", str(bad), str(wav)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, preexec_fn=limit)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-1500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"moodmic: error: model bundle {bad}: "), proc.stderr[-1500:]
    assert key.split(".")[-1] in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""
