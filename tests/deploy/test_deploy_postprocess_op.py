"""The numpy twins of the fused ``TFLite_Detection_PostProcess`` op give exactly the op's detections.

Export compares the float ``.tflite`` with the Keras model through these twins, so they must follow the op's
rules in both of its modes: the default class-agnostic fast NMS and the per-class regular NMS.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spaghettinet.deploy.tflite import (
    PostprocessSettings,
    anchors_center_size,
    convert_float,
    op_detections,
    postprocess_signature,
)
from spaghettinet.model.postprocess import fast_postprocess, postprocess

ANCHORS = 400
CLASSES = 3
THRESHOLDS = {"score_threshold": 0.05, "iou_threshold": 0.5}
MAX_DETECTIONS = 20


def _anchors() -> np.ndarray:
    # Crowded anchors of varied shapes: many overlaps, so NMS decides most of the output.
    rng = np.random.default_rng(0)
    centers = rng.uniform(0.2, 0.8, (ANCHORS, 2))
    sizes = rng.uniform(0.05, 0.3, (ANCHORS, 2))
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)


def _op_model(tmp_path, anchors: np.ndarray, settings: PostprocessSettings) -> bytes:
    """A ``.tflite`` holding only sigmoid + the fused op, converted the way export converts."""
    import tensorflow as tf

    anchor_constant = tf.constant(anchors_center_size(anchors))

    @tf.function(experimental_implements=postprocess_signature(settings))
    def detection_postprocess(box_encodings, class_scores, anchor_boxes):
        del box_encodings, class_scores, anchor_boxes  # replaced by the fused op
        k = settings.max_detections
        return tf.zeros([1, k, 4]), tf.zeros([1, k]), tf.zeros([1, k]), tf.zeros([1])

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, ANCHORS, 4], tf.float32, name="box_encodings"),
            tf.TensorSpec([1, ANCHORS, CLASSES + 1], tf.float32, name="class_logits"),
        ]
    )
    def serve(box_encodings, class_logits):
        boxes, classes, scores, count = detection_postprocess(
            box_encodings, tf.sigmoid(class_logits), anchor_constant
        )
        return {
            "detection_boxes": boxes,
            "detection_classes": classes,
            "detection_scores": scores,
            "num_detections": count,
        }

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": serve.get_concrete_function()})
    return convert_float(tmp_path)


def _run_op(flatbuffer: bytes, box_encodings: np.ndarray, class_logits: np.ndarray):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = box_encodings if "box_encodings" in detail["name"] else class_logits
        interpreter.set_tensor(detail["index"], value[np.newaxis])
    interpreter.invoke()
    boxes, classes, scores, count = (
        interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()
    )
    n = int(count[0])
    return np.clip(boxes[0, :n], 0.0, 1.0), np.rint(classes[0, :n]).astype(np.int32), scores[0, :n]


def _cases():
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        yield (
            rng.normal(0.0, 0.5, (ANCHORS, 4)).astype(np.float32),
            rng.normal(-2.0, 1.5, (ANCHORS, CLASSES + 1)).astype(np.float32),
        )


@pytest.mark.parametrize("regular", [False, True], ids=["fast_nms", "regular_nms"])
def test_numpy_twin_matches_the_fused_op(tmp_path, regular):
    anchors = _anchors()
    settings = PostprocessSettings(
        num_classes=CLASSES, max_detections=MAX_DETECTIONS, use_regular_nms=regular, **THRESHOLDS
    )
    flatbuffer = _op_model(tmp_path, anchors, settings)
    other_mode = replace(settings, use_regular_nms=not regular)
    differs_from_other_mode = False
    for box_encodings, class_logits in _cases():
        boxes, classes, scores = _run_op(flatbuffer, box_encodings, class_logits)
        expected = op_detections(settings, box_encodings, class_logits, anchors)
        assert len(scores) == expected.num == MAX_DETECTIONS
        np.testing.assert_array_equal(classes, expected.classes)
        np.testing.assert_allclose(scores, expected.scores, atol=1e-6, rtol=0)
        np.testing.assert_allclose(boxes, expected.boxes, atol=1e-6, rtol=0)
        alternative = op_detections(other_mode, box_encodings, class_logits, anchors)
        differs_from_other_mode |= not np.array_equal(alternative.anchor_indices, expected.anchor_indices)
    # The inputs are crowded enough that the two modes disagree, so the wrong twin would fail above.
    assert differs_from_other_mode


def test_fast_nms_keeps_one_class_per_anchor_and_suppresses_across_classes():
    # Anchor 0 is best for class 1 and overlaps anchor 1 (class 0) with IoU 0.8: fast NMS keeps only anchor 0,
    # where per-class NMS would keep both.
    anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.42], [0.6, 0.6, 0.9, 0.9]], np.float32)
    probabilities = np.array([[0.5, 0.7, 0.9], [0.5, 0.8, 0.1], [0.5, 0.6, 0.6]], np.float64)
    logits = np.log(probabilities / (1 - probabilities)).astype(np.float32)
    codes = np.zeros_like(anchors)
    result = fast_postprocess(codes, logits, anchors, score_threshold=0.3, iou_threshold=0.6)
    assert result.anchor_indices.tolist() == [0, 2]
    assert result.classes.tolist() == [1, 0]  # anchor 2's tie goes to the first class, as the op's argmax
    np.testing.assert_allclose(result.scores, [0.9, 0.6], rtol=1e-6)
    assert postprocess(codes, logits, anchors, score_threshold=0.3, iou_threshold=0.6).num == 4
