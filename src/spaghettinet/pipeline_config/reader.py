"""Read a ``pipeline.config`` (TF OD API text format) into a typed :class:`PipelineConfig`.

The reader walks the parsed tree and consumes the fields SpaghettiNet uses. What it does not use is not an error:
it is listed in ``PipelineConfig.warnings`` (with its line) so the CLI can name all of it in one warning. Fields
whose value we implement only one way (``activation: RELU_6``, ``use_depthwise: true``) are accepted silently when
they hold that value and listed as ignored otherwise. Blocks that would change what the model *is* (another feature
extractor, resizer, loss, optimizer or score converter) are refused with a :class:`DataError` naming the field and
its line, and so are impossible values (see :mod:`.validate`).

Relative paths in the file are kept as written; :meth:`PipelineConfig.resolve_path` resolves them against the
config file's folder (the TF OD API used the current directory).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from spaghettinet.errors import DataError

from .settings import (
    ARCH_NAME_PREFIX,
    AUGMENTATION_OPTIONS,
    UNIMPLEMENTED_PREPROCESSING_STEPS,
    VARIANTS,
    AugmentationOption,
    EvalSettings,
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    SsdRandomCropOperation,
    TrainSettings,
    arch_name_for_variant,
)
from .textformat import Field, Message, Scalar, parse_text
from .validate import validate_config

T = TypeVar("T")

SPAGHETTINET_FEATURE_EXTRACTOR = "ssd_spaghettinet"

_TRUE = ("true", "True", "t", "1")
# Every integer field of the TF OD API's protos is an int32 or a uint32.
INT32_MIN = -(2**31)
UINT32_MAX = 2**32 - 1
_FALSE = ("false", "False", "f", "0")


def _mark_used(entry: Field) -> None:
    entry.used = True
    if isinstance(entry.value, Message):
        for child in entry.value.fields:
            _mark_used(child)


class _TreeReader:
    """Consumes fields of a parsed tree, converting values and recording where each came from."""

    def __init__(self, source: str):
        self.source = source
        self.locations: dict[str, str] = {}
        self.ignored: list[str] = []

    def where(self, item: Field | Scalar | Message) -> str:
        return f"{self.source}:{item.line}:{item.column}"

    def fail(self, item: Field | Scalar | Message, path: str, message: str) -> DataError:
        return DataError(f"{self.where(item)}: {path} {message}")

    def message(self, parent: Message | None, name: str, path: str) -> Message | None:
        """The nested message ``name`` (marked used), None when absent; a scalar there is an error."""
        if parent is None:
            return None
        entry = parent.first(name)
        if entry is None:
            return None
        for same in parent.all(name):
            same.used = True
        if not isinstance(entry.value, Message):
            raise self.fail(entry, path, "must be a message block ({ ... }), not a single value")
        self.locations[path] = self.where(entry)
        return entry.value

    def oneof(
        self, parent: Message | None, path: str, allowed: tuple[str, ...]
    ) -> tuple[str, Message] | None:
        """The single sub-message of a ``oneof`` block; a choice outside ``allowed`` is an error naming the field."""
        if parent is None:
            return None
        for entry in parent.fields:
            if isinstance(entry.value, Message):
                if entry.name not in allowed:
                    raise self.fail(
                        entry, f"{path}.{entry.name}", f"is not supported here; use {' or '.join(allowed)}"
                    )
                entry.used = True
                self.locations[f"{path}.{entry.name}"] = self.where(entry)
                return entry.name, entry.value
        return None

    def _scalars(self, parent: Message | None, name: str, path: str) -> list[Scalar]:
        if parent is None:
            return []
        values = []
        for entry in parent.all(name):
            entry.used = True
            if not isinstance(entry.value, Scalar):
                raise self.fail(entry, path, "must be a single value, not a message block")
            self.locations[path] = self.where(entry.value)
            values.append(entry.value)
        return values

    def value(
        self, parent: Message | None, name: str, path: str, convert: Callable[[Scalar, str], T], default: T
    ) -> T:
        """The last value of scalar field ``name`` converted with ``convert``, or ``default`` when absent."""
        values = self._scalars(parent, name, path)
        return convert(values[-1], path) if values else default

    def values(
        self, parent: Message | None, name: str, path: str, convert: Callable[[Scalar, str], T]
    ) -> list[T]:
        """All values of the repeated scalar field ``name``."""
        return [convert(item, path) for item in self._scalars(parent, name, path)]

    def fixed(
        self, parent: Message | None, name: str, path: str, convert: Callable[[Scalar, str], T], expected: T
    ) -> None:
        """Consume a field implemented one way only; a different value is listed as ignored, not applied."""
        values = self._scalars(parent, name, path)
        if values:
            got = convert(values[-1], path)
            if got != expected:
                self.ignored.append(
                    f"{path} = {got} (line {values[-1].line}): only {expected} is implemented, value ignored"
                )

    def accept(self, parent: Message | None, *names: str) -> None:
        """Mark fields as used without reading them (they have no effect here, as in the reference)."""
        if parent is None:
            return
        for entry in parent.fields:
            if entry.name in names:
                _mark_used(entry)

    # Converters: each gets the scalar and the field path for its error message.
    def to_int(self, item: Scalar, path: str) -> int:
        """A whole number that fits the 32 bits every integer field of the OD API's protos has (int32 or uint32):
        protobuf's own parser refuses a larger one, and a step count of 1e30 cannot work."""
        text = item.text.rstrip("uUlL")
        try:
            if item.kind == "number" and text.lower().lstrip("+-").startswith("0x"):
                value = int(text, 16)
            elif item.kind == "number" and "." not in text and "e" not in text.lower():
                value = int(text)
            else:
                as_float = float(text)
                if not (item.kind == "number" and math.isfinite(as_float) and as_float == int(as_float)):
                    raise ValueError(text)
                value = int(as_float)
        except ValueError:
            raise self.fail(item, path, f"expects a whole number, got {item.text!r}") from None
        if not INT32_MIN <= value <= UINT32_MAX:
            raise self.fail(
                item,
                path,
                f"is out of range: {item.text} does not fit the 32-bit field the TF OD API reads it into",
            )
        return value

    def to_float(self, item: Scalar, path: str) -> float:
        """A finite number: ``inf``, ``-inf``, ``+infinity`` and ``nan`` are read alike, then refused (no setting
        of a pipeline.config works with them: a learning rate of nan trains nothing)."""
        text = item.text
        word = text.lower().lstrip("+-")
        is_hex = word.startswith("0x")
        # The float suffix of protobuf's text format ("1.5f"), but not the f of "inf".
        if item.kind == "number" and text[-1:] in "fF" and not is_hex and word not in ("inf", "infinity"):
            text = text[:-1]
        value = None
        try:
            if item.kind == "number" and is_hex:
                value = float(int(text, 16))
            elif item.kind in ("number", "identifier") and word in ("inf", "infinity", "nan"):
                value = float(text)
            elif item.kind == "number":
                value = float(text)
        except ValueError:
            pass
        if value is None:
            raise self.fail(item, path, f"expects a number, got {item.text!r}")
        if not math.isfinite(value):
            raise self.fail(item, path, f"must be a finite number, got {item.text}")
        return value

    def to_bool(self, item: Scalar, path: str) -> bool:
        if item.kind != "string" and item.text in _TRUE:
            return True
        if item.kind != "string" and item.text in _FALSE:
            return False
        raise self.fail(item, path, f"expects true or false, got {item.text!r}")

    def to_str(self, item: Scalar, path: str) -> str:
        if item.kind != "string":
            raise self.fail(item, path, f"expects a quoted string, got {item.text}")
        return item.text

    def to_enum(self, item: Scalar, path: str) -> str:
        if item.kind != "identifier" or item.text[0] in "+-":
            raise self.fail(item, path, f"expects a name such as SIGMOID (no quotes), got {item.text!r}")
        return item.text

    def unused(self, message: Message, prefix: str = "") -> list[str]:
        """Every field nobody consumed, as ``'path (line N)'``; consumed messages are searched inside."""
        found = []
        for entry in message.fields:
            path = f"{prefix}{entry.name}"
            if not entry.used:
                found.append(f"{path} (line {entry.line})")
            elif isinstance(entry.value, Message):
                found.extend(self.unused(entry.value, path + "."))
        return found


