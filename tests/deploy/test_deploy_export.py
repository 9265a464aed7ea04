"""Export end to end on a real SpaghettiNet-S at 128x128, checked with real clients.

One model is built, its quantization ranges set on the photos, and exported once per session (conversion is slow); every check that needs
the exported files reads them from that one export.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spaghettinet.deploy import edgetpu, metadata, tflite
from spaghettinet.deploy.export import resolve_quantization
from spaghettinet.deploy.runtime import TfliteDetector, resize_for_model
from spaghettinet.errors import SpaghettiError, UsageError

INPUT_SIZE = (128, 128)
SCORE_THRESHOLD = 0.005  # a few training steps leave scores near the focal prior (~0.01): keep detections


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict:
    """Demo photos → label map → TFRecords → config → checkpoint → export (PTQ int8)."""
    from spaghettinet.data.demo import make_demo
    from spaghettinet.data.labelmap import labelmap
    from spaghettinet.data.tfrecord import tfrecord
    from spaghettinet.deploy.export import export
    from spaghettinet.deploy.runtime import resize_for_model
    from spaghettinet.model.detector import build_detector
    from spaghettinet.pipeline_config import PipelineConfig, write_config
    from spaghettinet.training.checkpoints import TrainingState, make_checkpoint

    root = tmp_path_factory.mktemp("export")
    make_demo(root / "photos", images=8, seed=3)
    label_map = labelmap(root / "photos", root / "label_map.pbtxt")
    tfrecord(root / "train.record", root / "label_map.pbtxt", split_dir=root / "photos")
    cfg = PipelineConfig()
    cfg = replace(
        cfg,
        model=replace(cfg.model, variant="s", num_classes=label_map.num_classes, input_size=INPUT_SIZE),
        train=replace(
            cfg.train,
            batch_size=2,
            num_steps=4,
            warmup_steps=0,
            total_steps=4,
            learning_rate_base=0.01,
            warmup_learning_rate=0.001,
        ),
        train_input=replace(cfg.train_input, label_map_path="label_map.pbtxt", input_paths=["train.record"]),
        eval_input=replace(cfg.eval_input, label_map_path="label_map.pbtxt", input_paths=["train.record"]),
        quantization=None,
    )
    config_path = write_config(cfg, root / "pipeline.config")
    # A checkpoint as `train` writes it. The model is untrained (class bias at the focal prior, scores ~0.01)
    # but its always-on concat fake-quant ranges are set by training-mode passes over the photos, as the first
    # training steps would set them; degenerate ranges would make a PTQ model XNNPACK cannot prepare.
    model = build_detector("s", label_map.num_classes, input_size=INPUT_SIZE)
    batch = np.stack(
        [resize_for_model(_pixels(p), INPUT_SIZE) for p in sorted((root / "photos").glob("*.jpg"))]
    )
    for _ in range(3):
        model(batch * (2 / 255) - 1, training=True)
    state = TrainingState()
    state.step.assign(3)
    make_checkpoint(model, state).write(str(root / "model" / "ckpt-3"))
    result = export(
        config_path, root / "model", root / "exported", score_threshold=SCORE_THRESHOLD, calibration_images=8
    )
    return {
        "root": root,
        "result": result,
        "class_names": label_map.names,
        "photos": sorted((root / "photos").glob("*.jpg")),
    }


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_export_writes_every_output(exported):
    out = exported["result"].out
    for name in (
        "saved_model/saved_model.pb",
        "model_float.tflite",
        "model_int8.tflite",
        "labels.txt",
        "export_report.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text().splitlines() == exported["class_names"]
    assert exported["result"].quantization == "ptq"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_int8_model_is_int8_except_postprocess_and_its_dequantize_inputs(exported):
    flatbuffer = exported["result"].int8_model.read_bytes()
    operators = edgetpu.list_operators(flatbuffer)
    assert edgetpu.float_ops(operators) == []
    float_ops = [op for op in operators if op.computes_in_float]
    assert sorted(op.name for op in float_ops) == ["DEQUANTIZE", "DEQUANTIZE", tflite.POSTPROCESS_OP]
    assert all(op.feeds_postprocess for op in float_ops if op.name == "DEQUANTIZE")
    assert tflite.input_quantization(flatbuffer) == ("UINT8", pytest.approx(2 / 255, abs=1e-7), 128)


def test_outputs_are_canonical(exported):
    for path in (exported["result"].float_model, exported["result"].int8_model):
        detector = TfliteDetector(path)
        shapes = [tuple(d["shape"]) for d in detector.outputs]
        assert shapes == [(1, 10, 4), (1, 10), (1, 10), (1,)]
        assert [d["name"] for d in detector.outputs] == list(tflite.OUTPUT_NAMES)


def test_metadata_labels_and_normalization(exported):
    for path, uint8 in ((exported["result"].float_model, False), (exported["result"].int8_model, True)):
        flatbuffer = path.read_bytes()
        assert metadata.read_packed_labels(flatbuffer) == exported["class_names"]
        md = metadata.read_metadata(flatbuffer)
        subgraph = md.subgraphMetadata[0]
        norm = subgraph.inputTensorMetadata[0].processUnits[0].options
        assert list(norm.mean) == [127.5] and list(norm.std) == [127.5]
        assert list(subgraph.inputTensorMetadata[0].stats.max) == ([255.0] if uint8 else [1.0])
        assert [t.name.decode() for t in subgraph.outputTensorMetadata] == list(
            metadata.OUTPUT_METADATA_NAMES
        )
        assert subgraph.outputTensorGroups[0].name.decode() == "detection_result"


def test_litert_and_mediapipe_agree(exported):
    """MediaPipe's ObjectDetector reads our metadata and gives LiteRT's boxes, labels and scores."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    names = exported["class_names"]
    image = _pixels(exported["photos"][0])
    height, width = image.shape[:2]
    for path in (exported["result"].float_model, exported["result"].int8_model):
        litert = TfliteDetector(path).detect(resize_for_model(image, INPUT_SIZE))
        assert litert.num > 0, f"{path.name} found nothing; the comparison would be empty"
        options = vision.ObjectDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)), score_threshold=0.0, max_results=10
        )
        with vision.ObjectDetector.create_from_options(options) as detector:
            result = detector.detect(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            )
        found = result.detections
        assert len(found) == litert.num
        for i, detection in enumerate(found):
            ymin, xmin, ymax, xmax = np.clip(litert.boxes[i], 0, 1) * [height, width, height, width]
            box = detection.bounding_box
            assert box.origin_x == pytest.approx(xmin, abs=1.0)
            assert box.origin_y == pytest.approx(ymin, abs=1.0)
            assert box.origin_x + box.width == pytest.approx(xmax, abs=1.5)  # two roundings to whole pixels
            assert box.origin_y + box.height == pytest.approx(ymax, abs=1.5)
            assert detection.categories[0].category_name == names[litert.classes[i]]
            assert detection.categories[0].score == pytest.approx(float(litert.scores[i]), abs=0.01)


