"""Whole-file prediction, defined once.

A file's windows are taken at the bundle's evaluation hop exactly as a device would take them
(edge.features.file_windows), with no gate; the file's probabilities are the mean of the windows'.
`moodmic predict`, the trainer's evaluation, the web page and every reported number use
`predict_audio`, so no reported figure depends on a device's config.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .audio import load_audio
from .features import Frontend, file_windows, stack
from .model import EmotionModel
from .schema import FileResult, WindowResult, labelled

Infer = Callable[[np.ndarray], np.ndarray]  # (N, n_frames, n_mels) -> (N, n_labels) probabilities


def predict_audio(
    audio: np.ndarray, frontend: Frontend, hop_frames: int, infer: Infer, labels: tuple[str, ...], path: str = ""
) -> FileResult:
    """Mono float32 audio at the frontend's rate -> the file's result and every window's."""
    windows = file_windows(frontend, audio, hop_frames)
    probs = np.asarray(infer(stack(windows)), dtype=np.float64)
    per_window = []
    for w, p in zip(windows, probs):
        label, confidence, named = labelled(labels, p)
        per_window.append(WindowResult(w.start_s, w.end_s, label, confidence, named, w.rms_dbfs))
    label, confidence, named = labelled(labels, probs.mean(axis=0))
    return FileResult(path, label, confidence, named, len(windows), tuple(per_window))


def predict_file(model: EmotionModel, path: str | Path, max_seconds: float | None = None) -> FileResult:
    audio = load_audio(path, model.bundle.features.sample_rate, max_seconds)
    return predict_audio(audio, model.frontend, model.bundle.eval_hop_frames, model.probabilities, model.labels, str(path))
