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
from spaghettinet.textformat import Field, Message, Scalar, parse_text

from .proto_defaults import PROTO_DEFAULTS
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
from .validate import validate_config

T = TypeVar("T")

SPAGHETTINET_FEATURE_EXTRACTOR = "ssd_spaghettinet"

_TRUE = ("true", "True", "t", "1")
# Every integer field of the TF OD API's protos is an int32 or a uint32.
INT32_MIN = -(2**31)
UINT32_MAX = 2**32 - 1
_FALSE = ("false", "False", "f", "0")
#: "Take the proto's default" (see :data:`.proto_defaults.PROTO_DEFAULTS`), for :meth:`_Block.get`.
_PROTO_DEFAULT = object()


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

    def converter(self, kind: str) -> Callable[[Scalar, str], object]:
        """The converter of a value kind: ``int``, ``float``, ``bool``, ``str`` or ``enum``."""
        return {
            "int": self.to_int,
            "float": self.to_float,
            "bool": self.to_bool,
            "str": self.to_str,
            "enum": self.to_enum,
        }[kind]

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


class _Block:
    """One message of the parsed file with its dotted path: reads its fields without restating the path.

    Args:
        reader: the reader that converts values and keeps the bookkeeping.
        message: the parsed message.
        path: its dotted path in the file (``model.ssd.matcher.argmax_matcher``).
        proto: the key of its fields in :data:`PROTO_DEFAULTS` (default: the last part of ``path``).
    """

    def __init__(self, reader: _TreeReader, message: Message, path: str, proto: str | None = None):
        self.reader = reader
        self.message = message
        self.path = path
        self.proto = proto or path.rsplit(".", 1)[-1]

    def field_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def first(self, name: str) -> Field | None:
        return self.message.first(name)

    def child(self, name: str, proto: str | None = None) -> _Block | None:
        """The nested message ``name``, None when absent."""
        message = self.reader.message(self.message, name, self.field_path(name))
        return None if message is None else _Block(self.reader, message, self.field_path(name), proto)

    def oneof(self, allowed: tuple[str, ...]) -> tuple[str, _Block] | None:
        """The single sub-message of this ``oneof`` block; a choice outside ``allowed`` is an error naming it."""
        choice = self.reader.oneof(self.message, self.path, allowed)
        if choice is None:
            return None
        name, message = choice
        return name, _Block(self.reader, message, self.field_path(name))

    def child_choice(self, name: str, allowed: tuple[str, ...]) -> tuple[str, _Block] | None:
        """``child(name).oneof(allowed)``, None when the child is absent."""
        block = self.child(name)
        return None if block is None else block.oneof(allowed)

    def get(self, name: str, kind: str, default: object = _PROTO_DEFAULT):
        """The last value of scalar field ``name`` converted as ``kind`` (``int``, ``float``, ``bool``, ``str``,
        ``enum``); absent, the proto's default (:data:`PROTO_DEFAULTS`) or ``default`` when one is given."""
        if default is _PROTO_DEFAULT:
            default = PROTO_DEFAULTS[f"{self.proto}.{name}"]
        return self.reader.value(
            self.message, name, self.field_path(name), self.reader.converter(kind), default
        )

    def get_all(self, name: str, kind: str) -> list:
        """All values of the repeated scalar field ``name``."""
        return self.reader.values(self.message, name, self.field_path(name), self.reader.converter(kind))

    def fixed(self, name: str, kind: str, expected: object) -> None:
        """Consume a field implemented one way only (a different value is listed as ignored)."""
        self.reader.fixed(self.message, name, self.field_path(name), self.reader.converter(kind), expected)

    def accept(self, *names: str) -> None:
        """Mark fields as used without reading them (they have no effect here, as in the reference)."""
        self.reader.accept(self.message, *names)

    def fail(self, name: str, message: str) -> DataError:
        """An error at the line of field ``name`` (of this block when the field is absent)."""
        located = self.first(name)
        return self.reader.fail(
            located if located is not None else self.message, self.field_path(name), message
        )

    def require(self, name: str, condition: bool, message: str) -> None:
        """Raise :meth:`fail` unless ``condition``."""
        if not condition:
            raise self.fail(name, message)


