"""A run: its settings, its directory, and run.json, the converter's input.

Layout of a run directory:

    settings.json            the run's settings (what --resume continues with)
    command.txt              every command line that worked on the run
    manifest.csv             every clip of the corpus with its split ('' = duplicate, not used)
    fit_items.csv            every item behind the arrays passed to fit() (trainer/data.py)
    checkpoints/             last/ (model + state for --resume) and best-EEE.keras
    history.csv              one row per epoch; training_curves.png
    model.keras              the best model by validation loss (tf-keras; custom objects: trainer.model)
    metrics.json             per-split actor lists, and metrics of the val and test splits
    predictions.csv          every scored clip with its probabilities
    classification_report.txt, confusion_matrix.png (test, counts + row-normalised), confusion_matrix_val.png
    model_card.md
    run.json                 written last: a run without it has not finished
    .lock                    held by the process training the run, so that no second one resumes it meanwhile

run.json (format_version 1):

    format_version  1
    name            the run directory's name
    labels          class names in the order of the model's outputs
    features        edge.features.FeatureParams.to_dict() (includes feature_version)
    eval_hop_s      whole-file scoring hop in seconds (edge.predict); the bundle's eval_hop_s
    input_layout    "time_mel": input (batch, n_frames, n_mels) in dB exactly as edge.features gives it;
                    the model standardises it itself (first layer)
    arch            architecture name in trainer.model.ARCHS
    keras_model     "model.keras", relative to the run directory; `rebuild_model(run_dir, batch_size=1)`
                    gives the converter its fixed-batch clone with the trained weights
    parameters      parameter count
    data            {path, source ("ravdess-names" | "manifest"), manifest, clips, duplicates_dropped,
                    used: "manifest.csv"}
    split           {kind ("actor" | "stratified" | "all"), fold, folds, seed, train|val|test: {actors, sex, clips}}
                    (kind "all": every clip trains, val and test are empty and so are the metrics)
    seed            the run's seed
    settings        the full settings (as settings.json); settings.model (band_mean, logits, ensemble)
                    shapes the graph, and a logits model's outputs need softmax (trainer.model.batched_infer)
    teacher         only with --teacher: {file, sha256} of the teacher file (trainer.teacher)
    training        {epochs_run, best_epoch, stopped_early, seconds_per_epoch, train_items, rows_per_epoch,
                    val_windows}
    metrics         {val|test: {all|speech|song: {clips, accuracy, unweighted_accuracy, macro_f1,
                    per_class_recall, confusion}}}, as in metrics.json
    command         the command lines, oldest first
    created_utc, moodmic_version
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge import __version__
from edge.bundle import sha256_file
from edge.errors import ConfigError, MissingInputError, UsageError
from edge.features import FeatureParams, Frontend

from .cache import FeatureCache, default_cache_dir
from .corpus import Clip, Corpus, load_corpus, write_manifest
from .evaluate import HEADLINE, evaluate, score, write_predictions
from .speaker import speaker_spectra
from .settings import SETTINGS_FILE, RunSettings
from .splits import PARTS, Split, make_split

FORMAT_VERSION = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # held by the process training the run (_lock)
KERAS_MODEL = "model.keras"
INPUT_LAYOUT = "time_mel"


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise MissingInputError(f"{run_dir}: no {RUN_FILE}; give a finished run directory (or resume it with train --resume)")
    run = json.loads(path.read_text(encoding="utf-8"))
    if run.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: format_version {run.get('format_version')!r} is not {FORMAT_VERSION}; retrain or upgrade moodmic")
    return run


def read_servable_run(run_dir: str | Path) -> dict[str, Any]:
    """read_run, for what scores or ships the model as the device frontend feeds it: refuses a run
    trained with speaker normalisation (trainer.speaker), which only train and cv apply (per actor)."""
    run = read_run(run_dir)
    if (run.get("settings", {}).get("model") or {}).get("speaker_mean"):
        raise UsageError(f"{run_dir}: trained with --speaker-mean, which only moodmic-train train and cv apply "
                         "(each actor's own spectrum) and the device frontend does not, so it cannot be scored, "
                         "combined or converted here; retrain without --speaker-mean")
    return run


def rebuild_model(run_dir: str | Path, batch_size: int | None = 1):
    """The run's trained model rebuilt with a fixed batch size (the converter's batch-1 clone)."""
    from .model import build_model, load_keras_model
    from .settings import ModelSettings

    run = read_run(run_dir)
    trained = load_keras_model(Path(run_dir) / run["keras_model"], compile=False)
    if "members" in run:  # moodmic-train ensemble: fold models averaged in one graph
        from .ensemble import rebuild_ensemble

        return rebuild_ensemble(run, trained, batch_size)
    clone = build_model(run["arch"], len(run["labels"]), FeatureParams.from_dict(run["features"]), batch_size,
                        ModelSettings.from_dict(run["settings"].get("model")))
    clone.set_weights(trained.get_weights())
    return clone


def eval_hop_frames(params: FeatureParams, hop_s: float) -> int:
    """The scoring hop in frames; a hop that is not a whole number of frames is the user's to fix."""
    try:
        return params.hop_frames(hop_s)
    except ValueError as exc:
        raise UsageError(f"--eval-hop {hop_s}: {exc}") from None


