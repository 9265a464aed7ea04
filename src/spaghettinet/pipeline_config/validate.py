"""Value checks for a :class:`PipelineConfig`: the errors a user gets for an impossible setting.

One place for the rules, used by the reader (with the line each value came from) and by the writer (so we never
write a config we would refuse to read).
"""

from __future__ import annotations

from collections.abc import Mapping

from spaghettinet.errors import DataError

from .settings import VARIANTS, PipelineConfig, arch_name_for_variant

# The TF OD API's builders/graph_rewriter_builder.py raises unless both are 8.
QUANTIZATION_BITS = 8
FINE_TUNE_CHECKPOINT_TYPES = ("detection", "classification", "full")
# Five SSD feature maps come out of every SpaghettiNet variant, one anchor layer each.
SPAGHETTINET_NUM_LAYERS = 5
# Below this the last feature map would be smaller than 1x1 after the stride-64+ levels.
MIN_INPUT_SIZE = 32
# Above this a model cannot be trained or shipped: 4096² is 164x the pixels of the reference 320², so one image's
# activations in training take gigabytes and an Edge TPU model's would not fit the chip's few MB of memory.
MAX_INPUT_SIZE = 4096


def validate_config(
    cfg: PipelineConfig, locations: Mapping[str, str] | None = None, source: str = ""
) -> None:
    """Raise :class:`DataError` naming the field when a setting is impossible.

    Args:
        cfg: the settings to check.
        locations: field path (``'model.ssd.num_classes'``) to ``'file:line:column'``, for messages that point at
            the line; fields not in it are reported with ``source``.
        source: the file name used when a field has no recorded location.

    Raises:
        DataError: ``"<file>:<line>:<col>: model.ssd.num_classes must be at least 1, got 0"`` and the like.

    Example:
        >>> from .settings import ModelSettings
        >>> validate_config(PipelineConfig(model=ModelSettings(num_classes=3)))
    """
    locations = locations or {}

    def fail(path: str, message: str) -> None:
        where = locations.get(path) or source
        prefix = f"{where}: " if where else ""
        raise DataError(f"{prefix}{path} {message}")

    model, train, quant = cfg.model, cfg.train, cfg.quantization
    ssd = "model.ssd."
    if model.num_classes < 1:
        fail(ssd + "num_classes", f"must be at least 1, got {model.num_classes}")
    if model.variant not in VARIANTS:
        known = ", ".join(repr(arch_name_for_variant(v)) for v in VARIANTS)
        fail(
            ssd + "feature_extractor.spaghettinet_arch_name",
            f"must be one of {known}, got {model.arch_name!r}",
        )
    height, width = model.input_size
    for name, value in (("height", height), ("width", width)):
        if not MIN_INPUT_SIZE <= value <= MAX_INPUT_SIZE:
            fail(
                f"{ssd}image_resizer.fixed_shape_resizer.{name}",
                f"must be in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}] pixels, got {value}",
            )
    matcher = ssd + "matcher.argmax_matcher."
    nms = ssd + "post_processing.batch_non_max_suppression."
    for path, value in (
        (matcher + "matched_threshold", model.matched_threshold),
        (matcher + "unmatched_threshold", model.unmatched_threshold),
        (nms + "iou_threshold", model.iou_threshold),
    ):
        if not 0.0 < value <= 1.0:
            fail(path, f"must be in (0, 1], got {value}")
    if model.unmatched_threshold > model.matched_threshold:
        fail(
            matcher + "unmatched_threshold", f"must not exceed matched_threshold ({model.matched_threshold})"
        )
    if not 0.0 <= model.score_threshold <= 1.0:
        fail(nms + "score_threshold", f"must be in [0, 1], got {model.score_threshold}")
    for path, value in (
        (nms + "max_detections_per_class", model.max_detections_per_class),
        (nms + "max_total_detections", model.max_total_detections),
    ):
        if value < 1:
            fail(path, f"must be at least 1, got {value}")
    anchors = ssd + "anchor_generator.ssd_anchor_generator."
    if model.num_layers != SPAGHETTINET_NUM_LAYERS:
        fail(
            anchors + "num_layers",
            f"must be {SPAGHETTINET_NUM_LAYERS} (SpaghettiNet has five SSD feature maps)",
        )
    if not 0.0 < model.min_scale <= model.max_scale:
        fail(
            anchors + "min_scale",
            f"must be > 0 and at most max_scale ({model.max_scale}), got {model.min_scale}",
        )
    if not model.aspect_ratios or any(ratio <= 0 for ratio in model.aspect_ratios):
        fail(anchors + "aspect_ratios", f"must be positive numbers, got {list(model.aspect_ratios)}")
    if any(scale <= 0 for scale in model.box_coder_scales):
        fail(
            ssd + "box_coder.faster_rcnn_box_coder", f"scales must be positive, got {model.box_coder_scales}"
        )
    loss = ssd + "loss."
    if not 0.0 <= model.focal_alpha <= 1.0:
        fail(
            loss + "classification_loss.weighted_sigmoid_focal.alpha",
            f"must be in [0, 1], got {model.focal_alpha}",
        )
    if model.focal_gamma < 0:
        fail(
            loss + "classification_loss.weighted_sigmoid_focal.gamma",
            f"must be >= 0, got {model.focal_gamma}",
        )
    if model.smooth_l1_delta <= 0:
        fail(loss + "localization_loss.weighted_smooth_l1.delta", f"must be > 0, got {model.smooth_l1_delta}")

    if train.batch_size < 1:
        fail("train_config.batch_size", f"must be at least 1, got {train.batch_size}")
    if train.num_steps < 1:
        fail("train_config.num_steps", f"must be at least 1, got {train.num_steps}")
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate."
    if train.learning_rate_base <= 0:
        fail(cosine + "learning_rate_base", f"must be > 0, got {train.learning_rate_base}")
    if train.warmup_learning_rate < 0 or train.warmup_learning_rate > train.learning_rate_base:
        fail(
            cosine + "warmup_learning_rate",
            f"must be in [0, learning_rate_base = {train.learning_rate_base}], got {train.warmup_learning_rate}",
        )
    if train.total_steps < 1:
        fail(cosine + "total_steps", f"must be at least 1, got {train.total_steps}")
    if not 0 <= train.warmup_steps <= train.total_steps:
        fail(
            cosine + "warmup_steps",
            f"must be in [0, total_steps = {train.total_steps}], got {train.warmup_steps}",
        )
    if not 0.0 <= train.momentum < 1.0:
        fail(
            "train_config.optimizer.momentum_optimizer.momentum_optimizer_value",
            f"must be in [0, 1), got {train.momentum}",
        )
    if not 0.0 <= train.random_crop_coef <= 1.0:
        fail(
            "train_config.data_augmentation_options.ssd_random_crop",
            f"random_coef must be in [0, 1], got {train.random_crop_coef}",
        )
    if not 0.0 <= train.horizontal_flip_probability <= 1.0:
        fail(
            "train_config.data_augmentation_options.random_horizontal_flip.probability",
            f"must be in [0, 1], got {train.horizontal_flip_probability}",
        )
    if train.fine_tune_checkpoint_type not in FINE_TUNE_CHECKPOINT_TYPES:
        fail(
            "train_config.fine_tune_checkpoint_type",
            f"must be one of {', '.join(FINE_TUNE_CHECKPOINT_TYPES)}, got {train.fine_tune_checkpoint_type!r}",
        )
    if train.max_number_of_boxes < 1:
        fail("train_config.max_number_of_boxes", f"must be at least 1, got {train.max_number_of_boxes}")

    for reader_name, reader in (
        ("train_input_reader", cfg.train_input),
        ("eval_input_reader", cfg.eval_input),
    ):
        if reader.num_epochs < 0:
            fail(f"{reader_name}.num_epochs", f"must be >= 0 (0 = forever), got {reader.num_epochs}")
    if cfg.eval.eval_interval_steps is not None and cfg.eval.eval_interval_steps < 1:
        fail("eval_config.eval_interval_steps", f"must be at least 1, got {cfg.eval.eval_interval_steps}")

    if quant is not None:
        rewriter = "graph_rewriter.quantization."
        for name, value in (("weight_bits", quant.weight_bits), ("activation_bits", quant.activation_bits)):
            if value != QUANTIZATION_BITS:
                fail(
                    rewriter + name,
                    f"must be {QUANTIZATION_BITS} (only 8-bit quantization is supported), got {value}",
                )
        if quant.delay < 0:
            fail(rewriter + "delay", f"must be >= 0, got {quant.delay}")
