"""``export``: a trained checkpoint → SavedModel, float, float16-weight and full-int8 ``.tflite``, optional ONNX, a report.

Writes into ``out``:

* ``saved_model/``: serving signature ``serving_default`` (input ``image`` float32 ``[1, H, W, 3]`` in [-1, 1],
  outputs boxes / classes / scores / num_detections through the fused post-processing), float model;
* ``model_float.tflite``: float32, input scaled ``x * 2/255 - 1`` (metadata normalization 127.5 / 127.5);
* ``model_fp16.tflite``: the float model with float16 weights (half the size, float32 compute; for GPU delegates),
  same input, op, metadata and labels (``tflite.float16_weights``);
* ``model_int8.tflite``: int8 everywhere but the post-processing, uint8 pixels in (scale 2/255, zero point 128),
  its RGB stem conv laid out for XNNPACK's int8 kernels (``tflite.space_to_depth_strided_convs``);
* ``model.onnx`` (``onnx=True``, needs the ``onnx`` extra): float, the post-processing as ONNX ops with
  ``NonMaxSuppression`` (``onnx_export``), checked with onnxruntime against the float ``.tflite``;
* ``labels.txt``: foreground class names, one per line, 0-based (also packed inside every ``.tflite`` file);
* ``export_report.json``: ops and tensor types, Edge TPU compatibility, each model's detections against the Keras
  model (and the fp16 and ONNX models' against the float ``.tflite``), and each model's COCO mAP on test images.

Every file is written to a temporary name and renamed, so an interrupted export leaves no half-written output.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.deploy import edgetpu, metadata, tflite
from spaghettinet.errors import DataError, SpaghettiError, UsageError
from spaghettinet.io_utils import atomic_path, write_bytes_atomic, write_text_atomic
from spaghettinet.model.box_iou import iou_matrix

QUANTIZE_CHOICES = ("auto", "qat", "ptq", "none")

#: Calibration images for post-training quantization; a few dozen real images give stable ranges.
DEFAULT_CALIBRATION_IMAGES = 64
#: Test images for the int8-vs-Keras comparison and the float/int8 mAP (the whole split when smaller).
DEFAULT_CHECK_IMAGES = 100
#: IoU above which an int8 detection counts as the same object as a Keras detection of the same class.
MATCH_IOU = 0.5
#: Largest score difference, over every anchor of every check image, that the fp16 model may show against the
#: float model. A float16 weight is its float32 value to 2**-11 (relative); measured on the demo model (S, 160²,
#: QAT, AP50 0.70, 60 test images, 552 anchors each): mean 1.3e-4, max 5.6e-3, the max where a value sits on a
#: rounding edge of the always-on 8-bit concat quantization and moves a whole step (Keras against the float file
#: shows the same, max 9.4e-4). Set at 3.5 times that max and a quarter of the int8 model's largest (8e-2): beyond
#: it, the fp16 file is broken, not rounded.
FP16_MAX_SCORE_DIFFERENCE = 2e-2
#: Largest decoded box coordinate difference over every anchor, as a fraction of the image (1.6 pixels at 320²);
#: measured on the same model: mean 8.4e-5, max 1.9e-3.
FP16_MAX_BOX_DIFFERENCE = 5e-3


@dataclass
class ExportResult:
    """What :func:`export` wrote and measured.

    Args:
        out: the export folder.
        saved_model: ``out/saved_model``.
        float_model: ``out/model_float.tflite``.
        int8_model: ``out/model_int8.tflite``, or None with ``quantize="none"``.
        fp16_model: ``out/model_fp16.tflite``.
        onnx_model: ``out/model.onnx``, or None without ``onnx=True``.
        labels: ``out/labels.txt``.
        report_path: ``out/export_report.json``.
        quantization: ``"qat"``, ``"ptq"`` or ``"none"`` (what was done, ``auto`` resolved).
        step: training step of the checkpoint.
        report: the report's content (also in ``report_path``).
    """

    out: Path
    saved_model: Path
    float_model: Path
    int8_model: Path | None
    labels: Path
    report_path: Path
    quantization: str
    step: int
    fp16_model: Path | None = None
    onnx_model: Path | None = None
    report: dict = field(default_factory=dict)


def default_regular_nms(num_classes: int) -> bool:
    """Whether an export without ``--regular-nms``/``--fast-nms`` runs NMS per class.

    With one class both kinds give the same boxes, and fast NMS is the cheaper. With several, fast NMS keeps one
    class per anchor and lets a box of one class suppress an overlapping box of another, so two neighbouring
    objects of similar classes (two boards side by side) lose one of them, and COCO's per-class matching counts
    that as a miss. ``benchmarks/bench_nms.py`` measures both on a trained model (AP and latency).

    Args:
        num_classes: the model's classes.

    Returns:
        True for two classes or more.

    Example:
        >>> default_regular_nms(1), default_regular_nms(4)
        (False, True)
    """
    return num_classes > 1


def resolve_quantization(requested: str, checkpoint_is_qat: bool, checkpoint: str | Path) -> str:
    """Turn ``--quantize`` into what export does: ``auto`` is ``qat`` for a QAT checkpoint, else ``ptq``.

    Raises:
        UsageError: unknown choice, or ``qat`` asked of a checkpoint that was not trained quantization-aware.

    Example:
        >>> resolve_quantization("auto", False, "ckpt-10")
        'ptq'
    """
    if requested not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {requested!r}")
    if requested == "auto":
        return "qat" if checkpoint_is_qat else "ptq"
    if requested == "qat" and not checkpoint_is_qat:
        raise UsageError(
            "--quantize qat needs a checkpoint trained quantization-aware (a pipeline.config with a "
            "graph_rewriter { quantization { delay: N } } block, trained past N steps); use --quantize ptq",
            checkpoint,
        )
    return requested


def _record_paths(config, reader) -> list[str]:
    return [str(config.resolve_path(p)) for p in reader.input_paths]


def load_images(config, reader, limit: int) -> list:
    """Up to ``limit`` examples from a config input reader's TFRecords (``data.tfrecord.read_examples``)."""
    from spaghettinet.data.tfrecord import read_examples

    paths = _record_paths(config, reader)
    if not paths:
        return []
    examples = []
    for example in read_examples(paths):
        examples.append(example)
        if len(examples) >= limit:
            break
    return examples


