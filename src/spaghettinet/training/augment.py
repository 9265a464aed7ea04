"""Training-time augmentation as the reference config applies it: random horizontal flip, then the SSD random crop.

Both operations work on one decoded image (``uint8 [H, W, 3]``) with its boxes (``[M, 4]`` yxyx, normalized) and
are *stateless*: every random draw comes from a ``seed`` tensor of shape ``[2]``, so the same record with the same
seed gives the same result whatever the thread order of ``tf.data`` (this is what makes a resumed run see the same
images as an uninterrupted one).

The SSD random crop follows the TF Object Detection API's ``ssd_random_crop`` with its default seven operations
(spec §3 "augmentation"): one operation is drawn uniformly; with probability ``random_coef`` (0.15) the original
image is kept, otherwise ``sample_distorted_bounding_box`` picks a window whose area is 10-100 % of the image, whose
aspect ratio is 0.5-2 and which covers at least ``min_object_covered`` of some box; boxes entirely outside the
window are dropped, then boxes whose intersection with the window is less than ``overlap_thresh`` (equal to
``min_object_covered``) of their own area; the kept boxes move into the window's frame and are clipped to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: The seven ``min_object_covered`` values of the reference ``ssd_random_crop`` (spec §3); the overlap threshold of
#: each operation is the same number.
SSD_CROP_MIN_OBJECT_COVERED: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
#: Aspect ratio (width / height) and area ranges of the crop window, the same for all seven operations (spec §3).
SSD_CROP_ASPECT_RATIO_RANGE: tuple[float, float] = (0.5, 2.0)
SSD_CROP_AREA_RANGE: tuple[float, float] = (0.1, 1.0)
#: Chance of keeping the whole image instead of cropping (spec §3 ``random_coef``).
SSD_CROP_RANDOM_COEF = 0.15
#: ``sample_distorted_bounding_box`` gives up after this many tries and returns the whole image (OD API value).
_MAX_CROP_ATTEMPTS = 100


@dataclass(frozen=True)
class AugmentOptions:
    """Which augmentations run, and their parameters (from ``train_config`` of the pipeline config).

    Args:
        horizontal_flip: whether to flip left/right (turn off for classes such as "left arrow").
        flip_probability: chance of a flip.
        ssd_random_crop: whether to apply the seven-operation SSD random crop.
        crop_random_coef: chance of keeping the original image when the crop is on.

    Example:
        >>> AugmentOptions(horizontal_flip=False).ssd_random_crop
        True
    """

    horizontal_flip: bool = True
    flip_probability: float = 0.5
    ssd_random_crop: bool = True
    crop_random_coef: float = SSD_CROP_RANDOM_COEF


def flip_boxes_left_right(boxes):
    """Mirror normalized yxyx boxes about the vertical centre line: ``x -> 1 - x`` (min and max swap).

    Args:
        boxes: float32 ``[M, 4]``.

    Returns:
        float32 ``[M, 4]``.

    Example:
        >>> flip_boxes_left_right(tf.constant([[0.1, 0.2, 0.5, 0.4]])).numpy().round(3).tolist()
        [[0.1, 0.6, 0.5, 0.8]]
    """
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)


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
    do_flip = tf.random.stateless_uniform([], seed=seed) < probability
    return tf.cond(
        do_flip,
        lambda: (tf.image.flip_left_right(image), flip_boxes_left_right(boxes)),
        lambda: (tf.identity(image), tf.identity(boxes)),
    )


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
    # A degenerate (zero-area) box has no meaningful coverage; it is dropped instead of dividing by zero.
    coverage = tf.math.divide_no_nan(inter_h * inter_w, box_area)
    keep = tf.logical_not(outside) & (box_area > 0.0) & (coverage >= overlap_thresh)
    return tf.reshape(tf.where(keep), [-1])


def _to_window_frame(boxes, window):
    """Express image-normalized boxes in the crop window's normalized frame, clipped to [0, 1]."""
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    height = tf.maximum(wy1 - wy0, 1e-8)
    width = tf.maximum(wx1 - wx0, 1e-8)
    moved = (boxes - tf.stack([wy0, wx0, wy0, wx0])) / tf.stack([height, width, height, width])
    return tf.clip_by_value(moved, 0.0, 1.0)


