"""The model bundle and the interpreter wrapper, on real (tiny) .tflite models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.bundle import META_FILE, MODEL_FILE, TensorSpec, load_bundle, write_bundle
from edge.errors import EXIT_CONFIG, BundleError
from edge.features import FeatureParams, Frontend, file_windows, stack
from edge.interpreter import TFLiteModel, dequantize, quantize
from edge.model import EmotionModel, softmax

from conftest import SR, TINY_FLOAT, TINY_INT8, run_moodmic, speechlike


@pytest.fixture
def bundle_copy(tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(TINY_INT8, dest)
    return dest


def edit_meta(bundle_dir, change):
    meta = json.loads((bundle_dir / META_FILE).read_text())
    change(meta)
    (bundle_dir / META_FILE).write_text(json.dumps(meta))


def windows(seconds=5.0, seed=0):
    fe = Frontend(FeatureParams())
    return stack(file_windows(fe, speechlike(seconds, seed=seed), 50))


def test_round_trip_through_write_bundle(tmp_path):
    src = load_bundle(TINY_INT8)
    out = write_bundle(
        tmp_path / "b", src.tflite_path.read_bytes(), name="copy", labels=src.labels, features=src.features,
        eval_hop_s=0.5, license="x", training={"actors": {"test": ["19", "20"]}},
    )
    again = load_bundle(tmp_path / "b")
    assert again == out
    assert again.labels == src.labels and again.features == src.features and again.eval_hop_frames == 25
    assert again.input == src.input and again.input.dtype == "int8" and again.input.scale > 0
    assert again.info["training"] == {"actors": {"test": ["19", "20"]}}
    assert not (tmp_path / "b.tmp").exists()
    written = json.loads((tmp_path / "b" / META_FILE).read_text())["output"]
    assert again.smoothing_windows == 0 and "smoothing_windows" not in written  # no span named, none written
    spanned = write_bundle(tmp_path / "s", src.tflite_path.read_bytes(), name="s", labels=src.labels, features=src.features,
                           abstain_below=0.3, smoothing_windows=5)
    assert load_bundle(tmp_path / "s") == spanned and (spanned.abstain_below, spanned.smoothing_windows) == (0.3, 5)
    # overwriting an existing bundle replaces it whole
    write_bundle(tmp_path / "b", src.tflite_path.read_bytes(), name="second", labels=src.labels, features=src.features)
    assert load_bundle(tmp_path / "b").name == "second" and not (tmp_path / "b.old").exists()


def test_write_bundle_refuses_labels_that_do_not_match_the_outputs(tmp_path):
    src = load_bundle(TINY_INT8)
    with pytest.raises(BundleError, match="7 labels but output shape"):
        write_bundle(tmp_path / "b", src.tflite_path.read_bytes(), name="x", labels=src.labels[:7], features=src.features)
    assert not (tmp_path / "b").exists()


def test_hash_mismatch(bundle_copy):
    data = bytearray((bundle_copy / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (bundle_copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format_version=2), "format_version 2 is not supported"),
    (lambda m: m["features"].update(feature_version=9), "feature_version 9"),
    (lambda m: m["features"].update(window="hamming"), "window 'hamming'"),
    (lambda m: m["features"].update(mystery=1), "unknown to this frontend"),
    (lambda m: m["features"].pop("n_mels"), "missing for this frontend"),
    (lambda m: m.update(labels=m["labels"][:6]), "6 labels but output shape [1, 8]"),
    (lambda m: m["input"].update(shape=[1, 128, 130]), "input shape [1, 128, 130]"),
    (lambda m: m["input"].update(layout="mel_time"), "input layout 'mel_time'"),
    (lambda m: m.update(eval_hop_s=0.33), "eval_hop_s"),
    (lambda m: m["output"].update(kind="scores"), "output kind 'scores'"),
    (lambda m: m["output"].update(temperature=float("nan")), "temperature nan"),
    (lambda m: m["output"].update(abstain_below=1.5), "abstain_below 1.5"),
    (lambda m: m["output"].update(abstain_below=float("nan")), "abstain_below nan"),
    (lambda m: m.pop("tflite_sha256"), "model.json lacks 'tflite_sha256'"),
])
def test_bad_metadata_is_refused_with_a_reason(bundle_copy, change, message):
    edit_meta(bundle_copy, change)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    assert message in str(info.value) and str(bundle_copy) in str(info.value)


def test_metadata_that_disagrees_with_the_model_is_refused(bundle_copy):
    edit_meta(bundle_copy, lambda m: m["input"].update(scale=0.5))
    with pytest.raises(BundleError, match="model.json describes the input"):
        EmotionModel.load(bundle_copy)


@pytest.mark.parametrize("missing", [META_FILE, MODEL_FILE])
def test_missing_file(bundle_copy, missing):
    (bundle_copy / missing).unlink()
    with pytest.raises(BundleError, match=f"{missing} is missing"):
        load_bundle(bundle_copy)


def test_missing_directory_and_corrupt_json(tmp_path, bundle_copy):
    with pytest.raises(BundleError, match="no such directory"):
        load_bundle(tmp_path / "nowhere")
    (bundle_copy / META_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_corrupt_tflite_with_matching_hash_is_a_bundle_error(bundle_copy):
    import hashlib

    (bundle_copy / MODEL_FILE).write_bytes(b"\x00" * 256)
    edit_meta(bundle_copy, lambda m: m.update(tflite_sha256=hashlib.sha256(b"\x00" * 256).hexdigest()))
    with pytest.raises(BundleError, match="cannot be loaded"):
        EmotionModel.load(bundle_copy)


def test_cli_bundle_errors_exit_78_with_one_line(bundle_copy, tmp_path):
    (bundle_copy / MODEL_FILE).write_bytes(b"garbage")
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, speechlike(3.0), SR)
    proc = run_moodmic("predict", "--model", str(bundle_copy), str(wav))
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.strip().splitlines()[-1].startswith("moodmic: error: model bundle")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("bundle_dir", [TINY_INT8, TINY_FLOAT])
def test_interpreter_gives_probabilities_and_resets_lstm_state(bundle_dir):
    model = EmotionModel.load(bundle_dir)
    x = windows(6.0)
    probs = model.probabilities(x)
    assert probs.shape == (len(x), 8)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.02)
    assert not np.allclose(probs[0], probs[-1])  # different windows, different answers
    # each window is independent of what ran before it (reset_all_variables before every invoke)
    assert np.array_equal(model.probabilities(x[::-1])[::-1], probs)
    assert np.array_equal(model.probabilities(x[2:3])[0], probs[2])


def test_lstm_state_is_reset_before_every_invoke_with_a_negative_control():
    """A, B, A: with the wrapper's reset both A's agree; invoking without a reset, they do not."""
    tfl = TFLiteModel(TINY_FLOAT.joinpath(MODEL_FILE))
    x = windows(6.0)
    a, b = x[0], x[-1]
    with_reset = [tfl.invoke(a), tfl.invoke(b), tfl.invoke(a)]
    assert np.array_equal(with_reset[0], with_reset[2])

    interp = tfl._interp

    def invoke_without_reset(example):
        interp.set_tensor(tfl._in_index, example[None])
        interp.invoke()
        return interp.get_tensor(tfl._out_index)[0].copy()

    interp.reset_all_variables()
    no_reset = [invoke_without_reset(a), invoke_without_reset(b), invoke_without_reset(a)]
    assert np.array_equal(no_reset[0], with_reset[0])  # the same start state gives the same first answer
    assert not np.allclose(no_reset[0], no_reset[2])  # then the LSTM carries B's state into A


def test_logits_bundle_applies_softmax_with_temperature(tmp_path):
    src = load_bundle(TINY_FLOAT)
    assert src.output_kind == "logits"
    raw = TFLiteModel(src.tflite_path).run(windows(3.0))
    hot = write_bundle(tmp_path / "t", src.tflite_path.read_bytes(), name="t", labels=src.labels,
                       features=src.features, output_kind="logits", temperature=2.0)
    assert np.allclose(EmotionModel(hot).probabilities(windows(3.0)), softmax(raw / 2.0), atol=1e-6)


def test_quantize_rounds_and_clips():
    spec = TensorSpec((1, 4), "int8", scale=0.5, zero_point=-10)
    q = quantize(np.array([0.0, 0.26, 1000.0, -1000.0]), spec)
    assert q.dtype == np.int8 and q.tolist() == [-10, -9, 127, -128]
    assert dequantize(q, spec).tolist() == [0.0, 0.5, 68.5, -59.0]
    float_spec = TensorSpec((1, 4), "float32")
    assert quantize(np.array([0.25]), float_spec).dtype == np.float32


@pytest.mark.tensorflow
def test_fixture_script_regenerates_valid_bundles(tmp_path):
    pytest.importorskip("tensorflow", reason="regenerating fixtures needs the train extra")
    import subprocess
    import sys

    from conftest import REPO

    subprocess.run([sys.executable, str(REPO / "tests" / "make_tiny_bundle.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    for name in ("tiny_int8", "tiny_float"):
        fresh = load_bundle(tmp_path / name)
        committed = load_bundle(REPO / "tests" / "fixtures" / name)
        assert fresh.labels == committed.labels and fresh.input.dtype == committed.input.dtype
        assert fresh.tflite_path.stat().st_size < 50_000
        assert EmotionModel(fresh).probabilities(windows(3.0)).shape == (1, 8)
