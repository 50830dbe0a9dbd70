"""`moodmic-train refit CV_DIR --out DIR [--fold K]`: each fold's recipe retrained the way the final model is.

A fold of `moodmic-train cv` trains on its training actors and stops on its 2 validation actors. The
final model (trainer.final) instead trains on every actor for the epoch count the cross-validation
chose, with nothing held out. A refit measures that recipe without touching the test actors: for
each finished fold K of CV_DIR, DIR/fold-K trains on every actor outside the test side (the
validation actors too: split `actor` with `refit`), for the best epoch of fold K and with the
learning rate of each of those epochs as fold K ran them (its validation actors chose both, never
its test actors), and is scored on fold K's test actors. No validation side remains, so a refit
has no validation figures: variants are chosen on CV_DIR's, and a refit's temperature comes from
CV_DIR too (`calibrate` reads validation actors).

DIR holds fold runs and the same cv_summary as `cv`, so `members` averages refits of several init
seeds like cv folders, and `final` reads it. Resumable, fold by fold; `--fold K` refits fold K only,
so that each core can take some.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.errors import UsageError

from .crossval import finished_folds, fold_dir, fold_number, summarize
from .final import _history
from .run import RUN_FILE, read_run, train_run
from .settings import SETTINGS_FILE, RunSettings


def refit_cv(cv_dir: str | Path, out: str | Path, fold: int | None = None,
             argv: list[str] | None = None) -> dict[str, Any]:
    cv_dir, out = Path(cv_dir), Path(out)
    if out.resolve() == cv_dir.resolve():
        raise UsageError(f"{out}: is the cross-validation being refitted; choose another --out")
    folds = {fold_number(d): d for d in finished_folds(cv_dir)}
    if not folds:
        raise UsageError(f"{cv_dir}: no finished fold; run its cross-validation (moodmic-train cv) first")
    if fold is not None and fold not in folds:
        raise UsageError(f"--fold {fold}: not a finished fold of {cv_dir} (finished: {', '.join(map(str, sorted(folds)))})")
    for k in [fold] if fold is not None else sorted(folds):
        _refit_fold(folds[k], fold_dir(out, k), argv)
        summarize(out)
    return summarize(out)


def refit_settings(fold_run: Path, out: Path) -> RunSettings:
    """Fold K's settings on every actor outside its test side, for its best epoch at the rates it used."""
    run = read_run(fold_run)
    base = RunSettings.from_dict(run["settings"])
    if "members" in run or base.split.kind != "actor" or base.split.refit:
        raise UsageError(f"{fold_run}: refit retrains a fold of `moodmic-train cv` with an actor split; "
                         "refit each member's cv folder, then combine the refits with `members`")
    epochs = int(run["training"]["best_epoch"])
    rates = tuple(float(row["lr"]) for row in _history(fold_run)[:epochs])
    return replace(base, out=str(out), split=replace(base.split, refit=True),
                   fit=replace(base.fit, epochs=epochs, lr_schedule=rates))


def _refit_fold(fold_run: Path, out: Path, argv: list[str] | None) -> dict[str, Any]:
    if (out / RUN_FILE).is_file():
        print(f"{out}: finished, kept", file=sys.stderr)
        return read_run(out)
    settings = refit_settings(fold_run, out)
    print(f"== {out}: fold {settings.split.fold} on every actor outside its test side, {settings.fit.epochs} epochs "
          f"(the best epoch of {fold_run})", file=sys.stderr)
    return train_run(settings, resume=(out / SETTINGS_FILE).is_file(), argv=argv)
