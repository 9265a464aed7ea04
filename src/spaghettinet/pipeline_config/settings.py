"""Typed settings read from a ``pipeline.config``: what the model, training, inputs, evaluation and QAT use.

Every default is the value of the zoo's SpaghettiNet config (tensorflow/models
``research/object_detection/configs/tf1/ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``) or, where
that config leaves a field out, the TF OD API's proto default (``research/object_detection/protos/``). A field
the file does not set keeps its default, so ``ModelSettings(num_classes=3)`` is the reference model for three
classes.

Paths (``label_map_path``, ``input_paths``, ``fine_tune_checkpoint``) are stored as written in the file; relative
ones are resolved against the config file's folder by :meth:`PipelineConfig.resolve_path` (the TF OD API used the
current directory, which made a config depend on where it was run from).

Example:
    >>> model = ModelSettings(num_classes=3, variant="s")
    >>> model.arch_name, model.input_size
    ('spaghettinet_edgetpu_s', (320, 320))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

VARIANTS = ("s", "m", "l")
ARCH_NAME_PREFIX = "spaghettinet_edgetpu_"


def arch_name_for_variant(variant: str) -> str:
    """Return the ``spaghettinet_arch_name`` of a variant letter.

    Args:
        variant: ``'s'``, ``'m'`` or ``'l'``.

    Returns:
        e.g. ``'spaghettinet_edgetpu_m'``.

    Example:
        >>> arch_name_for_variant("l")
        'spaghettinet_edgetpu_l'
    """
    return ARCH_NAME_PREFIX + variant


@dataclass
class ModelSettings:
    """The ``model.ssd`` block: classes, input size, anchors, matcher, box coder, losses, post-processing.

    Args:
        num_classes: foreground classes (background excluded), as ``num_classes`` in the config.
        variant: ``'s'``, ``'m'`` or ``'l'`` (from ``spaghettinet_arch_name``).
        input_size: ``(height, width)`` of the ``fixed_shape_resizer``.
        box_coder_scales: Faster R-CNN box coder ``(y, x, height, width)`` scales.
        matched_threshold / unmatched_threshold / force_match_for_each_row: the argmax matcher.
        min_scale / max_scale / aspect_ratios / num_layers / interpolated_scale_aspect_ratio /
            reduce_boxes_in_lowest_layer: the SSD anchor generator.
        focal_alpha / focal_gamma: sigmoid focal classification loss.
        smooth_l1_delta: Huber delta of the localization loss.
        classification_weight / localization_weight: loss weights.
        normalize_loss_by_num_matches / normalize_loc_loss_by_codesize: loss normalization.
        score_threshold / iou_threshold / max_detections_per_class / max_total_detections: NMS.
        score_converter: ``'SIGMOID'`` (the only one SpaghettiNet uses).
        l2_extractor / l2_predictor: slim L2 regularizer weights (``weight·Σw²/2``).
        use_depthwise / kernel_size / box_code_size: the convolutional box predictor.
        add_background_class / encode_background_as_zeros: class target layout.
        use_explicit_padding: feature extractor padding flag (reference: false).
    """

    num_classes: int = 90
    variant: str = "m"
    input_size: tuple[int, int] = (320, 320)
    box_coder_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    force_match_for_each_row: bool = True
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333333)
    num_layers: int = 5
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    smooth_l1_delta: float = 1.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    normalize_loss_by_num_matches: bool = True
    normalize_loc_loss_by_codesize: bool = True
    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_detections_per_class: int = 100
    max_total_detections: int = 100
    score_converter: str = "SIGMOID"
    l2_extractor: float = 1e-5
    l2_predictor: float = 4e-5
    use_depthwise: bool = True
    kernel_size: int = 3
    box_code_size: int = 4
    add_background_class: bool = True
    encode_background_as_zeros: bool = True
    use_explicit_padding: bool = False

    @property
    def arch_name(self) -> str:
        """The config's ``spaghettinet_arch_name``, e.g. ``'spaghettinet_edgetpu_m'``."""
        return arch_name_for_variant(self.variant)


