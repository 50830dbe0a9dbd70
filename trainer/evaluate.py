"""Scoring: every clip through edge.predict.predict_audio (the one whole-file prediction), then metrics.

Reported per group (all clips, speech, song): accuracy, unweighted accuracy (the mean of the
per-class recalls, i.e. balanced accuracy: RAVDESS has half as many neutral clips, and song has no
disgust or surprised), macro-F1 and per-class recall over the classes the group contains, and the
confusion matrix over every label (rows: true, columns: predicted).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.features import Frontend
from edge.predict import Infer, predict_audio
from edge.schema import FileResult

from .corpus import Clip
from .progress import progress

HEADLINE = ("accuracy", "unweighted_accuracy", "macro_f1")


def score(clips: list[Clip], frontend: Frontend, hop_frames: int, infer: Infer, labels: tuple[str, ...],
          what: str) -> list[FileResult]:
    """Every clip's whole-file result, as edge.predict scores a file."""
    rate = frontend.params.sample_rate
    return [
        predict_audio(load_audio(c.path, rate), frontend, hop_frames, infer, labels, str(c.path))
        for c in progress(clips, f"scoring {what}")
    ]


def metrics(y_true: list[str], y_pred: list[str], labels: tuple[str, ...]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    present = [label for label in labels if label in set(y_true)]
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "clips": len(y_true),
        "accuracy": float(np.mean(np.array(y_true) == np.array(y_pred))),
        "unweighted_accuracy": float(np.mean(recalls)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_recall": {label: float(r) for label, r in zip(present, recalls)},
        "confusion": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }


def groups(clips: list[Clip]) -> dict[str, list[int]]:
    """Indices of all clips, and of speech and song clips where the corpus says which is which."""
    out = {"all": list(range(len(clips)))}
    for channel in ("speech", "song"):
        idx = [i for i, c in enumerate(clips) if c.channel == channel]
        if idx:
            out[channel] = idx
    return out


def evaluate(clips: list[Clip], results: list[FileResult], labels: tuple[str, ...]) -> dict[str, dict]:
    """Metrics per group, plus the speakers scored."""
    out = {}
    for name, idx in groups(clips).items():
        out[name] = metrics([clips[i].label for i in idx], [results[i].label for i in idx], labels)
    out["all"]["actors"] = sorted({c.speaker for c in clips})
    return out


def write_predictions(path: Path, scored: dict[str, tuple[list[Clip], list[FileResult]]], labels: tuple[str, ...]) -> None:
    """One row per scored clip: part, clip, truth, prediction, confidence, windows and every probability."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["part", "path", "speaker", "vocal_channel", "label", "predicted", "confidence", "windows", *labels])
        for part, (clips, results) in scored.items():
            for c, r in zip(clips, results):
                w.writerow([part, str(c.path), c.speaker, c.channel, c.label, r.label, f"{r.confidence:.4f}", r.windows,
                            *(f"{r.probabilities[label]:.4f}" for label in labels)])
