"""Bring a finished recipe run into the repository: the bundle and the results the model card quotes.

    python trainer/recipe/collect.py OUT [--repo .] [--dry-run]

OUT is `default_model.sh`'s output folder. Copies the bundle's files to edge/models/default (its
MODEL_CARD.md stays: a person writes it from these results) and each result to trainer/recipe/results,
as results/README.md lists them. Per-fold figures of `conditions` are left out of the committed JSON
for size (a note says so; the command in it brings them back). Stops before copying anything if an
input is missing, so a half-finished run never replaces a shipped bundle's results in part.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

BUNDLE_FILES = ("model.tflite", "model.json", "confusion_matrix.png")
FOLDS_NOTE = "per-fold results left out (folds); rerun the command for them"
# (source under OUT, destination under trainer/recipe/results); a .json that is a conditions report
# loses its per-fold part
RESULTS = (
    ("refit-members/cv_summary.json", "cv_summary.json"),
    ("refit-members/cv_summary.md", "cv_summary.md"),
    ("members/cv_summary.json", "members/cv_summary.json"),
    ("members/cv_summary.md", "members/cv_summary.md"),
    ("members-converted/converted_cv.json", "members/converted_cv.json"),
    ("members-converted/converted_cv.md", "members/converted_cv.md"),
    ("members/calibration.json", "calibration.json"),
    ("sweep/abstain.json", "abstain.json"),
    ("converted/converted_cv.json", "converted_cv.json"),
    ("converted/converted_cv.md", "converted_cv.md"),
    ("conditions/conditions.json", "conditions/conditions.json"),
    ("conditions/conditions.md", "conditions/conditions.md"),
    ("conditions/conditions.png", "conditions/conditions.png"),
    ("conditions-converted/conditions.json", "conditions/converted/conditions.json"),
    ("conditions-converted/conditions.md", "conditions/converted/conditions.md"),
    ("conditions-converted/conditions.png", "conditions/converted/conditions.png"),
    ("replay/replay.json", "replay/replay.json"),
    ("replay/replay.md", "replay/replay.md"),
    ("replay-hold/replay.json", "replay/hold.json"),
    ("replay-hold/replay.md", "replay/hold.md"),
)


def plan(out: Path, repo: Path) -> list[tuple[Path, Path]]:
    """(source, destination) of every file to copy; raises FileNotFoundError naming what is missing."""
    pairs = [(out / "bundle" / f, repo / "edge" / "models" / "default" / f) for f in BUNDLE_FILES]
    pairs += [(out / src, repo / "trainer" / "recipe" / "results" / dst) for src, dst in RESULTS]
    missing = [str(src) for src, _ in pairs if not src.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} result(s) not there yet, e.g. {missing[0]}: finish the recipe "
                                f"(sh trainer/recipe/default_model.sh {out}) and collect again")
    return pairs


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.parent.name.startswith("conditions") and src.name == "conditions.json":
        report = json.loads(src.read_text(encoding="utf-8"))
        report.pop("folds", None)
        report["note"] = FOLDS_NOTE
        dst.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    else:
        shutil.copyfile(src, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="default_model.sh's output folder, finished")
    ap.add_argument("--repo", type=Path, default=Path("."), help="the checkout to copy into (default: .)")
    ap.add_argument("--dry-run", action="store_true", help="list the copies, copy nothing")
    args = ap.parse_args(argv)
    try:
        pairs = plan(args.out, args.repo)
    except FileNotFoundError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 1
    for src, dst in pairs:
        print(f"{src} -> {dst}")
        if not args.dry_run:
            copy(src, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
