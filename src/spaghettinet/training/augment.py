"""Training-time augmentation: the TF Object Detection API's ``data_augmentation_options``, in the config's order.

Each step (a frozen dataclass of ``pipeline_config/settings.py``, named and defaulted as in the proto
``research/object_detection/protos/preprocessor.proto`` of tensorflow/models) works on one decoded image
(``[H, W, 3]``, uint8 or float32 in 0..255) with its boxes (``[M, 4]`` yxyx, normalized) and follows
``research/object_detection/core/preprocessor.py`` of the same repository: the same distributions and thresholds
for every random choice, the same rules for which boxes survive a crop, the same colour formulas (on a 0..1 scale,
clipped). The differences, all deliberate:

* every draw is *stateless*: :func:`augment` splits the example's ``seed`` (int ``[2]``) into one seed per step and
  each step splits its own further, so the same record with the same seed gives the same result whatever the thread
  order of ``tf.data`` (what makes a resumed run see the same images as an uninterrupted one);
* resizing uses ``tf.image.resize`` (half-pixel centres), under which normalized box coordinates stay exact; the
  OD API's TF1 ``resize_images(align_corners=True)`` shifted content by up to half a pixel against its boxes;
* geometric steps keep the image's dtype (uint8 stays uint8, so decoded images stay small); colour steps compute in
  float32 and return float32 clipped to [0, 255], which the pipeline's resize-and-scale takes as it is;
* where the OD API would fail, we go on: a scaled size that truncates to 0 pixels becomes 1, and
  ``random_jpeg_quality`` with ``min_jpeg_quality == max_jpeg_quality`` uses that quality.

Boxes follow pixels exactly; per-box fields (classes) follow boxes through ``kept_indices``: every step returns
``(image, boxes, kept_indices)`` where ``kept_indices`` index the step's input boxes (crops drop boxes,
``random_self_concat_image`` repeats them), and :func:`augment` composes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spaghettinet.pipeline_config.settings import (
    DEFAULT_AUGMENTATION,
    SSD_RANDOM_CROP_DEFAULT_OPERATIONS,
    AugmentationOption,
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

tf = import_tensorflow()

#: The seven ``min_object_covered`` values of the reference ``ssd_random_crop`` (its defaults in
#: ``core/preprocessor.py``); the overlap threshold of each operation is the same number.
SSD_CROP_MIN_OBJECT_COVERED: tuple[float, ...] = tuple(
    op.min_object_covered for op in SSD_RANDOM_CROP_DEFAULT_OPERATIONS
)
#: Aspect ratio (width / height) and area ranges of the crop window, the same for all seven operations.
SSD_CROP_ASPECT_RATIO_RANGE: tuple[float, float] = (0.5, 2.0)
SSD_CROP_AREA_RANGE: tuple[float, float] = (0.1, 1.0)
#: Chance of keeping the whole image instead of cropping (``random_coef``).
SSD_CROP_RANDOM_COEF = 0.15
#: ``sample_distorted_bounding_box`` gives up after this many tries and returns the whole image (OD API value).
_MAX_CROP_ATTEMPTS = 100
#: Luma weights of the OD API's ``_rgb_to_grayscale`` (core/preprocessor.py).
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


@dataclass(frozen=True)
class AugmentOptions:
    """The flip-and-crop switches of earlier versions, kept for callers that still use them.

    New code passes a sequence of ``data_augmentation_options`` steps (``config.train.data_augmentation_options``)
    instead; :attr:`steps` converts.

    Args:
        horizontal_flip: whether to flip left/right (turn off for classes such as "left arrow").
        flip_probability: chance of a flip.
        ssd_random_crop: whether to apply the seven-operation SSD random crop.
        crop_random_coef: chance of keeping the original image when the crop is on.

    Example:
        >>> [type(step).__name__ for step in AugmentOptions(horizontal_flip=False).steps]
        ['SsdRandomCrop']
    """

    horizontal_flip: bool = True
    flip_probability: float = 0.5
    ssd_random_crop: bool = True
    crop_random_coef: float = SSD_CROP_RANDOM_COEF

    @property
    def steps(self) -> tuple[AugmentationOption, ...]:
        """The same augmentation as ``data_augmentation_options`` steps."""
        steps: list[AugmentationOption] = []
        if self.horizontal_flip:
            steps.append(RandomHorizontalFlip(probability=self.flip_probability))
        if self.ssd_random_crop:
            custom = self.crop_random_coef != SSD_CROP_RANDOM_COEF
            steps.append(
                SsdRandomCrop(operations=_default_operations(self.crop_random_coef) if custom else ())
            )
        return tuple(steps)


def _default_operations(random_coef: float) -> tuple[SsdRandomCropOperation, ...]:
    """The reference's seven SSD crop operations with another ``random_coef``."""
    return tuple(
        dataclasses.replace(op, random_coef=random_coef) for op in SSD_RANDOM_CROP_DEFAULT_OPERATIONS
    )


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def _split(seed, num: int):
    """``num`` independent stateless seeds (each int64 ``[2]``) derived from ``seed``."""
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num))


def _uniform(seed, minval: float = 0.0, maxval: float = 1.0):
    """One float32 draw from ``[minval, maxval)`` (``minval`` when they are equal)."""
    return tf.random.stateless_uniform([], seed=seed, minval=minval, maxval=maxval)


def _random_int(seed, low, high):
    """One int32 draw from ``[low, high)``; ``low`` when ``high <= low`` (tensors allowed for both bounds)."""
    low = tf.cast(low, tf.int32)
    span = tf.maximum(tf.cast(high, tf.int32) - low, 0)
    offset = tf.cast(tf.floor(_uniform(seed) * tf.cast(span, tf.float32)), tf.int32)
    return low + tf.minimum(offset, tf.maximum(span - 1, 0))


