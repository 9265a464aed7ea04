"""ONNX export of the detector (``export --onnx``): the network, the box decoding and the NMS as standard ONNX ops.

The ONNX file is converted by ``tf2onnx`` from a ``tf.function`` that runs the Keras model (float mode) and then
post-processes its raw outputs with ordinary TensorFlow ops, written to compute what the ``.tflite`` files' fused
``TFLite_Detection_PostProcess`` op computes (:func:`postprocess_function`): the op's box decoding, and its NMS as
``tf.image.non_max_suppression``, which tf2onnx turns into ONNX's ``NonMaxSuppression``
(onnx/tensorflow-onnx ``tf2onnx/onnx_opset/tensor.py``). The outputs are the op's: boxes ``[1, K, 4]``, classes
``[1, K]`` (0-based, float), scores ``[1, K]``, ``num_detections`` ``[1]``, rows past the count zero.

Why not the obvious routes:

* Converting the exported SavedModel: its post-processing is an empty placeholder function that only the TFLite
  converter replaces with the fused op (``tflite.make_serving_function``). tf2onnx 1.17 converts that placeholder
  as it is and reports success; the ONNX model then outputs zeros for every image (measured: an ONNX graph of
  ``Identity`` nodes only).
* Converting ``model_float.tflite`` (``tf2onnx --tflite``): its handler for the fused op
  (``tf2onnx/tflite_handlers/tfl_postprocess.py``) approximates the op's default class-agnostic NMS with per-class
  NMS, so a box can come out once per class; ours is the op's rule exactly (each anchor keeps its best class, one
  NMS over all anchors).

``tf2onnx`` and ``onnxruntime`` are an optional extra (``pip install 'spaghettinet[onnx]'``), imported only here
and only when asked for: tf2onnx 1.16.1 pins ``protobuf~=3.20``, which cannot install beside TensorFlow 2.21 (it
needs protobuf 6.31.1 or newer); tf2onnx 1.17.0 installs and converts.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence

import numpy as np

from spaghettinet.deploy.tflite import INPUT_NAME, OUTPUT_NAMES, PostprocessSettings, anchors_center_size
from spaghettinet.errors import SpaghettiError, UsageError
from spaghettinet.tf_runtime import import_tensorflow

#: ONNX opset of the exported model: 17 is read by every onnxruntime since 1.11 and by TensorRT 8.6 and later.
ONNX_OPSET = 17

#: What a user installs to get ``--onnx``; named in the error when it is missing.
ONNX_EXTRA_INSTALL = "pip install 'spaghettinet[onnx]'"


def require_onnx_packages() -> tuple:
    """Import ``tf2onnx`` and ``onnxruntime``, or say in one line how to install them.

    Returns:
        ``(tf2onnx, onnxruntime)`` modules.

    Raises:
        UsageError: either package is not installed (it is an optional extra, not a dependency).

    Example:
        >>> tf2onnx, onnxruntime = require_onnx_packages()  # doctest: +SKIP
    """
    modules, missing = {}, []
    for name in ("tf2onnx", "onnxruntime"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(
            f"--onnx needs the optional packages tf2onnx and onnxruntime ({' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed): {ONNX_EXTRA_INSTALL}"
        )
    return modules["tf2onnx"], modules["onnxruntime"]


def postprocess_function(settings: PostprocessSettings, anchors_yxyx: np.ndarray):
    """``(box_encodings [1, N, 4], class_scores [1, N, C + 1]) -> the op's four outputs``, in plain TF ops.

    Computes what ``TFLite_Detection_PostProcess`` computes (its numpy twin is ``tflite.op_detections``):

    * boxes decoded against the center-size anchors exactly as the kernel does (``DecodeCenterSizeBoxes`` in
      tensorflow/lite/kernels/detection_postprocess.cc): ``yc = ty / y_scale * ha + ya``,
      ``half_h = 0.5 * exp(th / h_scale) * ha``, the same for x and w;
    * fast NMS (the default): each anchor keeps its best foreground class (an argmax) and its score, and one
      greedy NMS over all anchors keeps at most ``max_detections``;
    * regular NMS (``use_regular_nms``): NMS per class, at most ``detections_per_class`` each, then the
      ``max_detections`` best over all classes.

    Where the two thresholds meet a tie the rules differ slightly: the op keeps a score equal to the threshold,
    ONNX's ``NonMaxSuppression`` (as TensorFlow's) drops it.

    Args:
        settings: the op's attributes.
        anchors_yxyx: ``[N, 4]`` anchors (the model's ``anchors``).

    Returns:
        A Python callable of two tensors returning a dict keyed by ``tflite.OUTPUT_NAMES``.

    Example:
        >>> outputs = postprocess_function(settings, model.anchors)(box_encodings, scores)  # doctest: +SKIP
    """
    tf = import_tensorflow()
    settings.validate()
    # A numpy array, made a constant inside the traced graph: an eager tensor would be captured, and tf2onnx turns
    # captures into extra graph inputs.
    anchors = anchors_center_size(anchors_yxyx)
    y_scale, x_scale, h_scale, w_scale = (float(s) for s in settings.scales)
    k = settings.max_detections

    def run(box_encodings, class_scores):
        encodings = box_encodings[0]
        scores = class_scores[0, :, 1:]  # column 0 is the background, which the op skips
        ycenter = encodings[:, 0] / y_scale * anchors[:, 2] + anchors[:, 0]
        xcenter = encodings[:, 1] / x_scale * anchors[:, 3] + anchors[:, 1]
        half_h = 0.5 * tf.exp(encodings[:, 2] / h_scale) * anchors[:, 2]
        half_w = 0.5 * tf.exp(encodings[:, 3] / w_scale) * anchors[:, 3]
        boxes = tf.stack([ycenter - half_h, xcenter - half_w, ycenter + half_h, xcenter + half_w], axis=1)
        if settings.use_regular_nms:
            kept_scores, kept_classes, kept_anchors = [], [], []
            for class_index in range(settings.num_classes):
                selected = tf.image.non_max_suppression(
                    boxes,
                    scores[:, class_index],
                    settings.detections_per_class,
                    iou_threshold=settings.iou_threshold,
                    score_threshold=settings.score_threshold,
                )
                kept_scores.append(tf.gather(scores[:, class_index], selected))
                kept_classes.append(tf.fill(tf.shape(selected), class_index))
                kept_anchors.append(selected)
            all_scores = tf.concat(kept_scores, axis=0)
            best = tf.math.top_k(all_scores, k=tf.minimum(k, tf.size(all_scores))).indices
            detection_scores = tf.gather(all_scores, best)
            detection_classes = tf.gather(tf.concat(kept_classes, axis=0), best)
            detection_boxes = tf.gather(boxes, tf.gather(tf.concat(kept_anchors, axis=0), best))
        else:
            best_scores = tf.reduce_max(scores, axis=1)
            best_classes = tf.argmax(scores, axis=1, output_type=tf.int32)
            selected = tf.image.non_max_suppression(
                boxes,
                best_scores,
                k,
                iou_threshold=settings.iou_threshold,
                score_threshold=settings.score_threshold,
            )
            detection_boxes = tf.gather(boxes, selected)
            detection_scores = tf.gather(best_scores, selected)
            detection_classes = tf.gather(best_classes, selected)
        count = tf.shape(detection_scores)[0]
        missing = k - count
        return {
            OUTPUT_NAMES[0]: tf.pad(detection_boxes, [[0, missing], [0, 0]])[tf.newaxis],
            OUTPUT_NAMES[1]: tf.pad(tf.cast(detection_classes, tf.float32), [[0, missing]])[tf.newaxis],
            OUTPUT_NAMES[2]: tf.pad(detection_scores, [[0, missing]])[tf.newaxis],
            OUTPUT_NAMES[3]: tf.cast(tf.reshape(count, [1]), tf.float32),
        }

    return run


def convert_onnx(model, settings: PostprocessSettings, class_names: Sequence[str]) -> tuple[bytes, dict]:
    """ONNX bytes of the detector (float, model in its current mode) with the post-processing as ONNX ops.

    Args:
        model: detector from ``build_detector`` (export sets it to float mode first).
        settings: the post-processing attributes, as in the ``.tflite`` files.
        class_names: foreground class names, stored in the model's ``metadata_props`` as ``labels``.

    Returns:
        ``(bytes, info)``: the model and ``{"opset", "tf2onnx", "onnxruntime", "op_counts", "nms"}``.

    Raises:
        UsageError: tf2onnx / onnxruntime not installed.
        SpaghettiError: the conversion failed.

    Example:
        >>> onnx_bytes, info = convert_onnx(model, settings, ["cat", "dog"])  # doctest: +SKIP
    """
    tf2onnx, onnxruntime = require_onnx_packages()
    tf = import_tensorflow()
    height, width = int(model.input_shape[1]), int(model.input_shape[2])
    postprocess = postprocess_function(settings, model.anchors)

    def serve(image):
        outputs = model(image, training=False)
        return postprocess(outputs["box_encodings"], tf.sigmoid(outputs["class_logits"]))

    signature = [tf.TensorSpec([1, height, width, 3], tf.float32, name=INPUT_NAME)]
    try:
        model_proto, _ = tf2onnx.convert.from_function(
            tf.function(serve, input_signature=signature), input_signature=signature, opset=ONNX_OPSET
        )
    except Exception as exc:  # tf2onnx raises many types (ValueError, RuntimeError, its own)
        raise SpaghettiError(f"ONNX conversion (tf2onnx {tf2onnx.__version__}) failed: {exc}") from exc
    _add_metadata(model_proto, class_names)
    op_counts: dict[str, int] = {}
    for node in model_proto.graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
    info = {
        "opset": ONNX_OPSET,
        "tf2onnx": tf2onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "nms": "per-class NonMaxSuppression (regular NMS)"
        if settings.use_regular_nms
        else "one class-agnostic NonMaxSuppression over each anchor's best class (the op's fast NMS)",
        "op_counts": dict(sorted(op_counts.items(), key=lambda item: (-item[1], item[0]))),
    }
    return model_proto.SerializeToString(), info


def _add_metadata(model_proto, class_names: Sequence[str]) -> None:
    """Labels and input convention in ``metadata_props``, where ONNX keeps free-form strings (as Ultralytics does)."""
    entries = {
        "labels": json.dumps(list(class_names)),
        "input": f"{INPUT_NAME}: float32 [1, H, W, 3] RGB, pixels scaled x * 2/255 - 1",
        "outputs": ", ".join(OUTPUT_NAMES) + " (boxes ymin, xmin, ymax, xmax normalized; classes 0-based)",
    }
    for key, value in entries.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_labels(onnx_bytes: bytes) -> list[str] | None:
    """The class names stored in an exported ONNX model, or None when it has none.

    Example:
        >>> read_labels(open("model.onnx", "rb").read())  # doctest: +SKIP
        ['cat', 'dog']
    """
    import onnx

    model_proto = onnx.load_from_string(onnx_bytes)
    for entry in model_proto.metadata_props:
        if entry.key == "labels":
            return list(json.loads(entry.value))
    return None