def read_history(run_dir: Path) -> list[dict]:
    """history.csv: one row per epoch (strings, as written)."""
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _command(argv: list[str] | None) -> str:
    return shlex.join(["moodmic-train", *(sys.argv[1:] if argv is None else argv)])


def _lock(run_dir: Path) -> IO[str]:
    """Hold the run directory for this process (released when it exits): two processes resuming one
    run would train over each other's checkpoints and history."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "w", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError(f"{run_dir}: another process is training this run now; wait for it to finish, "
                         "or choose another --out") from None
    return handle


def _start(run_dir: Path, settings: RunSettings, resume: bool, params: FeatureParams, argv: list[str] | None) -> IO[str]:
    """Create (or reopen) and lock the run directory (the lock is returned: hold it while training);
    write settings.json and the command line."""
    lock = _lock(run_dir)
    if resume:
        saved = json.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        if saved["features"] != params.to_dict():
            raise ConfigError(f"{run_dir}: was started with other feature parameters than this moodmic's; start a new run")
    _write_json(run_dir / SETTINGS_FILE, {"settings": settings.to_dict(), "features": params.to_dict()})
    with open(run_dir / "command.txt", "a", encoding="utf-8") as f:
        f.write(_command(argv) + "\n")
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
    from . import adversary, model as models  # imports TensorFlow

    if settings.arch not in models.ARCHS:
        raise UsageError(f"--arch {settings.arch!r} is unknown; use one of {', '.join(models.ARCHS)}")
    settings.split.check()
    _check_adversary(settings)
    run_dir = Path(settings.out)
    if resume and (run_dir / RUN_FILE).is_file():
        print(f"{run_dir}: already finished", file=sys.stderr)
        return read_run(run_dir)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir}: exists and is not empty; pass --resume to continue that run, or choose another --out")

    # Everything that can be wrong with the data is found before the run directory is created.
    params = FeatureParams()
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
    spectra = None
    if settings.model.speaker_mean:  # every actor's own long-term spectrum; each actor is on one side only
        spectra = speaker_spectra([c for part in sides.values() for c in part], cache)
    data, result = _train(run_dir, settings, corpus.labels, sides, frontend, hop, resume, cache, spectra, soft)
    best = adversary.emotion_model(models.load_keras_model(result.best_model, compile=False))  # the speaker output dropped
    best.save(run_dir / KERAS_MODEL)
    metrics = _evaluate(run_dir, models.batched_infer(best), corpus, split, sides, frontend, hop, spectra)

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
        "command": (run_dir / "command.txt").read_text(encoding="utf-8").splitlines(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "moodmic_version": __version__,
    }
    (run_dir / "model_card.md").write_text(model_card(run), encoding="utf-8")
    _write_json(run_dir / RUN_FILE, run)
    if metrics["test"]:
        print(f"{run_dir}: test " + ", ".join(f"{k} {metrics['test']['all'][k]:.3f}" for k in HEADLINE), file=sys.stderr)
    else:
        print(f"{run_dir}: trained on every clip for {len(result.history)} epochs; nothing held out to score", file=sys.stderr)
    lock.close()
    return run


def _check_adversary(settings: RunSettings) -> None:
    weight = settings.fit.speaker_adversary
    if weight < 0:
        raise UsageError(f"--speaker-adversary {weight}: the weight of the reversed gradient is 0 (off) or more")
    if weight and settings.augment.mixup:
        raise UsageError("--speaker-adversary with --mixup: a blend of two clips has no one speaker; drop one of them")
    if weight and settings.fit.monitor != "val_loss":
        raise UsageError("--speaker-adversary watches the emotion loss on validation: drop --monitor or use val_loss")


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
    if settings.augment.mixup:
        raise UsageError("--teacher with --mixup: a blend of two clips has no one teacher target; drop one of them")
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
           frontend: Frontend, hop: int, resume: bool, cache: FeatureCache, spectra: dict | None,
           soft: np.ndarray | None):
    """Build the training arrays, then fit a new model or continue the saved one."""
    from . import adversary, model as models
    from .data import build_training_data
    from .train import fit, load_state

    data = build_training_data(sides["train"], sides["val"], labels, frontend, cache, settings.augment, hop,
                               settings.seed, settings.fit.oversample, settings.fit.crops, spectra,
                               soft, settings.fit.teacher_weight)
    data.write_fit_items(run_dir / "fit_items.csv")
    state = load_state(run_dir) if resume else None
    model = None
    seed = settings.fit.member_seed(settings.seed)
    if state is None:
        models.keras.utils.set_random_seed(seed)
        model = models.build_model(settings.arch, len(labels), frontend.params, settings=settings.model)
        model.get_layer(models.INPUT_NORM).adapt(data.crop_sample(2048, seed))
        if settings.fit.speaker_adversary:
            model = adversary.with_speaker_adversary(model, len(data.speakers), settings.fit.speaker_adversary)
        models.compile_model(model, settings.fit.learning_rate, settings.fit.focal_gamma, settings.fit.label_smoothing)
    return data, fit(model, data, settings.fit, run_dir, seed, state)


def _evaluate(run_dir: Path, infer, corpus: Corpus, split: Split, sides: dict[str, list[Clip]], frontend: Frontend,
              hop: int, spectra: dict | None = None) -> dict[str, Any]:
    """Score the validation and test clips as whole files; write metrics, predictions and reports."""
    from .report import classification_text, plot_confusion

    labels = corpus.labels
    parts = [part for part in ("val", "test") if sides[part]]  # split `all` has neither
    scored = {part: (sides[part], score(sides[part], frontend, hop, infer, labels, part, spectra)) for part in parts}
    metrics = {"labels": list(labels), "split": split.describe(corpus), "val": {}, "test": {}}
    metrics.update({part: evaluate(clips, results, labels) for part, (clips, results) in scored.items()})
    _write_json(run_dir / "metrics.json", metrics)
    if not scored:
        return metrics
    write_predictions(run_dir / "predictions.csv", scored, labels)
    (run_dir / "classification_report.txt").write_text(classification_text(scored, labels), encoding="utf-8")
    for part, name in (("test", "confusion_matrix.png"), ("val", "confusion_matrix_val.png")):
        if metrics[part]:  # a refit has no validation side
            plot_confusion(metrics[part]["all"]["confusion"], labels, run_dir / name, "validation" if part == "val" else part)
    return metrics