def _all_kept(boxes):
    return tf.range(tf.shape(boxes, out_type=tf.int64)[0])


def _image_size(image):
    shape = tf.shape(image)
    return shape[0], shape[1]


def _as_dtype_of(values, like):
    """Float pixel values back to ``like``'s dtype (rounded and saturated for uint8)."""
    if like.dtype == tf.uint8:
        return tf.cast(tf.round(tf.clip_by_value(values, 0.0, 255.0)), tf.uint8)
    return tf.cast(values, like.dtype)


def _resize(image, height, width):
    """Bilinear resize (half-pixel centres: normalized box coordinates stay exact), keeping the dtype."""
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([height, width]), method="bilinear")
    return _as_dtype_of(resized, image)


def _change_frame(boxes, window):
    """Boxes in the frame of ``window`` (yxyx, in the boxes' current normalized frame): ``box_list_ops``'s
    ``change_coordinate_frame``."""
    wy0, wx0, wy1, wx1 = tf.unstack(tf.cast(window, tf.float32))
    height = wy1 - wy0
    width = wx1 - wx0
    return (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack([height, width, height, width])


def _prune_outside_unit_window(boxes):
    """Indices of the boxes not completely outside [0, 1]² (``prune_completely_outside_window``)."""
    ymin, xmin, ymax, xmax = tf.unstack(tf.reshape(boxes, [-1, 4]), axis=1)
    outside = (ymin >= 1.0) | (xmin >= 1.0) | (ymax <= 0.0) | (xmax <= 0.0)
    return tf.reshape(tf.where(tf.logical_not(outside)), [-1])


def _pad(image, offset_y, offset_x, target_height, target_width, pad_color=None):
    """Place ``image`` at (offset_y, offset_x) of a ``target`` canvas filled with ``pad_color`` (mean colour when
    None), keeping the dtype; pixels of the image are copied unchanged."""
    height, width = _image_size(image)
    paddings = [
        [offset_y, target_height - height - offset_y],
        [offset_x, target_width - width - offset_x],
        [0, 0],
    ]
    padded = tf.pad(image, paddings)
    if pad_color is None:
        color = tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1])
    else:
        color = tf.constant(pad_color, tf.float32)
    inside = tf.pad(tf.ones([height, width, 1], tf.uint8), paddings) > 0
    return tf.where(inside, padded, _as_dtype_of(color, image))


# ----------------------------------------------------------------------------------------------------------------
# Geometric steps: (image, boxes, kept_indices)
# ----------------------------------------------------------------------------------------------------------------


def flip_boxes_left_right(boxes):
    """Mirror normalized yxyx boxes about the vertical centre line: ``x -> 1 - x`` (min and max swap).

    Args:
        boxes: float32 ``[M, 4]``.

    Returns:
        float32 ``[M, 4]``.

    Example:
        >>> flip_boxes_left_right(tf.constant([[0.1, 0.2, 0.5, 0.4]])).numpy().astype(float).round(3).tolist()
        [[0.1, 0.6, 0.5, 0.8]]
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)


def flip_boxes_up_down(boxes):
    """Mirror normalized yxyx boxes about the horizontal centre line: ``y -> 1 - y`` (min and max swap).

    Args:
        boxes: float32 ``[M, 4]``.

    Returns:
        float32 ``[M, 4]``.

    Example:
        >>> flip_boxes_up_down(tf.constant([[0.1, 0.2, 0.5, 0.4]])).numpy().astype(float).round(3).tolist()
        [[0.5, 0.2, 0.9, 0.4]]
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    return tf.stack([1.0 - ymax, xmin, 1.0 - ymin, xmax], axis=1)


