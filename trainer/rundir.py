"""The run directory format: what a run directory holds, run.json (the converter's input), and the
few helpers every command that writes or reads one shares (trainer.run, crossval, ensemble, members,
refit, final, calibrate, rescore; the converter reads it with read_servable_run).

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
    keras_model     "model.keras", relative to the run directory; `trainer.graphs.rebuild_model(run_dir, 1)`
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
import json
import shlex
import sys
from pathlib import Path
from typing import IO, Any

from edge.errors import ConfigError, MissingInputError, UsageError

FORMAT_VERSION = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # held by the process training the run (lock_run)
KERAS_MODEL = "model.keras"
INPUT_LAYOUT = "time_mel"
HISTORY_FILE = "history.csv"
COMMAND_FILE = "command.txt"


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise MissingInputError(f"{run_dir}: no {RUN_FILE}; give a finished run directory (or resume it with train --resume)")
    run = json.loads(path.read_text(encoding="utf-8"))
    if run.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: format_version {run.get('format_version')!r} is not {FORMAT_VERSION}; "
                          "retrain or upgrade moodmic")
    return run


def read_servable_run(run_dir: str | Path) -> dict[str, Any]:
    """read_run, for what scores or ships the model as the device frontend feeds it: refuses a run
    trained with speaker normalisation (--speaker-mean, research/speaker.py: each actor's own long-term
    spectrum subtracted, which the device frontend cannot do; a research variant that left the trainer)."""
    run = read_run(run_dir)
    if (run.get("settings", {}).get("model") or {}).get("speaker_mean"):
        raise UsageError(f"{run_dir}: trained with --speaker-mean (each actor's own spectrum subtracted), which the "
                         "device frontend does not apply, so it cannot be scored, combined or converted here; "
                         "retrain without --speaker-mean")
    return run


def read_history(run_dir: Path) -> list[dict]:
    """history.csv: one row per epoch (strings, as written)."""
    with open(run_dir / HISTORY_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, swapped in whole (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def command(argv: list[str] | None) -> str:
    """The moodmic-train command line being run (argv, or this process's), as command.txt records it."""
    return shlex.join(["moodmic-train", *(sys.argv[1:] if argv is None else argv)])


def lock_run(run_dir: Path) -> IO[str]:
    """Hold the run directory for this process (released when it exits, or when the handle is closed):
    two processes resuming one run would train over each other's checkpoints and history."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "w", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError(f"{run_dir}: another process is training this run now; wait for it to finish, "
                         "or choose another --out") from None
    return handle
