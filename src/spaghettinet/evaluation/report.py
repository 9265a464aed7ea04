"""The training report: ``W/report/index.html`` (one self-contained file), ``W/report/report.md`` (with PNG/JPEG
files beside it) and the model card ``W/exported/model_card.md``.

The report answers "is the model good, and if not, why": its first section is a verdict (the shipped int8 model's
AP50 and AP on the test split, its latency and size, and what limits it, each with what to do), computed by the
rules of :mod:`spaghettinet.evaluation.diagnosis`. The rest shows the evidence: the data (counts per class and
split, the sizes and positions of the training boxes, anchor coverage), training curves, accuracy (per class, the
precision-recall curves, the confusion matrix), test pictures (a sample, and the images with the most errors),
latency and size, and the export's checks.

The report is built in three steps, so each can be tested alone:

1. :class:`ReportInputs` holds everything shown; :func:`load_report_inputs` fills it from a workdir's files and
   tolerates missing ones (with ``detect=True`` it also runs the shipped model over the whole test split:
   :mod:`spaghettinet.evaluation.split_detections`).
2. :func:`build_sections` turns the inputs into a small document model (:mod:`spaghettinet.evaluation.document`).
   A section whose inputs are missing says so instead of failing.
3. :func:`spaghettinet.evaluation.document.render_html` and ``render_markdown`` print that model, escaping every
   string in one place; the HTML page carries a Content-Security-Policy that forbids scripts.

Example:
    >>> write_report(ReportInputs(title="demo"), "work/report")  # doctest: +SKIP
    ReportPaths(html=PosixPath('work/report/index.html'), markdown=PosixPath('work/report/report.md'), ...)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from spaghettinet import drawing
from spaghettinet.coco_metrics import STAT_NAMES, CocoResult, EvalReport
from spaghettinet.data.problems import ERROR, WARNING
from spaghettinet.data.split import SPLIT_FILE, SplitFile
from spaghettinet.data.validation_file import VALIDATION_FILE, ValidationFile
from spaghettinet.deploy.export_report import (
    EXPORT_REPORT_FILE,
    DetectionAgreement,
    ExportReport,
    ModelAccuracy,
)
from spaghettinet.errors import SpaghettiError
from spaghettinet.io_utils import atomic_path, write_bytes_atomic, write_text_atomic
from spaghettinet.training.history import HISTORY_FILE, MetricsHistory
from spaghettinet.training.plan import STATE_FILE, TrainPlan

from . import diagnosis, visualize
from .document import (
    Advice,
    AdviceItem,
    BulletList,
    Figure,
    KeyFigure,
    KeyFigures,
    Lead,
    Link,
    Notice,
    Paragraph,
    Section,
    Table,
    format_bytes,
    format_number,
    render_html,
    render_markdown,
)
from .latency import LATENCY_FILE, LatencyReport, LatencyResult

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
MAX_TEST_PICTURES = 12
GRID_COLUMNS = 4
# Longest width of a test picture in the grid; larger photos are shrunk so the HTML file stays small.
GRID_CELL_PIXELS = 320
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


def _main_loss(inputs: ReportInputs) -> tuple[Sequence[float], Sequence[float]]:
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
    steps, values = _main_loss(inputs)
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


# --------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------


def cpu_name(result: LatencyResult) -> str:
    """The CPU model a latency was measured on ('' when not recorded)."""
    return str(result.cpu.get("model") or "")


def _verdict_section(inputs: ReportInputs, links: Mapping[str, str]) -> Section:
    section = Section("Verdict")
    facts = run_facts(inputs)
    shipped = shipped_scores(inputs)
    if inputs.test_results is not None and inputs.test_results.scores is not None:
        model = inputs.test_results.model
    else:
        model = shipped.label if shipped else "no model evaluated"
    images = f"{facts.test_images} test images" if facts.test_images is not None else "the test split"
    latency = shipped_latency(inputs)
    file = shipped_file(inputs)
    tiles = [
        KeyFigure("AP50", format_number(facts.ap50, 2), f"{model}, {images}"),
        KeyFigure("AP @[.50:.95]", format_number(facts.ap, 2), "COCO's main figure"),
    ]
    if latency is not None:
        threads = latency.threads
        where = f"median, {threads} thread{'s' if threads != 1 else ''}"
        if cpu_name(latency):
            where += f", {cpu_name(latency)}"
        tiles.append(KeyFigure(f"latency, {latency.model}", f"{latency.median_ms:.1f} ms", where))
    else:
        tiles.append(KeyFigure("latency", "–", "not measured"))
    if file is not None:
        tiles.append(KeyFigure("size", format_bytes(file[1]), file[0]))
    else:
        tiles.append(KeyFigure("size", "–", "no exported model"))
    section.blocks.append(KeyFigures(tiles))
    section.blocks.append(Lead(diagnosis.judgement(facts)))
    findings = diagnosis.diagnose(facts)
    if findings:
        section.blocks.append(Paragraph("What limits it, most limiting first, and what to do:"))
        section.blocks.append(Advice([AdviceItem(f.problem, f.action) for f in findings]))
    elif facts.ap50 is not None:
        section.blocks.append(
            Paragraph(
                "Nothing in this run's figures visibly limits it: enough objects per class, anchors that fit the "
                "objects, a loss that had settled, no loss to quantization and enough test images."
            )
        )
    if "model_card" in links:
        section.blocks.append(
            Link("Model card: what the model detects, its data, accuracy and limits", links["model_card"])
        )
    return section


def _dataset_section(inputs: ReportInputs) -> Section:
    section = Section("Dataset")
    dataset = inputs.dataset
    if dataset is None:
        section.blocks.append(
            Notice("No dataset summary: the validation/split stage's outputs were not found.")
        )
        return section
    split = ", ".join(f"{count} {name}" for name, count in dataset.split_images.items())
    section.blocks.append(
        Paragraph(
            f"{dataset.images} images"
            + (f" ({split})" if split else "")
            + f", {len(dataset.errors)} validation error(s)"
            + (" (their files were left out)." if dataset.errors else ".")
        )
    )
    if dataset.objects_per_class:
        splits = [name for name in ("train", "test") if name in dataset.objects_per_split]
        coverage = inputs.coverage
        headers = ["class"] + [f"{name} objects" for name in splits] + (["objects"] if not splits else [])
        if coverage is not None:
            height, width = coverage.input_size
            headers.append(f"anchor coverage at {height}×{width}")
        rows = []
        for name, count in sorted(dataset.objects_per_class.items()):
            row = [name] + [str(dataset.objects_per_split[s].get(name, 0)) for s in splits]
            if not splits:
                row.append(str(count))
            if coverage is not None:
                share = coverage.share.get(name)
                row.append(f"{share:.0%}" if share is not None else "–")
            rows.append(row)
        section.blocks.append(Table(headers, rows))
        if coverage is not None:
            section.blocks.append(
                Paragraph(
                    "Anchor coverage: the share of a class's training boxes that some anchor overlaps at IoU 0.5 at "
                    f"the input size; below {diagnosis.MIN_ANCHOR_COVERAGE:.0%} the model hardly learns the class."
                )
            )
    if inputs.train_boxes:
        png = visualize.label_distribution_png(inputs.train_boxes, "Training labels")
        section.blocks.append(
            Figure(
                png,
                "image/png",
                "training_labels.png",
                "Training labels per class: box sizes as fractions of the image (left, log scales) and box "
                "centres in the image (right).",
            )
        )
    if dataset.errors:
        # Each left-out file with its reason (validation.json's "excluded"): the user decides whether to fix them.
        section.blocks.append(
            Notice(
                f"Left out of training ({len(dataset.errors)}): these files have errors; the photos and their xml "
                "were not touched. Fix them and run again to include them."
            )
        )
        section.blocks.append(BulletList(list(dataset.errors)))
    if dataset.warnings:
        section.blocks.append(Paragraph(f"Validation warnings ({len(dataset.warnings)}):"))
        section.blocks.append(BulletList(list(dataset.warnings)))
    else:
        section.blocks.append(Paragraph("No validation warnings."))
    return section


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


def _training_section(inputs: ReportInputs) -> Section:
    section = Section("Training")
    if inputs.training is not None:
        section.blocks.append(Table(["setting", "value"], training_rows(inputs.training)))
    if inputs.loss_curves:
        png = visualize.line_chart_png(inputs.loss_curves, "Training loss", ylabel="loss", log_y=True)
        section.blocks.append(Figure(png, "image/png", "loss.png", "Training losses per step (log scale)."))
        share = diagnosis.falling_share(*_main_loss(inputs))
        if share is not None:
            section.blocks.append(
                Paragraph(
                    f"Over the last tenth of the steps the loss fell by {share:.0%} (against the tenth before)."
                )
            )
    else:
        section.blocks.append(Notice("No loss history: the training stage's metrics history was not found."))
    if inputs.learning_rate is not None and len(inputs.learning_rate[0]):
        png = visualize.line_chart_png(
            {"learning rate": inputs.learning_rate}, "Learning rate", ylabel="rate"
        )
        section.blocks.append(Figure(png, "image/png", "learning_rate.png", "Learning rate per step."))
    else:
        section.blocks.append(Notice("No learning-rate history."))
    return section


def _accuracy_section(inputs: ReportInputs) -> Section:
    section = Section("Accuracy on the test split (COCO)")
    scores_list = list(inputs.scores)
    if inputs.test_results is not None and inputs.test_results.scores is not None:
        scores_list.append(inputs.test_results.scores)
    if not scores_list:
        section.blocks.append(
            Notice("No evaluation results: the evaluation/export stages' outputs were not found.")
        )
    else:
        headers = ["model"] + [title for _, title in COCO_METRICS]
        rows = [
            [scores.label] + [format_number(scores.metrics.get(key)) for key, _ in COCO_METRICS]
            for scores in scores_list
        ]
        section.blocks.append(Table(headers, rows))
        section.blocks.append(Paragraph(SCORE_LABELS))
        with_classes = [scores for scores in scores_list if scores.per_class_ap]
        if with_classes:
            names = sorted({name for scores in with_classes for name in scores.per_class_ap})
            rows = [
                [name] + [format_number(scores.per_class_ap.get(name)) for scores in with_classes]
                for name in names
            ]
            section.blocks.append(Paragraph("AP @[.50:.95] per class:"))
            section.blocks.append(Table(["class"] + [scores.label for scores in with_classes], rows))
    if inputs.precision_recall:
        title = "Precision-recall at IoU 0.5"
        caption = title + (f" ({inputs.precision_recall_model})" if inputs.precision_recall_model else "")
        png = visualize.precision_recall_png(inputs.precision_recall, title=title)
        section.blocks.append(
            Figure(png, "image/png", "precision_recall.png", caption + ", one curve per class.")
        )
    elif scores_list:
        section.blocks.append(Notice("No precision-recall curves in the evaluation results."))
    section.blocks += _confusion_blocks(inputs)
    return section


def _confusion_blocks(inputs: ReportInputs) -> list:
    results = inputs.test_results
    if results is None or not results.images:
        return [
            Notice(
                "No confusion matrix: the shipped model was not run on the test split "
                "(`spaghettinet report WORKDIR` runs it)."
            )
        ]
    matrix = results.confusion()
    counts = matrix.counts
    size = len(matrix.class_names)
    objects = int(counts[:size].sum())
    correct = int(np.trace(counts[:size, :size]))
    missed = int(counts[:size, size].sum())
    false = int(counts[size, :size].sum())
    title = f"Confusion matrix, {results.model}"
    caption = (
        f"{title}: {matrix.images} test images, detections with score ≥ {matrix.score_threshold:g} (the export's "
        f"threshold) matched to objects at IoU ≥ {matrix.iou_threshold:g}. Rows: true class; columns: predicted "
        "class. The background column counts missed objects, the background row false detections."
    )
    summary = (
        f"Of {objects} test objects, {correct} were found with their class, {objects - correct - missed} with "
        f"another class and {missed} missed; {false} detections were on no object."
    )
    if results.total_images > len(results.images):
        summary += f" (The first {len(results.images)} of {results.total_images} test images.)"
    png = visualize.confusion_matrix_png(counts, matrix.labels, title=title)
    return [Figure(png, "image/png", "confusion_matrix.png", caption), Paragraph(summary)]


def _pictures_section(inputs: ReportInputs) -> Section:
    section = Section("Test pictures")
    if not inputs.test_pictures:
        section.blocks.append(Notice("No test pictures: no model predictions on the test split were found."))
    else:
        drawn = []
        for picture in inputs.test_pictures[:MAX_TEST_PICTURES]:
            drawn.append(
                drawing.draw_detections(
                    _cell_image(picture.image),
                    picture.boxes,
                    picture.classes,
                    picture.scores,
                    inputs.class_names,
                    true_boxes=picture.true_boxes,
                    true_classes=picture.true_classes,
                    min_score=inputs.min_score,
                )
            )
        grid = drawing.image_grid(drawn, columns=GRID_COLUMNS)
        caption = (
            f"Predictions (solid, score ≥ {inputs.min_score:g}) and ground truth (dashed) on "
            f"{len(drawn)} test images, in reading order:"
        )
        section.blocks.append(Figure(drawing.image_jpeg(grid), "image/jpeg", "test_pictures.jpg", caption))
        section.blocks.append(BulletList([picture.name for picture in inputs.test_pictures[: len(drawn)]]))
    section.blocks += _worst_blocks(inputs)
    return section


def _cell_image(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > GRID_CELL_PIXELS:
        image.thumbnail((GRID_CELL_PIXELS, GRID_CELL_PIXELS))
    return image


def _worst_blocks(inputs: ReportInputs) -> list:
    results = inputs.test_results
    if results is None:
        return []
    if not results.worst:
        return [Paragraph(f"No test image has a missed object or a false detection ({results.model}).")]
    class_names = inputs.class_names or results.class_names
    drawn = [
        visualize.draw_errors(
            _cell_image(picture.image),
            picture.true_boxes,
            picture.true_classes,
            picture.boxes,
            picture.classes,
            picture.scores,
            class_names,
            score_threshold=results.score_threshold,
        )
        for picture in results.worst
    ]
    grid = drawing.image_grid(drawn, columns=GRID_COLUMNS)
    caption = (
        f"The {len(drawn)} test images with the most errors ({results.model}, score ≥ "
        f"{results.score_threshold:g}), worst first: missed objects dashed blue, false detections red, detections "
        "of the wrong class orange (true class in brackets), correct detections thin green."
    )
    return [
        Paragraph("Worst test images:"),
        Figure(drawing.image_jpeg(grid), "image/jpeg", "worst_test_images.jpg", caption),
        BulletList([picture.name for picture in results.worst]),
    ]


def format_op_counts(op_counts: Mapping) -> str:
    """Operator counts as one readable line, most frequent first.

    Example:
        >>> format_op_counts({"ADD": 2, "CONV_2D": 40, "LOGISTIC": 1})
        'CONV_2D ×40, ADD ×2, LOGISTIC ×1'
    """
    items = sorted(
        ((str(name), count) for name, count in op_counts.items() if isinstance(count, int)),
        key=lambda item: (-item[1], item[0]),
    )
    return ", ".join(f"{name} ×{count}" for name, count in items)


def _speed_section(inputs: ReportInputs) -> Section:
    section = Section("Latency and size")
    if inputs.latency:
        rows = [
            [
                result.model,
                format_number(result.median_ms, 2),
                format_number(result.p90_ms, 2),
                str(result.threads),
                f"{result.input_type} {'×'.join(str(v) for v in result.input_shape)}",
                cpu_name(result) or "–",
            ]
            for result in inputs.latency
        ]
        section.blocks.append(Table(["model", "median ms", "p90 ms", "threads", "input", "CPU"], rows))
        ops = [
            f"{result.model}: {format_op_counts(result.op_counts)}"
            for result in inputs.latency
            if result.op_counts
        ]
        if ops:
            section.blocks.append(Paragraph("Operators:"))
            section.blocks.append(BulletList(ops))
    else:
        section.blocks.append(Notice("No latency measurements."))
    if inputs.model_sizes:
        rows = [[name, format_bytes(size)] for name, size in sorted(inputs.model_sizes.items())]
        section.blocks.append(Table(["file", "size"], rows))
    else:
        section.blocks.append(Notice("No exported model files found."))
    return section


def _detections_agreement(entry: DetectionAgreement) -> tuple[str, str]:
    if not entry.reference_detections:
        return "no detections to compare", ""
    text = f"{entry.matched} of {entry.reference_detections} detections matched"
    if entry.mean_iou is not None:
        text += f", mean IoU {entry.mean_iou:.3f}"
    if entry.max_score_difference is not None:
        text += f", scores differ by ≤ {entry.max_score_difference:.3f}"
    fraction = entry.matched_fraction
    return text, "ok" if fraction is not None and fraction >= 0.9 else "check"


#: The detection agreements the export checks table shows, with their labels.
_SHOWN_AGREEMENTS = (
    ("int8_vs_keras", "int8 .tflite vs Keras"),
    ("float_vs_keras", "float .tflite vs Keras"),
    ("fp16_vs_float", "fp16 .tflite vs float .tflite"),
    ("onnx_vs_float", "ONNX vs float .tflite"),
)


def export_check_rows(report: ExportReport) -> list[list[str]]:
    """``[check, result, status]`` rows of an ``export_report.json`` (status ``ok``, ``check``, or empty for facts).

    Example:
        >>> from spaghettinet.deploy.tflite import PostprocessSettings
        >>> report = ExportReport("ckpt-1", 1, "ptq", False, PostprocessSettings(1), "", ("cat",), (96, 96), 0, ())
        >>> export_check_rows(report)[0]
        ['int8 quantization', 'PTQ (checkpoint trained in float)', '']
    """
    trained = "quantization-aware" if report.checkpoint_quantization_aware else "in float"
    rows: list[list[str]] = [
        ["int8 quantization", f"{report.quantization.upper()} (checkpoint trained {trained})", ""]
    ]
    int8 = report.int8
    if int8 is not None:
        scale = int8.input_scale
        scale_text = f"scale {scale:.6g}" + (" (2/255)" if abs(scale - 2 / 255) < 1e-6 else "")
        rows.append(
            ["int8 input", f"{int8.input_type}, {scale_text}, zero point {int8.input_zero_point}", ""]
        )
        rows.append(
            [
                "float ops in the int8 graph",
                ", ".join(int8.float_ops) or "none",
                "check" if int8.float_ops else "ok",
            ]
        )
    post = report.postprocess
    nms = "per-class NMS" if post.use_regular_nms else "class-agnostic NMS"
    rows.append(
        [
            "post-processing",
            f"{nms}, score ≥ {post.score_threshold}, IoU {post.iou_threshold}, {post.max_detections} detections",
            "",
        ]
    )
    edgetpu = report.edgetpu
    if edgetpu is not None:
        text = (
            "unsupported ops: " + format_op_counts(edgetpu.unsupported_ops)
            if edgetpu.unsupported_ops
            else "every op maps to the Edge TPU"
        )
        if edgetpu.expected_cpu_ops:
            text += f"; on the CPU as expected: {format_op_counts(edgetpu.expected_cpu_ops)}"
        if edgetpu.problems:
            text += "; " + "; ".join(edgetpu.problems)
        if edgetpu.compiler.get("status"):
            text += f"; edgetpu_compiler: {edgetpu.compiler['status']}"
        rows.append(["Edge TPU", text, "check" if edgetpu.unsupported_ops or edgetpu.problems else "ok"])
    checks = report.checks
    if checks is not None and checks.skipped is not None:
        rows.append(["accuracy checks", f"skipped: {checks.skipped}", ""])
    elif checks is not None:
        images = checks.images
        for key, label in _SHOWN_AGREEMENTS:
            if key in checks.agreements:
                text, status = _detections_agreement(checks.agreements[key])
                rows.append([f"{label} ({images} test images)", text, status])
        float_map, int8_map = checks.accuracy.get("float"), checks.accuracy.get("int8")
        if float_map is not None and int8_map is not None:
            status = ""
            if float_map.ap is not None and int8_map.ap is not None:
                status = "ok" if float_map.ap - int8_map.ap <= diagnosis.MAX_QUANTIZATION_LOSS else "check"
            rows.append(
                [
                    f"AP float vs int8 .tflite ({images} test images)",
                    f"{format_number(float_map.ap)} vs {format_number(int8_map.ap)}",
                    status,
                ]
            )
        every_anchor = checks.fp16_every_anchor
        if every_anchor is not None:
            rows.append(
                [
                    f"fp16 vs float .tflite, every anchor ({images} test images)",
                    f"largest score difference {format_number(every_anchor.max_score_difference)}, "
                    f"largest box difference {format_number(every_anchor.max_box_difference)}",
                    "ok" if every_anchor.within_tolerance else "check",
                ]
            )
    rows.append(
        [
            "calibration",
            f"{report.calibration_images} training images, {len(report.calibrated_ranges)} activation ranges set "
            "from them",
            "",
        ]
    )
    if report.int8_ranges is not None:
        rows.append(
            ["int8 ranges widened (too narrow to quantize)", str(len(report.int8_ranges.widened_ranges)), ""]
        )
    if report.files:
        rows.append(
            [
                "files written",
                ", ".join(f"{name} ({format_bytes(size)})" for name, size in report.files.items()),
                "",
            ]
        )
    return rows


def _export_section(inputs: ReportInputs, links: Mapping[str, str]) -> Section:
    section = Section("Export checks")
    report = inputs.export_report
    if report is None:
        section.blocks.append(Notice("No export report (export_report.json) found."))
        return section
    section.blocks.append(Table(["check", "result", "status"], export_check_rows(report)))
    if "export_report" in links:
        section.blocks.append(Link("The full export report (export_report.json)", links["export_report"]))
    return section


def build_sections(inputs: ReportInputs, links: Mapping[str, str] | None = None) -> list[Section]:
    """Turn report inputs into sections of paragraphs, tables and figures (no escaping yet).

    Args:
        inputs: what to show.
        links: relative links to files beside the report: ``model_card``, ``export_report`` (each optional).

    Returns:
        The sections in page order: verdict, run settings, dataset, training, accuracy, test pictures, latency and
        size, export checks.

    Example:
        >>> [section.title for section in build_sections(ReportInputs())][:3]
        ['Verdict', 'Run', 'Dataset']
    """
    links = dict(links or {})
    run = Section("Run")
    for note in inputs.missing:
        run.blocks.append(Notice(note))
    if inputs.settings:
        run.blocks.append(Table(["setting", "value"], [[str(k), str(v)] for k, v in inputs.settings.items()]))
    else:
        run.blocks.append(Paragraph("No run settings recorded."))
    return [
        _verdict_section(inputs, links),
        run,
        _dataset_section(inputs),
        _training_section(inputs),
        _accuracy_section(inputs),
        _pictures_section(inputs),
        _speed_section(inputs),
        _export_section(inputs, links),
    ]


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written (``model_card`` is None when no card was written)."""

    html: Path
    markdown: Path
    figures: tuple[Path, ...]
    model_card: Path | None = None


