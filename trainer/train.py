"""fit(): Adam, focal loss, and EarlyStopping / ReduceLROnPlateau / ModelCheckpoint on the validation split only.

A run can be killed at any moment and continued with `--resume`. After every epoch the
Checkpointer saves, in `checkpoints/last/`, the model with its optimizer state and `state.json`
(epochs done, the history rows, the callbacks' counters), swapping the folder in whole; then it
rewrites `history.csv` from that state. A resumed run starts after the last saved epoch, restores
the counters, and rewrites history.csv from the state, so every epoch appears in it exactly once.
The best model by validation loss is kept as `checkpoints/best-EEE.keras`.

Without a validation side (split `all`: the final model on every speaker) nothing can stop or
choose: the run trains for exactly `epochs` epochs at the set learning rate, or at the rate of each
epoch in `lr_schedule`, and keeps the last one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf  # noqa: F401  (trainer/__init__.py has set TF_USE_LEGACY_KERAS)
import tf_keras as keras

from .data import TrainingData
from .model import load_keras_model
from .rundir import HISTORY_FILE
from .settings import MONITORS, FitSettings

CHECKPOINTS = "checkpoints"
LAST = "last"
STATE = "state.json"
HISTORY = HISTORY_FILE
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class FitResult:
    history: list[dict]  # one row per epoch, HISTORY_COLUMNS
    best_epoch: int  # 1-based
    best_model: Path
    stopped_early: bool


class _Crops(keras.utils.Sequence):
    """Batches of the epoch plan; the plan is drawn from (seed, epoch), so resumed epochs match."""

    def __init__(self, data: TrainingData, batch_size: int, seed: int, epoch: int):
        self.data, self.batch_size, self.seed, self.epoch = data, batch_size, seed, epoch
        self._plan_epoch, self._plan = None, None

    def __len__(self) -> int:
        return math.ceil(len(self.data.rows) * self.data.crops / self.batch_size)

    def __getitem__(self, i: int):
        if self._plan_epoch != self.epoch:
            self._plan, self._plan_epoch = self.data.epoch_plan(self.epoch, self.seed), self.epoch
        items, starts = self._plan
        batch = slice(i * self.batch_size, (i + 1) * self.batch_size)
        rng = np.random.default_rng([self.seed, self.epoch, i, 11])  # window augmentation of this batch
        return self.data.training_batch(items[batch], starts[batch], rng)

    def on_epoch_end(self) -> None:
        self.epoch += 1


# The counters of each callback that a resumed run must get back (their on_train_begin resets them).
_TRACKED = {
    "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "reduce_lr": ("wait", "best", "cooldown_counter"),
    "best_checkpoint": ("best",),
}


class Checkpointer(keras.callbacks.Callback):
    def __init__(self, run_dir: Path, monitor: str, tracked: dict[str, keras.callbacks.Callback], state: dict | None):
        super().__init__()
        self.monitor = monitor
        self.dir = run_dir / CHECKPOINTS
        self.run_dir = run_dir
        self.tracked = tracked
        self.state = state or {"epochs_done": 0, "history": [], "callbacks": {}, "finished": False}
        self._started = 0.0

    def on_train_begin(self, logs=None):
        for name, values in self.state["callbacks"].items():
            for attr, value in values.items():
                setattr(self.tracked[name], attr, value)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {k: float(logs[k]) for k in HISTORY_COLUMNS if k in logs}
        row.update(epoch=epoch + 1, lr=float(keras.backend.get_value(self.model.optimizer.learning_rate)),
                   seconds=round(time.monotonic() - self._started, 2))
        self.state["history"].append(row)
        self.state["epochs_done"] = epoch + 1
        self.state["callbacks"] = {
            name: {a: _plain(getattr(cb, a)) for a in _TRACKED[name]} for name, cb in self.tracked.items()
        }
        self.save(with_model=True)
        if self.monitor is None:  # no validation: the last epoch is the model
            self.model.save(best_checkpoint(self.dir, epoch + 1))
        keep = best_checkpoint(self.dir, best_epoch(self.state["history"], self.monitor)).name
        for old in self.dir.glob("best-*.keras"):
            if old.name != keep:
                old.unlink()

    def save(self, with_model: bool) -> None:
        """Write the state (and the model) into last.tmp/, then swap it in for last/."""
        last, tmp, old = self.dir / LAST, self.dir / (LAST + ".tmp"), self.dir / (LAST + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if with_model:
            self.model.save(tmp / "model.keras")
        elif (last / "model.keras").exists():
            shutil.copy2(last / "model.keras", tmp / "model.keras")
        (tmp / STATE).write_text(json.dumps(self.state, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(old, ignore_errors=True)
        if last.exists():
            last.rename(old)
        tmp.rename(last)
        shutil.rmtree(old, ignore_errors=True)
        write_history(self.run_dir / HISTORY, self.state["history"])


def _plain(value):
    """A callback counter as a JSON number (they are numpy or Python scalars)."""
    return value.item() if hasattr(value, "item") else value


def write_history(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def best_epoch(history: list[dict], monitor: str | None) -> int:
    """The first epoch with the best monitored value: the one ModelCheckpoint saved last (None: the last epoch)."""
    if monitor is None:
        return history[-1]["epoch"]
    sign = 1 if MONITORS[monitor] == "min" else -1
    return min(history, key=lambda r: sign * r[monitor])["epoch"]  # min() keeps the first of equals, like its `<`


def best_checkpoint(checkpoints: Path, epoch: int) -> Path:
    return checkpoints / f"best-{epoch:03d}.keras"


def load_state(run_dir: Path) -> dict | None:
    """The last saved training state, or None if no epoch was saved."""
    cp = run_dir / CHECKPOINTS
    for folder in (cp / LAST, cp / (LAST + ".old")):  # .old: killed in the middle of a swap
        if (folder / STATE).is_file() and (folder / "model.keras").is_file():
            return json.loads((folder / STATE).read_text(encoding="utf-8")) | {"_dir": str(folder)}
    return None


def fit(model: keras.Model | None, data: TrainingData, s: FitSettings, run_dir: Path, seed: int, state: dict | None) -> FitResult:
    """Train `model` (or, with a saved `state`, the checkpointed model) and return the best epoch."""
    saved = Path(state.pop("_dir")) if state else None
    if data.has_validation:
        watch = {"monitor": s.monitor, "mode": MONITORS[s.monitor]}
        early = keras.callbacks.EarlyStopping(patience=s.patience, **watch)
        reduce_lr = keras.callbacks.ReduceLROnPlateau(factor=s.lr_factor, patience=s.lr_patience, min_lr=s.min_lr, **watch)
        best = keras.callbacks.ModelCheckpoint(str(run_dir / CHECKPOINTS / "best-{epoch:03d}.keras"), save_best_only=True,
                                               **watch)
        tracked = {"early_stopping": early, "reduce_lr": reduce_lr, "best_checkpoint": best}
        validation = {"validation_data": (data.val_x, data.val_targets), "validation_batch_size": 256}
        monitor = s.monitor
    else:
        tracked, monitor, validation = {}, None, {}
    schedule = []
    if s.lr_schedule and not data.has_validation:
        rates = s.lr_schedule
        schedule.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: rates[min(epoch, len(rates) - 1)]))
    checkpointer = Checkpointer(run_dir, monitor, tracked, state)
    done = checkpointer.state["epochs_done"]
    if saved:
        write_history(run_dir / HISTORY, checkpointer.state["history"])  # drop rows of an epoch not saved
    if not checkpointer.state["finished"] and done < s.epochs:
        if saved:
            print(f"resuming after epoch {done}", file=sys.stderr)
            model = load_keras_model(saved / "model.keras")
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        model.fit(
            _Crops(data, s.batch_size, seed, done),
            **validation,
            epochs=s.epochs,
            initial_epoch=done,
            callbacks=[*schedule, *tracked.values(), checkpointer],  # checkpointer last: it saves the others' counters
            shuffle=False,  # the epoch plan is already shuffled, reproducibly
            verbose=1 if sys.stdout.isatty() else 2,
        )
        checkpointer.state["finished"] = True
        checkpointer.save(with_model=False)
    history = checkpointer.state["history"]
    stopped = checkpointer.state["callbacks"].get("early_stopping", {}).get("stopped_epoch", 0) > 0
    epoch = best_epoch(history, monitor)
    return FitResult(history, epoch, best_checkpoint(run_dir / CHECKPOINTS, epoch), stopped)
