"""`moodmic-train ensemble CV_DIR --out RUN`: the fold models of a cross-validation as one model.

Every fold model of CV_DIR (trained on its fold's training actors, stopped on its validation
actors) becomes a member of one Keras model that averages the members' outputs (logits for a
`--logits` recipe), written as a run directory the converter reads like any other: one .tflite
graph. Between them the members have seen every actor of the corpus, so the ensemble has no
held-out side: run.json's split is kind `all` (every clip on the training side, which is where
`moodmic-convert --parity-side train` runs the gate), its metrics are empty, and `cv` holds the
cross-validation of the recipe (one model per fold), which is the figure to quote. An ensemble's
own CV figure would leak: each fold's test actors trained the other members.

run.json as trainer/rundir.py describes it (metrics: `cv` holds the CV means per group, with every
fold's test actors and clips; val and test are empty), plus
    members   [{name, run, test_actors, val_actors, best_epoch}] in output-averaging order
    cv        the CV summary (cv_summary.json) of the recipe
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge import __version__
from edge.errors import UsageError

from .crossval import finished_folds, read_summary
from .evaluate import HEADLINE
from .graphs import combine_runs
from .rundir import COMMAND_FILE, FORMAT_VERSION, INPUT_LAYOUT, KERAS_MODEL, RUN_FILE, command, read_servable_run, write_json


def member_name(k: int) -> str:
    return f"fold_{k}"


def copy_cv_reports(cv_dir: Path, out: Path) -> None:
    """The cross-validation's summary, summed confusion matrix and calibration, beside the model they describe."""
    for name in ("cv_summary.md", "cv_confusion.png", "calibration.json"):
        if (cv_dir / name).is_file():
            shutil.copy2(cv_dir / name, out / name)


def ensemble_run(cv_dir: str | Path, out: str | Path, argv: list[str] | None = None) -> dict[str, Any]:
    cv_dir, out = Path(cv_dir), Path(out)
    folds = finished_folds(cv_dir)
    if not folds:
        raise UsageError(f"{cv_dir}: no finished fold-K runs; run moodmic-train cv --out {cv_dir} first")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: exists and is not empty; choose another --out")
    runs = [read_servable_run(d) for d in folds]
    first = runs[0]
    if any(r["labels"] != first["labels"] or r["arch"] != first["arch"] or r["features"] != first["features"]
           or r["settings"].get("model") != first["settings"].get("model") for r in runs):
        raise UsageError(f"{cv_dir}: its folds differ in labels, architecture, features or model settings")
    if (first["settings"].get("model") or {}).get("ensemble", 1) != 1:
        raise UsageError(f"{cv_dir}: its fold models are ensembles already; combine single models")
    model = combine_runs(folds, runs, [member_name(r["split"]["fold"]) for r in runs])
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / KERAS_MODEL)
    # Every clip some member trained, validated or was tested on is on the training side now.
    manifest = (folds[0] / "manifest.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(manifest)))
    col = rows[0].index("split")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(rows[0])
    for row in rows[1:]:
        if row[col]:
            row[col] = "train"
        writer.writerow(row)
    (out / "manifest.csv").write_text(text.getvalue(), encoding="utf-8")
    split = first["split"]
    actors = sorted({a for r in runs for p in ("train", "val", "test") for a in r["split"][p]["actors"]})
    summary = read_summary(cv_dir)
    line = command(argv)
    (out / COMMAND_FILE).write_text(line + "\n", encoding="utf-8")
    run = {
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "labels": first["labels"],
        "features": first["features"],
        "eval_hop_s": first["eval_hop_s"],
        "input_layout": INPUT_LAYOUT,
        "arch": first["arch"],
        "keras_model": KERAS_MODEL,
        "parameters": int(model.count_params()),
        "data": first["data"],
        "split": {"kind": "all", "fold": 0, "folds": split["folds"], "seed": split["seed"],
                  "train": {"actors": actors, "sex": _sexes(runs),
                            "clips": sum(first["split"][p]["clips"] for p in ("train", "val", "test"))},
                  "val": {"actors": [], "sex": {}, "clips": 0}, "test": {"actors": [], "sex": {}, "clips": 0}},
        "seed": first["seed"],
        "settings": {**first["settings"], "out": str(out)},
        "members": [{"name": member_name(r["split"]["fold"]), "run": str(d), "test_actors": r["split"]["test"]["actors"],
                     "val_actors": r["split"]["val"]["actors"], "best_epoch": r["training"]["best_epoch"]}
                    for d, r in zip(folds, runs)],
        "cv": summary,
        "training": {"members": len(runs), "epochs_run": [r["training"]["epochs_run"] for r in runs],
                     "best_epoch": [r["training"]["best_epoch"] for r in runs]},
        "metrics": {"cv": cv_metrics(runs, summary), "val": {}, "test": {}},
        "command": [line],
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "moodmic_version": __version__,
    }
    copy_cv_reports(cv_dir, out)
    write_json(out / RUN_FILE, run)
    print(f"{out}: ensemble of {len(runs)} fold models ({run['parameters']:,} parameters)", file=sys.stderr)
    return run


def _sexes(runs: list[dict]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in ("train", "val", "test"):
        for sex, n in runs[0]["split"][p]["sex"].items():
            total[sex] = total.get(sex, 0) + n
    return dict(sorted(total.items()))


def cv_metrics(runs: list[dict], summary: dict) -> dict[str, dict]:
    """The CV means per group (all, speech, song) in a run's metrics layout, over every fold's test clips."""
    out = {}
    for group, stats in summary.get("summary", {}).items():
        out[group] = {k: stats[k]["mean"] for k in HEADLINE}
        out[group]["clips"] = sum(r["metrics"]["test"][group]["clips"] for r in runs)
        out[group]["std"] = {k: stats[k]["std"] for k in HEADLINE}
    if "all" in out:
        out["all"]["actors"] = sorted(a for r in runs for a in r["split"]["test"]["actors"])
    return out
