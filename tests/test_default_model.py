"""The model every user gets: the bundle shipped in edge/models/default."""

from __future__ import annotations

import csv
import json

import numpy as np

from conftest import run_moodmic
from edge.bundle import DEFAULT_BUNDLE, load_bundle
from edge.model import EmotionModel
from edge.predict import predict_file


def test_shipped_bundle_is_complete_small_and_passed_the_default_gate():
    bundle = load_bundle()  # no path: the shipped model, hash verified
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.tflite_path.stat().st_size <= 2 * 1024 * 1024
    conversion = bundle.info["conversion"]
    assert conversion["gate"] == {"min_agreement": 0.95, "max_ua_drop": 0.01}
    assert conversion["parity"]["agreement"] >= 0.95
    assert conversion["parity"]["keras_ua"] - conversion["parity"]["tflite_ua"] <= 0.01
    split = bundle.info["training"]["split"]
    assert split["kind"] == "actor"
    sides = [set(split[p]["actors"]) for p in ("train", "val", "test")]
    assert all(sides) and sides[0].isdisjoint(sides[1]) and sides[0].isdisjoint(sides[2]) and sides[1].isdisjoint(sides[2])
    assert "CC BY-NC-SA 4.0" in bundle.info["license"]


def test_predict_uses_the_shipped_model_by_default():
    proc = run_moodmic("predict", "--sample")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result["probabilities"]) == list(load_bundle().labels)


def test_shipped_model_recognises_its_test_actors_far_above_chance(ravdess):
    """Catches label order, orientation or frontend drift: any of them drops this to chance (0.125)."""
    model = EmotionModel.load()
    test_actors = set(model.bundle.info["training"]["split"]["test"]["actors"])
    rows = [r for r in csv.DictReader(open(ravdess / "manifest.csv")) if r["speaker"] in test_actors]
    rows = rows[::4]
    truth, pred = [], []
    for r in rows:
        truth.append(r["emotion"])
        pred.append(predict_file(model, ravdess / r["path"]).label)
    truth_a, pred_a = np.array(truth), np.array(pred)
    ua = np.mean([np.mean(pred_a[truth_a == c] == c) for c in np.unique(truth_a)])
    print(f"shipped model on {len(rows)} clips of its test actors {sorted(test_actors)}: UA {ua:.3f}")
    assert ua > 0.3
