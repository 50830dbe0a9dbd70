"""Keras -> .tflite in a child process, one conversion mode at a time.

The TFLite converter fails by segfault rather than exception (seen with Keras 3 and the fused
LSTM), so each conversion runs in its own `python -m converter.build` process; a crash becomes a
ConversionError naming the mode and the child's last words. The child converts a batch-size-1
clone of the model: the BiLSTM then becomes fused UNIDIRECTIONAL_SEQUENCE_LSTM ops, all builtins.

Modes:
    float32  no quantization (reference; the largest file)
    float16  float16 weights, float32 compute
    dynamic  dynamic-range: int8 weights, float activations (inputs and outputs stay float32)
    int8     full integer: int8 weights and activations, int8 input and output, calibrated on
             the representative windows
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge.errors import ConversionError

MODES = ("int8", "dynamic", "float16", "float32")
TIMEOUT_S = 1800


def convert(run_dir: Path, mode: str, representative: np.ndarray | None = None) -> bytes:
    """Convert the trained model of a trainer run directory in a child process; returns the .tflite bytes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "int8" and (representative is None or not len(representative)):
        raise ValueError("int8 needs representative windows")
    with tempfile.TemporaryDirectory(prefix="moodmic-convert-") as tmp:
        tmp_path = Path(tmp)
        spec = {"run_dir": str(run_dir), "mode": mode, "out": str(tmp_path / "model.tflite"), "representative": None}
        if representative is not None:
            np.save(tmp_path / "rep.npy", representative.astype(np.float32))
            spec["representative"] = str(tmp_path / "rep.npy")
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            proc = subprocess.run([sys.executable, "-m", "converter.build", str(tmp_path / "spec.json")],
                                  capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"{mode} conversion did not finish in {TIMEOUT_S} s") from exc
        if proc.returncode != 0 or not Path(spec["out"]).is_file():
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ConversionError(f"{mode} conversion crashed ({how}): {last}")
        return Path(spec["out"]).read_bytes()


def tflite_converter(model, mode: str, representative: np.ndarray | None = None):
    """The TFLite converter of a batch-1 Keras model, set up for one of MODES (the one place it is set up)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("dynamic", "int8", "float16"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "dynamic":
        # Per-tensor weights for Dense layers: otherwise the deprecated tflite-runtime (the fallback
        # where ai-edge-litert has no wheel) cannot load a TF 2.21 dynamic-range model.
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        conv.representative_dataset = lambda: ([x[None]] for x in representative)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    from trainer.run import rebuild_model

    model = rebuild_model(spec["run_dir"], batch_size=1)
    rep = np.load(spec["representative"]) if spec["representative"] else None
    Path(spec["out"]).write_bytes(tflite_converter(model, spec["mode"], rep).convert())


if __name__ == "__main__":
    _child(sys.argv[1])
