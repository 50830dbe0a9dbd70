"""The model every user gets: the bundle shipped in edge/models/default."""

from __future__ import annotations

import csv
import json

import numpy as np

from converter.parity import MAX_UA_DROP, MIN_AGREEMENT
from edge.bundle import DEFAULT_BUNDLE, load_bundle
from edge.model import EmotionModel
from edge.predict import predict_file

from conftest import run_moodmic


def test_shipped_bundle_is_complete_small_and_passed_the_default_gate():
    bundle = load_bundle()  # no path: the shipped model, hash verified
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.tflite_path.stat().st_size <= 2 * 1024 * 1024
    conversion = bundle.info["conversion"]
    assert conversion["gate"] == {"min_agreement": MIN_AGREEMENT, "max_ua_drop": MAX_UA_DROP}
    assert conversion["parity"]["agreement"] >= MIN_AGREEMENT
    assert conversion["parity"]["keras_ua"] - conversion["parity"]["tflite_ua"] <= MAX_UA_DROP
    assert "CC BY-NC-SA 4.0" in bundle.info["license"]


def test_shipped_bundle_records_the_cross_validation_behind_it():
    """The shipped model is the recipe trained on every actor (issue 8): an ensemble of members that
    differ only in their init seed, each trained for the epochs its cross-validation chose. It has no
    held-out side of its own; its figure is the recipe's CV, whose folds must cover every actor once
    as test actors."""
    bundle = load_bundle()
    training, conversion = bundle.info["training"], bundle.info["conversion"]
    split = training["split"]
    assert split["kind"] == "all" and not split["val"]["actors"] and not split["test"]["actors"]
    assert conversion["parity_side"].startswith("training clips")  # and it says so
    members = training["members"]
    assert "/" not in json.dumps(training["members"]) + training["data"]["corpus"]  # no folder of the build machine
    assert len({m["init_seed"] for m in members}) == len(members) >= 2
    cv = training["cv"]
    assert cv["folds_done"] == list(range(cv["folds"])) == sorted(int(k) for k in cv["per_fold"])
    tested = [a for fold in cv["per_fold"].values() for a in fold["test_actors"]]
    assert sorted(tested) == split["train"]["actors"]  # every actor is a test actor of exactly one fold
    for fold in cv["per_fold"].values():  # a refit: each fold trained on its validation actors too, never its test ones
        assert fold["refit_actors"] and not set(fold["refit_actors"]) & set(fold["test_actors"])
    best = cv["epochs"]["best"]  # per fold, per member: each member trained for its folds' median best epoch
    assert [m["epochs"] for m in members] == [int(round(float(np.median([f[i] for f in best])))) for i in range(len(members))]
    assert bundle.output_kind == "logits" and bundle.temperature == conversion["calibration"]["temperature"]


def test_predict_uses_the_shipped_model_by_default():
    proc = run_moodmic("predict", "--sample")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result["probabilities"]) == list(load_bundle().labels)


def test_shipped_model_recognises_ravdess_far_above_chance(ravdess):
    """Catches label order, orientation or frontend drift: any of them drops this to chance (0.125).

    The shipped model trained on every actor here, so this is no accuracy figure (the CV is)."""
    model = EmotionModel.load()
    rows = list(csv.DictReader(open(ravdess / "manifest.csv")))[::12]
    truth, pred = [], []
    for r in rows:
        truth.append(r["emotion"])
        pred.append(predict_file(model, ravdess / r["path"]).label)
    truth_a, pred_a = np.array(truth), np.array(pred)
    ua = np.mean([np.mean(pred_a[truth_a == c] == c) for c in np.unique(truth_a)])
    print(f"shipped model on {len(rows)} RAVDESS clips (seen in training): UA {ua:.3f}")
    assert ua > 0.5


def test_model_card_quotes_the_shipped_models_figures_from_its_recipes_committed_results():
    """The card's figures of the shipped model come from the recipe's committed results
    (trainer/recipe/results), and those are what the bundle carries: a retrained model that is not
    written up fails here. (The variants' figures are research's: research/tests.)"""
    from conftest import REPO

    card = (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text(encoding="utf-8")
    results = REPO / "trainer" / "recipe" / "results"
    bundle = load_bundle()
    cv = json.loads((results / "cv_summary.json").read_text(encoding="utf-8"))
    assert cv == bundle.info["training"]["cv"]  # the refit's summary is the figure the bundle carries
    members = json.loads((results / "members" / "cv_summary.json").read_text(encoding="utf-8"))
    for summary in (cv, members):  # the refitted folds (the CV figure) and the early-stopped ones
        assert summary["folds_done"] == list(range(5))
        for group in ("all", "speech", "song"):
            ua = summary["summary"][group]["unweighted_accuracy"]
            assert f"{ua['mean']:.3f} +- {ua['std']:.3f}" in card, group
    for k, fold in cv["per_fold"].items():  # the per-fold table
        row = f"| {k} | {', '.join(fold['test_actors'])} | {fold['all']['unweighted_accuracy']:.3f} |"
        assert row in card, k
    converted = json.loads((results / "converted_cv.json").read_text(encoding="utf-8"))["summary"]
    mean = " | ".join(f"{converted[g]['float']:.3f} -> {converted[g]['converted']:.3f}" for g in ("all", "speech", "song"))
    assert f"| mean | {mean} |" in card
    calibration = json.loads((results / "calibration.json").read_text(encoding="utf-8"))
    assert calibration["temperature"] == bundle.temperature and f"T = {bundle.temperature:.3f}" in card
    for part in ("val", "test"):
        ece = calibration["ece"][part]
        assert f"{ece['window']['before']:.3f} -> {ece['window']['after']:.3f} | " \
               f"{ece['clip']['before']:.3f} -> {ece['clip']['after']:.3f}" in card, part
    assert "research/VARIANTS.md" in card and (REPO / "research" / "VARIANTS.md").is_file()
