"""What the report shows, as data: :class:`ReportInputs` and the records it holds, and the figures drawn from them
(:func:`run_facts` for the verdict's rules, the shipped model's scores, latency and file).

Nothing here reads files or renders: :mod:`spaghettinet.evaluation.report_loading` fills the inputs from a workdir,
:mod:`spaghettinet.evaluation.report` turns them into pages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from spaghettinet.coco_metrics import STAT_NAMES
from spaghettinet.deploy.export_report import (
    ExportReport,
)

from . import diagnosis
from .document import format_number
from .latency import LatencyReport, LatencyResult

if TYPE_CHECKING:
    from .split_detections import SplitDetections


# COCO summary metrics in pycocotools' order (stats[0..5]), with the names users know them by.
COCO_METRICS: tuple[tuple[str, str], ...] = (
    ("AP", "AP @[.50:.95]"),
    ("AP50", "AP50"),
    ("AP75", "AP75"),
    ("AP_small", "AP small"),
    ("AP_medium", "AP medium"),
    ("AP_large", "AP large"),
)
COCO_METRIC_NAMES = frozenset(name for name, _ in COCO_METRICS)
assert COCO_METRIC_NAMES <= set(STAT_NAMES)
MODEL_CARD = "model_card.md"
#: What the model labels of the accuracy tables mean.
SCORE_LABELS = (
    "float (checkpoint): the training checkpoint with the reference post-processing (every score counts); float / "
    "int8 TFLite: the exported files as an app runs them (the export's score threshold and number of detections), "
    "on the test images the export checked; model_int8.tflite, all N test images: the same file on the whole test "
    "split."
)


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    """What the data stage found.

    Attributes:
        images: number of usable images.
        objects_per_class: class name → number of boxes (all splits).
        split_images: split name ("train", "test") → number of images.
        objects_per_split: split name → class name → number of boxes.
        warnings: one message per problem that did not stop the run (each names its file).
        errors: one message per problem that excluded a file.
    """

    images: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    split_images: dict[str, int] = field(default_factory=dict)
    objects_per_split: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class ModelScores:
    """COCO scores of one model on the test split.

    Attributes:
        label: which model ("float", "PTQ int8", "QAT int8", ...).
        metrics: metric key of :data:`COCO_METRICS` → value in [0, 1] (-1 means "no such objects", as pycocotools).
        per_class_ap: class name → AP @[.50:.95].
        per_class_ap50: class name → AP at IoU 0.5, where measured.
    """

    label: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_class_ap: dict[str, float] = field(default_factory=dict)
    per_class_ap50: dict[str, float] = field(default_factory=dict)


@dataclass
class PredictedPicture:
    """One test image with its predictions and ground truth (boxes yxyx normalized, classes 0-based).

    Attributes:
        name: the image file name (untrusted, shown escaped).
        image: the picture.
        boxes / classes / scores: predictions.
        true_boxes / true_classes: ground truth.
    """

    name: str
    image: Image.Image
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    true_boxes: np.ndarray | None = None
    true_classes: np.ndarray | None = None


@dataclass
class TrainingFacts:
    """How the model was trained (from ``pipeline.config``, ``train_state.json``, the metrics history and the
    recorded start); ``None`` where unknown.

    Attributes:
        variant: ``s``, ``m`` or ``l``.
        input_size: ``(height, width)``.
        planned_steps: the steps training was set to run.
        trained_steps: the last step recorded (the checkpoint's, or the metrics history's).
        batch_size: images per step.
        optimizer: ``momentum`` or ``adam``.
        learning_rate: the base learning rate (cosine decay after a warmup).
        warmup_steps: warmup steps.
        moving_average_decay: the decay of the weight averages evaluation and export use; None without.
        qat_from_step: the step quantization-aware training started at; None without QAT.
        augmentation: the augmentation steps' names, in order.
        start: where training started ("from scratch (...)", "fine-tuned from ...").
        from_scratch: whether it started from random weights.
        time_budget_s: the time budget the schedule was fitted to.
        matched_threshold: the anchor matcher's IoU threshold.
    """

    variant: str | None = None
    input_size: tuple[int, int] | None = None
    planned_steps: int | None = None
    trained_steps: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    moving_average_decay: float | None = None
    qat_from_step: int | None = None
    augmentation: list[str] = field(default_factory=list)
    start: str | None = None
    from_scratch: bool | None = None
    time_budget_s: float | None = None
    matched_threshold: float = 0.5


@dataclass
class CoverageFacts:
    """Anchor coverage of the training boxes at the model's input size.

    Attributes:
        input_size: ``(height, width)`` it was computed at.
        share: class name → share of its training boxes with an anchor at IoU ≥ the matcher threshold.
        boxes: class name → training boxes.
        suggested_input_size: the smallest larger side covering every class well; None when none helps (or all are
            covered).
    """

    input_size: tuple[int, int]
    share: dict[str, float] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    suggested_input_size: int | None = None


@dataclass
class ReportInputs:
    """Everything the report shows; every field may be empty, and its section then says what is missing.

    Attributes:
        title: page title.
        class_names: 0-based class names (from the label map).
        settings: key → value lines describing the run (variant, input size, steps, ...).
        dataset: the data stage's summary.
        train_boxes: class name → ``[M, 4]`` yxyx normalized training boxes (the labels' sizes and positions).
        coverage: anchor coverage of the training boxes.
        training: how the model was trained.
        loss_curves: series name → (steps, values).
        learning_rate: (steps, values).
        scores: COCO scores per model, in display order.
        precision_recall: class name → (recall, precision) at IoU 0.5 for the shipped model.
        precision_recall_model: which model the precision-recall curves are for.
        test_pictures: test images with predicted and true boxes.
        test_results: the shipped model's detections on the whole test split (confusion matrix, worst images).
        min_score: predictions below this are not drawn on the test pictures.
        latency: one :class:`~spaghettinet.evaluation.latency.LatencyResult` per exported model (``latency.json``).
        model_sizes: file name → bytes.
        export_report: the export stage's ``export_report.json``.
        export_report_path: where that file is (linked from the report).
        model_card_path: where :func:`write_report` writes the model card (None: no card).
        missing: free-text notes on inputs that could not be read (shown at the top).
    """

    title: str = "SpaghettiNet-EdgeTPU training report"
    class_names: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    dataset: DatasetSummary | None = None
    train_boxes: dict[str, np.ndarray] = field(default_factory=dict)
    coverage: CoverageFacts | None = None
    training: TrainingFacts | None = None
    loss_curves: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    learning_rate: tuple[Sequence[float], Sequence[float]] | None = None
    scores: list[ModelScores] = field(default_factory=list)
    precision_recall: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    precision_recall_model: str = ""
    test_pictures: list[PredictedPicture] = field(default_factory=list)
    test_results: SplitDetections | None = None
    min_score: float = 0.3
    latency: list[LatencyResult] = field(default_factory=list)
    model_sizes: dict[str, int] = field(default_factory=dict)
    export_report: ExportReport | None = None
    export_report_path: Path | None = None
    model_card_path: Path | None = None
    missing: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# From inputs to the figures the verdict and the card use
# --------------------------------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) or number < 0 else number


def shipped_scores(inputs: ReportInputs) -> ModelScores | None:
    """The scores of the model that ships: the int8 model on the whole test split when measured, else the export's
    int8 check, else the float ``.tflite``, else the checkpoint's evaluation.

    Example:
        >>> shipped_scores(ReportInputs(scores=[ModelScores("float (checkpoint)"), ModelScores("QAT int8 TFLite")]))
        ModelScores(label='QAT int8 TFLite', metrics={}, per_class_ap={}, per_class_ap50={})
    """
    if inputs.test_results is not None and inputs.test_results.scores is not None:
        return inputs.test_results.scores

    def rank(scores: ModelScores) -> int:
        label = scores.label.lower()
        return 0 if "int8" in label else 1 if "tflite" in label else 2

    return min(inputs.scores, key=rank, default=None)


def _export_ap(inputs: ReportInputs, model: str) -> float | None:
    """The AP the export measured for ``model`` (``float``, ``int8``) on its check images, or None."""
    checks = inputs.export_report.checks if inputs.export_report is not None else None
    accuracy = checks.accuracy.get(model) if checks is not None else None
    return accuracy.ap if accuracy is not None else None


def _test_images(inputs: ReportInputs) -> int | None:
    if inputs.test_results is not None and inputs.test_results.images:
        return len(inputs.test_results.images)
    checks = inputs.export_report.checks if inputs.export_report is not None else None
    if checks is not None and checks.skipped is None:
        return checks.images
    if inputs.dataset is not None and "test" in inputs.dataset.split_images:
        return inputs.dataset.split_images["test"]
    return None


def main_loss(inputs: ReportInputs) -> tuple[Sequence[float], Sequence[float]]:
    return inputs.loss_curves.get("loss", ((), ()))


def run_facts(inputs: ReportInputs) -> diagnosis.RunFacts:
    """Gather the figures :mod:`spaghettinet.evaluation.diagnosis` judges from the report inputs.

    Args:
        inputs: the report inputs.

    Returns:
        :class:`spaghettinet.evaluation.diagnosis.RunFacts`; what the inputs lack stays ``None``.

    Example:
        >>> run_facts(ReportInputs(scores=[ModelScores("int8", {"AP50": 0.8})])).ap50
        0.8
    """
    shipped = shipped_scores(inputs)
    dataset = inputs.dataset
    train_counts = dataset.objects_per_split.get("train") if dataset else None
    test_counts = dataset.objects_per_split.get("test") if dataset else None
    confusion = (
        inputs.test_results.confusion() if inputs.test_results and inputs.test_results.images else None
    )
    names = list(inputs.class_names) or sorted((dataset.objects_per_class if dataset else {}).keys())
    classes = []
    for index, name in enumerate(names):
        confused_with = None
        if confusion is not None and index < len(confusion.class_names):
            confused_with = confusion.most_confused_with(index)
        classes.append(
            diagnosis.ClassFacts(
                name=name,
                train_objects=train_counts.get(name, 0) if train_counts is not None else None,
                test_objects=test_counts.get(name, 0) if test_counts is not None else None,
                ap50=shipped.per_class_ap50.get(name) if shipped else None,
                ap=shipped.per_class_ap.get(name) if shipped else None,
                anchor_coverage=inputs.coverage.share.get(name) if inputs.coverage else None,
                confused_with=confused_with,
            )
        )
    test_images = _test_images(inputs)
    test_objects = None
    if inputs.test_results is not None and inputs.test_results.images:
        test_objects = sum(len(image.true_classes) for image in inputs.test_results.images)
    elif test_counts and dataset is not None and dataset.split_images.get("test") == test_images:
        # The split's count is the figures' only when they were measured on the whole split.
        test_objects = sum(test_counts.values())
    training = inputs.training or TrainingFacts()
    input_size = training.input_size or _export_input_size(inputs)
    steps, values = main_loss(inputs)
    return diagnosis.RunFacts(
        classes=tuple(classes),
        ap50=_number(shipped.metrics.get("AP50")) if shipped else None,
        ap=_number(shipped.metrics.get("AP")) if shipped else None,
        test_images=test_images,
        test_objects=test_objects,
        train_images=dataset.split_images.get("train") if dataset else None,
        float_ap=_export_ap(inputs, "float"),
        int8_ap=_export_ap(inputs, "int8"),
        quantization=inputs.export_report.quantization if inputs.export_report is not None else None,
        input_size=max(input_size) if input_size else None,
        suggested_input_size=inputs.coverage.suggested_input_size if inputs.coverage else None,
        loss_steps=tuple(float(s) for s in steps),
        loss_values=tuple(float(v) for v in values),
        trained_steps=training.trained_steps,
        time_budget_s=training.time_budget_s,
        from_scratch=training.from_scratch,
    )


def _export_input_size(inputs: ReportInputs) -> tuple[int, int] | None:
    return inputs.export_report.input_size if inputs.export_report is not None else None


def shipped_latency(inputs: ReportInputs) -> LatencyResult | None:
    """The latency of the shipped model (int8 first), or None."""
    return LatencyReport(inputs.latency).shipped()


def shipped_file(inputs: ReportInputs) -> tuple[str, int] | None:
    """The shipped ``.tflite`` (int8 first) and its size in bytes, or None."""
    sizes = inputs.model_sizes
    for name in ("model_int8.tflite", "model_float.tflite"):
        if name in sizes:
            return name, sizes[name]
    return next(iter(sorted(sizes.items())), None)


def cpu_name(result: LatencyResult) -> str:
    """The CPU model a latency was measured on ('' when not recorded)."""
    return str(result.cpu.get("model") or "")


def training_rows(training: TrainingFacts) -> list[list[str]]:
    """``[setting, value]`` rows describing how a model was trained (for the report and the model card).

    Example:
        >>> training_rows(TrainingFacts(variant="s", qat_from_step=None))[:2]  # doctest: +NORMALIZE_WHITESPACE
        [['variant', 'SpaghettiNet-EdgeTPU-S'], ['quantization-aware training', 'no (int8 by post-training quantization)']]
    """
    rows = []
    if training.variant:
        rows.append(["variant", f"SpaghettiNet-EdgeTPU-{training.variant.upper()}"])
    if training.input_size:
        rows.append(["input size", f"{training.input_size[0]}×{training.input_size[1]}"])
    if training.start:
        rows.append(["start", training.start])
    if training.trained_steps is not None or training.planned_steps is not None:
        steps = format_number(training.trained_steps)
        if training.planned_steps is not None and training.planned_steps != training.trained_steps:
            steps += f" of {training.planned_steps} planned"
        rows.append(["steps", steps])
    if training.time_budget_s:
        rows.append(["time budget", diagnosis.format_duration(training.time_budget_s)])
    if training.batch_size:
        rows.append(["batch size", str(training.batch_size)])
    if training.optimizer:
        rate = f", learning rate {training.learning_rate:g}" if training.learning_rate else ""
        warmup = f" after {training.warmup_steps} warmup steps" if training.warmup_steps else ""
        rows.append(["optimizer", f"{training.optimizer}{rate}, cosine decay{warmup}"])
    if training.qat_from_step is None:
        qat = "no (int8 by post-training quantization)"
    elif training.trained_steps is not None and training.trained_steps <= training.qat_from_step:
        # A time budget can stop training before the planned switch: then export quantized after training.
        qat = (
            f"planned from step {training.qat_from_step}, not reached (training stopped at step "
            f"{training.trained_steps}): int8 by post-training quantization"
        )
    else:
        qat = f"from step {training.qat_from_step}"
    rows.append(["quantization-aware training", qat])
    rows.append(
        [
            "weight averaging",
            f"exponential moving average, decay {training.moving_average_decay:g}"
            if training.moving_average_decay
            else "no",
        ]
    )
    if training.augmentation:
        rows.append(["augmentation", ", ".join(training.augmentation)])
    return rows
