"""The training report: ``W/report/index.html`` (one self-contained file) and ``W/report/report.md`` (with PNG/JPEG
files beside it).

The report is built in three steps, so each can be tested alone:

1. :class:`ReportInputs` holds everything shown (dataset summary, curves, COCO scores, test pictures, latency,
   sizes, export checks); :func:`load_report_inputs` fills it from a workdir's files and tolerates missing ones.
2. :func:`build_sections` turns the inputs into a small document model (:class:`Section` of paragraphs, tables,
   figures, notices). A section whose inputs are missing says so instead of failing.
3. :func:`render_html` and :func:`render_markdown` print that model. Every string that may come from the user's
   files (class names, file names, warnings) passes through one escaping function per format, in one place:
   ``html.escape`` for HTML, backslash escapes for Markdown. The HTML page also carries a Content-Security-Policy
   that forbids scripts, so even a mistake in escaping could not run code.

Example:
    >>> write_report(ReportInputs(title="demo"), "work/report")  # doctest: +SKIP
    ReportPaths(html=PosixPath('work/report/index.html'), markdown=PosixPath('work/report/report.md'), ...)
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from spaghettinet.io_utils import atomic_path, write_bytes_atomic, write_text_atomic

from . import visualize

# COCO summary metrics in pycocotools' order (stats[0..5]), with the names users know them by.
COCO_METRICS: tuple[tuple[str, str], ...] = (
    ("AP", "AP @[.50:.95]"),
    ("AP50", "AP50"),
    ("AP75", "AP75"),
    ("APs", "AP small"),
    ("APm", "AP medium"),
    ("APl", "AP large"),
)
MAX_TEST_PICTURES = 12
GRID_COLUMNS = 4
# Longest width of a test picture in the grid; larger photos are shrunk so the HTML file stays small.
GRID_CELL_PIXELS = 320


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    """What the data stage found.

    Attributes:
        images: number of usable images.
        objects_per_class: class name → number of boxes.
        split_images: split name ("train", "test") → number of images.
        warnings: one message per problem that did not stop the run (each names its file).
        errors: one message per problem that excluded a file.
    """

    images: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    split_images: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class ModelScores:
    """COCO scores of one model on the test split.

    Attributes:
        label: which model ("float", "PTQ int8", "QAT int8", ...).
        metrics: metric key of :data:`COCO_METRICS` → value in [0, 1] (-1 means "no such objects", as pycocotools).
        per_class_ap: class name → AP @[.50:.95].
    """

    label: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_class_ap: dict[str, float] = field(default_factory=dict)


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
class ReportInputs:
    """Everything the report shows; every field may be empty, and its section then says what is missing.

    Attributes:
        title: page title.
        class_names: 0-based class names (from the label map).
        settings: key → value lines describing the run (variant, input size, steps, ...).
        dataset: the data stage's summary.
        loss_curves: series name → (steps, values).
        learning_rate: (steps, values).
        scores: COCO scores per model, in display order.
        precision_recall: class name → (recall, precision) at IoU 0.5 for the shipped model.
        precision_recall_model: which model the precision-recall curves are for.
        test_pictures: test images with predicted and true boxes.
        min_score: predictions below this are not drawn on the test pictures.
        latency: rows with keys ``model``, ``threads``, ``median_ms``, ``p90_ms`` (others are shown too).
        model_sizes: file name → bytes.
        export_report: the export stage's ``export_report.json`` content.
        missing: free-text notes on inputs that could not be read (shown at the top).
    """

    title: str = "SpaghettiNet-EdgeTPU training report"
    class_names: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    dataset: DatasetSummary | None = None
    loss_curves: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    learning_rate: tuple[Sequence[float], Sequence[float]] | None = None
    scores: list[ModelScores] = field(default_factory=list)
    precision_recall: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    precision_recall_model: str = ""
    test_pictures: list[PredictedPicture] = field(default_factory=list)
    min_score: float = 0.3
    latency: list[dict] = field(default_factory=list)
    model_sizes: dict[str, int] = field(default_factory=dict)
    export_report: dict | None = None
    missing: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# Document model
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Paragraph:
    text: str


@dataclass
class Notice:
    """A missing-input or warning line, shown highlighted."""

    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """An image: ``data`` is PNG or JPEG bytes, ``filename`` the name it gets beside ``report.md``."""

    data: bytes
    mime: str
    filename: str
    caption: str


@dataclass
class Preformatted:
    text: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


def _format_number(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "nan"
    if number < 0 and number == -1:  # pycocotools' "no objects of this size"
        return "–"
    return f"{number:.{digits}f}"


def _format_bytes(size: int) -> str:
    if size >= 1024**2:
        return f"{size / 1024**2:.2f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} B"


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
        rows = [[name, str(count)] for name, count in sorted(dataset.objects_per_class.items())]
        section.blocks.append(Table(["class", "objects"], rows))
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
    if inputs.loss_curves:
        png = visualize.line_chart_png(inputs.loss_curves, "Training loss", ylabel="loss", log_y=True)
        section.blocks.append(Figure(png, "image/png", "loss.png", "Training losses per step (log scale)."))
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
    if not inputs.scores:
        section.blocks.append(
            Notice("No evaluation results: the evaluation/export stages' outputs were not found.")
        )
        return section
    headers = ["model"] + [title for _, title in COCO_METRICS]
    rows = [
        [scores.label] + [_format_number(scores.metrics.get(key)) for key, _ in COCO_METRICS]
        for scores in inputs.scores
    ]
    section.blocks.append(Table(headers, rows))
    with_classes = [scores for scores in inputs.scores if scores.per_class_ap]
    if with_classes:
        names = sorted({name for scores in with_classes for name in scores.per_class_ap})
        rows = [
            [name] + [_format_number(scores.per_class_ap.get(name)) for scores in with_classes]
            for name in names
        ]
        section.blocks.append(Paragraph("AP @[.50:.95] per class:"))
        section.blocks.append(Table(["class"] + [scores.label for scores in with_classes], rows))
    if inputs.precision_recall:
        title = "Precision-recall at IoU 0.5"
        if inputs.precision_recall_model:
            title += f" ({inputs.precision_recall_model})"
        png = visualize.precision_recall_png(inputs.precision_recall, title=title)
        section.blocks.append(
            Figure(png, "image/png", "precision_recall.png", title + ", one curve per class.")
        )
    else:
        section.blocks.append(Notice("No precision-recall curves in the evaluation results."))
    return section


def _pictures_section(inputs: ReportInputs) -> Section:
    section = Section("Test pictures")
    if not inputs.test_pictures:
        section.blocks.append(Notice("No test pictures: no model predictions on the test split were found."))
        return section
    drawn = []
    for picture in inputs.test_pictures[:MAX_TEST_PICTURES]:
        image = picture.image.convert("RGB")
        if max(image.size) > GRID_CELL_PIXELS:
            image.thumbnail((GRID_CELL_PIXELS, GRID_CELL_PIXELS))
        drawn.append(
            visualize.draw_detections(
                image,
                picture.boxes,
                picture.classes,
                picture.scores,
                inputs.class_names,
                true_boxes=picture.true_boxes,
                true_classes=picture.true_classes,
                min_score=inputs.min_score,
            )
        )
    grid = visualize.image_grid(drawn, columns=GRID_COLUMNS)
    caption = (
        f"Predictions (solid, score ≥ {inputs.min_score:g}) and ground truth (dashed) on "
        f"{len(drawn)} test images, in reading order:"
    )
    section.blocks.append(Figure(visualize.image_jpeg(grid), "image/jpeg", "test_pictures.jpg", caption))
    section.blocks.append(BulletList([picture.name for picture in inputs.test_pictures[: len(drawn)]]))
    return section


def _speed_section(inputs: ReportInputs) -> Section:
    section = Section("Latency and size")
    if inputs.latency:
        known = ["model", "threads", "median_ms", "p90_ms"]
        extra = sorted({key for row in inputs.latency for key in row} - set(known))
        headers = known + extra
        rows = [[_format_number(row.get(key), 2) for key in headers] for row in inputs.latency]
        section.blocks.append(Table(headers, rows))
    else:
        section.blocks.append(Notice("No latency measurements."))
    if inputs.model_sizes:
        rows = [[name, _format_bytes(size)] for name, size in sorted(inputs.model_sizes.items())]
        section.blocks.append(Table(["file", "size"], rows))
    else:
        section.blocks.append(Notice("No exported model files found."))
    return section


def _export_section(inputs: ReportInputs) -> Section:
    section = Section("Export checks")
    report = inputs.export_report
    if not report:
        section.blocks.append(Notice("No export report (export_report.json) found."))
        return section
    scalars = [
        [str(key), _format_number(value)]
        for key, value in report.items()
        if not isinstance(value, dict | list)
    ]
    if scalars:
        section.blocks.append(Table(["check", "value"], scalars))
    section.blocks.append(Preformatted(json.dumps(report, indent=2, sort_keys=True, default=str)))
    return section


def build_sections(inputs: ReportInputs) -> list[Section]:
    """Turn report inputs into sections of paragraphs, tables and figures (no escaping yet).

    Args:
        inputs: what to show.

    Returns:
        The sections in page order: run settings, dataset, training, accuracy, test pictures, latency and size,
        export checks.

    Example:
        >>> [section.title for section in build_sections(ReportInputs())][:2]
        ['Run', 'Dataset']
    """
    run = Section("Run")
    for note in inputs.missing:
        run.blocks.append(Notice(note))
    if inputs.settings:
        run.blocks.append(Table(["setting", "value"], [[str(k), str(v)] for k, v in inputs.settings.items()]))
    else:
        run.blocks.append(Paragraph("No run settings recorded."))
    return [
        run,
        _dataset_section(inputs),
        _training_section(inputs),
        _accuracy_section(inputs),
        _pictures_section(inputs),
        _speed_section(inputs),
        _export_section(inputs),
    ]


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.notice { background: #fff6d5; border-left: 4px solid #e0b400; padding: 0.4em 0.8em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; max-height: 30em; }
figcaption { color: #555; font-size: 0.9em; }
"""

# No scripts, no external anything: images only from data: URIs, styles only from the page itself.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def escape_html(text: object) -> str:
    """Escape any value for HTML text and attribute values (``<``, ``>``, ``&``, both quotes)."""
    return html.escape(str(text), quote=True)


# Characters with a meaning anywhere in a line; "-", "+", "1." only start a list at the beginning of a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~>])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])")


def escape_markdown(text: object) -> str:
    """Make any value literal text in Markdown (CommonMark/GFM), also inside a table cell.

    ASCII punctuation with a meaning is backslash-escaped, ``<`` and ``&`` become entities (so no raw HTML or
    entity reaches a renderer) and line breaks become spaces.

    Example:
        >>> escape_markdown("<img src=x onerror=alert(1)>")
        '&lt;img src=x onerror=alert\\\\(1\\\\)\\\\>'
    """
    flat = re.sub(r"[\r\n\t]+", " ", str(text))
    flat = flat.replace("&", "&amp;").replace("<", "&lt;")
    flat = _MARKDOWN_SPECIAL.sub(r"\\\1", flat)
    # Escape the list marker itself: "-" → "\\-", "12." → "12\\.".
    return _MARKDOWN_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], flat)


def _data_uri(figure: Figure) -> str:
    return f"data:{figure.mime};base64,{base64.b64encode(figure.data).decode('ascii')}"


