"""Speaker-adversarial training: learn emotion features that do not tell the training actors apart.

The model is scored on actors it never heard, and with 14-16 training actors a network can lean on
who is speaking. Here a speaker classifier is trained on the pooled features that feed the emotion
layer, behind a gradient reversal layer (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by
Backpropagation"): the classifier learns to name the actor, and the features below it are pushed,
with weight `weight`, to make that harder. Only training builds the second output; the model a run
keeps (`emotion_model`) is the emotion path alone, the same graph as without the adversary, so
evaluation, conversion and the device never see it.
"""

from __future__ import annotations

import tensorflow as tf  # (trainer/__init__.py has set TF_USE_LEGACY_KERAS)
import tf_keras as keras

L = keras.layers
SPEAKER = "speaker"  # name of the adversary's output layer
HIDDEN = 128  # units of the adversary's hidden layer


@keras.saving.register_keras_serializable(package="moodmic")
class GradientReversal(L.Layer):
    """The identity forward; backward, the gradient times -weight."""

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, x):
        @tf.custom_gradient
        def reverse(y):
            return tf.identity(y), lambda dy: -self.weight * dy

        return reverse(x)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


def with_speaker_adversary(model: keras.Model, n_speakers: int, weight: float) -> keras.Model:
    """`model` with a second output: speaker logits from the input of its last Dense layer (the pooled
    features), through GradientReversal(weight). The layers are shared, so training this trains `model`."""
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)][-1]
    x = GradientReversal(weight, name="gradient_reversal")(dense.input)
    x = L.Dense(HIDDEN, activation="relu", name="speaker_hidden")(x)
    speaker = L.Dense(n_speakers, name=SPEAKER)(x)
    return keras.Model(model.inputs, [model.outputs[0], speaker], name=model.name)


def has_speaker_output(model: keras.Model) -> bool:
    """Whether `model` is a training model built by with_speaker_adversary (outputs: emotion, speaker)."""
    return model.output_names[-1] == SPEAKER


def emotion_model(model: keras.Model) -> keras.Model:
    """The emotion path of a model trained with the adversary (any other model as it is)."""
    if not has_speaker_output(model):
        return model
    return keras.Model(model.inputs, model.outputs[0], name=model.name)