def _read_model(reader: _TreeReader, tree: Message) -> ModelSettings:
    model_block = reader.message(tree, "model", "model")
    if model_block is None:
        raise DataError(
            f"{reader.source}: no 'model {{ ssd {{ ... }} }}' block; this is not a detection pipeline.config"
        )
    choice = _Block(reader, model_block, "model").oneof(("ssd",))
    if choice is None:
        raise DataError(
            f"{reader.where(model_block)}: model has no 'ssd {{ ... }}' block (SpaghettiNet is an SSD)"
        )
    ssd = choice[1]
    num_classes_values = ssd.get_all("num_classes", "int")
    if not num_classes_values:
        raise DataError(
            f"{reader.where(ssd.message)}: model.ssd.num_classes is missing (the number of classes in the label map)"
        )
    settings = ModelSettings(num_classes=num_classes_values[-1])
    ssd.accept("inplace_batchnorm_update")
    ssd.fixed("freeze_batchnorm", "bool", False)
    # SpaghettiNet's configs set true; the proto default (false) would add a background logit we do not build.
    settings.encode_background_as_zeros = ssd.get("encode_background_as_zeros", "bool", True)
    ssd.fixed("add_background_class", "bool", True)
    settings.normalize_loss_by_num_matches = ssd.get("normalize_loss_by_num_matches", "bool")
    # The zoo's config sets true (the proto's default is false), and our loss implements that only.
    settings.normalize_loc_loss_by_codesize = ssd.get("normalize_loc_loss_by_codesize", "bool", True)

    _read_feature_extractor(ssd.child("feature_extractor"), ssd, settings)
    _read_resizer(ssd.child("image_resizer"), settings)

    coder = ssd.child_choice("box_coder", ("faster_rcnn_box_coder",))
    if coder is not None:
        settings.box_coder_scales = tuple(  # type: ignore[assignment]
            coder[1].get(name, "float") for name in ("y_scale", "x_scale", "height_scale", "width_scale")
        )

    matcher = ssd.child_choice("matcher", ("argmax_matcher",))
    if matcher is not None:
        block = matcher[1]
        settings.matched_threshold = block.get("matched_threshold", "float")
        settings.unmatched_threshold = block.get("unmatched_threshold", "float")
        settings.force_match_for_each_row = block.get("force_match_for_each_row", "bool")
        block.fixed("ignore_thresholds", "bool", False)
        block.fixed("negatives_lower_than_unmatched", "bool", True)
        # How the gather is computed changes nothing in the result.
        block.accept("use_matmul_gather")

    ssd.child_choice("similarity_calculator", ("iou_similarity",))

    anchors = ssd.child_choice("anchor_generator", ("ssd_anchor_generator",))
    if anchors is not None:
        block = anchors[1]
        settings.num_layers = block.get("num_layers", "int")
        settings.min_scale = block.get("min_scale", "float")
        settings.max_scale = block.get("max_scale", "float")
        ratios = block.get_all("aspect_ratios", "float")
        if ratios:
            settings.aspect_ratios = tuple(ratios)
        settings.interpolated_scale_aspect_ratio = block.get("interpolated_scale_aspect_ratio", "float")
        settings.reduce_boxes_in_lowest_layer = block.get("reduce_boxes_in_lowest_layer", "bool")
        block.fixed("base_anchor_height", "float", 1.0)
        block.fixed("base_anchor_width", "float", 1.0)

    _read_box_predictor(ssd.child("box_predictor"), settings)
    _read_loss(ssd.child("loss"), settings)
    _read_post_processing(ssd.child("post_processing"), settings)
    return settings


def _read_hyperparams(block: _Block | None, default_l2: float) -> float:
    """Read a ``conv_hyperparams`` block; return its L2 weight. Other values are the zoo config's."""
    if block is None:
        return default_l2
    block.fixed("activation", "enum", "RELU_6")
    l2 = default_l2
    regularizer = block.child_choice("regularizer", ("l2_regularizer",))
    if regularizer is not None:
        l2 = regularizer[1].get("weight", "float")
    # The initializer only matters for training from scratch; ours is the reference's random_normal(0, 0.03).
    block.accept("initializer")
    batch_norm = block.child("batch_norm")
    if batch_norm is not None:
        batch_norm.fixed("decay", "float", 0.97)
        batch_norm.fixed("epsilon", "float", 0.001)
        for name in ("train", "scale", "center"):
            batch_norm.fixed(name, "bool", True)
    return l2