def _model_pixels(example, size: tuple[int, int]) -> np.ndarray:
    from spaghettinet.deploy.runtime import resize_for_model

    return resize_for_model(example.decode_image(), size)


def compare_detections(reference: list, candidate: list) -> dict:
    """Match each reference detection with the best-overlapping candidate detection of the same class.

    Args:
        reference: per image, ``(boxes [K, 4], classes [K], scores [K])`` (the Keras model's).
        candidate: the same for the model under test (the int8 ``.tflite``), boxes clipped to [0, 1].

    Returns:
        ``reference_detections``, ``candidate_detections``, ``matched`` (IoU ≥ 0.5, same class),
        ``matched_fraction``, ``mean_iou`` / ``min_iou`` of matches, ``mean_score_difference`` /
        ``max_score_difference`` (absolute) of matches.
    """
    ious, score_differences = [], []
    total_reference = total_candidate = 0
    for (ref_boxes, ref_classes, ref_scores), (boxes, classes, scores) in zip(
        reference, candidate, strict=True
    ):
        total_reference += len(ref_scores)
        total_candidate += len(scores)
        used = np.zeros(len(scores), bool)
        for box, cls, score in zip(ref_boxes, ref_classes, ref_scores, strict=True):
            overlaps = iou_matrix([box], boxes)[0]
            overlaps[(np.asarray(classes) != cls) | used] = -1.0
            if len(overlaps) == 0 or overlaps.max() < MATCH_IOU:
                continue
            best = int(overlaps.argmax())
            used[best] = True
            ious.append(float(overlaps[best]))
            score_differences.append(abs(float(scores[best]) - float(score)))
    return {
        "reference_detections": total_reference,
        "candidate_detections": total_candidate,
        "matched": len(ious),
        "matched_fraction": (len(ious) / total_reference) if total_reference else None,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "min_iou": float(np.min(ious)) if ious else None,
        "mean_score_difference": float(np.mean(score_differences)) if ious else None,
        "max_score_difference": float(np.max(score_differences)) if ious else None,
    }


