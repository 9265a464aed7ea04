"""Export end to end on a real SpaghettiNet-S at 128x128, checked with real clients.

One model is built, its quantization ranges set on the photos, and exported once per session (conversion is slow); every check that needs
the exported files reads them from that one export.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from spaghettinet.deploy import edgetpu, metadata, tflite
from spaghettinet.deploy.export import resolve_quantization
from spaghettinet.deploy.export_report import EXPORT_REPORT_VERSION, ExportReport
from spaghettinet.deploy.runtime import TfliteDetector, resize_for_model
from spaghettinet.errors import SpaghettiError, UsageError

INPUT_SIZE = (128, 128)
SCORE_THRESHOLD = 0.005  # a few training steps leave scores near the focal prior (~0.01): keep detections
TRAIN_IMAGES = 24
TRAIN_STEPS = 40
#: The ONNX export is tested through the shared export when the optional extra is installed (about 30 s more).
ONNX_INSTALLED = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime"))
NEEDS_ONNX = pytest.mark.skipif(
    not ONNX_INSTALLED,
    reason="export --onnx needs the optional extra: pip install 'spaghettinet[onnx]' (tf2onnx, onnxruntime)",
)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict:
    """Demo photos → split → label map → TFRecords → config → ``train`` (a short real run) → export (PTQ int8).

    The model is a real but barely trained one, as users export early: its activation ranges are the hard case
    (dead or constant channels) that once gave int8 models XNNPACK refused to load.
    """
    from demo_training import train_on_demo_photos

    from spaghettinet.deploy.export import export

    root = tmp_path_factory.mktemp("export")
    cfg, label_map = train_on_demo_photos(
        root, TRAIN_IMAGES, seed=3, steps=TRAIN_STEPS, input_size=INPUT_SIZE[0], quantize=False
    )
    result = export(
        cfg.path,
        root / "model",
        root / "exported",
        score_threshold=SCORE_THRESHOLD,
        calibration_images=16,
        onnx=ONNX_INSTALLED,
    )
    return {
        "root": root,
        "result": result,
        "class_names": label_map.names,
        "photos": sorted((root / "split" / "test").glob("*.jpg")),
        "test_images": len(list((root / "split" / "test").glob("*.jpg"))),
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
        "model_fp16.tflite",
        "model_int8.tflite",
        "labels.txt",
        "export_report.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text().splitlines() == exported["class_names"]
    assert exported["result"].quantization == "ptq"
    assert exported["result"].fp16_model == out / "model_fp16.tflite"
    report = json.loads(exported["result"].report_path.read_text())
    assert {"model_float.tflite", "model_fp16.tflite", "model_int8.tflite"} <= set(report["files"])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    # What the report, the model card and `run` read back is what the export wrote.
    assert ExportReport.read(exported["result"].report_path) == exported["result"].report
    assert report["version"] == EXPORT_REPORT_VERSION
    # Several classes: per-class NMS unless asked otherwise, so neighbouring objects of two classes both stay.
    assert len(exported["class_names"]) > 1 and report["postprocess"]["use_regular_nms"] is True


def test_int8_model_is_int8_except_postprocess_and_its_dequantize_inputs(exported):
    flatbuffer = exported["result"].int8_model.read_bytes()
    operators = edgetpu.list_operators(flatbuffer)
    assert edgetpu.float_ops(operators) == []
    float_ops = [op for op in operators if op.computes_in_float]
    assert sorted(op.name for op in float_ops) == ["DEQUANTIZE", "DEQUANTIZE", tflite.POSTPROCESS_OP]
    assert all(op.feeds_postprocess for op in float_ops if op.name == "DEQUANTIZE")
    assert tflite.input_quantization(flatbuffer) == ("UINT8", pytest.approx(2 / 255, abs=1e-7), 128)


def test_outputs_are_canonical(exported):
    result = exported["result"]
    for path in (result.float_model, result.fp16_model, result.int8_model):
        detector = TfliteDetector(path)
        shapes = [tuple(d["shape"]) for d in detector.outputs]
        assert shapes == [(1, 10, 4), (1, 10), (1, 10), (1,)]
        assert [d["name"] for d in detector.outputs] == list(tflite.OUTPUT_NAMES)


def test_metadata_labels_and_normalization(exported):
    result = exported["result"]
    for path, uint8 in ((result.float_model, False), (result.fp16_model, False), (result.int8_model, True)):
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
    """MediaPipe's ObjectDetector reads our metadata and gives LiteRT's boxes, labels and scores.

    Both get the same pixels: the photo already at the model's input size, so MediaPipe's own resize (which
    samples differently from training's) is not part of the comparison, only the model and its metadata are.
    """
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    names = exported["class_names"]
    image = np.clip(np.rint(resize_for_model(_pixels(exported["photos"][0]), INPUT_SIZE)), 0, 255)
    image = image.astype(np.uint8)
    height, width = INPUT_SIZE
    result = exported["result"]
    for path in (result.float_model, result.fp16_model, result.int8_model):
        litert = TfliteDetector(path).detect(image)
        assert litert.num > 0, f"{path.name} found nothing; the comparison would be empty"
        options = vision.ObjectDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)), score_threshold=0.0, max_results=10
        )
        with vision.ObjectDetector.create_from_options(options) as detector:
            result = detector.detect(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            )
        # Per-class NMS can keep one box for two classes; MediaPipe reports such rows as one detection with
        # several categories. One entry per (box, category), as LiteRT has one row per (box, class).
        found = [
            SimpleNamespace(bounding_box=detection.bounding_box, categories=[category])
            for detection in result.detections
            for category in detection.categories
        ]
        assert len(found) == litert.num
        # Matched as sets: equal scores (common in a barely trained model) may come out in another order.
        unmatched = list(found)
        for i in range(litert.num):
            # Unclipped: MediaPipe keeps a box's full size when it crosses the image edge (see _same_detection).
            ymin, xmin, ymax, xmax = litert.boxes[i] * [height, width, height, width]
            expected = {
                "box": (xmin, ymin, xmax, ymax),
                "label": names[litert.classes[i]],
                "score": float(litert.scores[i]),
            }
            same = [d for d in unmatched if _same_detection(d, expected)]
            assert same, f"{path.name}: LiteRT detection {expected} not found in MediaPipe's {unmatched}"
            unmatched.remove(same[0])


def _same_detection(detection, expected: dict) -> bool:
    """A MediaPipe detection equals a LiteRT one: same label, score within 0.01, box within one pixel.

    MediaPipe reports whole pixels (origin and size each truncated), so each of its four numbers is compared
    with LiteRT's to within one pixel. A box that crosses the left or top edge keeps its full width and height
    there, with the origin moved to 0, and no size is larger than the image's: measured with boxes starting at
    x = -2.5 (MediaPipe: origin 0, width 25 for a box 25.0 wide), from y = -39.0 to 98.6 in a 128-pixel image
    (origin 0, height 128, not 137) and from x = 43.7 to 133.6 (origin 43, width 89: not cut at the right edge).
    """
    box = detection.bounding_box
    xmin, ymin, xmax, ymax = expected["box"]
    height, width = INPUT_SIZE
    origin_x, origin_y = max(xmin, 0.0), max(ymin, 0.0)
    return (
        abs(box.origin_x - origin_x) <= 1.0
        and abs(box.origin_y - origin_y) <= 1.0
        and abs(box.width - min(xmax - xmin, width)) <= 1.0
        and abs(box.height - min(ymax - ymin, height)) <= 1.0
        and detection.categories[0].category_name == expected["label"]
        and abs(detection.categories[0].score - expected["score"]) <= 0.01
    )


def test_int8_and_float_match_postprocess_reference(exported):
    """The float model's fused op gives the Keras model's detections under the op's own (fast NMS) rules.

    Both sides run the same algorithm in float32, so scores agree to rounding; a detection may only differ where
    two candidates tie to within rounding. Rounding here is the convolutions' sums taken in another order (LiteRT's
    XNNPACK against TensorFlow's oneDNN), measured up to 1.3e-5 in a score on this model; where such a difference
    puts a value on the other side of a rounding edge of the always-on 8-bit concat quantization, it moves a whole
    step and a score by up to about 1e-3 (measured 9.4e-4 on the demo model). A wrong op is off by far more.
    """
    report = json.loads(exported["result"].report_path.read_text())
    checks = report["checks"]
    assert checks["images"] == exported["test_images"]
    for key in ("map_float", "map_int8"):
        assert set(checks[key]) >= {"AP", "AP50", "AP75", "per_class_ap"}
        assert sorted(checks[key]["per_class_ap"]) == sorted(exported["class_names"])
    float_vs_keras = checks["float_vs_keras"]
    assert float_vs_keras["reference_detections"] > 0
    assert float_vs_keras["matched_fraction"] >= 0.9
    assert float_vs_keras["max_score_difference"] < 5e-3
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


def test_nms_default_is_per_class_for_several_classes_and_fast_for_one(tmp_path):
    from spaghettinet.cli import main
    from spaghettinet.deploy.export import default_regular_nms

    assert (
        default_regular_nms(1) is False and default_regular_nms(2) is True and default_regular_nms(90) is True
    )
    # Both spellings of the switch are accepted by the CLI (the bad checkpoint then stops it, exit code 1).
    for switch in ("--regular-nms", "--fast-nms"):
        with pytest.raises(SystemExit) as stopped:
            main(
                [
                    "export",
                    "--config",
                    str(tmp_path / "none.config"),
                    "--checkpoint",
                    str(tmp_path),
                    "--out",
                    str(tmp_path / "out"),
                    switch,
                ]
            )
        assert stopped.value.code == 1


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


def test_labels_text_rejects_line_breaks():
    assert metadata.labels_text(["a", "b"]) == "a\nb\n"
    with pytest.raises(SpaghettiError):
        metadata.labels_text(["a\nb"])


def test_int8_activation_scales_are_not_degenerate(exported):
    """No activation scale below a dead range's: degenerate scales are what XNNPACK refuses to prepare."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(
        bytearray(exported["result"].int8_model.read_bytes())
    )
    int8_type = 9  # schema TensorType.INT8
    scales = [
        float(tensor.quantization.scale[0])
        for tensor in model.subgraphs[0].tensors
        if tensor.type == int8_type
        and model.buffers[tensor.buffer].data is None  # activations only (weights carry their own data)
        and tensor.quantization is not None
        and tensor.quantization.scale is not None
        and len(tensor.quantization.scale) == 1
    ]
    assert scales, "no int8 activation tensors found"
    assert min(scales) >= tflite.DEAD_RANGE_WIDTH / 255
    ranges = json.loads(exported["result"].report_path.read_text())["int8_ranges"]
    assert ranges["range_floor"] in tflite.RANGE_FLOORS


