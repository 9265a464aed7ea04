"""The TF Object Detection API's proto defaults for the ``pipeline.config`` fields this package reads.

A field absent from a ``pipeline.config`` takes the default its ``.proto`` declares (proto2: the declared
``[default = ...]``, else zero, false or the empty string), as the TF OD API's own reader would. Keys are
``<block>.<field>``, the block named as it is written in the file; the ``.proto`` files are in tensorflow/models
``research/object_detection/protos/``. Where this package deliberately reads an absent field otherwise, the reader
passes its own default and says why there.

These are not the defaults of the settings dataclasses (``settings.py``): those hold the zoo's SpaghettiNet config
(5 anchor layers, batch 512), what a config written from scratch starts from.
"""

from __future__ import annotations

PROTO_DEFAULTS: dict[str, object] = {
    # ssd.proto
    "ssd.normalize_loss_by_num_matches": True,
    # faster_rcnn_box_coder.proto
    "faster_rcnn_box_coder.y_scale": 10.0,
    "faster_rcnn_box_coder.x_scale": 10.0,
    "faster_rcnn_box_coder.height_scale": 5.0,
    "faster_rcnn_box_coder.width_scale": 5.0,
    # argmax_matcher.proto
    "argmax_matcher.matched_threshold": 0.5,
    "argmax_matcher.unmatched_threshold": 0.5,
    "argmax_matcher.force_match_for_each_row": False,
    # ssd_anchor_generator.proto
    "ssd_anchor_generator.num_layers": 6,
    "ssd_anchor_generator.min_scale": 0.2,
    "ssd_anchor_generator.max_scale": 0.95,
    "ssd_anchor_generator.interpolated_scale_aspect_ratio": 1.0,
    "ssd_anchor_generator.reduce_boxes_in_lowest_layer": True,
    # image_resizer.proto
    "fixed_shape_resizer.height": 300,
    "fixed_shape_resizer.width": 300,
    # hyperparams.proto
    "l2_regularizer.weight": 1.0,
    # ssd.proto (SsdFeatureExtractor)
    "feature_extractor.type": "",
    "feature_extractor.spaghettinet_arch_name": "",
    "feature_extractor.use_explicit_padding": False,
    # losses.proto
    "weighted_sigmoid_focal.gamma": 2.0,
    "weighted_smooth_l1.delta": 1.0,
    "loss.classification_weight": 1.0,
    "loss.localization_weight": 1.0,
    # post_processing.proto
    "batch_non_max_suppression.score_threshold": 0.0,
    "batch_non_max_suppression.iou_threshold": 0.6,
    "batch_non_max_suppression.max_detections_per_class": 100,
    "batch_non_max_suppression.max_total_detections": 100,
    "post_processing.score_converter": "IDENTITY",
    # train.proto
    "train_config.batch_size": 32,
    "train_config.max_number_of_boxes": 100,
    "train_config.fine_tune_checkpoint": "",
    "train_config.from_detection_checkpoint": False,
    "train_config.use_bfloat16": False,
    # optimizer.proto
    "optimizer.use_moving_average": True,
    "optimizer.moving_average_decay": 0.9999,
    "momentum_optimizer.momentum_optimizer_value": 0.9,
    "adam_optimizer.epsilon": 1e-8,
    "cosine_decay_learning_rate.learning_rate_base": 0.002,
    "cosine_decay_learning_rate.total_steps": 4_000_000,
    "cosine_decay_learning_rate.warmup_learning_rate": 0.0002,
    "cosine_decay_learning_rate.warmup_steps": 10000,
    "cosine_decay_learning_rate.hold_base_rate_steps": 0,
    # input_reader.proto
    "input_reader.label_map_path": "",
    # eval.proto
    "eval_config.num_visualizations": 10,
    "eval_config.use_moving_averages": False,
    # graph_rewriter.proto
    "quantization.delay": 500000,
    "quantization.weight_bits": 8,
    "quantization.activation_bits": 8,
}
