"""Boxes drawn on pictures: the detections (and ground truth) of one image, and a grid of pictures.

Used by the TensorBoard pictures of training, ``predict`` and the report. :func:`draw_detections` draws
predicted boxes (solid, labelled "name 0.87" on a filled tag) and, if given, ground-truth boxes (thin dashed) on a
copy of an image; :func:`image_grid` tiles pictures into one; :func:`image_png` and :func:`image_jpeg` encode them.

Class names come from annotation files, which are untrusted. They are drawn as plain text only: control characters
are replaced and long names are shortened (:func:`plain_label`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def font_for(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    # Relative luminance (ITU-R BT.601 weights) decides black or white text on the tag.
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def box_array(values, name: str, width: int | None = None) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.float64)
    if width is not None:
        array = array.reshape(-1, width) if array.size else np.zeros((0, width))
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name} must have shape [N, {width}], got {array.shape}")
    else:
        array = array.reshape(-1)
    return array


def box_pixels(box_yxyx: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Normalized yxyx box → clipped pixel (left, top, right, bottom), or None if not drawable."""
    if not np.all(np.isfinite(box_yxyx)):
        return None
    ymin, xmin, ymax, xmax = np.clip(box_yxyx, 0.0, 1.0)
    if ymax <= ymin or xmax <= xmin:
        return None
    return (xmin * (width - 1), ymin * (height - 1), xmax * (width - 1), ymax * (height - 1))


def dashed_rectangle(draw: ImageDraw.ImageDraw, rect, colour, width: int, dash: int) -> None:
    left, top, right, bottom = rect
    for start, end in (((left, top), (right, top)), ((right, top), (right, bottom))):
        dashed_line(draw, start, end, colour, width, dash)
    for start, end in (((right, bottom), (left, bottom)), ((left, bottom), (left, top))):
        dashed_line(draw, start, end, colour, width, dash)


def dashed_line(draw: ImageDraw.ImageDraw, start, end, colour, width: int, dash: int) -> None:
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
    boxes_array = box_array(boxes, "boxes", 4)
    classes_array = box_array(classes, "classes").astype(np.int64)
    scores_array = box_array(scores, "scores")
    if not (len(boxes_array) == len(classes_array) == len(scores_array)):
        raise ValueError(
            f"boxes, classes and scores differ in length: {len(boxes_array)}, {len(classes_array)}, {len(scores_array)}"
        )
    draw = ImageDraw.Draw(canvas)
    short_side = min(width, height)
    line_width = max(2, round(short_side / 160))
    font = font_for(max(10, round(short_side / 28)))

    if true_boxes is not None:
        truth = box_array(true_boxes, "true_boxes", 4)
        truth_classes = (
            box_array(true_classes, "true_classes").astype(np.int64)
            if true_classes is not None
            else np.zeros(len(truth), dtype=np.int64)
        )
        if len(truth_classes) != len(truth):
            raise ValueError(
                f"true_boxes and true_classes differ in length: {len(truth)}, {len(truth_classes)}"
            )
        for box, class_index in zip(truth, truth_classes, strict=True):
            rect = box_pixels(box, width, height)
            if rect is not None:
                dashed_rectangle(
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
        rect = box_pixels(boxes_array[index], width, height)
        if rect is None:
            continue
        colour = class_colour(classes_array[index])
        draw.rectangle(rect, outline=colour, width=line_width)
        label = f"{class_label(classes_array[index], class_names)} {score:.2f}"
        draw_tag(draw, rect, label, colour, font, width)
    return canvas


def draw_tag(draw: ImageDraw.ImageDraw, rect, label: str, colour, font, image_width: int) -> None:
    """A filled tag with ``label`` above the box ``rect`` (inside it when the box touches the top edge)."""
    text_left, text_top, text_right, text_bottom = draw.textbbox((0, 0), label, font=font)
    tag_width, tag_height = text_right - text_left + 4, text_bottom - min(text_top, 0) + 4
    tag_x = min(max(rect[0], 0), max(image_width - tag_width, 0))
    tag_y = rect[1] - tag_height if rect[1] - tag_height >= 0 else rect[1]
    draw.rectangle((tag_x, tag_y, tag_x + tag_width, tag_y + tag_height), fill=colour)
    draw.text((tag_x + 2 - text_left, tag_y + 2), label, fill=text_colour(colour), font=font)


#: Colours of :func:`draw_errors`, by outcome rather than by class, so errors stand out whatever the class.
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