# ---------------------------------------------------------------------------------------------------------------
# train_config.data_augmentation_options: one frozen dataclass per PreprocessingStep of the TF OD API
# (research/object_detection/protos/preprocessor.proto in tensorflow/models). Field names and defaults are the
# proto's; fields about keypoints, masks or DensePose have no meaning for box detection and are left out (the reader
# lists them as unused). ``training/augment.py`` applies the steps, in the config's order.
# ---------------------------------------------------------------------------------------------------------------


class AugmentationOption:
    """Base of the ``data_augmentation_options`` steps.

    ``proto_name`` is the step's field name in the proto's ``PreprocessingStep`` oneof (what the config writes,
    e.g. ``random_horizontal_flip``); :meth:`problems` lists impossible values as ``(field, message)`` pairs, so the
    reader can point at the line of the field and the writer can refuse to write the option.
    """

    proto_name: ClassVar[str] = ""

    def problems(self) -> list[tuple[str, str]]:
        """Impossible values of this option, as ``(field name, message)``; empty when the option is valid."""
        return []


def _fractions(option: object, *names: str) -> list[tuple[str, str]]:
    """A problem for each named field outside [0, 1] (probabilities, ``random_coef``, overlap shares)."""
    found = []
    for name in names:
        value = getattr(option, name)
        if not 0.0 <= value <= 1.0:
            found.append((name, f"must be in [0, 1], got {value}"))
    return found


def _range(option: object, low: str, high: str, minimum: float, above_minimum: bool = False):
    """Problems of a ``[low, high]`` pair: ``low >= minimum`` (``>`` with ``above_minimum``) and ``low <= high``."""
    low_value, high_value = getattr(option, low), getattr(option, high)
    if (low_value <= minimum) if above_minimum else (low_value < minimum):
        return [(low, f"must be {'>' if above_minimum else '>='} {minimum}, got {low_value}")]
    if high_value < low_value:
        return [(high, f"must be at least {low} ({low_value}), got {high_value}")]
    return []


def _pad_color_problems(pad_color: tuple[float, ...]) -> list[tuple[str, str]]:
    # The OD API's preprocessor_builder refuses a pad_color that is not three values (RGB); pixels are 0..255 here.
    if pad_color and len(pad_color) != 3:
        return [("pad_color", f"must have 3 values (R, G, B) when set, got {len(pad_color)}")]
    if any(not 0.0 <= value <= 255.0 for value in pad_color):
        return [("pad_color", f"values must be in [0, 255] (pixel values), got {list(pad_color)}")]
    return []


@dataclass(frozen=True)
class RandomHorizontalFlip(AugmentationOption):
    """``random_horizontal_flip``: mirror the image and its boxes left/right.

    Args:
        probability: chance of flipping an image (proto default 0.5).

    Example:
        >>> RandomHorizontalFlip().probability
        0.5
    """

    proto_name: ClassVar[str] = "random_horizontal_flip"
    probability: float = 0.5

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "probability")


@dataclass(frozen=True)
class RandomVerticalFlip(AugmentationOption):
    """``random_vertical_flip``: mirror the image and its boxes top/bottom.

    Args:
        probability: chance of flipping an image (proto default 0.5).
    """

    proto_name: ClassVar[str] = "random_vertical_flip"
    probability: float = 0.5

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "probability")


@dataclass(frozen=True)
class RandomRotation90(AugmentationOption):
    """``random_rotation90``: rotate the image and its boxes by 90 degrees counter-clockwise.

    Args:
        probability: chance of rotating an image (proto default 0.5).
    """

    proto_name: ClassVar[str] = "random_rotation90"
    probability: float = 0.5

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "probability")


@dataclass(frozen=True)
class RandomAdjustBrightness(AugmentationOption):
    """``random_adjust_brightness``: add a random ``delta`` in ``[-max_delta, max_delta]`` (on a 0..1 scale).

    Args:
        max_delta: largest change, as a share of the full pixel range (proto default 0.2).
    """

    proto_name: ClassVar[str] = "random_adjust_brightness"
    max_delta: float = 0.2

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "max_delta")


