"""Target assignment decides what the detector learns: positives at IoU ≥ 0.5, every object force-matched."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.model.anchors import spaghettinet_anchors
from spaghettinet.model.box_coder import decode
from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.targets import argmax_match, assign_targets, iou_similarity

tf = import_tensorflow()

# Four hand-made anchors: two side by side, one large, one far away.
ANCHORS = np.array(
    [
        [0.0, 0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5, 1.0],
        [0.0, 0.0, 1.0, 1.0],
        [0.8, 0.8, 0.9, 0.9],
    ],
    np.float32,
)


def test_iou_similarity_by_hand():
    iou = iou_similarity([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]], ANCHORS).numpy()
    np.testing.assert_allclose(iou[0], [1.0, 0.0, 0.25, 0.0], atol=1e-7)
    np.testing.assert_array_equal(iou[1], 0.0)  # zero-area padding box: 0, not NaN


def test_threshold_and_force_match():
    similarity = np.array(
        [
            [0.7, 0.2, 0.5, 0.0],  # row 0: matches columns 0 and 2 (≥ 0.5 counts)
            [0.1, 0.3, 0.1, 0.2],  # row 1: nothing above 0.5 → force-matched to column 1
        ],
        np.float32,
    )
    assert argmax_match(similarity).numpy().tolist() == [0, 1, 0, -1]
    assert argmax_match(similarity, force_match_for_each_row=False).numpy().tolist() == [0, -1, 0, -1]


def test_force_match_takes_column_from_a_better_row():
    similarity = np.array([[0.9, 0.6], [0.1, 0.3]], np.float32)
    # Column 1 prefers row 0 (0.6 ≥ 0.5), but it is row 1's best column: the force match gives it to row 1.
    assert argmax_match(similarity).numpy().tolist() == [0, 1]
    # Two rows claiming the same column: the first row keeps it.
    assert argmax_match(np.array([[0.9, 0.6], [0.8, 0.1]], np.float32)).numpy().tolist() == [0, 0]


def test_invalid_rows_never_match_and_no_rows_is_fine():
    similarity = np.array([[0.9, 0.6], [0.8, 0.1]], np.float32)
    assert argmax_match(similarity, valid_rows=[True, False]).numpy().tolist() == [0, 0]
    assert argmax_match(np.zeros((0, 3), np.float32)).numpy().tolist() == [-1, -1, -1]


def test_ignored_band_when_thresholds_differ():
    similarity = np.array([[0.45, 0.3, 0.6]], np.float32)
    matches = argmax_match(
        similarity, matched_threshold=0.5, unmatched_threshold=0.4, force_match_for_each_row=False
    )
    assert matches.numpy().tolist() == [-2, -1, 0]


def test_assign_targets_one_hot_boxes_and_background_column():
    gt_boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.78, 0.78, 0.88, 0.9]], np.float32)
    gt_classes = np.array([2, 3], np.int32)
    cls, box, matched = (t.numpy() for t in assign_targets(gt_boxes, gt_classes, ANCHORS, num_classes=3))
    assert matched.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert cls.shape == (4, 4)
    np.testing.assert_array_equal(cls[:, 0], 0.0)
    np.testing.assert_array_equal(cls[0], [0, 0, 1, 0])
    np.testing.assert_array_equal(cls[3], [0, 0, 0, 1])
    np.testing.assert_array_equal(cls[1], 0.0)
    np.testing.assert_array_equal(box[1], 0.0)
    np.testing.assert_allclose(decode(box[[0, 3]], ANCHORS[[0, 3]]), gt_boxes, atol=1e-6)


def test_image_without_objects_and_padding_rows():
    empty = assign_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), ANCHORS, num_classes=3)
    for tensor in empty:
        assert float(tf.reduce_sum(tf.abs(tensor))) == 0.0
    padded_boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    padded_classes = np.array([1, 2, 0], np.int32)
    _, _, matched = assign_targets(padded_boxes, padded_classes, ANCHORS, num_classes=3, num_boxes=1)
    assert matched.numpy().tolist() == [1.0, 0.0, 0.0, 0.0]


def test_class_id_above_num_classes_fails_loudly():
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        assign_targets(np.array([[0.0, 0.0, 0.5, 0.5]], np.float32), np.array([4]), ANCHORS, num_classes=3)


def test_works_inside_tf_data_with_dynamic_box_counts():
    anchors = spaghettinet_anchors((128, 128))
    examples = [
        (np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)),
        (np.array([[0.1, 0.1, 0.4, 0.3], [0.5, 0.5, 0.95, 0.9]], np.float32), np.array([1, 2])),
    ]

    def generator():
        yield from examples

    dataset = tf.data.Dataset.from_generator(
        generator,
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int64)),
    ).map(lambda boxes, classes: assign_targets(boxes, classes, anchors, num_classes=2))
    assert dataset.element_spec[0].shape == (len(anchors), 3)
    results = list(dataset.as_numpy_iterator())
    assert results[0][2].sum() == 0
    # Each object has at least its force-matched anchor, and decoded targets give back the boxes.
    cls, box, matched = results[1]
    assert cls[:, 1].sum() >= 1 and cls[:, 2].sum() >= 1
    positives = matched > 0
    decoded = decode(box[positives], anchors[positives])
    for row in decoded:
        assert np.min(np.abs(examples[1][0] - row).max(axis=1)) < 1e-5
