"""moodmic-convert on a real (small) trained run: every mode, the graph, parity, the gate, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the converter needs the train extra (TensorFlow)")
pytestmark = pytest.mark.tensorflow

from converter.parity import MAX_UA_DROP, MIN_AGREEMENT
from edge.bundle import load_bundle
from edge.errors import EXIT_CONFIG, EXIT_NOINPUT, EXIT_SOFTWARE, BundleError
from edge.features import FeatureParams, Frontend, Window
from edge.model import EmotionModel

from conftest import SR, speechlike, write

MODES = ("int8", "dynamic", "float16", "float32")
# Largest |p_keras - p_tflite| each mode may show on this model.
TOLERANCE = {"float32": 1e-4, "float16": 5e-3, "dynamic": 3e-2, "int8": 0.1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A trained run of the seed's op mix (Conv1D, LayerNorm, BiLSTM, SeqSelfAttention) on synthetic speakers."""
    from trainer.cli import main as train

    from trainer_synth import make_corpus

    root = tmp_path_factory.mktemp("conv")
    corpus = make_corpus(root / "corpus", speakers=6)
    out = root / "run"
    code = train(["train", "--data", str(corpus), "--out", str(out), "--arch", "tiny_lstm", "--epochs", "6",
                  "--aug-copies", "0", "--lr", "0.003", "--cache", str(root / "cache"),
                  "--no-band-mean", "--no-logits"])  # the seed's graph; logits and band mean: test_trainer_recipe.py
    assert code == 0
    return out


@pytest.fixture(scope="module")
def converted(run_dir, tmp_path_factory):
    from converter.cli import main as convert

    out = tmp_path_factory.mktemp("bundles") / "b"
    args = [str(run_dir), "--out", str(out), "--rep-size", "120"]
    for mode in MODES:
        args += ["--mode", mode]
    assert convert(args) == 0
    return out


def keras_probs(run_dir: Path, windows: np.ndarray) -> np.ndarray:
    from trainer.model import batched_infer, load_keras_model

    return batched_infer(load_keras_model(run_dir / "model.keras", compile=False))(windows)


def validation_windows(run_dir: Path) -> np.ndarray:
    from converter.run_dir import load_run
    from edge.features import file_windows, stack

    run = load_run(run_dir)
    fe = Frontend(run.features)
    return stack([w for audio, _ in run.validation_audio() for w in file_windows(fe, audio, 50)])


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_converts_to_builtin_ops_with_the_fused_lstm_and_matches_keras(converted, run_dir, mode):
    bundle = load_bundle(converted / mode)
    conversion = bundle.info["conversion"]
    assert conversion["mode"] == mode
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in conversion["ops"]
    assert not [op for op in conversion["ops"] if op.startswith("Flex")]
    assert bundle.input.dtype == ("int8" if mode == "int8" else "float32")
    model = EmotionModel(bundle)  # the daemon's wrapper
    x = validation_windows(run_dir)
    ours, keras = model.probabilities(x), keras_probs(run_dir, x)
    assert len(set(keras.argmax(1))) >= 3  # a model that predicts several classes
    assert np.mean(ours.argmax(1) == keras.argmax(1)) >= MIN_AGREEMENT
    assert np.max(np.abs(ours - keras)) < TOLERANCE[mode]
    parity = conversion["parity"]
    assert parity["agreement"] >= MIN_AGREEMENT and parity["windows"] == len(x)
    assert parity["keras_ua"] - parity["tflite_ua"] <= MAX_UA_DROP
    # what the model was trained and measured on travels with it
    assert bundle.info["training"]["split"]["test"]["actors"]
    assert set(bundle.info["training"]["split"]["val"]["actors"]).isdisjoint(bundle.info["training"]["split"]["test"]["actors"])


def test_converted_bundle_serves_predict(converted, tmp_path):
    from conftest import run_moodmic

    wav = write(tmp_path / "a.wav", speechlike(4.0), SR)
    proc = run_moodmic("predict", "--model", str(converted / "int8"), str(wav))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["windows"] == 2


