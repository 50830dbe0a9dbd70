"""`moodmic-train final CV_DIR --out RUN`: the recipe of a finished cross-validation, trained on every actor.

CV_DIR is a `moodmic-train cv` folder (one model per fold) or a `moodmic-train members` folder (an
ensemble per fold). For each member of the recipe, a run on every clip of the corpus (split `all`)
with the member's own settings, for the epoch count its cross-validation chose (the median best
epoch over folds) and with the learning rate of each epoch its folds used (the median over folds,
as ReduceLROnPlateau lowered it): with no validation side there is nothing to stop or choose on.
Several members are then averaged in one model (graphs.combine), as RUN. With one member RUN is
that member's run.

RUN is a run directory the converter reads (convert it with `--parity-side train`: it has no
held-out side). Its figure is CV_DIR's cross-validation, which it carries: run.json adds
    members   [{name, run, init_seed, epochs}] in output-averaging order (several members only)
    cv        CV_DIR's cv_summary.json
and metrics.cv the CV means per group; its eval_hop_s is the one CV_DIR was scored at. With `--refit
DIR` (a `refit` of CV_DIR, its members combined) the figure carried is DIR's: the cross-validation of
this very recipe, each fold trained on every non-test actor for fixed epochs as RUN is. Resumable:
finished member runs are kept, unfinished ones continue from their last epoch. `--member I` trains
member I alone, so that each core can train one (a plain `final` afterwards keeps them and combines).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.errors import UsageError

from .crossval import finished_folds, read_summary
from .ensemble import copy_cv_reports, cv_metrics
from .graphs import combine_runs
from .members import member_name
from .refit import refit_figure
from .run import train_run
from .rundir import COMMAND_FILE, KERAS_MODEL, RUN_FILE, command, read_history, read_run, read_servable_run, write_json
from .settings import SETTINGS_FILE, RunSettings, trainable_settings


def final_run(cv_dir: str | Path, out: str | Path, argv: list[str] | None = None,
              member: int | None = None, refit: str | Path | None = None) -> dict[str, Any] | None:
    """The final run; with `member`, only that member's run (one process per core), no combining;
    with `refit`, the run carries that refit of CV_DIR's figure instead of CV_DIR's."""
    cv_dir, out = Path(cv_dir), Path(out)
    folds = finished_folds(cv_dir)
    runs = [read_servable_run(d) for d in folds]
    if not runs or len(runs) != runs[0]["split"]["folds"]:
        raise UsageError(f"{cv_dir}: {len(runs)} finished folds; finish its cross-validation before training the final model")
    if "members" in runs[0]:  # moodmic-train members: member i of every fold
        member_folds = [[Path(r["members"][i]["run"]) for r in runs] for i in range(len(runs[0]["members"]))]
    else:
        member_folds = [folds]
    if member is not None and not 0 <= member < len(member_folds):
        raise UsageError(f"--member {member}: {cv_dir} has members 0-{len(member_folds) - 1}")
    if refit is None:  # figure_runs: the folds whose test actors give the figure the final run carries
        figure_runs, summary = runs, read_summary(cv_dir)
    else:
        figure_runs, summary = refit_figure(cv_dir, runs, Path(refit))
    if len(member_folds) == 1:
        run = _train_member(member_folds[0], out, argv)
        run |= {"cv": summary, "metrics": {**run["metrics"], "cv": cv_metrics(figure_runs, summary)}}
        write_json(out / RUN_FILE, run)
        return run
    if member is not None:
        _train_member(member_folds[member], out / f"member-{member}", argv)
        return None
    members = [_train_member(dirs, out / f"member-{i}", argv) for i, dirs in enumerate(member_folds)]
    reports = [cv_dir] + ([Path(refit)] if refit is not None else [])  # a refit's summary over CV_DIR's; its calibration
    return _combine(members, [out / f"member-{i}" for i in range(len(members))], reports, figure_runs, summary, out, argv)


def median_schedule(histories: list[list[dict]], epochs: int) -> tuple[float, ...]:
    """The median over folds of the learning rate at each epoch 1..epochs (a fold that stopped sooner keeps its last)."""
    rates = [[float(h[min(e, len(h) - 1)]["lr"]) for e in range(epochs)] for h in histories]
    return tuple(float(v) for v in np.median(np.array(rates), axis=0))


def _train_member(fold_dirs: list[Path], out: Path, argv: list[str] | None) -> dict[str, Any]:
    if (out / RUN_FILE).is_file():
        print(f"{out}: finished, kept", file=sys.stderr)
        return read_run(out)
    runs = [read_run(d) for d in fold_dirs]
    epochs = int(round(float(np.median([r["training"]["best_epoch"] for r in runs]))))
    histories = [read_history(d) for d in fold_dirs]
    base = trainable_settings(runs[0]["settings"], fold_dirs[0])
    settings = replace(base, out=str(out), split=replace(base.split, kind="all", refit=False),
                       fit=replace(base.fit, epochs=epochs, lr_schedule=median_schedule(histories, epochs)))
    resume = (out / SETTINGS_FILE).is_file()
    print(f"== {out}: every actor, {epochs} epochs (the median best epoch of {fold_dirs[0].parent})", file=sys.stderr)
    return train_run(settings, resume=resume, argv=argv)


def _combine(members: list[dict], member_dirs: list[Path], report_dirs: list[Path], cv_runs: list[dict], summary: dict,
             out: Path, argv: list[str] | None) -> dict[str, Any]:
    if (out / RUN_FILE).is_file():
        print(f"{out}: finished, kept", file=sys.stderr)
        return read_run(out)
    first = members[0]
    model = combine_runs(member_dirs, members, [member_name(i) for i in range(len(members))])
    model.save(out / KERAS_MODEL)
    shutil.copy2(member_dirs[0] / "manifest.csv", out / "manifest.csv")
    line = command(argv)
    (out / COMMAND_FILE).write_text(line + "\n", encoding="utf-8")
    hop_s = cv_runs[0]["eval_hop_s"]  # the hop the CV figure was scored at (members --eval-hop)
    run = {
        **{k: first[k] for k in ("format_version", "labels", "features", "input_layout", "arch", "data", "split", "seed")},
        "eval_hop_s": hop_s,
        "name": out.name,
        "keras_model": KERAS_MODEL,
        "parameters": int(model.count_params()),
        "settings": {**first["settings"], "out": str(out), "eval_hop_s": hop_s},
        "members": [{"name": member_name(i), "run": str(d.resolve()),
                     "init_seed": RunSettings.from_dict(r["settings"]).fit.member_seed(r["seed"]),
                     "epochs": r["training"]["epochs_run"]} for i, (d, r) in enumerate(zip(member_dirs, members))],
        "cv": summary,
        "training": {key: [r["training"][key] for r in members] for key in ("epochs_run", "seconds_per_epoch")},
        "metrics": {"cv": cv_metrics(cv_runs, summary), "val": {}, "test": {}},
        "command": [line],
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "moodmic_version": __version__,
    }
    for d in report_dirs:
        copy_cv_reports(d, out)
    write_json(out / RUN_FILE, run)
    print(f"{out}: {len(members)} members trained on every actor ({run['parameters']:,} parameters)", file=sys.stderr)
    return run