def _keras_detections(model, settings: tflite.PostprocessSettings, pixels: np.ndarray):
    """The Keras model's detections under the same NMS rules as the exported op (fast or regular)."""
    outputs = model(pixels[np.newaxis] * (2.0 / 255.0) - 1.0, training=False)
    detections = tflite.op_detections(
        settings,
        np.asarray(outputs["box_encodings"])[0],
        np.asarray(outputs["class_logits"])[0],
        model.anchors,
    )
    return detections.boxes, detections.classes, detections.scores


def _tflite_detections(detector, pixels: np.ndarray):
    found = detector.detect(pixels)
    return np.clip(found.boxes, 0.0, 1.0), found.classes, found.scores


def _coco_map(examples: list, detections: list, class_names: list[str]) -> dict:
    """COCO metrics of per-image ``(boxes, classes 0-based, scores)`` against the examples' ground truth.

    Args:
        examples: ``data.tfrecord.Example`` records (normalized boxes, 1-based classes).
        detections: per example, ``(boxes [K, 4] normalized, classes [K] 0-based, scores [K])``.
        class_names: label-map names of classes 1..C.

    Returns:
        ``AP``, ``AP50``, ``AP75`` (None where COCO has no value) and ``per_class_ap``.
    """
    from spaghettinet.coco_metrics import ImageDetections, ImageGroundTruth, coco_metrics

    ground_truth = [
        ImageGroundTruth(
            image_id=index,
            width=int(example.width),
            height=int(example.height),
            boxes=np.asarray(example.boxes, np.float32).reshape(-1, 4),
            classes=np.asarray(example.classes, np.int64),
            file_name=example.filename,
        )
        for index, example in enumerate(examples)
    ]
    predicted = [
        ImageDetections(
            image_id=index,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(scores, np.float32),
            classes=np.asarray(classes, np.int64),
        )
        for index, (boxes, classes, scores) in enumerate(detections)
    ]
    result = coco_metrics(ground_truth, predicted, class_names)
    return {"AP": result.ap, "AP50": result.ap50, "AP75": result.ap75, "per_class_ap": result.per_class_ap}