def test_abstention_threshold_goes_into_the_bundle(run_dir, tmp_path, capsys):
    from converter.cli import main as convert

    abstain = tmp_path / "abstain.json"
    abstain.write_text(json.dumps({"abstain_below": 0.42, "rule": "a rule", "source": "somewhere"}))
    assert convert([str(run_dir), "--out", str(tmp_path / "b"), "--mode", "dynamic", "--abstain", str(abstain)]) == 0
    bundle = load_bundle(tmp_path / "b")
    assert bundle.abstain_below == 0.42 and bundle.info["conversion"]["abstain"]["rule"] == "a rule"
    assert bundle.smoothing_windows == 0  # no span named: the daemon keeps its own
    abstain.write_text(json.dumps({"abstain_below": 0.3, "smoothing_windows": 5, "rule": "r", "source": "s"}))
    assert convert([str(run_dir), "--out", str(tmp_path / "s"), "--mode", "dynamic", "--abstain", str(abstain)]) == 0
    assert (load_bundle(tmp_path / "s").abstain_below, load_bundle(tmp_path / "s").smoothing_windows) == (0.3, 5)
    abstain.write_text(json.dumps({"abstain_below": None}))  # abstain found no threshold: nothing to convert with
    assert convert([str(run_dir), "--out", str(tmp_path / "c"), "--mode", "dynamic", "--abstain", str(abstain)]) == EXIT_CONFIG
    assert "--abstain" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_parity_gate_refuses_and_writes_nothing(run_dir, tmp_path, capsys):
    from converter.cli import main as convert

    code = convert([str(run_dir), "--out", str(tmp_path / "b"), "--mode", "dynamic", "--min-agreement", "1.01"])
    assert code == EXIT_SOFTWARE
    assert "fails the parity gate (argmax agreement" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_corrupt_run_directory_and_missing_model(run_dir, tmp_path, capsys):
    from converter.cli import main as convert

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    (broken / "run.json").write_text("{ not json")
    assert convert([str(broken), "--out", str(tmp_path / "o")]) in (EXIT_CONFIG,)
    assert "run.json" in capsys.readouterr().err
    shutil.copy(run_dir / "run.json", broken / "run.json")
    (broken / "model.keras").unlink()
    assert convert([str(broken), "--out", str(tmp_path / "o")]) == EXIT_NOINPUT
    assert "model.keras: the run's Keras model is missing" in capsys.readouterr().err
    assert convert([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == EXIT_NOINPUT


def test_a_run_trained_with_speaker_normalisation_is_refused(run_dir, tmp_path, capsys):
    """The device frontend subtracts no speaker spectrum: a bundle of such a run would drift, so none is written."""
    from converter.cli import main as convert
    from edge.errors import EXIT_USAGE

    speaker = tmp_path / "speaker"
    shutil.copytree(run_dir, speaker, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    run = json.loads((speaker / "run.json").read_text())
    run["settings"]["model"]["speaker_mean"] = True
    (speaker / "run.json").write_text(json.dumps(run))
    assert convert([str(speaker), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "trained with --speaker-mean" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_representative_folder_without_audio_is_a_clear_error(run_dir, tmp_path, capsys):
    from converter.cli import main as convert

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    code = convert([str(run_dir), "--out", str(tmp_path / "o"), "--mode", "int8", "--rep-dir", str(tmp_path / "empty")])
    assert code == EXIT_NOINPUT
    assert "holds no .wav/.flac/.ogg files" in capsys.readouterr().err


def test_converter_crash_becomes_a_clear_error(run_dir, tmp_path):
    from converter.build import convert
    from edge.errors import ConversionError

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    (bad / "model.keras").write_bytes(b"not a model")
    with pytest.raises(ConversionError, match=r"float32 conversion crashed \(exit 1\)"):
        convert(bad, "float32")


def test_flex_ops_are_refused_by_name():
    from converter.graph import check_builtin_only

    check_builtin_only(["CONV_2D", "UNIDIRECTIONAL_SEQUENCE_LSTM"])
    with pytest.raises(BundleError, match="FlexAddV2, FlexMatrixDiag"):
        check_builtin_only(["CONV_2D", "FlexMatrixDiag", "FlexAddV2"])


def test_representative_selection_is_stratified_and_spans_loudness():
    from converter.representative import select

    p = FeatureParams()
    fe = Frontend(p)
    rng = np.random.default_rng(0)

    def win(level):
        return Window(0, 0, np.full((p.n_frames, p.n_mels), level, np.float32), level, 0.0, 1.0)

    by_label = {label: [win(float(v)) for v in rng.uniform(-70, -5, 50)] for label in ("a", "b", "c")}
    rep = select(by_label, fe, size=31, seed=1)
    assert rep.shape == (31, p.n_frames, p.n_mels)
    assert np.all(rep[0] == p.floor_db)  # the silence window pins the floor
    levels = rep[1:, 0, 0]
    for windows in by_label.values():
        rms = sorted(w.rms_dbfs for w in windows)
        assert rms[0] in levels and rms[-1] in levels  # quietest and loudest of every class
    assert np.array_equal(select(by_label, fe, size=31, seed=1), rep)
