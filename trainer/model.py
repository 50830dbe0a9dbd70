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
  unseen actors (DESIGN.md): the shipped model's members.
- `tiny`: a ~12 k-parameter CNN for tests and smoke runs.
- `tiny_lstm`: the seed's op mix at toy size, so converter tests meet the seed's fused LSTM graph.

ModelSettings (run settings `model.*`) add to any architecture:
- `band_mean`: after the input Normalization, subtract each mel band's mean over the window's time
  axis (BandMeanSubtraction: a per-window channel normalisation, so a level or microphone tilt that
  is constant over the window disappears). It converts to the builtin TFLite ops MEAN + SUB.
- `logits`: the last layer has no softmax (named "logits"); the loss applies softmax, and a
  bundle can then carry a temperature (edge.model applies softmax(logits / T)).
- `ensemble`: N copies of the architecture on the same normalised input, their outputs averaged
  inside one graph (one .tflite), trained together.

Architectures that were cross-validated and not kept (`cnn_wide`, `cnn_stats`, `cnn2d`) live in
research/architectures.py, which adds them to ARCHS for research/train.py; per-window variance
normalisation (`band_std`) was tried and left with the other unshipped options (research/README.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import tensorflow as tf  # (trainer/__init__.py has set TF_USE_LEGACY_KERAS)
import tf_keras as keras
from keras_self_attention import SeqSelfAttention

from edge.features import FeatureParams

from .losses import FocalLoss
from .settings import LEGACY_MODEL, ModelSettings

INPUT_NORM = "input_norm"  # the Normalization layer adapted on training windows
LOGITS = "logits"  # name of the output layer of a logits model
L = keras.layers


@keras.saving.register_keras_serializable(package="moodmic")
class BandMeanSubtraction(L.Layer):
    """(batch, time, mel) -> the same minus each mel band's mean over time (per window): MEAN + SUB in TFLite."""

    def call(self, x):
        return x - tf.reduce_mean(x, axis=1, keepdims=True)


CUSTOM_OBJECTS = {"SeqSelfAttention": SeqSelfAttention, "FocalLoss": FocalLoss,
                  "BandMeanSubtraction": BandMeanSubtraction}


@contextmanager
def _quiet_attention():
    """SeqSelfAttention reuses one unseeded initializer object, harmlessly; Keras warns each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The initializer GlorotNormal is unseeded")
        yield


def _seed(x, n_labels: int, activation: str | None = "softmax"):
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
    return L.Dense(n_labels, activation=activation)(x)


CNN_LAYERS = ((96, 5), (128, 3), (128, 3), (160, 3))  # (filters, kernel) of `cnn`'s blocks


def conv_blocks(x, layers, conv=L.Conv1D, pool=L.MaxPooling1D, width: float = 1.0):
    """`cnn`'s blocks, one per (filters, kernel): convolution (no bias) -> BatchNorm -> ReLU -> max-pool by 2;
    `width` scales the channels (research/architectures.py builds its variants from these)."""
    for filters, kernel in layers:
        x = conv(int(filters * width), kernel, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = pool(2)(x)
    return x


def _cnn(x, n_labels: int, activation: str | None = "softmax"):
    x = conv_blocks(x, CNN_LAYERS)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dropout(0.3)(x)
    return L.Dense(n_labels, activation=activation)(x)


def _tiny(x, n_labels: int, activation: str | None = "softmax"):
    x = L.Conv1D(16, 5, strides=2, activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(32, 3, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return L.Dense(n_labels, activation=activation)(x)


def _tiny_lstm(x, n_labels: int, activation: str | None = "softmax"):
    """The seed's op mix (Conv1D, LayerNorm, BiLSTM, SeqSelfAttention) at ~30 k parameters: converter tests."""
    x = L.Conv1D(16, 5, strides=4, activation="relu")(x)
    x = L.LayerNormalization()(x)
    x = L.Bidirectional(L.LSTM(16, return_sequences=True))(x)
    with _quiet_attention():
        x = SeqSelfAttention(attention_activation="sigmoid", units=8)(x)
    x = L.GlobalAveragePooling1D()(x)
    return L.Dense(n_labels, activation=activation)(x)


# name -> builder(x, n_labels, activation): the shipped recipe's `cnn`, the upstream `seed` (the
# baseline the bench and the converter tests use) and the two test architectures.
ARCHS: dict[str, Callable] = {"seed": _seed, "cnn": _cnn, "tiny": _tiny, "tiny_lstm": _tiny_lstm}


def build_model(arch: str, n_labels: int, params: FeatureParams, batch_size: int | None = None,
                settings: ModelSettings = LEGACY_MODEL) -> keras.Model:
    """The architecture `arch` for input (batch_size, n_frames, n_mels) -> (batch_size, n_labels) probabilities or logits."""
    inp = keras.Input(shape=(params.n_frames, params.n_mels), batch_size=batch_size, name="log_mel")
    x = L.Normalization(axis=-1, name=INPUT_NORM)(inp)
    if settings.band_mean:
        x = BandMeanSubtraction(name="band_mean")(x)
    activation = None if settings.logits else "softmax"
    if settings.ensemble > 1:
        out = L.Average(name=LOGITS if settings.logits else "probabilities")(
            [ARCHS[arch](x, n_labels, activation) for _ in range(settings.ensemble)])
    elif settings.logits:
        out = L.Activation("linear", name=LOGITS)(ARCHS[arch](x, n_labels, activation))
    else:
        out = ARCHS[arch](x, n_labels, activation)
    return keras.Model(inp, out, name=f"moodmic_{arch}")


def outputs_logits(model: keras.Model) -> bool:
    return model.output_names[0] == LOGITS


def compile_model(model: keras.Model, learning_rate: float, gamma: float) -> None:
    """Adam and the focal loss."""
    loss = FocalLoss(gamma, from_logits=outputs_logits(model))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def load_keras_model(path, compile: bool = True) -> keras.Model:
    with _quiet_attention():
        return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile)


def raw_outputs(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs (probabilities or logits) for (N, n_frames, n_mels) windows."""
    # predict_on_batch runs the compiled graph: ~3x faster than an eager call on a few windows.
    return np.concatenate([model.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    from edge.model import softmax as edge_softmax  # the one the device applies

    return edge_softmax(np.asarray(z, np.float64), temperature)


def batched_infer(model: keras.Model, batch_size: int = 256, temperature: float = 1.0) -> Callable:
    """An edge.predict `infer`: (N, n_frames, n_mels) windows -> (N, n_labels) probabilities.

    A logits model gets softmax(logits / temperature), as edge.model.EmotionModel applies it."""
    logits = outputs_logits(model)

    def infer(x):
        out = raw_outputs(model, x, batch_size)
        return softmax(out, temperature) if logits else out

    return infer
