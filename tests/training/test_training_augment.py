"""Augmentation keeps boxes on the objects drawn in the image (issue 4 item 7), and follows the OD API's crop rule."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.augment import AugmentOptions, augment, crop_to_window, ssd_random_crop

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
