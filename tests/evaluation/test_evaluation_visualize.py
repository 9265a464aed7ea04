"""Pictures of detections and PNG charts: what is drawn lands where the boxes say, names stay plain text."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spaghettinet.drawing import class_colour, draw_detections, image_grid, plain_label
from spaghettinet.evaluation.visualize import (
    CONFUSED_COLOUR,
    CORRECT_COLOUR,
    FALSE_COLOUR,
    MISSED_COLOUR,
    confusion_matrix_png,
    draw_errors,
    label_distribution_png,
    line_chart_png,
    precision_recall_png,
)


def _grey(size=(200, 100)) -> Image.Image:
    return Image.new("RGB", size, (128, 128, 128))


def _changed_mask(before: Image.Image, after: Image.Image) -> np.ndarray:
    return np.any(np.asarray(before, dtype=np.int16) != np.asarray(after, dtype=np.int16), axis=-1)


def test_draw_detections_returns_a_copy_and_draws_the_box_in_the_class_colour():
    image = _grey()
    original = np.asarray(image).copy()
    # yxyx normalized: rows 20..80 of 100, columns 50..150 of 200.
    out = draw_detections(image, [[0.2, 0.25, 0.8, 0.75]], [2], [0.9], ["a", "b", "c"])
    assert out is not image
    assert np.array_equal(np.asarray(image), original)
    assert out.size == image.size and out.mode == "RGB"
    pixels = np.asarray(out)
    # The box's bottom edge (clear of the tag above the box) has the class colour.
    bottom_row = round(0.8 * 99)
    assert tuple(pixels[bottom_row, 100]) == class_colour(2)
    changed = _changed_mask(image, out)
    # Nothing drawn well inside the box nor far outside it.
    assert not changed[40:60, 70:130].any()
    assert not changed[90:, :].any()
    assert not changed[:, 160:].any()


def test_draw_detections_respects_min_score_and_skips_unusable_boxes():
    image = _grey()
    boxes = [[0.1, 0.1, 0.5, 0.5], [np.nan, 0.1, 0.5, 0.5], [0.5, 0.5, 0.4, 0.6]]
    out = draw_detections(image, boxes, [0, 1, 1], [0.2, 0.9, 0.9], ["a", "b"], min_score=0.5)
    assert not _changed_mask(image, out).any()


def test_draw_detections_draws_true_boxes_dashed():
    image = _grey()
    out = draw_detections(
        image, np.zeros((0, 4)), [], [], ["a"], true_boxes=[[0.2, 0.1, 0.8, 0.9]], true_classes=[0]
    )
    changed = _changed_mask(image, out)
    top_row = round(0.2 * 99)
    edge = changed[top_row - 2 : top_row + 3, 30:170].any(axis=0)
    # Dashed: the top edge is partly drawn and partly not.
    assert edge.any() and not edge.all()


def test_draw_detections_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        draw_detections(_grey(), [[0, 0, 1, 1]], [0, 1], [0.5], ["a"])


def test_draw_detections_handles_hostile_and_unknown_class_names():
    image = _grey((256, 256))
    names = ["<img src=x onerror=alert(1)>\n\x1b[31m", "$\\frac{"]
    out = draw_detections(image, [[0.3, 0.3, 0.7, 0.7], [0.1, 0.1, 0.2, 0.2]], [0, 7], [0.5, 0.6], names)
    assert _changed_mask(image, out).any()


def test_plain_label_removes_control_characters_and_shortens():
    assert plain_label("a\nb\tc\x1b") == "a?b?c?"
    long = plain_label("x" * 100, max_chars=10)
    assert len(long) == 10 and long.endswith("…")


def test_image_grid_places_each_picture_in_its_cell():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    pictures = [Image.new("RGB", (10, 8), colour) for colour in colours]
    grid = image_grid(pictures, columns=2, padding=2)
    assert grid.size == (2 * 10 + 3 * 2, 2 * 8 + 3 * 2)
    pixels = np.asarray(grid)
    assert tuple(pixels[2 + 4, 2 + 5]) == colours[0]
    assert tuple(pixels[2 + 4, 2 + 10 + 2 + 5]) == colours[1]
    assert tuple(pixels[2 + 8 + 2 + 4, 2 + 5]) == colours[2]
    assert tuple(pixels[2 + 8 + 2 + 4, 2 + 10 + 2 + 5]) == (255, 255, 255)


def test_image_grid_rejects_nothing_to_tile():
    with pytest.raises(ValueError):
        image_grid([], columns=3)


def _decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def test_line_chart_png_plots_series_with_untrusted_names_and_nan_values():
    png = line_chart_png(
        {"total $loss": ([0, 1, 2, 3], [2.0, np.nan, 1.0, 0.5]), "_hidden?": ([0, 3], [1.0, 1.0])},
        "Loss of <b>",
        log_y=True,
    )
    image = _decode_png(png)
    assert image.width > 100 and image.height > 100


def test_line_chart_png_without_series_still_renders():
    _decode_png(line_chart_png({}, "Nothing yet"))


def test_line_chart_png_rejects_series_of_unequal_length():
    with pytest.raises(ValueError, match="x values"):
        line_chart_png({"a": ([0, 1], [1.0])}, "t")


def test_precision_recall_png_draws_each_class_in_its_colour():
    recall = np.linspace(0, 1, 101)
    png = precision_recall_png(
        {"a$b": (recall, np.full(101, 0.9)), "c": (recall, np.where(recall > 0.5, -1.0, 0.4))}
    )
    pixels = np.asarray(_decode_png(png).convert("RGB")).reshape(-1, 3).astype(np.int16)
    for index in range(2):
        # Antialiasing blends line pixels a little with the white background: allow a few levels per channel.
        assert np.abs(pixels - np.array(class_colour(index))).max(axis=1).min() <= 8


def _has_colour(pixels: np.ndarray, colour) -> bool:
    return bool(np.all(pixels == np.array(colour), axis=-1).any())


def test_draw_errors_draws_each_outcome_in_its_own_colour_and_line():
    image = _grey((400, 200))
    true_boxes = [[0.1, 0.05, 0.4, 0.25], [0.1, 0.4, 0.4, 0.6], [0.6, 0.05, 0.9, 0.25]]
    # Object 0 found (class 0), object 1 detected as class 1 (it is class 0), object 2 missed, one false detection.
    boxes = [[0.1, 0.05, 0.4, 0.25], [0.1, 0.4, 0.4, 0.6], [0.6, 0.7, 0.9, 0.95]]
    out = draw_errors(image, true_boxes, [0, 0, 1], boxes, [0, 1, 1], [0.9, 0.8, 0.7], ["a", "b"], 0.5)
    pixels = np.asarray(out)
    for colour in (CORRECT_COLOUR, CONFUSED_COLOUR, FALSE_COLOUR, MISSED_COLOUR):
        assert _has_colour(pixels, colour), colour
    # The missed object's box is dashed: its bottom edge is partly drawn, partly not.
    bottom = round(0.9 * 199)
    edge = np.all(pixels[bottom - 1 : bottom + 2, 30:90] == MISSED_COLOUR, axis=-1).any(axis=0)
    assert edge.any() and not edge.all()
    # The false detection's bottom edge is solid red.
    assert np.all(pixels[bottom, 290:370] == FALSE_COLOUR)


def test_draw_errors_ignores_detections_below_the_threshold():
    image = _grey()
    out = draw_errors(image, [], [], [[0.1, 0.1, 0.5, 0.5]], [0], [0.2], ["a"], score_threshold=0.5)
    assert not _changed_mask(image, out).any()


def test_confusion_matrix_png_renders_hostile_labels_and_checks_its_shape():
    png = confusion_matrix_png([[3, 1, 0], [0, 2, 1], [1, 0, 0]], ["$x$", "<b>", "background"], title="a$b")
    assert _decode_png(png).width > 300
    with pytest.raises(ValueError, match="3x3"):
        confusion_matrix_png([[1, 2]], ["a", "b", "c"])


def test_label_distribution_png_draws_each_class_in_its_colour():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0.1, 0.5, (50, 2))
    boxes = np.concatenate([corner, corner + 0.2], axis=1)
    png = label_distribution_png({"a$b": boxes, "c": boxes[:5] * 0.5, "empty": np.zeros((0, 4))})
    pixels = np.asarray(_decode_png(png).convert("RGB")).reshape(-1, 3).astype(np.int16)
    for index in range(2):
        # Points are drawn half transparent over white: their colour mixed with white is on the picture.
        blended = (np.array(class_colour(index)) * 0.6 + 255 * 0.4).astype(np.int16)
        assert np.abs(pixels - blended).max(axis=1).min() <= 12
