"""Whole-file prediction, defined once.

A file's windows are taken at the bundle's evaluation hop exactly as a device would take them
(edge.features.file_windows), with no gate; the file's probabilities are the mean of the windows'.
`moodmic predict`, the trainer's evaluation, the web page and every reported number use
`predict_audio`, so no reported figure depends on a device's config.yaml.

The result also says whether there was anything to classify: `speech_windows`, how many windows the
daemon's gate would pass (gate.* settings: the defaults, or the config's), and `max_rms_dbfs`, the
loudest window's level. The gate only counts; it never changes the probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .audio import load_audio
from .config import GateSettings
from .features import Frontend, file_windows, stack
from .gate import Gate
from .model import EmotionModel
from .schema import FileResult, WindowResult, labelled

Infer = Callable[[np.ndarray], np.ndarray]  # (N, n_frames, n_mels) -> (N, n_labels) probabilities


def predict_audio(
    audio: np.ndarray, frontend: Frontend, hop_frames: int, infer: Infer, labels: tuple[str, ...], path: str = "",
    gate: GateSettings | None = None, abstain_below: float = 0.0,
) -> FileResult:
    """Mono float32 audio at the frontend's rate -> the file's result and every window's.
    `gate`: the settings whose gate counts `speech_windows` (default: the built-in defaults);
    `abstain_below`: the bundle's abstention threshold, which sets `uncertain` (never the label)."""
    windows = file_windows(frontend, audio, hop_frames)
    check = Gate(gate or GateSettings(), frontend.params).check
    probs = np.asarray(infer(stack(windows)), dtype=np.float64)
    per_window = []
    for w, p in zip(windows, probs):
        label, confidence, named = labelled(labels, p)
        per_window.append(WindowResult(w.start_s, w.end_s, label, confidence, named, w.rms_dbfs))
    label, confidence, named = labelled(labels, probs.mean(axis=0))
    return FileResult(path, label, confidence, named, len(windows), tuple(per_window),
                      speech_windows=sum(check(w).speech for w in windows),
                      max_rms_dbfs=max(w.rms_dbfs for w in windows), uncertain=confidence < abstain_below)


def predict_file(model: EmotionModel, path: str | Path, max_seconds: float | None = None,
                 gate: GateSettings | None = None) -> FileResult:
    audio = load_audio(path, model.bundle.features.sample_rate, max_seconds)
    return predict_audio(audio, model.frontend, model.bundle.eval_hop_frames, model.probabilities, model.labels, str(path),
                         gate, model.bundle.abstain_below)
