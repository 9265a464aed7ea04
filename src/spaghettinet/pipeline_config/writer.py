"""Write a :class:`PipelineConfig` as a ``pipeline.config`` in the TF Object Detection API text format.

The layout follows the zoo's SpaghettiNet config (spec §3) field for field, so a written file reads back into the
same settings and looks like what users of the TF OD API know. Our one extension, ``eval_config.eval_interval_steps``,
is written only when set.
"""

from __future__ import annotations

from pathlib import Path

from spaghettinet.io_utils import write_text_atomic

from .reader import (
    SSD_RANDOM_CROP_AREA_RANGE,
    SSD_RANDOM_CROP_ASPECT_RATIO_RANGE,
    SSD_RANDOM_CROP_MIN_OBJECT_COVERED,
)
from .settings import ModelSettings, PipelineConfig, TrainSettings
from .textformat import Field, Message, format_message
from .validate import validate_config

_HEADER = (
    "# SpaghettiNet-EdgeTPU SSD pipeline (TF Object Detection API text format), written by spaghettinet.\n"
    "# Relative paths are resolved against the folder of this file.\n"
)


def _add_hyperparams(parent: Message, l2_weight: float) -> None:
    """The conv_hyperparams block of spec §1.7: ReLU6, L2, random_normal(0, 0.03), batch norm 0.97 / 0.001."""
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


def _train_message(train: TrainSettings) -> Message:
    block = Message()
    block.add_scalar("batch_size", train.batch_size)
    block.add_scalar("num_steps", train.num_steps)
    if train.random_horizontal_flip:
        flip = block.add_message("data_augmentation_options").add_message("random_horizontal_flip")
        if train.horizontal_flip_probability != 0.5:
            flip.add_scalar("probability", train.horizontal_flip_probability)
    if train.ssd_random_crop:
        crop = block.add_message("data_augmentation_options").add_message("ssd_random_crop")
        if train.random_crop_coef != 0.15:
            # The proto has no single coefficient: spell out the seven default operations (spec §3) with ours.
            for covered in SSD_RANDOM_CROP_MIN_OBJECT_COVERED:
                op = crop.add_message("operations")
                op.add_scalar("min_object_covered", covered)
                op.add_scalar("min_aspect_ratio", SSD_RANDOM_CROP_ASPECT_RATIO_RANGE[0])
                op.add_scalar("max_aspect_ratio", SSD_RANDOM_CROP_ASPECT_RATIO_RANGE[1])
                op.add_scalar("min_area", SSD_RANDOM_CROP_AREA_RANGE[0])
                op.add_scalar("max_area", SSD_RANDOM_CROP_AREA_RANGE[1])
                op.add_scalar("overlap_thresh", covered)
                op.add_scalar("clip_boxes", True)
                op.add_scalar("random_coef", train.random_crop_coef)
    optimizer = block.add_message("optimizer")
    momentum = optimizer.add_message("momentum_optimizer")
    cosine = momentum.add_message("learning_rate").add_message("cosine_decay_learning_rate")
    cosine.add_scalar("learning_rate_base", train.learning_rate_base)
    cosine.add_scalar("total_steps", train.total_steps)
    cosine.add_scalar("warmup_learning_rate", train.warmup_learning_rate)
    cosine.add_scalar("warmup_steps", train.warmup_steps)
    if train.hold_base_rate_steps:
        cosine.add_scalar("hold_base_rate_steps", train.hold_base_rate_steps)
    momentum.add_scalar("momentum_optimizer_value", train.momentum)
    optimizer.add_scalar("use_moving_average", False)
    if train.fine_tune_checkpoint:
        block.add_scalar("fine_tune_checkpoint", train.fine_tune_checkpoint)
        block.add_scalar("fine_tune_checkpoint_type", train.fine_tune_checkpoint_type)
    block.add_scalar("max_number_of_boxes", train.max_number_of_boxes)
    block.add_scalar("unpad_groundtruth_tensors", False)
    return block


def format_config(cfg: PipelineConfig) -> str:
    """Return ``cfg`` as ``pipeline.config`` text (validated first).

    Args:
        cfg: the settings.

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
    evaluation.add_scalar("use_moving_averages", False)
    evaluation.add_scalar("num_visualizations", cfg.eval.num_visualizations)
    if cfg.eval.eval_interval_steps is not None:
        evaluation.add_scalar("eval_interval_steps", cfg.eval.eval_interval_steps)
    if cfg.quantization is not None:
        quant = root.add_message("graph_rewriter").add_message("quantization")
        quant.add_scalar("delay", cfg.quantization.delay)
        quant.add_scalar("weight_bits", cfg.quantization.weight_bits)
        quant.add_scalar("activation_bits", cfg.quantization.activation_bits)
    return _HEADER + format_message(root)


def write_config(cfg: PipelineConfig, path: str | Path) -> Path:
    """Write ``cfg`` to ``path`` atomically (temporary name, then rename).

    Args:
        cfg: the settings (validated before anything is written).
        path: the target file; its folder is created if needed.

    Returns:
        The path written.

    Raises:
        DataError: a setting is impossible; nothing is written then.

    Example:
        >>> write_config(PipelineConfig(), "training/pipeline.config")  # doctest: +SKIP
    """
    return write_text_atomic(path, format_config(cfg))
