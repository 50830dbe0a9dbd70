"""moodmic-train end to end on a synthetic corpus (TensorFlow): artifacts, learning, leaks, resume, cv, evaluate.

Runs use the `tiny` architecture so the whole file takes a minute or two on two cores; the seed
architecture's shape is checked in test_trainer_model.py. The leak checks of a run directory's
files also audit a real run: `MOODMIC_RUN_DIR=RUN pytest tests/test_trainer_run.py -k audit`.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the trainer needs the train extra (TensorFlow)")
pytest.importorskip("tf_keras", reason="the trainer needs the train extra (tf-keras)")
pytestmark = pytest.mark.tensorflow

import trainer.data
from edge.audio import load_audio
from edge.errors import EXIT_USAGE
from edge.features import FeatureParams, Frontend, file_windows
from trainer.cli import main
from trainer.rundir import read_run

from trainer_synth import make_corpus, shuffled_manifest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
ARTIFACTS = ("run.json", "settings.json", "command.txt", "manifest.csv", "fit_items.csv", "history.csv", "model.keras",
             "training_curves.png", "confusion_matrix.png", "confusion_matrix_val.png", "classification_report.txt",
             "metrics.json", "predictions.csv", "model_card.md")


def fast(cache: Path, epochs: int = 12) -> list[str]:
    # --no-band-mean: the synthetic emotions are steady tones, which a per-window band mean removes by design
    return ["--arch", "tiny", "--folds", "4", "--epochs", str(epochs), "--aug-copies", "1", "--cache", str(cache), "--seed", "0",
            "--no-band-mean"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def train(out: Path, *args: str) -> tuple[Path, object, list[int]]:
    """Run `moodmic-train train` in-process; return the run, the TrainingData fit() got, and every item it served."""
    captured, served = [], []
    real_build, real_windows = trainer.data.build_training_data, trainer.data.TrainingData.windows

    def build(*a, **k):
        captured.append(real_build(*a, **k))
        return captured[-1]

    def windows(self, items, starts):
        served.extend(int(i) for i in items)
        return real_windows(self, items, starts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer.data, "build_training_data", build)
        mp.setattr(trainer.data.TrainingData, "windows", windows)
        assert main(["train", "--out", str(out), *args]) == 0
    return out, captured[0], served


@pytest.fixture(scope="module")
def actor_run(synth, cache, tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "actor", "--data", str(synth), *fast(cache))


@pytest.fixture(scope="module")
def stratified_run(synth, cache, tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "stratified", "--data", str(synth), "--split", "stratified", *fast(cache, 2))


def test_a_run_writes_every_artifact(actor_run):
    run_dir, data, _ = actor_run
    for name in ARTIFACTS:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["format_version"] == 1 and run["labels"] == list(data.labels)
    assert run["features"] == FeatureParams().to_dict() and run["eval_hop_s"] == 1.0 and run["input_layout"] == "time_mel"
    assert run["arch"] == "tiny" and run["keras_model"] == "model.keras" and run["seed"] == 0
    assert run["split"]["kind"] == "actor" and run["data"]["clips"] == 224 and run["data"]["duplicates_dropped"] == 1
    assert [int(r["epoch"]) for r in rows(run_dir / "history.csv")] == list(range(1, run["training"]["epochs_run"] + 1))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"] == run["metrics"]["test"]
    for group in ("all", "speech", "song"):
        m = metrics["test"][group]
        assert {"accuracy", "unweighted_accuracy", "macro_f1", "per_class_recall", "confusion"} <= set(m)
        assert sum(map(sum, m["confusion"])) == m["clips"]
    assert set(metrics["test"]["song"]["per_class_recall"]) == set(data.labels) - {"disgust", "surprised"}
    assert "== test: speech" in (run_dir / "classification_report.txt").read_text()
    card = (run_dir / "model_card.md").read_text()
    assert ", ".join(run["split"]["test"]["actors"]) in card and "unweighted" in card


def test_learns_held_out_speakers(actor_run):
    test = json.loads((actor_run[0] / "metrics.json").read_text())["test"]
    assert test["all"]["unweighted_accuracy"] >= 0.9, test["all"]


def test_shuffled_labels_stay_near_chance(synth, cache, tmp_path):
    manifest = shuffled_manifest(synth, tmp_path / "shuffled.csv")
    run_dir, _, _ = train(tmp_path / "shuffled", "--data", str(manifest), *fast(cache))
    test = json.loads((run_dir / "metrics.json").read_text())["test"]["all"]
    assert test["unweighted_accuracy"] <= 0.3, test


def test_evaluation_scores_whole_files_through_predict_audio(actor_run):
    run_dir, _, _ = actor_run
    frontend = Frontend(FeatureParams())
    hop = frontend.params.hop_frames(1.0)
    predictions = rows(run_dir / "predictions.csv")
    assert {r["part"] for r in predictions} == {"val", "test"}
    for r in predictions[::17]:  # the device's windows at the evaluation hop, every one of them
        assert int(r["windows"]) == len(file_windows(frontend, load_audio(r["path"], 16000), hop))


def check_run_dir(run_dir: Path) -> dict[str, set[str]]:
    """The leak checks any finished run directory must pass on its own files; returns each side's sha256s."""
    manifest = rows(run_dir / "manifest.csv")
    parts = ("train", "val", "test")
    side = {p: {r["sha256"] for r in manifest if r["split"] == p} for p in parts}
    speakers = {p: {r["speaker"] for r in manifest if r["split"] == p} for p in parts}
    # duplicates are not used, and no audio (by hash) is on two sides
    assert {r["split"] for r in manifest if r["duplicate_of"]} <= {""}
    assert not (side["train"] & side["val"]) and not (side["train"] & side["test"]) and not (side["val"] & side["test"])
    split = json.loads((run_dir / "metrics.json").read_text())["split"]
    if split["kind"] == "actor":
        actors = {p: set(split[p]["actors"]) for p in parts}
        assert actors == speakers
        assert not (actors["train"] & actors["val"]) and not (actors["train"] & actors["test"])
        assert not (actors["val"] & actors["test"])
    # what fit() got: training items from training clips only, augmented copies and repeats in training only
    items = rows(run_dir / "fit_items.csv")
    train_items = [r for r in items if r["part"] == "train"]
    val_items = [r for r in items if r["part"] == "val"]
    assert {r["part"] for r in items} == {"train", "val"}
    assert {r["sha256"] for r in train_items} == side["train"]
    assert {r["sha256"] for r in val_items} == side["val"] and len(val_items) == len(side["val"])
    assert all(r["copy"] == "0" and r["augmentation"] == "" for r in val_items)
    windows = {(r["part"], r["path"]): int(r["windows"]) for r in rows(run_dir / "predictions.csv")}
    assert all(int(r["rows_per_epoch"]) == windows["val", r["path"]] for r in val_items)  # each window once
    return side


