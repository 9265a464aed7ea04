"""``export_report.json``: what :func:`spaghettinet.deploy.export.export` did and measured, as typed records.

The export writes one :class:`ExportReport`; the run report, the model card and ``run`` read it back with
:meth:`ExportReport.read`, which refuses a key nothing writes or a missing one (naming the file) instead of guessing.
A report written when the export stopped on a problem (a float op left in the int8 graph, a model LiteRT cannot
load) holds what was done until then: the later sections are absent.

Layout (format version 1; files written before versions existed are version 0, with the same keys but ``version``):

* the checkpoint, its step and the quantization done; the post-processing op's attributes; the class names and
  input size; the calibration (images and the activation ranges set from them);
* ``fp16``, ``int8_ranges``, ``int8_space_to_depth``, ``int8`` (input quantization, ops), ``edgetpu``, ``onnx``:
  each conversion step's facts, present when the step ran;
* ``files``: the model files written, with their sizes in bytes;
* ``checks``: each model's detections against the Keras model's (and fp16 / ONNX against the float file), the
  fp16 model's largest differences at every anchor, and each model's COCO AP on test images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from spaghettinet.deploy.edgetpu import EdgeTpuCompatibility, OperatorInfo
from spaghettinet.deploy.tflite import PostprocessSettings
from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import (
    check_object,
    check_version,
    count_table,
    number_or_none,
    read_json_file,
    typed_field,
    typed_list,
)

EXPORT_REPORT_FILE = "export_report.json"
#: Version 1 added ``version``; version 0 files hold the same keys without it.
EXPORT_REPORT_VERSION = 1

#: The models whose detections and AP the checks hold, in the order the report shows them.
CHECKED_MODELS = ("float", "fp16", "int8", "onnx")
#: Detection agreements: (key in ``checks``, what is compared).
AGREEMENTS = (
    ("int8_vs_keras", "int8 .tflite vs Keras"),
    ("float_vs_keras", "float .tflite vs Keras"),
    ("fp16_vs_keras", "fp16 .tflite vs Keras"),
    ("fp16_vs_float", "fp16 .tflite vs float .tflite"),
    ("onnx_vs_float", "ONNX vs float .tflite"),
)
_ACCURACY_PREFIX = "map_"
_EVERY_ANCHOR = "fp16_vs_float_every_anchor"


def _strings(data: Mapping, key: str, what: str, source) -> tuple[str, ...]:
    return tuple(typed_list(data, key, str, what, source))


def _json_number(value: float | None) -> float | None:
    """A float for JSON, NaN (no value) as ``null``: ``json.dumps`` would write ``NaN``, which is not JSON."""
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class DetectionAgreement:
    """How well one model's detections match a reference model's on the same test images.

    Each reference detection is matched with the best-overlapping candidate detection of the same class (IoU at
    least 0.5, each candidate used once).

    Attributes:
        reference_detections / candidate_detections: detections of each model, all images together.
        matched: reference detections that found a match.
        matched_fraction: ``matched / reference_detections`` (None without reference detections).
        mean_iou / min_iou: IoU of the matches (None without matches).
        mean_score_difference / max_score_difference: absolute score differences of the matches.

    Example:
        >>> agreement = DetectionAgreement(2, 2, 2, 1.0, 0.9, 0.8, 0.01, 0.02)
        >>> DetectionAgreement.from_dict(agreement.to_dict(), "int8_vs_keras") == agreement
        True
    """

    reference_detections: int
    candidate_detections: int
    matched: int
    matched_fraction: float | None
    mean_iou: float | None
    min_iou: float | None
    mean_score_difference: float | None
    max_score_difference: float | None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> DetectionAgreement:
        names = [f.name for f in fields(cls)]
        check_object(data, what, names, source=source)
        counts = {name: typed_field(data, name, int, what, source) for name in names[:3]}
        return cls(
            **counts, **{name: number_or_none(data[name], f"{what} {name}", source) for name in names[3:]}
        )


@dataclass(frozen=True)
class AnchorDifferences:
    """The fp16 model against the float model at every anchor, before NMS (what the few kept boxes hide).

    Attributes:
        anchors: anchors per image.
        max_score_difference / mean_score_difference: class scores, absolute.
        max_box_difference / mean_box_difference: decoded box coordinates, as a fraction of the image.
        score_tolerance / box_tolerance: the largest differences a working fp16 file shows.
        within_tolerance: both maxima within their tolerance.
    """

    anchors: int
    max_score_difference: float
    mean_score_difference: float
    max_box_difference: float
    mean_box_difference: float
    score_tolerance: float
    box_tolerance: float

    @property
    def within_tolerance(self) -> bool:
        return (
            self.max_score_difference <= self.score_tolerance
            and self.max_box_difference <= self.box_tolerance
        )

    def to_dict(self) -> dict:
        return {
            "anchors": self.anchors,
            "max_score_difference": self.max_score_difference,
            "mean_score_difference": self.mean_score_difference,
            "max_box_difference": self.max_box_difference,
            "mean_box_difference": self.mean_box_difference,
            "within_tolerance": self.within_tolerance,
            "tolerance": {"score": self.score_tolerance, "box": self.box_tolerance},
        }

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> AnchorDifferences:
        differences = [
            "max_score_difference",
            "mean_score_difference",
            "max_box_difference",
            "mean_box_difference",
        ]
        check_object(data, what, ["anchors", *differences, "within_tolerance", "tolerance"], source=source)
        typed_field(data, "within_tolerance", bool, what, source)  # derived: recomputed from the figures
        tolerance = check_object(data["tolerance"], f"{what} tolerance", ["score", "box"], source=source)
        return cls(
            anchors=typed_field(data, "anchors", int, what, source),
            **{name: typed_field(data, name, float, what, source) for name in differences},
            score_tolerance=typed_field(tolerance, "score", float, f"{what} tolerance", source),
            box_tolerance=typed_field(tolerance, "box", float, f"{what} tolerance", source),
        )


@dataclass(frozen=True)
class ModelAccuracy:
    """COCO AP of one exported model on the check images (None where COCO has no value).

    Attributes:
        ap / ap50 / ap75: AP@[.5:.95], AP@0.5, AP@0.75.
        per_class_ap: class name → AP@[.5:.95] (None for a class without test objects).
    """

    ap: float | None
    ap50: float | None
    ap75: float | None
    per_class_ap: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "AP": _json_number(self.ap),
            "AP50": _json_number(self.ap50),
            "AP75": _json_number(self.ap75),
            "per_class_ap": {name: _json_number(value) for name, value in self.per_class_ap.items()},
        }

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> ModelAccuracy:
        check_object(data, what, ["AP", "AP50", "AP75", "per_class_ap"], source=source)
        per_class = typed_field(data, "per_class_ap", dict, what, source)
        return cls(
            ap=number_or_none(data["AP"], f"{what} AP", source),
            ap50=number_or_none(data["AP50"], f"{what} AP50", source),
            ap75=number_or_none(data["AP75"], f"{what} AP75", source),
            per_class_ap={
                str(name): number_or_none(value, f"{what} per_class_ap", source)
                for name, value in per_class.items()
            },
        )


@dataclass(frozen=True)
class ExportChecks:
    """The export's accuracy checks on test images.

    Attributes:
        images: test images used (0 when there were none).
        skipped: why the checks did not run (no test records), else None.
        agreements: key of :data:`AGREEMENTS` → :class:`DetectionAgreement`.
        fp16_every_anchor: the fp16 model against the float model at every anchor.
        accuracy: model of :data:`CHECKED_MODELS` → :class:`ModelAccuracy`.
    """

    images: int = 0
    skipped: str | None = None
    agreements: dict[str, DetectionAgreement] = field(default_factory=dict)
    fp16_every_anchor: AnchorDifferences | None = None
    accuracy: dict[str, ModelAccuracy] = field(default_factory=dict)

    def to_dict(self) -> dict:
        if self.skipped is not None:
            return {"status": f"skipped: {self.skipped}"}
        data: dict = {"images": self.images}
        data.update({key: agreement.to_dict() for key, agreement in self.agreements.items()})
        if self.fp16_every_anchor is not None:
            data[_EVERY_ANCHOR] = self.fp16_every_anchor.to_dict()
        data.update({_ACCURACY_PREFIX + name: scores.to_dict() for name, scores in self.accuracy.items()})
        return data

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> ExportChecks:
        if isinstance(data, Mapping) and "status" in data:
            check_object(data, what, ["status"], source=source)
            status = typed_field(data, "status", str, what, source)
            return cls(skipped=status.removeprefix("skipped: "))
        agreement_keys = [key for key, _ in AGREEMENTS]
        accuracy_keys = [_ACCURACY_PREFIX + name for name in CHECKED_MODELS]
        check_object(data, what, ["images"], [*agreement_keys, _EVERY_ANCHOR, *accuracy_keys], source=source)
        every_anchor = data.get(_EVERY_ANCHOR)
        return cls(
            images=typed_field(data, "images", int, what, source),
            agreements={
                key: DetectionAgreement.from_dict(data[key], f"{what} {key}", source)
                for key in agreement_keys
                if key in data
            },
            fp16_every_anchor=None
            if every_anchor is None
            else AnchorDifferences.from_dict(every_anchor, f"{what} {_EVERY_ANCHOR}", source),
            accuracy={
                key.removeprefix(_ACCURACY_PREFIX): ModelAccuracy.from_dict(
                    data[key], f"{what} {key}", source
                )
                for key in accuracy_keys
                if key in data
            },
        )


@dataclass(frozen=True)
class Float16Facts:
    """The float16-weight conversion: constants stored as float16, those kept float32, constants per type."""

    float16_constants: int
    kept_float32: tuple[str, ...]
    constant_types: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "float16_constants": self.float16_constants,
            "kept_float32": list(self.kept_float32),
            "constant_types": dict(self.constant_types),
        }

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> Float16Facts:
        check_object(data, what, ["float16_constants", "kept_float32", "constant_types"], source=source)
        return cls(
            float16_constants=typed_field(data, "float16_constants", int, what, source),
            kept_float32=_strings(data, "kept_float32", what, source),
            constant_types=count_table(data, "constant_types", what, source),
        )


@dataclass(frozen=True)
class Int8Ranges:
    """The int8 conversion's range floor, and the layers whose range was too narrow to quantize and was widened."""

    range_floor: float
    widened_ranges: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"range_floor": self.range_floor, "widened_ranges": list(self.widened_ranges)}

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> Int8Ranges:
        check_object(data, what, ["range_floor", "widened_ranges"], source=source)
        return cls(
            range_floor=typed_field(data, "range_floor", float, what, source),
            widened_ranges=_strings(data, "widened_ranges", what, source),
        )