def rotate_boxes_90(boxes):
    """Boxes of an image rotated 90° counter-clockwise (``tf.image.rot90``): ``(y, x) -> (1 - x, y)``.

    Args:
        boxes: float32 ``[M, 4]``.

    Returns:
        float32 ``[M, 4]``.

    Example:
        >>> rotate_boxes_90(tf.constant([[0.1, 0.2, 0.5, 0.4]])).numpy().astype(float).round(3).tolist()
        [[0.6, 0.1, 0.8, 0.5]]
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    return tf.stack([1.0 - xmax, ymin, 1.0 - xmin, ymax], axis=1)


def _random_transform(image, boxes, seed, probability, image_fn, boxes_fn):
    apply = _uniform(seed) < probability
    image, boxes = tf.cond(
        apply,
        lambda: (image_fn(image), boxes_fn(boxes)),
        lambda: (tf.identity(image), tf.identity(boxes)),
    )
    return image, boxes


def random_horizontal_flip(image, boxes, seed, probability: float = 0.5):
    """Flip the image and its boxes left/right with the given probability.

    Args:
        image: ``[H, W, C]`` tensor.
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed of the stateless draw.
        probability: chance of flipping.

    Returns:
        ``(image, boxes)``, flipped or unchanged together.

    Example:
        >>> image, boxes = random_horizontal_flip(tf.zeros([4, 4, 3]), tf.zeros([0, 4]), tf.constant([1, 2]))
    """
    return _random_transform(image, boxes, seed, probability, tf.image.flip_left_right, flip_boxes_left_right)


def random_vertical_flip(image, boxes, seed, probability: float = 0.5):
    """Flip the image and its boxes top/bottom with the given probability.

    Args:
        image: ``[H, W, C]`` tensor.
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed of the stateless draw.
        probability: chance of flipping.

    Returns:
        ``(image, boxes)``, flipped or unchanged together.

    Example:
        >>> image, boxes = random_vertical_flip(tf.zeros([4, 4, 3]), tf.zeros([0, 4]), tf.constant([1, 2]))
    """
    return _random_transform(image, boxes, seed, probability, tf.image.flip_up_down, flip_boxes_up_down)


def random_rotation90(image, boxes, seed, probability: float = 0.5):
    """Rotate the image and its boxes 90° counter-clockwise with the given probability (height and width swap).

    Args:
        image: ``[H, W, C]`` tensor.
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed of the stateless draw.
        probability: chance of rotating.

    Returns:
        ``(image, boxes)``, rotated or unchanged together.

    Example:
        >>> image, _ = random_rotation90(tf.zeros([4, 6, 3]), tf.zeros([0, 4]), tf.constant([1, 2]), 1.0)
        >>> image.shape
        TensorShape([6, 4, 3])
    """
    return _random_transform(image, boxes, seed, probability, tf.image.rot90, rotate_boxes_90)


def random_image_scale(image, seed, min_scale_ratio: float = 0.5, max_scale_ratio: float = 2.0):
    """Resize both sides by one random factor in ``[min_scale_ratio, max_scale_ratio)``; boxes are unchanged.

    Args:
        image: ``[H, W, C]``.
        seed: int ``[2]`` seed.
        min_scale_ratio / max_scale_ratio: range of the factor.

    Returns:
        The resized image (at least 1 x 1, same dtype); normalized boxes stay valid as they are.

    Example:
        >>> random_image_scale(tf.zeros([10, 20, 3]), tf.constant([0, 1]), 2.0, 2.0).shape
        TensorShape([20, 40, 3])
    """
    factor = _uniform(seed, min_scale_ratio, max_scale_ratio)
    height, width = _image_size(image)
    # The OD API truncates the scaled size (tf.cast); at least one pixel so that tiny images survive.
    new_height = tf.maximum(1, tf.cast(tf.cast(height, tf.float32) * factor, tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.cast(width, tf.float32) * factor, tf.int32))
    return _resize(image, new_height, new_width)


def random_scale_crop_and_pad_to_square(
    image, boxes, seed, output_size: int = 512, scale_min: float = 0.1, scale_max: float = 2.0
):
    """Scale so the longer side is ``output_size * s``, cut a random ``output_size`` square, pad to the square.

    ``s`` is uniform in ``[scale_min, scale_max)``; the square is cut only where the scaled image is larger; the
    remainder is zero-padded at the bottom and right. Boxes completely outside the square are dropped, the others
    are clipped to it (EfficientDet's scale jitter, arXiv:1911.09070).

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]``.
        seed: int ``[2]`` seed.
        output_size: side of the result.
        scale_min / scale_max: range of ``s``.

    Returns:
        ``(image [output_size, output_size, C], boxes [K, 4], kept_indices [K] int64)``.

    Example:
        >>> image, boxes, kept = random_scale_crop_and_pad_to_square(
        ...     tf.zeros([30, 60, 3], tf.uint8), tf.constant([[0.0, 0.0, 1.0, 0.5]]), tf.constant([1, 2]), 32)
        >>> image.shape
        TensorShape([32, 32, 3])
    """
    scale_seed, y_seed, x_seed = _split(seed, 3)
    scale = _uniform(scale_seed, scale_min, scale_max)
    height, width = _image_size(image)
    longer = tf.cast(tf.maximum(height, width), tf.float32)
    size = float(output_size)
    scaled_height = tf.maximum(1, tf.cast(scale * size * tf.cast(height, tf.float32) / longer, tf.int32))
    scaled_width = tf.maximum(1, tf.cast(scale * size * tf.cast(width, tf.float32) / longer, tf.int32))
    spare_y = tf.cast(tf.maximum(scaled_height - output_size, 0), tf.float32)
    spare_x = tf.cast(tf.maximum(scaled_width - output_size, 0), tf.float32)
    offset_y = tf.cast(spare_y * _uniform(y_seed), tf.int32)
    offset_x = tf.cast(spare_x * _uniform(x_seed), tf.int32)

    scaled = _resize(image, scaled_height, scaled_width)
    cut = scaled[offset_y : offset_y + output_size, offset_x : offset_x + output_size]
    square = _pad(cut, 0, 0, output_size, output_size, pad_color=(0.0, 0.0, 0.0))
    square = tf.ensure_shape(square, [output_size, output_size, image.shape[-1]])

    window = tf.cast(
        tf.stack([offset_y, offset_x, offset_y + output_size, offset_x + output_size]), tf.float32
    ) / tf.cast(tf.stack([scaled_height, scaled_width, scaled_height, scaled_width]), tf.float32)
    moved = _change_frame(boxes, window)
    kept = _prune_outside_unit_window(moved)
    return square, tf.clip_by_value(tf.gather(moved, kept), 0.0, 1.0), kept


def _crop_window_filter(boxes, window, overlap_thresh):
    """Indices of the boxes the OD API keeps for a crop ``window`` (both yxyx normalized to the image).

    A box is kept when it is not completely outside the window and the window covers at least ``overlap_thresh``
    of the box's own area (intersection over the box's area, ``prune_non_overlapping_boxes``).
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    outside = (ymin >= wy1) | (xmin >= wx1) | (ymax <= wy0) | (xmax <= wx0)
    inter_h = tf.maximum(tf.minimum(ymax, wy1) - tf.maximum(ymin, wy0), 0.0)
    inter_w = tf.maximum(tf.minimum(xmax, wx1) - tf.maximum(xmin, wx0), 0.0)
    box_area = (ymax - ymin) * (xmax - xmin)
    # A degenerate (zero-area) box has no meaningful coverage; it is dropped instead of dividing by zero (the OD
    # API's 0/0 is NaN, which fails the >= test the same way).
    coverage = tf.math.divide_no_nan(inter_h * inter_w, box_area)
    keep = tf.logical_not(outside) & (box_area > 0.0) & (coverage >= overlap_thresh)
    return tf.reshape(tf.where(keep), [-1])


def _to_window_frame(boxes, window, clip_boxes: bool = True):
    """Express image-normalized boxes in the crop window's normalized frame, clipped to [0, 1] if asked."""
    moved = _change_frame(boxes, window)
    return tf.clip_by_value(moved, 0.0, 1.0) if clip_boxes else moved


def crop_to_window(image, boxes, window_begin, window_size, window, overlap_thresh, clip_boxes: bool = True):
    """Cut ``image`` to a pixel window and keep/move the boxes as the OD API's strict random crop does.

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]`` yxyx normalized to ``image``.
        window_begin / window_size: int ``[3]`` pixel offset and size (``tf.slice`` arguments).
        window: float32 ``[4]`` the same window, yxyx normalized.
        overlap_thresh: minimum share of a box's area inside the window for it to be kept.
        clip_boxes: clip the kept boxes to the window (the proto's ``clip_boxes``).

    Returns:
        ``(cropped_image, new_boxes [K, 4], kept_indices [K] int64)``; ``kept_indices`` index the input boxes so
        that labels and other per-box fields can be gathered.

    Example:
        >>> image, boxes, kept = crop_to_window(tf.zeros([10, 10, 3]), tf.constant([[0.0, 0.0, 0.4, 0.4]]),
        ...     tf.constant([0, 0, 0]), tf.constant([5, 5, -1]), tf.constant([0.0, 0.0, 0.5, 0.5]), 0.5)
        >>> boxes.numpy().astype(float).round(3).tolist()
        [[0.0, 0.0, 0.8, 0.8]]
    """
    cropped = tf.slice(image, window_begin, window_size)
    kept = _crop_window_filter(boxes, window, overlap_thresh)
    new_boxes = _to_window_frame(tf.gather(boxes, kept), window, clip_boxes)
    return cropped, new_boxes, kept


def _keep_original(image, boxes):
    return tf.identity(image), tf.identity(boxes), _all_kept(boxes)


def _sampled_crop(
    image, boxes, seed, min_object_covered, aspect_ratio_range, area_range, overlap_thresh, clip
):
    """The OD API's ``_strict_random_crop_image``: a ``sample_distorted_bounding_box`` window, then the box rule."""
    # The sampler rejects coordinates outside [0, 1]; records are validated, but clip so a rounding error in some
    # writer cannot stop training.
    sampler_boxes = tf.clip_by_value(boxes, 0.0, 1.0)[tf.newaxis]
    begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=sampler_boxes,
        seed=seed,
        min_object_covered=min_object_covered,
        aspect_ratio_range=tuple(aspect_ratio_range),
        area_range=tuple(area_range),
        max_attempts=_MAX_CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return crop_to_window(image, boxes, begin, size, tf.reshape(window, [4]), overlap_thresh, clip)


def random_crop_image(
    image,
    boxes,
    seed,
    min_object_covered: float = 1.0,
    aspect_ratio_range: tuple[float, float] = (0.75, 1.33),
    area_range: tuple[float, float] = (0.1, 1.0),
    overlap_thresh: float = 0.3,
    clip_boxes: bool = True,
    random_coef: float = 0.0,
):
    """The OD API's ``random_crop_image``: with probability ``1 - random_coef``, a random window and its boxes.

    The window covers at least ``min_object_covered`` of one box (any window when there are no boxes), has a
    width/height ratio in ``aspect_ratio_range`` and an area share in ``area_range``; after 100 failed tries it is
    the whole image. Boxes completely outside it, or with less than ``overlap_thresh`` of their area inside, are
    dropped.

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]``.
        seed: int ``[2]`` seed.
        min_object_covered / aspect_ratio_range / area_range / overlap_thresh / clip_boxes / random_coef: as in
            the proto's ``RandomCropImage``.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``.

    Example:
        >>> image, boxes, kept = random_crop_image(tf.zeros([40, 40, 3], tf.uint8),
        ...     tf.constant([[0.2, 0.2, 0.6, 0.6]]), tf.constant([3, 4]))
    """
    keep_seed, window_seed = _split(seed, 2)

    def _crop():
        return _sampled_crop(
            image,
            boxes,
            window_seed,
            min_object_covered,
            aspect_ratio_range,
            area_range,
            overlap_thresh,
            clip_boxes,
        )

    # As in the OD API, no draw at all when the original is never kept.
    if random_coef <= 0.0:
        return _crop()
    return tf.cond(_uniform(keep_seed) <= random_coef, lambda: _keep_original(image, boxes), _crop)


