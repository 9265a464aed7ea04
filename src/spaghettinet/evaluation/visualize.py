"""Pictures of detections and figures of training curves, for the report, TensorBoard and ``predict``.

Two kinds of output:

* PIL images: :func:`draw_detections` draws predicted boxes (solid, labelled "name 0.87" on a filled tag) and, if
  given, ground-truth boxes (thin dashed) on a copy of an image; :func:`draw_errors` draws what a detector got
  wrong (missed objects, false and confused detections, each its own colour and line); :func:`image_grid` tiles
  pictures into one.
* PNG bytes of matplotlib figures: :func:`line_chart_png` (loss and learning-rate curves),
  :func:`precision_recall_png` (one curve per class), :func:`confusion_matrix_png` and
  :func:`label_distribution_png` (sizes and positions of the labelled boxes per class). matplotlib is imported lazily and only through its
  object-oriented API with the Agg canvas, so nothing here touches pyplot's global state or needs a display.

Class names come from annotation files, which are untrusted. They are drawn as plain text only: control characters
are replaced, long names are shortened, and in matplotlib the ``$`` that would start mathtext is escaped (an odd
``$`` in a legend would otherwise make rendering fail).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spaghettinet.evaluation.confusion import match_image

# Longest class name drawn on a picture; longer ones end in an ellipsis so a tag never hides the whole image.
MAX_LABEL_CHARS = 40

# A qualitative palette with strong contrast between neighbours (the "tab10" hues, then ten more), indexed by the
# 0-based class; class k and class k + 20 share a colour, which is fine for a picture.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
)


def class_colour(class_index: int) -> tuple[int, int, int]:
    """Return the RGB colour used for a 0-based class index (stable across pictures and runs).

    Example:
        >>> class_colour(0)
        (31, 119, 180)
    """
    return _PALETTE[int(class_index) % len(_PALETTE)]


def plain_label(text: object, max_chars: int = MAX_LABEL_CHARS) -> str:
    """Turn an untrusted name into one line of plain text safe to draw.

    Control characters (newlines, tabs, escape sequences) become ``?`` and names longer than ``max_chars`` are cut
    with an ellipsis. The result is still untrusted for HTML: escape it there.

    Args:
        text: the name (anything; ``str()`` is applied).
        max_chars: the longest result.

    Returns:
        The cleaned single-line string.

    Example:
        >>> plain_label("bad\\nname")
        'bad?name'
    """
    cleaned = "".join("?" if (ord(ch) < 32 or 127 <= ord(ch) < 160) else ch for ch in str(text))
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1] + "…"
    return cleaned


def class_label(class_index: int, class_names: Sequence[str]) -> str:
    """Name of a 0-based class, or ``class <i>`` when the index is outside ``class_names``."""
    index = int(class_index)
    if 0 <= index < len(class_names):
        return plain_label(class_names[index])
    return f"class {index}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    # Relative luminance (ITU-R BT.601 weights) decides black or white text on the tag.
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def _as_array(values, name: str, width: int | None = None) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.float64)
    if width is not None:
        array = array.reshape(-1, width) if array.size else np.zeros((0, width))
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name} must have shape [N, {width}], got {array.shape}")
    else:
        array = array.reshape(-1)
    return array


def _box_pixels(box_yxyx: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Normalized yxyx box → clipped pixel (left, top, right, bottom), or None if not drawable."""
    if not np.all(np.isfinite(box_yxyx)):
        return None
    ymin, xmin, ymax, xmax = np.clip(box_yxyx, 0.0, 1.0)
    if ymax <= ymin or xmax <= xmin:
        return None
    return (xmin * (width - 1), ymin * (height - 1), xmax * (width - 1), ymax * (height - 1))


def _dashed_rectangle(draw: ImageDraw.ImageDraw, rect, colour, width: int, dash: int) -> None:
    left, top, right, bottom = rect
    for start, end in (((left, top), (right, top)), ((right, top), (right, bottom))):
        _dashed_line(draw, start, end, colour, width, dash)
    for start, end in (((right, bottom), (left, bottom)), ((left, bottom), (left, top))):
        _dashed_line(draw, start, end, colour, width, dash)


def _dashed_line(draw: ImageDraw.ImageDraw, start, end, colour, width: int, dash: int) -> None:
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    step_x, step_y = (x1 - x0) / length, (y1 - y0) / length
    position = 0.0
    while position < length:
        stop = min(position + dash, length)
        draw.line(
            [(x0 + step_x * position, y0 + step_y * position), (x0 + step_x * stop, y0 + step_y * stop)],
            fill=colour,
            width=width,
        )
        position += 2 * dash


def draw_detections(
    image: Image.Image,
    boxes,
    classes,
    scores,
    class_names: Sequence[str],
    true_boxes=None,
    true_classes=None,
    min_score: float = 0.0,
) -> Image.Image:
    """Draw detections (and optionally the ground truth) on a copy of ``image``.

    Predicted boxes are solid lines in their class colour with a filled tag "name 0.87" above the box (inside it when
    the box touches the top edge). True boxes are thin dashed lines in the class colour, drawn first so predictions
    stay on top. Boxes are clipped to the image; boxes with non-finite coordinates or no area are not drawn.

    Args:
        image: the picture (any mode; the copy is RGB). Not modified.
        boxes: ``[N, 4]`` predicted boxes ``[ymin, xmin, ymax, xmax]`` normalized to [0, 1].
        classes: ``[N]`` 0-based class indices (background excluded), as the TFLite post-processing outputs.
        scores: ``[N]`` scores in [0, 1].
        class_names: names indexed by 0-based class; an index outside it is labelled ``class <i>``.
        true_boxes: optional ``[M, 4]`` ground-truth boxes, same convention as ``boxes``.
        true_classes: optional ``[M]`` 0-based classes of ``true_boxes`` (colours only; no tag).
        min_score: predictions scoring below this are not drawn.

    Returns:
        A new RGB image the size of ``image``.

    Example:
        >>> picture = Image.new("RGB", (128, 128))
        >>> out = draw_detections(picture, [[0.1, 0.1, 0.5, 0.6]], [0], [0.87], ["cat"])
        >>> out.size
        (128, 128)
    """
    canvas = image.convert("RGB")  # convert() always returns a new image, so the caller's one is untouched
    width, height = canvas.size
    boxes_array = _as_array(boxes, "boxes", 4)
    classes_array = _as_array(classes, "classes").astype(np.int64)
    scores_array = _as_array(scores, "scores")
    if not (len(boxes_array) == len(classes_array) == len(scores_array)):
        raise ValueError(
            f"boxes, classes and scores differ in length: {len(boxes_array)}, {len(classes_array)}, {len(scores_array)}"
        )
    draw = ImageDraw.Draw(canvas)
    short_side = min(width, height)
    line_width = max(2, round(short_side / 160))
    font = _font(max(10, round(short_side / 28)))

    if true_boxes is not None:
        truth = _as_array(true_boxes, "true_boxes", 4)
        truth_classes = (
            _as_array(true_classes, "true_classes").astype(np.int64)
            if true_classes is not None
            else np.zeros(len(truth), dtype=np.int64)
        )
        if len(truth_classes) != len(truth):
            raise ValueError(
                f"true_boxes and true_classes differ in length: {len(truth)}, {len(truth_classes)}"
            )
        for box, class_index in zip(truth, truth_classes, strict=True):
            rect = _box_pixels(box, width, height)
            if rect is not None:
                _dashed_rectangle(
                    draw,
                    rect,
                    class_colour(class_index),
                    max(1, line_width // 2),
                    dash=max(3, line_width * 2),
                )

    # Lowest scores first, so the most confident box and its tag end up on top.
    order = np.argsort(scores_array, kind="stable")
    for index in order:
        score = scores_array[index]
        if not np.isfinite(score) or score < min_score:
            continue
        rect = _box_pixels(boxes_array[index], width, height)
        if rect is None:
            continue
        colour = class_colour(classes_array[index])
        draw.rectangle(rect, outline=colour, width=line_width)
        label = f"{class_label(classes_array[index], class_names)} {score:.2f}"
        _draw_tag(draw, rect, label, colour, font, width)
    return canvas


def _draw_tag(draw: ImageDraw.ImageDraw, rect, label: str, colour, font, image_width: int) -> None:
    """A filled tag with ``label`` above the box ``rect`` (inside it when the box touches the top edge)."""
    text_left, text_top, text_right, text_bottom = draw.textbbox((0, 0), label, font=font)
    tag_width, tag_height = text_right - text_left + 4, text_bottom - min(text_top, 0) + 4
    tag_x = min(max(rect[0], 0), max(image_width - tag_width, 0))
    tag_y = rect[1] - tag_height if rect[1] - tag_height >= 0 else rect[1]
    draw.rectangle((tag_x, tag_y, tag_x + tag_width, tag_y + tag_height), fill=colour)
    draw.text((tag_x + 2 - text_left, tag_y + 2), label, fill=_text_colour(colour), font=font)


#: Colours of :func:`draw_errors`, by outcome rather than by class, so errors stand out whatever the class.
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
    truth = _as_array(true_boxes, "true_boxes", 4)
    found = _as_array(boxes, "boxes", 4)
    match = match_image(truth, true_classes, found, classes, scores, score_threshold)
    draw = ImageDraw.Draw(canvas)
    short_side = min(width, height)
    line_width = max(2, round(short_side / 120))
    font = _font(max(10, round(short_side / 26)))
    found_scores = _as_array(scores, "scores")
    # Correct ones first and thin, so the errors are drawn over them.
    for position, obj in enumerate(match.detection_match):
        if obj >= 0 and match.detection_classes[position] == match.true_classes[obj]:
            rect = _box_pixels(found[match.detection_indices[position]], width, height)
            if rect is not None:
                draw.rectangle(rect, outline=CORRECT_COLOUR, width=max(1, line_width // 2))
    for obj in np.flatnonzero(match.object_match < 0):
        rect = _box_pixels(truth[obj], width, height)
        if rect is not None:
            _dashed_rectangle(draw, rect, MISSED_COLOUR, line_width, dash=max(3, line_width * 2))
            label = f"missed {class_label(match.true_classes[obj], class_names)}"
            _draw_tag(draw, rect, label, MISSED_COLOUR, font, width)
    for position, obj in enumerate(match.detection_match):
        index = match.detection_indices[position]
        predicted = match.detection_classes[position]
        if obj >= 0 and predicted == match.true_classes[obj]:
            continue
        rect = _box_pixels(found[index], width, height)
        if rect is None:
            continue
        label = f"{class_label(predicted, class_names)} {found_scores[index]:.2f}"
        colour = FALSE_COLOUR
        if obj >= 0:
            colour = CONFUSED_COLOUR
            label += f" (is {class_label(match.true_classes[obj], class_names)})"
        draw.rectangle(rect, outline=colour, width=line_width)
        _draw_tag(draw, rect, label, colour, font, width)
    return canvas


def image_grid(
    images: Sequence[Image.Image],
    columns: int,
    padding: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile pictures row by row into one RGB image; each cell is as large as the largest picture.

    Args:
        images: the pictures, in reading order (at least one).
        columns: pictures per row (at least 1; fewer pictures than columns gives one shorter row).
        padding: pixels between cells and around the border.
        background: RGB colour of the padding and of the unused parts of cells.

    Returns:
        The grid image.

    Example:
        >>> grid = image_grid([Image.new("RGB", (10, 10))] * 3, columns=2, padding=0)
        >>> grid.size
        (20, 20)
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    cell_width = max(picture.width for picture in images)
    cell_height = max(picture.height for picture in images)
    grid = Image.new(
        "RGB",
        (columns * cell_width + (columns + 1) * padding, rows * cell_height + (rows + 1) * padding),
        background,
    )
    for position, picture in enumerate(images):
        row, column = divmod(position, columns)
        grid.paste(
            picture.convert("RGB"),
            (padding + column * (cell_width + padding), padding + row * (cell_height + padding)),
        )
    return grid


def image_png(image: Image.Image) -> bytes:
    """Encode a PIL image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    """Encode a PIL image as RGB JPEG bytes (smaller than PNG for photos)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


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
        array = _as_array(boxes, "boxes", 4)
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
        labels.append(f"{mathtext_safe(name)} ({len(_as_array(boxes, 'boxes', 4))})")
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
