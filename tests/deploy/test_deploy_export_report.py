"""``export_report.json`` is read back strictly: what the export wrote loads, anything else names the file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from spaghettinet.deploy.edgetpu import EdgeTpuCompatibility, OperatorInfo
from spaghettinet.deploy.export_report import (
    EXPORT_REPORT_VERSION,
    AnchorDifferences,
    DetectionAgreement,
    ExportChecks,
    ExportReport,
    Float16Facts,
    Int8Graph,
    Int8Ranges,
    ModelAccuracy,
    OnnxFacts,
    SpaceToDepthRewrite,
)
from spaghettinet.deploy.tflite import PostprocessSettings
from spaghettinet.errors import DataError

AGREEMENT = DetectionAgreement(12, 11, 11, 11 / 12, 0.95, 0.7, 0.01, 0.05)


def _full_report() -> ExportReport:
    return ExportReport(
        checkpoint="training-output/ckpt-400",
        step=400,
        quantization="qat",
        checkpoint_quantization_aware=True,
        postprocess=PostprocessSettings(num_classes=2, use_regular_nms=True),
        postprocess_signature='name: "TFLite_Detection_PostProcess"',
        class_names=("cat", "dog"),
        input_size=(320, 256),
        calibration_images=64,
        calibrated_ranges=("s0/concat",),
        fp16=Float16Facts(120, ("anchors",), {"FLOAT16": 120, "FLOAT32": 1}),
        int8_ranges=Int8Ranges(1e-3, ("head/box",)),
        int8_space_to_depth=SpaceToDepthRewrite(("stem: 5x5/2 over 3 channels -> 3x3/1 over 12",), True),
        int8=Int8Graph(
            "UINT8",
            2 / 255,
            128,
            {"CONV_2D": 2, "TFLite_Detection_PostProcess": 1},
            (
                OperatorInfo(0, "CONV_2D", ["UINT8"], ["INT8"]),
                OperatorInfo(1, "CONV_2D", ["INT8"], ["INT8"], True),
            ),
            (),
        ),
        edgetpu=EdgeTpuCompatibility({}, {"DEQUANTIZE": 2}, [], 1, [], {"status": "not found"}),
        onnx=OnnxFacts(17, "1.17.0", "1.20.1", "per-class NonMaxSuppression", {"Conv": 40}),
        files={"model_float.tflite": 9_000_000, "model_int8.tflite": 2_500_000},
        checks=ExportChecks(
            images=30,
            agreements={"int8_vs_keras": AGREEMENT, "fp16_vs_float": replace(AGREEMENT, matched=12)},
            fp16_every_anchor=AnchorDifferences(552, 5e-3, 1e-4, 2e-3, 8e-5, 2e-2, 5e-3),
            accuracy={
                "float": ModelAccuracy(0.41, 0.62, None, {"cat": 0.5, "dog": None}),
                "int8": ModelAccuracy(0.40, 0.60, 0.38, {"cat": 0.49, "dog": None}),
            },
        ),
    )


def _write(tmp_path, payload) -> object:
    path = tmp_path / "export_report.json"
    path.write_text(json.dumps(payload))
    return path


def test_every_section_reads_back_as_written(tmp_path):
    report = _full_report()
    path = report.write(tmp_path / "export_report.json")
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert ExportReport.read(path) == report
    data = json.loads(text)
    assert data["version"] == EXPORT_REPORT_VERSION
    # The layout users and their scripts read: checks keyed by what is compared, AP per model as map_<model>.
    assert data["checks"]["map_int8"]["AP50"] == 0.60 and data["checks"]["int8_vs_keras"]["matched"] == 11
    assert data["checks"]["fp16_vs_float_every_anchor"]["within_tolerance"] is True
    assert data["postprocess"]["signature"].startswith("name:") and data["input_size"] == [320, 256]


def test_a_report_of_an_export_that_stopped_early_reads_back(tmp_path):
    """A float op left in the int8 graph stops the export after the int8 section; the report up to there loads."""
    report = replace(_full_report(), onnx=None, checks=None, int8_space_to_depth=None)
    loaded = ExportReport.read(report.write(tmp_path / "export_report.json"))
    assert loaded == report and loaded.checks is None


def test_skipped_checks_say_why(tmp_path):
    report = replace(
        _full_report(), checks=ExportChecks(skipped="eval_input_reader lists no readable records")
    )
    path = report.write(tmp_path / "export_report.json")
    assert json.loads(path.read_text())["checks"] == {
        "status": "skipped: eval_input_reader lists no readable records"
    }
    assert ExportReport.read(path).checks.skipped == "eval_input_reader lists no readable records"


def test_a_nan_ap_is_written_as_null():
    data = ModelAccuracy(float("nan"), 0.5, None, {"cat": float("nan")}).to_dict()
    assert data == {"AP": None, "AP50": 0.5, "AP75": None, "per_class_ap": {"cat": None}}


def test_a_report_written_before_versions_existed_still_loads(tmp_path):
    data = _full_report().to_dict()
    del data["version"]
    assert ExportReport.read(_write(tmp_path, data)) == _full_report()


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda d: d.update({"mAP": 0.5}), "unknown 'mAP'"),
        (lambda d: d.pop("postprocess"), "missing 'postprocess'"),
        (lambda d: d["checks"]["map_int8"].pop("AP50"), "export_report.json checks map_int8"),
        (lambda d: d["checks"].update({"map_tflite": {}}), "unknown 'map_tflite'"),
        (lambda d: d["checks"]["int8_vs_keras"].update({"matched": "11"}), "matched is '11', not an integer"),
        (lambda d: d["int8"]["input"].update({"scale": None}), "scale is None, not a number"),
        (lambda d: d.update({"input_size": [320]}), "input_size is [320], not [height, width]"),
        (lambda d: d.update({"class_names": ["cat", 7]}), "class_names is 7, not a string"),
        (lambda d: d.update({"version": EXPORT_REPORT_VERSION + 1}), "upgrade it"),
    ],
)
def test_a_report_in_a_layout_nothing_writes_is_named(tmp_path, edit, reason):
    data = _full_report().to_dict()
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as caught:
        ExportReport.read(path)
    assert reason in caught.value.message and caught.value.path == path


@pytest.mark.parametrize("text", ["", "[]", "{", '"report"'])
def test_a_report_that_is_not_a_json_object_is_named(tmp_path, text):
    path = tmp_path / "export_report.json"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        ExportReport.read(path)
    assert caught.value.path == path