def _leaks(run_dir: Path, data, served: list[int]) -> None:
    side = check_run_dir(run_dir)
    train_items = [r for r in rows(run_dir / "fit_items.csv") if r["part"] == "train"]
    assert {r["copy"] for r in train_items} == {"0", "1"}
    assert max(int(r["rows_per_epoch"]) for r in train_items) > 1  # oversampled
    # the arrays fit() really got are those fit_items.csv lists
    assert [(it.clip.sha256, it.copy) for it in data.items] == [(r["sha256"], int(r["copy"])) for r in train_items]
    assert {data.items[i].clip.sha256 for i in served} == side["train"]
    assert {c.sha256 for c in data.val_clips} == side["val"] and len(data.val_x) == sum(data.val_windows)
    assert Counter(int(i) for i in data.rows) == Counter({int(r["item"]): int(r["rows_per_epoch"]) for r in train_items})


def test_no_leaks_under_the_actor_split(actor_run):
    _leaks(*actor_run)


def test_no_leaks_under_the_stratified_split(stratified_run):
    run_dir = stratified_run[0]
    _leaks(*stratified_run)
    split = json.loads((run_dir / "metrics.json").read_text())["split"]
    assert split["kind"] == "stratified" and set(split["train"]["actors"]) & set(split["test"]["actors"])


