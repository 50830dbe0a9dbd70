"""Is the converted model the Keras model? Measured on the validation side, gated before shipping.

Both models score the same validation clips through edge.predict.predict_audio (the one
whole-file prediction), the TFLite one through the interpreter wrapper the daemon uses (state
reset before every invoke). Figures: window-level argmax agreement and largest probability
difference; clip-level agreement, accuracy and unweighted accuracy (mean per-class recall) of
both; file size and median milliseconds per invoke (1 thread, this machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edge.errors import ConversionError
from edge.features import Frontend, file_windows, stack
from edge.interpreter import TFLiteModel
from edge.predict import predict_audio

MIN_AGREEMENT = 0.95  # window argmax agreement a shipped bundle needs
MAX_UA_DROP = 0.01  # unweighted accuracy the conversion may lose, absolute


@dataclass(frozen=True)
class Parity:
    mode: str
    clips: int
    windows: int
    agreement: float  # windows whose argmax is the same in both models
    max_prob_diff: float  # largest |p_keras - p_tflite| over windows and classes
    clip_agreement: float
    keras_accuracy: float
    keras_ua: float
    tflite_accuracy: float
    tflite_ua: float
    size_bytes: int
    ms_per_invoke: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def unweighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (balanced accuracy)."""
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def _recording(infer: Callable[[np.ndarray], np.ndarray], store: list) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        out = np.asarray(infer(x), np.float64)
        store.append(out)
        return out

    return run


def ms_per_invoke(model: TFLiteModel, windows: np.ndarray, repeats: int = 30) -> float:
    for x in windows[:3]:
        model.invoke(x)  # warm-up: first invokes allocate and pack weights
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        model.invoke(windows[i % len(windows)])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def measure(mode: str, tflite: bytes, keras_infer: Callable[[np.ndarray], np.ndarray], tflite_infer,
            clips: list[tuple[np.ndarray, int]], frontend: Frontend, hop_frames: int,
            labels: tuple[str, ...]) -> Parity:
    """`clips`: (mono audio at the model rate, true label index) of the validation side."""
    k_windows: list[np.ndarray] = []
    t_windows: list[np.ndarray] = []
    k_pred, t_pred, truth = [], [], []
    for audio, label in clips:
        k = predict_audio(audio, frontend, hop_frames, _recording(keras_infer, k_windows), labels)
        t = predict_audio(audio, frontend, hop_frames, _recording(tflite_infer, t_windows), labels)
        k_pred.append(labels.index(k.label))
        t_pred.append(labels.index(t.label))
        truth.append(label)
    kw, tw = np.concatenate(k_windows), np.concatenate(t_windows)
    truth_a, k_a, t_a = np.array(truth), np.array(k_pred), np.array(t_pred)
    timing_windows = stack(file_windows(frontend, clips[0][0], hop_frames))
    return Parity(
        mode=mode,
        clips=len(clips),
        windows=len(kw),
        agreement=float(np.mean(kw.argmax(1) == tw.argmax(1))),
        max_prob_diff=float(np.max(np.abs(kw - tw))),
        clip_agreement=float(np.mean(k_a == t_a)),
        keras_accuracy=float(np.mean(k_a == truth_a)),
        keras_ua=unweighted_accuracy(truth_a, k_a),
        tflite_accuracy=float(np.mean(t_a == truth_a)),
        tflite_ua=unweighted_accuracy(truth_a, t_a),
        size_bytes=len(tflite),
        ms_per_invoke=ms_per_invoke(TFLiteModel(tflite, threads=1), timing_windows),
    )


def check(p: Parity, min_agreement: float = MIN_AGREEMENT, max_ua_drop: float = MAX_UA_DROP) -> None:
    """Refuse a conversion that does not behave like the model it came from."""
    problems = []
    if p.agreement < min_agreement:
        problems.append(f"argmax agreement {p.agreement:.3f} < {min_agreement}")
    if p.keras_ua - p.tflite_ua > max_ua_drop:
        problems.append(f"unweighted accuracy {p.keras_ua:.3f} -> {p.tflite_ua:.3f} drops more than {max_ua_drop}")
    if problems:
        raise ConversionError(
            f"{p.mode} conversion fails the parity gate ({'; '.join(problems)}); try another --mode or a "
            "larger --rep-size"
        )


def table(rows: list[Parity]) -> str:
    head = "| mode | size KB | ms/invoke | agreement | max dp | clip agr. | UA keras | UA tflite | acc keras | acc tflite |"
    lines = [head, "|" + "---|" * 10]
    for p in rows:
        lines.append(
            f"| {p.mode} | {p.size_bytes / 1024:.0f} | {p.ms_per_invoke:.2f} | {p.agreement:.3f} | {p.max_prob_diff:.3f} | "
            f"{p.clip_agreement:.3f} | {p.keras_ua:.3f} | {p.tflite_ua:.3f} | {p.keras_accuracy:.3f} | {p.tflite_accuracy:.3f} |"
        )
    return "\n".join(lines)
