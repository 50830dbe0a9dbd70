"""Build the tiny real model bundles the tests use (needs the `train` extra: TensorFlow).

    python tests/make_tiny_bundle.py [OUT_DIR]     # default: tests/fixtures

Writes `tiny_int8/` (full-integer int8 input/output) and `tiny_float/` (float32, logits output):
a Conv1D + fused LSTM + Dense model on the real input shape (130, 128), small enough to commit
(< 50 KB each). The LSTM makes the interpreter wrapper's `reset_all_variables()` matter.
Weights are seeded; the tests assert behaviour, not these exact numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.bundle import write_bundle
from edge.features import FeatureParams

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def build_keras(params: FeatureParams, logits: bool):
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(7)
    inp = keras.Input(shape=(params.n_frames, params.n_mels), batch_size=1)
    x = keras.layers.Rescaling(1 / 40.0, offset=1.0)(inp)  # dB (-80..+40) to about -1..2
    x = keras.layers.Conv1D(8, 5, strides=4, activation="relu")(x)
    x = keras.layers.LSTM(8, return_sequences=False)(x)
    x = keras.layers.Dense(len(LABELS), activation=None if logits else "softmax")(x)
    return keras.Model(inp, x)


def representative(params: FeatureParams, n: int = 64):
    rng = np.random.default_rng(0)
    for _ in range(n):
        level = rng.uniform(-80, 30)
        x = np.clip(rng.normal(level, 15, (1, params.n_frames, params.n_mels)), params.floor_db, 40)
        yield [x.astype(np.float32)]


def convert(model, params: FeatureParams, int8: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: representative(params)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def main(out: Path) -> None:
    params = FeatureParams()
    for name, int8, logits in (("tiny_int8", True, False), ("tiny_float", False, True)):
        tflite = convert(build_keras(params, logits), params, int8)
        write_bundle(
            out / name, tflite, name=name, labels=LABELS, features=params, eval_hop_s=1.0,
            output_kind="logits" if logits else "probabilities", license="test fixture, untrained",
            conversion={"mode": "int8" if int8 else "float32"}, training={"note": "random weights"},
        )
        print(f"{out / name}: {len(tflite)} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "fixtures")