def parse_config_text(text: str, source: str = "pipeline.config", path: Path | None = None) -> PipelineConfig:
    """Parse ``pipeline.config`` text into settings.

    Args:
        text: the file contents (protobuf text format, TF OD API ``TrainEvalPipelineConfig``).
        source: the name shown in error messages (``"<source>:<line>:<col>: ..."``).
        path: the file it came from; stored as ``cfg.path`` so relative paths resolve against its folder.

    Returns:
        The settings, with ``warnings`` listing fields that were present but not used.

    Raises:
        DataError: on a syntax error (with line and column), an unsupported model / resizer / loss / optimizer,
            or an impossible value (naming the field and its line).

    Example:
        >>> cfg = parse_config_text(
        ...     "model { ssd { num_classes: 3 feature_extractor { type: 'ssd_spaghettinet' "
        ...     "spaghettinet_arch_name: 'spaghettinet_edgetpu_s' } } }"
        ... )
        >>> cfg.model.num_classes, cfg.model.variant, cfg.quantization
        (3, 's', None)
    """
    tree = parse_text(text, source)
    reader = _TreeReader(source)
    model = _read_model(reader, tree)
    train = _read_train(reader, reader.message(tree, "train_config", "train_config"))
    train_input = _read_input(reader, tree, "train_input_reader", InputReaderSettings())
    eval_input = _read_input(
        reader, tree, "eval_input_reader", InputReaderSettings(shuffle=False, num_epochs=1)
    )
    evaluation = _read_eval(reader, reader.message(tree, "eval_config", "eval_config"))
    quantization = _read_quantization(reader, reader.message(tree, "graph_rewriter", "graph_rewriter"))
    cfg = PipelineConfig(
        model=model,
        train=train,
        train_input=train_input,
        eval_input=eval_input,
        eval=evaluation,
        quantization=quantization,
        path=path,
        warnings=reader.unused(tree) + reader.ignored,
    )
    validate_config(cfg, reader.locations, source)
    return cfg