def _relative_link(target: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), out_dir.resolve())).as_posix()


def write_report(inputs: ReportInputs | str | Path, out_dir: str | Path) -> ReportPaths:
    """Write ``index.html`` (self-contained) and ``report.md`` with its figures into ``out_dir``, and the model
    card where ``inputs.model_card_path`` says.

    Args:
        inputs: the report inputs, or a workdir to load them from with :func:`load_report_inputs` (the shipped
            model is then run on the test split).
        out_dir: the report folder (``W/report``); created if missing. Each file is written atomically.

    Returns:
        The paths written.

    Example:
        >>> paths = write_report("work", "work/report")  # doctest: +SKIP
        >>> paths.html.name  # doctest: +SKIP
        'index.html'
    """
    from .model_card import model_card_markdown

    if not isinstance(inputs, ReportInputs):
        inputs = load_report_inputs(inputs, detect=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = {}
    card_path = None
    if inputs.model_card_path is not None:
        card_path = write_text_atomic(inputs.model_card_path, model_card_markdown(inputs))
        links["model_card"] = _relative_link(card_path, out_dir)
    if inputs.export_report_path is not None:
        links["export_report"] = _relative_link(inputs.export_report_path, out_dir)
    sections = build_sections(inputs, links)
    markdown, files = render_markdown(inputs.title, sections)
    figures = tuple(write_bytes_atomic(out_dir / name, data) for name, data in files.items())
    markdown_path = write_text_atomic(out_dir / "report.md", markdown)
    with atomic_path(out_dir / "index.html") as temporary:
        temporary.write_text(render_html(inputs.title, sections, contents=True), encoding="utf-8")
    return ReportPaths(
        html=out_dir / "index.html", markdown=markdown_path, figures=figures, model_card=card_path
    )


# --------------------------------------------------------------------------------------------------------------
# Loading from a workdir
# --------------------------------------------------------------------------------------------------------------


def _read_stage_file(read, path: Path, missing: list[str]):
    """``read(path)`` for a typed stage file; None when it is absent or unreadable (said in ``missing``)."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except SpaghettiError as exc:
        missing.append(f"{path.name} could not be read ({exc.message}); its section is left out.")
        return None


def _read_json(path: Path, missing: list[str]) -> object | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        missing.append(f"{path.name} could not be read ({exc}); its section is left out.")
        return None


def history_curves(
    history: MetricsHistory,
) -> tuple[dict[str, tuple[list[float], list[float]]], tuple[list[float], list[float]] | None]:
    """The loss curve (``{"loss": (steps, values)}``) and the learning-rate curve of a metrics history.

    Example:
        >>> from spaghettinet.training.history import LossRecord
        >>> history_curves(MetricsHistory([LossRecord(1, 2.0, 0.1), LossRecord(2, 1.5, 0.1)]))[0]
        {'loss': ([1, 2], [2.0, 1.5])}
    """
    if not history.losses:
        return {}, None
    steps = [record.step for record in history.losses]
    losses = {"loss": (steps, [record.loss for record in history.losses])}
    return losses, (list(steps), [record.learning_rate for record in history.losses])


def scores_from_result(result: CocoResult, label: str) -> ModelScores:
    """The report's view of a COCO result (``eval.json``, or a split's evaluation)."""
    return ModelScores(
        label=label,
        metrics={
            name: value
            for name, value in result.stats.items()
            if name in COCO_METRIC_NAMES and value is not None
        },
        per_class_ap={name: value for name, value in result.per_class_ap.items() if value is not None},
        per_class_ap50={name: value for name, value in result.per_class_ap50.items() if value is not None},
    )


def _precision_recall(result: CocoResult) -> dict[str, tuple[list[float], list[float]]]:
    return {name: (curve["recall"], curve["precision"]) for name, curve in result.pr_curves.items() if curve}


def scores_from_export_check(accuracy: ModelAccuracy, label: str) -> ModelScores | None:
    """The report's view of one model's AP in the export checks (None when COCO gave no value at all)."""
    metrics = {
        name: value
        for name, value in (("AP", accuracy.ap), ("AP50", accuracy.ap50), ("AP75", accuracy.ap75))
        if value is not None
    }
    if not metrics:
        return None
    return ModelScores(
        label=label,
        metrics=metrics,
        per_class_ap={name: value for name, value in accuracy.per_class_ap.items() if value is not None},
    )


def _class_names_from_label_map(path: Path, missing: list[str]) -> list[str]:
    if not path.is_file():
        return []
    from spaghettinet.data.labelmap import read_label_map

    try:
        return list(read_label_map(path).names)
    except SpaghettiError as exc:
        missing.append(f"{path.name} could not be read ({exc}); classes are shown by number.")
        return []


def _label_rows(csv_path: Path, missing: list[str]) -> list[dict] | None:
    """The rows of a ``*_labels.csv`` written by ``xml2csv`` (None when absent or unreadable)."""
    import csv

    if not csv_path.is_file():
        return None
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        missing.append(f"{csv_path.name} could not be read ({exc}).")
        return None


def label_boxes(rows: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Class name → ``[M, 4]`` yxyx normalized boxes of ``xml2csv`` rows (pixel corners and the image size);
    rows with missing or non-numeric values are skipped.

    Example:
        >>> label_boxes([{"class": "cat", "width": "200", "height": "100", "xmin": "20", "ymin": "10",
        ...               "xmax": "120", "ymax": "60"}])["cat"].tolist()
        [[0.1, 0.1, 0.6, 0.6]]
    """
    boxes: dict[str, list[list[float]]] = {}
    for row in rows:
        try:
            width, height = float(row["width"]), float(row["height"])
            corners = [float(row[key]) for key in ("ymin", "xmin", "ymax", "xmax")]
        except (KeyError, TypeError, ValueError):
            continue
        if not (width > 0 and height > 0):
            continue
        ymin, xmin, ymax, xmax = corners
        boxes.setdefault(str(row.get("class", "")), []).append(
            [ymin / height, xmin / width, ymax / height, xmax / width]
        )
    return {name: np.asarray(values, dtype=np.float64) for name, values in sorted(boxes.items())}