def ssd_random_crop(image, boxes, seed, random_coef: float = SSD_CROP_RANDOM_COEF, operations=None):
    """The SSD random crop: one operation drawn uniformly, then that operation's ``random_crop_image``.

    Args:
        image: ``[H, W, C]`` (any dtype).
        boxes: float32 ``[M, 4]`` yxyx normalized; ``M`` may be 0 (then the crop only needs the area and aspect
            constraints and the image stays a negative).
        seed: int ``[2]`` seed; all draws (operation, keep-original, window) derive from it.
        random_coef: chance of returning the image unchanged, for the default operations.
        operations: ``SsdRandomCropOperation`` s to draw from; None means the reference's seven with
            ``random_coef``.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``.

    Example:
        >>> image, boxes, kept = ssd_random_crop(tf.zeros([64, 64, 3], tf.uint8),
        ...     tf.constant([[0.2, 0.2, 0.6, 0.6]]), tf.constant([3, 4]))
    """
    operations = _default_operations(random_coef) if operations is None else tuple(operations)
    seeds = _split(seed, 3)
    chosen = tf.random.stateless_uniform([], seed=seeds[0], maxval=len(operations), dtype=tf.int32)

    def _pick(values):
        return tf.gather(tf.constant(values, tf.float32), chosen)

    min_covered = _pick([op.min_object_covered for op in operations])
    overlap_thresh = _pick([op.overlap_thresh for op in operations])
    keep_coef = _pick([op.random_coef for op in operations])
    # The sampler takes the aspect and area ranges as graph attributes, not tensors: one crop branch per distinct
    # (ranges, clip) group. The reference's seven operations are one group, so the graph stays small.
    groups: dict[tuple, int] = {}
    group_of = []
    for op in operations:
        key = ((op.min_aspect_ratio, op.max_aspect_ratio), (op.min_area, op.max_area), op.clip_boxes)
        group_of.append(groups.setdefault(key, len(groups)))

    def _crop_branch(key):
        aspect_ratio_range, area_range, clip = key
        return lambda: _sampled_crop(
            image, boxes, seeds[2], min_covered, aspect_ratio_range, area_range, overlap_thresh, clip
        )

    branches = [_crop_branch(key) for key in groups]
    if len(branches) == 1:
        crop = branches[0]
    else:

        def crop():
            return tf.switch_case(tf.gather(tf.constant(group_of, tf.int32), chosen), branches)

    # OD API: the original is kept when the draw is <= random_coef; an operation with random_coef 0 never keeps it.
    keep = (keep_coef > 0.0) & (_uniform(seeds[1]) <= keep_coef)
    return tf.cond(keep, lambda: _keep_original(image, boxes), crop)


def random_pad_image(image, boxes, seed, min_image_size=None, max_image_size=None, pad_color=None):
    """The OD API's ``random_pad_image``: the image at a random spot of a canvas of random size.

    Canvas height and width are drawn from ``[min, max)`` (each at least the image's; defaults: the image size and
    twice it); the offset from ``[0, canvas - image)``; the rest is ``pad_color`` (the image's mean colour when
    None).

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]``.
        seed: int ``[2]`` seed.
        min_image_size / max_image_size: ``(height, width)`` in pixels (ints or int tensors), or None.
        pad_color: ``(r, g, b)`` in 0..255, or None.

    Returns:
        ``(image, boxes [M, 4], kept_indices [M] int64)``; no box is dropped.

    Example:
        >>> image, boxes, _ = random_pad_image(tf.zeros([10, 10, 3]), tf.constant([[0.0, 0.0, 1.0, 1.0]]),
        ...     tf.constant([1, 2]), min_image_size=(20, 20), max_image_size=(20, 20))
        >>> image.shape, bool(boxes.numpy().max() <= 1.0)
        (TensorShape([20, 20, 3]), True)
    """
    height_seed, width_seed, y_seed, x_seed = _split(seed, 4)
    height, width = _image_size(image)
    image_size = tf.stack([height, width])
    largest = image_size * 2 if max_image_size is None else tf.cast(tf.stack(max_image_size), tf.int32)
    largest = tf.maximum(largest, image_size)
    smallest = image_size if min_image_size is None else tf.cast(tf.stack(min_image_size), tf.int32)
    smallest = tf.maximum(smallest, image_size)
    # _random_int is [low, high), and gives low (= the OD API's max) when high <= low.
    target_height = tf.where(
        largest[0] > smallest[0], _random_int(height_seed, smallest[0], largest[0]), largest[0]
    )
    target_width = tf.where(
        largest[1] > smallest[1], _random_int(width_seed, smallest[1], largest[1]), largest[1]
    )
    offset_y = _random_int(y_seed, 0, target_height - height)
    offset_x = _random_int(x_seed, 0, target_width - width)
    padded = _pad(image, offset_y, offset_x, target_height, target_width, pad_color)

    # Box y in the canvas: (y * H + offset_y) / target_height (the OD API's change_coordinate_frame, simplified).
    scale = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    offset = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32)
    target = tf.cast(tf.stack([target_height, target_width, target_height, target_width]), tf.float32)
    return padded, (boxes * scale + offset) / target, _all_kept(boxes)


def random_crop_pad_image(image, boxes, seed, option: RandomCropPadImage = RandomCropPadImage()):
    """The OD API's ``random_crop_pad_image``: ``random_crop_image``, then ``random_pad_image`` with a canvas of
    ``min/max_padded_size_ratio`` times the *original* image size.

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]``.
        seed: int ``[2]`` seed.
        option: the step's settings (proto ``RandomCropPadImage``).

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``.

    Example:
        >>> image, boxes, kept = random_crop_pad_image(tf.zeros([30, 30, 3], tf.uint8),
        ...     tf.constant([[0.2, 0.2, 0.6, 0.6]]), tf.constant([5, 6]))
    """
    crop_seed, pad_seed = _split(seed, 2)
    height, width = _image_size(image)
    cropped, cropped_boxes, kept = random_crop_image(
        image,
        boxes,
        crop_seed,
        option.min_object_covered,
        (option.min_aspect_ratio, option.max_aspect_ratio),
        (option.min_area, option.max_area),
        option.overlap_thresh,
        option.clip_boxes,
        option.random_coef,
    )
    original = tf.cast(tf.stack([height, width]), tf.float32)
    min_ratio = option.min_padded_size_ratio or (1.0, 1.0)
    max_ratio = option.max_padded_size_ratio or (2.0, 2.0)
    smallest = tf.cast(original * tf.constant(min_ratio, tf.float32), tf.int32)
    largest = tf.cast(original * tf.constant(max_ratio, tf.float32), tf.int32)
    padded, padded_boxes, _ = random_pad_image(
        cropped, cropped_boxes, pad_seed, smallest, largest, option.pad_color or None
    )
    return padded, padded_boxes, kept