def read_config(path: str | Path) -> PipelineConfig:
    """Read a ``pipeline.config`` file.

    Args:
        path: the file.

    Returns:
        The settings; ``cfg.path`` is the absolute path of the file, and relative paths inside it resolve
        against its folder (``cfg.resolve_path``).

    Raises:
        DataError: the file is missing, unreadable, not UTF-8, or invalid (message names file, line and field).

    Example:
        >>> cfg = read_config("training/pipeline.config")  # doctest: +SKIP
        >>> cfg.resolve_path(cfg.train_input.input_paths[0])  # doctest: +SKIP
        PosixPath('/home/me/training/train.record')
    """
    file = Path(path)
    if not file.exists():
        raise DataError("config file not found (write one with `spaghettinet config ... --out FILE`)", file)
    if file.is_dir():
        raise DataError("is a folder; expected a pipeline.config file", file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not a text file (not UTF-8 at byte {exc.start}); expected a pipeline.config", file
        ) from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror}", file) from None
    return parse_config_text(text, source=str(file), path=file.resolve())


def _read_model(reader: _TreeReader, tree: Message) -> ModelSettings:
    model_block = reader.message(tree, "model", "model")
    if model_block is None:
        raise DataError(
            f"{reader.source}: no 'model {{ ssd {{ ... }} }}' block; this is not a detection pipeline.config"
        )
    choice = reader.oneof(model_block, "model", ("ssd",))
    if choice is None:
        raise DataError(
            f"{reader.where(model_block)}: model has no 'ssd {{ ... }}' block (SpaghettiNet is an SSD)"
        )
    ssd = choice[1]
    p = "model.ssd."
    num_classes_values = reader.values(ssd, "num_classes", p + "num_classes", reader.to_int)
    if not num_classes_values:
        raise DataError(
            f"{reader.where(ssd)}: model.ssd.num_classes is missing (the number of classes in the label map)"
        )
    settings = ModelSettings(num_classes=num_classes_values[-1])
    reader.accept(ssd, "inplace_batchnorm_update")
    reader.fixed(ssd, "freeze_batchnorm", p + "freeze_batchnorm", reader.to_bool, False)
    settings.encode_background_as_zeros = reader.value(
        ssd, "encode_background_as_zeros", p + "encode_background_as_zeros", reader.to_bool, True
    )
    reader.fixed(ssd, "add_background_class", p + "add_background_class", reader.to_bool, True)
    settings.normalize_loss_by_num_matches = reader.value(
        ssd, "normalize_loss_by_num_matches", p + "normalize_loss_by_num_matches", reader.to_bool, True
    )
    settings.normalize_loc_loss_by_codesize = reader.value(
        ssd, "normalize_loc_loss_by_codesize", p + "normalize_loc_loss_by_codesize", reader.to_bool, True
    )

    _read_feature_extractor(
        reader, reader.message(ssd, "feature_extractor", p + "feature_extractor"), ssd, settings
    )
    _read_resizer(reader, reader.message(ssd, "image_resizer", p + "image_resizer"), settings)

    coder = reader.oneof(
        reader.message(ssd, "box_coder", p + "box_coder"), p + "box_coder", ("faster_rcnn_box_coder",)
    )
    if coder is not None:
        q = p + "box_coder.faster_rcnn_box_coder."
        defaults = settings.box_coder_scales
        settings.box_coder_scales = tuple(  # type: ignore[assignment]
            reader.value(coder[1], name, q + name, reader.to_float, default)
            for name, default in zip(
                ("y_scale", "x_scale", "height_scale", "width_scale"), defaults, strict=True
            )
        )

    matcher = reader.oneof(reader.message(ssd, "matcher", p + "matcher"), p + "matcher", ("argmax_matcher",))
    if matcher is not None:
        q = p + "matcher.argmax_matcher."
        block = matcher[1]
        settings.matched_threshold = reader.value(
            block, "matched_threshold", q + "matched_threshold", reader.to_float, 0.5
        )
        settings.unmatched_threshold = reader.value(
            block, "unmatched_threshold", q + "unmatched_threshold", reader.to_float, 0.5
        )
        settings.force_match_for_each_row = reader.value(
            block, "force_match_for_each_row", q + "force_match_for_each_row", reader.to_bool, False
        )
        reader.fixed(block, "ignore_thresholds", q + "ignore_thresholds", reader.to_bool, False)
        reader.fixed(
            block,
            "negatives_lower_than_unmatched",
            q + "negatives_lower_than_unmatched",
            reader.to_bool,
            True,
        )
        # How the gather is computed changes nothing in the result.
        reader.accept(block, "use_matmul_gather")

    reader.oneof(
        reader.message(ssd, "similarity_calculator", p + "similarity_calculator"),
        p + "similarity_calculator",
        ("iou_similarity",),
    )

    anchors = reader.oneof(
        reader.message(ssd, "anchor_generator", p + "anchor_generator"),
        p + "anchor_generator",
        ("ssd_anchor_generator",),
    )
    if anchors is not None:
        q = p + "anchor_generator.ssd_anchor_generator."
        block = anchors[1]
        settings.num_layers = reader.value(block, "num_layers", q + "num_layers", reader.to_int, 6)
        settings.min_scale = reader.value(block, "min_scale", q + "min_scale", reader.to_float, 0.2)
        settings.max_scale = reader.value(block, "max_scale", q + "max_scale", reader.to_float, 0.95)
        ratios = reader.values(block, "aspect_ratios", q + "aspect_ratios", reader.to_float)
        if ratios:
            settings.aspect_ratios = tuple(ratios)
        settings.interpolated_scale_aspect_ratio = reader.value(
            block,
            "interpolated_scale_aspect_ratio",
            q + "interpolated_scale_aspect_ratio",
            reader.to_float,
            1.0,
        )
        settings.reduce_boxes_in_lowest_layer = reader.value(
            block, "reduce_boxes_in_lowest_layer", q + "reduce_boxes_in_lowest_layer", reader.to_bool, True
        )
        reader.fixed(block, "base_anchor_height", q + "base_anchor_height", reader.to_float, 1.0)
        reader.fixed(block, "base_anchor_width", q + "base_anchor_width", reader.to_float, 1.0)

    _read_box_predictor(reader, reader.message(ssd, "box_predictor", p + "box_predictor"), settings)
    _read_loss(reader, reader.message(ssd, "loss", p + "loss"), settings)
    _read_post_processing(reader, reader.message(ssd, "post_processing", p + "post_processing"), settings)
    return settings