def _dataset_from(workdir: Path, missing: list[str]) -> tuple[DatasetSummary | None, dict[str, np.ndarray]]:
    images_dir = workdir / "images"
    summary = DatasetSummary()
    train_boxes: dict[str, np.ndarray] = {}
    found = False
    for split in ("train", "test"):
        rows = _label_rows(images_dir / f"{split}_labels.csv", missing)
        if rows is None:
            continue
        found = True
        counts = summary.objects_per_split.setdefault(split, {})
        for row in rows:
            name = row.get("class", "")
            summary.objects_per_class[name] = summary.objects_per_class.get(name, 0) + 1
            counts[name] = counts.get(name, 0) + 1
        if split == "train":
            train_boxes = label_boxes(rows)
        split_dir = images_dir / split
        if split_dir.is_dir():
            count = sum(
                1
                for p in split_dir.rglob("*")
                if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file()
            )
        else:
            count = len({row.get("filename") for row in rows})
        summary.split_images[split] = count
    split_file = _read_stage_file(SplitFile.read, images_dir / SPLIT_FILE, missing)
    validation = _read_stage_file(ValidationFile.read, images_dir / VALIDATION_FILE, missing)
    problems = [*(split_file.excluded if split_file else ()), *(validation.problems if validation else ())]
    found = found or split_file is not None or validation is not None
    for problem in problems:
        text = f"{problem.file}: {problem.message}"
        if problem.severity == ERROR and text not in summary.errors:
            summary.errors.append(text)
        elif problem.severity == WARNING:
            summary.warnings.append(text)
    if not found:
        return None, train_boxes
    summary.images = sum(summary.split_images.values())
    return summary, train_boxes