@pytest.mark.skipif(not os.environ.get("MOODMIC_RUN_DIR"), reason="set MOODMIC_RUN_DIR=RUN to audit a real run directory")
def test_audit_a_real_run_directory():
    check_run_dir(Path(os.environ["MOODMIC_RUN_DIR"]))


def test_a_killed_run_resumes_with_each_epoch_once(synth, cache, tmp_path, capsys):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--data", str(synth), "--out", str(out), *fast(cache, 8),
           "--patience", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = out / "history.csv"
    deadline = time.monotonic() + 240
    try:
        while not (history.is_file() and len(rows(history)) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_at_kill = len(rows(history))
    assert not (out / "run.json").exists() and 2 <= done_at_kill < 8
    with open(out / ".lock", "w") as other:  # as another process training it would hold it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = history.read_bytes()
        assert main(["train", "--resume", "--out", str(out)]) == EXIT_USAGE
        assert "another process is training this run" in capsys.readouterr().err
        assert history.read_bytes() == before  # refused before touching the run
    assert main(["train", "--resume", "--out", str(out)]) == 0
    resumed_after = int(capsys.readouterr().err.split("resuming after epoch ")[1].split()[0])
    assert resumed_after >= 2
    epochs = [r["epoch"] for r in rows(history)]
    assert epochs == [str(e) for e in range(1, 9)]  # each epoch once, none lost
    assert json.loads((out / "run.json").read_text())["training"]["epochs_run"] == 8
    assert (out / "command.txt").read_text().splitlines()[-1].endswith(f"train --resume --out {out}")
    assert main(["train", "--resume", "--out", str(out)]) == 0  # a finished run: nothing to do
    assert "already finished" in capsys.readouterr().err


def test_cross_validation_folds_run_separately_and_are_kept(synth, cache, tmp_path, capsys):
    cv = tmp_path / "cv"
    args = ["--data", str(synth), "--out", str(cv), *fast(cache, 2), "--folds", "2"]
    assert main(["cv", *args, "--fold", "1"]) == 0  # one session does fold 1 ...
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary["folds_done"] == [1]
    assert main(["cv", *args, "--fold", "0"]) == 0  # ... another fold 0
    mtime = (cv / "fold-1" / "run.json").stat().st_mtime
    assert main(["cv", *args]) == 0  # both finished: kept, not retrained
    assert (cv / "fold-1" / "run.json").stat().st_mtime == mtime and "finished, kept" in capsys.readouterr().err
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary["folds_done"] == [0, 1] and summary["folds"] == 2
    tests = [set(summary["per_fold"][k]["test_actors"]) for k in ("0", "1")]
    assert not (tests[0] & tests[1]) and len(tests[0] | tests[1]) == 8
    assert sum(map(sum, summary["confusion"])) == 224
    for metric in ("accuracy", "unweighted_accuracy", "macro_f1"):
        assert {"mean", "std", "min", "max"} == set(summary["summary"]["all"][metric])
    assert (cv / "cv_confusion.png").is_file() and "| fold |" in (cv / "cv_summary.md").read_text()


def test_evaluate_a_run_and_a_bundle(actor_run, synth, tmp_path, capsys):
    run_dir = actor_run[0]
    assert main(["evaluate", str(run_dir), "--data", str(synth), "--out", str(tmp_path / "e")]) == 0
    assert "not held-out" in capsys.readouterr().err  # the synthetic folder holds the run's training clips
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["eval"]["all"]["clips"] == 224 and m["seen_in_training"] == 112 + 56
    for name in ("predictions.csv", "classification_report.txt", "confusion_matrix.png"):
        assert (tmp_path / "e" / name).is_file()
    assert main(["evaluate", str(FIXTURES / "tiny_float"), "--data", str(synth), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["eval"]["all"]["clips"] == 224


def test_a_run_with_the_webrtc_front_end_trains_on_it_and_records_it(actor_run, synth, cache, tmp_path):
    """The front end is part of the features: the run's windows are enhanced, and run.json (so the bundle) says so."""
    run_dir, data, _ = train(tmp_path / "webrtc", "--data", str(synth), *fast(cache, 1), "--webrtc-ns", "2",
                             "--webrtc-agc", "5")
    features = FeatureParams.from_dict(read_run(run_dir)["features"])
    assert (features.webrtc_noise_suppression, features.webrtc_auto_gain_dbfs) == (2, 5)
    plain = actor_run[1]
    assert data.val_x.shape == plain.val_x.shape  # the same split and windows, heard through the front end
    assert not np.allclose(data.val_x, plain.val_x, atol=0.5)


def test_rebuilt_batch1_clone_matches_the_saved_model(actor_run):
    from trainer.graphs import rebuild_model
    from trainer.model import load_keras_model

    run_dir, data, _ = actor_run
    clone = rebuild_model(run_dir, batch_size=1)
    saved = load_keras_model(run_dir / "model.keras", compile=False)
    x = data.val_x[:3]
    assert clone.input_shape == (1, 130, 128)
    np.testing.assert_allclose(np.concatenate([clone(x[i : i + 1]).numpy() for i in range(3)]), saved(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--data", "/nonexistent/ravdess"], 66, "no such folder"),
        (["train", "--arch", "nope"], 2, "--arch 'nope' is unknown"),
        (["train", "--resume"], 2, "--resume needs --out"),
        (["train", "--split", "stratified", "--fold", "7"], 2, "--fold 7 is outside"),
        (["cv", "--test-actors", "01"], 2, "drop --test-actors"),
        (["train", "--webrtc-ns", "7"], 2, "--webrtc-ns 7 is out of range; use 0 (off) to 4"),
    ],
)
def test_cli_errors_are_one_clear_line(args, code, message, synth, tmp_path, capsys):
    if "--data" not in args:
        args = [*args, "--data", str(synth)]
    if "--out" not in args and "--resume" not in args:
        args = [*args, "--out", str(tmp_path / "run")]
    assert main(args) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("moodmic-train: error: ") and message in err[-1]


def test_cli_refuses_to_overwrite_or_to_resume_with_other_settings(actor_run, synth, tmp_path, capsys):
    run_dir = actor_run[0]
    assert main(["train", "--data", str(synth), "--out", str(run_dir)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run_dir), "--epochs", "99"]) == 2
    assert "fit.epochs: saved 12, given 99" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "none")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "r")]) == 66
    assert "no RAVDESS-named audio" in capsys.readouterr().err