def export(
    config,
    checkpoint: str | Path,
    out: str | Path,
    max_detections: int = 10,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.6,
    regular_nms: bool | None = None,
    quantize: str = "auto",
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    check_images: int = DEFAULT_CHECK_IMAGES,
    run_compiler: bool = True,
    onnx: bool = False,
) -> ExportResult:
    """Export a trained checkpoint for deployment (see the module docstring for the files written).

    Args:
        config: a ``PipelineConfig`` or the path of a ``pipeline.config``.
        checkpoint: a ``ckpt-<step>`` prefix, or a model directory (its latest checkpoint).
        out: export folder (created; existing files of the same names are replaced).
        max_detections: rows in each output (K).
        score_threshold: the op's NMS score threshold; meaningful values only (the op's attribute is written
            with ``%f``, so values below 5e-7 become 0).
        iou_threshold: the op's NMS IoU threshold, in (0, 1].
        regular_nms: per-class NMS (True) or the op's class-agnostic fast NMS (False); None chooses by the
            number of classes (:func:`default_regular_nms`).
        quantize: ``auto`` (QAT when the checkpoint was trained quantization-aware, else PTQ), ``qat``, ``ptq``,
            or ``none`` (no int8 model).
        calibration_images: training images used to calibrate PTQ.
        check_images: test images for the detection comparisons and mAP.
        run_compiler: run ``edgetpu_compiler`` when it is on PATH.
        onnx: also write ``model.onnx`` (needs ``pip install 'spaghettinet[onnx]'``).

    Returns:
        :class:`ExportResult`.

    Raises:
        DataError: unreadable config / checkpoint / records, or an int8 model with float ops left.
        UsageError: impossible options, or ``onnx=True`` without the ``onnx`` extra installed.

    Example:
        >>> result = export("training/pipeline.config", "training/training-output", "exported")  # doctest: +SKIP
        >>> result.int8_model
        PosixPath('exported/model_int8.tflite')
    """
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.model.quantize import set_quantization_aware
    from spaghettinet.pipeline_config import read_config
    from spaghettinet.training.checkpoints import restore_detector

    if not isinstance(calibration_images, int) or calibration_images < 1:
        raise UsageError(f"calibration_images must be a positive integer, got {calibration_images!r}")
    if onnx:  # before the slow part: a missing extra is said at once
        from spaghettinet.deploy.onnx_export import require_onnx_packages

        require_onnx_packages()
    cfg = read_config(config) if isinstance(config, str | Path) else config
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out must be a folder, and this is a file", out)
    settings = tflite.PostprocessSettings(
        num_classes=cfg.model.num_classes,
        max_detections=max_detections,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        use_regular_nms=default_regular_nms(cfg.model.num_classes)
        if regular_nms is None
        else bool(regular_nms),
        scales=tuple(float(s) for s in cfg.model.box_coder_scales),
    )
    try:
        settings.validate()
    except SpaghettiError as exc:
        raise UsageError(exc.message) from exc

    label_map_path = cfg.resolve_path(cfg.train_input.label_map_path)
    class_names = list(read_label_map(label_map_path).names)
    if len(class_names) != cfg.model.num_classes:
        raise DataError(
            f"has {len(class_names)} classes but the config says num_classes: {cfg.model.num_classes}",
            label_map_path,
        )

    model, step, checkpoint_is_qat = restore_detector(cfg, checkpoint)
    quantization = resolve_quantization(quantize, checkpoint_is_qat, checkpoint)
    size = tuple(int(v) for v in cfg.model.input_size)

    test_examples = load_images(cfg, cfg.eval_input, check_images)
    train_examples = load_images(cfg, cfg.train_input, calibration_images)
    if quantization == "ptq" and not train_examples:
        raise DataError(
            "post-training quantization needs training images, and train_input_reader lists no readable records",
            cfg.path,
        )
    # Ranges the checkpoint did not train (all activation ranges without QAT, and any variable the checkpoint
    # lacks) are set from real training images, so neither the int8 model nor the always-on concat ranges of
    # the float model keep their (0, 6) placeholders.
    calibrated = []
    if train_examples:
        calibrated = tflite.calibrate_activation_ranges(
            model,
            [_model_pixels(e, size) for e in train_examples],
            # PTQ asked of a QAT checkpoint: quantize its weights with ranges from calibration alone.
            only_untrained=not (quantization == "ptq" and checkpoint_is_qat),
        )

    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "checkpoint": str(checkpoint),
        "step": step,
        "quantization": quantization,
        "checkpoint_quantization_aware": checkpoint_is_qat,
        "postprocess": asdict(settings) | {"signature": tflite.postprocess_signature(settings)},
        "class_names": class_names,
        "input_size": list(size),
        "calibration_images": len(train_examples),
        "calibrated_ranges": calibrated,
    }

    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as scratch:
        # The float SavedModel and float .tflite come from the model in float mode; a QAT checkpoint's weights
        # and folded batch norm give the same function without the fake-quant rounding.
        set_quantization_aware(model, False)
        with atomic_path(out / "saved_model") as saved_model_tmp:
            tflite.write_saved_model(model, settings, saved_model_tmp)
            float_plain = tflite.convert_float(saved_model_tmp)
        # The same flatbuffer with float16 weights: the fp16 model computes the float model's function.
        fp16_plain, report["fp16"] = tflite.float16_weights(float_plain)
        report["fp16"]["constant_types"] = tflite.constant_types(fp16_plain)
        float_bytes = metadata.add_metadata(float_plain, class_names)
        fp16_bytes = metadata.add_metadata(fp16_plain, class_names)
        int8_bytes = None
        if quantization != "none":
            # PTQ and QAT both convert the model's own fake-quant graph, so every range is ours (calibrated on
            # real images or trained) and floored: XNNPACK refuses degenerate ranges (tflite.convert_int8).
            int8_bytes, report["int8_ranges"] = tflite.convert_int8(model, settings, scratch)
            # The RGB stem conv as SPACE_TO_DEPTH + stride-1 conv: the same integers, a third less padded work for
            # XNNPACK's int8 kernels on AVX2 / AVX-512 CPUs. Before the metadata, which rides after the flatbuffer.
            int8_bytes, report["int8_space_to_depth"] = tflite.space_to_depth_strided_convs(int8_bytes)

    _check_loads(float_bytes, "model_float.tflite", report, out)
    _check_loads(fp16_bytes, "model_fp16.tflite", report, out)
    labels_path = write_text_atomic(out / "labels.txt", metadata.labels_text(class_names))
    float_path = write_bytes_atomic(out / "model_float.tflite", float_bytes)
    fp16_path = write_bytes_atomic(out / "model_fp16.tflite", fp16_bytes)
    report["files"] = {"model_float.tflite": len(float_bytes), "model_fp16.tflite": len(fp16_bytes)}
    int8_path = None
    if int8_bytes is not None:
        operators = edgetpu.list_operators(int8_bytes)
        unexpected = edgetpu.float_ops(operators)
        type_name, scale, zero_point = tflite.input_quantization(int8_bytes)
        report["int8"] = {
            "input": {"type": type_name, "scale": scale, "zero_point": zero_point},
            "op_counts": edgetpu.op_counts(operators),
            "operators": [asdict(op) for op in operators],
            "float_ops": [f"{op.index}:{op.name}" for op in unexpected],
        }
        report["edgetpu"] = edgetpu.edgetpu_compatibility(int8_bytes, run_compiler=run_compiler).to_json()
        if unexpected:
            # Refuse the model: a float op inside the int8 graph is silently slow on CPUs and splits the Edge TPU
            # graph. The report is still written so the user can see which ops they are.
            report_path = write_text_atomic(out / "export_report.json", json.dumps(report, indent=2))
            listed = ", ".join(
                f"{op.name} (op {op.index}, {'/'.join(op.input_types)})" for op in unexpected[:8]
            )
            raise SpaghettiError(
                f"the int8 model still computes in float outside the post-processing: {listed}; model_int8.tflite "
                f"was not written (details in {report_path})",
                out,
            )
        int8_bytes = metadata.add_metadata(int8_bytes, class_names)
        _check_loads(int8_bytes, "model_int8.tflite", report, out)
        int8_path = write_bytes_atomic(out / "model_int8.tflite", int8_bytes)
        report["files"]["model_int8.tflite"] = len(int8_bytes)

    onnx_bytes = onnx_path = None
    if onnx:
        from spaghettinet.deploy.onnx_export import convert_onnx

        # The model is in float mode again (convert_int8 restores it): the ONNX file is the float model.
        onnx_bytes, report["onnx"] = convert_onnx(model, settings, class_names)
        _check_onnx_loads(onnx_bytes, report, out)
        onnx_path = write_bytes_atomic(out / "model.onnx", onnx_bytes)
        report["files"]["model.onnx"] = len(onnx_bytes)

    tflite_models = {"float": float_bytes, "fp16": fp16_bytes}
    if int8_bytes is not None:
        tflite_models["int8"] = int8_bytes
    report["checks"] = _accuracy_checks(
        model, settings, tflite_models, onnx_bytes, test_examples, size, class_names
    )
    report_path = write_text_atomic(out / "export_report.json", json.dumps(report, indent=2, default=str))
    return ExportResult(
        out=out,
        saved_model=out / "saved_model",
        float_model=float_path,
        int8_model=int8_path,
        labels=labels_path,
        report_path=report_path,
        quantization=quantization,
        step=step,
        fp16_model=fp16_path,
        onnx_model=onnx_path,
        report=report,
    )