def render_html(title: str, sections: Sequence[Section]) -> str:
    """Render sections as one self-contained HTML page (inline CSS, images as data: URIs, no scripts).

    Args:
        title: page title (escaped).
        sections: from :func:`build_sections`.

    Returns:
        The HTML text.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape_html(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape_html(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape_html(title)}</h1>",
    ]
    for section in sections:
        parts.append("<section>")
        parts.append(f"<h2>{escape_html(section.title)}</h2>")
        for block in section.blocks:
            parts.append(_html_block(block))
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _html_block(block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape_html(block.text)}</p>"
    if isinstance(block, Notice):
        return f'<p class="notice">{escape_html(block.text)}</p>'
    if isinstance(block, BulletList):
        items = "".join(f"<li>{escape_html(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{escape_html(cell)}</th>" for cell in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape_html(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figure):
        caption = escape_html(block.caption)
        return f'<figure><img src="{_data_uri(block)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    if isinstance(block, Preformatted):
        return f"<pre>{escape_html(block.text)}</pre>"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(title: str, sections: Sequence[Section]) -> tuple[str, dict[str, bytes]]:
    """Render sections as Markdown; figures become files referenced by relative name.

    Args:
        title: page title (escaped).
        sections: from :func:`build_sections`.

    Returns:
        The Markdown text and a mapping file name → bytes of the figures to write beside it.
    """
    lines = [f"# {escape_markdown(title)}", ""]
    files: dict[str, bytes] = {}
    for section in sections:
        lines += [f"## {escape_markdown(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.append(escape_markdown(block.text))
            elif isinstance(block, Notice):
                lines.append(f"> **Note:** {escape_markdown(block.text)}")
            elif isinstance(block, BulletList):
                lines += [f"- {escape_markdown(item)}" for item in block.items]
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(escape_markdown(cell) for cell in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += [
                    "| " + " | ".join(escape_markdown(cell) for cell in row) + " |" for row in block.rows
                ]
            elif isinstance(block, Figure):
                files[block.filename] = block.data
                lines.append(f"![{escape_markdown(block.caption)}]({block.filename})")
                lines.append("")
                lines.append(f"*{escape_markdown(block.caption)}*")
            elif isinstance(block, Preformatted):
                # A fence longer than any backtick run inside keeps the content literal.
                longest = max((len(run) for run in re.findall(r"`+", block.text)), default=0)
                fence = "`" * max(3, longest + 1)
                lines += [fence, block.text, fence]
            else:
                raise TypeError(f"unknown report block {type(block).__name__}")
            lines.append("")
    return "\n".join(lines), files


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written."""

    html: Path
    markdown: Path
    figures: tuple[Path, ...]