def _read_feature_extractor(block: _Block | None, ssd: _Block, settings: ModelSettings) -> None:
    if block is None:
        raise DataError(
            f"{ssd.reader.where(ssd.message)}: model.ssd.feature_extractor is missing "
            f"(expected type: '{SPAGHETTINET_FEATURE_EXTRACTOR}' and spaghettinet_arch_name)"
        )
    extractor_type = block.get("type", "str")
    if extractor_type != SPAGHETTINET_FEATURE_EXTRACTOR:
        raise block.fail(
            "type",
            f"must be '{SPAGHETTINET_FEATURE_EXTRACTOR}', got {extractor_type!r} (this package builds SpaghettiNet only)",
        )
    arch = block.get("spaghettinet_arch_name", "str")
    variant = arch[len(ARCH_NAME_PREFIX) :] if arch.startswith(ARCH_NAME_PREFIX) else ""
    if variant not in VARIANTS:
        known = ", ".join(repr(arch_name_for_variant(v)) for v in VARIANTS)
        raise block.fail("spaghettinet_arch_name", f"must be one of {known}, got {arch!r}")
    settings.variant = variant
    settings.use_explicit_padding = block.get("use_explicit_padding", "bool")
    block.fixed("depth_multiplier", "float", 1.0)
    settings.l2_extractor = _read_hyperparams(block.child("conv_hyperparams"), settings.l2_extractor)


def _read_resizer(block: _Block | None, settings: ModelSettings) -> None:
    choice = block.oneof(("fixed_shape_resizer",)) if block is not None else None
    if choice is None:
        return
    resizer = choice[1]
    settings.input_size = (resizer.get("height", "int"), resizer.get("width", "int"))
    resizer.fixed("resize_method", "enum", "BILINEAR")
    resizer.fixed("convert_to_grayscale", "bool", False)


def _read_box_predictor(block: _Block | None, settings: ModelSettings) -> None:
    choice = block.oneof(("convolutional_box_predictor",)) if block is not None else None
    if choice is None:
        return
    predictor = choice[1]
    predictor.fixed("kernel_size", "int", 3)
    predictor.fixed("use_depthwise", "bool", True)
    predictor.fixed("box_code_size", "int", 4)
    predictor.fixed("min_depth", "int", 0)
    predictor.fixed("max_depth", "int", 0)
    predictor.fixed("num_layers_before_predictor", "int", 0)
    predictor.fixed("use_dropout", "bool", False)
    predictor.fixed("apply_sigmoid_to_scores", "bool", False)
    # With use_dropout false the keep probability is never read; class_prediction_bias_init has no effect on the
    # depthwise branch in the reference either (``predictors/heads/class_head.py``).
    predictor.accept("dropout_keep_probability", "class_prediction_bias_init")
    settings.l2_predictor = _read_hyperparams(predictor.child("conv_hyperparams"), settings.l2_predictor)


def _read_loss(block: _Block | None, settings: ModelSettings) -> None:
    if block is None:
        return
    classification = block.child_choice("classification_loss", ("weighted_sigmoid_focal",))
    if classification is not None:
        # alpha has no proto default (unset means unweighted); SpaghettiNet's is 0.75.
        settings.focal_alpha = classification[1].get("alpha", "float", 0.75)
        settings.focal_gamma = classification[1].get("gamma", "float")
    localization = block.child_choice("localization_loss", ("weighted_smooth_l1",))
    if localization is not None:
        settings.smooth_l1_delta = localization[1].get("delta", "float")
    settings.classification_weight = block.get("classification_weight", "float")
    settings.localization_weight = block.get("localization_weight", "float")


def _read_post_processing(block: _Block | None, settings: ModelSettings) -> None:
    if block is None:
        return
    nms = block.child("batch_non_max_suppression")
    if nms is not None:
        settings.score_threshold = nms.get("score_threshold", "float")
        settings.iou_threshold = nms.get("iou_threshold", "float")
        settings.max_detections_per_class = nms.get("max_detections_per_class", "int")
        settings.max_total_detections = nms.get("max_total_detections", "int")
        # Static vs dynamic shapes is an implementation detail of TF1's TPU path.
        nms.accept("use_static_shapes")
        nms.fixed("use_class_agnostic_nms", "bool", False)
        nms.fixed("soft_nms_sigma", "float", 0.0)
    else:
        proto = "batch_non_max_suppression"
        settings.score_threshold = PROTO_DEFAULTS[f"{proto}.score_threshold"]
        settings.iou_threshold = PROTO_DEFAULTS[f"{proto}.iou_threshold"]
        settings.max_detections_per_class = PROTO_DEFAULTS[f"{proto}.max_detections_per_class"]
        settings.max_total_detections = PROTO_DEFAULTS[f"{proto}.max_total_detections"]
    converter = block.get("score_converter", "enum")
    if converter != "SIGMOID":
        raise block.fail(
            "score_converter", f"must be SIGMOID (the focal loss is a sigmoid loss), got {converter}"
        )
    settings.score_converter = converter
    block.fixed("logit_scale", "float", 1.0)