def _read_hyperparams(reader: _TreeReader, block: Message | None, path: str, default_l2: float) -> float:
    """Read a ``conv_hyperparams`` block; return its L2 weight. Other values are the reference's (spec §1.7)."""
    if block is None:
        return default_l2
    p = path + "."
    reader.fixed(block, "activation", p + "activation", reader.to_enum, "RELU_6")
    l2 = default_l2
    regularizer = reader.oneof(
        reader.message(block, "regularizer", p + "regularizer"), p + "regularizer", ("l2_regularizer",)
    )
    if regularizer is not None:
        l2 = reader.value(
            regularizer[1], "weight", p + "regularizer.l2_regularizer.weight", reader.to_float, 1.0
        )
    # The initializer only matters for training from scratch; ours is the reference's random_normal(0, 0.03).
    reader.accept(block, "initializer")
    batch_norm = reader.message(block, "batch_norm", p + "batch_norm")
    q = p + "batch_norm."
    reader.fixed(batch_norm, "decay", q + "decay", reader.to_float, 0.97)
    reader.fixed(batch_norm, "epsilon", q + "epsilon", reader.to_float, 0.001)
    for name in ("train", "scale", "center"):
        reader.fixed(batch_norm, name, q + name, reader.to_bool, True)
    return l2


def _read_feature_extractor(
    reader: _TreeReader, block: Message | None, ssd: Message, settings: ModelSettings
) -> None:
    p = "model.ssd.feature_extractor."
    if block is None:
        raise DataError(
            f"{reader.where(ssd)}: model.ssd.feature_extractor is missing "
            f"(expected type: '{SPAGHETTINET_FEATURE_EXTRACTOR}' and spaghettinet_arch_name)"
        )
    extractor_type = reader.value(block, "type", p + "type", reader.to_str, "")
    if extractor_type != SPAGHETTINET_FEATURE_EXTRACTOR:
        entry = block.first("type") or block
        raise reader.fail(
            entry,
            p + "type",
            f"must be '{SPAGHETTINET_FEATURE_EXTRACTOR}', got {extractor_type!r} (this package builds SpaghettiNet only)",
        )
    arch = reader.value(block, "spaghettinet_arch_name", p + "spaghettinet_arch_name", reader.to_str, "")
    variant = arch[len(ARCH_NAME_PREFIX) :] if arch.startswith(ARCH_NAME_PREFIX) else ""
    if variant not in VARIANTS:
        known = ", ".join(repr(arch_name_for_variant(v)) for v in VARIANTS)
        entry = block.first("spaghettinet_arch_name") or block
        raise reader.fail(entry, p + "spaghettinet_arch_name", f"must be one of {known}, got {arch!r}")
    settings.variant = variant
    settings.use_explicit_padding = reader.value(
        block, "use_explicit_padding", p + "use_explicit_padding", reader.to_bool, False
    )
    reader.fixed(block, "depth_multiplier", p + "depth_multiplier", reader.to_float, 1.0)
    settings.l2_extractor = _read_hyperparams(
        reader,
        reader.message(block, "conv_hyperparams", p + "conv_hyperparams"),
        p + "conv_hyperparams",
        settings.l2_extractor,
    )