def test_int8_and_float_match_postprocess_reference(exported):
    """The float model's fused op gives the numpy reference post-processing's detections for the Keras model."""
    report = json.loads(exported["result"].report_path.read_text())
    checks = report["checks"]
    assert checks["images"] == 8
    float_vs_keras = checks["float_vs_keras"]
    assert float_vs_keras["reference_detections"] > 0
    assert float_vs_keras["matched_fraction"] >= 0.9
    assert float_vs_keras["max_score_difference"] < 1e-3
    int8_vs_keras = checks["int8_vs_keras"]
    assert int8_vs_keras["matched"] > 0
    assert int8_vs_keras["mean_iou"] > 0.8


def test_report_has_edgetpu_section(exported):
    report = json.loads(exported["result"].report_path.read_text())
    section = report["edgetpu"]
    assert section["batch_size"] == 1
    assert section["dynamic_shapes"] == []
    assert section["unsupported_ops"] == {}
    assert section["compiler"]["status"] in ("not found", "ok", "failed")
    assert report["int8"]["float_ops"] == []


def test_predict_writes_pictures_and_pixel_boxes(exported, tmp_path):
    from spaghettinet.deploy.predict import predict

    photo = exported["photos"][0]
    result = predict(exported["result"].int8_model, [photo], tmp_path / "pred", threshold=0.0)
    document = json.loads(result.json_path.read_text())
    entry = document["images"][0]
    assert (entry["width"], entry["height"]) == (320, 320)
    assert result.pictures[0].is_file()
    litert = TfliteDetector(exported["result"].int8_model).detect(
        resize_for_model(_pixels(photo), INPUT_SIZE)
    )
    assert len(entry["detections"]) == litert.num
    first = entry["detections"][0]
    assert first["label"] == exported["class_names"][litert.classes[0]]
    assert first["box"]["xmin"] == pytest.approx(max(0.0, litert.boxes[0][1]) * 320, abs=0.01)


