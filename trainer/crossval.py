"""Cross-validation: one complete run directory per fold, and a summary over the finished folds.

`cv --out DIR` runs fold K as DIR/fold-K for every K, skipping finished folds and resuming
unfinished ones; `cv --fold K` runs only fold K. Folds are therefore kept and can run in separate
sessions. After each fold the summary is rewritten from every finished fold: `cv_summary.json`
(each fold's test actors and headline metrics; their mean, standard deviation, min and max for all,
speech and song; the summed test confusion matrix), `cv_confusion.png` and `cv_summary.md`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, UsageError

from .evaluate import HEADLINE
from .run import train_run
from .rundir import RUN_FILE, read_run
from .settings import SETTINGS_FILE, RunSettings, settings_for_resume

SUMMARY = "cv_summary.json"


def fold_dir(root: Path, fold: int) -> Path:
    return root / f"fold-{fold}"


def fold_number(run_dir: Path) -> int:
    return int(run_dir.name.removeprefix("fold-"))


def finished_folds(root: Path) -> list[Path]:
    """The fold-K runs of a cross-validation folder that finished (run.json written), by K."""
    return sorted((d for d in root.glob("fold-*") if (d / RUN_FILE).is_file()), key=fold_number)


def cv_run(settings: RunSettings, explicit: set[str], argv: list[str] | None = None) -> dict[str, Any]:
    if settings.split.test_actors:
        raise UsageError("cv chooses the test actors fold by fold; drop --test-actors (or use train)")
    root = Path(settings.out)
    folds = [settings.split.fold] if "split.fold" in explicit else range(settings.split.folds)
    for k in folds:
        out = fold_dir(root, k)
        fold_settings = replace(settings, out=str(out), split=replace(settings.split, fold=k))
        if (out / RUN_FILE).is_file():
            print(f"{out}: finished, kept", file=sys.stderr)
            continue
        resume = (out / SETTINGS_FILE).is_file()
        if resume:
            fold_settings = settings_for_resume(out, fold_settings, explicit)
        print(f"== fold {k} of {settings.split.folds}: {out}", file=sys.stderr)
        train_run(fold_settings, resume=resume, argv=argv)
        summarize(root)
    return summarize(root)


def read_summary(root: Path) -> dict[str, Any]:
    """The cross-validation's cv_summary.json, or, where it was never written, the summary of its finished folds."""
    path = root / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else summarize(root)


def fold_stats(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1), min and max of one figure over folds."""
    v = np.array(values)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def summarize(root: Path) -> dict[str, Any]:
    runs = [read_run(d) for d in finished_folds(root)]
    if not runs:
        return {}
    labels = runs[0]["labels"]
    if any(r["labels"] != labels for r in runs):
        raise ConfigError(f"{root}: its folds have different labels; keep one cross-validation per folder")
    folds = {
        str(r["split"]["fold"]): {
            "test_actors": r["split"]["test"]["actors"],
            **({"refit_actors": r["split"]["refit_actors"]} if "refit_actors" in r["split"] else {}),  # trainer.refit
            **{group: {k: m[k] for k in HEADLINE} for group, m in r["metrics"]["test"].items()},
        }
        for r in runs
    }
    groups = [g for g in ("all", "speech", "song") if all(g in r["metrics"]["test"] for r in runs)]
    summary = {
        "folds_done": sorted(int(k) for k in folds),
        "folds": runs[0]["split"]["folds"],
        "split": runs[0]["split"]["kind"],
        "labels": labels,
        "per_fold": folds,
        "summary": {g: {k: fold_stats([r["metrics"]["test"][g][k] for r in runs]) for k in HEADLINE} for g in groups},
        "per_class_recall": {label: fold_stats([r["metrics"]["test"]["all"]["per_class_recall"][label] for r in runs])
                             for label in labels if all(label in r["metrics"]["test"]["all"]["per_class_recall"] for r in runs)},
        # the validation actors of each fold: what variants are chosen on (never the test actors)
        "validation": {g: {k: fold_stats([r["metrics"]["val"][g][k] for r in runs]) for k in HEADLINE}
                       for g in groups if all(g in r["metrics"]["val"] for r in runs)},
        "epochs": {"best": [r["training"]["best_epoch"] for r in runs], "run": [r["training"]["epochs_run"] for r in runs]},
        "confusion": np.sum([r["metrics"]["test"]["all"]["confusion"] for r in runs], axis=0).tolist(),
    }
    (root / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    from .report import plot_confusion

    plot_confusion(summary["confusion"], tuple(labels), root / "cv_confusion.png", f"{len(runs)} folds summed")
    refit = any("refit_actors" in f for f in folds.values())
    lines = [f"# Cross-validation ({summary['split']} split): folds {summary['folds_done']} of {summary['folds']}", "",
             *(["Refitted folds: each trained on its validation actors too, for the epochs they chose "
                "(moodmic-train refit); there are no validation figures.", ""] if refit else []),
             "| clips | " + " | ".join(HEADLINE) + " |", "|---|" + "---|" * len(HEADLINE)]
    for g in groups:
        s = summary["summary"][g]
        lines.append(f"| {g} | " + " | ".join(f"{s[k]['mean']:.3f} +- {s[k]['std']:.3f}" for k in HEADLINE) + " |")
    if summary["validation"]:
        lines += ["", "Validation actors (choose variants on these, never on the test actors):", "",
                  "| clips | " + " | ".join(HEADLINE) + " |", "|---|" + "---|" * len(HEADLINE)]
    for g, s in summary["validation"].items():
        lines.append(f"| {g} | " + " | ".join(f"{s[k]['mean']:.3f} +- {s[k]['std']:.3f}" for k in HEADLINE) + " |")
    lines += ["", "Per-class recall (test, mean +- sd over folds): " + ", ".join(
        f"{label} {v['mean']:.2f} +- {v['std']:.2f}" for label, v in summary["per_class_recall"].items()),
              f"Best epochs per fold: {summary['epochs']['best']}; epochs run: {summary['epochs']['run']}"]
    lines += ["", "| fold | test actors | " + " | ".join(HEADLINE) + " | speech UA |", "|---|---|" + "---|" * (len(HEADLINE) + 1)]
    for k, f in folds.items():
        lines.append(f"| {k} | {', '.join(f['test_actors'])} | " + " | ".join(f"{f['all'][m]:.3f}" for m in HEADLINE)
                     + " | " + (f"{f['speech']['unweighted_accuracy']:.3f}" if "speech" in f else "") + " |")
    (root / "cv_summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary
