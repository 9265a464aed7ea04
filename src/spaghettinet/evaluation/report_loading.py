"""Filling :class:`~spaghettinet.evaluation.report_inputs.ReportInputs` from a run's folder: each stage file read
with its typed class, a missing or unreadable one leaving a gap and a note instead of failing the report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spaghettinet.coco_metrics import CocoResult, EvalReport
from spaghettinet.data.problems import ERROR, WARNING
from spaghettinet.data.split import SPLIT_FILE, SplitFile
from spaghettinet.data.validation_file import VALIDATION_FILE, ValidationFile
from spaghettinet.deploy.export_report import (
    EXPORT_REPORT_FILE,
    ExportReport,
    ModelAccuracy,
)
from spaghettinet.errors import SpaghettiError
from spaghettinet.training.history import HISTORY_FILE, MetricsHistory
from spaghettinet.training.plan import STATE_FILE, TrainPlan

from .latency import LATENCY_FILE, LatencyReport
from .report_inputs import (
    COCO_METRIC_NAMES,
    MODEL_CARD,
    CoverageFacts,
    DatasetSummary,
    ModelScores,
    ReportInputs,
    TrainingFacts,
)

if TYPE_CHECKING:
    pass


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
