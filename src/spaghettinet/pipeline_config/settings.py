"""Typed settings read from a ``pipeline.config``: what the model, training, inputs, evaluation and QAT use.

Every default is the value of the zoo's SpaghettiNet config (``spec/spaghettinet.md`` §3, §1.7, §1.8) or, where that
config leaves a field out, the TF Object Detection API's proto default. A field the file does not set keeps its
default, so ``ModelSettings(num_classes=3)`` is the reference model for three classes.

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
            reduce_boxes_in_lowest_layer: the SSD anchor generator (§1.8).
        focal_alpha / focal_gamma: sigmoid focal classification loss.
        smooth_l1_delta: Huber delta of the localization loss.
        classification_weight / localization_weight: loss weights.
        normalize_loss_by_num_matches / normalize_loc_loss_by_codesize: loss normalization.
        score_threshold / iou_threshold / max_detections_per_class / max_total_detections: NMS.
        score_converter: ``'SIGMOID'`` (the only one SpaghettiNet uses).
        l2_extractor / l2_predictor: slim L2 regularizer weights (§3 "regularization").
        use_depthwise / kernel_size / box_code_size: the convolutional box predictor (§1.7).
        add_background_class / encode_background_as_zeros: class target layout (§3).
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


@dataclass
class TrainSettings:
    """The ``train_config`` block: batch, steps, momentum optimizer with cosine decay and warmup, augmentation.

    Args:
        batch_size: images per step (all replicas together).
        num_steps: training steps; 0 means "until stopped" in the TF OD API, we treat it as ``total_steps``.
        learning_rate_base / warmup_learning_rate / warmup_steps / total_steps / hold_base_rate_steps:
            ``cosine_decay_learning_rate`` (§3 "LR formula").
        momentum: ``momentum_optimizer_value``.
        random_horizontal_flip: whether the flip augmentation is on.
        horizontal_flip_probability: its probability (proto default 0.5).
        ssd_random_crop: whether the seven-operation SSD random crop is on.
        random_crop_coef: chance of keeping the original image instead of cropping (§3, 0.15).
        fine_tune_checkpoint: checkpoint prefix to start from (TF1 zoo or ours), or None.
        fine_tune_checkpoint_type: ``'detection'`` (whole model) or ``'classification'`` (backbone only).
        max_number_of_boxes: boxes per image the input pipeline pads to.
    """

    batch_size: int = 512
    num_steps: int = 400_000
    learning_rate_base: float = 0.8
    warmup_learning_rate: float = 0.13333
    warmup_steps: int = 2000
    total_steps: int = 400_000
    hold_base_rate_steps: int = 0
    momentum: float = 0.9
    random_horizontal_flip: bool = True
    horizontal_flip_probability: float = 0.5
    ssd_random_crop: bool = True
    random_crop_coef: float = 0.15
    fine_tune_checkpoint: str | None = None
    fine_tune_checkpoint_type: str = "detection"
    max_number_of_boxes: int = 100


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
        use_moving_averages: kept for round-tripping; we train without moving averages (§3).
    """

    metrics_set: str = "coco_detection_metrics"
    num_visualizations: int = 10
    eval_interval_steps: int | None = None
    use_moving_averages: bool = False


@dataclass
class QuantizationSettings:
    """``graph_rewriter.quantization``: QAT starts after ``delay`` steps; both bit widths must be 8 (§3).

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