def test_floor_widens_dead_and_narrow_ranges():
    from spaghettinet.model.quantize import ActivationQuantizer
    from spaghettinet.tf_runtime import import_keras

    keras = import_keras()
    layers = [ActivationQuantizer(name=name) for name in ("dead", "narrow", "live")]
    model = keras.Sequential([keras.Input((4,)), *layers])
    for layer, (low, high) in zip(layers, ((0.0, 0.0), (0.0, 0.004), (-2.0, 3.0)), strict=True):
        layer.range_min.assign(low)
        layer.range_max.assign(high)

    def ranges():
        return [(float(x.range_min.numpy()), float(x.range_max.numpy())) for x in layers]

    assert tflite.floor_activation_ranges(model) == ["dead"]
    assert ranges() == [
        (0.0, pytest.approx(tflite.DEAD_RANGE_FILL)),
        (0.0, pytest.approx(0.004)),
        (-2.0, 3.0),
    ]
    assert tflite.floor_activation_ranges(model, min_width=0.01) == ["narrow"]
    assert ranges()[1] == (0.0, pytest.approx(0.01)) and ranges()[2] == (-2.0, 3.0)


def test_cli_predict_on_int8_model(exported, tmp_path):
    from typer.testing import CliRunner

    from spaghettinet.cli import app

    photos = exported["photos"][:2]
    outcome = CliRunner().invoke(
        app,
        [
            "predict",
            str(exported["result"].int8_model),
            *map(str, photos),
            "--out",
            str(tmp_path / "pred"),
            "--threshold",
            "0",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    document = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert len(document["images"]) == 2
    assert all(entry["detections"] for entry in document["images"])
    assert all(label in exported["class_names"] for e in document["images"] for label in _labels(e))
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2


def _labels(entry: dict) -> list[str]:
    return [detection["label"] for detection in entry["detections"]]


def test_cli_export_table_shows_float_and_int8_map(exported):
    from rich.console import Console

    from spaghettinet.cli.export import _export_table

    report = json.loads(exported["result"].report_path.read_text())
    console = Console(width=200, record=True)
    console.print(_export_table(ExportReport.from_dict(report)))
    text = console.export_text()
    checks = report["checks"]
    models = ["float", "fp16", "int8"] + (["onnx"] if ONNX_INSTALLED else [])
    row = next(line for line in text.splitlines() if f"COCO AP50 {' / '.join(models)}" in line)
    assert " / ".join(f"{checks[f'map_{name}']['AP50']:.3f}" for name in models) in row
    assert "int8 ranges widened" in text
    assert "fp16 vs float, every anchor" in text and "within tolerance" in text


def test_restored_model_has_every_trained_weight(exported):
    """Export restores without the optimizer: each trained weight must come back from the checkpoint.

    Layers Keras keeps in Python lists were once left out of the checkpoint's model graph (their trained
    weights only reachable through the optimizer), so export silently shipped an untrained backbone.
    """
    from collections import defaultdict

    from spaghettinet.pipeline_config import read_config
    from spaghettinet.tf_runtime import import_tensorflow
    from spaghettinet.training.checkpoints import latest_checkpoint, restore_detector

    tf = import_tensorflow()
    root = exported["root"]
    prefix = latest_checkpoint(root / "model")
    reader = tf.train.load_checkpoint(prefix)
    stored = defaultdict(list)
    for name, shape in tf.train.list_variables(prefix):
        if "optimizer/_variables" not in name:  # momentum slots are not weights
            stored[tuple(shape)].append(reader.get_tensor(name))
    model, _, _ = restore_detector(read_config(root / "pipeline.config"), prefix)
    missing = [
        v.path
        for v in model.trainable_variables
        if not any(np.array_equal(v.numpy(), value) for value in stored[tuple(v.shape)])
    ]
    assert missing == []


def test_clamped_conv_biases_are_detected(exported):
    """Export retries with wider ranges when a conv bias did not fit int32; the check must see a clamped one."""
    from ai_edge_litert.tools import flatbuffer_utils

    flatbuffer = exported["result"].int8_model.read_bytes()
    assert tflite.saturated_biases(flatbuffer) == []
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    subgraph = model.subgraphs[0]
    int32_type = 2  # schema TensorType.INT32
    conv = next(
        op
        for op in subgraph.operators
        if len(op.inputs) >= 3 and op.inputs[2] >= 0 and subgraph.tensors[op.inputs[2]].type == int32_type
    )
    bias_buffer = model.buffers[subgraph.tensors[conv.inputs[2]].buffer]
    values = np.frombuffer(np.asarray(bias_buffer.data, np.uint8).tobytes(), dtype="<i4").copy()
    values[0] = np.iinfo(np.int32).min
    bias_buffer.data = np.frombuffer(values.astype("<i4").tobytes(), dtype=np.uint8)
    corrupted = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    expected = subgraph.tensors[conv.outputs[0]].name.decode()
    assert tflite.saturated_biases(corrupted) == [expected]


def test_int8_stem_is_rewritten_as_space_to_depth(exported):
    """The 5x5 stride-2 RGB stem runs as SPACE_TO_DEPTH + 3x3 conv in the int8 model, computing the same integers."""
    report = json.loads(exported["result"].report_path.read_text())
    section = report["int8_space_to_depth"]
    assert section["identical"] is True
    assert (
        len(section["rewritten"]) == 1 and "5x5/2 over 3 channels -> 3x3/1 over 12" in section["rewritten"][0]
    )
    assert report["int8"]["op_counts"]["SPACE_TO_DEPTH"] == 1
    assert "SPACE_TO_DEPTH" not in edgetpu.op_counts(
        edgetpu.list_operators(exported["result"].float_model.read_bytes())
    )


@pytest.mark.parametrize("kernel, pad_before", [(3, 0), (5, 1), (7, 2), (9, 3)])
def test_space_to_depth_kernel_covers_every_tap_once(kernel, pad_before):
    side, offset = tflite.space_to_depth_kernel(kernel, pad_before)
    assert side % 2 == 1
    taps = [2 * block + d - offset for block in range(side) for d in (0, 1)]
    assert sorted(t for t in taps if 0 <= t < kernel) == list(range(kernel))
    # The block conv pads (side - 1) // 2 blocks: its first pixel is the stride-2 conv's first (padded) pixel.
    assert 2 * ((side - 1) // 2) - offset == pad_before


def _int8_model_with_stem(kernel: int, size: int = 32) -> bytes:
    """uint8 pixels in, a ``kernel``² stride-2 SAME conv over RGB (ReLU6), a 1x1 conv: int8 as the export makes it."""
    from spaghettinet.tf_runtime import import_keras, import_tensorflow

    tf = import_tensorflow()
    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), batch_size=1),
            keras.layers.Conv2D(8, kernel, strides=2, padding="same", activation="relu6"),
            keras.layers.Conv2D(4, 1),
        ]
    )
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)] for _ in range(8)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    return bytes(converter.convert())


