"""The losses must equal the reference's definitions; checked against an independent NumPy implementation."""

from __future__ import annotations

import numpy as np

from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.losses import detection_loss, sigmoid_focal_loss, smooth_l1_loss

tf = import_tensorflow()


def _numpy_focal(targets, logits, alpha=0.75, gamma=2.0):
    x = logits.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-x))
    cross_entropy = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    p_t = np.where(targets == 1, p, 1 - p)
    alpha_weight = np.where(targets == 1, alpha, 1 - alpha)
    return (1 - p_t) ** gamma * alpha_weight * cross_entropy


def _numpy_huber(targets, predictions, delta=1.0):
    error = np.abs(predictions.astype(np.float64) - targets)
    return np.where(error <= delta, 0.5 * error**2, delta * (error - 0.5 * delta)).sum(axis=-1)


def _random_batch(seed, batch=2, anchors=50, classes=3, positives=7):
    rng = np.random.default_rng(seed)
    matched = np.zeros((batch, anchors), np.float32)
    cls_targets = np.zeros((batch, anchors, classes + 1), np.float32)
    for b in range(batch):
        rows = rng.choice(anchors, positives, replace=False)
        matched[b, rows] = 1
        cls_targets[b, rows, rng.integers(1, classes + 1, positives)] = 1
    box_targets = (rng.normal(size=(batch, anchors, 4)) * matched[..., None]).astype(np.float32)
    logits = rng.normal(scale=3, size=(batch, anchors, classes + 1)).astype(np.float32)
    encodings = rng.normal(scale=2, size=(batch, anchors, 4)).astype(np.float32)
    return cls_targets, box_targets, matched, logits, encodings


def test_focal_loss_entries_match_numpy():
    cls_targets, _, _, logits, _ = _random_batch(0)
    ours = sigmoid_focal_loss(cls_targets, logits).numpy()
    np.testing.assert_allclose(ours, _numpy_focal(cls_targets, logits), rtol=1e-5, atol=1e-7)


def test_focal_loss_weights_positives_with_alpha():
    # At logit 0 (p = 0.5): CE = ln 2 and (1 - p_t)^2 = 0.25, so positives get 0.75 of it and negatives 0.25.
    ours = sigmoid_focal_loss(np.array([1.0, 0.0]), np.array([0.0, 0.0])).numpy()
    np.testing.assert_allclose(ours, [0.75 * 0.25 * np.log(2), 0.25 * 0.25 * np.log(2)], rtol=1e-6)


def test_smooth_l1_matches_numpy_on_both_sides_of_delta():
    _, box_targets, _, _, encodings = _random_batch(1)
    np.testing.assert_allclose(
        smooth_l1_loss(box_targets, encodings).numpy(),
        _numpy_huber(box_targets, encodings),
        rtol=1e-5,
        atol=1e-6,
    )


def test_detection_loss_normalizes_by_matches_in_whole_batch():
    cls_targets, box_targets, matched, logits, encodings = _random_batch(2)
    losses = {
        k: float(v) for k, v in detection_loss(cls_targets, box_targets, matched, logits, encodings).items()
    }
    num_matches = matched.sum()
    assert num_matches == 14
    expected_cls = _numpy_focal(cls_targets, logits).sum() / num_matches
    expected_loc = (_numpy_huber(box_targets, encodings) * matched).sum() / (num_matches * 4)
    np.testing.assert_allclose(losses["classification"], expected_cls, rtol=1e-5)
    np.testing.assert_allclose(losses["localization"], expected_loc, rtol=1e-5)
    np.testing.assert_allclose(losses["total"], expected_cls + expected_loc, rtol=1e-5)
    assert losses["num_matches"] == 14


def test_unmatched_box_predictions_cost_nothing_and_no_matches_divides_by_one():
    cls_targets, box_targets, matched, logits, encodings = _random_batch(3)
    moved = encodings.copy()
    moved[matched == 0] += 100.0
    before = detection_loss(cls_targets, box_targets, matched, logits, encodings)["localization"]
    after = detection_loss(cls_targets, box_targets, matched, logits, moved)["localization"]
    assert float(before) == float(after)

    empty = np.zeros_like(matched)
    losses = detection_loss(np.zeros_like(cls_targets), box_targets, empty, logits, encodings)
    np.testing.assert_allclose(
        float(losses["classification"]), _numpy_focal(0 * cls_targets, logits).sum(), rtol=1e-5
    )
    assert float(losses["localization"]) == 0.0


def test_gradients_are_finite_for_extreme_logits():
    logits = tf.Variable(np.array([[[-80.0, 80.0, 0.0]]], np.float32))
    encodings = tf.Variable(np.zeros((1, 1, 4), np.float32))
    with tf.GradientTape() as tape:
        loss = detection_loss(
            np.array([[[0.0, 0.0, 1.0]]]), np.ones((1, 1, 4)), np.ones((1, 1)), logits, encodings
        )["total"]
    gradients = tape.gradient(loss, [logits, encodings])
    assert all(np.isfinite(g.numpy()).all() for g in gradients)