def _read_resizer(reader: _TreeReader, block: Message | None, settings: ModelSettings) -> None:
    p = "model.ssd.image_resizer"
    choice = reader.oneof(block, p, ("fixed_shape_resizer",))
    if choice is None:
        return
    q = p + ".fixed_shape_resizer."
    resizer = choice[1]
    # 300 is the proto default for both (image_resizer.proto); SpaghettiNet configs say 320.
    height = reader.value(resizer, "height", q + "height", reader.to_int, 300)
    width = reader.value(resizer, "width", q + "width", reader.to_int, 300)
    settings.input_size = (height, width)
    reader.fixed(resizer, "resize_method", q + "resize_method", reader.to_enum, "BILINEAR")
    reader.fixed(resizer, "convert_to_grayscale", q + "convert_to_grayscale", reader.to_bool, False)


def _read_box_predictor(reader: _TreeReader, block: Message | None, settings: ModelSettings) -> None:
    p = "model.ssd.box_predictor"
    choice = reader.oneof(block, p, ("convolutional_box_predictor",))
    if choice is None:
        return
    predictor = choice[1]
    q = p + ".convolutional_box_predictor."
    reader.fixed(predictor, "kernel_size", q + "kernel_size", reader.to_int, 3)
    reader.fixed(predictor, "use_depthwise", q + "use_depthwise", reader.to_bool, True)
    reader.fixed(predictor, "box_code_size", q + "box_code_size", reader.to_int, 4)
    reader.fixed(predictor, "min_depth", q + "min_depth", reader.to_int, 0)
    reader.fixed(predictor, "max_depth", q + "max_depth", reader.to_int, 0)
    reader.fixed(
        predictor, "num_layers_before_predictor", q + "num_layers_before_predictor", reader.to_int, 0
    )
    reader.fixed(predictor, "use_dropout", q + "use_dropout", reader.to_bool, False)
    reader.fixed(predictor, "apply_sigmoid_to_scores", q + "apply_sigmoid_to_scores", reader.to_bool, False)
    # With use_dropout false the keep probability is never read; class_prediction_bias_init has no effect on the
    # depthwise branch in the reference either (spec §6.8).
    reader.accept(predictor, "dropout_keep_probability", "class_prediction_bias_init")
    settings.l2_predictor = _read_hyperparams(
        reader,
        reader.message(predictor, "conv_hyperparams", q + "conv_hyperparams"),
        q + "conv_hyperparams",
        settings.l2_predictor,
    )


def _read_loss(reader: _TreeReader, block: Message | None, settings: ModelSettings) -> None:
    if block is None:
        return
    p = "model.ssd.loss."
    classification = reader.oneof(
        reader.message(block, "classification_loss", p + "classification_loss"),
        p + "classification_loss",
        ("weighted_sigmoid_focal",),
    )
    if classification is not None:
        q = p + "classification_loss.weighted_sigmoid_focal."
        # alpha has no proto default (unset means unweighted); SpaghettiNet's is 0.75.
        settings.focal_alpha = reader.value(classification[1], "alpha", q + "alpha", reader.to_float, 0.75)
        settings.focal_gamma = reader.value(classification[1], "gamma", q + "gamma", reader.to_float, 2.0)
    localization = reader.oneof(
        reader.message(block, "localization_loss", p + "localization_loss"),
        p + "localization_loss",
        ("weighted_smooth_l1",),
    )
    if localization is not None:
        q = p + "localization_loss.weighted_smooth_l1."
        settings.smooth_l1_delta = reader.value(localization[1], "delta", q + "delta", reader.to_float, 1.0)
    settings.classification_weight = reader.value(
        block, "classification_weight", p + "classification_weight", reader.to_float, 1.0
    )
    settings.localization_weight = reader.value(
        block, "localization_weight", p + "localization_weight", reader.to_float, 1.0
    )


