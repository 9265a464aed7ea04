"""Augmentation keeps boxes on the objects drawn in the image (issue 4 item 7, issue 9), for every
``data_augmentation_options`` step, and follows the OD API's rules (crop, pad, colour formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spaghettinet.pipeline_config.settings import (
    AUGMENTATION_OPTIONS,
    RandomAdjustBrightness,
    RandomAdjustContrast,
    RandomAdjustHue,
    RandomAdjustSaturation,
    RandomBlackPatches,
    RandomCropImage,
    RandomCropPadImage,
    RandomDistortColor,
    RandomHorizontalFlip,
    RandomImageScale,
    RandomJpegQuality,
    RandomPadImage,
    RandomRgbToGray,
    RandomRotation90,
    RandomScaleCropAndPadToSquare,
    RandomSelfConcatImage,
    RandomVerticalFlip,
    SsdRandomCrop,
    SsdRandomCropOperation,
)
from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.augment import (
    AugmentOptions,
    apply_step,
    augment,
    crop_to_window,
    ssd_random_crop,
)

tf = import_tensorflow()

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def _scene(height: int = 90, width: int = 160):
    """A grey image with three coloured solid rectangles; returns (image, boxes yxyx normalized)."""
    image = np.full((height, width, 3), 128, np.uint8)
    pixel_boxes = [(10, 15, 40, 60), (45, 90, 85, 150), (20, 100, 35, 125)]
    boxes = []
    for colour, (y0, x0, y1, x1) in zip(COLOURS, pixel_boxes, strict=True):
        image[y0:y1, x0:x1] = colour
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
    return image, np.array(boxes, np.float32)


def _inside_colour_share(image: np.ndarray, box: np.ndarray, colour: np.ndarray) -> float:
    height, width = image.shape[:2]
    y0, x0 = int(round(box[0] * height)), int(round(box[1] * width))
    y1, x1 = int(round(box[2] * height)), int(round(box[3] * width))
    # One-pixel margin: box edges are rounded to pixels.
    region = image[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
    if region.size == 0:
        return 1.0
    return float(np.mean(np.all(region == colour, axis=-1)))


def _colour_pixels(image: np.ndarray, colour: np.ndarray) -> int:
    return int(np.all(image == colour, axis=-1).sum())


@pytest.mark.parametrize("seed", range(24))
def test_augmented_boxes_still_surround_their_objects(seed):
    image, boxes = _scene()
    out_image, out_boxes, kept = augment(tf.constant(image), tf.constant(boxes), tf.constant([seed, 11]))
    out_image, out_boxes, kept = out_image.numpy(), out_boxes.numpy(), kept.numpy()
    assert out_boxes.shape == (len(kept), 4)
    assert np.all((out_boxes >= 0) & (out_boxes <= 1))
    for box, index in zip(out_boxes, kept, strict=True):
        colour = COLOURS[index]
        # The object's colour fills the returned box...
        assert _inside_colour_share(out_image, box, colour) > 0.95
        # ...and no pixel of that colour lies outside it (the box surrounds all of the visible object).
        height, width = out_image.shape[:2]
        mask = np.all(out_image == colour, axis=-1)
        ys, xs = np.nonzero(mask)
        assert ys.min() >= box[0] * height - 1 and ys.max() <= box[2] * height + 1
        assert xs.min() >= box[1] * width - 1 and xs.max() <= box[3] * width + 1
    # An object that is still clearly visible was not dropped: dropped ones are (nearly) cropped away or
    # below the operation's overlap threshold, never a fully visible object.
    for index, colour in enumerate(COLOURS):
        if index not in kept:
            original = _colour_pixels(image, colour)
            assert _colour_pixels(out_image, colour) < original


def test_flip_only_mirrors_boxes_with_the_image():
    image, boxes = _scene()
    options = AugmentOptions(horizontal_flip=True, flip_probability=1.0, ssd_random_crop=False)
    out_image, out_boxes, kept = augment(tf.constant(image), tf.constant(boxes), tf.constant([1, 2]), options)
    np.testing.assert_array_equal(out_image.numpy(), image[:, ::-1])
    np.testing.assert_allclose(out_boxes.numpy()[:, [1, 3]], 1 - boxes[:, [3, 1]], atol=1e-6)
    assert kept.numpy().tolist() == [0, 1, 2]


def test_switched_off_augmentations_leave_the_example_unchanged():
    image, boxes = _scene()
    options = AugmentOptions(horizontal_flip=False, ssd_random_crop=False)
    out_image, out_boxes, _ = augment(tf.constant(image), tf.constant(boxes), tf.constant([5, 5]), options)
    np.testing.assert_array_equal(out_image.numpy(), image)
    np.testing.assert_array_equal(out_boxes.numpy(), boxes)


def test_same_seed_same_result_and_seeds_differ():
    image, boxes = _scene()
    first = augment(tf.constant(image), tf.constant(boxes), tf.constant([3, 9]))
    again = augment(tf.constant(image), tf.constant(boxes), tf.constant([3, 9]))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    shapes = {
        augment(tf.constant(image), tf.constant(boxes), tf.constant([s, 9]))[0].shape for s in range(12)
    }
    assert len(shapes) > 3


def test_crop_keeps_boxes_by_their_covered_share_not_their_centre():
    boxes = tf.constant([[0.0, 0.0, 0.2, 0.2], [0.3, 0.3, 0.7, 0.7], [0.6, 0.6, 0.9, 0.9]])
    window = tf.constant([0.0, 0.0, 0.5, 0.5])
    begin, size = tf.constant([0, 0, 0]), tf.constant([50, 50, -1])
    image = tf.zeros([100, 100, 3])
    # The middle box has a quarter of its area inside: kept at threshold 0.25, dropped at 0.3.
    _, new_boxes, kept = crop_to_window(image, boxes, begin, size, window, 0.25)
    assert kept.numpy().tolist() == [0, 1]
    np.testing.assert_allclose(new_boxes.numpy()[1], [0.6, 0.6, 1.0, 1.0], atol=1e-6)
    _, _, kept = crop_to_window(image, boxes, begin, size, window, 0.3)
    assert kept.numpy().tolist() == [0]


def test_crop_of_an_image_without_objects_keeps_it_a_negative():
    for seed in range(5):
        image, boxes, kept = ssd_random_crop(
            tf.zeros([40, 60, 3], tf.uint8), tf.zeros([0, 4]), tf.constant([seed, 0])
        )
        assert boxes.shape == (0, 4) and kept.shape == (0,)
        assert image.shape[0] >= 1 and image.shape[1] >= 1


def test_random_coef_keeps_the_original_about_that_often():
    image, boxes = _scene(32, 32)
    kept_whole = 0
    trials = 200
    for seed in range(trials):
        out, _, _ = ssd_random_crop(
            tf.constant(image), tf.constant(boxes), tf.constant([seed, 1]), random_coef=0.5
        )
        kept_whole += out.shape == image.shape
    # Crops that happen to be the whole image add a little on top of the 50 % kept on purpose.
    assert 0.4 * trials < kept_whole < 0.75 * trials


# ---------------------------------------------------------------------------------------------------------------
# Every data_augmentation_options step: boxes follow pixels exactly (property tests on drawn rectangles).
# ---------------------------------------------------------------------------------------------------------------

RECT_COLOUR = np.array([200, 30, 60], np.float32)
BACKGROUND = 90
#: Pixel centres within this distance of a box edge are not checked (float error of the box coordinates).
EDGE = 0.25


@st.composite
def _rect_scenes(draw):
    """A grey image of 32-64 px with one solid rectangle (at most half the image's area) and its box."""
    height, width = draw(st.integers(32, 64)), draw(st.integers(32, 64))
    box_height = draw(st.integers(6, height // 2))
    box_width = draw(st.integers(6, width - 2))
    y0 = draw(st.integers(0, height - box_height))
    x0 = draw(st.integers(0, width - box_width))
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    image[y0 : y0 + box_height, x0 : x0 + box_width] = RECT_COLOUR
    box = [y0 / height, x0 / width, (y0 + box_height) / height, (x0 + box_width) / width]
    return image, np.array([box], np.float32)


def _is_rect_colour(image: np.ndarray) -> np.ndarray:
    return np.all(np.abs(image.astype(np.float32) - RECT_COLOUR) <= 1.0, axis=-1)


def _centres(size: int) -> np.ndarray:
    return np.arange(size) + 0.5


def _assert_boxes_on_rectangles(
    image: np.ndarray, boxes: np.ndarray, inner_margin: float = EDGE, every_pixel_boxed: bool = True
) -> None:
    """Pixels whose centre lies inside a box (``inner_margin`` px from its edges) have the rectangle's colour, and,
    with ``every_pixel_boxed``, every pixel of that colour lies inside some box (within ``EDGE``)."""
    height, width = image.shape[:2]
    rows, cols = _centres(height)[:, None], _centres(width)[None, :]
    coloured = _is_rect_colour(image)
    covered = np.zeros((height, width), bool)
    for box in boxes:
        y0, x0, y1, x1 = box * [height, width, height, width]
        inside = (rows > y0 + inner_margin) & (rows < y1 - inner_margin)
        inside = inside & (cols > x0 + inner_margin) & (cols < x1 - inner_margin)
        assert coloured[inside].all(), f"box {box.tolist()} holds pixels of another colour"
        covered |= (rows >= y0 - EDGE) & (rows <= y1 + EDGE) & (cols >= x0 - EDGE) & (cols <= x1 + EDGE)
    if every_pixel_boxed:
        assert not (coloured & ~covered).any(), "pixels of the rectangle lie outside every box"


def _run(option, image, boxes, seed):
    out_image, out_boxes, kept = apply_step(option, tf.constant(image), tf.constant(boxes), tf.constant(seed))
    return out_image.numpy(), out_boxes.numpy(), kept.numpy()


_seeds = st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
_probability = st.sampled_from([0.0, 0.5, 1.0])
_fast = settings(max_examples=12, deadline=None)


def _moving_steps(pad_colors):
    """Steps that move boxes without dropping them; ``pad_colors`` for the pad (``()`` is the mean colour, which
    differs from the rectangle's only while it covers at most half the image)."""
    return st.one_of(
        st.builds(RandomHorizontalFlip, probability=_probability),
        st.builds(RandomVerticalFlip, probability=_probability),
        st.builds(RandomRotation90, probability=_probability),
        st.builds(
            RandomSelfConcatImage,
            concat_vertical_probability=_probability,
            concat_horizontal_probability=_probability,
        ),
        st.builds(RandomPadImage, pad_color=st.sampled_from(pad_colors)),
        st.just(
            RandomPadImage(
                min_image_height=70,
                min_image_width=40,
                max_image_height=90,
                max_image_width=90,
                pad_color=pad_colors[-1],
            )
        ),
    )


_EXACT_GEOMETRIC_STEPS = _moving_steps([(), (0.0, 0.0, 0.0), (10.0, 250.0, 10.0)])


@_fast
@given(scene=_rect_scenes(), option=_EXACT_GEOMETRIC_STEPS, seed=_seeds)
def test_moving_steps_keep_every_box_on_its_rectangle(scene, option, seed):
    image, boxes = scene
    out_image, out_boxes, kept = _run(option, image, boxes, seed)
    # These steps never drop a box; the self-concatenation repeats it.
    assert set(kept.tolist()) == {0} and len(kept) in (1, 2, 4)
    assert out_boxes.shape == (len(kept), 4)
    assert out_image.dtype == np.uint8
    _assert_boxes_on_rectangles(out_image, out_boxes)


_crop_fields = {
    "min_object_covered": st.sampled_from([0.0, 0.3, 1.0]),
    "min_aspect_ratio": st.just(0.5),
    "max_aspect_ratio": st.just(2.0),
    "min_area": st.sampled_from([0.1, 0.5]),
    "max_area": st.just(1.0),
    "overlap_thresh": st.sampled_from([0.0, 0.3, 1.0]),
    "random_coef": st.sampled_from([0.0, 0.5]),
}
_CROPPING_STEPS = st.one_of(
    st.builds(RandomCropImage, **_crop_fields),
    st.builds(
        RandomCropPadImage,
        **_crop_fields,
        max_padded_size_ratio=st.sampled_from([(), (1.5, 1.2)]),
        # Explicit colours: a crop inside the rectangle would make the mean-colour padding the rectangle's colour.
        pad_color=st.sampled_from([(0.0, 0.0, 0.0), (0.0, 0.0, 255.0)]),
    ),
    st.just(SsdRandomCrop()),
    st.builds(
        SsdRandomCrop,
        operations=st.lists(st.builds(SsdRandomCropOperation, **_crop_fields), min_size=1, max_size=3).map(
            tuple
        ),
    ),
)


@_fast
@given(scene=_rect_scenes(), option=_CROPPING_STEPS, seed=_seeds)
def test_crops_keep_kept_boxes_on_their_rectangle_and_drop_by_covered_share(scene, option, seed):
    image, boxes = scene
    out_image, out_boxes, kept = _run(option, image, boxes, seed)
    assert out_boxes.shape == (len(kept), 4) and set(kept.tolist()) <= {0}
    assert np.all((out_boxes >= 0.0) & (out_boxes <= 1.0))
    if len(kept):
        _assert_boxes_on_rectangles(out_image, out_boxes)
    else:
        # A dropped box is cut away entirely or below the overlap threshold, never fully visible.
        assert _is_rect_colour(out_image).sum() < _is_rect_colour(image).sum()


_RESIZING_STEPS = st.one_of(
    st.builds(
        RandomImageScale,
        min_scale_ratio=st.sampled_from([0.5, 1.0]),
        max_scale_ratio=st.sampled_from([1.0, 2.0]),
    ),
    st.builds(
        RandomScaleCropAndPadToSquare,
        output_size=st.sampled_from([32, 48]),
        scale_min=st.sampled_from([0.5, 1.0]),
        scale_max=st.sampled_from([1.0, 2.0]),
    ),
)


@_fast
@given(scene=_rect_scenes(), option=_RESIZING_STEPS, seed=_seeds)
def test_resizing_steps_keep_boxes_on_their_rectangle_up_to_bilinear_edges(scene, option, seed):
    image, boxes = scene
    out_image, out_boxes, kept = _run(option, image, boxes, seed)
    if isinstance(option, RandomScaleCropAndPadToSquare):
        assert out_image.shape == (option.output_size, option.output_size, 3)
    # Bilinear sampling mixes colours up to half an input pixel inside the edge: that many output pixels, at the
    # step's largest scale (the square step scales the longer side to output_size × scale, then crops).
    ratio = max(out_image.shape[0] / image.shape[0], out_image.shape[1] / image.shape[1])
    if isinstance(option, RandomScaleCropAndPadToSquare):
        ratio = max(ratio, option.output_size * option.scale_max / max(image.shape[:2]))
    if len(kept):
        _assert_boxes_on_rectangles(out_image, out_boxes, inner_margin=0.5 * ratio + EDGE)
    else:
        assert not _is_rect_colour(out_image).any()


@settings(max_examples=8, deadline=None)
@given(
    scene=_rect_scenes(),
    steps=st.lists(st.one_of(_moving_steps([(0.0, 0.0, 0.0)]), _CROPPING_STEPS), min_size=2, max_size=4),
    seed=_seeds,
)
def test_chained_steps_compose_boxes_and_kept_indices(scene, steps, seed):
    image, boxes = scene
    out_image, out_boxes, kept = augment(tf.constant(image), tf.constant(boxes), tf.constant(seed), steps)
    out_image, out_boxes, kept = out_image.numpy(), out_boxes.numpy(), kept.numpy()
    assert set(kept.tolist()) <= {0} and out_boxes.shape == (len(kept), 4)
    # After a self-concatenation the image holds several copies of the rectangle; a crop may keep one copy's box
    # and drop another's that it cuts below the overlap threshold, leaving that copy's pixels unboxed, as the TF
    # Object Detection API does. Every pixel is boxed only when no step crops.
    crops = any(isinstance(step, RandomCropImage | RandomCropPadImage | SsdRandomCrop) for step in steps)
    if len(kept):
        _assert_boxes_on_rectangles(out_image, out_boxes, every_pixel_boxed=not crops)


_COLOUR_STEPS = st.one_of(
    st.builds(RandomAdjustBrightness, max_delta=st.sampled_from([0.0, 0.2, 1.0])),
    st.builds(
        RandomAdjustContrast, min_delta=st.sampled_from([0.0, 0.8]), max_delta=st.sampled_from([1.25, 3.0])
    ),
    st.builds(RandomAdjustHue, max_delta=st.sampled_from([0.0, 0.02, 0.5])),
    st.builds(
        RandomAdjustSaturation, min_delta=st.sampled_from([0.0, 0.8]), max_delta=st.sampled_from([1.25, 4.0])
    ),
    st.builds(RandomDistortColor, color_ordering=st.sampled_from([0, 1])),
    st.builds(RandomRgbToGray, probability=_probability),
    st.builds(
        RandomJpegQuality, random_coef=st.sampled_from([0.0, 0.5]), min_jpeg_quality=st.sampled_from([0, 90])
    ),
    st.builds(RandomBlackPatches, probability=_probability, size_to_image_ratio=st.sampled_from([0.1, 0.5])),
)


@settings(max_examples=16, deadline=None)
@given(scene=_rect_scenes(), option=_COLOUR_STEPS, seed=_seeds, as_float=st.booleans())
def test_pixel_steps_leave_boxes_and_size_and_keep_pixels_in_range(scene, option, seed, as_float):
    image, boxes = scene
    source = image.astype(np.float32) if as_float else image
    out_image, out_boxes, kept = _run(option, source, boxes, seed)
    np.testing.assert_array_equal(out_boxes, boxes)
    assert kept.tolist() == [0] and out_image.shape == image.shape
    assert out_image.min() >= 0.0 and out_image.max() <= 255.0
    if isinstance(option, RandomBlackPatches):
        # Patches are black and everything else is untouched.
        changed = np.any(out_image != source, axis=-1)
        assert np.all(out_image[changed] == 0)


def test_colour_steps_with_zero_change_are_the_identity():
    image, boxes = np.full((8, 8, 3), 77, np.uint8), np.zeros((0, 4))
    image[2:5, 3:7] = RECT_COLOUR
    for option in (
        RandomAdjustBrightness(max_delta=0.0),
        RandomAdjustContrast(min_delta=1.0, max_delta=1.0),
        RandomAdjustSaturation(min_delta=1.0, max_delta=1.0),
        RandomAdjustHue(max_delta=0.0),
        RandomRgbToGray(probability=0.0),
        RandomBlackPatches(probability=0.0),
        RandomJpegQuality(random_coef=1.0),
    ):
        out_image, _, _ = _run(option, image, boxes.astype(np.float32), (4, 2))
        np.testing.assert_allclose(out_image, image, atol=0.01, err_msg=option.proto_name)


def test_gray_is_the_od_api_luma_on_three_channels():
    out, _, _ = _run(
        RandomRgbToGray(probability=1.0), np.array([[[200, 30, 60]]], np.uint8), np.zeros((0, 4)), (1, 1)
    )
    np.testing.assert_allclose(out[0, 0], [0.2989 * 200 + 0.5870 * 30 + 0.1140 * 60] * 3, rtol=1e-5)


def test_brightness_draws_its_delta_in_range_and_clips():
    image = np.full((4, 4, 3), 128, np.uint8)
    deltas = set()
    for seed in range(40):
        out, _, _ = _run(
            RandomAdjustBrightness(max_delta=0.2), image, np.zeros((0, 4), np.float32), (seed, 0)
        )
        delta = float(out[0, 0, 0]) - 128.0
        assert abs(delta) <= 0.2 * 255 + 1e-3 and np.allclose(out, out[0, 0, 0])
        deltas.add(round(delta))
    assert len(deltas) > 20
    out, _, _ = _run(
        RandomAdjustBrightness(max_delta=1.0), np.full((2, 2, 3), 250, np.uint8), np.zeros((0, 4)), (3, 0)
    )
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_self_concat_duplicates_boxes_into_each_copy():
    image = np.zeros((10, 20, 3), np.uint8)
    boxes = np.array([[0.2, 0.1, 0.6, 0.5], [0.0, 0.5, 1.0, 1.0]], np.float32)
    option = RandomSelfConcatImage(concat_vertical_probability=1.0, concat_horizontal_probability=1.0)
    out_image, out_boxes, kept = _run(option, image, boxes, (1, 1))
    assert out_image.shape == (20, 40, 3)
    assert kept.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose(out_boxes[0], [0.1, 0.05, 0.3, 0.25])
    np.testing.assert_allclose(out_boxes[6], [0.6, 0.55, 0.8, 0.75])


def test_scale_crop_and_pad_gives_the_square_output_size():
    for seed in range(6):
        image, boxes, kept = _run(
            RandomScaleCropAndPadToSquare(output_size=40, scale_min=0.3, scale_max=2.0),
            np.full((30, 50, 3), 5, np.uint8),
            np.array([[0.1, 0.1, 0.9, 0.9]], np.float32),
            (seed, 9),
        )
        assert image.shape == (40, 40, 3) and boxes.shape == (len(kept), 4)


def test_every_step_takes_an_image_without_boxes():
    steps = [option_type() for option_type in AUGMENTATION_OPTIONS.values()]
    steps[steps.index(RandomScaleCropAndPadToSquare())] = RandomScaleCropAndPadToSquare(output_size=48)
    for index, option in enumerate(steps):
        image, boxes, kept = _run(
            option, np.full((36, 44, 3), 50, np.uint8), np.zeros((0, 4), np.float32), (index, 5)
        )
        assert boxes.shape == (0, 4) and kept.shape == (0,), option.proto_name
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 1


#: One of every implemented step, with settings that make each of them act.
ALL_STEPS = (
    RandomAdjustBrightness(),
    RandomAdjustContrast(),
    RandomAdjustHue(),
    RandomAdjustSaturation(),
    RandomDistortColor(color_ordering=1),
    RandomRgbToGray(probability=0.5),
    RandomJpegQuality(min_jpeg_quality=50, max_jpeg_quality=95),
    RandomImageScale(),
    RandomCropImage(min_object_covered=0.5),
    RandomPadImage(),
    RandomCropPadImage(),
    RandomBlackPatches(),
    RandomVerticalFlip(),
    RandomRotation90(),
    RandomSelfConcatImage(concat_vertical_probability=0.5, concat_horizontal_probability=0.5),
    RandomHorizontalFlip(),
    SsdRandomCrop(),
    RandomScaleCropAndPadToSquare(output_size=64),
)


def test_all_steps_are_deterministic_for_a_seed_in_eager_and_graph_mode():
    assert {type(step) for step in ALL_STEPS} == set(AUGMENTATION_OPTIONS.values())
    image, boxes = _scene()
    traced = tf.function(
        lambda i, b, s: augment(i, b, s, ALL_STEPS),
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8),
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([2], tf.int32),
        ],
    )
    outputs = []
    for seed in range(4):
        eager = augment(tf.constant(image), tf.constant(boxes), tf.constant([seed, 1]), ALL_STEPS)
        graph = traced(tf.constant(image), tf.constant(boxes), tf.constant([seed, 1]))
        for a, b in zip(eager, graph, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert eager[0].shape == (64, 64, 3) and eager[1].shape[0] == eager[2].shape[0]
        outputs.append(eager[0].numpy())
    assert not all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_steps_apply_in_the_listed_order():
    image = np.zeros((10, 30, 3), np.uint8)
    boxes = np.array([[0.0, 0.0, 0.2, 0.1]], np.float32)
    pad = RandomPadImage(min_image_height=20, min_image_width=30, max_image_height=20, max_image_width=30)
    rotate = RandomRotation90(probability=1.0)
    rotated_then_padded = augment(tf.constant(image), tf.constant(boxes), tf.constant([0, 0]), (rotate, pad))
    padded_then_rotated = augment(tf.constant(image), tf.constant(boxes), tf.constant([0, 0]), (pad, rotate))
    assert rotated_then_padded[0].shape == (30, 30, 3)
    assert padded_then_rotated[0].shape == (30, 20, 3)


def test_unknown_step_type_is_refused():
    with pytest.raises(TypeError, match="not an augmentation step"):
        apply_step("random_horizontal_flip", tf.zeros([4, 4, 3]), tf.zeros([0, 4]), tf.constant([0, 0]))