@dataclass(frozen=True)
class RandomAdjustContrast(AugmentationOption):
    """``random_adjust_contrast``: scale each channel's distance to its mean by a factor in ``[min, max]``.

    Args:
        min_delta / max_delta: range of the contrast factor (proto defaults 0.8 and 1.25).
    """

    proto_name: ClassVar[str] = "random_adjust_contrast"
    min_delta: float = 0.8
    max_delta: float = 1.25

    def problems(self) -> list[tuple[str, str]]:
        return _range(self, "min_delta", "max_delta", 0.0)


@dataclass(frozen=True)
class RandomAdjustHue(AugmentationOption):
    """``random_adjust_hue``: rotate the hue by a random amount in ``[-max_delta, max_delta]`` (of a full turn).

    Args:
        max_delta: largest hue change, at most 0.5 (``tf.image.adjust_hue``'s limit; proto default 0.02).
    """

    proto_name: ClassVar[str] = "random_adjust_hue"
    max_delta: float = 0.02

    def problems(self) -> list[tuple[str, str]]:
        if not 0.0 <= self.max_delta <= 0.5:
            return [("max_delta", f"must be in [0, 0.5], got {self.max_delta}")]
        return []


@dataclass(frozen=True)
class RandomAdjustSaturation(AugmentationOption):
    """``random_adjust_saturation``: multiply the saturation by a factor in ``[min_delta, max_delta]``.

    Args:
        min_delta / max_delta: range of the saturation factor (proto defaults 0.8 and 1.25).
    """

    proto_name: ClassVar[str] = "random_adjust_saturation"
    min_delta: float = 0.8
    max_delta: float = 1.25

    def problems(self) -> list[tuple[str, str]]:
        return _range(self, "min_delta", "max_delta", 0.0)


@dataclass(frozen=True)
class RandomDistortColor(AugmentationOption):
    """``random_distort_color``: brightness, saturation, hue and contrast changes in one of two fixed orders.

    Args:
        color_ordering: 0 (brightness, saturation, hue, contrast) or 1 (brightness, contrast, saturation, hue);
            proto default 0.
    """

    proto_name: ClassVar[str] = "random_distort_color"
    color_ordering: int = 0

    def problems(self) -> list[tuple[str, str]]:
        if self.color_ordering not in (0, 1):
            return [("color_ordering", f"must be 0 or 1, got {self.color_ordering}")]
        return []


@dataclass(frozen=True)
class RandomRgbToGray(AugmentationOption):
    """``random_rgb_to_gray``: replace the image by its grey version (still three channels).

    Args:
        probability: chance of converting an image (proto default 0.1).
    """

    proto_name: ClassVar[str] = "random_rgb_to_gray"
    probability: float = 0.1

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "probability")


@dataclass(frozen=True)
class RandomJpegQuality(AugmentationOption):
    """``random_jpeg_quality``: re-encode the image as JPEG with a random quality.

    Args:
        random_coef: chance of keeping the original image (proto default 0).
        min_jpeg_quality / max_jpeg_quality: the quality is drawn from ``[min, max)`` (proto defaults 0 and 100;
            equal values use that quality).
    """

    proto_name: ClassVar[str] = "random_jpeg_quality"
    random_coef: float = 0.0
    min_jpeg_quality: int = 0
    max_jpeg_quality: int = 100

    def problems(self) -> list[tuple[str, str]]:
        if self.max_jpeg_quality > 100:
            return [("max_jpeg_quality", f"must be at most 100, got {self.max_jpeg_quality}")]
        return _fractions(self, "random_coef") + _range(self, "min_jpeg_quality", "max_jpeg_quality", 0)


@dataclass(frozen=True)
class RandomImageScale(AugmentationOption):
    """``random_image_scale``: resize the image by one random factor for both sides (aspect ratio kept).

    Args:
        min_scale_ratio / max_scale_ratio: range of the factor (proto defaults 0.5 and 2.0).
    """

    proto_name: ClassVar[str] = "random_image_scale"
    min_scale_ratio: float = 0.5
    max_scale_ratio: float = 2.0

    def problems(self) -> list[tuple[str, str]]:
        return _range(self, "min_scale_ratio", "max_scale_ratio", 0.0, above_minimum=True)