def _read_post_processing(reader: _TreeReader, block: Message | None, settings: ModelSettings) -> None:
    if block is None:
        return
    p = "model.ssd.post_processing."
    nms = reader.message(block, "batch_non_max_suppression", p + "batch_non_max_suppression")
    q = p + "batch_non_max_suppression."
    settings.score_threshold = reader.value(
        nms, "score_threshold", q + "score_threshold", reader.to_float, 0.0
    )
    settings.iou_threshold = reader.value(nms, "iou_threshold", q + "iou_threshold", reader.to_float, 0.6)
    settings.max_detections_per_class = reader.value(
        nms, "max_detections_per_class", q + "max_detections_per_class", reader.to_int, 100
    )
    settings.max_total_detections = reader.value(
        nms, "max_total_detections", q + "max_total_detections", reader.to_int, 100
    )
    # Static vs dynamic shapes is an implementation detail of TF1's TPU path.
    reader.accept(nms, "use_static_shapes")
    reader.fixed(nms, "use_class_agnostic_nms", q + "use_class_agnostic_nms", reader.to_bool, False)
    reader.fixed(nms, "soft_nms_sigma", q + "soft_nms_sigma", reader.to_float, 0.0)
    converter = reader.value(block, "score_converter", p + "score_converter", reader.to_enum, "IDENTITY")
    if converter != "SIGMOID":
        entry = block.first("score_converter") or block
        raise reader.fail(
            entry,
            p + "score_converter",
            f"must be SIGMOID (the focal loss is a sigmoid loss), got {converter}",
        )
    settings.score_converter = converter
    reader.fixed(block, "logit_scale", p + "logit_scale", reader.to_float, 1.0)


def _read_train(reader: _TreeReader, block: Message | None) -> TrainSettings:
    settings = TrainSettings()
    if block is None:
        return settings
    p = "train_config."
    settings.batch_size = reader.value(block, "batch_size", p + "batch_size", reader.to_int, 32)
    settings.num_steps = reader.value(block, "num_steps", p + "num_steps", reader.to_int, settings.num_steps)
    settings.max_number_of_boxes = reader.value(
        block, "max_number_of_boxes", p + "max_number_of_boxes", reader.to_int, 100
    )
    # Padding ground truth to static shapes is how our input pipeline works anyway.
    reader.accept(block, "unpad_groundtruth_tensors")
    checkpoint = reader.value(block, "fine_tune_checkpoint", p + "fine_tune_checkpoint", reader.to_str, "")
    settings.fine_tune_checkpoint = checkpoint or None
    from_detection = reader.value(
        block, "from_detection_checkpoint", p + "from_detection_checkpoint", reader.to_bool, True
    )
    settings.fine_tune_checkpoint_type = reader.value(
        block,
        "fine_tune_checkpoint_type",
        p + "fine_tune_checkpoint_type",
        reader.to_str,
        "detection" if from_detection else "classification",
    )
    reader.accept(block, "load_all_detection_checkpoint_vars")

    settings.data_augmentation_options = _read_augmentation(reader, block, p + "data_augmentation_options")
    _read_optimizer(reader, reader.message(block, "optimizer", p + "optimizer"), settings)
    return settings


def _read_augmentation(reader: _TreeReader, block: Message, path: str) -> tuple[AugmentationOption, ...]:
    """The ``data_augmentation_options`` steps in file order; a step we do not implement is an error naming it.

    Each block holds one step (the proto's ``PreprocessingStep`` is a oneof). Listing steps replaces the default
    flip and crop: a config that lists none trains without augmentation, as in the TF OD API.
    """
    steps: list[AugmentationOption] = []
    for entry in block.all("data_augmentation_options"):
        entry.used = True
        if not isinstance(entry.value, Message):
            raise reader.fail(entry, path, "must be a message block ({ ... })")
        choices = entry.value.fields
        if not choices:
            raise reader.fail(entry, path, "is empty; name one step, e.g. { random_horizontal_flip { } }")
        if len(choices) > 1:
            raise reader.fail(
                choices[1],
                path,
                f"holds both {choices[0].name} and {choices[1].name}; give each step its own "
                "data_augmentation_options block (one step per block, as in the TF OD API)",
            )
        option = choices[0]
        q = f"{path}.{option.name}"
        option_type = AUGMENTATION_OPTIONS.get(option.name)
        if option_type is None:
            known = ", ".join(AUGMENTATION_OPTIONS)
            if option.name in UNIMPLEMENTED_PREPROCESSING_STEPS:
                raise reader.fail(
                    option, q, f"is a TF OD API step this package does not implement; implemented: {known}"
                )
            raise reader.fail(
                option, q, f"is not a TF OD API preprocessing step (a typo?); implemented: {known}"
            )
        if not isinstance(option.value, Message):
            raise reader.fail(option, q, f"must be a message block, e.g. {option.name} {{ }}")
        option.used = True
        reader.locations[q] = reader.where(option)
        steps.append(_read_option(reader, option_type, option, q))
    return tuple(steps)


