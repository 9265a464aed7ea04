"""SSD training targets: IoU similarity, the argmax matcher and target assignment, as the reference does them.

Reference config (``configs/tf1/ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``):
``iou_similarity``; ``argmax_matcher`` with matched and unmatched thresholds 0.5,
``negatives_lower_than_unmatched``, ``force_match_for_each_row``; ``faster_rcnn_box_coder`` 10/10/5/5;
``encode_background_as_zeros``. So an anchor is positive when its best IoU with a ground-truth box is ≥ 0.5, every
ground-truth box is also force-matched to its best anchor, and all other anchors are negatives (none are ignored).

All functions are TensorFlow ops that work in graph mode (inside ``tf.data`` maps and ``tf.function``) with a
dynamic number of ground-truth boxes, including zero. TensorFlow is imported when a function is called.
"""

from __future__ import annotations

from collections.abc import Sequence

from spaghettinet.model.box_coder import DEFAULT_SCALES, encode_tf
from spaghettinet.tf_runtime import import_tensorflow

#: ``argmax_matcher`` codes for anchors without a match (object_detection/matchers/argmax_matcher.py).
UNMATCHED = -1
IGNORED = -2


def iou_similarity(boxes_a, boxes_b):
    """Pairwise IoU of yxyx boxes; 0 where boxes do not intersect (also for zero-area padding boxes).

    Args:
        boxes_a: ``[M, 4]`` float tensor.
        boxes_b: ``[N, 4]`` float tensor.

    Returns:
        float32 ``[M, N]`` IoU.

    Example:
        >>> iou_similarity([[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 0.5]]).numpy()  # doctest: +SKIP
        array([[0.5]], dtype=float32)
    """
    tf = import_tensorflow()
    boxes_a = tf.cast(boxes_a, tf.float32)
    boxes_b = tf.cast(boxes_b, tf.float32)
    ymin_a, xmin_a, ymax_a, xmax_a = tf.split(boxes_a, 4, axis=1)  # each [M, 1]
    ymin_b, xmin_b, ymax_b, xmax_b = tf.unstack(boxes_b, 4, axis=1)  # each [N]
    inter_h = tf.maximum(tf.minimum(ymax_a, ymax_b) - tf.maximum(ymin_a, ymin_b), 0.0)
    inter_w = tf.maximum(tf.minimum(xmax_a, xmax_b) - tf.maximum(xmin_a, xmin_b), 0.0)
    intersections = inter_h * inter_w
    area_a = (ymax_a - ymin_a) * (xmax_a - xmin_a)
    area_b = (ymax_b - ymin_b) * (xmax_b - xmin_b)
    unions = area_a + area_b - intersections
    # As the API's iou(): an exact 0 where nothing intersects, which also avoids 0/0 for empty boxes.
    return tf.where(
        intersections > 0.0, intersections / tf.maximum(unions, 1e-12), tf.zeros_like(intersections)
    )


def argmax_match(
    similarity,
    valid_rows=None,
    matched_threshold: float = 0.5,
    unmatched_threshold: float | None = None,
    force_match_for_each_row: bool = True,
):
    """Match every column (anchor) to its best row (ground-truth box), as the API's ``ArgMaxMatcher``.

    Columns whose best similarity is below ``unmatched_threshold`` get :data:`UNMATCHED` (-1); between the two
    thresholds :data:`IGNORED` (-2); otherwise the row index. With ``force_match_for_each_row`` every valid row
    then claims its own best column (ties: lowest column; a column claimed by several rows goes to the first row),
    even if its IoU is below the threshold. Invalid rows (padding) never match anything.

    Args:
        similarity: ``[M, N]`` float tensor (``M`` may be 0 or dynamic).
        valid_rows: optional ``[M]`` bool tensor; ``False`` rows are ignored. Default: all valid.
        matched_threshold: columns with best similarity ≥ this are matched.
        unmatched_threshold: columns below this are unmatched; defaults to ``matched_threshold``.
        force_match_for_each_row: force-match each valid row to its best column.

    Returns:
        int32 ``[N]`` row index per column, or -1 / -2.

    Example:
        >>> argmax_match([[0.2, 0.6], [0.1, 0.3]]).numpy()  # doctest: +SKIP
        array([-1,  0], dtype=int32)
    """
    tf = import_tensorflow()
    if unmatched_threshold is None:
        unmatched_threshold = matched_threshold
    similarity = tf.cast(similarity, tf.float32)
    num_rows = tf.shape(similarity)[0]
    num_columns = tf.shape(similarity)[1]
    if valid_rows is None:
        valid_rows = tf.ones([num_rows], dtype=tf.bool)
    valid_rows = tf.cast(valid_rows, tf.bool)
    # A sentinel invalid row keeps argmax defined when there are no boxes at all (an image without objects).
    similarity = tf.concat([similarity, tf.fill([1, num_columns], -1.0)], axis=0)
    valid_rows = tf.concat([valid_rows, [False]], axis=0)
    similarity = tf.where(valid_rows[:, None], similarity, -1.0)

    best_rows = tf.argmax(similarity, axis=0, output_type=tf.int32)
    best_values = tf.reduce_max(similarity, axis=0)
    matches = tf.where(best_values < unmatched_threshold, UNMATCHED, best_rows)
    between = tf.logical_and(best_values >= unmatched_threshold, best_values < matched_threshold)
    matches = tf.where(between, IGNORED, matches)
    if force_match_for_each_row:
        best_columns = tf.argmax(similarity, axis=1, output_type=tf.int32)  # [M + 1]
        claims = (
            tf.one_hot(best_columns, num_columns, dtype=tf.float32) * tf.cast(valid_rows, tf.float32)[:, None]
        )
        claiming_row = tf.argmax(claims, axis=0, output_type=tf.int32)  # first row claiming each column
        is_claimed = tf.reduce_max(claims, axis=0) > 0.0
        matches = tf.where(is_claimed, claiming_row, matches)
    return matches