def test_predict_rejects_unreadable_image(exported, tmp_path):
    from spaghettinet.deploy.predict import predict
    from spaghettinet.errors import DataError

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        predict(exported["result"].int8_model, [broken], tmp_path / "pred")
    assert not (tmp_path / "pred" / "detections.json").exists()


def test_cli_benchmark_json(exported):
    from typer.testing import CliRunner

    from spaghettinet.cli import app

    runner = CliRunner()
    outcome = runner.invoke(app, ["benchmark", str(exported["result"].int8_model), "--runs", "3", "--json"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output[outcome.output.index("{") :])
    assert data["median_ms"] > 0 and data["op_counts"][tflite.POSTPROCESS_OP] == 1


def test_qat_requires_a_quantization_aware_checkpoint():
    assert resolve_quantization("auto", True, "ckpt") == "qat"
    assert resolve_quantization("auto", False, "ckpt") == "ptq"
    assert resolve_quantization("none", True, "ckpt") == "none"
    with pytest.raises(UsageError, match="quantization-aware"):
        resolve_quantization("qat", False, "ckpt")
    with pytest.raises(UsageError):
        resolve_quantization("int4", False, "ckpt")


def test_signature_string_follows_the_exporter_format():
    settings = tflite.PostprocessSettings(
        num_classes=4, max_detections=7, score_threshold=0.25, use_regular_nms=True
    )
    signature = tflite.postprocess_signature(settings)
    assert signature.startswith(
        'name: "TFLite_Detection_PostProcess" attr { key: "max_detections" value { i: 7 } }'
    )
    assert 'attr { key: "use_regular_nms" value { b: true } }' in signature
    assert 'attr { key: "nms_score_threshold" value { f: 0.250000 } }' in signature
    assert 'attr { key: "num_classes" value { i: 4 } }' in signature
    assert 'attr { key: "max_classes_per_detection" value { i: 1 } }' in signature
    with pytest.raises(SpaghettiError, match="iou"):
        tflite.postprocess_signature(tflite.PostprocessSettings(num_classes=4, iou_threshold=0.0))


def test_calibration_pins_the_uint8_range():
    image = np.full((8, 8, 3), 100, np.uint8)
    image[4, 4] = 255  # scales to 1.0, above what uint8 255 stands for (254/255): must not widen the range
    (batch,) = list(tflite.pinned_calibration_images([image]))
    assert batch.shape == (1, 8, 8, 3)
    assert batch.min() == pytest.approx(-128 * 2 / 255) and batch.max() == pytest.approx(127 * 2 / 255)
    assert batch[0, 5, 5, 0] == pytest.approx(100 * 2 / 255 - 1)


def test_labels_text_rejects_line_breaks():
    assert metadata.labels_text(["a", "b"]) == "a\nb\n"
    with pytest.raises(SpaghettiError):
        metadata.labels_text(["a\nb"])
