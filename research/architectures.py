"""Architectures cross-validated for the default model and not kept (research/VARIANTS.md).

They left the product trainer (trainer.model.ARCHS keeps the shipped `cnn`, the upstream `seed` and
the test architectures); `register()` adds them back to trainer.model.ARCHS for this process, which
is what research/train.py does before it runs moodmic-train. Each builds exactly the graph it built
when its variant ran, so a variant reruns as it was recorded and a run trained with one reloads.

- `cnn_wide`: `cnn` with 1.5x the channels in every layer (~0.43 M parameters, about twice the size
  and compute): whether one model gains from width what five averaged gain (variant `wide`).
- `cnn_stats`: `cnn` with statistics pooling (each channel's mean and standard deviation over time)
  instead of global average pooling (variant `stats-pooling`).
- `cnn2d`: 2-D convolutions over (time, mel) (~95 k parameters, ~45 M multiply-adds per window):
  filters shared across frequency; a pilot on two folds, stopped.
"""

from __future__ import annotations

import tensorflow as tf  # (importing trainer sets TF_USE_LEGACY_KERAS first)

from trainer import model as product

keras, L = product.keras, product.L


@keras.saving.register_keras_serializable(package="moodmic")
class StatsPooling(L.Layer):
    """(batch, time, channels) -> (batch, 2 * channels): each channel's mean and standard deviation over time
    (statistics pooling, as in x-vectors: how much a feature moves, not only its average level)."""

    def call(self, x):
        mean = tf.reduce_mean(x, axis=1)
        var = tf.reduce_mean(tf.square(x - mean[:, None, :]), axis=1)
        return tf.concat([mean, tf.sqrt(var + 1e-5)], axis=-1)


def _cnn_variant(x, n_labels: int, activation: str | None = "softmax", stats: bool = False, width: float = 1.0):
    """trainer.model's `cnn` with its channels scaled by `width` and, with `stats`, statistics pooling."""
    x = product.conv_blocks(x, product.CNN_LAYERS, width=width)
    x = StatsPooling()(x) if stats else L.GlobalAveragePooling1D()(x)
    x = L.Dropout(0.3)(x)
    return L.Dense(n_labels, activation=activation)(x)


def cnn_stats(x, n_labels: int, activation: str | None = "softmax"):
    return _cnn_variant(x, n_labels, activation, stats=True)


def cnn_wide(x, n_labels: int, activation: str | None = "softmax"):
    return _cnn_variant(x, n_labels, activation, width=1.5)


def cnn2d(x, n_labels: int, activation: str | None = "softmax"):
    """2-D convolutions over (time, mel): filters shared across frequency, so a voice's pitch or
    formants a few bands higher meet the same weights (the 1-D `cnn` learns each band apart)."""
    x = L.Reshape((x.shape[1], x.shape[2], 1))(x)
    x = L.AveragePooling2D((1, 2))(x)  # 64 bands: half the compute, ~1/3 octave still resolved
    x = product.conv_blocks(x, [(filters, 3) for filters in (24, 48, 64, 96)], L.Conv2D, L.MaxPooling2D)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.3)(x)
    return L.Dense(n_labels, activation=activation)(x)


ARCHS = {"cnn_stats": cnn_stats, "cnn_wide": cnn_wide, "cnn2d": cnn2d}


def register() -> None:
    """Add these architectures (and StatsPooling, to reload their runs) to the trainer, in this process."""
    product.ARCHS.update(ARCHS)
    product.CUSTOM_OBJECTS["StatsPooling"] = StatsPooling