def _run(flatbuffer: bytes, images: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    found = []
    for image in images:
        interpreter.set_tensor(input_index, image)
        interpreter.invoke()
        found.append(interpreter.get_tensor(output_index).copy())
    return found


def test_space_to_depth_stem_gives_the_same_integers():
    original = _int8_model_with_stem(kernel=5)
    rewritten, info = tflite.space_to_depth_strided_convs(original)
    assert info["identical"] is True and len(info["rewritten"]) == 1
    operators = [op.name for op in edgetpu.list_operators(rewritten)]
    assert operators.index("SPACE_TO_DEPTH") == operators.index("CONV_2D") - 1
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (1, 32, 32, 3), endpoint=False).astype(np.uint8) for _ in range(4)]
    images.append(np.full((1, 32, 32, 3), 255, np.uint8))  # saturated edges: the padding must read as 0 too
    for want, got in zip(_run(original, images), _run(rewritten, images), strict=True):
        assert np.array_equal(want, got)


def test_space_to_depth_leaves_convs_it_would_not_shorten():
    """A 3x3 stride-2 stem pads 9 x 8 channel slots; as a 3x3 over 12 channels it would pad 9 x 16: kept as it is."""
    original = _int8_model_with_stem(kernel=3)
    rewritten, info = tflite.space_to_depth_strided_convs(original)
    assert rewritten == original and info == {"rewritten": [], "identical": True}