def _read_option(reader: _TreeReader, option_type: type[T], entry: Field, path: str) -> T:
    """Build ``option_type`` from its block: each dataclass field is the proto field of the same name.

    Absent fields keep the dataclass default, which is the proto's default; values are checked with the option's
    ``problems()`` and an impossible one is an error at the line of the field (of the block when it is absent).
    """
    block = entry.value
    assert isinstance(block, Message)
    values: dict[str, object] = {}
    for spec in dataclasses.fields(option_type):  # type: ignore[arg-type]
        name, q = spec.name, f"{path}.{spec.name}"
        kind = str(spec.type)
        if kind == "float":
            values[name] = reader.value(block, name, q, reader.to_float, spec.default)
        elif kind in ("int", "int | None"):
            values[name] = reader.value(block, name, q, reader.to_int, spec.default)
        elif kind == "bool":
            values[name] = reader.value(block, name, q, reader.to_bool, spec.default)
        elif kind == "tuple[float, ...]":
            values[name] = tuple(reader.values(block, name, q, reader.to_float))
        elif kind == "tuple[SsdRandomCropOperation, ...]":
            operations = []
            for operation in block.all(name):
                operation.used = True
                if not isinstance(operation.value, Message):
                    raise reader.fail(operation, q, "must be a message block ({ ... })")
                operations.append(_read_option(reader, SsdRandomCropOperation, operation, q))
            values[name] = tuple(operations)
        else:  # pragma: no cover - a new field type in settings.py needs a converter here
            raise TypeError(f"no reader for {option_type.__name__}.{name}: {kind}")
    option = option_type(**values)
    for name, problem in option.problems():  # type: ignore[attr-defined]
        located = block.first(name)
        raise reader.fail(located if located is not None else entry, f"{path}.{name}", problem)
    return option


def _read_optimizer(reader: _TreeReader, optimizer: Message | None, settings: TrainSettings) -> None:
    """``train_config.optimizer``: momentum or Adam with a cosine-decay learning rate, and weight averaging."""
    if optimizer is None:
        return
    p = "train_config.optimizer."
    # optimizer.proto: use_moving_average defaults to *true* and moving_average_decay to 0.9999 (the zoo's
    # SpaghettiNet config sets use_moving_average: false explicitly).
    settings.use_moving_average = reader.value(
        optimizer, "use_moving_average", p + "use_moving_average", reader.to_bool, True
    )
    settings.moving_average_decay = reader.value(
        optimizer, "moving_average_decay", p + "moving_average_decay", reader.to_float, 0.9999
    )
    _require(
        reader,
        optimizer,
        p + "moving_average_decay",
        0.0 < settings.moving_average_decay < 1.0,
        f"must be in (0, 1), got {settings.moving_average_decay}",
    )
    choice = reader.oneof(optimizer, p.rstrip("."), ("momentum_optimizer", "adam_optimizer"))
    if choice is None:
        return
    name, body = choice
    q = p + name + "."
    if name == "momentum_optimizer":
        settings.optimizer = "momentum"
        settings.momentum = reader.value(
            body, "momentum_optimizer_value", q + "momentum_optimizer_value", reader.to_float, 0.9
        )
    else:
        settings.optimizer = "adam"
        # 1e-8 is the proto default (tf.compat.v1's Adam); Keras' Adam defaults to 1e-7.
        settings.adam_epsilon = reader.value(body, "epsilon", q + "epsilon", reader.to_float, 1e-8)
        _require(
            reader,
            body,
            q + "epsilon",
            settings.adam_epsilon > 0,
            f"must be > 0, got {settings.adam_epsilon}",
        )
    rate = reader.oneof(
        reader.message(body, "learning_rate", q + "learning_rate"),
        q + "learning_rate",
        ("cosine_decay_learning_rate",),
    )
    if rate is None:
        return
    r = q + "learning_rate.cosine_decay_learning_rate."
    cosine = rate[1]
    # Proto defaults of cosine_decay_learning_rate (optimizer.proto).
    settings.learning_rate_base = reader.value(
        cosine, "learning_rate_base", r + "learning_rate_base", reader.to_float, 0.002
    )
    settings.total_steps = reader.value(cosine, "total_steps", r + "total_steps", reader.to_int, 4_000_000)
    settings.warmup_learning_rate = reader.value(
        cosine, "warmup_learning_rate", r + "warmup_learning_rate", reader.to_float, 0.0002
    )
    settings.warmup_steps = reader.value(cosine, "warmup_steps", r + "warmup_steps", reader.to_int, 10000)
    settings.hold_base_rate_steps = reader.value(
        cosine, "hold_base_rate_steps", r + "hold_base_rate_steps", reader.to_int, 0
    )
    # validate.py checks these too, under the momentum optimizer's path; checking here names the block they are in.
    base = settings.learning_rate_base
    _require(reader, cosine, r + "learning_rate_base", base > 0, f"must be > 0, got {base}")
    _require(
        reader,
        cosine,
        r + "warmup_learning_rate",
        0 <= settings.warmup_learning_rate <= base,
        f"must be in [0, learning_rate_base = {base}], got {settings.warmup_learning_rate}",
    )
    _require(
        reader,
        cosine,
        r + "total_steps",
        settings.total_steps >= 1,
        f"must be at least 1, got {settings.total_steps}",
    )
    _require(
        reader,
        cosine,
        r + "warmup_steps",
        0 <= settings.warmup_steps <= settings.total_steps,
        f"must be in [0, total_steps = {settings.total_steps}], got {settings.warmup_steps}",
    )