def _training_from(workdir: Path, missing: list[str]) -> TrainingFacts | None:
    """How the model was trained, from ``pipeline.config``, ``train_state.json``, the metrics history and the
    recorded start (``.spaghettinet/start.json``)."""
    from spaghettinet.pipeline_config import read_config

    training_dir = workdir / "training"
    model_dir = training_dir / "training-output"
    config_path = training_dir / "pipeline.config"
    if not config_path.is_file():
        return None
    try:
        config = read_config(config_path)
    except SpaghettiError as exc:
        missing.append(f"pipeline.config could not be read ({exc}); the training settings are left out.")
        return None
    train = config.train
    facts = TrainingFacts(
        variant=config.model.variant,
        input_size=(int(config.model.input_size[0]), int(config.model.input_size[1])),
        planned_steps=int(train.num_steps),
        batch_size=int(train.batch_size),
        optimizer=train.optimizer,
        learning_rate=float(train.learning_rate_base),
        warmup_steps=int(train.warmup_steps),
        moving_average_decay=float(train.moving_average_decay) if train.use_moving_average else None,
        qat_from_step=int(config.quantization.delay) if config.quantization is not None else None,
        augmentation=[type(step).proto_name for step in train.data_augmentation_options],
        from_scratch=not train.fine_tune_checkpoint,
        matched_threshold=float(config.model.matched_threshold),
    )
    # train_state.json holds the plan training really ran (fitted to a time budget, resumed, ...).
    plan = _read_stage_file(TrainPlan.read, model_dir / STATE_FILE, missing)
    if plan is not None:
        facts.planned_steps = plan.num_steps
        facts.batch_size = plan.batch_size
        facts.warmup_steps = plan.warmup_steps
        facts.qat_from_step = plan.quantization_delay
        facts.learning_rate = plan.learning_rate_base
        facts.time_budget_s = plan.time_budget_s
    history = _read_stage_file(MetricsHistory.read, model_dir / HISTORY_FILE, [])
    facts.trained_steps = history.last_step if history is not None else None
    start = _read_json(workdir / ".spaghettinet" / "start.json", [])
    if isinstance(start, Mapping) and isinstance(start.get("description"), str):
        facts.start = start["description"]
        if isinstance(start.get("kind"), str):
            facts.from_scratch = start["kind"] == "scratch"
    elif facts.from_scratch:
        facts.start = "from scratch"
    elif train.fine_tune_checkpoint:
        facts.start = f"fine-tuned from {train.fine_tune_checkpoint}"
    return facts


