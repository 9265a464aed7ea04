"""The detector's structure: parameter counts and variable names against the reference, outputs, arguments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaghettinet.errors import UsageError
from spaghettinet.model.architecture import FEATURE_NODES, get_architecture
from spaghettinet.model.detector import build_detector, feature_extractor
from spaghettinet.model.tf1_checkpoint import tf1_variable_map

REFERENCE_TRAINABLE = {"s": 3_478_933, "m": 4_169_829, "l": 5_758_389}  # spec §1.9


@pytest.fixture(scope="module")
def small_s():
    return build_detector("s", num_classes=3, input_size=(128, 128))


@pytest.mark.parametrize("letter", ["s", "m", "l"])
def test_variables_and_trainable_counts_equal_the_reference(letter, reference_dir):
    # Built at a small input: variable shapes do not depend on the input size.
    model = build_detector(letter, 90, (64, 64))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == REFERENCE_TRAINABLE[letter]
    inventory = json.loads((reference_dir / f"spaghettinet_edgetpu_{letter}_variables.json").read_text())
    expected = {v["name"]: tuple(v["shape"]) for v in inventory["variables"]}
    mapped = {name: tuple(int(d) for d in var.shape) for name, var in tf1_variable_map(model).items()}
    assert mapped == expected
    trainable_names = {v["name"] for v in inventory["variables"] if v["trainable"]}
    assert {n for n, var in tf1_variable_map(model).items() if var.trainable} == trainable_names


def test_outputs_anchors_and_feature_maps_at_128(small_s):
    images = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    outputs = small_s(images, training=False)
    anchors = small_s.anchors
    # 128 px: maps 8x8 (3 anchors), 4x4, 2x2, 1x1, 1x1 (6 anchors each).
    assert anchors.shape == (8 * 8 * 3 + (16 + 4 + 1 + 1) * 6, 4)
    assert anchors.dtype == np.float32
    assert outputs["box_encodings"].shape == (2, anchors.shape[0], 4)
    assert outputs["class_logits"].shape == (2, anchors.shape[0], 4)
    maps = feature_extractor(small_s)(images)
    assert [tuple(m.shape[1:3]) for m in maps] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert [small_s.get_layer(n).name for n in FEATURE_NODES] == list(FEATURE_NODES)
    assert (small_s.variant, small_s.num_classes, small_s.input_size) == (
        "spaghettinet_edgetpu_s",
        3,
        (128, 128),
    )


def test_class_bias_starts_at_the_focal_prior_and_regularization_is_exposed(small_s):
    bias = small_s.get_layer("BoxPredictor_0").class_predictor.bias.numpy()
    np.testing.assert_allclose(bias, -4.6, atol=1e-3)  # a tiny spread, see head._spread_constant
    assert len(np.unique(bias)) == bias.size
    # slim L2 on every conv kernel (extractor 1e-5, predictor 4e-5), none on biases or batch norm.
    kernels = [v for v in small_s.trainable_variables if v.name in ("weights", "depthwise_weights")]
    assert len(small_s.losses) == len(kernels)
    head = small_s.get_layer("BoxPredictor_1").class_predictor
    expected = 4e-5 / 2 * float(np.sum(np.square(head.kernel.numpy())))
    assert any(abs(float(loss) - expected) < 1e-9 for loss in small_s.losses)


def test_training_step_updates_batch_norm_statistics_and_concat_range(small_s):
    import tensorflow as tf

    model = build_detector("s", 2, (33, 47))  # the smallest size the reference accepts, non-square
    layer = model.get_layer("n1").blocks[0]
    before_mean = layer.slices[0].moving_mean.numpy().copy()
    before_max = float(layer.concat.range_max.numpy())
    images = tf.random.uniform([2, 33, 47, 3], -1, 1)
    with tf.GradientTape() as tape:
        out = model(images, training=True)
        loss = tf.reduce_mean(tf.square(out["class_logits"])) + tf.reduce_mean(out["box_encodings"] ** 2)
        loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    assert not np.allclose(layer.slices[0].moving_mean.numpy(), before_mean)
    # Zero-debiased EMA: the first training batch replaces the initial max of 6.
    assert float(layer.concat.range_max.numpy()) != before_max
    assert out["box_encodings"].shape[1] == model.anchors.shape[0]


@pytest.mark.parametrize("name", ["S", "spaghettinet_edgetpu_m", "l"])
def test_variant_names_accepted(name):
    assert get_architecture(name).name.startswith("spaghettinet_edgetpu_")


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="valid variants: s, m, l"):
        build_detector("xl", 3)
    with pytest.raises(UsageError, match="at least 33"):
        build_detector("s", 3, (32, 128))
    with pytest.raises(UsageError, match="num_classes"):
        build_detector("s", 0)
