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
seeds like cv folders. `final CV_DIR --refit DIR` then carries DIR's figure: the refit is the
cross-validation of what `final` trains. Resumable, fold by fold; `--fold K` refits fold K only, so
that each core can take some.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.errors import UsageError

from .crossval import finished_folds, fold_dir, fold_number, read_summary, summarize
from .run import train_run
from .rundir import RUN_FILE, read_history, read_run, read_servable_run
from .settings import SETTINGS_FILE, RunSettings, trainable_settings


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
    base = trainable_settings(run["settings"], fold_run)
    if "members" in run or base.split.kind != "actor" or base.split.refit:
        raise UsageError(f"{fold_run}: refit retrains a fold of `moodmic-train cv` with an actor split; "
                         "refit each member's cv folder, then combine the refits with `members`")
    epochs = int(run["training"]["best_epoch"])
    rates = tuple(float(row["lr"]) for row in read_history(fold_run)[:epochs])
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


def _comparable(run: dict) -> dict:
    """A fold run's settings without where it is, how it is scored, and what a refit changes."""
    s = RunSettings.from_dict(run["settings"])
    return replace(s, out="", eval_hop_s=0.0, split=replace(s.split, refit=False),
                   fit=replace(s.fit, epochs=0, lr_schedule=())).to_dict()


def _init_seeds(run: dict) -> list[int]:
    if "members" in run:
        return [m["init_seed"] for m in run["members"]]
    return [RunSettings.from_dict(run["settings"]).fit.member_seed(run["seed"])]


def refit_figure(cv_dir: Path, cv_runs: list[dict], refit_dir: Path) -> tuple[list[dict], dict]:
    """The fold runs and cv_summary of `refit_dir`, once it is shown to be a refit of every fold of `cv_dir`
    (its `members` of `refit`s, or its `refit`): same test and validation actors, init seeds and recipe."""
    refits = {fold_number(d): read_servable_run(d) for d in finished_folds(refit_dir)}
    for cv_run in cv_runs:
        k = cv_run["split"]["fold"]
        r = refits.get(k)
        if r is None:
            raise UsageError(f"{refit_dir}: fold {k} is not finished; finish the refit (moodmic-train refit, then members)")
        same = (r["split"].get("refit_actors") == cv_run["split"]["val"]["actors"]
                and r["split"]["test"] == cv_run["split"]["test"]
                and _init_seeds(r) == _init_seeds(cv_run) and _comparable(r) == _comparable(cv_run))
        if not same:
            raise UsageError(f"{refit_dir}/fold-{k} is not a refit of {cv_dir}/fold-{k} (its actors, init seeds or "
                             f"recipe differ); refit {cv_dir}'s members and combine them with members")
    return [refits[r["split"]["fold"]] for r in cv_runs], read_summary(refit_dir)