def coverage_facts(
    boxes_by_class: Mapping[str, np.ndarray],
    input_size: tuple[int, int],
    class_names: Sequence[str] = (),
    matched_threshold: float = 0.5,
) -> CoverageFacts:
    """Anchor coverage of training boxes per class at ``input_size``, and the smallest larger size that covers every
    class (the rule ``spaghettinet config`` prints).

    Args:
        boxes_by_class: class name → ``[M, 4]`` yxyx normalized boxes.
        input_size: ``(height, width)``.
        class_names: the label map's order (classes not in it are numbered after it).
        matched_threshold: the matcher's IoU threshold.

    Returns:
        :class:`CoverageFacts`.

    Example:
        >>> facts = coverage_facts({"cat": np.array([[0.2, 0.2, 0.8, 0.8]])}, (320, 320))
        >>> facts.share, facts.suggested_input_size
        ({'cat': 1.0}, None)
    """
    from spaghettinet.evaluation.coverage_report import POOR_COVERAGE

    from .anchor_coverage import suggest_input_size

    order = list(class_names) + sorted(set(boxes_by_class) - set(class_names))
    ids = {name: position + 1 for position, name in enumerate(order)}
    present = [name for name in order if name in boxes_by_class and len(boxes_by_class[name])]
    facts = CoverageFacts(input_size=(int(input_size[0]), int(input_size[1])))
    if not present:
        return facts
    boxes = np.concatenate([np.asarray(boxes_by_class[name]).reshape(-1, 4) for name in present])
    classes = np.concatenate([np.full(len(boxes_by_class[name]), ids[name]) for name in present])
    found = suggest_input_size(
        boxes, classes, facts.input_size, min_share=POOR_COVERAGE, iou=matched_threshold
    )
    for name in present:
        coverage = found.current.coverage[ids[name]]
        facts.share[name] = coverage.share
        facts.boxes[name] = coverage.num_boxes
    if found.recommended is not None:
        facts.suggested_input_size = int(max(found.recommended.image_size))
    return facts


