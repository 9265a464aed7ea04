"""SavedModel and TFLite conversion of a detector with the fused ``TFLite_Detection_PostProcess`` op.

The detector's raw outputs (box encodings and logits) are wrapped in a serving function that applies the sigmoid
and hands them, with the anchors as a center-size constant, to an empty ``tf.function`` whose
``experimental_implements`` string names the TFLite custom op and its attributes, as tensorflow/models'
``research/object_detection/export_tflite_graph_lib_tf2.py`` does. The TFLite converter
replaces that function with the fused op. Two conversions are offered: float32, and full-int8 through the model's
own fake-quant graph (:func:`convert_int8`), used both for post-training quantization (untrained ranges calibrated
on real images) and for a quantization-aware checkpoint (ranges trained); either way every range is floored so
that LiteRT's default XNNPACK delegate accepts the model. After conversion the subgraph outputs are rewritten to the op's own order and canonical names, because the
converter's order is not the op's. In the int8 model, the stride-2 RGB stem conv is then rewritten
as ``SPACE_TO_DEPTH`` + a stride-1 conv that computes the same integers with less padding in XNNPACK's x86 int8
kernels (:func:`space_to_depth_strided_convs`). The float16-weight model is the float32 model with its float
constants stored as float16, each behind a ``DEQUANTIZE`` op (:func:`float16_weights`).

TensorFlow is imported inside the functions (``tf_runtime.import_tensorflow``) so importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, SpaghettiError
from spaghettinet.tf_runtime import import_keras, import_tensorflow

#: Custom op name the converter emits and every client (LiteRT, MediaPipe, Edge TPU compiler) recognises.
POSTPROCESS_OP = "TFLite_Detection_PostProcess"

#: Canonical output names, in the op's own output order (tensorflow/lite/kernels/detection_postprocess.cc):
#: boxes, classes, scores, num_detections.
OUTPUT_NAMES: tuple[str, ...] = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")

#: Name of the serving signature and of its single input.
SERVING_SIGNATURE = "serving_default"
INPUT_NAME = "image"

#: The uint8 input quantization that makes raw RGB pixels the model input: real = (q - 128) * 2/255. MediaPipe
#: and the TFLite Task Library feed raw pixels to a uint8 input (they normalize float inputs only).
UINT8_INPUT_SCALE = 2.0 / 255.0
UINT8_INPUT_ZERO_POINT = 128

#: A range narrower than this is "dead": the tensor was (almost) constant on every calibration image, typically
#: channels an untrained or briefly trained model leaves at zero. The converter would give it a scale of ~1e-9,
#: whose ratio to its neighbours' scales XNNPACK (LiteRT's default CPU delegate) refuses.
DEAD_RANGE_WIDTH = 1e-5
#: Width given to a dead range: a step of 0.1/255 keeps every ratio to a neighbouring ReLU6 range (6/255) within
#: the [2**-8, 2**8) that XNNPACK's kernels accept, and still represents 0 exactly.
DEAD_RANGE_FILL = 0.1
#: Minimum widths tried in turn for every live range when XNNPACK still refuses the model, or a conv bias does not
#: fit int32: the model's own ranges first (0.0: only dead ranges change), wider floors only if needed.
RANGE_FLOORS: tuple[float, ...] = (0.0, 1e-3, 1e-2, 0.1)
#: Images per calibration pass of post-training quantization.
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class PostprocessSettings:
    """Attributes of the fused post-processing op.

    Args:
        num_classes: foreground classes (the logits have ``num_classes + 1`` columns, column 0 background).
        max_detections: rows in each output (K).
        score_threshold: candidates below this sigmoid score are dropped. Written with ``%f`` in the op's
            attribute string, so values below 5e-7 become 0: use a meaningful threshold.
        iou_threshold: greedy NMS suppresses boxes whose IoU with a kept box is above this; in (0, 1].
        use_regular_nms: per-class NMS (slower) instead of the op's default class-agnostic fast NMS.
        scales: box coder scales (y, x, h, w), from the config's ``faster_rcnn_box_coder`` (10, 10, 5, 5).
        detections_per_class: kept per class by regular NMS (100 is the kernel's default).

    Example:
        >>> PostprocessSettings(num_classes=4).max_detections
        10
    """

    num_classes: int
    max_detections: int = 10
    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    use_regular_nms: bool = False
    scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    detections_per_class: int = 100

    def validate(self) -> None:
        """Raise :class:`SpaghettiError` (usage) when the op would reject or misread these values."""
        if self.num_classes < 1:
            raise SpaghettiError(f"num_classes must be at least 1, got {self.num_classes}", exit_code=2)
        if self.max_detections < 1:
            raise SpaghettiError(
                f"--max-detections must be at least 1, got {self.max_detections}", exit_code=2
            )
        if not 0.0 < self.iou_threshold <= 1.0:
            raise SpaghettiError(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}", exit_code=2)
        if not 0.0 <= self.score_threshold < 1.0:
            raise SpaghettiError(
                f"--score-threshold must be in [0, 1), got {self.score_threshold}", exit_code=2
            )
        if any(s <= 0 for s in self.scales):
            raise SpaghettiError(f"box coder scales must be positive, got {self.scales}", exit_code=2)


def op_detections(settings: PostprocessSettings, box_encodings, class_logits, anchors):
    """What the exported ``TFLite_Detection_PostProcess`` op gives for raw model outputs, computed in numpy.

    The op's fast NMS (class-agnostic, its default) or its regular per-class NMS, as ``settings`` says; used to
    compare an exported model with the Keras model it came from.

    Args:
        settings: the op's attributes.
        box_encodings: ``[N, 4]`` raw box encodings of one image.
        class_logits: ``[N, C + 1]`` logits of one image (column 0 background).
        anchors: ``[N, 4]`` yxyx anchors.

    Returns:
        ``model.postprocess.Detections``, boxes clipped to [0, 1].
    """
    from spaghettinet.model.postprocess import fast_postprocess, postprocess

    shared = {
        "score_threshold": settings.score_threshold,
        "iou_threshold": settings.iou_threshold,
        "scales": settings.scales,
    }
    if settings.use_regular_nms:
        return postprocess(
            box_encodings,
            class_logits,
            anchors,
            max_detections_per_class=settings.detections_per_class,
            max_total_detections=settings.max_detections,
            **shared,
        )
    return fast_postprocess(
        box_encodings, class_logits, anchors, max_detections=settings.max_detections, **shared
    )


def postprocess_signature(settings: PostprocessSettings) -> str:
    """The ``experimental_implements`` string that the converter turns into ``TFLite_Detection_PostProcess``.

    Built as the TF2 OD API's ``export_tflite_graph_lib_tf2.py`` builds it: ``name: "..."`` then one
    ``attr { key: "k" value { t: v } }`` per attribute, floats like C's ``%f`` (six decimals), booleans lower case, joined by spaces.
    ``max_classes_per_detection`` is 1 (the only value the TF2 route supports) and ``detections_per_class`` is
    written explicitly so regular NMS does not depend on a kernel default.

    Args:
        settings: the op's attributes.

    Returns:
        The signature string.

    Example:
        >>> postprocess_signature(PostprocessSettings(num_classes=3)).split(" attr")[0]
        'name: "TFLite_Detection_PostProcess"'
    """
    settings.validate()
    y_scale, x_scale, h_scale, w_scale = settings.scales
    attributes = [
        ("max_detections", "i", f"{settings.max_detections:d}"),
        ("max_classes_per_detection", "i", "1"),
        ("detections_per_class", "i", f"{settings.detections_per_class:d}"),
        ("use_regular_nms", "b", "true" if settings.use_regular_nms else "false"),
        ("nms_score_threshold", "f", f"{settings.score_threshold:f}"),
        ("nms_iou_threshold", "f", f"{settings.iou_threshold:f}"),
        ("y_scale", "f", f"{y_scale:f}"),
        ("x_scale", "f", f"{x_scale:f}"),
        ("h_scale", "f", f"{h_scale:f}"),
        ("w_scale", "f", f"{w_scale:f}"),
        ("num_classes", "i", f"{settings.num_classes:d}"),
    ]
    parts = [f'name: "{POSTPROCESS_OP}"']
    parts += [f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attributes]
    return " ".join(parts)


def anchors_center_size(anchors_yxyx: np.ndarray) -> np.ndarray:
    """Anchors as the op wants them: ``[N, 4]`` (ycenter, xcenter, height, width), float32, normalized.

    Uses the model's box coder (``spaghettinet.model.box_coder.to_center_size``) so the op decodes exactly as
    training encoded.
    """
    from spaghettinet.model.box_coder import to_center_size

    anchors = np.asarray(anchors_yxyx, dtype=np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise SpaghettiError(f"anchors must be [N, 4] yxyx, got shape {anchors.shape}")
    return np.asarray(to_center_size(anchors), dtype=np.float32)


def make_serving_function(model, settings: PostprocessSettings):
    """A function ``image [1, H, W, 3] float in [-1, 1] -> 4 tensors`` with the post-processing op attached.

    Args:
        model: detector from ``build_detector``: output dict ``box_encodings`` / ``class_logits``; ``model.anchors``.
        settings: the op's attributes.

    Returns:
        A plain Python callable for ``keras.export.ExportArchive.add_endpoint`` (which traces it).
    """
    tf = import_tensorflow()
    signature = postprocess_signature(settings)
    anchors = tf.constant(anchors_center_size(model.anchors))

    @tf.function(experimental_implements=signature)
    def detection_postprocess(box_encodings, class_scores, anchor_boxes):
        # Placeholder body: the converter replaces the whole function with the fused op. The dummy
        # outputs only need to exist; their shapes are those of the op's outputs.
        del box_encodings, class_scores, anchor_boxes
        k = settings.max_detections
        return (
            tf.zeros([1, k, 4], tf.float32),
            tf.zeros([1, k], tf.float32),
            tf.zeros([1, k], tf.float32),
            tf.zeros([1], tf.float32),
        )

    def serve(image):
        outputs = model(image, training=False)
        # The op applies no activation and skips column 0 (background) itself via num_classes.
        boxes, classes, scores, count = detection_postprocess(
            outputs["box_encodings"], tf.sigmoid(outputs["class_logits"]), anchors
        )
        return {
            OUTPUT_NAMES[0]: boxes,
            OUTPUT_NAMES[1]: classes,
            OUTPUT_NAMES[2]: scores,
            OUTPUT_NAMES[3]: count,
        }

    return serve


def write_saved_model(model, settings: PostprocessSettings, saved_model_dir: str | Path) -> Path:
    """Write a SavedModel whose ``serving_default`` signature runs the detector and the post-processing.

    Uses ``keras.export.ExportArchive``: a Keras 3 model attached to a ``tf.Module`` leaves its variables
    unfrozen in TFLite (NaN outputs, failed int8 calibration). The input is ``image``, float32
    ``[1, H, W, 3]`` already scaled to [-1, 1]; the outputs are the op's four tensors by canonical name.
    ``saved_model_dir`` is written directly (callers wrap it in ``atomic_path``).

    Args:
        model: detector from ``build_detector``.
        settings: the op's attributes.
        saved_model_dir: folder to create.

    Returns:
        ``saved_model_dir`` as a ``Path``.
    """
    tf = import_tensorflow()
    keras = import_keras()
    height, width = int(model.input_shape[1]), int(model.input_shape[2])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_SIGNATURE,
        make_serving_function(model, settings),
        input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(saved_model_dir), verbose=False)
    return Path(saved_model_dir)


def _converter(saved_model_dir: str | Path):
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SERVING_SIGNATURE]
    )
    converter.allow_custom_ops = True
    return converter


def _convert(converter, what: str) -> bytes:
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises many types (ConverterError, ValueError, RuntimeError)
        raise SpaghettiError(f"TFLite conversion ({what}) failed: {exc}") from exc
    if not flatbuffer:
        # Seen with mis-laid-out fake-quant weights: the converter returns an empty buffer.
        raise SpaghettiError(f"TFLite conversion ({what}) returned an empty model")
    return bytes(flatbuffer)


def convert_float(saved_model_dir: str | Path) -> bytes:
    """Float32 ``.tflite`` bytes (with the fused op), outputs in canonical order.

    Example:
        >>> tflite_bytes = convert_float("exported/saved_model")  # doctest: +SKIP
    """
    return canonicalize_outputs(_convert(_converter(saved_model_dir), "float32"))


#: ``DEQUANTIZE`` of a float16 constant: the version the converter's own float16 mode writes (TF 2.21; the rule is in
#: tensorflow/lite/tools/versioning/op_version.cc).
DEQUANTIZE_FLOAT16_VERSION = 3


def float16_weights(flatbuffer: bytes) -> tuple[bytes, dict]:
    """The float32 model with float16 weights: each float32 constant stored as float16 behind a ``DEQUANTIZE`` op.

    This is the layout of the converter's float16 mode (``optimizations=[DEFAULT]``,
    ``target_spec.supported_types=[tf.float16]``): half the size, computation still in float32 on CPUs, and
    what GPU delegates read as float16 weights. The converter itself cannot make it for our graph: the model's
    always-on concat fake-quant ops mark it as quantization-aware, and ``QuantizationMode.converter_flags`` in
    tensorflow/lite/python/lite.py picks integer quantization before float16, so it returns float32 weights with
    int8 concats instead (measured with TF 2.21: no float16 tensor, 24 int8 ones). Rewriting the float32 file
    keeps everything else of it (the concat ranges, the op, the output order) and changes only the weights.

    Kept in float32: the post-processing op's anchors (the op decodes every box from them, and float16 would move
    an anchor centre by up to 2.4e-4 of the image) and any constant that float16 cannot hold (beyond ±65504).

    Args:
        flatbuffer: a float32 ``.tflite`` without metadata (the packed labels after the flatbuffer would be lost).

    Returns:
        ``(bytes, info)``: the float16-weight model and ``{"float16_constants": n, "kept_float32": [names]}``.

    Example:
        >>> fp16_bytes, info = float16_weights(convert_float("exported/saved_model"))  # doctest: +SKIP
        >>> constant_types(fp16_bytes)["FLOAT16"] == info["float16_constants"]  # doctest: +SKIP
        True
    """
    from ai_edge_litert import schema_py_generated as schema

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    try:
        kept = {int(t) for t in _postprocess_operator(model_object).inputs}
    except SpaghettiError:  # no post-processing op: every constant is a weight
        kept = set()
    dequantize_ops, kept_names = [], []
    for index in range(len(subgraph.tensors)):  # the float16 copies appended below are past this range
        tensor = subgraph.tensors[index]
        data = model_object.buffers[tensor.buffer].data
        if tensor.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
            continue
        values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), "<f4")
        half = values.astype("<f2")
        if index in kept or not np.array_equal(np.isfinite(half), np.isfinite(values)):
            kept_names.append(tensor.name.decode("utf-8", "replace"))
            continue
        # The float16 copy takes over the buffer; the original tensor becomes the DEQUANTIZE output, so every op
        # that read the weight reads it as before, in float32.
        model_object.buffers[tensor.buffer].data = np.frombuffer(half.tobytes(), np.uint8)
        stored_tensor = schema.TensorT()
        stored_tensor.shape = np.asarray(tensor.shape, np.int32)
        stored_tensor.type = schema.TensorType.FLOAT16
        stored_tensor.name = tensor.name + b"/float16"
        stored_tensor.buffer = tensor.buffer
        subgraph.tensors.append(stored_tensor)
        stored = len(subgraph.tensors) - 1
        model_object.buffers.append(schema.BufferT())
        tensor.buffer = len(model_object.buffers) - 1
        dequantize = schema.OperatorT()
        dequantize.opcodeIndex = _opcode_index(
            model_object, schema.BuiltinOperator.DEQUANTIZE, DEQUANTIZE_FLOAT16_VERSION
        )
        dequantize.inputs = np.array([stored], np.int32)
        dequantize.outputs = np.array([index], np.int32)
        dequantize_ops.append(dequantize)
    # First in the graph, as the converter places them: every weight exists before the first op reads it.
    subgraph.operators = dequantize_ops + list(subgraph.operators)
    info = {"float16_constants": len(dequantize_ops), "kept_float32": kept_names}
    return (_write_model(model_object) if dequantize_ops else flatbuffer), info


def constant_types(flatbuffer: bytes) -> dict[str, int]:
    """How many constant tensors (weights, biases, anchors, shapes) the model stores per type, e.g. ``FLOAT16``.

    Example:
        >>> constant_types(open("model_fp16.tflite", "rb").read())  # doctest: +SKIP
        {'FLOAT16': 145, 'FLOAT32': 1, 'INT32': 12}
    """
    from ai_edge_litert import schema_py_generated as schema

    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model_object = _read_model(flatbuffer)
    counts: dict[str, int] = {}
    for tensor in model_object.subgraphs[0].tensors:
        data = model_object.buffers[tensor.buffer].data
        if data is not None and len(data) > 0:
            name = type_names[tensor.type]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def range_layers(model) -> list:
    """The layers of ``model`` that hold a tracked activation range (``min`` / ``max`` / ``range_steps``)."""
    from spaghettinet.model.quantize import RangeTracker

    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, RangeTracker) and hasattr(layer, "range_steps")
    ]


def _range_values(layers: list) -> list[tuple[float, float, float]]:
    return [
        (float(layer.range_min.numpy()), float(layer.range_max.numpy()), float(layer.range_steps.numpy()))
        for layer in layers
    ]


def _set_range_values(layers: list, values: list[tuple[float, float, float]]) -> None:
    for layer, (low, high, steps) in zip(layers, values, strict=True):
        layer.range_min.assign(low)
        layer.range_max.assign(high)
        layer.range_steps.assign(steps)


def calibrate_activation_ranges(
    model, images: list[np.ndarray], batch_size: int = CALIBRATION_BATCH, only_untrained: bool = True
) -> list[str]:
    """Set, from real images, every activation range that the checkpoint did not train; keep the others.

    A range that saw batches (``range_steps > 0``: a QAT checkpoint's ranges, the always-on concat ranges that
    float training tracks) is part of the trained model and stays as it is. A range with ``range_steps == 0``
    still holds its placeholder (0, 6): either the checkpoint was trained without QAT (post-training
    quantization), or the checkpoint did not hold that variable. It becomes the zero-debiased moving average of
    the calibration batches' min / max, computed by quantization-aware training-mode passes, in which batch norm
    uses its moving statistics and only the ranges change (``model.quantize.calibrate_quantization_ranges``).
    The model's mode is restored afterwards.

    Args:
        model: a detector (float or quantization-aware mode).
        images: raw RGB pixels ``[H, W, 3]`` in [0, 255] at the model's input size.
        batch_size: images per calibration pass.
        only_untrained: False calibrates every range afresh (post-training quantization of a QAT checkpoint's
            weights, for comparing PTQ with QAT).

    Returns:
        Names of the layers whose range was calibrated.
    """
    from spaghettinet.model.quantize import (
        calibrate_quantization_ranges,
        is_quantization_aware,
        set_quantization_aware,
    )

    if not images:
        raise DataError("no calibration images: post-training quantization needs real training images")
    layers = range_layers(model)
    before = _range_values(layers)
    untrained = [old[2] == 0 or not only_untrained for old in before]
    if not any(untrained):
        return []
    for layer, fresh in zip(layers, untrained, strict=True):
        if fresh:  # zero-debiasing then makes the first calibration batch set the range, not average with it
            layer.range_steps.assign(0.0)
    was_quantization_aware = is_quantization_aware(model)
    set_quantization_aware(model, True)
    try:
        batches = (
            np.stack(images[start : start + batch_size]).astype(np.float32) * (2.0 / 255.0) - 1.0
            for start in range(0, len(images), batch_size)
        )
        calibrate_quantization_ranges(model, batches)
    finally:
        set_quantization_aware(model, was_quantization_aware)
    after = _range_values(layers)
    _set_range_values(
        layers, [new if fresh else old for old, new, fresh in zip(before, after, untrained, strict=True)]
    )
    return [layer.name for layer, fresh in zip(layers, untrained, strict=True) if fresh]


def floor_activation_ranges(model, min_width: float = 0.0) -> list[str]:
    """Widen degenerate activation ranges: dead ones to :data:`DEAD_RANGE_FILL`, others to at least ``min_width``.

    The upper end moves and 0 stays inside. A dead range belongs to a tensor that was 0 (or constant) on every
    calibration image, so a wider range changes nothing the model computes there; it only keeps the scale in a
    ratio to its neighbours that XNNPACK accepts.

    Args:
        model: a detector (any mode).
        min_width: narrowest ``max - min`` allowed for live ranges (0: leave them as they are).

    Returns:
        Names of the layers whose range was widened.
    """
    widened = []
    for layer in range_layers(model):
        low = min(float(layer.range_min.numpy()), 0.0)
        high = max(float(layer.range_max.numpy()), 0.0)
        width = DEAD_RANGE_FILL if high - low < DEAD_RANGE_WIDTH else max(high - low, min_width)
        if width > high - low:
            layer.range_min.assign(low)
            layer.range_max.assign(low + width)
            widened.append(layer.name)
    return widened


def _xnnpack_refusal(flatbuffer: bytes) -> str | None:
    """Why LiteRT with its default delegates (XNNPACK) cannot load the model, or None when it can."""
    from spaghettinet.deploy.runtime import TfliteDetector

    try:
        TfliteDetector(flatbuffer)
    except DataError as exc:
        return exc.message
    return None


#: A quantized bias at the end of int32 is one the converter clamped: its true value did not fit.
_INT32_LIMIT = 2**31 - 1


def saturated_biases(flatbuffer: bytes) -> list[str]:
    """Ops whose int32 bias the converter clamped, so the int8 model computes another function there.

    A bias is stored at the scale ``input_scale * weight_scale``. After a short training, a tensor that feeds a
    conv can span a range of 1e-4 or less while the conv's bias stays large (the class head's prior, about
    -4.6): the bias then needs more than 31 bits, the converter silently clamps it, and the int8 model's scores
    there come out wrong (0.5 instead of 0.01). Widening the narrow input range fixes it.

    Args:
        flatbuffer: an int8 ``.tflite``.

    Returns:
        The output tensor names of the ops with a clamped bias (empty when every bias fits).
    """
    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    int32_type = 2  # schema TensorType.INT32
    found = []
    for operator in subgraph.operators:
        inputs = [int(t) for t in operator.inputs] if operator.inputs is not None else []
        if len(inputs) < 3 or inputs[2] < 0:
            continue
        bias = subgraph.tensors[inputs[2]]
        data = model_object.buffers[bias.buffer].data
        if bias.type != int32_type or data is None or len(data) == 0:
            continue
        values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype="<i4")
        if np.any(np.abs(values.astype(np.int64)) >= _INT32_LIMIT):
            found.append(subgraph.tensors[int(operator.outputs[0])].name.decode("utf-8", "replace"))
    return found


def _bias_overflow(flatbuffer: bytes) -> str | None:
    """Why the int8 model computes wrong values (clamped biases), or None when every bias fits."""
    clamped = saturated_biases(flatbuffer)
    if not clamped:
        return None
    return (
        f"{len(clamped)} op(s) have a bias that does not fit int32 at their input's narrow range "
        f"(first: {clamped[0].split(';')[0]})"
    )


def convert_int8(model, settings: PostprocessSettings, work_dir: str | Path) -> tuple[bytes, dict]:
    """Full-int8 ``.tflite`` through the model's own fake-quant graph: uint8 pixels in, float outputs from the op.

    Post-training quantization and a quantization-aware checkpoint go the same way: the model is switched to
    quantization-aware mode (batch norm folded, per-channel weight fake-quant, activation fake-quant with the
    model's ranges: call :func:`calibrate_activation_ranges` first for those that were not trained), dead ranges
    are widened (:func:`floor_activation_ranges`), and the graph is converted with its fake-quant ranges, so every
    range in the file is one we chose, never one the converter derived from a degenerate calibration. If LiteRT's
    default delegate still refuses the model, or a conv's bias does not fit int32 (:func:`saturated_biases`), live
    ranges get the next floor of :data:`RANGE_FLOORS` and the conversion is repeated. The model's mode and ranges are restored afterwards.

    Args:
        model: detector restored from a checkpoint (float or quantization-aware mode).
        settings: post-processing attributes.
        work_dir: scratch folder for the quantization-aware SavedModels.

    Returns:
        ``(bytes, info)``: the model (outputs in canonical order, input checked to be uint8 (2/255, 128)) and
        ``{"range_floor": ..., "widened_ranges": [layer names]}``.

    Raises:
        SpaghettiError: XNNPACK refuses the model, or a bias overflows, even with the widest floor.
    """
    from spaghettinet.model.quantize import is_quantization_aware, set_quantization_aware

    layers = range_layers(model)
    original = _range_values(layers)
    was_quantization_aware = is_quantization_aware(model)
    refusal = None
    try:
        for attempt, floor in enumerate(RANGE_FLOORS):
            _set_range_values(layers, original)
            set_quantization_aware(model, True)
            widened = floor_activation_ranges(model, floor)
            saved_model_dir = Path(work_dir) / f"saved_model_int8_{attempt}"
            write_saved_model(model, settings, saved_model_dir)
            flatbuffer = convert_int8_qat(saved_model_dir)
            refusal = _xnnpack_refusal(flatbuffer) or _bias_overflow(flatbuffer)
            if refusal is None:
                return flatbuffer, {"range_floor": floor, "widened_ranges": widened}
    finally:
        _set_range_values(layers, original)
        set_quantization_aware(model, was_quantization_aware)
    raise SpaghettiError(
        f"no usable int8 model even with activation ranges at least {RANGE_FLOORS[-1]} wide: {refusal}"
    )


#: XNNPACK's int8 conv kernels on x86 without AMX (AVX2, AVX-512 VNNI) read a conv's input channels in blocks of 8
#: at every kernel tap (``kr = 8`` in the qs8_qc8w entries of google/XNNPACK ``src/configs/gemm-config.c``), so a
#: conv over 3 channels multiplies 8 at each tap, 5 of them padding.
INT8_CHANNEL_BLOCK = 8
#: A stride-2 conv is rewritten when the rewrite cuts its padded multiply-adds per output value by at least this.
SPACE_TO_DEPTH_MIN_SAVING = 0.2
#: Random images on which a rewritten int8 model must give exactly the original's tensors.
REWRITE_CHECK_IMAGES = 2


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def space_to_depth_kernel(kernel: int, pad_before: int) -> tuple[int, int] | None:
    """The stride-1 kernel over 2x2 pixel blocks that computes a stride-2 ``SAME`` conv along one axis.

    A block tap ``b`` (0 ≤ b < side) and a position ``d`` (0 or 1) in the block see the original tap
    ``2 * b + d - offset``; taps outside ``[0, kernel)`` get zero weights. The block conv is itself ``SAME`` (it
    pads ``(side - 1) // 2`` blocks before), so it reads exactly the pixels, padding included, that the stride-2
    conv reads.

    Args:
        kernel: the stride-2 conv's kernel size along the axis.
        pad_before: the stride-2 conv's padding before the first pixel (``SAME`` on an even size:
            ``(kernel - 2) // 2``).

    Returns:
        ``(side, offset)`` with the smallest odd ``side``, or None when no block kernel covers the taps.

    Example:
        >>> space_to_depth_kernel(5, 1)
        (3, 1)
    """
    for side in range(1, kernel + 2, 2):
        offset = 2 * ((side - 1) // 2) - pad_before
        if offset >= 0 and 2 * side - 1 - offset >= kernel - 1:
            return side, offset
    return None


def space_to_depth_filter(
    filter_ohwi: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Rearrange a stride-2 conv filter ``[O, KH, KW, C]`` for its input after ``SPACE_TO_DEPTH`` (block 2).

    TFLite's ``SPACE_TO_DEPTH`` puts pixel ``(dy, dx)`` of each 2x2 block at channels ``(2 * dy + dx) * C ...``.

    Args:
        filter_ohwi: the original filter.
        rows: ``(side, offset)`` along the height (:func:`space_to_depth_kernel`).
        cols: the same along the width.

    Returns:
        ``[O, side_h, side_w, 4 * C]``, zero where no original tap falls.
    """
    out_channels, kernel_h, kernel_w, channels = filter_ohwi.shape
    (side_h, offset_h), (side_w, offset_w) = rows, cols
    blocked = np.zeros((out_channels, side_h, side_w, 4 * channels), filter_ohwi.dtype)
    for block_y in range(side_h):
        for block_x in range(side_w):
            for dy in (0, 1):
                for dx in (0, 1):
                    tap_y, tap_x = 2 * block_y + dy - offset_h, 2 * block_x + dx - offset_w
                    if 0 <= tap_y < kernel_h and 0 <= tap_x < kernel_w:
                        first = (2 * dy + dx) * channels
                        blocked[:, block_y, block_x, first : first + channels] = filter_ohwi[
                            :, tap_y, tap_x, :
                        ]
    return blocked


def _space_to_depth_plan(model_object, subgraph, operator):
    """``(rows, cols)`` block kernels when this op is an int8 stride-2 ``SAME`` conv worth rewriting, else None."""
    from ai_edge_litert import schema_py_generated as schema

    code = model_object.operatorCodes[operator.opcodeIndex]
    options = operator.builtinOptions
    if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.CONV_2D or options is None:
        return None
    if (options.strideH, options.strideW, options.dilationHFactor, options.dilationWFactor) != (2, 2, 1, 1):
        return None
    if options.padding != schema.Padding.SAME:
        return None
    image, weights = (subgraph.tensors[int(t)] for t in operator.inputs[:2])
    data = model_object.buffers[weights.buffer].data
    if image.type != schema.TensorType.INT8 or weights.type != schema.TensorType.INT8 or data is None:
        return None
    if len(image.shape) != 4 or image.shape[1] % 2 or image.shape[2] % 2 or len(weights.shape) != 4:
        return None
    _, kernel_h, kernel_w, channels = (int(v) for v in weights.shape)
    # SAME with stride 2 on an even size pads kernel - 2 in all, the smaller half before (TFLite's padding rule).
    rows = space_to_depth_kernel(kernel_h, max(kernel_h - 2, 0) // 2)
    cols = space_to_depth_kernel(kernel_w, max(kernel_w - 2, 0) // 2)
    if rows is None or cols is None:
        return None
    padded_now = kernel_h * kernel_w * _round_up(channels, INT8_CHANNEL_BLOCK)
    padded_after = rows[0] * cols[0] * _round_up(4 * channels, INT8_CHANNEL_BLOCK)
    if padded_after > (1.0 - SPACE_TO_DEPTH_MIN_SAVING) * padded_now:
        return None
    return rows, cols


def _copy_quantization(quantization):
    from ai_edge_litert import schema_py_generated as schema

    copied = schema.QuantizationParametersT()
    copied.scale = None if quantization.scale is None else list(quantization.scale)
    copied.zeroPoint = None if quantization.zeroPoint is None else list(quantization.zeroPoint)
    copied.min = None if quantization.min is None else list(quantization.min)
    copied.max = None if quantization.max is None else list(quantization.max)
    copied.quantizedDimension = quantization.quantizedDimension
    return copied


def _add_tensor(model_object, subgraph, like, name: bytes, shape, data: np.ndarray | None = None) -> int:
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
    model_object.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = np.asarray(shape, np.int32)
    tensor.type = like.type
    tensor.name = name
    tensor.buffer = len(model_object.buffers) - 1
    tensor.quantization = _copy_quantization(like.quantization)
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _opcode_index(model_object, builtin: int, version: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for index, code in enumerate(model_object.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # the schema's int8 field holds codes below 127 only
    code.version = version
    model_object.operatorCodes.append(code)
    return len(model_object.operatorCodes) - 1


def _rewrite_space_to_depth(flatbuffer: bytes) -> tuple[bytes, list[str]]:
    from ai_edge_litert import schema_py_generated as schema

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    rewritten = []
    position = 0
    while position < len(subgraph.operators):
        operator = subgraph.operators[position]
        plan = _space_to_depth_plan(model_object, subgraph, operator)
        if plan is None:
            position += 1
            continue
        (side_h, _), (side_w, _) = plan
        image_index, weights_index = (int(t) for t in operator.inputs[:2])
        image, weights = subgraph.tensors[image_index], subgraph.tensors[weights_index]
        original = np.frombuffer(
            np.asarray(model_object.buffers[weights.buffer].data, np.uint8).tobytes(), np.int8
        ).reshape([int(v) for v in weights.shape])
        blocked = space_to_depth_filter(original, *plan)
        name = subgraph.tensors[int(operator.outputs[0])].name.split(b";")[0]
        blocks_index = _add_tensor(
            model_object,
            subgraph,
            image,
            name + b"/space_to_depth",
            [
                int(image.shape[0]),
                int(image.shape[1]) // 2,
                int(image.shape[2]) // 2,
                4 * int(image.shape[3]),
            ],
        )
        # A new filter tensor and buffer: the converter may share one constant between ops.
        blocked_weights_index = _add_tensor(
            model_object, subgraph, weights, name + b"/space_to_depth_filter", blocked.shape, blocked
        )
        space_to_depth = schema.OperatorT()
        # Version 2 is SPACE_TO_DEPTH on int8 (tensorflow/lite/tools/versioning/op_version.cc).
        space_to_depth.opcodeIndex = _opcode_index(model_object, schema.BuiltinOperator.SPACE_TO_DEPTH, 2)
        space_to_depth.inputs = np.array([image_index], np.int32)
        space_to_depth.outputs = np.array([blocks_index], np.int32)
        space_to_depth.builtinOptionsType = schema.BuiltinOptions.SpaceToDepthOptions
        space_to_depth.builtinOptions = schema.SpaceToDepthOptionsT()
        space_to_depth.builtinOptions.blockSize = 2
        operator.inputs = np.array([blocks_index, blocked_weights_index, *operator.inputs[2:]], np.int32)
        operator.builtinOptions.strideH = operator.builtinOptions.strideW = 1
        subgraph.operators.insert(position, space_to_depth)
        rewritten.append(
            f"{name.decode('utf-8', 'replace')}: {original.shape[1]}x{original.shape[2]}/2 over "
            f"{original.shape[3]} channels -> {side_h}x{side_w}/1 over {4 * original.shape[3]}"
        )
        position += 2
    return (_write_model(model_object) if rewritten else flatbuffer), rewritten


def _tensors_for_check(flatbuffer: bytes, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Every model output and the post-processing op's inputs (if any), per image, with LiteRT's default delegates.

    The op's inputs are the raw box encodings and scores: compared exactly, they check every anchor, where the op's
    few detections above its threshold would check almost none.
    """
    from ai_edge_litert.interpreter import Interpreter

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    watched = [int(t) for t in subgraph.outputs]
    try:
        watched += [int(t) for t in _postprocess_operator(model_object).inputs[:2]]
    except SpaghettiError:  # no post-processing op: the outputs are the raw tensors
        pass
    subgraph.outputs = np.array(watched, np.int32)
    interpreter = Interpreter(model_content=_write_model(model_object), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    found = []
    for image in inputs:
        interpreter.set_tensor(detail["index"], image)
        interpreter.invoke()
        found.append([interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()])
    return found


def postprocess_inputs(flatbuffer: bytes, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The post-processing op's two inputs for each image: raw box encodings and class scores at every anchor.

    Args:
        flatbuffer: a ``.tflite`` with the fused op.
        images: model inputs as the model takes them (``[1, H, W, 3]``, its input type).

    Returns:
        Per image ``(box_encodings [1, N, 4], class_scores [1, N, C + 1])`` (scores after the sigmoid).

    Example:
        >>> encodings, scores = postprocess_inputs(fp16_bytes, [image])[0]  # doctest: +SKIP
    """
    return [(found[-2], found[-1]) for found in _tensors_for_check(flatbuffer, images)]


def space_to_depth_strided_convs(flatbuffer: bytes, seed: int = 0) -> tuple[bytes, dict]:
    """Rewrite int8 stride-2 convs over few channels as ``SPACE_TO_DEPTH`` + stride-1 conv, exactly.

    The stem of SpaghettiNet is a 5x5 stride-2 conv over the 3 RGB channels. XNNPACK's int8 kernels on AVX2 and
    AVX-512 VNNI CPUs pad the channels at each of the 25 taps to 8 (:data:`INT8_CHANNEL_BLOCK`): 200
    multiply-adds per output value for 75 useful ones, which made the stem 14 % of the int8 model's instructions
    on an AVX2 CPU at 320² (twice what the float model spends there). After a 2x2 ``SPACE_TO_DEPTH`` the same
    conv is a 3x3 stride-1 conv over 12 channels (144 padded multiply-adds, rearranged weights and zeros where no
    tap falls). Every accumulator sums the same products, so the int8 model computes exactly the same
    integers; this is checked on random images, and the original model is kept if any tensor differs. Only int8
    convs whose padded work drops by :data:`SPACE_TO_DEPTH_MIN_SAVING` are rewritten; the float model is not
    (XNNPACK's float kernels pad nothing, the rewrite would only add zeros). ``SPACE_TO_DEPTH`` is an Edge TPU
    op and a builtin of every TFLite runtime.

    Args:
        flatbuffer: an int8 ``.tflite`` (without metadata: the associated files after the flatbuffer would be lost).
        seed: seed of the random check images.

    Returns:
        ``(bytes, info)``: the model to ship and ``{"rewritten": [one line per conv], "identical": bool}``
        (``identical`` False: a mismatch was found and the original model is returned).

    Example:
        >>> int8_bytes, info = space_to_depth_strided_convs(int8_bytes)  # doctest: +SKIP
        >>> info["rewritten"]
        ['spaghettinet_edgetpu_s_1/s0_1/s0_stem_1/Relu6: 5x5/2 over 3 channels -> 3x3/1 over 12']
    """
    rewritten_bytes, rewritten = _rewrite_space_to_depth(flatbuffer)
    if not rewritten:
        return flatbuffer, {"rewritten": [], "identical": True}
    from ai_edge_litert import schema_py_generated as schema

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    image = subgraph.tensors[int(subgraph.inputs[0])]
    shape = [int(v) for v in image.shape]
    rng = np.random.default_rng(seed)
    if image.type in (schema.TensorType.UINT8, schema.TensorType.INT8):
        dtype = np.uint8 if image.type == schema.TensorType.UINT8 else np.int8
        bounds = np.iinfo(dtype)
        images = [
            rng.integers(bounds.min, bounds.max, size=shape, endpoint=True).astype(dtype)
            for _ in range(REWRITE_CHECK_IMAGES)
        ]
    else:
        images = [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(REWRITE_CHECK_IMAGES)]
    expected, found = _tensors_for_check(flatbuffer, images), _tensors_for_check(rewritten_bytes, images)
    identical = all(
        np.array_equal(a, b)
        for want, got in zip(expected, found, strict=True)
        for a, b in zip(want, got, strict=True)
    )
    if not identical:
        return flatbuffer, {"rewritten": [], "identical": False, "refused": rewritten}
    return rewritten_bytes, {"rewritten": rewritten, "identical": True}


def convert_int8_qat(saved_model_dir: str | Path) -> bytes:
    """Full-int8 ``.tflite`` of a SavedModel written in quantization-aware mode: ranges come from its fake-quant ops.

    Only ``optimizations=[DEFAULT]`` and the uint8 input type are set: adding ``supported_ops=INT8`` without a
    representative dataset makes the converter refuse the QAT graph (a ValueError).
    """
    tf = import_tensorflow()
    converter = _converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.uint8
    flatbuffer = canonicalize_outputs(_convert(converter, "int8"))
    check_uint8_input(flatbuffer)
    return flatbuffer


def _read_model(flatbuffer: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))


def _write_model(model_object) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))


def _postprocess_operator(model_object):
    subgraph = model_object.subgraphs[0]
    for operator in subgraph.operators:
        code = model_object.operatorCodes[operator.opcodeIndex]
        if (code.customCode or b"") == POSTPROCESS_OP.encode():
            return operator
    raise SpaghettiError(f"the converted model has no {POSTPROCESS_OP} op")


def canonicalize_outputs(flatbuffer: bytes) -> bytes:
    """Make the model outputs the op's outputs in its own order, with canonical names.

    The converter lists the op's four outputs in another order (TF 2.21: scores, boxes, count, classes), while
    clients and metadata writers read outputs by position: boxes, classes, scores, num_detections. This
    rewrites ``subgraph.outputs``, the output tensors' names and the signature's outputs to match.

    Args:
        flatbuffer: converted ``.tflite`` bytes containing ``TFLite_Detection_PostProcess``.

    Returns:
        The rewritten bytes.
    """
    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    order = [int(t) for t in _postprocess_operator(model_object).outputs]
    subgraph.outputs = np.array(order, dtype=np.int32)
    for tensor_index, name in zip(order, OUTPUT_NAMES, strict=True):
        subgraph.tensors[tensor_index].name = name.encode()
    for signature in model_object.signatureDefs or []:
        by_tensor = {int(x.tensorIndex): x for x in signature.outputs}
        signature.outputs = [by_tensor[t] for t in order if t in by_tensor]
        for output, name in zip(signature.outputs, OUTPUT_NAMES, strict=False):
            output.name = name.encode()
    return _write_model(model_object)


def input_quantization(flatbuffer: bytes) -> tuple[str, float, int]:
    """The input tensor's type name and (scale, zero point); scale 0 and zero point 0 for float inputs.

    Example:
        >>> input_quantization(open("model_int8.tflite", "rb").read())  # doctest: +SKIP
        ('UINT8', 0.00784313725490196, 128)
    """
    from ai_edge_litert import schema_py_generated as schema

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    tensor = subgraph.tensors[int(subgraph.inputs[0])]
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    quantization = tensor.quantization
    if quantization is None or quantization.scale is None or len(quantization.scale) == 0:
        return type_names[tensor.type], 0.0, 0
    return type_names[tensor.type], float(quantization.scale[0]), int(quantization.zeroPoint[0])


def check_uint8_input(flatbuffer: bytes) -> None:
    """Raise unless the input is uint8 with scale 2/255 and zero point 128 (raw RGB pixels in).

    A different scale means the calibration images did not span [-1, 1]; MediaPipe would then feed pixels the
    model reads at the wrong scale, with no error anywhere else.
    """
    type_name, scale, zero_point = input_quantization(flatbuffer)
    if type_name != "UINT8" or abs(scale - UINT8_INPUT_SCALE) > 1e-6 or zero_point != UINT8_INPUT_ZERO_POINT:
        raise SpaghettiError(
            f"int8 model input is {type_name} with scale {scale:.8f} and zero point {zero_point}; expected UINT8 with "
            f"scale {UINT8_INPUT_SCALE:.8f} (2/255) and zero point {UINT8_INPUT_ZERO_POINT}, so that raw RGB pixels "
            "are the input. The quantization ranges of the model input are wrong."
        )