def _check_loads(flatbuffer: bytes, name: str, report: dict, out: Path) -> None:
    """Raise unless LiteRT loads the model with its default delegates (XNNPACK), as MediaPipe and apps do.

    The model is not written when it fails; the report is, so the user sees how far the export got.
    """
    from spaghettinet.deploy.runtime import TfliteDetector

    try:
        TfliteDetector(flatbuffer)
    except DataError as exc:
        report_path = write_text_atomic(out / "export_report.json", json.dumps(report, indent=2, default=str))
        raise SpaghettiError(
            f"LiteRT with its default delegate (XNNPACK) cannot load the converted {name}, so no client could run "
            f"it; it was not written (details in {report_path}): {exc.message}",
            out,
        ) from exc


def _check_onnx_loads(onnx_bytes: bytes, report: dict, out: Path) -> None:
    """Raise unless onnxruntime loads ``model.onnx`` on CPU; the model is not written when it fails."""
    from spaghettinet.deploy.runtime import OnnxDetector

    try:
        OnnxDetector(onnx_bytes)
    except DataError as exc:
        report_path = write_text_atomic(out / "export_report.json", json.dumps(report, indent=2, default=str))
        raise SpaghettiError(
            f"onnxruntime cannot load the converted model.onnx; it was not written (details in {report_path}): "
            f"{exc.message}",
            out,
        ) from exc


