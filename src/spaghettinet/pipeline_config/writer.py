"""Write a :class:`PipelineConfig` as a ``pipeline.config`` in the TF Object Detection API text format.

The layout follows the zoo's SpaghettiNet config
(``configs/tf1/ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``) field for field, so a written file
reads back into the same settings and looks like what users of the TF OD API know. Our one extension,
``eval_config.eval_interval_steps``, is written only when set.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.textformat import Field, Message, format_message

from .settings import OPTIMIZERS, AugmentationOption, ModelSettings, PipelineConfig, TrainSettings
from .validate import validate_config

#: optimizer.proto's moving_average_decay default; written only when averaging is on or the value differs.
DEFAULT_MOVING_AVERAGE_DECAY = 0.9999

_HEADER = (
    "# SpaghettiNet-EdgeTPU SSD pipeline (TF Object Detection API text format), written by spaghettinet.\n"
    "# Relative paths are resolved against the folder of this file.\n"
)


def _add_hyperparams(parent: Message, l2_weight: float) -> None:
    """The zoo config's predictor conv_hyperparams: ReLU6, L2, random_normal(0, 0.03), BN 0.97 / 0.001."""
    hyper = parent.add_message("conv_hyperparams")
    hyper.add_scalar("activation", "RELU_6", enum=True)
    hyper.add_message("regularizer").add_message("l2_regularizer").add_scalar("weight", l2_weight)
    init = hyper.add_message("initializer").add_message("random_normal_initializer")
    init.add_scalar("stddev", 0.03)
    init.add_scalar("mean", 0.0)
    batch_norm = hyper.add_message("batch_norm")
    for name in ("train", "scale", "center"):
        batch_norm.add_scalar(name, True)
    batch_norm.add_scalar("decay", 0.97)
    batch_norm.add_scalar("epsilon", 0.001)


def _model_message(model: ModelSettings) -> Message:
    ssd = Message()
    ssd.add_scalar("inplace_batchnorm_update", True)
    ssd.add_scalar("freeze_batchnorm", False)
    ssd.add_scalar("num_classes", model.num_classes)
    coder = ssd.add_message("box_coder").add_message("faster_rcnn_box_coder")
    for name, value in zip(
        ("y_scale", "x_scale", "height_scale", "width_scale"), model.box_coder_scales, strict=True
    ):
        coder.add_scalar(name, float(value))
    matcher = ssd.add_message("matcher").add_message("argmax_matcher")
    matcher.add_scalar("matched_threshold", model.matched_threshold)
    matcher.add_scalar("unmatched_threshold", model.unmatched_threshold)
    matcher.add_scalar("ignore_thresholds", False)
    matcher.add_scalar("negatives_lower_than_unmatched", True)
    matcher.add_scalar("force_match_for_each_row", model.force_match_for_each_row)
    matcher.add_scalar("use_matmul_gather", True)
    ssd.add_message("similarity_calculator").add_message("iou_similarity")
    ssd.add_scalar("encode_background_as_zeros", model.encode_background_as_zeros)
    anchors = ssd.add_message("anchor_generator").add_message("ssd_anchor_generator")
    anchors.add_scalar("num_layers", model.num_layers)
    anchors.add_scalar("min_scale", model.min_scale)
    anchors.add_scalar("max_scale", model.max_scale)
    for ratio in model.aspect_ratios:
        anchors.add_scalar("aspect_ratios", float(ratio))
    anchors.add_scalar("interpolated_scale_aspect_ratio", model.interpolated_scale_aspect_ratio)
    anchors.add_scalar("reduce_boxes_in_lowest_layer", model.reduce_boxes_in_lowest_layer)
    resizer = ssd.add_message("image_resizer").add_message("fixed_shape_resizer")
    resizer.add_scalar("height", model.input_size[0])
    resizer.add_scalar("width", model.input_size[1])
    predictor = ssd.add_message("box_predictor").add_message("convolutional_box_predictor")
    predictor.add_scalar("min_depth", 0)
    predictor.add_scalar("max_depth", 0)
    predictor.add_scalar("num_layers_before_predictor", 0)
    predictor.add_scalar("use_dropout", False)
    predictor.add_scalar("kernel_size", model.kernel_size)
    predictor.add_scalar("use_depthwise", model.use_depthwise)
    predictor.add_scalar("box_code_size", model.box_code_size)
    predictor.add_scalar("apply_sigmoid_to_scores", False)
    _add_hyperparams(predictor, model.l2_predictor)
    extractor = ssd.add_message("feature_extractor")
    extractor.add_scalar("type", "ssd_spaghettinet")
    extractor.add_scalar("spaghettinet_arch_name", model.arch_name)
    extractor.add_scalar("use_explicit_padding", model.use_explicit_padding)
    _add_hyperparams(extractor, model.l2_extractor)
    loss = ssd.add_message("loss")
    focal = loss.add_message("classification_loss").add_message("weighted_sigmoid_focal")
    focal.add_scalar("alpha", model.focal_alpha)
    focal.add_scalar("gamma", model.focal_gamma)
    loss.add_message("localization_loss").add_message("weighted_smooth_l1").add_scalar(
        "delta", model.smooth_l1_delta
    )
    loss.add_scalar("classification_weight", model.classification_weight)
    loss.add_scalar("localization_weight", model.localization_weight)
    ssd.add_scalar("normalize_loss_by_num_matches", model.normalize_loss_by_num_matches)
    ssd.add_scalar("normalize_loc_loss_by_codesize", model.normalize_loc_loss_by_codesize)
    post = ssd.add_message("post_processing")
    nms = post.add_message("batch_non_max_suppression")
    nms.add_scalar("score_threshold", model.score_threshold)
    nms.add_scalar("iou_threshold", model.iou_threshold)
    nms.add_scalar("max_detections_per_class", model.max_detections_per_class)
    nms.add_scalar("max_total_detections", model.max_total_detections)
    nms.add_scalar("use_static_shapes", True)
    post.add_scalar("score_converter", model.score_converter, enum=True)
    return ssd