def _require(reader: _TreeReader, block: Message, path: str, condition: bool, message: str) -> None:
    """Raise a DataError at the line of field ``path`` (of ``block`` when the field is absent) unless ``condition``."""
    if condition:
        return
    located = block.first(path.rsplit(".", 1)[-1])
    raise reader.fail(located if located is not None else block, path, message)


def _read_input(
    reader: _TreeReader, tree: Message, name: str, settings: InputReaderSettings
) -> InputReaderSettings:
    entries = tree.all(name)
    if not entries:
        return settings
    entry = entries[0]
    entry.used = True
    if not isinstance(entry.value, Message):
        raise reader.fail(entry, name, "must be a message block ({ ... })")
    block = entry.value
    p = name + "."
    settings.label_map_path = reader.value(block, "label_map_path", p + "label_map_path", reader.to_str, "")
    settings.shuffle = reader.value(block, "shuffle", p + "shuffle", reader.to_bool, settings.shuffle)
    settings.num_epochs = reader.value(
        block, "num_epochs", p + "num_epochs", reader.to_int, settings.num_epochs
    )
    records = reader.oneof(block, name, ("tf_record_input_reader",))
    if records is not None:
        q = p + "tf_record_input_reader.input_path"
        settings.input_paths = reader.values(records[1], "input_path", q, reader.to_str)
    return settings


def _read_eval(reader: _TreeReader, block: Message | None) -> EvalSettings:
    settings = EvalSettings()
    if block is None:
        return settings
    p = "eval_config."
    metrics = reader.values(block, "metrics_set", p + "metrics_set", reader.to_str)
    for metric in metrics:
        if metric != "coco_detection_metrics":
            reader.ignored.append(f"{p}metrics_set = {metric!r}: only coco_detection_metrics is computed")
    settings.num_visualizations = reader.value(
        block, "num_visualizations", p + "num_visualizations", reader.to_int, 10
    )
    settings.eval_interval_steps = reader.value(
        block, "eval_interval_steps", p + "eval_interval_steps", reader.to_int, None
    )
    settings.use_moving_averages = reader.value(
        block, "use_moving_averages", p + "use_moving_averages", reader.to_bool, False
    )
    return settings


def _read_quantization(reader: _TreeReader, block: Message | None) -> QuantizationSettings | None:
    quantization = reader.message(block, "quantization", "graph_rewriter.quantization")
    if quantization is None:
        return None
    p = "graph_rewriter.quantization."
    reader.fixed(quantization, "symmetric", p + "symmetric", reader.to_bool, False)
    return QuantizationSettings(
        delay=reader.value(quantization, "delay", p + "delay", reader.to_int, 500_000),
        weight_bits=reader.value(quantization, "weight_bits", p + "weight_bits", reader.to_int, 8),
        activation_bits=reader.value(
            quantization, "activation_bits", p + "activation_bits", reader.to_int, 8
        ),
    )


def describe_warnings(cfg: PipelineConfig) -> str | None:
    """One sentence naming every field of the file that was not used, for the CLI to print once.

    Args:
        cfg: settings from :func:`read_config`.

    Returns:
        The sentence, or None when every field was used.

    Example:
        >>> describe_warnings(PipelineConfig()) is None
        True
    """
    if not cfg.warnings:
        return None
    where = f"{cfg.path}: " if cfg.path is not None else ""
    return f"{where}ignored {len(cfg.warnings)} setting(s) this package does not use: " + "; ".join(
        cfg.warnings
    )