def _shipped_model(exported: Path, export_report: ExportReport | None) -> Path | None:
    """The ``.tflite`` the last export wrote, int8 first (a stale file of an earlier export is not used)."""
    files = export_report.files if export_report is not None else {}
    for name in ("model_int8.tflite", "model_float.tflite"):
        if name in files and (exported / name).is_file():
            return exported / name
    return None


def _test_records(workdir: Path) -> list[Path]:
    return sorted((workdir / "training").glob("test.record*"))


def add_test_results(inputs: ReportInputs, workdir: str | Path) -> None:
    """Run the shipped model over the test records and put its detections into ``inputs.test_results`` (with the
    whole-split scores, the confusion matrix's input and the worst images). Without a model or records nothing is
    added; when the run fails, a note in ``inputs.missing`` says why.

    Args:
        inputs: report inputs loaded from ``workdir`` (its class names and export report are used).
        workdir: the run's folder.
    """

    from .split_detections import detect_test_split

    workdir = Path(workdir)
    model = _shipped_model(workdir / "exported", inputs.export_report)
    records = _test_records(workdir)
    if model is None or not records:
        return
    names = inputs.class_names or list(inputs.export_report.class_names if inputs.export_report else ())
    threshold = inputs.export_report.postprocess.score_threshold if inputs.export_report else inputs.min_score
    try:
        inputs.test_results = detect_test_split(model, records, names, score_threshold=threshold)
    except (SpaghettiError, ImportError, ValueError) as exc:
        inputs.missing.append(f"the shipped model could not be run on the test split ({exc}).")
        return
    if not inputs.test_pictures:
        inputs.test_pictures = list(inputs.test_results.samples)
    if inputs.test_results.precision_recall:
        # The shipped model's curves replace the checkpoint's: they are what an app gets.
        inputs.precision_recall = inputs.test_results.precision_recall
        inputs.precision_recall_model = inputs.test_results.scores.label


