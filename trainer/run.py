"""`moodmic-train train`: one run, from corpus to a finished run directory (its format: trainer.rundir).

train_run checks the settings and the data before the run directory is created, locks it, builds
the training arrays (trainer.data), fits a new model or continues the saved one (trainer.train),
scores the validation and test actors as whole files (trainer.evaluate) and writes run.json last.
cv, refit and final call train_run for each of their runs.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge import __version__
from edge.bundle import sha256_file
from edge.errors import ConfigError, UsageError
from edge.features import LIMITS, FeatureParams, Frontend

from .cache import FeatureCache, default_cache_dir
from .corpus import Clip, Corpus, load_corpus, write_manifest
from .evaluate import HEADLINE, evaluate, score, write_predictions
from .graphs import rebuild_model  # noqa: F401  (the converter's and the bench's entry point: trainer.run.rebuild_model)
from .rundir import (
    COMMAND_FILE,
    FORMAT_VERSION,
    INPUT_LAYOUT,
    KERAS_MODEL,
    RUN_FILE,
    command,
    lock_run,
    read_run,
    read_servable_run,  # noqa: F401  (the converter reads runs with trainer.run.read_servable_run)
    write_json,
)
from .settings import SETTINGS_FILE, RunSettings
from .splits import PARTS, Split, make_split


def eval_hop_frames(params: FeatureParams, hop_s: float) -> int:
    """The scoring hop in frames; a hop that is not a whole number of frames is the user's to fix."""
    try:
        return params.hop_frames(hop_s)
    except ValueError as exc:
        raise UsageError(f"--eval-hop {hop_s}: {exc}") from None


def _start(run_dir: Path, settings: RunSettings, resume: bool, params: FeatureParams, argv: list[str] | None) -> IO[str]:
    """Create (or reopen) and lock the run directory (the lock is returned: hold it while training);
    write settings.json and the command line."""
    lock = lock_run(run_dir)
    if resume:
        saved = json.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        if saved["features"] != params.to_dict():
            raise ConfigError(f"{run_dir}: was started with other feature parameters than this moodmic's; start a new run")
    write_json(run_dir / SETTINGS_FILE, {"settings": settings.to_dict(), "features": params.to_dict()})
    with open(run_dir / COMMAND_FILE, "a", encoding="utf-8") as f:
        f.write(command(argv) + "\n")
    return lock


def _check_sides(corpus: Corpus, split: Split) -> None:
    parts = ("train",) if split.settings.kind == "all" else ("train", "test") if split.settings.refit else PARTS
    for part in parts:
        if not split.clips(corpus, part):
            raise UsageError(f"the {part} split is empty; the corpus has too few speakers or clips for this split")
    missing = sorted(set(corpus.labels) - {c.label for c in split.clips(corpus, "train")})
    if missing:
        print(f"warning: no training clips for {', '.join(missing)}", file=sys.stderr)