def write_report(inputs: ReportInputs | str | Path, out_dir: str | Path) -> ReportPaths:
    """Write ``index.html`` (self-contained) and ``report.md`` with its figures into ``out_dir``.

    Args:
        inputs: the report inputs, or a workdir to load them from with :func:`load_report_inputs`.
        out_dir: the report folder (``W/report``); created if missing. Each file is written atomically.

    Returns:
        The paths written.

    Example:
        >>> paths = write_report("work", "work/report")  # doctest: +SKIP
        >>> paths.html.name
        'index.html'
    """
    if not isinstance(inputs, ReportInputs):
        inputs = load_report_inputs(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = build_sections(inputs)
    markdown, files = render_markdown(inputs.title, sections)
    figures = tuple(write_bytes_atomic(out_dir / name, data) for name, data in files.items())
    markdown_path = write_text_atomic(out_dir / "report.md", markdown)
    with atomic_path(out_dir / "index.html") as temporary:
        temporary.write_text(render_html(inputs.title, sections), encoding="utf-8")
    return ReportPaths(html=out_dir / "index.html", markdown=markdown_path, figures=figures)


# --------------------------------------------------------------------------------------------------------------
# Loading from a workdir
# --------------------------------------------------------------------------------------------------------------


def _read_json(path: Path, missing: list[str]) -> object | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        missing.append(f"{path.name} could not be read ({exc}); its section is left out.")
        return None


def history_series(history: object) -> dict[str, tuple[list[float], list[float]]]:
    """Numeric series of a metrics history: a list of ``{"step": n, name: value, ...}`` records, or a mapping
    ``{"step": [...], name: [...]}``, or a mapping ``{name: [[step, value], ...]}``.

    Args:
        history: the parsed JSON.

    Returns:
        name → (steps, values), non-numeric entries skipped.

    Example:
        >>> history_series([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
        {'loss': ([1.0, 2.0], [2.0, 1.5])}
    """
    series: dict[str, tuple[list[float], list[float]]] = {}

    def add(name: str, step: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if isinstance(step, bool) or not isinstance(step, int | float):
            return
        xs, ys = series.setdefault(str(name), ([], []))
        xs.append(float(step))
        ys.append(float(value))

    if isinstance(history, Mapping) and isinstance(history.get("history"), list | Mapping):
        history = history["history"]
    if isinstance(history, list):
        for position, record in enumerate(history):
            if isinstance(record, Mapping):
                step = record.get("step", position)
                for name, value in record.items():
                    if name != "step":
                        add(name, step, value)
    elif isinstance(history, Mapping):
        steps = history.get("step") or history.get("steps")
        for name, values in history.items():
            if name in ("step", "steps") or not isinstance(values, list):
                continue
            for position, value in enumerate(values):
                if isinstance(value, list | tuple) and len(value) == 2:
                    add(name, value[0], value[1])
                else:
                    step = steps[position] if isinstance(steps, list) and position < len(steps) else position
                    add(name, step, value)
    return series


def split_curves(
    series: Mapping[str, tuple[list[float], list[float]]],
) -> tuple[dict[str, tuple[list[float], list[float]]], tuple[list[float], list[float]] | None]:
    """Sort history series into loss curves (names containing "loss") and the learning-rate curve."""
    losses = {name: xy for name, xy in series.items() if "loss" in name.lower()}
    rate = next(
        (
            xy
            for name, xy in series.items()
            if name.lower() in ("lr", "learning_rate") or "learning_rate" in name.lower()
        ),
        None,
    )
    return losses, rate


def _metrics_from(payload: Mapping) -> dict[str, float]:
    aliases = {
        "AP": ("AP", "mAP", "ap", "AP@[.50:.95]"),
        "AP50": ("AP50", "ap50", "AP@.50", "mAP@0.5"),
        "AP75": ("AP75", "ap75"),
        "APs": ("APs", "AP_small", "ap_small"),
        "APm": ("APm", "AP_medium", "ap_medium"),
        "APl": ("APl", "AP_large", "ap_large"),
    }
    source = payload.get("metrics", payload) if isinstance(payload.get("metrics"), Mapping) else payload
    metrics = {}
    for key, names in aliases.items():
        for name in names:
            value = source.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[key] = float(value)
                break
    return metrics


def _per_class_from(payload: Mapping) -> dict[str, float]:
    for key in ("per_class_ap", "per_class", "class_ap", "ap_per_class"):
        value = payload.get(key)
        if isinstance(value, Mapping):
            out = {}
            for name, entry in value.items():
                if isinstance(entry, Mapping):
                    entry = entry.get("AP", entry.get("ap"))
                if isinstance(entry, int | float) and not isinstance(entry, bool):
                    out[str(name)] = float(entry)
            return out
    return {}


def _pr_from(payload: Mapping) -> dict[str, tuple[list[float], list[float]]]:
    value = payload.get("precision_recall") or payload.get("pr_curves_iou50")
    curves = {}
    if isinstance(value, Mapping):
        for name, entry in value.items():
            if isinstance(entry, Mapping) and isinstance(entry.get("recall"), list):
                curves[str(name)] = (entry["recall"], entry.get("precision", []))
    return curves


def scores_from_eval(payload: object, label: str) -> ModelScores | None:
    """Read a stage's evaluation JSON (``eval.json`` or an entry of the export report) into :class:`ModelScores`."""
    if not isinstance(payload, Mapping):
        return None
    metrics = _metrics_from(payload)
    if not metrics:
        return None
    return ModelScores(label=label, metrics=metrics, per_class_ap=_per_class_from(payload))


def _class_names_from_label_map(path: Path, missing: list[str]) -> list[str]:
    if not path.is_file():
        return []
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.errors import SpaghettiError

    try:
        return list(read_label_map(path).names)
    except SpaghettiError as exc:
        missing.append(f"{path.name} could not be read ({exc}); classes are shown by number.")
        return []


def _dataset_from(workdir: Path, missing: list[str]) -> DatasetSummary | None:
    images_dir = workdir / "images"
    summary = DatasetSummary()
    found = False
    for split in ("train", "test"):
        csv_path = images_dir / f"{split}_labels.csv"
        if not csv_path.is_file():
            continue
        found = True
        import csv

        try:
            with open(csv_path, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            missing.append(f"{csv_path.name} could not be read ({exc}).")
            continue
        for row in rows:
            name = row.get("class", "")
            summary.objects_per_class[name] = summary.objects_per_class.get(name, 0) + 1
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
    split_json = _read_json(images_dir / "split.json", missing)
    if isinstance(split_json, Mapping):
        found = True
        for key in ("excluded", "errors"):
            for entry in split_json.get(key, []) or []:
                summary.errors.append(_problem_text(entry))
        for entry in split_json.get("warnings", []) or []:
            summary.warnings.append(_problem_text(entry))
    validation = _read_json(workdir / "images" / "validation.json", missing)
    if isinstance(validation, Mapping):
        found = True
        for entry in validation.get("excluded", []) or []:
            if _problem_text(entry) not in summary.errors:
                summary.errors.append(_problem_text(entry))
        for entry in validation.get("problems", []) or []:
            severity = (
                str(entry.get("severity", entry.get("level", "warning"))).lower()
                if isinstance(entry, Mapping)
                else "warning"
            )
            if severity == "error":
                if _problem_text(entry) not in summary.errors:
                    summary.errors.append(_problem_text(entry))
            elif severity == "warning":
                summary.warnings.append(_problem_text(entry))
    if not found:
        return None
    summary.images = sum(summary.split_images.values())
    return summary


def _problem_text(entry: object) -> str:
    if isinstance(entry, Mapping):
        path = entry.get("path") or entry.get("file") or entry.get("image") or ""
        message = entry.get("message") or entry.get("reason") or entry.get("kind") or ""
        return f"{path}: {message}" if path else str(message)
    return str(entry)


def load_report_inputs(workdir: str | Path, title: str | None = None) -> ReportInputs:
    """Fill :class:`ReportInputs` from a workdir in the seed's layout; missing or unreadable files leave gaps.

    Reads: ``images/{train,test}_labels.csv``, ``images/split.json`` and ``images/validation.json`` (dataset and
    warnings), ``training/label_map.pbtxt`` (class names), ``training/training-output/metrics_history.json``
    (curves), ``training/training-output/eval.json`` (checkpoint scores), ``exported/export_report.json`` (TFLite
    float and int8 scores, checks), ``exported/*.tflite`` (sizes), ``exported/latency.json`` (latency).

    Args:
        workdir: the run's folder.
        title: page title; default from the workdir name.

    Returns:
        The inputs (test pictures are not loaded here: they need a model; :mod:`spaghettinet.workflow` adds them).
    """
    workdir = Path(workdir)
    inputs = ReportInputs(title=title or f"SpaghettiNet-EdgeTPU report: {workdir.name}")
    missing = inputs.missing
    inputs.class_names = _class_names_from_label_map(workdir / "training" / "label_map.pbtxt", missing)
    inputs.dataset = _dataset_from(workdir, missing)
    model_dir = workdir / "training" / "training-output"
    history = _read_json(model_dir / "metrics_history.json", missing)
    if history is not None:
        inputs.loss_curves, inputs.learning_rate = split_curves(history_series(history))
    evaluation = _read_json(model_dir / "eval.json", missing)
    float_scores = scores_from_eval(evaluation, "float (checkpoint)")
    if float_scores is not None:
        inputs.scores.append(float_scores)
        inputs.precision_recall = _pr_from(evaluation)
        inputs.precision_recall_model = float_scores.label
    export_report = _read_json(workdir / "exported" / "export_report.json", missing)
    if isinstance(export_report, Mapping):
        inputs.export_report = dict(export_report)
        for label, entry in _export_evaluations(export_report):
            scores = scores_from_eval(entry, label)
            if scores is not None:
                inputs.scores.append(scores)
                pr = _pr_from(entry)
                if pr:
                    inputs.precision_recall, inputs.precision_recall_model = pr, label
    exported = workdir / "exported"
    if exported.is_dir():
        inputs.model_sizes = {p.name: p.stat().st_size for p in sorted(exported.glob("*.tflite"))}
    latency = _read_json(workdir / "exported" / "latency.json", missing)
    if isinstance(latency, list):
        inputs.latency = [row for row in latency if isinstance(row, Mapping)]
    elif isinstance(latency, Mapping):
        inputs.latency = [latency]
    return inputs


def _export_evaluations(report: Mapping) -> list[tuple[str, Mapping]]:
    """(label, metrics) pairs of an export report: its ``checks.map_float`` / ``checks.map_int8`` entries."""
    found = []
    checks = report.get("checks")
    if isinstance(checks, Mapping):
        quantization = str(report.get("quantization", "")).upper()
        int8_label = f"{quantization} int8 TFLite" if quantization in ("QAT", "PTQ") else "int8 TFLite"
        for key, label in (("map_float", "float TFLite"), ("map_int8", int8_label)):
            entry = checks.get(key)
            if isinstance(entry, Mapping):
                found.append((label, entry))
    return found
