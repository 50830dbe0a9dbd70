"""From window probabilities to a steady published state.

Window probabilities are smoothed (EMA or moving mean over N windows). The state changes to a new
label only when its smoothed probability reaches `min_confidence` and beats the current label's by
`hysteresis`, so one odd window does not flip the state. After `silence_after` gated windows in a
row the state is SILENCE and the smoothing starts afresh (the next speaker is a new utterance).
When the smoothed top probability is below `abstain_below` (the model bundle's abstention threshold,
chosen on validation actors in rooms and noise) the state is UNCERTAIN instead of the last emotion
held: an automation never acts on a guess the model itself rates below its measured reliability.
That threshold was chosen under one smoothing span, so a bundle may name it (output.smoothing_windows)
and `smoothing.windows: 0` takes it (`span`).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .config import DEFAULT_SMOOTHING_WINDOWS, GateSettings, SmoothingSettings
from .schema import SILENCE, UNCERTAIN, named_probabilities


def span(smoothing: SmoothingSettings, bundle_windows: int) -> int:
    """The smoothing span in windows: the config's, else the bundle's, else the default."""
    return smoothing.windows or bundle_windows or DEFAULT_SMOOTHING_WINDOWS


class Smoother:
    def __init__(self, labels: tuple[str, ...], smoothing: SmoothingSettings, gate: GateSettings,
                 abstain_below: float = 0.0, bundle_windows: int = 0):
        self.labels = labels
        self.s = smoothing
        self.windows = span(smoothing, bundle_windows)
        self.abstain_below = abstain_below
        self.silence_after = gate.silence_after
        self._window: deque[np.ndarray] = deque(maxlen=self.windows)
        self._ema: np.ndarray | None = None
        self._gated_run = 0
        self.label: str | None = None
        self.smoothed: np.ndarray | None = None

    def _smooth(self, probs: np.ndarray) -> np.ndarray:
        if self.s.method == "mean":
            self._window.append(probs)
            return np.mean(self._window, axis=0)
        alpha = 2.0 / (self.windows + 1)  # the EMA whose span is N windows
        self._ema = probs if self._ema is None else alpha * probs + (1 - alpha) * self._ema
        return self._ema

    def _reset(self) -> None:
        self._window.clear()
        self._ema = None
        self.smoothed = None

    def inferred(self, probs: np.ndarray) -> bool:
        """A classified window; True if the state changed."""
        self._gated_run = 0
        p = self._smooth(np.asarray(probs, np.float64))
        self.smoothed = p
        best = int(np.argmax(p))
        if p[best] < self.abstain_below:
            changed = self.label != UNCERTAIN
            self.label = UNCERTAIN
            return changed
        if p[best] < self.s.min_confidence:
            return False
        candidate = self.labels[best]
        if self.label in (None, SILENCE, UNCERTAIN):
            self.label = candidate
            return True
        if candidate != self.label and p[best] - p[self.labels.index(self.label)] >= self.s.hysteresis:
            self.label = candidate
            return True
        return False

    def gated(self) -> bool:
        """A window the gate kept from the model; True if the state changed (to SILENCE)."""
        self._gated_run += 1
        if self._gated_run >= self.silence_after and self.label != SILENCE:
            self.label = SILENCE
            self._reset()
            return True
        return False

    @property
    def confidence(self) -> float | None:
        if self.label in (None, SILENCE) or self.smoothed is None:
            return None
        if self.label == UNCERTAIN:
            return float(np.max(self.smoothed))
        return float(self.smoothed[self.labels.index(self.label)])

    def probabilities(self) -> dict[str, float] | None:
        if self.label in (None, SILENCE) or self.smoothed is None:
            return None
        return named_probabilities(self.labels, self.smoothed)
