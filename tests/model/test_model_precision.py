"""use_bfloat16: which machines train convolutions in bfloat16, and what the switch changes (training only)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from spaghettinet.model.blocks import ConvBN
from spaghettinet.model.detector import build_detector
from spaghettinet.model.precision import native_bfloat16, set_bfloat16_convolutions
from spaghettinet.model.quantize import set_quantization_aware
from spaghettinet.pipeline_config import PipelineConfig, TrainSettings
from spaghettinet.training.loop import _apply_bfloat16

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


@pytest.mark.skipif(HAS_GPU, reason="a GPU is judged by its compute capability, not the CPU flags")
@pytest.mark.parametrize(
    ("flags", "native", "fragment"),
    [
        ("avx512f avx512_bf16", True, "AVX512_BF16"),
        ("amx_tile amx_bf16", True, "AMX_BF16"),
        ("avx512f avx512_vnni", False, "neither AVX512_BF16 nor AMX"),
    ],
)
def test_cpu_flags_decide_native_bfloat16(tmp_path, monkeypatch, flags, native, fragment):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    support = native_bfloat16(_cpuinfo(tmp_path, flags))
    assert support.native is native
    assert fragment in support.reason


@pytest.mark.skipif(HAS_GPU, reason="a GPU is judged by its compute capability, not the CPU flags")
def test_without_onednn_or_cpuinfo_training_stays_float32(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    support = native_bfloat16(_cpuinfo(tmp_path, "avx512_bf16"))
    assert not support.native and "TF_ENABLE_ONEDNN_OPTS=0" in support.reason
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    assert not native_bfloat16(tmp_path / "missing").native


def _conv_and_input():
    rng = np.random.default_rng(0)
    conv = ConvBN(16, 3, tf1_scope="t/conv", name="t_conv")
    images = tf.constant(rng.normal(size=(2, 12, 12, 8)).astype(np.float32))
    conv(images)
    return conv, images


def test_bfloat16_changes_only_the_float_training_convolution():
    conv, images = _conv_and_input()
    statistics = [conv.moving_mean.numpy(), conv.moving_variance.numpy()]

    def training_call():
        outputs = conv(images, training=True)
        # A training call moves the batch-norm statistics; put them back so that every call sees the same ones.
        conv.moving_mean.assign(statistics[0])
        conv.moving_variance.assign(statistics[1])
        return outputs

    float_training = training_call().numpy()
    float_inference = conv(images, training=False).numpy()

    conv.bfloat16_training = True
    # Evaluation and export (training=False) stay float32.
    np.testing.assert_array_equal(conv(images, training=False).numpy(), float_inference)
    with tf.GradientTape() as tape:
        bf16_training = training_call()
        loss = tf.reduce_sum(bf16_training**2)
    gradients = tape.gradient(loss, conv.trainable_variables)
    assert bf16_training.dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal (the switch did something).
    np.testing.assert_allclose(bf16_training.numpy(), float_training, atol=0.05)
    assert not np.array_equal(bf16_training.numpy(), float_training)
    assert all(g is not None and g.dtype == tf.float32 for g in gradients)
    assert conv.kernel.dtype == tf.float32
    # Quantization-aware training stays float32.
    conv.quantization_aware = True
    quantized = training_call().numpy()
    conv.bfloat16_training = False
    np.testing.assert_array_equal(training_call().numpy(), quantized)


def test_switch_reaches_every_full_convolution_and_no_depthwise_one():
    model = build_detector("s", 3, input_size=(128, 128))
    convs = [layer for layer in model._flatten_layers() if isinstance(layer, ConvBN)]
    full = [layer for layer in convs if not layer.depthwise]
    assert set_bfloat16_convolutions(model, True) == len(full) > 0
    assert all(layer.bfloat16_training for layer in full)
    assert not any(layer.bfloat16_training for layer in convs if layer.depthwise)
    set_quantization_aware(model, True)  # the QAT switch leaves the flag; ConvBN ignores it in that mode
    assert set_bfloat16_convolutions(model, False) == len(full)
    assert not any(layer.bfloat16_training for layer in convs)


@pytest.mark.parametrize("native", [True, False])
def test_training_says_what_use_bfloat16_does_on_this_machine(monkeypatch, native):
    from spaghettinet.model import precision

    reason = "the CPU has AVX512_BF16" if native else "the CPU has neither AVX512_BF16 nor AMX"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: precision.BFloat16Support(native, reason))
    model = build_detector("s", 3, input_size=(128, 128))
    config = PipelineConfig(train=TrainSettings(use_bfloat16=True))
    note = _apply_bfloat16(model, config)
    assert reason in note
    assert ("train in bfloat16" in note) is native and ("training in float32" in note) is not native
    flags = [layer.bfloat16_training for layer in model._flatten_layers() if isinstance(layer, ConvBN)]
    assert any(flags) is native
    assert _apply_bfloat16(model, PipelineConfig()) is None