def random_self_concat_image(
    image, boxes, seed, concat_vertical_probability: float = 0.1, concat_horizontal_probability: float = 0.1
):
    """Stack a copy of the image below it and/or to its right; the copy's boxes are added.

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]``.
        seed: int ``[2]`` seed.
        concat_vertical_probability / concat_horizontal_probability: chances, drawn independently.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)`` with ``K`` = ``M``, ``2M`` or ``4M``: the original boxes
        (scaled into their half) first, then the copy's.

    Example:
        >>> image, boxes, kept = random_self_concat_image(tf.zeros([4, 6, 3]), tf.constant([[0.0, 0.0, 1.0, 1.0]]),
        ...     tf.constant([1, 2]), 1.0, 0.0)
        >>> image.shape, kept.numpy().tolist()
        (TensorShape([8, 6, 3]), [0, 0])
    """
    vertical_seed, horizontal_seed = _split(seed, 2)

    def _concat(image, boxes, kept, axis: int):
        scaling = tf.constant([0.5, 1.0, 0.5, 1.0] if axis == 0 else [1.0, 0.5, 1.0, 0.5])
        shift = tf.constant([0.5, 0.0, 0.5, 0.0] if axis == 0 else [0.0, 0.5, 0.0, 0.5])
        old = boxes * scaling
        return (
            tf.concat([image, image], axis=axis),
            tf.concat([old, old + shift], 0),
            tf.concat([kept, kept], 0),
        )

    kept = _all_kept(boxes)
    for axis, probability, axis_seed in (
        (0, concat_vertical_probability, vertical_seed),
        (1, concat_horizontal_probability, horizontal_seed),
    ):
        image, boxes, kept = tf.cond(
            _uniform(axis_seed) < probability,
            lambda image=image, boxes=boxes, kept=kept, axis=axis: _concat(image, boxes, kept, axis),
            lambda image=image, boxes=boxes, kept=kept: (
                tf.identity(image),
                tf.identity(boxes),
                tf.identity(kept),
            ),
        )
    return image, boxes, kept


# ----------------------------------------------------------------------------------------------------------------
# Pixel steps: boxes unchanged. Colour formulas as the OD API's: on image / 255, clipped to [0, 1], times 255.
# ----------------------------------------------------------------------------------------------------------------


def _on_unit_scale(image, adjust: Callable):
    """``adjust`` applied to the image on a 0..1 scale; float32 result in [0, 255]."""
    return tf.clip_by_value(adjust(tf.cast(image, tf.float32) / 255.0) * 255.0, 0.0, 255.0)


def random_adjust_brightness(image, seed, max_delta: float = 0.2):
    """Add one random ``delta`` in ``[-max_delta, max_delta)`` (0..1 scale) to every pixel; float32 in [0, 255].

    Example:
        >>> bool(random_adjust_brightness(tf.fill([2, 2, 3], 250.0), tf.constant([0, 1]), 0.2).numpy().max() <= 255)
        True
    """
    delta = _uniform(seed, -max_delta, max_delta)
    return _on_unit_scale(image, lambda unit: tf.image.adjust_brightness(unit, delta))


def random_adjust_contrast(image, seed, min_delta: float = 0.8, max_delta: float = 1.25):
    """Scale each channel's distance to its mean by one factor from ``[min_delta, max_delta)``; float32.

    Example:
        >>> random_adjust_contrast(tf.zeros([2, 2, 3]), tf.constant([0, 1])).dtype
        tf.float32
    """
    factor = _uniform(seed, min_delta, max_delta)
    return _on_unit_scale(image, lambda unit: tf.image.adjust_contrast(unit, factor))


def random_adjust_hue(image, seed, max_delta: float = 0.02):
    """Rotate the hue by one random amount in ``[-max_delta, max_delta)`` of a turn; float32.

    Example:
        >>> random_adjust_hue(tf.zeros([2, 2, 3]), tf.constant([0, 1])).shape
        TensorShape([2, 2, 3])
    """
    delta = _uniform(seed, -max_delta, max_delta)
    return _on_unit_scale(image, lambda unit: tf.image.adjust_hue(unit, delta))


def random_adjust_saturation(image, seed, min_delta: float = 0.8, max_delta: float = 1.25):
    """Multiply the saturation by one factor from ``[min_delta, max_delta)``; float32.

    Example:
        >>> random_adjust_saturation(tf.zeros([2, 2, 3]), tf.constant([0, 1])).shape
        TensorShape([2, 2, 3])
    """
    factor = _uniform(seed, min_delta, max_delta)
    return _on_unit_scale(image, lambda unit: tf.image.adjust_saturation(unit, factor))


