"""The training report: ``W/report/index.html`` (one self-contained file), ``W/report/report.md`` (with PNG/JPEG
files beside it) and the model card ``W/exported/model_card.md``.

The report answers "is the model good, and if not, why": its first section is a verdict (the shipped int8 model's
AP50 and AP on the test split, its latency and size, and what limits it, each with what to do), computed by the
rules of :mod:`spaghettinet.evaluation.diagnosis`. The rest shows the evidence: the data (counts per class and
split, the sizes and positions of the training boxes, anchor coverage), training curves, accuracy (per class, the
precision-recall curves, the confusion matrix), test pictures (a sample, and the images with the most errors),
latency and size, and the export's checks.

The report is built in three steps, so each can be tested alone:

1. :class:`~spaghettinet.evaluation.report_inputs.ReportInputs` holds everything shown;
   :func:`~spaghettinet.evaluation.report_loading.load_report_inputs` fills it from a workdir's files and
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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from spaghettinet import drawing
from spaghettinet.deploy.export_report import (
    DetectionAgreement,
    ExportReport,
)
from spaghettinet.io_utils import atomic_path, write_bytes_atomic, write_text_atomic

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
from .report_inputs import (
    COCO_METRICS,
    SCORE_LABELS,
    ReportInputs,
    cpu_name,
    main_loss,
    run_facts,
    shipped_file,
    shipped_latency,
    shipped_scores,
    training_rows,
)
from .report_loading import load_report_inputs

if TYPE_CHECKING:
    pass


MAX_TEST_PICTURES = 12
GRID_COLUMNS = 4
# Longest width of a test picture in the grid; larger photos are shrunk so the HTML file stays small.
GRID_CELL_PIXELS = 320
MODEL_CARD = "model_card.md"


# --------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------


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


def _training_section(inputs: ReportInputs) -> Section:
    section = Section("Training")
    if inputs.training is not None:
        section.blocks.append(Table(["setting", "value"], training_rows(inputs.training)))
    if inputs.loss_curves:
        png = visualize.line_chart_png(inputs.loss_curves, "Training loss", ylabel="loss", log_y=True)
        section.blocks.append(Figure(png, "image/png", "loss.png", "Training losses per step (log scale)."))
        share = diagnosis.falling_share(*main_loss(inputs))
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