def _every_anchor_differences(reference: bytes, candidate: bytes, pixels: list[np.ndarray], anchors) -> dict:
    """Largest differences between two float-input ``.tflite`` models at the post-processing op's inputs.

    The op's inputs hold every anchor's box encoding and class scores, so this compares all of them, where the
    few detections above the op's threshold compare almost none.
    """
    from spaghettinet.model.box_coder import decode

    images = [(p.astype(np.float32) * (2.0 / 255.0) - 1.0)[np.newaxis] for p in pixels]
    score_differences, box_differences = [], []
    for want, got in zip(
        tflite.postprocess_inputs(reference, images),
        tflite.postprocess_inputs(candidate, images),
        strict=True,
    ):
        (want_encodings, want_scores), (got_encodings, got_scores) = want, got
        score_differences.append(np.abs(want_scores[..., 1:] - got_scores[..., 1:]).ravel())
        box_differences.append(
            np.abs(decode(want_encodings[0], anchors) - decode(got_encodings[0], anchors)).ravel()
        )
    scores = np.concatenate(score_differences)
    boxes = np.concatenate(box_differences)
    return {
        "anchors": int(len(anchors)),
        "max_score_difference": float(scores.max()),
        "mean_score_difference": float(scores.mean()),
        "max_box_difference": float(boxes.max()),
        "mean_box_difference": float(boxes.mean()),
    }


def _accuracy_checks(
    model,
    settings,
    tflite_models: dict[str, bytes],
    onnx_bytes: bytes | None,
    examples: list,
    size,
    class_names: list[str],
) -> dict:
    """Each model's detections against the Keras model's, fp16 and ONNX against the float ``.tflite``, COCO mAP.

    Args:
        model: the Keras detector (float mode).
        settings: the post-processing attributes (the Keras side runs the op's rules in numpy).
        tflite_models: ``{"float": bytes, "fp16": bytes, "int8": bytes}`` (int8 absent without quantization).
        onnx_bytes: ``model.onnx``, or None.
        examples: test records.
        size: model input ``(height, width)``.
        class_names: label-map names.

    Returns:
        ``images``; ``<model>_vs_keras`` per ``.tflite``; ``fp16_vs_float`` and ``onnx_vs_float`` (detections),
        ``fp16_vs_float_every_anchor`` (largest score and box differences at every anchor, with
        ``within_tolerance``); ``map_<model>`` per model. Or ``status`` when there are no test records.
    """
    from spaghettinet.deploy.runtime import OnnxDetector, TfliteDetector

    if not examples:
        return {"status": "skipped: eval_input_reader lists no readable records"}
    detectors = {name: TfliteDetector(flatbuffer) for name, flatbuffer in tflite_models.items()}
    if onnx_bytes is not None:
        detectors["onnx"] = OnnxDetector(onnx_bytes)
    keras_found: list = []
    found: dict[str, list] = {name: [] for name in detectors}
    all_pixels = []
    for example in examples:
        pixels = _model_pixels(example, size)
        all_pixels.append(pixels)
        keras_found.append(_keras_detections(model, settings, pixels))
        for name, detector in detectors.items():
            found[name].append(_tflite_detections(detector, pixels))
    checks: dict = {"images": len(examples)}
    for name in tflite_models:
        checks[f"{name}_vs_keras"] = compare_detections(keras_found, found[name])
    checks["fp16_vs_float"] = compare_detections(found["float"], found["fp16"])
    every_anchor = _every_anchor_differences(
        tflite_models["float"], tflite_models["fp16"], all_pixels, model.anchors
    )
    every_anchor["within_tolerance"] = (
        every_anchor["max_score_difference"] <= FP16_MAX_SCORE_DIFFERENCE
        and every_anchor["max_box_difference"] <= FP16_MAX_BOX_DIFFERENCE
    )
    every_anchor["tolerance"] = {"score": FP16_MAX_SCORE_DIFFERENCE, "box": FP16_MAX_BOX_DIFFERENCE}
    checks["fp16_vs_float_every_anchor"] = every_anchor
    if "onnx" in found:
        checks["onnx_vs_float"] = compare_detections(found["float"], found["onnx"])
    for name in found:
        checks[f"map_{name}"] = _coco_map(examples, found[name], class_names)
    return checks