def crop_to_window(image, boxes, window_begin, window_size, window, overlap_thresh):
    """Cut ``image`` to a pixel window and keep/move the boxes as the OD API's strict random crop does.

    Args:
        image: ``[H, W, C]``.
        boxes: float32 ``[M, 4]`` yxyx normalized to ``image``.
        window_begin / window_size: int ``[3]`` pixel offset and size (``tf.slice`` arguments).
        window: float32 ``[4]`` the same window, yxyx normalized.
        overlap_thresh: minimum share of a box's area inside the window for it to be kept.

    Returns:
        ``(cropped_image, new_boxes [K, 4], kept_indices [K] int64)``; ``kept_indices`` index the input boxes so
        that labels and other per-box fields can be gathered.

    Example:
        >>> image, boxes, kept = crop_to_window(tf.zeros([10, 10, 3]), tf.constant([[0.0, 0.0, 0.4, 0.4]]),
        ...     tf.constant([0, 0, 0]), tf.constant([5, 5, -1]), tf.constant([0.0, 0.0, 0.5, 0.5]), 0.5)
        >>> boxes.numpy().round(3).tolist()
        [[0.0, 0.0, 0.8, 0.8]]
    """
    cropped = tf.slice(image, window_begin, window_size)
    kept = _crop_window_filter(boxes, window, overlap_thresh)
    new_boxes = _to_window_frame(tf.gather(boxes, kept), window)
    return cropped, new_boxes, kept


def ssd_random_crop(image, boxes, seed, random_coef: float = SSD_CROP_RANDOM_COEF):
    """The reference's seven-operation SSD random crop (see the module docstring for the exact rule).

    Args:
        image: ``[H, W, C]`` (any dtype).
        boxes: float32 ``[M, 4]`` yxyx normalized; ``M`` may be 0 (then the crop only needs the area and aspect
            constraints and the image stays a negative).
        seed: int ``[2]`` seed; all draws (operation, keep-original, window) derive from it.
        random_coef: chance of returning the image unchanged.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``.

    Example:
        >>> image, boxes, kept = ssd_random_crop(tf.zeros([64, 64, 3], tf.uint8),
        ...     tf.constant([[0.2, 0.2, 0.6, 0.6]]), tf.constant([3, 4]))
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    operation = tf.random.stateless_uniform(
        [], seed=seeds[0], maxval=len(SSD_CROP_MIN_OBJECT_COVERED), dtype=tf.int32
    )
    min_covered = tf.gather(tf.constant(SSD_CROP_MIN_OBJECT_COVERED, tf.float32), operation)
    keep_original = tf.random.stateless_uniform([], seed=seeds[1]) <= random_coef

    def _crop():
        # The sampler rejects coordinates outside [0, 1]; records are validated, but clip so a rounding error in
        # some writer cannot stop training.
        sampler_boxes = tf.clip_by_value(boxes, 0.0, 1.0)[tf.newaxis]
        begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=sampler_boxes,
            seed=seeds[2],
            min_object_covered=min_covered,
            aspect_ratio_range=SSD_CROP_ASPECT_RATIO_RANGE,
            area_range=SSD_CROP_AREA_RANGE,
            max_attempts=_MAX_CROP_ATTEMPTS,
            use_image_if_no_bounding_boxes=True,
        )
        return crop_to_window(image, boxes, begin, size, tf.reshape(window, [4]), min_covered)

    def _keep():
        return tf.identity(image), tf.identity(boxes), tf.range(tf.shape(boxes, out_type=tf.int64)[0])

    return tf.cond(keep_original, _keep, _crop)


def augment(image, boxes, seed, options: AugmentOptions = AugmentOptions()):
    """Apply the configured augmentations in the reference order: flip, then SSD random crop.

    Args:
        image: decoded ``[H, W, 3]`` image.
        boxes: float32 ``[M, 4]`` yxyx normalized.
        seed: int ``[2]`` seed for this example (derive it from the run seed and the example's position).
        options: which augmentations run.

    Returns:
        ``(image, boxes [K, 4], kept_indices [K] int64)``: gather per-box fields (classes, ...) with
        ``kept_indices``.

    Example:
        >>> image, boxes, kept = augment(tf.zeros([32, 32, 3], tf.uint8), tf.constant([[0.1, 0.1, 0.9, 0.9]]),
        ...     tf.constant([0, 7]))
    """
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2))
    if options.horizontal_flip:
        image, boxes = random_horizontal_flip(image, boxes, flip_seed, options.flip_probability)
    kept = tf.range(tf.shape(boxes, out_type=tf.int64)[0])
    if options.ssd_random_crop:
        image, boxes, kept = ssd_random_crop(image, boxes, crop_seed, options.crop_random_coef)
    return image, boxes, kept
