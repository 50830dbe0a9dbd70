"""The focal loss, written once (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    loss = -(1 - p_t) ** gamma * log(p_t),  p_t = the predicted probability of the true class,

averaged over the batch. gamma = 2 (the seed's) down-weights windows the model already gets
right. Targets are class indices; predictions are probabilities (the models end in softmax).
"""

from __future__ import annotations

import tensorflow as tf  # trainer/__init__.py has set TF_USE_LEGACY_KERAS: keras is tf-keras
import tf_keras as keras

EPSILON = 1e-7  # keeps log(p) finite


@keras.saving.register_keras_serializable(package="moodmic")
class FocalLoss(keras.losses.Loss):
    def __init__(self, gamma: float = 2.0, name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = gamma

    def call(self, y_true, y_pred):
        index = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        p_true = tf.gather(y_pred, index, axis=-1, batch_dims=1)
        p_true = tf.clip_by_value(p_true, EPSILON, 1.0 - EPSILON)
        return -tf.pow(1.0 - p_true, self.gamma) * tf.math.log(p_true)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
