"""The focal loss, written once (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    loss = -(1 - p_t) ** gamma * log(p_t),  p_t = the predicted probability of the true class,

averaged over the batch. gamma = 2 (the seed's) down-weights windows the model already gets
right. Targets are class indices; predictions are probabilities (the models end in softmax), or
logits with `from_logits=True` (softmax applied here). `label_smoothing` e replaces log(p_t) by
(1 - e) log(p_t) + e * mean_c log(p_c) (the smoothed target's cross-entropy), still weighted by
(1 - p_t) ** gamma; gamma = 0 and e = 0 is plain cross-entropy. (No run setting uses it since label
smoothing left the trainer, research/VARIANTS.md; saved models' loss configs still carry it.)

Targets may also be (N, K) class weights t, e.g. a teacher's probabilities blended with the one-hot
label (trainer.teacher): the loss is then sum_c t_c * (the loss above with class c as the true one),
which for a one-hot t is the same.
"""

from __future__ import annotations

import tensorflow as tf  # trainer/__init__.py has set TF_USE_LEGACY_KERAS: keras is tf-keras
import tf_keras as keras

EPSILON = 1e-7  # keeps log(p) finite


@keras.saving.register_keras_serializable(package="moodmic")
class FocalLoss(keras.losses.Loss):
    def __init__(self, gamma: float = 2.0, name: str = "focal_loss", from_logits: bool = False,
                 label_smoothing: float = 0.0, **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = gamma
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if self.from_logits:
            log_p = tf.nn.log_softmax(y_pred, axis=-1)
        else:
            log_p = tf.math.log(tf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON))
        y_true = tf.convert_to_tensor(y_true)
        if y_true.shape.rank == 2 and y_true.shape[-1] != 1:  # (N, K) weights; (N, 1) is indices too
            return tf.reduce_sum(tf.cast(y_true, log_p.dtype) * self._per_class(log_p), axis=-1)
        index = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return tf.gather(self._per_class(log_p), index, axis=-1, batch_dims=1)

    def _per_class(self, log_p):
        """(N, K): the loss of each window if class k were its true class."""
        p = tf.clip_by_value(tf.exp(log_p), EPSILON, 1.0 - EPSILON)
        log_p_true = tf.math.log(p)  # clipped like the probability path
        if self.label_smoothing:
            uniform = tf.reduce_mean(log_p, axis=-1, keepdims=True)
            log_p_true = (1.0 - self.label_smoothing) * log_p_true + self.label_smoothing * uniform
        return -tf.pow(1.0 - p, self.gamma) * log_p_true

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}