def load_report_inputs(workdir: str | Path, title: str | None = None, detect: bool = False) -> ReportInputs:
    """Fill :class:`ReportInputs` from a workdir in the seed's layout; missing or unreadable files leave gaps.

    Reads: ``images/{train,test}_labels.csv`` (counts per class and split, the training boxes),
    ``images/split.json`` and ``images/validation.json`` (warnings), ``training/label_map.pbtxt`` (class names),
    ``training/pipeline.config``, ``training/training-output/train_state.json`` and ``.spaghettinet/start.json``
    (how it was trained; the anchor coverage at its input size), ``training/training-output/metrics_history.json``
    (curves), ``training/training-output/eval.json`` (checkpoint scores), ``exported/export_report.json`` (TFLite
    float and int8 scores, checks), ``exported/*.tflite`` (sizes), ``exported/latency.json`` (latency).

    Args:
        workdir: the run's folder.
        title: page title; default from the workdir name.
        detect: also run the shipped model over the test records (:func:`add_test_results`; needs TensorFlow and
            LiteRT, about the model's latency per test image) for the confusion matrix and the worst test images.

    Returns:
        The inputs, with ``model_card_path`` set to ``exported/model_card.md`` when a model was exported. The sample
        of test pictures is not loaded here: :mod:`spaghettinet.workflow` adds it.
    """
    workdir = Path(workdir)
    inputs = ReportInputs(title=title or f"SpaghettiNet-EdgeTPU report: {workdir.name}")
    missing = inputs.missing
    inputs.class_names = _class_names_from_label_map(workdir / "training" / "label_map.pbtxt", missing)
    inputs.dataset, inputs.train_boxes = _dataset_from(workdir, missing)
    inputs.training = _training_from(workdir, missing)
    if inputs.training is not None and inputs.train_boxes:
        inputs.coverage = coverage_facts(
            inputs.train_boxes,
            inputs.training.input_size,
            inputs.class_names,
            inputs.training.matched_threshold,
        )
    model_dir = workdir / "training" / "training-output"
    history = _read_stage_file(MetricsHistory.read, model_dir / HISTORY_FILE, missing)
    if history is not None:
        inputs.loss_curves, inputs.learning_rate = history_curves(history)
    evaluation = _read_stage_file(EvalReport.read, model_dir / "eval.json", missing)
    if evaluation is not None:
        float_scores = scores_from_result(evaluation.result, "float (checkpoint)")
        inputs.scores.append(float_scores)
        inputs.precision_recall = _precision_recall(evaluation.result)
        inputs.precision_recall_model = float_scores.label
    export_path = workdir / "exported" / EXPORT_REPORT_FILE
    export_report = _read_stage_file(ExportReport.read, export_path, missing)
    if export_report is not None:
        inputs.export_report = export_report
        inputs.export_report_path = export_path
        inputs.min_score = export_report.postprocess.score_threshold
        for label, accuracy in _export_evaluations(export_report):
            scores = scores_from_export_check(accuracy, label)
            if scores is not None:
                inputs.scores.append(scores)
    exported = workdir / "exported"
    if exported.is_dir():
        models = sorted([*exported.glob("*.tflite"), *exported.glob("*.onnx")])
        inputs.model_sizes = {p.name: p.stat().st_size for p in models}
        if inputs.model_sizes:
            inputs.model_card_path = exported / MODEL_CARD
    latency = _read_stage_file(LatencyReport.read, workdir / "exported" / LATENCY_FILE, missing)
    if latency is not None:
        inputs.latency = latency.results
    if detect:
        add_test_results(inputs, workdir)
    return inputs


def _export_evaluations(report: ExportReport) -> list[tuple[str, ModelAccuracy]]:
    """(label, accuracy) of each model the export scored: float, then int8, fp16 and ONNX."""
    if report.checks is None:
        return []
    quantization = report.quantization.upper()
    int8_label = f"{quantization} int8 TFLite" if quantization in ("QAT", "PTQ") else "int8 TFLite"
    labels = {"float": "float TFLite", "int8": int8_label, "fp16": "fp16 TFLite", "onnx": "ONNX"}
    return [(labels[name], report.checks.accuracy[name]) for name in labels if name in report.checks.accuracy]