@dataclass(frozen=True)
class RandomScaleCropAndPadToSquare(AugmentationOption):
    """``random_scale_crop_and_pad_to_square``: scale so the longer side is ``output_size * s``, crop, pad to square.

    ``s`` is drawn from ``[scale_min, scale_max]``; a random ``output_size`` square is cut from the scaled image
    when it is larger, and the result is padded with zeros (bottom and right) to ``output_size`` x ``output_size``.

    Args:
        output_size: side of the square result in pixels (proto default 512).
        scale_min / scale_max: range of the scale factor (proto defaults 0.1 and 2.0).
    """

    proto_name: ClassVar[str] = "random_scale_crop_and_pad_to_square"
    output_size: int = 512
    scale_min: float = 0.1
    scale_max: float = 2.0

    def problems(self) -> list[tuple[str, str]]:
        if self.output_size < 1:
            return [("output_size", f"must be at least 1, got {self.output_size}")]
        return _range(self, "scale_min", "scale_max", 0.0, above_minimum=True)


def _crop_problems(option: object) -> list[tuple[str, str]]:
    """The checks shared by the crop options (RandomCropImage, RandomCropPadImage, SSD crop operations)."""
    return (
        _fractions(option, "min_object_covered", "overlap_thresh", "random_coef", "max_area")
        + _range(option, "min_aspect_ratio", "max_aspect_ratio", 0.0, above_minimum=True)
        + _range(option, "min_area", "max_area", 0.0, above_minimum=True)
    )


@dataclass(frozen=True)
class RandomCropImage(AugmentationOption):
    """``random_crop_image``: cut a random window that covers at least ``min_object_covered`` of some box.

    Boxes completely outside the window, and boxes with less than ``overlap_thresh`` of their area inside it, are
    dropped; the others move into the window's frame (clipped to it with ``clip_boxes``).

    Args:
        min_object_covered: share of at least one box the window must cover (proto default 1.0).
        min_aspect_ratio / max_aspect_ratio: window width / height range (proto defaults 0.75 and 1.33).
        min_area / max_area: window area as a share of the image (proto defaults 0.1 and 1.0).
        overlap_thresh: share of a box's area that must lie in the window to keep it (proto default 0.3).
        clip_boxes: clip kept boxes to the window (proto default true).
        random_coef: chance of keeping the original image (proto default 0).
    """

    proto_name: ClassVar[str] = "random_crop_image"
    min_object_covered: float = 1.0
    min_aspect_ratio: float = 0.75
    max_aspect_ratio: float = 1.33
    min_area: float = 0.1
    max_area: float = 1.0
    overlap_thresh: float = 0.3
    clip_boxes: bool = True
    random_coef: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        return _crop_problems(self)


