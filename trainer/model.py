"""Model architectures (`--arch`), built for any batch size.

Every model takes the frontend's output as it is, (batch, n_frames=time, n_mels) in dB, and
standardises it itself: the first layer is a per-mel-band Normalization whose mean and variance are
weights, adapted on training windows. So a bundle's input is exactly what edge.features computes,
and a clone built with `build_model(..., batch_size=1)` + `set_weights` is the same model (the
converter's batch-1 clone).

- `seed`: the upstream project's architecture (~1.35 M parameters): 3x [Conv1D 128 k5 / 256 k3 /
  512 k3 -> LayerNorm -> LeakyReLU -> MaxPool 2 -> Dropout 0.3], Bidirectional LSTM 128,
  SeqSelfAttention (keras-self-attention, sigmoid), GlobalAveragePooling, Dense 256 / 128 / n.
- `cnn`: a small BatchNorm CNN (~0.2 M parameters), the kind that did better than the seed on
  unseen actors (DESIGN.md).
- `tiny`: a ~12 k-parameter CNN for tests and smoke runs.
- `tiny_lstm`: the seed's op mix at toy size, so converter tests meet the seed's fused LSTM graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import tensorflow as tf  # noqa: F401  (trainer/__init__.py has set TF_USE_LEGACY_KERAS)
import tf_keras as keras
from keras_self_attention import SeqSelfAttention

from edge.features import FeatureParams

from .losses import FocalLoss

CUSTOM_OBJECTS = {"SeqSelfAttention": SeqSelfAttention, "FocalLoss": FocalLoss}
INPUT_NORM = "input_norm"  # the Normalization layer adapted on training windows
L = keras.layers


@contextmanager
def _quiet_attention():
    """SeqSelfAttention reuses one unseeded initializer object, harmlessly; Keras warns each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The initializer GlorotNormal is unseeded")
        yield


def _seed(x, n_labels: int):
    for filters, kernel in ((128, 5), (256, 3), (512, 3)):
        x = L.Conv1D(filters, kernel, padding="same")(x)
        x = L.LayerNormalization()(x)
        x = L.LeakyReLU()(x)
        x = L.MaxPooling1D(2)(x)
        x = L.Dropout(0.3)(x)
    x = L.Bidirectional(L.LSTM(128, return_sequences=True))(x)
    with _quiet_attention():
        x = SeqSelfAttention(attention_activation="sigmoid")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(256, activation="relu")(x)
    x = L.Dense(128, activation="relu")(x)
    return L.Dense(n_labels, activation="softmax")(x)


def _cnn(x, n_labels: int):
    for filters, kernel in ((96, 5), (128, 3), (128, 3), (160, 3)):
        x = L.Conv1D(filters, kernel, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.MaxPooling1D(2)(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dropout(0.3)(x)
    return L.Dense(n_labels, activation="softmax")(x)


def _tiny(x, n_labels: int):
    x = L.Conv1D(16, 5, strides=2, activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(32, 3, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return L.Dense(n_labels, activation="softmax")(x)


def _tiny_lstm(x, n_labels: int):
    """The seed's op mix (Conv1D, LayerNorm, BiLSTM, SeqSelfAttention) at ~30 k parameters: converter tests."""
    x = L.Conv1D(16, 5, strides=4, activation="relu")(x)
    x = L.LayerNormalization()(x)
    x = L.Bidirectional(L.LSTM(16, return_sequences=True))(x)
    with _quiet_attention():
        x = SeqSelfAttention(attention_activation="sigmoid", units=8)(x)
    x = L.GlobalAveragePooling1D()(x)
    return L.Dense(n_labels, activation="softmax")(x)


ARCHS: dict[str, Callable] = {"seed": _seed, "cnn": _cnn, "tiny": _tiny, "tiny_lstm": _tiny_lstm}


def build_model(arch: str, n_labels: int, params: FeatureParams, batch_size: int | None = None) -> keras.Model:
    """The architecture `arch` for input (batch_size, n_frames, n_mels) -> (batch_size, n_labels) probabilities."""
    inp = keras.Input(shape=(params.n_frames, params.n_mels), batch_size=batch_size, name="log_mel")
    x = L.Normalization(axis=-1, name=INPUT_NORM)(inp)
    return keras.Model(inp, ARCHS[arch](x, n_labels), name=f"moodmic_{arch}")


def compile_model(model: keras.Model, learning_rate: float, gamma: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=FocalLoss(gamma), metrics=["accuracy"])


def load_keras_model(path, compile: bool = True) -> keras.Model:
    with _quiet_attention():
        return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile)


def batched_infer(model: keras.Model, batch_size: int = 256) -> Callable:
    """An edge.predict `infer`: (N, n_frames, n_mels) windows -> (N, n_labels) probabilities."""

    def infer(x):
        # predict_on_batch runs the compiled graph: ~3x faster than an eager call on a few windows.
        return np.concatenate([model.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    return infer
