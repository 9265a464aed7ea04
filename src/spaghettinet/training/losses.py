"""SSD losses of the reference: sigmoid focal classification and smooth-L1 localization (``core/losses.py``).

* Classification: ``weighted_sigmoid_focal`` with alpha 0.75 (weighting the *positives*, the opposite of
  RetinaNet's 0.25, arXiv:1708.02002) and gamma 2, per entry ``CE · (1 − p_t)^γ · (t·α + (1 − t)·(1 − α))``,
  summed over every anchor and all ``C + 1`` columns (the background column's target is always 0).
* Localization: ``weighted_smooth_l1`` (Huber, delta 1) summed over the 4 coordinates of matched anchors.
* Normalization as ``SSDMetaArch.loss`` with ``normalize_loss_by_num_matches`` and
  ``normalize_loc_loss_by_codesize``: both sums run over the **whole batch** and are divided by
  ``max(1, number of matched anchors in the batch)``; the localization loss is divided by 4 (the code size) too.

The L2 weight regularization of the reference is not part of these: the training loop adds ``model.losses``.
"""

from __future__ import annotations

from spaghettinet.tf_runtime import import_tensorflow

#: Reference values (the zoo config's ``loss``).
FOCAL_ALPHA = 0.75
FOCAL_GAMMA = 2.0
HUBER_DELTA = 1.0
BOX_CODE_SIZE = 4


def sigmoid_focal_loss(cls_targets, class_logits, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA):
    """Per-entry sigmoid focal loss (not reduced).

    Args:
        cls_targets: ``[..., C + 1]`` float targets in {0, 1}.
        class_logits: ``[..., C + 1]`` logits.
        alpha: weight of positive entries; negatives get ``1 − alpha``.
        gamma: focusing exponent.

    Returns:
        float32 tensor shaped like the inputs.

    Example:
        >>> float(sigmoid_focal_loss([[1.0]], [[0.0]])[0, 0])  # doctest: +SKIP
        0.1299...
    """
    tf = import_tensorflow()
    targets = tf.cast(cls_targets, tf.float32)
    logits = tf.cast(class_logits, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    probabilities = tf.sigmoid(logits)
    p_t = targets * probabilities + (1.0 - targets) * (1.0 - probabilities)
    modulating = tf.pow(1.0 - p_t, gamma)
    alpha_weight = targets * alpha + (1.0 - targets) * (1.0 - alpha)
    return modulating * alpha_weight * cross_entropy


def smooth_l1_loss(box_targets, box_encodings, delta: float = HUBER_DELTA):
    """Per-anchor Huber loss summed over the last (coordinate) axis (not reduced over anchors).

    Args:
        box_targets: ``[..., 4]`` encoded target boxes.
        box_encodings: ``[..., 4]`` predicted encodings.
        delta: Huber threshold (``0.5·x²`` inside, ``delta·(|x| − 0.5·delta)`` outside).

    Returns:
        float32 ``[...]`` tensor.

    Example:
        >>> float(smooth_l1_loss([[0.0, 0.0, 0.0, 0.0]], [[0.5, 2.0, 0.0, 0.0]])[0])  # doctest: +SKIP
        1.625
    """
    tf = import_tensorflow()
    error = tf.abs(tf.cast(box_encodings, tf.float32) - tf.cast(box_targets, tf.float32))
    quadratic = tf.minimum(error, delta)
    linear = error - quadratic
    return tf.reduce_sum(0.5 * quadratic * quadratic + delta * linear, axis=-1)


def detection_loss(
    cls_targets,
    box_targets,
    matched,
    class_logits,
    box_encodings,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    huber_delta: float = HUBER_DELTA,
    classification_weight: float = 1.0,
    localization_weight: float = 1.0,
) -> dict:
    """The reference SSD loss of a batch, normalized by the number of matched anchors in the batch.

    Args:
        cls_targets: ``[B, N, C + 1]`` from :func:`spaghettinet.training.targets.assign_targets`.
        box_targets: ``[B, N, 4]`` encoded targets.
        matched: ``[B, N]`` 1 for positive anchors, 0 otherwise.
        class_logits: ``[B, N, C + 1]`` model logits.
        box_encodings: ``[B, N, 4]`` model box encodings.
        alpha: focal alpha (positives' weight).
        gamma: focal gamma.
        huber_delta: smooth-L1 delta.
        classification_weight: weight of the classification loss (1.0 in the reference).
        localization_weight: weight of the localization loss (1.0 in the reference).

    Returns:
        ``{"classification", "localization", "total", "num_matches"}`` scalar float32 tensors; ``total`` is the
        sum of the two losses (regularization excluded).

    Example:
        >>> losses = detection_loss(cls_t, box_t, matched, outputs["class_logits"], outputs["box_encodings"])  # doctest: +SKIP
        >>> losses["total"]  # doctest: +SKIP
    """
    tf = import_tensorflow()
    matched = tf.cast(matched, tf.float32)
    num_matches = tf.reduce_sum(matched)
    normalizer = tf.maximum(num_matches, 1.0)
    focal_sum = tf.reduce_sum(sigmoid_focal_loss(cls_targets, class_logits, alpha, gamma))
    huber_sum = tf.reduce_sum(smooth_l1_loss(box_targets, box_encodings, huber_delta) * matched)
    classification = classification_weight * focal_sum / normalizer
    localization = localization_weight * huber_sum / (normalizer * BOX_CODE_SIZE)
    return {
        "classification": classification,
        "localization": localization,
        "total": classification + localization,
        "num_matches": num_matches,
    }
