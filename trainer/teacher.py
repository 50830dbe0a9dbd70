"""Soft labels from a teacher, for distillation (`--teacher FILE --teacher-weight W`).

A teacher file (.npz; research/whisper_probe.py --teacher writes one) holds, for every set of training
actors a recipe trains on (each fold's training side, the same with its validation actors for a
refit, all actors for the final model), every clip's class probabilities from a teacher that never
heard that clip's actor: fitted on the set's other actors (cross-fitting). A training window's
target is then (1 - W) one-hot(label) + W teacher(clip), so the student learns how the teacher's
classes shade into each other on voices it had not heard, not the teacher's memory of them.

    names   (clips,)        clip names (trainer.corpus.Clip.name)
    labels  (K,)            class order of the probabilities
    train:A,B,...  (clips, K)  probabilities for that actor set's clips; NaN for clips outside it
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import UsageError

from .corpus import Clip

PREFIX = "train:"


def side_key(actors) -> str:
    """The file's key for a set of training actors."""
    return PREFIX + ",".join(sorted(actors))


def soft_labels(path: Path, clips: list[Clip], labels: tuple[str, ...], song: bool = True) -> np.ndarray:
    """(len(clips), K) teacher probabilities of these training clips, from the set of their actors.

    `song=False`: sung clips get their one-hot label instead, so their targets stay plain."""
    try:
        z = np.load(path)
        names, file_labels = list(z["names"]), tuple(z["labels"])
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--teacher {path}: not a teacher file ({e}); "
                         "write one with research/whisper_probe.py --teacher") from None
    if file_labels != tuple(labels):
        raise UsageError(f"--teacher {path}: its classes {', '.join(file_labels)} are not this corpus's "
                         f"{', '.join(labels)}; write it for this corpus")
    actors = sorted({c.speaker for c in clips})
    key = side_key(actors)
    if key not in z.files:
        raise UsageError(f"--teacher {path}: no soft labels for training actors {', '.join(actors)}; "
                         "write it for this split's folds (trainer/recipe/folds.json) or drop --teacher")
    index = {n: i for i, n in enumerate(names)}
    missing = [c.name for c in clips if c.name not in index]
    if missing:
        raise UsageError(f"--teacher {path}: {len(missing)} training clips are not in it (e.g. {missing[0]}); "
                         "write it for this corpus")
    probs = z[key][[index[c.name] for c in clips]].astype(np.float32)
    if not np.isfinite(probs).all() or not np.allclose(probs.sum(1), 1.0, atol=1e-3):
        raise UsageError(f"--teacher {path}: the rows for {key} are not probabilities; write it again")
    if not song:
        sung = np.array([c.channel == "song" for c in clips], bool)
        probs[sung] = np.eye(len(labels), dtype=np.float32)[[labels.index(c.label) for c in clips]][sung]
    return probs