def _add_option(parent: Message, name: str, option: object) -> None:
    """Write one augmentation step (or SSD crop operation) as a block holding the fields that differ from the
    proto default, so that ``random_horizontal_flip { }`` stays as short as the zoo writes it."""
    block = parent.add_message(name)
    for spec in dataclasses.fields(option):  # type: ignore[arg-type]
        value = getattr(option, spec.name)
        if spec.name == "operations":
            # The proto gives an operation's fields no defaults: write each operation out in full.
            for operation in value:
                written = block.add_message("operations")
                for op_spec in dataclasses.fields(operation):
                    written.add_scalar(op_spec.name, getattr(operation, op_spec.name))
        elif isinstance(value, tuple):
            for item in value:
                block.add_scalar(spec.name, item)
        elif value is not None and value != spec.default:
            block.add_scalar(spec.name, value)


def _train_message(train: TrainSettings) -> Message:
    block = Message()
    block.add_scalar("batch_size", train.batch_size)
    block.add_scalar("num_steps", train.num_steps)
    for option in train.data_augmentation_options:
        _add_option(block.add_message("data_augmentation_options"), option.proto_name, option)
    optimizer = block.add_message("optimizer")
    if train.optimizer == "adam":
        chosen = optimizer.add_message("adam_optimizer")
    else:
        chosen = optimizer.add_message("momentum_optimizer")
    cosine = chosen.add_message("learning_rate").add_message("cosine_decay_learning_rate")
    cosine.add_scalar("learning_rate_base", train.learning_rate_base)
    cosine.add_scalar("total_steps", train.total_steps)
    cosine.add_scalar("warmup_learning_rate", train.warmup_learning_rate)
    cosine.add_scalar("warmup_steps", train.warmup_steps)
    if train.hold_base_rate_steps:
        cosine.add_scalar("hold_base_rate_steps", train.hold_base_rate_steps)
    if train.optimizer == "adam":
        chosen.add_scalar("epsilon", train.adam_epsilon)
    else:
        chosen.add_scalar("momentum_optimizer_value", train.momentum)
    # Always written: the proto's default for use_moving_average is true, ours (the zoo's) false.
    optimizer.add_scalar("use_moving_average", train.use_moving_average)
    if train.use_moving_average or train.moving_average_decay != DEFAULT_MOVING_AVERAGE_DECAY:
        optimizer.add_scalar("moving_average_decay", train.moving_average_decay)
    if train.fine_tune_checkpoint:
        block.add_scalar("fine_tune_checkpoint", train.fine_tune_checkpoint)
        block.add_scalar("fine_tune_checkpoint_type", train.fine_tune_checkpoint_type)
    block.add_scalar("max_number_of_boxes", train.max_number_of_boxes)
    block.add_scalar("unpad_groundtruth_tensors", False)
    if train.use_bfloat16:
        block.add_scalar("use_bfloat16", True)
    return block