@dataclass(frozen=True)
class SpaceToDepthRewrite:
    """The stem conv rewrite: convs rewritten, whether the integers stayed identical, convs refused if not."""

    rewritten: tuple[str, ...]
    identical: bool
    refused: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = {"rewritten": list(self.rewritten), "identical": self.identical}
        if self.refused:
            data["refused"] = list(self.refused)
        return data

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> SpaceToDepthRewrite:
        check_object(data, what, ["rewritten", "identical"], ["refused"], source=source)
        return cls(
            rewritten=_strings(data, "rewritten", what, source),
            identical=typed_field(data, "identical", bool, what, source),
            refused=_strings(data, "refused", what, source) if "refused" in data else (),
        )


@dataclass(frozen=True)
class Int8Graph:
    """The int8 model's input quantization and its ops.

    Attributes:
        input_type / input_scale / input_zero_point: the image input (``UINT8``, 2/255, 128).
        op_counts: op name → count, most frequent first.
        operators: every op in execution order.
        float_ops: ``"index:name"`` of ops that compute in float outside the post-processing.
    """

    input_type: str
    input_scale: float
    input_zero_point: int
    op_counts: dict[str, int]
    operators: tuple[OperatorInfo, ...]
    float_ops: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "input": {
                "type": self.input_type,
                "scale": self.input_scale,
                "zero_point": self.input_zero_point,
            },
            "op_counts": dict(self.op_counts),
            "operators": [operator.to_dict() for operator in self.operators],
            "float_ops": list(self.float_ops),
        }

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> Int8Graph:
        check_object(data, what, ["input", "op_counts", "operators", "float_ops"], source=source)
        given = check_object(data["input"], f"{what} input", ["type", "scale", "zero_point"], source=source)
        return cls(
            input_type=typed_field(given, "type", str, f"{what} input", source),
            input_scale=typed_field(given, "scale", float, f"{what} input", source),
            input_zero_point=typed_field(given, "zero_point", int, f"{what} input", source),
            op_counts=count_table(data, "op_counts", what, source),
            operators=tuple(
                OperatorInfo.from_dict(entry, f"{what} operators", source)
                for entry in typed_field(data, "operators", list, what, source)
            ),
            float_ops=_strings(data, "float_ops", what, source),
        )


