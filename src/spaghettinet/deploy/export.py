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

import tempfile
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.deploy import edgetpu, metadata, tflite
from spaghettinet.deploy.export_checks import accuracy_checks, model_pixels
from spaghettinet.deploy.export_report import (
    EXPORT_REPORT_FILE,
    ExportReport,
    Float16Facts,
    Int8Graph,
    Int8Ranges,
    OnnxFacts,
    SpaceToDepthRewrite,
)
from spaghettinet.errors import DataError, SpaghettiError, UsageError
from spaghettinet.io_utils import atomic_path, write_bytes_atomic, write_text_atomic

QUANTIZE_CHOICES = ("auto", "qat", "ptq", "none")

#: Calibration images for post-training quantization; a few dozen real images give stable ranges.
DEFAULT_CALIBRATION_IMAGES = 64
#: Test images for the int8-vs-Keras comparison and the float/int8 mAP (the whole split when smaller).
DEFAULT_CHECK_IMAGES = 100


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
        report: the report (also in ``report_path``).
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
    report: ExportReport | None = None


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
            [model_pixels(e, size) for e in train_examples],
            # PTQ asked of a QAT checkpoint: quantize its weights with ranges from calibration alone.
            only_untrained=not (quantization == "ptq" and checkpoint_is_qat),
        )

    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(
        checkpoint=str(checkpoint),
        step=step,
        quantization=quantization,
        checkpoint_quantization_aware=checkpoint_is_qat,
        postprocess=settings,
        postprocess_signature=tflite.postprocess_signature(settings),
        class_names=tuple(class_names),
        input_size=(size[0], size[1]),
        calibration_images=len(train_examples),
        calibrated_ranges=tuple(calibrated),
    )
    report_file = out / EXPORT_REPORT_FILE

    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as scratch:
        # The float SavedModel and float .tflite come from the model in float mode; a QAT checkpoint's weights
        # and folded batch norm give the same function without the fake-quant rounding.
        set_quantization_aware(model, False)
        with atomic_path(out / "saved_model") as saved_model_tmp:
            tflite.write_saved_model(model, settings, saved_model_tmp)
            float_plain = tflite.convert_float(saved_model_tmp)
        # The same flatbuffer with float16 weights: the fp16 model computes the float model's function.
        fp16_plain, fp16_info = tflite.float16_weights(float_plain)
        report.fp16 = Float16Facts(
            float16_constants=int(fp16_info["float16_constants"]),
            kept_float32=tuple(fp16_info["kept_float32"]),
            constant_types=tflite.constant_types(fp16_plain),
        )
        float_bytes = metadata.add_metadata(float_plain, class_names)
        fp16_bytes = metadata.add_metadata(fp16_plain, class_names)
        int8_bytes = None
        if quantization != "none":
            # PTQ and QAT both convert the model's own fake-quant graph, so every range is ours (calibrated on
            # real images or trained) and floored: XNNPACK refuses degenerate ranges (tflite.convert_int8).
            int8_bytes, ranges = tflite.convert_int8(model, settings, scratch)
            report.int8_ranges = Int8Ranges(float(ranges["range_floor"]), tuple(ranges["widened_ranges"]))
            # The RGB stem conv as SPACE_TO_DEPTH + stride-1 conv: the same integers, a third less padded work for
            # XNNPACK's int8 kernels on AVX2 / AVX-512 CPUs. Before the metadata, which rides after the flatbuffer.
            int8_bytes, rewrite = tflite.space_to_depth_strided_convs(int8_bytes)
            report.int8_space_to_depth = SpaceToDepthRewrite(
                rewritten=tuple(rewrite["rewritten"]),
                identical=bool(rewrite["identical"]),
                refused=tuple(rewrite.get("refused", ())),
            )

    _check_loads(float_bytes, "model_float.tflite", report, report_file)
    _check_loads(fp16_bytes, "model_fp16.tflite", report, report_file)
    labels_path = write_text_atomic(out / "labels.txt", metadata.labels_text(class_names))
    float_path = write_bytes_atomic(out / "model_float.tflite", float_bytes)
    fp16_path = write_bytes_atomic(out / "model_fp16.tflite", fp16_bytes)
    report.files = {"model_float.tflite": len(float_bytes), "model_fp16.tflite": len(fp16_bytes)}
    int8_path = None
    if int8_bytes is not None:
        operators = edgetpu.list_operators(int8_bytes)
        unexpected = edgetpu.float_ops(operators)
        type_name, scale, zero_point = tflite.input_quantization(int8_bytes)
        report.int8 = Int8Graph(
            input_type=str(type_name),
            input_scale=float(scale),
            input_zero_point=int(zero_point),
            op_counts=edgetpu.op_counts(operators),
            operators=tuple(operators),
            float_ops=tuple(f"{op.index}:{op.name}" for op in unexpected),
        )
        report.edgetpu = edgetpu.edgetpu_compatibility(int8_bytes, run_compiler=run_compiler)
        if unexpected:
            # Refuse the model: a float op inside the int8 graph is silently slow on CPUs and splits the Edge TPU
            # graph. The report is still written so the user can see which ops they are.
            report_path = report.write(report_file)
            listed = ", ".join(
                f"{op.name} (op {op.index}, {'/'.join(op.input_types)})" for op in unexpected[:8]
            )
            raise SpaghettiError(
                f"the int8 model still computes in float outside the post-processing: {listed}; model_int8.tflite "
                f"was not written (details in {report_path})",
                out,
            )
        int8_bytes = metadata.add_metadata(int8_bytes, class_names)
        _check_loads(int8_bytes, "model_int8.tflite", report, report_file)
        int8_path = write_bytes_atomic(out / "model_int8.tflite", int8_bytes)
        report.files["model_int8.tflite"] = len(int8_bytes)

    onnx_bytes = onnx_path = None
    if onnx:
        from spaghettinet.deploy.onnx_export import convert_onnx

        # The model is in float mode again (convert_int8 restores it): the ONNX file is the float model.
        onnx_bytes, onnx_info = convert_onnx(model, settings, class_names)
        report.onnx = OnnxFacts(**onnx_info)
        _check_onnx_loads(onnx_bytes, report, report_file)
        onnx_path = write_bytes_atomic(out / "model.onnx", onnx_bytes)
        report.files["model.onnx"] = len(onnx_bytes)

    tflite_models = {"float": float_bytes, "fp16": fp16_bytes}
    if int8_bytes is not None:
        tflite_models["int8"] = int8_bytes
    report.checks = accuracy_checks(
        model, settings, tflite_models, onnx_bytes, test_examples, size, class_names
    )
    report_path = report.write(report_file)
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


def _check_loads(flatbuffer: bytes, name: str, report: ExportReport, report_file: Path) -> None:
    """Raise unless LiteRT loads the model with its default delegates (XNNPACK), as MediaPipe and apps do.

    The model is not written when it fails; the report is, so the user sees how far the export got.
    """
    from spaghettinet.deploy.runtime import TfliteDetector

    try:
        TfliteDetector(flatbuffer)
    except DataError as exc:
        report_path = report.write(report_file)
        raise SpaghettiError(
            f"LiteRT with its default delegate (XNNPACK) cannot load the converted {name}, so no client could run "
            f"it; it was not written (details in {report_path}): {exc.message}",
            report_file.parent,
        ) from exc


def _check_onnx_loads(onnx_bytes: bytes, report: ExportReport, report_file: Path) -> None:
    """Raise unless onnxruntime loads ``model.onnx`` on CPU; the model is not written when it fails."""
    from spaghettinet.deploy.runtime import OnnxDetector

    try:
        OnnxDetector(onnx_bytes)
    except DataError as exc:
        report_path = report.write(report_file)
        raise SpaghettiError(
            f"onnxruntime cannot load the converted model.onnx; it was not written (details in {report_path}): "
            f"{exc.message}",
            report_file.parent,
        ) from exc