def random_distort_color(image, seed, color_ordering: int = 0):
    """The OD API's ``random_distort_color``: brightness ±32/255, saturation and contrast 0.5-1.5, hue ±0.2.

    Order 0: brightness, saturation, hue, contrast; order 1: brightness, contrast, saturation, hue.

    Example:
        >>> random_distort_color(tf.fill([2, 2, 3], 9), tf.constant([0, 1]), 1).dtype
        tf.float32
    """
    brightness, saturation, hue, contrast = _split(seed, 4)
    steps = {
        "brightness": lambda x: random_adjust_brightness(x, brightness, 32.0 / 255.0),
        "saturation": lambda x: random_adjust_saturation(x, saturation, 0.5, 1.5),
        "hue": lambda x: random_adjust_hue(x, hue, 0.2),
        "contrast": lambda x: random_adjust_contrast(x, contrast, 0.5, 1.5),
    }
    order = ("brightness", "saturation", "hue", "contrast")
    if color_ordering == 1:
        order = ("brightness", "contrast", "saturation", "hue")
    for name in order:
        image = steps[name](image)
    return image


def random_rgb_to_gray(image, seed, probability: float = 0.1):
    """With the given probability, replace every pixel by its luma (three equal channels); float32.

    Example:
        >>> random_rgb_to_gray(tf.constant([[[255, 0, 0]]], tf.uint8), tf.constant([0, 1]), 1.0).numpy().round(1)
        array([[[76.2, 76.2, 76.2]]], dtype=float32)
    """
    as_float = tf.cast(image, tf.float32)

    def _gray():
        luma = tf.reduce_sum(as_float * tf.constant(_GRAY_WEIGHTS), axis=-1, keepdims=True)
        return tf.tile(luma, [1, 1, 3])

    return tf.cond(_uniform(seed) <= probability, _gray, lambda: tf.identity(as_float))


def random_jpeg_quality(
    image, seed, random_coef: float = 0.0, min_jpeg_quality: int = 0, max_jpeg_quality: int = 100
):
    """With probability ``1 - random_coef``, JPEG-encode and decode at a quality from ``[min, max)``; float32.

    Example:
        >>> random_jpeg_quality(tf.zeros([8, 8, 3], tf.uint8), tf.constant([0, 1]), 0.0, 50, 60).dtype
        tf.float32
    """
    apply_seed, quality_seed = _split(seed, 2)
    if image.dtype == tf.uint8:
        as_uint8 = image
    else:
        as_uint8 = tf.cast(tf.round(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0)), tf.uint8)

    def _encode():
        quality = _random_int(quality_seed, min_jpeg_quality, max_jpeg_quality)
        return tf.cast(tf.image.adjust_jpeg_quality(as_uint8, quality), tf.float32)

    return tf.cond(_uniform(apply_seed) >= random_coef, _encode, lambda: tf.cast(image, tf.float32))


def random_black_patches(
    image, seed, max_black_patches: int = 10, probability: float = 0.5, size_to_image_ratio: float = 0.1
):
    """Up to ``max_black_patches`` black squares of side ``size_to_image_ratio * min(H, W)``; boxes unchanged.

    Each try adds its square with the given probability; its top-left corner is uniform in
    ``[0, 1 - size_to_image_ratio)`` of the height and width (the OD API's ``random_black_patches``). Keeps the dtype.

    Example:
        >>> image = random_black_patches(tf.fill([10, 10, 3], 7), tf.constant([0, 1]), 1, 1.0, 0.5)
        >>> int(tf.reduce_sum(tf.cast(tf.equal(image[..., 0], 0), tf.int32)))
        25
    """
    if max_black_patches <= 0:
        return image
    on_seed, y_seed, x_seed = _split(seed, 3)
    height, width = _image_size(image)
    on = tf.random.stateless_uniform([max_black_patches], seed=on_seed) <= probability
    side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * size_to_image_ratio, tf.int32)
    top = tf.random.stateless_uniform([max_black_patches], seed=y_seed, maxval=1.0 - size_to_image_ratio)
    left = tf.random.stateless_uniform([max_black_patches], seed=x_seed, maxval=1.0 - size_to_image_ratio)
    top = tf.cast(top * tf.cast(height, tf.float32), tf.int32)[:, tf.newaxis]
    left = tf.cast(left * tf.cast(width, tf.float32), tf.int32)[:, tf.newaxis]
    rows = tf.range(height)[tf.newaxis, :]
    cols = tf.range(width)[tf.newaxis, :]
    in_rows = tf.cast((rows >= top) & (rows < top + side) & on[:, tf.newaxis], tf.float32)  # [patches, H]
    in_cols = tf.cast((cols >= left) & (cols < left + side), tf.float32)  # [patches, W]
    # Pixel (r, c) is black when some active patch covers row r and column c: one matrix product.
    covered = tf.linalg.matmul(in_rows, in_cols, transpose_a=True) > 0.0
    return tf.where(covered[:, :, tf.newaxis], tf.zeros([], image.dtype), image)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------------------


def _pixels_only(apply: Callable) -> Callable:
    """A pixel step as a step function: boxes and their indices unchanged."""
    return lambda option, image, boxes, seed: (apply(option, image, seed), boxes, _all_kept(boxes))


def _with_kept(apply: Callable) -> Callable:
    """A step that moves but never drops boxes (flips, rotation) as a step function."""

    def _step(option, image, boxes, seed):
        image, boxes = apply(option, image, boxes, seed)
        return image, boxes, _all_kept(boxes)

    return _step