def _read_train(block: _Block | None) -> TrainSettings:
    settings = TrainSettings()
    if block is None:
        return settings
    settings.batch_size = block.get("batch_size", "int")
    # Absent, the zoo config's schedule length (the proto's 0 means "forever").
    settings.num_steps = block.get("num_steps", "int", settings.num_steps)
    settings.max_number_of_boxes = block.get("max_number_of_boxes", "int")
    # Padding ground truth to static shapes is how our input pipeline works anyway.
    block.accept("unpad_groundtruth_tensors")
    settings.fine_tune_checkpoint = block.get("fine_tune_checkpoint", "str") or None
    # The proto's default for this deprecated field is false, which would make a checkpoint with no type a
    # classification backbone; the checkpoints users give here (the zoo's, their own runs') are detection ones.
    from_detection = block.get("from_detection_checkpoint", "bool", True)
    # The TF OD API reads the deprecated from_detection_checkpoint when fine_tune_checkpoint_type is unset.
    settings.fine_tune_checkpoint_type = block.get(
        "fine_tune_checkpoint_type", "str", "detection" if from_detection else "classification"
    )
    block.accept("load_all_detection_checkpoint_vars")
    settings.use_bfloat16 = block.get("use_bfloat16", "bool")

    settings.data_augmentation_options = _read_augmentation(block)
    _read_optimizer(block.child("optimizer"), settings)
    return settings


def _read_augmentation(block: _Block) -> tuple[AugmentationOption, ...]:
    """The ``data_augmentation_options`` steps in file order; a step we do not implement is an error naming it.

    Each block holds one step (the proto's ``PreprocessingStep`` is a oneof). Listing steps replaces the default
    flip and crop: a config that lists none trains without augmentation, as in the TF OD API.
    """
    reader, path = block.reader, block.field_path("data_augmentation_options")
    steps: list[AugmentationOption] = []
    for entry in block.message.all("data_augmentation_options"):
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
    message = entry.value
    assert isinstance(message, Message)
    block = _Block(reader, message, path)
    values: dict[str, object] = {}
    for spec in dataclasses.fields(option_type):  # type: ignore[arg-type]
        name = spec.name
        kind = str(spec.type)
        if kind in ("float", "bool"):
            values[name] = block.get(name, kind, spec.default)
        elif kind in ("int", "int | None"):
            values[name] = block.get(name, "int", spec.default)
        elif kind == "tuple[float, ...]":
            values[name] = tuple(block.get_all(name, "float"))
        elif kind == "tuple[SsdRandomCropOperation, ...]":
            operations = []
            for operation in message.all(name):
                operation.used = True
                if not isinstance(operation.value, Message):
                    raise reader.fail(operation, block.field_path(name), "must be a message block ({ ... })")
                operations.append(
                    _read_option(reader, SsdRandomCropOperation, operation, block.field_path(name))
                )
            values[name] = tuple(operations)
        else:  # pragma: no cover - a new field type in settings.py needs a converter here
            raise TypeError(f"no reader for {option_type.__name__}.{name}: {kind}")
    option = option_type(**values)
    for name, problem in option.problems():  # type: ignore[attr-defined]
        located = message.first(name)
        raise reader.fail(located if located is not None else entry, f"{path}.{name}", problem)
    return option


