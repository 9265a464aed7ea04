"""What a detector got wrong, drawn on a picture, and figures of training curves, for the report.

* :func:`draw_errors` draws missed objects, false and confused detections on a copy of an image, each its own
  colour and line (the box drawing itself is :mod:`spaghettinet.drawing`'s).
* PNG bytes of matplotlib figures: :func:`line_chart_png` (loss and learning-rate curves),
  :func:`precision_recall_png` (one curve per class), :func:`confusion_matrix_png` and
  :func:`label_distribution_png` (sizes and positions of the labelled boxes per class). matplotlib is imported lazily and only through its
  object-oriented API with the Agg canvas, so nothing here touches pyplot's global state or needs a display.

Class names come from annotation files, which are untrusted: in matplotlib the ``$`` that would start mathtext is
escaped (an odd ``$`` in a legend would otherwise make rendering fail).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from spaghettinet.drawing import (
    box_array,
    box_pixels,
    class_colour,
    class_label,
    dashed_rectangle,
    draw_tag,
    font_for,
    plain_label,
)
from spaghettinet.evaluation.confusion import match_image

MISSED_COLOUR = (0, 90, 255)
FALSE_COLOUR = (230, 0, 0)
CONFUSED_COLOUR = (255, 140, 0)
CORRECT_COLOUR = (0, 160, 0)


def draw_errors(
    image: Image.Image,
    true_boxes,
    true_classes,
    boxes,
    classes,
    scores,
    class_names: Sequence[str],
    score_threshold: float = 0.0,
) -> Image.Image:
    """Draw what a detector got wrong on a copy of ``image``: missed objects, false and confused detections.

    Detections at or above ``score_threshold`` are matched to the objects as the confusion matrix does
    (:func:`spaghettinet.evaluation.confusion.match_image`). Missed objects are thick dashed blue boxes tagged
    "missed <class>"; false detections (on no object) solid red boxes tagged "<class> <score>"; detections of the
    wrong class solid orange boxes tagged "<class> <score> (is <true class>)"; correct detections thin green boxes
    without a tag.

    Args:
        image: the picture (not modified).
        true_boxes / true_classes: ``[M, 4]`` yxyx normalized objects and their ``[M]`` 0-based classes.
        boxes / classes / scores: ``[N, 4]`` detections, their ``[N]`` 0-based classes and scores.
        class_names: names indexed by 0-based class.
        score_threshold: detections below it are not drawn (nor matched).

    Returns:
        A new RGB image the size of ``image``.

    Example:
        >>> out = draw_errors(Image.new("RGB", (64, 64)), [[0.1, 0.1, 0.5, 0.5]], [0], [], [], [], ["cat"])
        >>> out.size
        (64, 64)
    """
    canvas = image.convert("RGB")
    width, height = canvas.size
    truth = box_array(true_boxes, "true_boxes", 4)
    found = box_array(boxes, "boxes", 4)
    match = match_image(truth, true_classes, found, classes, scores, score_threshold)
    draw = ImageDraw.Draw(canvas)
    short_side = min(width, height)
    line_width = max(2, round(short_side / 120))
    font = font_for(max(10, round(short_side / 26)))
    found_scores = box_array(scores, "scores")
    # Correct ones first and thin, so the errors are drawn over them.
    for position, obj in enumerate(match.detection_match):
        if obj >= 0 and match.detection_classes[position] == match.true_classes[obj]:
            rect = box_pixels(found[match.detection_indices[position]], width, height)
            if rect is not None:
                draw.rectangle(rect, outline=CORRECT_COLOUR, width=max(1, line_width // 2))
    for obj in np.flatnonzero(match.object_match < 0):
        rect = box_pixels(truth[obj], width, height)
        if rect is not None:
            dashed_rectangle(draw, rect, MISSED_COLOUR, line_width, dash=max(3, line_width * 2))
            label = f"missed {class_label(match.true_classes[obj], class_names)}"
            draw_tag(draw, rect, label, MISSED_COLOUR, font, width)
    for position, obj in enumerate(match.detection_match):
        index = match.detection_indices[position]
        predicted = match.detection_classes[position]
        if obj >= 0 and predicted == match.true_classes[obj]:
            continue
        rect = box_pixels(found[index], width, height)
        if rect is None:
            continue
        label = f"{class_label(predicted, class_names)} {found_scores[index]:.2f}"
        colour = FALSE_COLOUR
        if obj >= 0:
            colour = CONFUSED_COLOUR
            label += f" (is {class_label(match.true_classes[obj], class_names)})"
        draw.rectangle(rect, outline=colour, width=line_width)
        draw_tag(draw, rect, label, colour, font, width)
    return canvas


def mathtext_safe(text: object) -> str:
    """Make an untrusted string plain text for matplotlib: one line, ``$`` escaped so mathtext never starts."""
    return plain_label(text, max_chars=60).replace("$", r"\$")


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.3 s to import

    return Figure(figsize=figsize, dpi=100, layout="constrained")


def _figure_png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def line_chart_png(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "step",
    ylabel: str = "",
    log_y: bool = False,
    figsize: tuple[float, float] = (6.4, 3.6),
) -> bytes:
    """Plot named ``(x, y)`` series as lines (loss curves, learning rate) and return the PNG bytes.

    Non-finite values are left out of a series (a NaN loss does not break the chart); with ``log_y`` only positive
    values are kept. An empty mapping gives a chart saying "no data".

    Args:
        series: legend name → (x values, y values) of equal length.
        title: the chart title.
        xlabel: x-axis label.
        ylabel: y-axis label.
        log_y: use a logarithmic y-axis.
        figsize: figure size in inches (100 dpi).

    Returns:
        PNG bytes.

    Example:
        >>> png = line_chart_png({"total loss": ([0, 1, 2], [3.0, 2.0, 1.5])}, "Loss")
        >>> png[:4] == b"\\x89PNG"
        True
    """
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    handles, labels = [], []
    for name, (xs, ys) in series.items():
        x_values = np.asarray(xs, dtype=np.float64).reshape(-1)
        y_values = np.asarray(ys, dtype=np.float64).reshape(-1)
        if len(x_values) != len(y_values):
            raise ValueError(f"series {name!r}: {len(x_values)} x values but {len(y_values)} y values")
        keep = np.isfinite(x_values) & np.isfinite(y_values)
        if log_y:
            keep &= y_values > 0
        (line,) = axes.plot(x_values[keep], y_values[keep], linewidth=1.4)
        handles.append(line)
        labels.append(mathtext_safe(name))
    if not handles:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    if log_y and handles:
        axes.set_yscale("log")
    axes.set_title(mathtext_safe(title))
    axes.set_xlabel(mathtext_safe(xlabel))
    axes.set_ylabel(mathtext_safe(ylabel))
    axes.grid(True, alpha=0.3)
    if len(handles) > 1:
        # Explicit labels: matplotlib would otherwise hide series whose name starts with "_".
        axes.legend(handles, labels, fontsize="small")
    return _figure_png(figure)


def precision_recall_png(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "Precision-recall at IoU 0.5",
    figsize: tuple[float, float] = (6.4, 4.8),
) -> bytes:
    """Plot one precision-recall curve per class and return the PNG bytes.

    Args:
        curves: class name → (recall values, precision values), e.g. from pycocotools' ``eval["precision"]`` at
            IoU 0.5 over its 101 recall points. Negative precisions (pycocotools' "no data") are left out.
        title: the chart title.
        figsize: figure size in inches (100 dpi).

    Returns:
        PNG bytes.

    Example:
        >>> png = precision_recall_png({"cat": ([0.0, 0.5, 1.0], [1.0, 0.9, 0.4])})
        >>> png[:4] == b"\\x89PNG"
        True
    """
    figure = _new_figure(figsize)
    axes = figure.add_subplot()
    handles, labels = [], []
    for index, (name, (recall, precision)) in enumerate(curves.items()):
        recall_values = np.asarray(recall, dtype=np.float64).reshape(-1)
        precision_values = np.asarray(precision, dtype=np.float64).reshape(-1)
        if len(recall_values) != len(precision_values):
            raise ValueError(
                f"class {name!r}: {len(recall_values)} recalls but {len(precision_values)} precisions"
            )
        keep = np.isfinite(recall_values) & np.isfinite(precision_values) & (precision_values >= 0)
        colour = tuple(channel / 255 for channel in class_colour(index))
        (line,) = axes.plot(recall_values[keep], precision_values[keep], color=colour, linewidth=1.4)
        handles.append(line)
        labels.append(mathtext_safe(name))
    if not handles:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(mathtext_safe(title))
    axes.grid(True, alpha=0.3)
    if handles:
        axes.legend(handles, labels, fontsize="small", loc="lower left")
    return _figure_png(figure)


def confusion_matrix_png(counts, labels: Sequence[str], title: str = "Confusion matrix") -> bytes:
    """Plot a confusion matrix (rows: true class, columns: predicted class) and return the PNG bytes.

    Each row is coloured by its share of the row's total (so a class with few objects is as visible as a large
    one) and every cell shows its count, when there are at most 20 rows. The last row and column are usually
    "background": missed objects and false detections.

    Args:
        counts: ``[L, L]`` non-negative counts.
        labels: the ``L`` row and column names (untrusted, drawn as plain text).
        title: the chart title.

    Returns:
        PNG bytes.

    Example:
        >>> png = confusion_matrix_png([[3, 1], [2, 0]], ["cat", "background"])
        >>> png[:4] == b"\\x89PNG"
        True
    """
    matrix = np.asarray(counts, dtype=np.float64)
    size = len(labels)
    if matrix.shape != (size, size):
        raise ValueError(f"counts must be {size}x{size} for {size} labels, got {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = min(12.0, max(4.8, 0.55 * size + 2.4))
    figure = _new_figure((side + 1.0, side))
    axes = figure.add_subplot()
    shown = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    names = [mathtext_safe(plain_label(label, max_chars=24)) for label in labels]
    axes.set_xticks(range(size), names, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(range(size), names, fontsize="small")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(mathtext_safe(title))
    if size <= 20:
        for row in range(size):
            for column in range(size):
                if matrix[row, column]:
                    axes.text(
                        column,
                        row,
                        str(int(matrix[row, column])),
                        ha="center",
                        va="center",
                        fontsize="medium" if size <= 10 else "small",
                        color="white" if shares[row, column] > 0.6 else "black",
                    )
    colourbar = figure.colorbar(shown, ax=axes, shrink=0.8)
    colourbar.set_label("share of the row")
    return _figure_png(figure)


#: Points per class drawn in :func:`label_distribution_png`; more only blot the picture (a fixed sample is drawn).
MAX_POINTS_PER_CLASS = 2000


def label_distribution_png(
    boxes_by_class: Mapping[str, Sequence[Sequence[float]]],
    title: str = "Training labels",
) -> bytes:
    """Plot the sizes and the positions of labelled boxes, one colour per class, and return the PNG bytes.

    Left: box width against height as fractions of the image (log scales, so small objects spread out). Right:
    box centres in the image (y pointing down, as in the photo).

    Args:
        boxes_by_class: class name → ``[M, 4]`` yxyx normalized boxes; colours follow the mapping's order, as
            :func:`class_colour` of the position.
        title: the figure title.

    Returns:
        PNG bytes.

    Example:
        >>> png = label_distribution_png({"cat": [[0.1, 0.1, 0.5, 0.4]]})
        >>> png[:4] == b"\\x89PNG"
        True
    """
    figure = _new_figure((10.0, 4.4))
    size_axes, place_axes = figure.subplots(1, 2)
    rng = np.random.default_rng(0)
    handles, labels = [], []
    for index, (name, boxes) in enumerate(boxes_by_class.items()):
        array = box_array(boxes, "boxes", 4)
        array = array[np.all(np.isfinite(array), axis=1)]
        if len(array) > MAX_POINTS_PER_CLASS:
            array = array[rng.choice(len(array), MAX_POINTS_PER_CLASS, replace=False)]
        heights = np.clip(array[:, 2] - array[:, 0], 1e-4, 1.0)
        widths = np.clip(array[:, 3] - array[:, 1], 1e-4, 1.0)
        centre_y = (array[:, 0] + array[:, 2]) / 2
        centre_x = (array[:, 1] + array[:, 3]) / 2
        colour = tuple(channel / 255 for channel in class_colour(index))
        points = size_axes.scatter(widths, heights, s=9, color=colour, alpha=0.6, linewidths=0)
        place_axes.scatter(centre_x, centre_y, s=9, color=colour, alpha=0.6, linewidths=0)
        handles.append(points)
        labels.append(f"{mathtext_safe(name)} ({len(box_array(boxes, 'boxes', 4))})")
    if not handles:
        size_axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=size_axes.transAxes)
    else:
        size_axes.set_xscale("log")
        size_axes.set_yscale("log")
    size_axes.set_xlim(5e-3, 1.05)
    size_axes.set_ylim(5e-3, 1.05)
    size_axes.set_xlabel("box width / image width")
    size_axes.set_ylabel("box height / image height")
    size_axes.set_title("Box sizes")
    size_axes.grid(True, alpha=0.3, which="both")
    place_axes.set_xlim(0.0, 1.0)
    place_axes.set_ylim(1.0, 0.0)
    place_axes.set_aspect("equal")
    place_axes.set_xlabel("centre x / image width")
    place_axes.set_ylabel("centre y / image height")
    place_axes.set_title("Box centres")
    place_axes.grid(True, alpha=0.3)
    figure.suptitle(mathtext_safe(title))
    if handles:
        # At most 20 entries: beyond that colours repeat and the legend would hide the points.
        figure.legend(handles[:20], labels[:20], loc="outside right upper", fontsize="small", markerscale=2.0)
    return _figure_png(figure)