def test_a_run_of_an_option_that_left_the_trainer_is_not_resumed_or_refitted_without_it(actor_run, tmp_path, capsys):
    """A run trained with a research option the trainer no longer has (e.g. the speaker adversary,
    research/README.md) would silently continue without it: refused, naming the option. An option
    saved as off is no obstacle."""
    import shutil

    from trainer.settings import dropped_settings

    assert dropped_settings({"fit": {"speaker_adversary": 0.0, "epochs": 3}, "arch": "cnn"}) == []
    assert dropped_settings({"fit": {"speaker_adversary": 0.2}}) == ["fit.speaker_adversary = 0.2"]
    assert dropped_settings({"model": {"band_std": True, "speaker_mean": False}, "augment": {"mixup": 0.4}}) == [
        "model.band_std = True", "augment.mixup = 0.4"]
    run_dir = tmp_path / "old"
    shutil.copytree(actor_run[0], run_dir)
    for name in ("settings.json", "run.json"):
        saved = json.loads((run_dir / name).read_text())
        (saved["settings"] if "settings" in saved else saved)["fit"]["speaker_adversary"] = 0.2
        (run_dir / name).write_text(json.dumps(saved))
    (run_dir / "run.json").unlink()  # an unfinished run
    assert main(["train", "--resume", "--out", str(run_dir)]) == 2
    assert "fit.speaker_adversary = 0.2, which this moodmic-train no longer has" in capsys.readouterr().err