@dataclass(frozen=True)
class OnnxFacts:
    """The ONNX conversion: opset, converter and runtime versions, how NMS is expressed, op counts."""

    opset: int
    tf2onnx: str
    onnxruntime: str
    nms: str
    op_counts: dict[str, int]

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"op_counts": dict(self.op_counts)}

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> OnnxFacts:
        check_object(data, what, ["opset", "tf2onnx", "onnxruntime", "nms", "op_counts"], source=source)
        return cls(
            opset=typed_field(data, "opset", int, what, source),
            tf2onnx=typed_field(data, "tf2onnx", str, what, source),
            onnxruntime=typed_field(data, "onnxruntime", str, what, source),
            nms=typed_field(data, "nms", str, what, source),
            op_counts=count_table(data, "op_counts", what, source),
        )


def _postprocess_to_dict(settings: PostprocessSettings, signature: str) -> dict:
    return {f.name: getattr(settings, f.name) for f in fields(settings)} | {
        "scales": list(settings.scales),
        "signature": signature,
    }


def _postprocess_from_dict(data: object, what: str, source) -> tuple[PostprocessSettings, str]:
    names = [f.name for f in fields(PostprocessSettings)]
    check_object(data, what, [*names, "signature"], source=source)
    scales = typed_field(data, "scales", list, what, source)
    if len(scales) != 4:
        raise DataError(f"{what}: scales has {len(scales)} values, not 4", source)
    settings = PostprocessSettings(
        num_classes=typed_field(data, "num_classes", int, what, source),
        max_detections=typed_field(data, "max_detections", int, what, source),
        score_threshold=typed_field(data, "score_threshold", float, what, source),
        iou_threshold=typed_field(data, "iou_threshold", float, what, source),
        use_regular_nms=typed_field(data, "use_regular_nms", bool, what, source),
        scales=tuple(typed_list(data, "scales", float, what, source)),
        detections_per_class=typed_field(data, "detections_per_class", int, what, source),
    )
    return settings, typed_field(data, "signature", str, what, source)


