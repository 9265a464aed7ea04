"""ONNX post-processing (``deploy/onnx_export``): the op's decoding and NMS rules as standard ONNX ops.

Converted alone on random raw outputs (no model: seconds), and compared with the op's numpy twin
(``tflite.op_detections``) in both NMS modes. The whole ``export --onnx`` is tested in ``test_deploy_export.py``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from spaghettinet.deploy import tflite

ONNX_INSTALLED = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime"))
NEEDS_ONNX = pytest.mark.skipif(
    not ONNX_INSTALLED,
    reason="export --onnx needs the optional extra: pip install 'spaghettinet[onnx]' (tf2onnx, onnxruntime)",
)

ANCHORS = 300
CLASSES = 3


def _raw_outputs(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors on a grid, box encodings and sigmoid scores spread enough that NMS has work to do."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.1, 0.9, (ANCHORS, 2))
    sizes = rng.uniform(0.05, 0.4, (ANCHORS, 2))
    anchors = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)
    encodings = rng.normal(0.0, 1.0, (1, ANCHORS, 4)).astype(np.float32)
    scores = rng.uniform(0.0, 1.0, (1, ANCHORS, CLASSES + 1)).astype(np.float32) ** 3
    return anchors, encodings, scores


def _onnx_postprocess(settings: tflite.PostprocessSettings, anchors: np.ndarray):
    """The post-processing alone, converted by tf2onnx and loaded in onnxruntime."""
    import onnxruntime
    import tf2onnx

    from spaghettinet.deploy.onnx_export import ONNX_OPSET, postprocess_function
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    signature = [
        tf.TensorSpec([1, ANCHORS, 4], tf.float32, name="box_encodings"),
        tf.TensorSpec([1, ANCHORS, CLASSES + 1], tf.float32, name="class_scores"),
    ]
    function = tf.function(postprocess_function(settings, anchors), input_signature=signature)
    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    return model_proto, onnxruntime.InferenceSession(
        model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )


@NEEDS_ONNX
@pytest.mark.parametrize("regular_nms", [False, True], ids=["fast-nms", "regular-nms"])
def test_onnx_postprocess_gives_the_ops_detections(regular_nms):
    settings = tflite.PostprocessSettings(
        num_classes=CLASSES,
        max_detections=20,
        score_threshold=0.2,
        iou_threshold=0.5,
        use_regular_nms=regular_nms,
        detections_per_class=8,
    )
    anchors, _, _ = _raw_outputs(0)
    model_proto, session = _onnx_postprocess(settings, anchors)
    assert [node.op_type for node in model_proto.graph.node].count("NonMaxSuppression") == (
        CLASSES if regular_nms else 1
    )
    for seed in range(3):
        _, encodings, scores = _raw_outputs(seed)
        boxes, classes, found_scores, count = session.run(
            list(tflite.OUTPUT_NAMES), {"box_encodings": encodings, "class_scores": scores}
        )
        logits = np.log(scores[0]) - np.log1p(-scores[0])  # the twin takes logits and applies the sigmoid
        expected = tflite.op_detections(settings, encodings[0], logits, anchors)
        n = int(count[0])
        assert n == expected.num > 0
        assert boxes.shape == (1, settings.max_detections, 4)
        assert np.array_equal(classes[0, :n].astype(np.int32), expected.classes)
        np.testing.assert_allclose(found_scores[0, :n], expected.scores, atol=1e-6)
        np.testing.assert_allclose(np.clip(boxes[0, :n], 0.0, 1.0), expected.boxes, atol=1e-6)
        assert not boxes[0, n:].any() and not found_scores[0, n:].any()  # rows past the count are zero
