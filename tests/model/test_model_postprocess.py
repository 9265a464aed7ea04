"""Post-processing must give the reference's detections: evaluation and the TFLite checks compare against it."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.model.postprocess import non_max_suppression, pairwise_iou, postprocess, postprocess_batch


@pytest.mark.parametrize("variant", ["s", "m"])
def test_reproduces_reference_detections(reference_dir, variant):
    golden = np.load(reference_dir / f"spaghettinet_edgetpu_{variant}_golden.npz")
    result = postprocess(
        golden["box_encodings"], golden["class_predictions_with_background"], golden["anchors"]
    )
    assert result.num == int(golden["num_detections"][0]) == 100
    np.testing.assert_array_equal(result.anchor_indices, golden["detection_anchor_indices"][0])
    np.testing.assert_array_equal(result.classes, golden["detection_classes"][0].astype(np.int32))
    # Values differ from TF's only by exp/sigmoid rounding (≤ 1 ulp); M's closest scores are 2.6e-6 apart.
    np.testing.assert_allclose(result.scores, golden["detection_scores"][0], atol=2e-7, rtol=0)
    np.testing.assert_allclose(result.boxes, golden["detection_boxes"][0], atol=2e-7, rtol=0)
    assert np.all(np.diff(result.scores) <= 0)


def _logits_for(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, np.float64)
    return np.log(p / (1 - p)).astype(np.float32)


def _anchors_and_zero_codes(boxes):
    anchors = np.asarray(boxes, np.float32)
    return anchors, np.zeros_like(anchors)


def test_per_class_nms_merge_and_background():
    # Boxes 0 and 1 overlap with IoU 0.8; box 2 is apart.
    anchors, codes = _anchors_and_zero_codes(
        [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.42], [0.6, 0.6, 0.9, 0.9]]
    )
    probabilities = np.array(
        [
            [0.99, 0.9, 0.3],  # background highest, still ignored; in class 1, suppressed by box 1
            [0.01, 0.8, 0.7],  # suppressed by box 0 in class 0, but kept in class 1
            [0.01, 0.6, 1e-9],  # class 1 score below the 1e-8 threshold
        ]
    )
    result = postprocess(codes, _logits_for(probabilities), anchors)
    assert result.anchor_indices.tolist() == [0, 1, 2]
    assert result.classes.tolist() == [0, 1, 0]
    np.testing.assert_allclose(result.scores, [0.9, 0.7, 0.6], rtol=1e-6)


def test_iou_equal_to_threshold_suppresses():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 1, 0.25]], np.float32)
    iou = pairwise_iou(boxes[:1], boxes[1:])[0]
    keep = non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), 10, iou_threshold=float(iou[0]))
    assert keep.tolist() == [0, 2]
    keep = non_max_suppression(
        boxes, np.array([0.9, 0.8, 0.7]), 10, iou_threshold=float(np.nextafter(iou[0], 1))
    )
    assert keep.tolist() == [0, 1, 2]


def test_suppressed_box_does_not_suppress_others():
    # b suppressed by a; c overlaps b heavily but not a, so c stays (greedy NMS, not "any overlap").
    boxes = np.array([[0, 0, 1, 1], [0, 0.3, 1, 1.3], [0, 0.6, 1, 1.6]], np.float32)
    keep = non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), 10, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_caps_per_class_and_total_and_clipping():
    rng = np.random.default_rng(3)
    n = 40
    y = rng.uniform(-0.2, 1.0, n).astype(np.float32)
    anchors = np.stack([y, y, y + 0.02, y + 0.02], axis=1)  # tiny disjoint-ish boxes, some partly outside
    logits = rng.normal(size=(n, 4)).astype(np.float32)
    result = postprocess(
        np.zeros((n, 4), np.float32), logits, anchors, max_detections_per_class=5, max_total_detections=12
    )
    assert result.num == 12
    assert np.bincount(result.classes, minlength=3).max() <= 5
    assert result.boxes.min() >= 0.0 and result.boxes.max() <= 1.0
    assert np.all(np.diff(result.scores) <= 0)


def test_nothing_above_threshold_gives_empty_detections():
    anchors, codes = _anchors_and_zero_codes([[0.1, 0.1, 0.5, 0.5]])
    result = postprocess(codes, np.full((1, 3), -30.0, np.float32), anchors)
    assert result.num == 0 and result.boxes.shape == (0, 4) and result.classes.dtype == np.int32


def test_batch_of_one_and_batch_helper():
    rng = np.random.default_rng(5)
    anchors = np.sort(rng.uniform(0, 1, (30, 4)).astype(np.float32).reshape(30, 2, 2), axis=1).transpose(
        0, 2, 1
    )
    anchors = anchors.reshape(30, 4)
    codes = rng.normal(size=(2, 30, 4)).astype(np.float32)
    logits = rng.normal(size=(2, 30, 3)).astype(np.float32)
    single = postprocess(codes[1:], logits[1:], anchors)
    both = postprocess_batch(codes, logits, anchors)
    np.testing.assert_array_equal(single.anchor_indices, both[1].anchor_indices)
    with pytest.raises(ValueError):
        postprocess(codes, logits, anchors)


def test_single_class_nms_agrees_with_tensorflow_padded_nms():
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(11)
    n = 700  # more than one 512-box tile
    centres = rng.uniform(0, 1, (n, 2))
    sizes = rng.uniform(0.05, 0.3, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[:50] = 0.0  # below the threshold
    for max_out in (20, 300):
        expected, valid = tf.image.non_max_suppression_padded(
            boxes, scores, max_out, iou_threshold=0.6, score_threshold=1e-8, pad_to_max_output_size=True
        )
        ours = non_max_suppression(boxes, scores, max_out, iou_threshold=0.6, score_threshold=1e-8)
        assert ours.tolist() == expected.numpy()[: int(valid)].tolist()
