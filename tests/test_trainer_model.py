"""Trainer models and loss (TensorFlow): focal loss by hand, the seed architecture's size and shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the trainer's models need the train extra (TensorFlow)")
pytest.importorskip("tf_keras", reason="the trainer's models need the train extra (tf-keras)")
pytestmark = pytest.mark.tensorflow

from edge.features import FeatureParams
from trainer.losses import FocalLoss
from trainer.model import ARCHS, INPUT_NORM, build_model, load_keras_model

P = FeatureParams()


def test_focal_loss_matches_a_hand_computation():
    y_true = np.array([1, 0, 2])
    y_pred = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25], [0.05, 0.05, 0.9]], np.float32)
    # -(1 - p_t)^2 * ln(p_t) for p_t = 0.7, 0.5, 0.9: 0.09 * 0.356675 = 0.0321007, 0.25 * 0.693147 = 0.1732868,
    # 0.01 * 0.105361 = 0.0010536; their mean over the batch:
    by_hand = (0.0321007 + 0.1732868 + 0.0010536) / 3
    assert float(FocalLoss(gamma=2.0)(y_true, y_pred)) == pytest.approx(by_hand, abs=2e-7)
    assert float(FocalLoss(gamma=2.0)(y_true.reshape(-1, 1), y_pred)) == pytest.approx(by_hand, abs=2e-7)
    # gamma 0 is cross-entropy
    ce = -(math.log(0.7) + math.log(0.5) + math.log(0.9)) / 3
    assert float(FocalLoss(gamma=0.0)(y_true, y_pred)) == pytest.approx(ce, rel=1e-5)
    # a certain, right answer costs nothing; a certain, wrong one stays finite
    assert float(FocalLoss()(np.array([0]), np.array([[1.0, 0.0]], np.float32))) < 1e-6
    assert np.isfinite(float(FocalLoss()(np.array([1]), np.array([[1.0, 0.0]], np.float32))))


def test_seed_architecture_size_shapes_and_layers():
    model = build_model("seed", 8, P)
    assert model.count_params() == 1_348_938  # the upstream's ~1.35 M (+257 normalisation statistics)
    assert model.input_shape == (None, P.n_frames, P.n_mels) and model.output_shape == (None, 8)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:2] == ["InputLayer", "Normalization"] and model.layers[1].name == INPUT_NORM
    assert kinds.count("Conv1D") == 3 and kinds.count("LayerNormalization") == 3 and kinds.count("Dropout") == 3
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv1D"] == [128, 256, 512]
    assert "Bidirectional" in kinds and "SeqSelfAttention" in kinds and "GlobalAveragePooling1D" in kinds
    assert [layer.units for layer in model.layers if type(layer).__name__ == "Dense"] == [256, 128, 8]
    attention = next(layer for layer in model.layers if type(layer).__name__ == "SeqSelfAttention")
    assert attention.attention_activation.__name__ == "sigmoid"
    one = build_model("seed", 8, P, batch_size=1)
    assert one.input_shape == (1, P.n_frames, P.n_mels) and one.count_params() == model.count_params()


def test_saved_model_reloads_with_custom_objects_and_batch1_clone_matches(tmp_path):
    model = build_model("seed", 8, P)
    x = np.random.default_rng(0).uniform(-80, 30, (3, P.n_frames, P.n_mels)).astype(np.float32)
    model.get_layer(INPUT_NORM).adapt(x)
    model.compile(optimizer="adam", loss=FocalLoss(2.0))
    model.save(tmp_path / "m.keras")
    again = load_keras_model(tmp_path / "m.keras")
    assert isinstance(again.loss, FocalLoss) and again.loss.gamma == 2.0
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(again(x, training=False).numpy(), expected, atol=1e-6)
    clone = build_model("seed", 8, P, batch_size=1)
    clone.set_weights(again.get_weights())  # the normalisation statistics travel as weights
    np.testing.assert_allclose(np.concatenate([clone(x[i : i + 1]).numpy() for i in range(3)]), expected, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_gives_probabilities_and_a_matching_batch1_clone(arch):
    model = build_model(arch, 5, P)
    x = np.random.default_rng(1).uniform(-80, 30, (2, P.n_frames, P.n_mels)).astype(np.float32)
    probs = model(x, training=False).numpy()
    assert probs.shape == (2, 5) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    one = build_model(arch, 5, P, batch_size=1)
    one.set_weights(model.get_weights())
    np.testing.assert_allclose(np.concatenate([one(x[i : i + 1], training=False).numpy() for i in range(2)]), probs, atol=1e-5)


def test_best_epoch_follows_the_monitored_quantity_and_keeps_the_first_of_equals():
    from trainer.train import best_epoch

    history = [{"epoch": 1, "val_loss": 1.0, "val_accuracy": 0.5}, {"epoch": 2, "val_loss": 0.8, "val_accuracy": 0.5},
               {"epoch": 3, "val_loss": 0.9, "val_accuracy": 0.7}, {"epoch": 4, "val_loss": 0.8, "val_accuracy": 0.7}]
    assert best_epoch(history, "val_loss") == 2 and best_epoch(history, "val_accuracy") == 3
