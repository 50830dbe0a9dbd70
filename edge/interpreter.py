"""The one wrapper around the TFLite interpreter, used by the daemon, predict, the page and the converter.

Runtime preference: ai-edge-litert (maintained, wheels for x86-64 and aarch64), then the deprecated
tflite-runtime, then TensorFlow's `tf.lite` as a lazy last resort (never imported otherwise).

TensorSpec (a tensor's shape, dtype and quantization) lives here, where tensors are read; the bundle
(edge/bundle.py) imports it to record them, so the dependency points one way: bundle -> interpreter.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, ConfigError

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and (for integer tensors) the affine quantization of a model tensor."""

    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: float32, int8, uint8
    scale: float = 0.0  # real = (q - zero_point) * scale; 0 for float tensors
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16")

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(tuple(int(n) for n in data["shape"]), str(data["dtype"]), float(data["scale"]), int(data["zero_point"]))


_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


def _interpreter_class() -> tuple[Any, str]:
    for module_name, dist in _RUNTIMES:
        try:
            return importlib.import_module(module_name).Interpreter, dist
        except ImportError:
            continue
    raise ConfigError("no TFLite runtime is installed; run: pip install ai-edge-litert "
                      "(or '.[edge]' in a moodmic checkout)")


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(tuple(int(n) for n in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values to the tensor's dtype: round, then clip to the integer range."""
    if not spec.quantized:
        return x.astype(spec.dtype, copy=False)
    info = np.iinfo(spec.dtype)
    q = np.rint(x / spec.scale + spec.zero_point)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if not spec.quantized:
        return q.astype(np.float32, copy=False)
    return ((q.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


class TFLiteModel:
    """A single-input, single-output .tflite model run one batch-1 example at a time."""

    def __init__(self, model: bytes | str | Path, threads: int = 1):
        cls, self.runtime = _interpreter_class()
        _LOG.info("TFLite runtime: %s, %d thread(s)", self.runtime, threads)
        content = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
        try:
            self._interp = cls(model_content=content, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"the TFLite model cannot be loaded ({exc}); re-copy or re-convert it") from exc
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; moodmic needs 1 and 1")
        self._in_index, self._out_index = inputs[0]["index"], outputs[0]["index"]
        self.input_spec, self.output_spec = _spec(inputs[0]), _spec(outputs[0])

    def invoke(self, example: np.ndarray) -> np.ndarray:
        """One example (without the batch axis) -> real-valued output (without the batch axis)."""
        self._interp.set_tensor(self._in_index, quantize(example[None], self.input_spec))
        # Fused LSTMs keep their state between invokes: without a reset, every window after the
        # first would be computed from the previous window's state.
        self._interp.reset_all_variables()
        self._interp.invoke()
        return dequantize(self._interp.get_tensor(self._out_index)[0], self.output_spec)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) examples -> (N, outputs) float32."""
        if not len(batch):
            return np.empty((0,) + self.output_spec.shape[1:], np.float32)
        return np.stack([self.invoke(x) for x in batch])