def _validate_train_extras(train: TrainSettings, source: str) -> None:
    """The checks of the fields validate.py does not know: optimizer choice, weight averaging, augmentation steps."""
    prefix = f"{source}: " if source else ""
    p = "train_config."
    if train.optimizer not in OPTIMIZERS:
        raise DataError(
            f"{prefix}{p}optimizer must be one of {', '.join(OPTIMIZERS)}, got {train.optimizer!r}"
        )
    if not 0.0 < train.moving_average_decay < 1.0:
        raise DataError(
            f"{prefix}{p}optimizer.moving_average_decay must be in (0, 1), got {train.moving_average_decay}"
        )
    if train.optimizer == "adam" and not train.adam_epsilon > 0:
        raise DataError(f"{prefix}{p}optimizer.adam_optimizer.epsilon must be > 0, got {train.adam_epsilon}")
    for option in train.data_augmentation_options:
        if not isinstance(option, AugmentationOption):
            raise DataError(
                f"{prefix}{p}data_augmentation_options holds {option!r}, not an augmentation option of "
                "pipeline_config.settings"
            )
        for name, problem in option.problems():
            raise DataError(f"{prefix}{p}data_augmentation_options.{option.proto_name}.{name} {problem}")


def _comment_block(notes: list[str] | tuple[str, ...], width: int = 110) -> str:
    """``notes`` as ``#`` comment lines, each note wrapped at ``width`` (its continuation lines indented)."""
    lines = []
    for note in notes:
        for line in str(note).splitlines() or [""]:
            wrapped = textwrap.wrap(line, width - 2, subsequent_indent="  ", break_on_hyphens=False) or [""]
            lines.extend(f"# {part}".rstrip() for part in wrapped)
    return "\n".join(lines) + "\n" if lines else ""


def format_config(cfg: PipelineConfig, notes: list[str] | tuple[str, ...] = ()) -> str:
    """Return ``cfg`` as ``pipeline.config`` text (validated first).

    Args:
        cfg: the settings.
        notes: lines written as a comment block under the header (``config`` says there why it chose each
            training setting); the reader skips comments, so they never change the settings.

    Returns:
        The text; :func:`~spaghettinet.pipeline_config.reader.parse_config_text` reads it back to equal settings.

    Raises:
        DataError: a setting is impossible (the same checks as reading).

    Example:
        >>> from spaghettinet.pipeline_config.settings import ModelSettings
        >>> text = format_config(PipelineConfig(model=ModelSettings(num_classes=4, variant="s")))
        >>> "spaghettinet_arch_name: \\"spaghettinet_edgetpu_s\\"" in text
        True
    """
    validate_config(cfg, source=str(cfg.path) if cfg.path else "")
    _validate_train_extras(cfg.train, str(cfg.path) if cfg.path else "")
    root = Message()
    root.add_message("model").fields.append(Field("ssd", _model_message(cfg.model)))
    root.fields.append(Field("train_config", _train_message(cfg.train)))
    for name, reader in (("train_input_reader", cfg.train_input), ("eval_input_reader", cfg.eval_input)):
        block = root.add_message(name)
        block.add_scalar("label_map_path", reader.label_map_path)
        block.add_scalar("shuffle", reader.shuffle)
        block.add_scalar("num_epochs", reader.num_epochs)
        records = block.add_message("tf_record_input_reader")
        for pattern in reader.input_paths:
            records.add_scalar("input_path", pattern)
    evaluation = root.add_message("eval_config")
    evaluation.add_scalar("metrics_set", cfg.eval.metrics_set)
    evaluation.add_scalar("use_moving_averages", cfg.eval.use_moving_averages)
    evaluation.add_scalar("num_visualizations", cfg.eval.num_visualizations)
    if cfg.eval.eval_interval_steps is not None:
        evaluation.add_scalar("eval_interval_steps", cfg.eval.eval_interval_steps)
    if cfg.quantization is not None:
        quant = root.add_message("graph_rewriter").add_message("quantization")
        quant.add_scalar("delay", cfg.quantization.delay)
        quant.add_scalar("weight_bits", cfg.quantization.weight_bits)
        quant.add_scalar("activation_bits", cfg.quantization.activation_bits)
    return _HEADER + _comment_block(notes) + format_message(root)


def write_config(cfg: PipelineConfig, path: str | Path, notes: list[str] | tuple[str, ...] = ()) -> Path:
    """Write ``cfg`` to ``path`` atomically (temporary name, then rename).

    Args:
        cfg: the settings (validated before anything is written).
        path: the target file; its folder is created if needed.
        notes: comment lines under the header (see :func:`format_config`).

    Returns:
        The path written.

    Raises:
        DataError: a setting is impossible; nothing is written then.

    Example:
        >>> write_config(PipelineConfig(), "training/pipeline.config")  # doctest: +SKIP
    """
    return write_text_atomic(path, format_config(cfg, notes))
