"""`moodmic-train members CV_DIR CV_DIR ... --out DIR`: a cross-validation of ensembles.

Each CV_DIR is a `moodmic-train cv` of the same recipe and folds, differing only in `--init-seed`
(weights, crops and batch augmentation). For every fold finished in all of them, DIR/fold-K holds
one model averaging the members' outputs (graphs.combine), scored on that fold's validation and
test actors exactly as a fold run is (whole files through edge.predict, at `--eval-hop` seconds
between windows if given, else at the members' own hop), and DIR gets the same cv_summary as `cv`.
Every member of fold K trained on fold K's training actors only, so this is a speaker-independent
figure for the recipe "an ensemble of N members" (unlike `ensemble`, which averages models of
different folds).

DIR/fold-K is a run directory (run.json as trainer/rundir.py describes it), so `calibrate DIR` and
the converter read it like any fold; run.json adds
    members   [{name, run, init_seed, best_epoch}] in output-averaging order
and training.best_epoch / epochs_run are lists, one entry per member.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge import __version__
from edge.errors import UsageError
from edge.features import FeatureParams, Frontend

from .corpus import load_corpus
from .crossval import finished_folds, fold_dir, fold_number, summarize
from .evaluate import HEADLINE
from .graphs import combine_runs
from .run import eval_hop_frames, write_evaluation
from .rundir import COMMAND_FILE, KERAS_MODEL, RUN_FILE, command, read_run, read_servable_run, write_json
from .settings import RunSettings
from .splits import make_split

# Besides their settings (all but the init seed and the folder), members must share these.
_SHARED = ("labels", "features", "split")


def member_name(k: int) -> str:
    return f"member_{k}"


def members_cv(cv_dirs: list[str | Path], out: str | Path, argv: list[str] | None = None,
               eval_hop_s: float | None = None) -> dict[str, Any]:
    cv_dirs, out = [Path(d) for d in cv_dirs], Path(out)
    if len(cv_dirs) < 2:
        raise UsageError("members needs two or more cross-validation folders (moodmic-train cv --init-seed N)")
    if out.resolve() in {d.resolve() for d in cv_dirs}:
        raise UsageError(f"{out}: is one of the members; choose another --out")
    finished = [{fold_number(d) for d in finished_folds(cv)} for cv in cv_dirs]
    folds = sorted(set.intersection(*finished))
    if not folds:
        raise UsageError(f"no fold is finished in every one of {', '.join(map(str, cv_dirs))}; finish their cv runs first")
    for k in folds:
        if (fold_dir(out, k) / RUN_FILE).is_file():
            done = read_run(fold_dir(out, k))["eval_hop_s"]
            if eval_hop_s is not None and done != eval_hop_s:
                raise UsageError(f"{fold_dir(out, k)} was scored at a {done} s hop, not {eval_hop_s}; choose another --out")
            print(f"{fold_dir(out, k)}: finished, kept", file=sys.stderr)
            continue
        _combine_fold(k, [fold_dir(cv, k) for cv in cv_dirs], fold_dir(out, k), argv, eval_hop_s)
    return summarize(out)


def _recipe(run: dict) -> RunSettings:
    """A member's settings without what members may differ in."""
    s = RunSettings.from_dict(run["settings"])
    fit = replace(s.fit, init_seed=None)
    if s.split.refit:  # each refit's epochs and rates are what its own validation run chose
        fit = replace(fit, epochs=0, lr_schedule=())
    return replace(s, out="", fit=fit)


def _combine_fold(k: int, run_dirs: list[Path], out: Path, argv: list[str] | None, eval_hop_s: float | None) -> None:
    from .model import batched_infer

    runs = [read_servable_run(d) for d in run_dirs]
    first = runs[0]
    for d, r in zip(run_dirs[1:], runs[1:]):
        differ = [key for key in _SHARED if r[key] != first[key]]
        differ += [f.name for f in fields(RunSettings) if getattr(_recipe(r), f.name) != getattr(_recipe(first), f.name)]
        if differ:
            raise UsageError(f"{d} and {run_dirs[0]} differ in {', '.join(differ)}: members must share the recipe and folds")
    seeds = [RunSettings.from_dict(r["settings"]).fit.member_seed(r["seed"]) for r in runs]
    if len(set(seeds)) < len(seeds):
        raise UsageError(f"fold {k}: members share an init seed ({seeds}); train each with its own --init-seed")
    params = FeatureParams.from_dict(first["features"])
    hop_s = first["eval_hop_s"] if eval_hop_s is None else eval_hop_s
    hop = eval_hop_frames(params, hop_s)  # before any work
    model = combine_runs(run_dirs, runs, [member_name(i) for i in range(len(runs))])

    settings = RunSettings.from_dict(first["settings"])
    corpus = load_corpus(settings.data)
    split = make_split(corpus, settings.split, settings.seed)
    if split.describe(corpus) != first["split"]:
        raise UsageError(f"{settings.data}: the corpus or its split changed since {run_dirs[0]} ran")
    sides = {part: split.clips(corpus, part) for part in ("train", "val", "test")}
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / KERAS_MODEL)
    shutil.copy2(run_dirs[0] / "manifest.csv", out / "manifest.csv")
    frontend = Frontend(params)
    metrics = write_evaluation(out, batched_infer(model), corpus, split, sides, frontend, hop)
    line = command(argv)
    (out / COMMAND_FILE).write_text(line + "\n", encoding="utf-8")
    run = {
        **{key: first[key] for key in ("format_version", "labels", "features", "input_layout", "arch", "data", "seed")},
        "eval_hop_s": hop_s,  # the bundle's, so `moodmic predict` scores files as this CV did
        "name": out.name,
        "keras_model": KERAS_MODEL,
        "parameters": int(model.count_params()),
        "split": metrics["split"],
        "settings": {**first["settings"], "out": str(out), "eval_hop_s": hop_s},
        "members": [{"name": member_name(i), "run": str(d.resolve()), "init_seed": s, "best_epoch": r["training"]["best_epoch"]}
                    for i, (d, r, s) in enumerate(zip(run_dirs, runs, seeds))],
        "training": {key: [r["training"][key] for r in runs] for key in ("epochs_run", "best_epoch")},
        "metrics": {part: metrics[part] for part in ("val", "test")},
        "command": [line],
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "moodmic_version": __version__,
    }
    write_json(out / RUN_FILE, run)
    print(f"{out}: {len(runs)} members, test " + ", ".join(f"{m} {metrics['test']['all'][m]:.3f}" for m in HEADLINE),
          file=sys.stderr)
