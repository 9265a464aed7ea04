"""Quantization-aware mode: BN folding, weight and activation fake-quant, the switch, int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from spaghettinet.model.blocks import ConvBN
from spaghettinet.model.detector import build_detector
from spaghettinet.model.quantize import (
    ActivationQuantizer,
    calibrate_quantization_ranges,
    fake_quantize_weights,
    is_quantization_aware,
    set_quantization_aware,
)
from spaghettinet.model.tf1_checkpoint import load_tf1_checkpoint


def _random_batch_norm(layer: ConvBN, rng) -> None:
    n = layer.out_channels
    layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
    layer.beta.assign(rng.normal(0, 0.1, n).astype(np.float32))
    layer.moving_mean.assign(rng.normal(0, 0.1, n).astype(np.float32))
    layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))


@pytest.mark.parametrize("depthwise", [False, True])
def test_folded_conv_matches_float_conv_within_weight_quantization(depthwise):
    rng = np.random.default_rng(1)
    layer = ConvBN(8, 3, strides=2, depthwise=depthwise, relu6=False, quantize_output=False, name="probe")
    x = rng.normal(0, 1, (2, 9, 9, 8)).astype(np.float32)
    layer(x)
    layer.kernel.assign(rng.normal(0, 0.3, layer.kernel.shape).astype(np.float32))
    _random_batch_norm(layer, rng)
    expected = layer(x, training=False).numpy()
    kernel, bias = layer._folded_kernel_and_bias()
    folded = layer._convolve(x, kernel) + bias  # BN folding alone is exact
    np.testing.assert_allclose(folded.numpy(), expected, atol=1e-5)
    layer.quantization_aware = True
    quantized = layer(x, training=True).numpy()  # frozen BN: training changes nothing
    error = np.abs(quantized - expected)
    assert 0 < error.max() < 0.02 * np.abs(expected).max()
    np.testing.assert_allclose(layer(x, training=False).numpy(), quantized)


def test_weight_fake_quant_is_per_output_channel_symmetric_narrow_range():
    rng = np.random.default_rng(2)
    kernel = rng.normal(0, 1, (3, 3, 4, 5)).astype(np.float32) * np.arange(1, 6, dtype=np.float32)
    quantized = fake_quantize_weights(tf.constant(kernel)).numpy()
    for channel in range(5):
        bound = np.abs(kernel[..., channel]).max()
        levels = np.round(quantized[..., channel] / (bound / 127))
        np.testing.assert_allclose(quantized[..., channel], levels * bound / 127, atol=1e-5 * bound)
        assert np.abs(levels).max() == 127  # the largest weight keeps its value, narrow range [-127, 127]
    depthwise = rng.normal(0, 1, (3, 3, 6, 1)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[:, None]
    quantized = fake_quantize_weights(tf.constant(depthwise), depthwise=True).numpy()
    np.testing.assert_allclose(
        np.abs(quantized).max(axis=(0, 1, 3)), np.abs(depthwise).max(axis=(0, 1, 3)), rtol=1e-6
    )


def test_activation_range_starts_from_the_first_batch_then_moves_slowly():
    quantizer = ActivationQuantizer()
    values = tf.constant([-1.0, 0.5, 3.0])
    np.testing.assert_array_equal(quantizer(values, training=True).numpy(), values.numpy())  # float: identity
    quantizer.quantization_aware = True
    quantizer(values, training=True)
    assert float(quantizer.range_min.numpy()) == pytest.approx(-1.0, rel=1e-4)
    assert float(quantizer.range_max.numpy()) == pytest.approx(3.0, rel=1e-4)
    quantizer(values * 2, training=True)  # debiased mean of the two batches: (3 + 6) / 2 weighted by the EMA
    assert 4.0 < float(quantizer.range_max.numpy()) < 5.0
    quantizer(values * 100, training=False)  # inference never moves the range
    assert float(quantizer.range_max.numpy()) < 5.0
    step = (float(quantizer.range_max.numpy()) - float(quantizer.range_min.numpy())) / 255
    assert np.abs(quantizer(values, training=False).numpy() - values.numpy()).max() <= step / 2 + 1e-6


@pytest.fixture(scope="module")
def qat_model(reference_dir):
    """S at 128x128 with the reference weights (order-1 activations), switched to QAT and calibrated."""
    # 5 classes: the logits are [1, N, 6], told apart from the boxes by shape (TFLite output names are unreliable).
    model = build_detector("s", 5, (128, 128))
    load_tf1_checkpoint(model, reference_dir / "spaghettinet_edgetpu_s_ckpt" / "model.ckpt")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32) for _ in range(3)]
    test_image = rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    float_outputs = {k: v.numpy() for k, v in model(test_image, training=False).items()}
    variables_before = [v.path for v in model.variables]
    bn_before = model.get_layer("c0n1").blocks[0].expansion.moving_mean.numpy().copy()
    assert not is_quantization_aware(model)
    set_quantization_aware(model, True)
    assert is_quantization_aware(model)
    calibrate_quantization_ranges(model, batches)
    assert [
        v.path for v in model.variables
    ] == variables_before  # same checkpoint before and after the switch
    np.testing.assert_array_equal(model.get_layer("c0n1").blocks[0].expansion.moving_mean.numpy(), bn_before)
    return model, test_image, float_outputs


def test_qat_forward_stays_close_to_float(qat_model):
    model, image, float_outputs = qat_model
    outputs = model(image, training=False)
    for key in ("box_encodings", "class_logits"):
        layer = model.get_layer(key)
        step = (float(layer.range_max.numpy()) - float(layer.range_min.numpy())) / 255
        error = np.abs(outputs[key].numpy() - float_outputs[key])
        # Measured on these random reference weights: ~5 (logits) and ~8 (boxes) output steps on average; the
        # error accumulates over ~40 quantized layers. A broken fold or range would be hundreds of steps. The
        # correlation with the float outputs measured 0.96-0.99 on these weights; a wrong layer drops it to ~0.
        assert error.mean() < 12 * step, (key, error.mean() / step)
        assert np.corrcoef(outputs[key].numpy().ravel(), float_outputs[key].ravel())[0, 1] > 0.9


def test_qat_training_step_has_gradients_for_every_trainable_variable(qat_model):
    model, image, _ = qat_model
    with tf.GradientTape() as tape:
        outputs = model(image, training=True)
        loss = tf.reduce_mean(outputs["class_logits"] ** 2) + tf.reduce_mean(outputs["box_encodings"] ** 2)
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in gradients)


@pytest.mark.slow
def test_qat_model_converts_to_a_fully_int8_tflite(qat_model, tmp_path):
    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model, image, _ = qat_model
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([1, 128, 128, 3], tf.float32, name="image")],
    )
    archive.write_out(str(tmp_path / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.optimizations = [
        tf.lite.Optimize.DEFAULT
    ]  # no representative dataset: the ranges are in the graph
    converter.inference_input_type = tf.uint8
    flatbuffer = converter.convert()

    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    float_ops = []
    for op in interpreter._get_ops_details():
        types = {tensors[i]["dtype"] for i in [*op["inputs"], *op["outputs"]] if i >= 0}
        if np.float32 in types:
            float_ops.append(op["op_name"])
    assert float_ops == ["DEQUANTIZE", "DEQUANTIZE"]
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and "ADD_N" not in ops

    source = interpreter.get_input_details()[0]
    assert source["dtype"] == np.uint8
    scale, zero_point = source["quantization"]
    assert scale == pytest.approx(2 / 255) and zero_point == 128
    pixels = np.clip(np.round(image / scale + zero_point), 0, 255).astype(np.uint8)
    expected = model((pixels.astype(np.float32) - zero_point) * scale, training=False)
    runs = {}
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_REF):  # XNNPACK and the reference kernels
        runner = Interpreter(
            model_content=flatbuffer, experimental_op_resolver_type=resolver
        ).get_signature_runner()
        runs[resolver] = {value.shape[-1]: value for value in runner(image=pixels).values()}
    for key in ("box_encodings", "class_logits"):
        layer = model.get_layer(key)
        step = (float(layer.range_max.numpy()) - float(layer.range_min.numpy())) / 255
        width = expected[key].shape[-1]
        xnnpack, reference = runs[OpResolverType.AUTO][width], runs[OpResolverType.BUILTIN_REF][width]
        assert xnnpack.shape == tuple(expected[key].shape)
        # One-step rounding differences between integer kernels are amplified by these random weights: the two
        # TFLite kernel sets differ from each other by several output steps on average. The Keras QAT model
        # must be no further from TFLite than that (a wrong range or fold would be far outside it).
        kernel_spread = np.abs(xnnpack - reference).mean()
        assert np.abs(xnnpack - expected[key].numpy()).mean() <= 1.5 * kernel_spread + step, key


def test_marking_a_model_loaded_keeps_qat_ranges_fresh():
    from spaghettinet.model.blocks import ConcatQuantizer
    from spaghettinet.model.quantize import mark_ranges_loaded

    model = build_detector("s", 1, (64, 64))
    mark_ranges_loaded(model)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ConcatQuantizer):
            assert float(layer.range_steps.numpy()) > 0
        elif isinstance(layer, ActivationQuantizer) and layer.fixed_range is None:
            assert float(layer.range_steps.numpy()) == 0  # first QAT batch must replace the placeholder range


def test_concat_quantizer_trains_on_one_concat_with_the_per_slice_result():
    """Training quantizes the joined slices at once; inference and export quantize each slice (as the TF1 graph).
    With one shared range both give the same values and the same gradients."""
    from spaghettinet.model.blocks import ConcatQuantizer

    rng = np.random.default_rng(3)
    slices = [tf.constant(rng.uniform(-1.0, 7.0, (2, 4, 4, 3)).astype(np.float32)) for _ in range(3)]
    layer = ConcatQuantizer(enabled=True, tf1_scope="t")
    layer(slices)
    with tf.GradientTape() as tape:
        tape.watch(slices)
        trained = layer(slices, training=True)
        loss = tf.reduce_sum(trained * tf.range(1.0, 10.0))
    gradients = tape.gradient(loss, slices)
    # The range moved once, from the joined batch.
    assert float(layer.range_steps.numpy()) == 1.0
    with tf.GradientTape() as tape:
        tape.watch(slices)
        inferred = layer(slices, training=False)
        loss = tf.reduce_sum(inferred * tf.range(1.0, 10.0))
    np.testing.assert_array_equal(trained.numpy(), inferred.numpy())
    for got, expected in zip(gradients, tape.gradient(loss, slices), strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
