"""An emotion model ready to serve: a verified bundle, its frontend and its interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import Bundle, load_bundle
from .errors import BundleError
from .features import Frontend
from .interpreter import TFLiteModel


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class EmotionModel:
    def __init__(self, bundle: Bundle, threads: int = 1):
        self.bundle = bundle
        self.labels = bundle.labels
        self.frontend = Frontend(bundle.features)
        self.tflite = TFLiteModel(bundle.tflite_path, threads=threads)
        for what, declared, actual in (("input", bundle.input, self.tflite.input_spec),
                                       ("output", bundle.output, self.tflite.output_spec)):
            if declared != actual:
                raise BundleError(
                    f"model bundle {bundle.path}: model.json describes the {what} as {declared} but "
                    f"model.tflite has {actual}; re-run moodmic-convert"
                )

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1) -> EmotionModel:
        return cls(load_bundle(path), threads=threads)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(N, n_frames, n_mels) log-mel windows -> (N, n_labels) class probabilities."""
        out = self.tflite.run(windows)
        if self.bundle.output_kind == "logits":
            return softmax(out, self.bundle.temperature)
        return out
