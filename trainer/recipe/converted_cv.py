"""Float vs converted on the same folds: every fold model of a cross-validation converted as the
shipped model is, then scored on its fold's test actors through the LiteRT interpreter
(edge.model.EmotionModel, whole files, sliding windows), next to the float model's figure.

    python trainer/recipe/converted_cv.py CV_DIR OUT [--mode dynamic] [--calibration CALIBRATION_JSON]

CV_DIR: a `moodmic-train cv`, `refit` or `members` folder (its finished fold-K/ runs). OUT gets fold-K/
bundles and evaluations, converted_cv.json and converted_cv.md. Resumable: finished folds are kept. Each
fold's parity gate runs on its validation actors, or on its training actors where a refit has none.
With --calibration, each bundle carries its temperature, as the shipped one does (the accuracy is the
same; the confidences, and so what the daemon abstains on, are the shipped model's).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from converter.cli import main as convert
from trainer.crossval import finished_folds
from trainer.rescore import evaluate_target
from trainer.rundir import read_run

GROUPS = ("all", "speech", "song")


def _test_manifest(run_dir: Path, out: Path) -> Path:
    """The fold's test clips as a CSV manifest (the run's manifest.csv, test rows only)."""
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    path = out / "test.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def fold_result(run_dir: Path, out: Path, mode: str, calibration: Path | None = None) -> dict:
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "bundle"
    run = read_run(run_dir)
    side = "val" if run["split"]["val"]["clips"] else "train"  # a refit has no validation actors left
    who = {"val": "validation", "train": "training"}[side]
    extra = ["--calibration", str(calibration)] if calibration else []
    if not (bundle / "model.json").is_file() and convert(
            [str(run_dir), "--out", str(bundle), "--mode", mode, "--parity-side", side, *extra]) != 0:
        raise SystemExit(f"{run_dir}: conversion failed its parity gate (on the fold's {who} actors)")
    parity = json.loads((bundle / "model.json").read_text(encoding="utf-8"))["conversion"]["parity"]
    metrics = evaluate_target(bundle, _test_manifest(run_dir, out), out / "evaluation")
    float_test = run["metrics"]["test"]
    result = {
        "fold": run_dir.name,
        "test_actors": float_test["all"]["actors"],
        "float": {g: float_test[g]["unweighted_accuracy"] for g in GROUPS},
        "converted": {g: metrics["eval"][g]["unweighted_accuracy"] for g in GROUPS},
        "size_bytes": (bundle / "model.tflite").stat().st_size,
        f"{who}_parity": {k: parity[k] for k in ("agreement", "clip_agreement", "max_prob_diff")},
    }
    done.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cv_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--mode", default="dynamic")
    p.add_argument("--calibration", type=Path, help="calibration.json of moodmic-train calibrate, for every bundle")
    args = p.parse_args()
    results = [fold_result(d, args.out / d.name, args.mode, args.calibration) for d in finished_folds(args.cv_dir)]
    lines = [f"# Float vs converted ({args.mode}), test actors of each fold of {args.cv_dir.name}", "",
             "| fold | test actors | " + " | ".join(f"UA {g} float -> converted" for g in GROUPS) + " |",
             "|---|---|" + "---|" * len(GROUPS)]
    for r in results:
        cells = [f"{r['float'][g]:.3f} -> {r['converted'][g]:.3f}" for g in GROUPS]
        lines.append(f"| {r['fold'][5:]} | {', '.join(r['test_actors'])} | " + " | ".join(cells) + " |")
    summary = {}
    for g in GROUPS:
        f, c = (np.array([r[k][g] for r in results]) for k in ("float", "converted"))
        summary[g] = {"float": float(f.mean()), "converted": float(c.mean()), "largest_drop": float((f - c).max())}
    lines.append("| mean | | " + " | ".join(f"{summary[g]['float']:.3f} -> {summary[g]['converted']:.3f}" for g in GROUPS) + " |")
    gates = [(k.removesuffix("_parity"), v["agreement"]) for r in results for k, v in r.items() if k.endswith("_parity")]
    sides, agreement = sorted({side for side, _ in gates}), [a for _, a in gates]
    lines += ["", "Largest drop of one fold: " + ", ".join(f"{g} {summary[g]['largest_drop']:+.3f}" for g in GROUPS),
              f"Parity gate ({' and '.join(sides)} actors' windows): argmax agreement {min(agreement):.3f}-{max(agreement):.3f}"]
    (args.out / "converted_cv.json").write_text(json.dumps({"folds": results, "summary": summary}, indent=1) + "\n")
    (args.out / "converted_cv.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
