"""The issue-8 recipe features (TensorFlow, fast): window augmentation, the band-mean layer and its
TFLite ops, logits + focal loss, temperature fitting and ECE, the `all` split, and a logits bundle
with a temperature converted with its parity gate on the training side."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the trainer needs the train extra (TensorFlow)")
pytest.importorskip("tf_keras", reason="the trainer needs the train extra (tf-keras)")
pytestmark = pytest.mark.tensorflow

from edge.audio import load_audio
from edge.errors import EXIT_USAGE
from edge.features import FeatureParams, Frontend, file_windows
from trainer.augment import AugmentSettings, augment_windows
from trainer.calibrate import ece, fit_temperature, nll
from trainer.losses import FocalLoss
from trainer.model import CUSTOM_OBJECTS, build_model, load_keras_model, outputs_logits
from trainer.settings import LEGACY_MODEL, ModelSettings, RunSettings

P = FeatureParams()
FLOOR = P.floor_db


def _windows(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-70, -5, (n, P.n_frames, P.n_mels)).astype(np.float32)
    x[:, :12] = FLOOR  # leading digital silence
    return x


def test_window_augmentation_is_off_by_default_and_reproducible():
    x = _windows()
    assert augment_windows(x, AugmentSettings(), np.random.default_rng(0), FLOOR) is x
    s = AugmentSettings(gain_db=6, time_masks=2, freq_masks=2)
    a = augment_windows(x, s, np.random.default_rng(5), FLOOR)
    b = augment_windows(x, s, np.random.default_rng(5), FLOOR)
    assert np.array_equal(a, b) and a.dtype == np.float32 and not np.array_equal(a, x)
    assert np.array_equal(x, _windows())  # the input is not modified


def test_gain_is_one_offset_per_window_silence_stays_at_the_floor_and_everything_is_clamped():
    x = _windows()
    y = augment_windows(x, AugmentSettings(gain_db=20), np.random.default_rng(1), FLOOR)
    assert np.all(y[:, :12] == FLOOR)  # digital silence stays silence
    assert y.min() >= FLOOR
    for xi, yi in zip(x, y):
        free = (xi > FLOOR) & (yi > FLOOR)
        offsets = (yi - xi)[free]
        assert np.allclose(offsets, offsets[0], atol=1e-4) and abs(offsets[0]) <= 20
        assert np.all(yi[(xi > FLOOR) & (xi + offsets[0] <= FLOOR)] == FLOOR)  # quieter: re-clamped at the floor


def test_masks_are_runs_of_silence_of_bounded_width():
    x = _windows(n=20)
    x[:, :12] = -30.0  # no floor in the input, so every floor bin is a mask
    t = augment_windows(x, AugmentSettings(time_masks=1, time_mask=10), np.random.default_rng(2), FLOOR)
    for w in t:
        rows = np.flatnonzero(np.all(w == FLOOR, axis=1))
        assert len(rows) <= 10 and (len(rows) == 0 or np.all(np.diff(rows) == 1))
        assert np.all((w == FLOOR).any(axis=1) == np.all(w == FLOOR, axis=1))  # whole frames only
    f = augment_windows(x, AugmentSettings(freq_masks=1, freq_mask=8), np.random.default_rng(3), FLOOR)
    widths = [len(np.flatnonzero(np.all(w == FLOOR, axis=0))) for w in f]
    assert max(widths) <= 8 and max(widths) > 0


def test_frequency_warp_moves_a_spectral_line_by_the_drawn_factor_and_keeps_each_frame():
    from edge.features import mel_edges_hz
    from trainer.augment import warp_bands

    hz = mel_edges_hz(P)[1:-1]
    x = np.full((3, P.n_frames, P.n_mels), FLOOR, np.float32)
    x[:, 40:, 60] = -10.0  # a tone at band 60 from frame 40 on
    y = warp_bands(x, np.array([1.0, 1.12, 0.88]), hz)
    assert np.array_equal(y[0], x[0])  # factor 1: unchanged
    for w, factor in zip(y[1:], (1.12, 0.88)):
        peak = int(np.argmax(w[50]))
        assert abs(hz[peak] / hz[60] - factor) < 0.02  # the line sits at the scaled frequency
        assert np.all(w[:40] == FLOOR) and w[50].max() > -45  # silence stays silence, the line survives
    with pytest.raises(ValueError, match="centre frequencies"):
        augment_windows(x, AugmentSettings(freq_warp=0.1), np.random.default_rng(0), FLOOR)
    a = augment_windows(x, AugmentSettings(freq_warp=0.1), np.random.default_rng(0), FLOOR, hz)
    assert a.dtype == np.float32 and not np.array_equal(a, x)
    assert np.array_equal(a, augment_windows(x, AugmentSettings(freq_warp=0.1), np.random.default_rng(0), FLOOR, hz))
    # speech only: sung windows stay as they were, spoken ones are warped as before
    song = np.array([True, False, True])
    b = augment_windows(x, AugmentSettings(freq_warp=0.1, freq_warp_song=False), np.random.default_rng(0), FLOOR, hz, song)
    assert np.array_equal(b[song], x[song]) and np.array_equal(b[1], a[1])
    with pytest.raises(ValueError, match="which windows are sung"):  # not silently warping song too
        augment_windows(x, AugmentSettings(freq_warp=0.1, freq_warp_song=False), np.random.default_rng(0), FLOOR, hz)


def test_focal_loss_from_logits_and_label_smoothing():
    logits = np.array([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]], np.float32)
    y = np.array([1, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for gamma in (0.0, 2.0):
        assert float(FocalLoss(gamma, from_logits=True)(y, logits)) == pytest.approx(float(FocalLoss(gamma)(y, p)), rel=1e-5)
    # gamma 0 with smoothing e: the cross-entropy against (1 - e) one-hot + e / K
    e = 0.1
    target = (1 - e) * np.eye(3)[y] + e / 3
    by_hand = float(np.mean(-(target * np.log(p)).sum(1)))
    assert float(FocalLoss(0.0, from_logits=True, label_smoothing=e)(y, logits)) == pytest.approx(by_hand, rel=1e-5)
    restored = FocalLoss.from_config(FocalLoss(1.0, from_logits=True, label_smoothing=e).get_config())
    assert (restored.gamma, restored.from_logits, restored.label_smoothing) == (1.0, True, e)


def test_soft_targets_weigh_each_class_loss_so_a_blend_of_two_labels_is_the_blend_of_their_losses():
    logits = np.array([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0], [0.0, 0.3, -0.4]], np.float32)
    y, other, lam = np.array([1, 2, 0]), np.array([0, 2, 2]), np.array([0.7, 0.4, 1.0], np.float32)
    for loss in (FocalLoss(2.0, from_logits=True), FocalLoss(2.0, from_logits=True, label_smoothing=0.1)):
        per = [loss.call(np.array(c), logits).numpy() for c in (y, other)]
        assert np.allclose(loss.call(np.eye(3, dtype=np.float32)[y], logits).numpy(), per[0], atol=1e-6)  # one-hot
        soft = lam[:, None] * np.eye(3)[y] + (1 - lam[:, None]) * np.eye(3)[other]
        assert np.allclose(loss.call(soft.astype(np.float32), logits).numpy(), lam * per[0] + (1 - lam) * per[1], atol=1e-6)


def test_band_mean_logits_ensemble_model_saves_reloads_and_converts_to_builtin_mean_and_sub(tmp_path):
    from converter.build import tflite_converter
    from converter.graph import check_builtin_only, op_names
    from edge.interpreter import TFLiteModel

    settings = ModelSettings(band_mean=True, logits=True, ensemble=2)
    model = build_model("tiny", 8, P, settings=settings)
    assert outputs_logits(model) and "BandMeanSubtraction" in CUSTOM_OBJECTS
    x = _windows(4)
    # the band-mean layer removes a constant per band: a level change of the whole window changes nothing
    z = model.predict_on_batch(x)
    assert np.allclose(model.predict_on_batch(x + 7.0), z, atol=1e-4)
    # but not each band's scale over the window: how strongly a band moves still counts
    scale = np.random.default_rng(3).uniform(0.5, 3.0, P.n_mels).astype(np.float32)
    assert not np.allclose(model.predict_on_batch(x * scale), z, atol=1e-3)
    assert not np.allclose(z.sum(1), 1.0)  # logits, not probabilities
    model.save(tmp_path / "m.keras")
    again = load_keras_model(tmp_path / "m.keras", compile=False)
    assert np.allclose(again.predict_on_batch(x), z, atol=1e-5)
    clone = build_model("tiny", 8, P, batch_size=1, settings=settings)
    clone.set_weights(model.get_weights())
    tflite = tflite_converter(clone, "dynamic").convert()
    ops = op_names(tflite)
    check_builtin_only(ops)
    assert {"MEAN", "SUB"} <= set(ops)
    out = TFLiteModel(tflite).run(x)
    assert np.abs(out - z).max() < 0.02 * np.abs(z).max()  # dynamic-range weights: small relative error


def test_legacy_runs_keep_their_graph():
    """Runs written before model settings existed rebuild as they were trained: no band mean, softmax."""
    legacy = RunSettings.from_dict({"arch": "seed"})
    assert legacy.model == LEGACY_MODEL and ModelSettings.from_dict(None) == LEGACY_MODEL
    assert RunSettings.from_dict(RunSettings().to_dict()).model == ModelSettings()
    assert not outputs_logits(build_model("tiny", 8, P))


def test_temperature_fit_recovers_a_known_temperature_and_lowers_ece():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2.0, (4000, 8))
    p = np.exp(true) / np.exp(true).sum(1, keepdims=True)
    y = np.array([rng.choice(8, p=row) for row in p])
    overconfident = true * 3.0  # softmax(overconfident / 3) is the true distribution
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(overconfident, y, t) < nll(overconfident, y)

    def probs(z, temp):
        e = np.exp(z / temp - (z / temp).max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    assert ece(probs(overconfident, t), y) < 0.03 < ece(probs(overconfident, 1.0), y)
    assert ece(np.eye(8)[y], y) == 0.0  # certain and right


def test_final_model_on_every_clip_converts_with_its_temperature_and_parity_on_the_training_side(tmp_path):
    from converter.cli import main as convert
    from edge.bundle import load_bundle
    from edge.errors import EXIT_CONFIG
    from edge.model import EmotionModel, softmax
    from trainer.cli import main as train
    from trainer.rundir import read_run

    from trainer_synth import make_corpus

    corpus = make_corpus(tmp_path / "corpus", speakers=4, reps=1)
    run = tmp_path / "run"
    assert train(["train", "--data", str(corpus), "--out", str(run), "--split", "all", "--arch", "tiny", "--epochs", "3",
                  "--aug-copies", "0", "--gain-db", "6", "--time-masks", "1", "--freq-masks", "1",
                  "--cache", str(tmp_path / "cache")]) == 0
    info = read_run(run)
    assert info["split"]["kind"] == "all" and not info["split"]["val"]["actors"] and not info["split"]["test"]["actors"]
    assert info["metrics"] == {"val": {}, "test": {}}
    assert info["training"] == {**info["training"], "epochs_run": 3, "best_epoch": 3, "stopped_early": False}
    assert (run / "checkpoints" / "best-003.keras").is_file()

    assert convert([str(run), "--out", str(tmp_path / "refused")]) == EXIT_CONFIG  # no validation side
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"temperature": 1.7, "ece": {}}))
    out = tmp_path / "bundle"
    assert convert([str(run), "--out", str(out), "--parity-side", "train", "--calibration", str(calibration)]) == 0
    bundle = load_bundle(out)
    assert (bundle.output_kind, bundle.temperature) == ("logits", 1.7)
    assert bundle.info["conversion"]["parity_side"].startswith("training clips")
    assert bundle.info["conversion"]["calibration"]["temperature"] == 1.7
    assert {"MEAN", "SUB"} <= set(bundle.info["conversion"]["ops"])
    model = EmotionModel(bundle)
    x = _windows(3)
    assert np.allclose(model.probabilities(x), softmax(model.tflite.run(x), 1.7))


def test_cv_calibration_and_the_ensemble_of_fold_models_convert_to_one_logits_bundle(tmp_path):
    from converter.cli import main as convert
    from edge.bundle import load_bundle
    from edge.model import EmotionModel, softmax
    from trainer.cli import main as train
    from trainer.graphs import rebuild_model
    from trainer.model import batched_infer
    from trainer.rundir import read_run

    from trainer_synth import make_corpus

    corpus = make_corpus(tmp_path / "corpus", speakers=6, reps=1)
    cv = tmp_path / "cv"
    assert train(["cv", "--data", str(corpus), "--out", str(cv), "--folds", "3", "--arch", "tiny", "--epochs", "3",
                  "--val-actors", "1", "--aug-copies", "0", "--cache", str(tmp_path / "cache")]) == 0
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary["validation"]["all"]["unweighted_accuracy"]["mean"] >= 0 and set(summary["per_class_recall"])
    assert train(["calibrate", str(cv)]) == 0
    cal = json.loads((cv / "calibration.json").read_text())
    assert cal["temperature"] > 0 and set(cal["ece"]) == {"val", "test"}
    assert cal["nll"]["val"]["after"] <= cal["nll"]["val"]["before"] + 1e-6  # fitted there
    assert cal["conditions"] == ["clean"] and cal["noise"] is None

    # in rooms and noise too: every clip also rendered under each condition, its pool's recordings
    from test_conditions import write_noise

    noise = write_noise(tmp_path / "noise-root", kinds=("fan", "voices"), pools=("validation", "evaluation"), per=1)
    assert train(["calibrate", str(cv), "--conditions", "far"]) == EXIT_USAGE  # nothing to render with
    assert train(["calibrate", str(cv), "--noise", str(noise), "--conditions", "noise-music-10"]) == EXIT_USAGE  # no music
    assert train(["calibrate", str(cv), "--noise", str(noise), "--conditions", "clean,noise-fan-10,far"]) == 0
    noisy = json.loads((cv / "calibration.json").read_text())
    assert noisy["conditions"] == ["clean", "noise-fan-10", "far"] and "validation-pool" in noisy["fitted_on"]
    assert {p: noisy["windows"][p] for p in cal["windows"]} == {p: 3 * n for p, n in cal["windows"].items()}
    assert set(noisy["by_condition"]) == set(noisy["conditions"]) and noisy["by_condition"]["clean"]["val"] == {
        "before": cal["ece"]["val"]["window"]["before"], "after": noisy["by_condition"]["clean"]["val"]["after"]}
    assert noisy["temperature"] != cal["temperature"]  # the noisy windows were fitted on too
    assert noisy["nll"]["val"]["after"] <= noisy["nll"]["val"]["before"] + 1e-6
    assert train(["calibrate", str(cv)]) == 0  # back to the clean fit, which the bundle below carries

    ens = tmp_path / "ensemble"
    assert train(["ensemble", str(cv), "--out", str(ens)]) == 0
    run = read_run(ens)
    assert run["split"]["kind"] == "all" and len(run["members"]) == 3
    assert run["metrics"]["val"] == run["metrics"]["test"] == {}
    assert run["metrics"]["cv"]["all"]["unweighted_accuracy"] == summary["summary"]["all"]["unweighted_accuracy"]["mean"]
    assert run["metrics"]["cv"]["all"]["actors"] == run["split"]["train"]["actors"]
    assert sorted(a for m in run["members"] for a in m["test_actors"]) == run["split"]["train"]["actors"]
    # the ensemble is the mean of its members' logits, and its batch-1 clone is the same model
    x = _windows(3)
    members = [load_keras_model(cv / f"fold-{k}" / "model.keras", compile=False) for k in range(3)]
    mean = np.mean([m.predict_on_batch(x) for m in members], axis=0)
    clone = rebuild_model(ens, batch_size=1)
    assert np.allclose(np.concatenate([clone.predict_on_batch(w[None]) for w in x]), mean, atol=1e-4)
    assert np.allclose(batched_infer(load_keras_model(ens / "model.keras", compile=False))(x), softmax(mean), atol=1e-5)

    out = tmp_path / "bundle"
    assert convert([str(ens), "--out", str(out), "--parity-side", "train", "--calibration", str(cv / "calibration.json")]) == 0
    bundle = load_bundle(out)
    assert bundle.output_kind == "logits" and bundle.temperature == cal["temperature"]
    assert len(bundle.info["training"]["members"]) == 3 and bundle.info["training"]["cv"]["folds_done"] == [0, 1, 2]
    assert str(tmp_path) not in (out / "model.json").read_text(encoding="utf-8")  # no folder of the build machine
    assert EmotionModel(bundle).probabilities(x).shape == (3, 8)


def test_members_cv_averages_runs_that_differ_only_in_init_seed_and_final_trains_them_on_every_actor(tmp_path):
    from converter.cli import main as convert
    from edge.bundle import load_bundle
    from trainer.cli import main as train
    from trainer.final import median_schedule
    from trainer.graphs import rebuild_model
    from trainer.rundir import read_run

    from trainer_synth import tiny_cvs

    cvs = tiny_cvs(tmp_path)
    a, b = (cv / "fold-0" for cv in cvs)
    # same items and augmented copies (the run seed's), different weights (the init seed's)
    assert (a / "fit_items.csv").read_text() == (b / "fit_items.csv").read_text()
    x = _windows(4)
    ma, mb = (load_keras_model(d / "model.keras", compile=False) for d in (a, b))
    assert not np.allclose(ma.predict_on_batch(x), mb.predict_on_batch(x))

    out = tmp_path / "members"
    assert train(["members", *map(str, cvs), "--out", str(tmp_path / "odd-hop"), "--eval-hop", "0.25"]) == EXIT_USAGE
    assert train(["members", *map(str, cvs), "--out", str(out), "--eval-hop", "0.2"]) == 0
    run = read_run(out / "fold-0")
    assert [m["init_seed"] for m in run["members"]] == [1, 2]
    # scored at its own hop (the members' is 1 s): every clip's windows as a device at 0.2 s takes them
    assert run["eval_hop_s"] == 0.2 and read_run(a)["eval_hop_s"] == 1.0
    frontend = Frontend(FeatureParams.from_dict(run["features"]))
    rows = list(csv.DictReader(open(out / "fold-0" / "predictions.csv")))
    assert [int(r["windows"]) for r in rows] == [
        len(file_windows(frontend, load_audio(r["path"], frontend.params.sample_rate), frontend.params.hop_frames(0.2)))
        for r in rows]
    assert sum(int(r["windows"]) for r in rows) > sum(int(r["windows"]) for r in csv.DictReader(open(a / "predictions.csv")))
    # finished folds are kept only at the hop they were scored at
    assert train(["members", *map(str, cvs), "--out", str(out), "--eval-hop", "0.4"]) == EXIT_USAGE
    assert run["split"] == read_run(a)["split"] and run["metrics"]["test"]["all"]["clips"] == run["split"]["test"]["clips"]
    mean = (ma.predict_on_batch(x) + mb.predict_on_batch(x)) / 2
    combined = load_keras_model(out / "fold-0" / "model.keras", compile=False)
    assert np.allclose(combined.predict_on_batch(x), mean, atol=1e-5)
    clone = rebuild_model(out / "fold-0", batch_size=1)  # what the converter builds
    assert np.allclose(np.concatenate([clone.predict_on_batch(w[None]) for w in x]), mean, atol=1e-4)
    assert json.loads((out / "cv_summary.json").read_text())["folds_done"] == [0, 1, 2]

    # the final model: each member's recipe on every actor, for its CV's median best epoch, at the
    # median learning rate of each epoch of its folds; then averaged, and converted with the CV figure
    final = tmp_path / "final"
    assert train(["final", str(out), "--out", str(final), "--member", "5"]) == EXIT_USAGE  # there are members 0-1
    assert train(["final", str(out), "--out", str(final), "--member", "1"]) == 0  # one member, as on its own core
    assert (final / "member-1" / "run.json").is_file() and not (final / "member-0").exists()
    assert not (final / "run.json").exists()
    member_1 = (final / "member-1" / "run.json").read_text()
    assert train(["final", str(out), "--out", str(final)]) == 0  # the other member, then the average
    assert (final / "member-1" / "run.json").read_text() == member_1  # kept, not retrained
    run = read_run(final)
    assert run["split"]["kind"] == "all" and run["metrics"]["test"] == {}
    assert run["metrics"]["cv"]["all"]["unweighted_accuracy"] == pytest.approx(
        json.loads((out / "cv_summary.json").read_text())["summary"]["all"]["unweighted_accuracy"]["mean"])
    for i, (cv, m) in enumerate(zip(cvs, run["members"])):
        member = read_run(final / f"member-{i}")
        folds = [read_run(cv / f"fold-{k}") for k in range(3)]
        assert m["init_seed"] == i + 1 and member["split"]["kind"] == "all"
        assert member["split"]["train"]["clips"] == sum(folds[0]["split"][p]["clips"] for p in ("train", "val", "test"))
        epochs = int(round(float(np.median([f["training"]["best_epoch"] for f in folds]))))
        assert member["training"]["epochs_run"] == epochs
        histories = [list(csv.DictReader(open(cv / f"fold-{k}" / "history.csv"))) for k in range(3)]
        rows = list(csv.DictReader(open(final / f"member-{i}" / "history.csv")))
        assert [float(r["lr"]) for r in rows] == pytest.approx(median_schedule(histories, epochs))
    assert train(["final", str(out), "--out", str(final)]) == 0  # finished: kept, nothing retrained
    bundle_dir = tmp_path / "final-bundle"
    assert convert([str(final), "--out", str(bundle_dir), "--parity-side", "train"]) == 0
    assert load_bundle(bundle_dir).info["training"]["cv"]["folds_done"] == [0, 1, 2]
    assert load_bundle(bundle_dir).eval_hop_s == 0.2  # `moodmic predict` scores files as the CV did

    # float vs converted on the same folds: each fold's ensemble converted, run by LiteRT on its test actors
    import subprocess
    import sys

    from conftest import REPO

    conv = tmp_path / "converted"
    proc = subprocess.run([sys.executable, str(REPO / "trainer" / "recipe" / "converted_cv.py"), str(out), str(conv)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((conv / "converted_cv.json").read_text())
    assert [r["fold"] for r in result["folds"]] == ["fold-0", "fold-1", "fold-2"]
    for r in result["folds"]:
        fold = read_run(out / r["fold"])
        assert r["float"]["all"] == fold["metrics"]["test"]["all"]["unweighted_accuracy"]
        assert r["test_actors"] == fold["split"]["test"]["actors"]
        scored = json.loads((conv / r["fold"] / "evaluation" / "metrics.json").read_text())
        assert scored["eval"]["all"]["clips"] == fold["split"]["test"]["clips"]  # exactly the fold's test clips
        assert abs(r["converted"]["all"] - r["float"]["all"]) <= 0.1
    assert "| mean |" in (conv / "converted_cv.md").read_text()

    # the same member twice, or members of different recipes, are refused with the reason
    assert train(["members", str(cvs[0]), str(cvs[0]), "--out", str(tmp_path / "twice")]) == EXIT_USAGE
    other = tmp_path / "cv-other"
    shutil.copytree(cvs[1], other)
    changed = json.loads((other / "fold-0" / "run.json").read_text())
    changed["settings"]["fit"]["learning_rate"] = 0.1
    (other / "fold-0" / "run.json").write_text(json.dumps(changed))
    assert train(["members", str(cvs[0]), str(other), "--out", str(tmp_path / "mixed")]) == EXIT_USAGE


def test_refit_retrains_each_fold_on_its_validation_actors_too_for_the_epochs_they_chose(tmp_path):
    from trainer.cli import main as train
    from trainer.rundir import read_run

    from trainer_synth import make_corpus

    corpus = make_corpus(tmp_path / "corpus", speakers=6, reps=1)
    common = ["--data", str(corpus), "--folds", "3", "--arch", "tiny", "--epochs", "4", "--val-actors", "1",
              "--aug-copies", "0", "--cache", str(tmp_path / "cache"), "--lr-patience", "1", "--logits"]
    # a scoring hop that is not a whole number of frames: one usage error before anything is written
    assert train(["cv", *common, "--out", str(tmp_path / "odd"), "--eval-hop", "0.25"]) == EXIT_USAGE
    assert not (tmp_path / "odd" / "fold-0").exists()
    cvs = [tmp_path / f"cv-{s}" for s in (1, 2)]
    for cv, seed in zip(cvs, (1, 2)):
        assert train(["cv", *common, "--out", str(cv), "--init-seed", str(seed)]) == 0

    refits = [tmp_path / f"refit-{s}" for s in (1, 2)]
    assert train(["refit", str(cvs[0]), "--out", str(refits[0]), "--fold", "1"]) == 0  # one fold, as on its own core
    assert sorted(p.name for p in refits[0].glob("fold-*")) == ["fold-1"]
    kept = (refits[0] / "fold-1" / "run.json").read_text()
    for cv, refit in zip(cvs, refits):
        assert train(["refit", str(cv), "--out", str(refit)]) == 0
    assert (refits[0] / "fold-1" / "run.json").read_text() == kept  # finished folds are kept
    for k in range(3):
        fold, again = read_run(cvs[0] / f"fold-{k}"), read_run(refits[0] / f"fold-{k}")
        # the validation actors train too; the test actors are the fold's, untouched
        assert again["split"]["test"] == fold["split"]["test"] and again["split"]["val"]["clips"] == 0
        assert again["split"]["refit_actors"] == fold["split"]["val"]["actors"]
        assert again["split"]["train"]["actors"] == sorted(fold["split"]["train"]["actors"] + fold["split"]["val"]["actors"])
        assert again["split"]["train"]["clips"] == fold["split"]["train"]["clips"] + fold["split"]["val"]["clips"]
        # for the fold's best epoch, at the rates the fold ran those epochs at; nothing chosen after
        best = fold["training"]["best_epoch"]
        assert again["training"]["epochs_run"] == best and not again["training"]["stopped_early"]
        rates = [float(r["lr"]) for r in csv.DictReader(open(cvs[0] / f"fold-{k}" / "history.csv"))][:best]
        assert [float(r["lr"]) for r in csv.DictReader(open(refits[0] / f"fold-{k}" / "history.csv"))] == pytest.approx(rates)
        assert again["metrics"]["val"] == {} and again["metrics"]["test"]["all"]["clips"] == fold["split"]["test"]["clips"]
        assert (refits[0] / f"fold-{k}" / "confusion_matrix.png").is_file()
    summary = json.loads((refits[0] / "cv_summary.json").read_text())
    assert summary["folds_done"] == [0, 1, 2] and summary["validation"] == {}
    assert [f["refit_actors"] for f in summary["per_fold"].values()] == [
        read_run(cvs[0] / f"fold-{k}")["split"]["val"]["actors"] for k in range(3)]
    assert "Refitted folds" in (refits[0] / "cv_summary.md").read_text()

    # refits of several init seeds combine like cv folders, at the bundle's hop
    out = tmp_path / "members"
    assert train(["members", *map(str, refits), "--out", str(out), "--eval-hop", "0.2"]) == 0
    run = read_run(out / "fold-0")
    assert run["metrics"]["val"] == {} and run["split"] == read_run(refits[0] / "fold-0")["split"]
    assert json.loads((out / "cv_summary.json").read_text())["folds_done"] == [0, 1, 2]

    # the final model trained from the early-stopped CV carries the refit's figure: the CV of what it is
    cv_members = tmp_path / "cv-members"
    assert train(["members", *map(str, cvs), "--out", str(cv_members), "--eval-hop", "0.2"]) == 0
    swapped = tmp_path / "swapped"  # the same refits, members in the other order: not the same ensembles
    assert train(["members", *map(str, refits[::-1]), "--out", str(swapped), "--eval-hop", "0.2"]) == 0
    assert train(["final", str(cv_members), "--out", str(tmp_path / "no"), "--refit", str(swapped)]) == EXIT_USAGE
    assert train(["final", str(cv_members), "--out", str(tmp_path / "no"), "--refit", str(refits[0])]) == EXIT_USAGE
    assert not (tmp_path / "no").exists()
    final = tmp_path / "final"
    assert train(["final", str(cv_members), "--out", str(final), "--refit", str(out)]) == 0
    run = read_run(final)
    assert run["cv"] == json.loads((out / "cv_summary.json").read_text())
    assert run["metrics"]["cv"]["all"]["unweighted_accuracy"] == run["cv"]["summary"]["all"]["unweighted_accuracy"]["mean"]
    assert (final / "cv_summary.md").read_text() == (out / "cv_summary.md").read_text()
    assert [m["epochs"] for m in run["members"]] == [  # trained as from the early-stopped CV, which chose the epochs
        int(round(float(np.median([read_run(cv / f"fold-{k}")["training"]["best_epoch"] for k in range(3)])))) for cv in cvs]

    # refused, each with its reason: a refit of a refit, an unfinished fold, an ensemble folder, itself
    assert train(["refit", str(refits[0]), "--out", str(tmp_path / "twice")]) == EXIT_USAGE
    assert train(["refit", str(cvs[0]), "--out", str(tmp_path / "r"), "--fold", "7"]) == EXIT_USAGE
    assert train(["refit", str(out), "--out", str(tmp_path / "r2")]) == EXIT_USAGE
    assert train(["refit", str(cvs[0]), "--out", str(cvs[0])]) == EXIT_USAGE


def _teacher_file(path, corpus_root, sides, seed=0):
    """A teacher file (trainer.teacher) with random probabilities for each listed set of training actors."""
    from trainer.corpus import LABELS, load_corpus
    from trainer.teacher import side_key

    clips = load_corpus(corpus_root).usable
    rng = np.random.default_rng(seed)
    probs = {}
    for side in sides:
        p = rng.dirichlet(np.ones(len(LABELS)), len(clips)).astype(np.float32)
        p[~np.isin([c.speaker for c in clips], side)] = np.nan
        probs[side_key(side)] = p
    np.savez(path, names=np.array([c.name for c in clips]), labels=np.array(LABELS), **probs)
    return clips, probs


def test_a_teacher_blends_its_probabilities_into_each_training_target_and_validation_stays_one_hot(tmp_path):
    from trainer.cache import FeatureCache
    from trainer.corpus import LABELS
    from trainer.data import build_training_data
    from trainer.teacher import side_key, soft_labels

    from trainer_synth import make_corpus

    root = make_corpus(tmp_path / "corpus", speakers=3, reps=1)
    clips, probs = _teacher_file(tmp_path / "teacher.npz", root, [("01", "02")])
    train = [c for c in clips if c.speaker in ("01", "02")]
    soft = soft_labels(tmp_path / "teacher.npz", train, LABELS)
    index = {c.name: i for i, c in enumerate(clips)}
    assert np.allclose(soft, probs[side_key(("01", "02"))][[index[c.name] for c in train]])
    frontend = Frontend(P)
    data = build_training_data(train, [c for c in clips if c.speaker == "03"], LABELS, frontend,
                               FeatureCache(tmp_path / "cache", frontend), AugmentSettings(copies=1), P.hop_frames(1.0),
                               0, teacher=soft, teacher_weight=0.3)
    items, starts = data.epoch_plan(0, 0)
    _, y = data.training_batch(items[:16], starts[:16], np.random.default_rng(0))
    for i, target in zip(items[:16], y):  # an augmented copy carries its clip's soft labels
        clip = data.items[i].clip
        expected = 0.7 * np.eye(len(LABELS))[LABELS.index(clip.label)] + 0.3 * soft[[c.name for c in train].index(clip.name)]
        assert np.allclose(target, expected, atol=1e-6)
    assert data.val_targets.shape == (len(data.val_y), len(LABELS)) and np.array_equal(data.val_targets.argmax(1), data.val_y)

    # song=False (--no-teacher-song): sung clips are taught their plain label, spoken ones keep the teacher's
    speech_only = soft_labels(tmp_path / "teacher.npz", train, LABELS, song=False)
    sung = np.array([c.channel == "song" for c in train])
    assert sung.any() and (~sung).any()
    assert np.array_equal(speech_only[~sung], soft[~sung])
    assert np.array_equal(speech_only[sung], np.eye(len(LABELS))[[LABELS.index(c.label) for c in train if c.channel == "song"]])
    assert not np.allclose(soft[sung], speech_only[sung])


def test_a_teacher_run_needs_soft_labels_for_exactly_its_training_actors(tmp_path):
    from itertools import combinations

    from trainer.cli import main as train
    from trainer.rundir import read_run

    from trainer_synth import make_corpus

    root = make_corpus(tmp_path / "corpus", speakers=4, reps=1)
    actors = ("01", "02", "03", "04")
    _teacher_file(tmp_path / "teacher.npz", root, list(combinations(actors, 2)))  # every side a 4-fold split can train on
    common = ["--data", str(root), "--folds", "4", "--val-actors", "1", "--arch", "tiny", "--epochs", "2",
              "--aug-copies", "0", "--cache", str(tmp_path / "cache")]
    run = tmp_path / "run"
    assert train(["train", *common, "--out", str(run), "--teacher", str(tmp_path / "teacher.npz"), "--teacher-weight", "0.5",
                  "--no-teacher-song"]) == 0
    info = read_run(run)
    fit = info["settings"]["fit"]
    assert (fit["teacher"], fit["teacher_weight"], fit["teacher_song"]) == (str(tmp_path / "teacher.npz"), 0.5, False)
    assert info["teacher"]["sha256"] == hashlib.sha256((tmp_path / "teacher.npz").read_bytes()).hexdigest()
    for r in csv.DictReader(open(run / "history.csv")):
        assert np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_loss"])) and 0 <= float(r["val_accuracy"]) <= 1

    _teacher_file(tmp_path / "other.npz", root, [("01", "02", "03")])  # another split's training side only
    (tmp_path / "broken.npz").write_bytes(b"not a teacher")
    for bad in (["--teacher", str(tmp_path / "teacher.npz")],  # no weight
                ["--teacher-weight", "0.5"],  # no file
                ["--teacher", str(tmp_path / "teacher.npz"), "--teacher-weight", "1.5"],
                ["--teacher", str(tmp_path / "other.npz"), "--teacher-weight", "0.5"],
                ["--teacher", str(tmp_path / "broken.npz"), "--teacher-weight", "0.5"],
                ["--no-teacher-song"]):  # nothing to keep off song
        assert train(["train", *common, "--out", str(tmp_path / "bad"), *bad]) == EXIT_USAGE, bad
        assert not (tmp_path / "bad").exists()  # refused before the run directory exists
