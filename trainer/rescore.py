"""`moodmic-train evaluate TARGET --data DATA`: score a run's Keras model or a model bundle on any corpus.

TARGET is a finished run directory (run.json) or a converted bundle (model.json + model.tflite, run
by edge.model.EmotionModel as on the device); DATA a RAVDESS-named folder or a CSV manifest. Clips
whose label the model does not know are skipped and counted. For a run, clips that the run trained
or validated on (same sha256) are counted too, and a warning says the scores are then not held-out.
Writes metrics.json, predictions.csv, classification_report.txt and confusion_matrix.png to --out
(default: RUN/evaluations/<data name>, or runs/eval-<bundle>-<data name> for a bundle).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from edge.bundle import META_FILE
from edge.errors import MissingInputError, UsageError
from edge.features import FeatureParams, Frontend

from .corpus import load_corpus
from .evaluate import HEADLINE, evaluate, score, write_predictions
from .rundir import RUN_FILE, read_servable_run


def _seen_in_run(run_dir: Path) -> set[str]:
    """sha256 of every clip the run trained or validated on."""
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        return {row["sha256"] for row in csv.DictReader(f) if row["split"] in ("train", "val")}


def evaluate_target(target: str | Path, data: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    target = Path(target)
    name = Path(data).stem if Path(data).is_file() else Path(data).name
    if (target / RUN_FILE).is_file():
        from .model import batched_infer, load_keras_model

        run = read_servable_run(target)
        params = FeatureParams.from_dict(run["features"])
        frontend, labels = Frontend(params), tuple(run["labels"])
        hop = params.hop_frames(run["eval_hop_s"])
        infer = batched_infer(load_keras_model(target / run["keras_model"], compile=False))
        seen = _seen_in_run(target)
        out = Path(out) if out else target / "evaluations" / name
    elif (target / META_FILE).is_file():
        from edge.model import EmotionModel

        model = EmotionModel.load(target)
        frontend, labels, hop, infer = model.frontend, model.labels, model.bundle.eval_hop_frames, model.probabilities
        seen = set()
        out = Path(out) if out else Path("runs") / f"eval-{target.name}-{name}"
    else:
        raise MissingInputError(
            f"{target}: neither a run directory (no {RUN_FILE}) nor a model bundle (no {META_FILE}); give one of them"
        )
    corpus = load_corpus(data)
    clips = [c for c in corpus.usable if c.label in labels]
    if not clips:
        raise UsageError(f"{data}: none of its labels ({', '.join(corpus.labels)}) is one the model knows ({', '.join(labels)})")
    overlap = sum(c.sha256 in seen for c in clips)
    if overlap:
        print(f"warning: {overlap} of {len(clips)} clips were used to train or validate {target}: "
              "these scores are not held-out", file=sys.stderr)
    results = score(clips, frontend, hop, infer, labels, "clips")
    metrics = {
        "target": str(target),
        "data": corpus.describe(),
        "labels": list(labels),
        "skipped_unknown_label": len(corpus.usable) - len(clips),
        "seen_in_training": overlap,
        "eval": evaluate(clips, results, labels),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_predictions(out / "predictions.csv", {"eval": (clips, results)}, labels)

    from .report import classification_text, plot_confusion

    (out / "classification_report.txt").write_text(classification_text({"eval": (clips, results)}, labels), encoding="utf-8")
    plot_confusion(metrics["eval"]["all"]["confusion"], labels, out / "confusion_matrix.png", name)
    print(f"{out}: " + ", ".join(f"{k} {metrics['eval']['all'][k]:.3f}" for k in HEADLINE), file=sys.stderr)
    return metrics
