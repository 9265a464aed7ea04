"""QAT export end to end: a checkpoint trained past the QAT switch exports through its own fake-quant ranges.

A real SpaghettiNet-S at 128x128 is trained by ``train()`` from a config with a ``graph_rewriter`` quantization
block, switched to quantization-aware mode a step in, then exported with the default ``--quantize auto``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaghettinet.deploy import edgetpu, tflite
from spaghettinet.deploy.runtime import TfliteDetector

INPUT_SIZE = 128
TRAIN_IMAGES = 16
TRAIN_STEPS = 12  # QAT from step 1, so most steps train the fake-quant ranges


@pytest.fixture(scope="module")
def qat_export(tmp_path_factory) -> dict:
    from demo_training import train_on_demo_photos

    from spaghettinet.deploy.export import export

    root = tmp_path_factory.mktemp("export_qat")
    # With weight averages, as the generated config trains: export must take the averaged weights.
    cfg, _ = train_on_demo_photos(
        root,
        TRAIN_IMAGES,
        seed=5,
        steps=TRAIN_STEPS,
        input_size=INPUT_SIZE,
        quantize=True,
        moving_average=True,
    )
    assert cfg.quantization is not None and 0 < cfg.quantization.delay < TRAIN_STEPS
    result = export(cfg.path, root / "model", root / "exported", score_threshold=0.005)
    return {"root": root, "result": result, "config": cfg, "photos": sorted((root / "split").rglob("*.jpg"))}


def test_auto_picks_qat_for_a_quantization_aware_checkpoint(qat_export):
    result = qat_export["result"]
    assert result.quantization == "qat"
    assert result.step == TRAIN_STEPS
    report = json.loads(result.report_path.read_text())
    assert report["quantization"] == "qat"


def test_qat_int8_model_is_int8_with_uint8_input(qat_export):
    flatbuffer = qat_export["result"].int8_model.read_bytes()
    operators = edgetpu.list_operators(flatbuffer)
    assert edgetpu.float_ops(operators) == []
    float_ops = sorted(op.name for op in operators if op.computes_in_float)
    assert float_ops == ["DEQUANTIZE", "DEQUANTIZE", tflite.POSTPROCESS_OP]
    assert tflite.input_quantization(flatbuffer) == ("UINT8", pytest.approx(2 / 255, abs=1e-7), 128)


def test_qat_int8_model_runs_on_raw_pixels(qat_export):
    detector = TfliteDetector(qat_export["result"].int8_model)
    pixels = np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3)).astype(np.uint8)
    found = detector.detect(pixels)
    assert 0 < len(found.scores) <= 10
    assert np.all(np.isfinite(found.scores)) and np.all(np.isfinite(found.boxes))


def _postprocess_inputs(flatbuffer: bytes, pixels: np.ndarray):
    """The int8 model's box encodings and class scores as the fused op receives them (dequantized), and the
    quantization step of the int8 box encodings."""
    from ai_edge_litert.interpreter import Interpreter

    from spaghettinet.deploy.tflite import _postprocess_operator, _read_model

    model_object = _read_model(flatbuffer)
    subgraph = model_object.subgraphs[0]
    box_input = int(_postprocess_operator(model_object).inputs[0])
    dequantize = next(op for op in subgraph.operators if box_input in [int(t) for t in op.outputs])
    box_step = float(subgraph.tensors[int(dequantize.inputs[0])].quantization.scale[0])
    interpreter = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[np.newaxis])
    interpreter.invoke()
    boxes, scores = (
        interpreter.get_tensor(int(i))[0] for i in _postprocess_operator(model_object).inputs[:2]
    )
    return boxes, scores, box_step


def test_qat_int8_model_computes_the_fake_quant_keras_model(qat_export):
    """Per anchor, the int8 model's scores and box encodings are the quantization-aware Keras model's.

    (Detections cannot be compared here: the logistic's int8 output has a step of 1/256, so a barely trained
    model's scores, all near 0.01, tie in the int8 model.)

    Compared before NMS, so ties between barely trained scores cannot hide a difference; a clamped conv bias
    (``tflite.saturated_biases``) once gave 0.5 instead of 0.01 on a whole feature map.
    """
    from PIL import Image

    from spaghettinet.deploy.runtime import resize_for_model
    from spaghettinet.model.postprocess import sigmoid
    from spaghettinet.training.checkpoints import restore_detector

    result = qat_export["result"]
    flatbuffer = result.int8_model.read_bytes()
    assert tflite.saturated_biases(flatbuffer) == []
    model, _, quantization_aware = restore_detector(qat_export["config"], qat_export["root"] / "model")
    assert quantization_aware
    for photo in qat_export["photos"][:3]:
        with Image.open(photo) as image:
            pixels = resize_for_model(np.asarray(image.convert("RGB")), (INPUT_SIZE, INPUT_SIZE))
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        outputs = model(pixels[np.newaxis].astype(np.float32) * (2.0 / 255.0) - 1.0, training=False)
        keras_scores = sigmoid(np.asarray(outputs["class_logits"])[0])
        keras_boxes = np.asarray(outputs["box_encodings"])[0]
        int8_boxes, int8_scores, box_step = _postprocess_inputs(flatbuffer, pixels)
        # Integer kernels round where the fake-quant graph rounds, give or take one step per layer: a few output
        # steps (scores: the logistic's fixed 1/256) bound the difference; a wrong op is off by far more.
        assert np.abs(int8_scores - keras_scores).max() <= 3 / 256
        assert np.abs(int8_boxes - keras_boxes).max() <= 4 * box_step