def train_run(settings: RunSettings, resume: bool = False, argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and write a complete run directory; returns run.json's content."""
    from . import model as models  # imports TensorFlow

    if settings.arch not in models.ARCHS:
        raise UsageError(f"--arch {settings.arch!r} is unknown; use one of {', '.join(models.ARCHS)}")
    settings.split.check()
    run_dir = Path(settings.out)
    if resume and (run_dir / RUN_FILE).is_file():
        print(f"{run_dir}: already finished", file=sys.stderr)
        return read_run(run_dir)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir}: exists and is not empty; pass --resume to continue that run, or choose another --out")

    # Everything that can be wrong with the data is found before the run directory is created.
    params = FeatureParams(webrtc_noise_suppression=settings.webrtc_noise_suppression,
                           webrtc_auto_gain_dbfs=settings.webrtc_auto_gain_dbfs)
    for flag, key in (("--webrtc-ns", "webrtc_noise_suppression"), ("--webrtc-agc", "webrtc_auto_gain_dbfs")):
        lo, hi = LIMITS[key]
        if not lo <= getattr(params, key) <= hi:
            raise UsageError(f"{flag} {getattr(params, key)} is out of range; use {lo:g} (off) to {hi:g}")
    corpus = load_corpus(settings.data)
    split = make_split(corpus, settings.split, settings.seed)
    _check_sides(corpus, split)
    soft = _teacher(settings, split.clips(corpus, "train"), corpus.labels)
    hop = eval_hop_frames(params, settings.eval_hop_s)
    lock = _start(run_dir, settings, resume, params, argv)  # held until the run is written
    _write_used_manifest(run_dir, corpus, split, resume)
    sides = {part: split.clips(corpus, part) for part in ("train", "val", "test")}
    print(f"{len(corpus.usable)} clips, labels {', '.join(corpus.labels)}; {settings.split.kind} split, fold "
          f"{settings.split.fold}: " + "; ".join(f"{p} {len(c)} clips" for p, c in sides.items()), file=sys.stderr)

    frontend = Frontend(params)
    cache = FeatureCache(settings.cache or default_cache_dir(), frontend)
    data, result = _train(run_dir, settings, corpus.labels, sides, frontend, hop, resume, cache, soft)
    best = models.load_keras_model(result.best_model, compile=False)
    best.save(run_dir / KERAS_MODEL)
    metrics = write_evaluation(run_dir, models.batched_infer(best), corpus, split, sides, frontend, hop)

    from .report import model_card, plot_history

    plot_history(result.history, run_dir / "training_curves.png")
    run = {
        "format_version": FORMAT_VERSION,
        "name": run_dir.name,
        "labels": list(corpus.labels),
        "features": params.to_dict(),
        "eval_hop_s": settings.eval_hop_s,
        "input_layout": INPUT_LAYOUT,
        "arch": settings.arch,
        "keras_model": KERAS_MODEL,
        "parameters": int(best.count_params()),
        "data": {**corpus.describe(), "used": "manifest.csv"},
        "split": metrics["split"],
        "seed": settings.seed,
        "settings": settings.to_dict(),
        **_teacher_record(settings),
        "training": {
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "seconds_per_epoch": float(np.median([r["seconds"] for r in result.history])),
            "train_items": len(data.items),
            "rows_per_epoch": int(len(data.rows) * data.crops),
            "val_windows": int(len(data.val_x)),
        },
        "metrics": {part: metrics[part] for part in ("val", "test")},
        "command": (run_dir / COMMAND_FILE).read_text(encoding="utf-8").splitlines(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "moodmic_version": __version__,
    }
    (run_dir / "model_card.md").write_text(model_card(run), encoding="utf-8")
    write_json(run_dir / RUN_FILE, run)
    if metrics["test"]:
        print(f"{run_dir}: test " + ", ".join(f"{k} {metrics['test']['all'][k]:.3f}" for k in HEADLINE), file=sys.stderr)
    else:
        print(f"{run_dir}: trained on every clip for {len(result.history)} epochs; nothing held out to score", file=sys.stderr)
    lock.close()
    return run


def _teacher(settings: RunSettings, train: list[Clip], labels: tuple[str, ...]) -> np.ndarray | None:
    """The teacher's soft labels of the training clips (trainer.teacher), or None without --teacher."""
    from .teacher import soft_labels

    fit = settings.fit
    if not fit.teacher:
        if fit.teacher_weight:
            raise UsageError(f"--teacher-weight {fit.teacher_weight} without --teacher: name the teacher file")
        if not fit.teacher_song:
            raise UsageError("--no-teacher-song without --teacher: name the teacher file, or drop --no-teacher-song")
        return None
    if not 0 < fit.teacher_weight <= 1:
        raise UsageError(f"--teacher-weight {fit.teacher_weight}: the teacher's share of each target is above 0 and at most 1")
    return soft_labels(Path(fit.teacher), train, labels, song=fit.teacher_song)


def _teacher_record(settings: RunSettings) -> dict[str, Any]:
    """The teacher file's hash (a path alone does not say which soft labels a run learnt from)."""
    if not settings.fit.teacher:
        return {}
    return {"teacher": {"file": settings.fit.teacher, "sha256": sha256_file(Path(settings.fit.teacher))}}


def _write_used_manifest(run_dir: Path, corpus: Corpus, split: Split, resume: bool) -> None:
    text = io.StringIO()
    write_manifest(text, corpus, split.part_of)
    path = run_dir / "manifest.csv"
    if resume and path.is_file() and path.read_text(encoding="utf-8") != text.getvalue():
        raise ConfigError(f"{corpus.root}: the corpus or its split changed since {run_dir} started; start a new run")
    path.write_text(text.getvalue(), encoding="utf-8")


def _train(run_dir: Path, settings: RunSettings, labels: tuple[str, ...], sides: dict[str, list[Clip]],
           frontend: Frontend, hop: int, resume: bool, cache: FeatureCache, soft: np.ndarray | None):
    """Build the training arrays, then fit a new model or continue the saved one."""
    from . import model as models
    from .data import build_training_data
    from .train import fit, load_state

    data = build_training_data(sides["train"], sides["val"], labels, frontend, cache, settings.augment, hop,
                               settings.seed, settings.fit.oversample, settings.fit.crops, soft,
                               settings.fit.teacher_weight)
    data.write_fit_items(run_dir / "fit_items.csv")
    state = load_state(run_dir) if resume else None
    model = None
    seed = settings.fit.member_seed(settings.seed)
    if state is None:
        models.keras.utils.set_random_seed(seed)
        model = models.build_model(settings.arch, len(labels), frontend.params, settings=settings.model)
        model.get_layer(models.INPUT_NORM).adapt(data.crop_sample(2048, seed))
        models.compile_model(model, settings.fit.learning_rate, settings.fit.focal_gamma)
    return data, fit(model, data, settings.fit, run_dir, seed, state)


def write_evaluation(run_dir: Path, infer, corpus: Corpus, split: Split, sides: dict[str, list[Clip]],
                     frontend: Frontend, hop: int) -> dict[str, Any]:
    """Score the validation and test clips as whole files; write metrics, predictions and reports
    (train_run, and members for each fold's averaged model)."""
    from .report import classification_text, plot_confusion

    labels = corpus.labels
    parts = [part for part in ("val", "test") if sides[part]]  # split `all` has neither
    scored = {part: (sides[part], score(sides[part], frontend, hop, infer, labels, part)) for part in parts}
    metrics = {"labels": list(labels), "split": split.describe(corpus), "val": {}, "test": {}}
    metrics.update({part: evaluate(clips, results, labels) for part, (clips, results) in scored.items()})
    write_json(run_dir / "metrics.json", metrics)
    if not scored:
        return metrics
    write_predictions(run_dir / "predictions.csv", scored, labels)
    (run_dir / "classification_report.txt").write_text(classification_text(scored, labels), encoding="utf-8")
    for part, name in (("test", "confusion_matrix.png"), ("val", "confusion_matrix_val.png")):
        if metrics[part]:  # a refit has no validation side
            plot_confusion(metrics[part]["all"]["confusion"], labels, run_dir / name, "validation" if part == "val" else part)
    return metrics