@dataclass
class ExportReport:
    """The content of ``export_report.json`` (see the module docstring). Built step by step by the export.

    Attributes:
        checkpoint / step: what was exported.
        quantization: ``"qat"``, ``"ptq"`` or ``"none"``.
        checkpoint_quantization_aware: whether the checkpoint was trained quantization-aware.
        postprocess / postprocess_signature: the fused op's attributes and its ``experimental_implements`` string.
        class_names: foreground classes, in ``labels.txt`` order.
        input_size: ``(height, width)``.
        calibration_images: training images used to set activation ranges.
        calibrated_ranges: layers whose range came from those images.
        fp16 / int8_ranges / int8_space_to_depth / int8 / edgetpu / onnx: each step's facts, None until it ran.
        files: model file name → bytes, for the files written.
        checks: the accuracy checks, None until they ran.

    Example:
        >>> report = ExportReport("ckpt-5", 5, "ptq", False, PostprocessSettings(num_classes=1), "sig", ("cat",),
        ...                       (128, 128), 4, ())
        >>> ExportReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
        True
    """

    checkpoint: str
    step: int
    quantization: str
    checkpoint_quantization_aware: bool
    postprocess: PostprocessSettings
    postprocess_signature: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    calibration_images: int
    calibrated_ranges: tuple[str, ...]
    fp16: Float16Facts | None = None
    int8_ranges: Int8Ranges | None = None
    int8_space_to_depth: SpaceToDepthRewrite | None = None
    int8: Int8Graph | None = None
    edgetpu: EdgeTpuCompatibility | None = None
    onnx: OnnxFacts | None = None
    files: dict[str, int] = field(default_factory=dict)
    checks: ExportChecks | None = None

    def to_dict(self) -> dict:
        data: dict = {
            "version": EXPORT_REPORT_VERSION,
            "checkpoint": self.checkpoint,
            "step": self.step,
            "quantization": self.quantization,
            "checkpoint_quantization_aware": self.checkpoint_quantization_aware,
            "postprocess": _postprocess_to_dict(self.postprocess, self.postprocess_signature),
            "class_names": list(self.class_names),
            "input_size": list(self.input_size),
            "calibration_images": self.calibration_images,
            "calibrated_ranges": list(self.calibrated_ranges),
            "files": dict(self.files),
        }
        for name in ("fp16", "int8_ranges", "int8_space_to_depth", "int8", "edgetpu", "onnx", "checks"):
            section = getattr(self, name)
            if section is not None:
                data[name] = section.to_dict()
        return data

    def write(self, path: str | Path) -> Path:
        """Write the report atomically (a reader never sees half a file); returns ``path``."""
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> ExportReport:
        """Read an ``export_report.json`` payload.

        Raises:
            DataError: a key missing or unknown, a value of the wrong type, a newer format version; the message
                names ``source``.
        """
        what = Path(source).name if source is not None else EXPORT_REPORT_FILE
        version = check_version(data, what, EXPORT_REPORT_VERSION, source)
        required = (["version"] if version else []) + [
            "checkpoint",
            "step",
            "quantization",
            "checkpoint_quantization_aware",
        ]
        required += [
            "postprocess",
            "class_names",
            "input_size",
            "calibration_images",
            "calibrated_ranges",
            "files",
        ]
        optional = ["fp16", "int8_ranges", "int8_space_to_depth", "int8", "edgetpu", "onnx", "checks"]
        check_object(data, what, required, optional, source=source)
        postprocess, signature = _postprocess_from_dict(data["postprocess"], f"{what} postprocess", source)
        size = typed_field(data, "input_size", list, what, source)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise DataError(f"{what}: input_size is {size!r}, not [height, width]", source)
        sections = {
            "fp16": Float16Facts,
            "int8_ranges": Int8Ranges,
            "int8_space_to_depth": SpaceToDepthRewrite,
            "int8": Int8Graph,
            "edgetpu": EdgeTpuCompatibility,
            "onnx": OnnxFacts,
            "checks": ExportChecks,
        }
        return cls(
            checkpoint=typed_field(data, "checkpoint", str, what, source),
            step=typed_field(data, "step", int, what, source),
            quantization=typed_field(data, "quantization", str, what, source),
            checkpoint_quantization_aware=typed_field(
                data, "checkpoint_quantization_aware", bool, what, source
            ),
            postprocess=postprocess,
            postprocess_signature=signature,
            class_names=_strings(data, "class_names", what, source),
            input_size=(size[0], size[1]),
            calibration_images=typed_field(data, "calibration_images", int, what, source),
            calibrated_ranges=_strings(data, "calibrated_ranges", what, source),
            files=count_table(data, "files", what, source),
            **{
                name: kind.from_dict(data[name], f"{what} {name}", source)
                for name, kind in sections.items()
                if name in data
            },
        )

    @classmethod
    def read(cls, path: str | Path) -> ExportReport:
        """Read an ``export_report.json`` file (see :meth:`from_dict`)."""
        return cls.from_dict(read_json_file(path), path)