def _read_optimizer(optimizer: _Block | None, settings: TrainSettings) -> None:
    """``train_config.optimizer``: momentum or Adam with a cosine-decay learning rate, and weight averaging."""
    if optimizer is None:
        return
    # The zoo's SpaghettiNet config sets use_moving_average: false explicitly; the proto's default is true.
    settings.use_moving_average = optimizer.get("use_moving_average", "bool")
    settings.moving_average_decay = optimizer.get("moving_average_decay", "float")
    optimizer.require(
        "moving_average_decay",
        0.0 < settings.moving_average_decay < 1.0,
        f"must be in (0, 1), got {settings.moving_average_decay}",
    )
    choice = optimizer.oneof(("momentum_optimizer", "adam_optimizer"))
    if choice is None:
        return
    name, body = choice
    if name == "momentum_optimizer":
        settings.optimizer = "momentum"
        settings.momentum = body.get("momentum_optimizer_value", "float")
    else:
        settings.optimizer = "adam"
        # The proto's 1e-8 is tf.compat.v1's Adam epsilon; Keras' Adam defaults to 1e-7.
        settings.adam_epsilon = body.get("epsilon", "float")
        body.require("epsilon", settings.adam_epsilon > 0, f"must be > 0, got {settings.adam_epsilon}")
    rate = body.child_choice("learning_rate", ("cosine_decay_learning_rate",))
    if rate is None:
        return
    cosine = rate[1]
    settings.learning_rate_base = cosine.get("learning_rate_base", "float")
    settings.total_steps = cosine.get("total_steps", "int")
    settings.warmup_learning_rate = cosine.get("warmup_learning_rate", "float")
    settings.warmup_steps = cosine.get("warmup_steps", "int")
    settings.hold_base_rate_steps = cosine.get("hold_base_rate_steps", "int")
    # validate.py checks these too, under the momentum optimizer's path; checking here names the block they are in.
    base = settings.learning_rate_base
    cosine.require("learning_rate_base", base > 0, f"must be > 0, got {base}")
    cosine.require(
        "warmup_learning_rate",
        0 <= settings.warmup_learning_rate <= base,
        f"must be in [0, learning_rate_base = {base}], got {settings.warmup_learning_rate}",
    )
    cosine.require(
        "total_steps", settings.total_steps >= 1, f"must be at least 1, got {settings.total_steps}"
    )
    cosine.require(
        "warmup_steps",
        0 <= settings.warmup_steps <= settings.total_steps,
        f"must be in [0, total_steps = {settings.total_steps}], got {settings.warmup_steps}",
    )


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
    block = _Block(reader, entry.value, name, proto="input_reader")
    settings.label_map_path = block.get("label_map_path", "str")
    # Absent, the settings' own defaults: the eval reader reads its records once, in order.
    settings.shuffle = block.get("shuffle", "bool", settings.shuffle)
    settings.num_epochs = block.get("num_epochs", "int", settings.num_epochs)
    records = block.oneof(("tf_record_input_reader",))
    if records is not None:
        settings.input_paths = records[1].get_all("input_path", "str")
    return settings


def _read_eval(block: _Block | None) -> EvalSettings:
    settings = EvalSettings()
    if block is None:
        return settings
    for metric in block.get_all("metrics_set", "str"):
        if metric != "coco_detection_metrics":
            reader = block.reader
            reader.ignored.append(
                f"{block.field_path('metrics_set')} = {metric!r}: only coco_detection_metrics is computed"
            )
    settings.num_visualizations = block.get("num_visualizations", "int")
    # Absent: evaluate only at the end of training (the proto's 300 s interval is for a separate eval job).
    settings.eval_interval_steps = block.get("eval_interval_steps", "int", None)
    settings.use_moving_averages = block.get("use_moving_averages", "bool")
    return settings


def _read_quantization(block: _Block | None) -> QuantizationSettings | None:
    quantization = block.child("quantization") if block is not None else None
    if quantization is None:
        return None
    quantization.fixed("symmetric", "bool", False)
    return QuantizationSettings(
        delay=quantization.get("delay", "int"),
        weight_bits=quantization.get("weight_bits", "int"),
        activation_bits=quantization.get("activation_bits", "int"),
    )


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
    root = _Block(reader, tree, "")
    model = _read_model(reader, tree)
    train = _read_train(root.child("train_config"))
    train_input = _read_input(reader, tree, "train_input_reader", InputReaderSettings())
    eval_input = _read_input(
        reader, tree, "eval_input_reader", InputReaderSettings(shuffle=False, num_epochs=1)
    )
    evaluation = _read_eval(root.child("eval_config"))
    quantization = _read_quantization(root.child("graph_rewriter"))
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