#: Step type -> ``fn(option, image, boxes, seed) -> (image, boxes, kept_indices)``.
_STEPS: dict[type, Callable] = {
    RandomHorizontalFlip: _with_kept(lambda o, i, b, s: random_horizontal_flip(i, b, s, o.probability)),
    RandomVerticalFlip: _with_kept(lambda o, i, b, s: random_vertical_flip(i, b, s, o.probability)),
    RandomRotation90: _with_kept(lambda o, i, b, s: random_rotation90(i, b, s, o.probability)),
    RandomAdjustBrightness: _pixels_only(lambda o, i, s: random_adjust_brightness(i, s, o.max_delta)),
    RandomAdjustContrast: _pixels_only(
        lambda o, i, s: random_adjust_contrast(i, s, o.min_delta, o.max_delta)
    ),
    RandomAdjustHue: _pixels_only(lambda o, i, s: random_adjust_hue(i, s, o.max_delta)),
    RandomAdjustSaturation: _pixels_only(
        lambda o, i, s: random_adjust_saturation(i, s, o.min_delta, o.max_delta)
    ),
    RandomDistortColor: _pixels_only(lambda o, i, s: random_distort_color(i, s, o.color_ordering)),
    RandomRgbToGray: _pixels_only(lambda o, i, s: random_rgb_to_gray(i, s, o.probability)),
    RandomJpegQuality: _pixels_only(
        lambda o, i, s: random_jpeg_quality(i, s, o.random_coef, o.min_jpeg_quality, o.max_jpeg_quality)
    ),
    RandomBlackPatches: _pixels_only(
        lambda o, i, s: random_black_patches(i, s, o.max_black_patches, o.probability, o.size_to_image_ratio)
    ),
    RandomImageScale: _pixels_only(
        lambda o, i, s: random_image_scale(i, s, o.min_scale_ratio, o.max_scale_ratio)
    ),
    RandomScaleCropAndPadToSquare: lambda o, i, b, s: random_scale_crop_and_pad_to_square(
        i, b, s, o.output_size, o.scale_min, o.scale_max
    ),
    RandomCropImage: lambda o, i, b, s: random_crop_image(
        i,
        b,
        s,
        o.min_object_covered,
        (o.min_aspect_ratio, o.max_aspect_ratio),
        (o.min_area, o.max_area),
        o.overlap_thresh,
        o.clip_boxes,
        o.random_coef,
    ),
    RandomPadImage: lambda o, i, b, s: random_pad_image(
        i,
        b,
        s,
        None if o.min_image_height is None else (o.min_image_height, o.min_image_width),
        None if o.max_image_height is None else (o.max_image_height, o.max_image_width),
        o.pad_color or None,
    ),
    RandomCropPadImage: lambda o, i, b, s: random_crop_pad_image(i, b, s, o),
    RandomSelfConcatImage: lambda o, i, b, s: random_self_concat_image(
        i, b, s, o.concat_vertical_probability, o.concat_horizontal_probability
    ),
    SsdRandomCrop: lambda o, i, b, s: ssd_random_crop(i, b, s, operations=o.effective_operations),
}


# Plain TF code (explicit tf.cond, no Python control flow on tensors): not autograph-converted, which made tracing
# all steps inside tf.data take seconds (autograph transpiles every function and lambda it reaches).
@tf.autograph.experimental.do_not_convert
def apply_step(option: AugmentationOption, image, boxes, seed):
    """Apply one ``data_augmentation_options`` step.

    Args:
        option: the step (a dataclass of ``pipeline_config/settings.py``).
        image: ``[H, W, 3]`` uint8 or float32 in 0..255.
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed of this step.

    Returns:
        ``(image [H', W', 3], boxes [K, 4], kept_indices [K] int64)``; ``kept_indices`` index ``boxes``.

    Raises:
        TypeError: ``option`` is not a step this module implements.

    Example:
        >>> image, boxes, kept = apply_step(RandomVerticalFlip(1.0), tf.zeros([4, 4, 3]), tf.zeros([0, 4]),
        ...     tf.constant([0, 1]))
    """
    step = _STEPS.get(type(option))
    if step is None:
        raise TypeError(f"{option!r} is not an augmentation step of pipeline_config.settings")
    image, boxes, kept = step(option, image, boxes, seed)
    image = tf.ensure_shape(image, [None, None, 3])
    return image, tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]), kept


def augment(
    image, boxes, seed, options: AugmentOptions | Sequence[AugmentationOption] = DEFAULT_AUGMENTATION
):
    """Apply the augmentation steps in order, each with its own seed split from ``seed``.

    Args:
        image: decoded ``[H, W, 3]`` image (uint8, or float32 in 0..255).
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed for this example (derive it from the run seed and the example's position).
        options: the steps (``config.train.data_augmentation_options``), or the older :class:`AugmentOptions`.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``: gather per-box fields (classes, ...) with
        ``kept_indices``. The image may have another size than the input (crops, pads, scales) and is float32 after
        a colour step.

    Example:
        >>> image, boxes, kept = augment(tf.zeros([32, 32, 3], tf.uint8), tf.constant([[0.1, 0.1, 0.9, 0.9]]),
        ...     tf.constant([0, 7]))
    """
    steps = options.steps if isinstance(options, AugmentOptions) else tuple(options)
    image = tf.ensure_shape(image, [None, None, 3])
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    kept = _all_kept(boxes)
    if not steps:
        return image, boxes, kept
    # At least two seeds, so that flip-then-crop keeps the draws it had before steps were generalized.
    step_seeds = _split(seed, max(2, len(steps)))
    for option, step_seed in zip(steps, step_seeds, strict=False):
        image, boxes, step_kept = apply_step(option, image, boxes, step_seed)
        kept = tf.gather(kept, step_kept)
    return image, boxes, kept
