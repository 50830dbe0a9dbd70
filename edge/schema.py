"""The project's result schema: field names used by `predict`, the daemon's MQTT messages and the page.

Defined once here; everything that emits a result builds it from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROB_DECIMALS = 4  # probabilities and confidences in JSON
TIME_DECIMALS = 3  # seconds
DB_DECIMALS = 1  # dBFS


def named_probabilities(labels: tuple[str, ...], values) -> dict[str, float]:
    return {label: round(float(v), PROB_DECIMALS) for label, v in zip(labels, values)}


@dataclass(frozen=True)
class WindowResult:
    """The model's answer for one window of audio."""

    start_s: float  # window start, seconds from the start of the audio
    end_s: float
    label: str
    confidence: float  # probability of `label`
    probabilities: dict[str, float]  # every label, in the model's output order
    rms_dbfs: float  # loudness of the window

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, TIME_DECIMALS),
            "end_s": round(self.end_s, TIME_DECIMALS),
            "label": self.label,
            "confidence": round(self.confidence, PROB_DECIMALS),
            "probabilities": self.probabilities,
            "rms_dbfs": round(self.rms_dbfs, DB_DECIMALS),
        }


@dataclass(frozen=True)
class FileResult:
    """Whole-file prediction: the mean of the window probabilities (edge.predict)."""

    path: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    windows: int  # how many windows were averaged
    per_window: tuple[WindowResult, ...] = ()
    # Is there anything to classify? The model gives near-silence or noise an emotion too ("sad 0.3"):
    speech_windows: int = 0  # how many of the windows the daemon's gate (gate.* settings) would pass
    max_rms_dbfs: float = float("nan")  # loudness of the loudest window: the file's speech level
    # `label` is always the top emotion (every accuracy figure scores it); `uncertain` says whether its
    # confidence is below the bundle's abstention threshold, where the daemon would say UNCERTAIN.
    uncertain: bool = False

    def to_dict(self, with_windows: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "confidence": round(self.confidence, PROB_DECIMALS),
            "probabilities": self.probabilities,
            "windows": self.windows,
            "speech_windows": self.speech_windows,
            "max_rms_dbfs": round(self.max_rms_dbfs, DB_DECIMALS),
            "uncertain": self.uncertain,
        }
        if with_windows:
            out["per_window"] = [w.to_dict() for w in self.per_window]
        return out


def labelled(labels: tuple[str, ...], probabilities) -> tuple[str, float, dict[str, float]]:
    """(label, confidence, {label: p}) for one probability vector."""
    best = max(range(len(labels)), key=lambda i: probabilities[i])
    return labels[best], float(probabilities[best]), named_probabilities(labels, probabilities)


SILENCE = "silence"  # the daemon's state when windows are gated: not a model label, probabilities null
# The daemon's state when the smoothed top probability is below the bundle's abstention threshold:
# not a model label; confidence is that top probability, probabilities are the smoothed ones.
UNCERTAIN = "uncertain"
STATES_BEYOND_LABELS = (SILENCE, UNCERTAIN)  # what a subscriber may see besides the model's labels


def utc_iso(timestamp: float) -> str:
    """Seconds since the epoch -> ISO 8601 UTC with milliseconds, e.g. 2026-11-26T15:19:44.120Z."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StateMessage:
    """The smoothed state the daemon publishes (MQTT `state`, retained; stdout with --mqtt off)."""

    label: str  # a model label, SILENCE or UNCERTAIN
    confidence: float | None  # smoothed probability of `label` (UNCERTAIN: of the top label); None for SILENCE
    probabilities: dict[str, float] | None  # smoothed, every label; None for SILENCE
    seq: int  # numbers published state messages, from 1 at every start
    boot_id: str  # random per process start: seq restarts with it
    window_start: str  # ISO 8601 UTC of the newest window's start
    window_end: str
    rms_dbfs: float  # loudness of the newest window
    model_sha: str  # sha256 of the model.tflite that produced it

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": None if self.confidence is None else round(self.confidence, PROB_DECIMALS),
            "probabilities": self.probabilities,
            "seq": self.seq,
            "boot_id": self.boot_id,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "rms_dbfs": round(self.rms_dbfs, DB_DECIMALS),
            "model_sha": self.model_sha,
        }

    def event(self, previous: str | None) -> dict[str, Any]:
        """The `event` payload for a change to this state (Home Assistant event entity: event_type)."""
        return {"event_type": self.label, "previous": previous, "confidence": self.to_dict()["confidence"],
                "seq": self.seq, "boot_id": self.boot_id, "window_end": self.window_end}