def test_fp16_model_stores_float16_weights(exported):
    """Every float constant but the op's anchors is float16 in the file, each read through a DEQUANTIZE to float32."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    result = exported["result"]
    fp16_bytes = result.fp16_model.read_bytes()
    float_types = tflite.constant_types(result.float_model.read_bytes())
    fp16_types = tflite.constant_types(fp16_bytes)
    assert fp16_types["FLOAT32"] == 1  # the post-processing op's anchors
    assert fp16_types["FLOAT16"] == float_types["FLOAT32"] - 1
    assert fp16_types.get("INT32") == float_types.get("INT32")
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp16_bytes))
    subgraph = model.subgraphs[0]
    dequantized = {}
    for operator in subgraph.operators:
        if _builtin(model, operator) == schema.BuiltinOperator.DEQUANTIZE:
            source = subgraph.tensors[operator.inputs[0]]
            dequantized[int(operator.outputs[0])] = source.type
    convs = (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    weights = [
        int(operator.inputs[1]) for operator in subgraph.operators if _builtin(model, operator) in convs
    ]
    assert weights and all(dequantized.get(w) == schema.TensorType.FLOAT16 for w in weights)
    assert subgraph.tensors[subgraph.inputs[0]].type == schema.TensorType.FLOAT32
    # Half the float file, give or take the metadata and the float32 anchors.
    assert 0.45 < len(fp16_bytes) / len(result.float_model.read_bytes()) < 0.55


def _builtin(model, operator) -> int:
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def test_fp16_model_agrees_with_float_model(exported):
    """The fp16 file's detections are the float file's; at every anchor they differ by float16 rounding only."""
    checks = json.loads(exported["result"].report_path.read_text())["checks"]
    fp16_vs_float = checks["fp16_vs_float"]
    assert fp16_vs_float["reference_detections"] > 0
    assert fp16_vs_float["matched_fraction"] >= 0.9
    assert fp16_vs_float["mean_iou"] > 0.99
    every_anchor = checks["fp16_vs_float_every_anchor"]
    assert every_anchor["within_tolerance"] is True
    assert 0 < every_anchor["max_score_difference"] <= every_anchor["tolerance"]["score"]
    assert every_anchor["max_box_difference"] <= every_anchor["tolerance"]["box"]
    assert checks["fp16_vs_keras"]["matched_fraction"] >= 0.9
    assert sorted(checks["map_fp16"]["per_class_ap"]) == sorted(exported["class_names"])
    ap = (checks["map_float"]["AP"], checks["map_fp16"]["AP"])
    assert None in ap or abs(ap[0] - ap[1]) < 0.01


@NEEDS_ONNX
def test_onnx_model_agrees_with_float_tflite(exported):
    """``--onnx``: NMS as ONNX's NonMaxSuppression, run by onnxruntime, gives the float .tflite's detections."""
    from spaghettinet.deploy.onnx_export import read_labels
    from spaghettinet.deploy.runtime import OnnxDetector

    result = exported["result"]
    assert result.onnx_model == result.out / "model.onnx" and result.onnx_model.is_file()
    report = json.loads(result.report_path.read_text())
    assert report["onnx"]["op_counts"]["NonMaxSuppression"] == 1
    assert report["files"]["model.onnx"] == result.onnx_model.stat().st_size
    assert read_labels(result.onnx_model.read_bytes()) == exported["class_names"]
    onnx_vs_float = report["checks"]["onnx_vs_float"]
    assert onnx_vs_float["reference_detections"] > 0
    assert onnx_vs_float["matched_fraction"] >= 0.9
    # float32 both, sums in another order: measured 7e-6 here, 1.3e-3 on the demo model where a value crosses a
    # rounding edge of the 8-bit concat quantization (see test_int8_and_float_match_postprocess_reference).
    assert onnx_vs_float["max_score_difference"] < 5e-3
    assert sorted(report["checks"]["map_onnx"]["per_class_ap"]) == sorted(exported["class_names"])
    image = resize_for_model(_pixels(exported["photos"][0]), INPUT_SIZE)
    found = OnnxDetector(result.onnx_model).detect(image)
    expected = TfliteDetector(result.float_model).detect(image)
    assert found.num == expected.num > 0
    assert np.allclose(found.scores, expected.scores, atol=5e-3)


def test_onnx_without_the_extra_is_a_usage_error_naming_it(monkeypatch, tmp_path, capsys):
    """Without the extra, ``export --onnx`` stops at once with one line naming what is missing (exit code 2)."""
    import sys

    from spaghettinet.cli import main
    from spaghettinet.deploy.export import export

    # A None entry makes the import raise ImportError, whether or not the package is installed here.
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UsageError, match=r"tf2onnx and onnxruntime are not installed.*spaghettinet\[onnx\]"):
        export(tmp_path / "pipeline.config", tmp_path / "model", tmp_path / "out", onnx=True)
    arguments = ["--config", str(tmp_path / "pipeline.config"), "--checkpoint", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        main(["export", *arguments, "--out", str(tmp_path / "out"), "--onnx"])
    assert stopped.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert error_lines[-1] == (
        "error: --onnx needs the optional packages tf2onnx and onnxruntime (tf2onnx and onnxruntime are not "
        "installed): pip install 'spaghettinet[onnx]'"
    )
    assert not (tmp_path / "out").exists()