def assign_targets(
    gt_boxes,
    gt_classes,
    anchors,
    num_classes: int,
    matched_threshold: float = 0.5,
    scales: Sequence[float] = DEFAULT_SCALES,
    num_boxes=None,
):
    """Classification and box-regression targets of one image for every anchor.

    Ground-truth rows whose class is ≤ 0 (padding, or labels the decoder could not map) or whose index is
    ≥ ``num_boxes`` are ignored. Class ids above ``num_classes`` fail loudly (``InvalidArgumentError``).

    Args:
        gt_boxes: ``[M, 4]`` yxyx normalized boxes (``M`` may be 0 or dynamic; padded rows allowed).
        gt_classes: ``[M]`` int **1-based** class ids (0 = padding).
        anchors: ``[N, 4]`` yxyx normalized anchors (numpy array or tensor).
        num_classes: number of foreground classes ``C``.
        matched_threshold: IoU for a positive anchor (0.5; the unmatched threshold equals it).
        scales: box coder scales.
        num_boxes: optional scalar; rows from this index on are padding.

    Returns:
        ``(cls_targets, box_targets, matched)``: float32 ``[N, C + 1]`` one-hot with column 0 always 0
        (``encode_background_as_zeros``; a negative anchor is all zeros), float32 ``[N, 4]`` encoded boxes (0 for
        negatives), float32 ``[N]`` 1 for matched anchors and 0 otherwise.

    Example:
        >>> cls, box, matched = assign_targets(tf.zeros([0, 4]), tf.zeros([0], tf.int32), anchors, 3)  # doctest: +SKIP
    """
    tf = import_tensorflow()
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
    anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
    num_anchors = anchors.shape[0] if anchors.shape[0] is not None else tf.shape(anchors)[0]

    with tf.control_dependencies(
        [
            tf.debugging.assert_less_equal(
                gt_classes,
                num_classes,
                message=f"a ground-truth class id is larger than num_classes={num_classes}: label map and data disagree",
            )
        ]
    ):
        valid = gt_classes > 0
    if num_boxes is not None:
        valid = tf.logical_and(valid, tf.range(tf.shape(gt_classes)[0]) < tf.cast(num_boxes, tf.int32))

    matches = argmax_match(iou_similarity(gt_boxes, anchors), valid, matched_threshold)
    is_matched = matches >= 0
    safe_rows = tf.maximum(matches, 0)
    # A zero padding row makes gathers safe when there are no boxes; its values are masked out below.
    padded_boxes = tf.concat([gt_boxes, [[0.0, 0.0, 1.0, 1.0]]], axis=0)
    padded_classes = tf.concat([gt_classes, [0]], axis=0)
    matched_boxes = tf.gather(padded_boxes, safe_rows)
    matched_classes = tf.where(is_matched, tf.gather(padded_classes, safe_rows), 0)

    box_targets = tf.where(is_matched[:, None], encode_tf(matched_boxes, anchors, scales), 0.0)
    # one_hot over C + 1 columns puts class k (1-based) in column k; unmatched rows use class 0, then get zeroed,
    # so column 0 (background) is always 0.
    cls_targets = tf.one_hot(matched_classes, num_classes + 1, dtype=tf.float32)
    cls_targets = cls_targets * tf.cast(is_matched, tf.float32)[:, None]
    matched = tf.cast(is_matched, tf.float32)
    if isinstance(num_anchors, int):
        cls_targets = tf.ensure_shape(cls_targets, [num_anchors, num_classes + 1])
        box_targets = tf.ensure_shape(box_targets, [num_anchors, 4])
        matched = tf.ensure_shape(matched, [num_anchors])
    return cls_targets, box_targets, matched