@dataclass(frozen=True)
class RandomPadImage(AugmentationOption):
    """``random_pad_image``: place the image at a random spot of a larger canvas filled with ``pad_color``.

    The canvas size is drawn from ``[min, max)`` per side; unset minimums are the image size, unset maximums twice
    the image size (each pair is set together or not at all, as the OD API's builder requires).

    Args:
        min_image_height / min_image_width: smallest canvas (None: the image size).
        max_image_height / max_image_width: largest canvas (None: twice the image size).
        pad_color: R, G, B fill in pixel values 0..255 (empty: the image's mean colour).
    """

    proto_name: ClassVar[str] = "random_pad_image"
    min_image_height: int | None = None
    min_image_width: int | None = None
    max_image_height: int | None = None
    max_image_width: int | None = None
    pad_color: tuple[float, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        found = []
        for first, second in (
            ("min_image_height", "min_image_width"),
            ("max_image_height", "max_image_width"),
        ):
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                found.append((first, f"and {second} must be set together or not at all"))
            for name in (first, second):
                value = getattr(self, name)
                if value is not None and value < 1:
                    found.append((name, f"must be at least 1, got {value}"))
        return found + _pad_color_problems(self.pad_color)


@dataclass(frozen=True)
class RandomCropPadImage(AugmentationOption):
    """``random_crop_pad_image``: a ``random_crop_image`` followed by a ``random_pad_image``.

    The canvas of the pad is drawn between ``min_padded_size_ratio`` and ``max_padded_size_ratio`` times the
    *original* image's (height, width).

    Args:
        min_object_covered / min_aspect_ratio / max_aspect_ratio / min_area / max_area / overlap_thresh /
            clip_boxes / random_coef: the crop, as in :class:`RandomCropImage` (same proto defaults).
        min_padded_size_ratio: (height, width) ratios of the smallest canvas (empty: (1, 1)).
        max_padded_size_ratio: (height, width) ratios of the largest canvas (empty: (2, 2)).
        pad_color: R, G, B fill in pixel values 0..255 (empty: the cropped image's mean colour).
    """

    proto_name: ClassVar[str] = "random_crop_pad_image"
    min_object_covered: float = 1.0
    min_aspect_ratio: float = 0.75
    max_aspect_ratio: float = 1.33
    min_area: float = 0.1
    max_area: float = 1.0
    overlap_thresh: float = 0.3
    clip_boxes: bool = True
    random_coef: float = 0.0
    min_padded_size_ratio: tuple[float, ...] = ()
    max_padded_size_ratio: tuple[float, ...] = ()
    pad_color: tuple[float, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        found = _crop_problems(self)
        for name in ("min_padded_size_ratio", "max_padded_size_ratio"):
            ratios = getattr(self, name)
            if ratios and len(ratios) != 2:
                found.append((name, f"must have 2 values (height, width) when set, got {len(ratios)}"))
            elif any(ratio <= 0 for ratio in ratios):
                found.append((name, f"values must be > 0, got {list(ratios)}"))
        return found + _pad_color_problems(self.pad_color)


@dataclass(frozen=True)
class RandomBlackPatches(AugmentationOption):
    """``random_black_patches``: up to ``max_black_patches`` black squares at random places (boxes unchanged).

    Args:
        max_black_patches: number of tries (proto default 10).
        probability: chance of each try adding a patch (proto default 0.5).
        size_to_image_ratio: patch side as a share of ``min(height, width)`` (proto default 0.1).
    """

    proto_name: ClassVar[str] = "random_black_patches"
    max_black_patches: int = 10
    probability: float = 0.5
    size_to_image_ratio: float = 0.1

    def problems(self) -> list[tuple[str, str]]:
        found = _fractions(self, "probability")
        if self.max_black_patches < 0:
            found.append(("max_black_patches", f"must be >= 0, got {self.max_black_patches}"))
        if not 0.0 < self.size_to_image_ratio <= 1.0:
            found.append(("size_to_image_ratio", f"must be in (0, 1], got {self.size_to_image_ratio}"))
        return found


@dataclass(frozen=True)
class RandomSelfConcatImage(AugmentationOption):
    """``random_self_concat_image``: put the image next to / below a copy of itself; boxes are duplicated.

    The closest the TF OD API has to mosaic: vertical and horizontal concatenation are drawn independently, so an
    image can become a 2 x 2 grid of itself.

    Args:
        concat_vertical_probability: chance of stacking a copy below (proto default 0.1).
        concat_horizontal_probability: chance of placing a copy on the right (proto default 0.1).
    """

    proto_name: ClassVar[str] = "random_self_concat_image"
    concat_vertical_probability: float = 0.1
    concat_horizontal_probability: float = 0.1

    def problems(self) -> list[tuple[str, str]]:
        return _fractions(self, "concat_vertical_probability", "concat_horizontal_probability")


@dataclass(frozen=True)
class SsdRandomCropOperation:
    """One ``operations { ... }`` entry of ``ssd_random_crop`` (``SSDRandomCropOperation``).

    The proto gives these fields no defaults (0 when unset) except ``clip_boxes``; an operation must set its
    ranges, which the value checks enforce.

    Args:
        min_object_covered / min_aspect_ratio / max_aspect_ratio / min_area / max_area / overlap_thresh /
            clip_boxes / random_coef: as in :class:`RandomCropImage`, for this operation.
    """

    min_object_covered: float = 0.0
    min_aspect_ratio: float = 0.0
    max_aspect_ratio: float = 0.0
    min_area: float = 0.0
    max_area: float = 0.0
    overlap_thresh: float = 0.0
    clip_boxes: bool = True
    random_coef: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        """Impossible values of this operation, as ``(field name, message)``."""
        return _crop_problems(self)


#: The seven operations ``ssd_random_crop`` uses when the config lists none (``core/preprocessor.py``
#: ``ssd_random_crop`` defaults): min_object_covered = overlap_thresh in 0, 0.1, 0.3, 0.5, 0.7, 0.9, 1;
#: aspect ratio 0.5-2; area 10-100 %; clip; keep the original image with probability 0.15.
SSD_RANDOM_CROP_DEFAULT_OPERATIONS: tuple[SsdRandomCropOperation, ...] = tuple(
    SsdRandomCropOperation(
        min_object_covered=covered,
        min_aspect_ratio=0.5,
        max_aspect_ratio=2.0,
        min_area=0.1,
        max_area=1.0,
        overlap_thresh=covered,
        clip_boxes=True,
        random_coef=0.15,
    )
    for covered in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
)


@dataclass(frozen=True)
class SsdRandomCrop(AugmentationOption):
    """``ssd_random_crop``: one of several crop operations, drawn uniformly per image (Liu et al., SSD).

    Args:
        operations: the operations; empty means the OD API's seven defaults
            (:data:`SSD_RANDOM_CROP_DEFAULT_OPERATIONS`).

    Example:
        >>> len(SsdRandomCrop().effective_operations)
        7
    """

    proto_name: ClassVar[str] = "ssd_random_crop"
    operations: tuple[SsdRandomCropOperation, ...] = ()

    @property
    def effective_operations(self) -> tuple[SsdRandomCropOperation, ...]:
        """The operations that run: the configured ones, or the seven defaults when none are configured."""
        return self.operations or SSD_RANDOM_CROP_DEFAULT_OPERATIONS

    def problems(self) -> list[tuple[str, str]]:
        return [(f"operations.{name}", message) for op in self.operations for name, message in op.problems()]


#: Every step this package implements, by its name in ``data_augmentation_options`` (the proto's field name).
AUGMENTATION_OPTIONS: dict[str, type[AugmentationOption]] = {
    option.proto_name: option
    for option in (
        RandomHorizontalFlip,
        RandomVerticalFlip,
        RandomRotation90,
        RandomAdjustBrightness,
        RandomAdjustContrast,
        RandomAdjustHue,
        RandomAdjustSaturation,
        RandomDistortColor,
        RandomRgbToGray,
        RandomJpegQuality,
        RandomImageScale,
        RandomScaleCropAndPadToSquare,
        RandomCropImage,
        RandomPadImage,
        RandomCropPadImage,
        RandomBlackPatches,
        RandomSelfConcatImage,
        SsdRandomCrop,
    )
}

#: The other steps of the proto's ``PreprocessingStep`` oneof: valid in the TF OD API, not implemented here.
UNIMPLEMENTED_PREPROCESSING_STEPS: tuple[str, ...] = (
    "normalize_image",
    "random_pixel_value_scale",
    "random_jitter_boxes",
    "random_crop_to_aspect_ratio",
    "random_resize_method",
    "scale_boxes_to_pixel_coordinates",
    "resize_image",
    "subtract_channel_mean",
    "ssd_random_crop_pad",
    "ssd_random_crop_fixed_aspect_ratio",
    "ssd_random_crop_pad_fixed_aspect_ratio",
    "rgb_to_gray",
    "convert_class_logits_to_softmax",
    "random_absolute_pad_image",
    "autoaugment_image",
    "drop_label_probabilistically",
    "remap_labels",
    "random_downscale_to_target_pixels",
    "random_patch_gaussian",
    "random_square_crop_by_scale",
    "adjust_gamma",
    "custom_augmentation",
)

#: The zoo config's augmentation: horizontal flip, then the seven-operation SSD random crop.
DEFAULT_AUGMENTATION: tuple[AugmentationOption, ...] = (RandomHorizontalFlip(), SsdRandomCrop())


#: ``train_config.optimizer`` choices: the TF OD API's ``momentum_optimizer`` and ``adam_optimizer``.
OPTIMIZERS = ("momentum", "adam")


@dataclass
class TrainSettings:
    """The ``train_config`` block: batch, steps, optimizer with cosine decay and warmup, weight averaging, augmentation.

    Args:
        batch_size: images per step (all replicas together).
        num_steps: training steps; 0 means "until stopped" in the TF OD API, we treat it as ``total_steps``.
        learning_rate_base / warmup_learning_rate / warmup_steps / total_steps / hold_base_rate_steps:
            ``cosine_decay_learning_rate`` of either optimizer (``utils/learning_schedules.py``).
        momentum: ``momentum_optimizer_value`` (used when ``optimizer`` is ``'momentum'``).
        optimizer: ``'momentum'`` (``momentum_optimizer``, SGD with momentum; the zoo's) or ``'adam'``
            (``adam_optimizer``).
        adam_epsilon: ``adam_optimizer.epsilon`` (proto default 1e-8, the TF1 Adam default; Keras' is 1e-7); used
            only when ``optimizer`` is ``'adam'``.
        use_moving_average: ``optimizer.use_moving_average``: keep an exponential moving average of the weights.
            The proto default is true, so an ``optimizer`` block that leaves the field out turns it on; without an
            ``optimizer`` block the zoo's false applies.
        moving_average_decay: ``optimizer.moving_average_decay``, in (0, 1) (proto default 0.9999).
        data_augmentation_options: the augmentation steps in the config's order (each an
            :class:`AugmentationOption`); the zoo's are a horizontal flip then the SSD random crop. A config that
            lists none trains without augmentation.
        fine_tune_checkpoint: checkpoint prefix to start from (TF1 zoo or ours), or None.
        fine_tune_checkpoint_type: ``'detection'`` (whole model) or ``'classification'`` (backbone only).
        max_number_of_boxes: boxes per image the input pipeline pads to.
        use_bfloat16: ``use_bfloat16``: in the float phase of training, the full convolutions compute in
            bfloat16 (float32 accumulation; weights, batch norm, losses and the optimizer stay float32) where
            the device computes bfloat16 natively (:mod:`spaghettinet.model.precision`); elsewhere float32.

    Example:
        >>> train = TrainSettings(data_augmentation_options=(RandomVerticalFlip(probability=0.3),))
        >>> train.random_horizontal_flip, train.optimizer, train.use_moving_average
        (False, 'momentum', False)
    """

    batch_size: int = 512
    num_steps: int = 400_000
    learning_rate_base: float = 0.8
    warmup_learning_rate: float = 0.13333
    warmup_steps: int = 2000
    total_steps: int = 400_000
    hold_base_rate_steps: int = 0
    momentum: float = 0.9
    optimizer: str = "momentum"
    adam_epsilon: float = 1e-8
    use_moving_average: bool = False
    moving_average_decay: float = 0.9999
    data_augmentation_options: tuple[AugmentationOption, ...] = DEFAULT_AUGMENTATION
    fine_tune_checkpoint: str | None = None
    fine_tune_checkpoint_type: str = "detection"
    max_number_of_boxes: int = 100
    use_bfloat16: bool = False

    # Read-only views kept for code written before data_augmentation_options (validate.py, older callers).
    @property
    def random_horizontal_flip(self) -> bool:
        """Whether a ``random_horizontal_flip`` step is configured."""
        return any(isinstance(step, RandomHorizontalFlip) for step in self.data_augmentation_options)

    @property
    def horizontal_flip_probability(self) -> float:
        """The first ``random_horizontal_flip``'s probability (0.5 when there is none)."""
        flips = [s for s in self.data_augmentation_options if isinstance(s, RandomHorizontalFlip)]
        return flips[0].probability if flips else RandomHorizontalFlip().probability

    @property
    def ssd_random_crop(self) -> bool:
        """Whether an ``ssd_random_crop`` step is configured."""
        return any(isinstance(step, SsdRandomCrop) for step in self.data_augmentation_options)

    @property
    def random_crop_coef(self) -> float:
        """``random_coef`` of the first SSD crop operation (0.15, the default operations', when none)."""
        crops = [s for s in self.data_augmentation_options if isinstance(s, SsdRandomCrop)]
        operations = crops[0].effective_operations if crops else SSD_RANDOM_CROP_DEFAULT_OPERATIONS
        return operations[0].random_coef


@dataclass
class InputReaderSettings:
    """A ``train_input_reader`` / ``eval_input_reader`` block.

    Args:
        label_map_path: the label map, as written in the file (see :meth:`PipelineConfig.resolve_path`).
        input_paths: ``tf_record_input_reader.input_path`` entries, as written; globs are allowed.
        shuffle: whether records are shuffled (proto default true; the eval reader sets false).
        num_epochs: passes over the data; 0 means forever (proto default).
    """

    label_map_path: str = ""
    input_paths: list[str] = field(default_factory=list)
    shuffle: bool = True
    num_epochs: int = 0


@dataclass
class EvalSettings:
    """The ``eval_config`` block.

    Args:
        metrics_set: ``'coco_detection_metrics'`` (the only set we compute).
        num_visualizations: images with drawn boxes to save per evaluation (proto default 10).
        eval_interval_steps: evaluate every N training steps (ours; None means only at the end).
        use_moving_averages: evaluate (and export) the moving average of the weights instead of the weights
            (proto default false); needs ``train_config.optimizer.use_moving_average`` to have averages.
    """

    metrics_set: str = "coco_detection_metrics"
    num_visualizations: int = 10
    eval_interval_steps: int | None = None
    use_moving_averages: bool = False


@dataclass
class QuantizationSettings:
    """``graph_rewriter.quantization``: QAT starts after ``delay`` steps; both bit widths must be 8.

    Args:
        delay: training steps in float before the model switches to quantization-aware training.
        weight_bits: always 8.
        activation_bits: always 8.
    """

    delay: int = 500_000
    weight_bits: int = 8
    activation_bits: int = 8


@dataclass
class PipelineConfig:
    """A whole ``pipeline.config``, typed.

    Args:
        model: the ``model.ssd`` settings.
        train: the ``train_config`` settings.
        train_input: the ``train_input_reader``.
        eval_input: the ``eval_input_reader``.
        eval: the ``eval_config``.
        quantization: the ``graph_rewriter.quantization`` block, or None when the file has none (no QAT).
        path: the file it was read from (None when built in memory); relative paths resolve against its folder.
        warnings: fields present in the file that this package does not use (one message each, for the CLI).

    Example:
        >>> cfg = PipelineConfig(path=Path("/data/run/pipeline.config"))
        >>> cfg.resolve_path("train.record")
        PosixPath('/data/run/train.record')
    """

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    train_input: InputReaderSettings = field(default_factory=InputReaderSettings)
    eval_input: InputReaderSettings = field(
        default_factory=lambda: InputReaderSettings(shuffle=False, num_epochs=1)
    )
    eval: EvalSettings = field(default_factory=EvalSettings)
    quantization: QuantizationSettings | None = None
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against: the config file's folder, else the current one."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve_path(self, value: str | Path) -> Path:
        """Return ``value`` as an absolute path, resolving a relative one against :attr:`base_dir`.

        Args:
            value: a path as written in the config (``~`` is expanded).

        Returns:
            The absolute path (globs are left in place for the caller to expand).
        """
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def replace(self, **changes: object) -> PipelineConfig:
        """Return a copy with top-level fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
