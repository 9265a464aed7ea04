"""Loading and inspecting TF1 checkpoints: fine-tuning, wrong variant, training-state entries, bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spaghettinet.errors import DataError
from spaghettinet.model.detector import build_detector
from spaghettinet.model.tf1_checkpoint import (
    inspect_checkpoint,
    is_ignored_checkpoint_entry,
    load_tf1_checkpoint,
)


def _save_tf1_checkpoint(prefix, tensors: dict) -> str:
    """Write a name-keyed (TF1-style) checkpoint, as the Object Detection API's Saver does."""
    import tensorflow as tf

    names = list(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return str(prefix)


@pytest.fixture(scope="module")
def s_checkpoint(reference_dir):
    return reference_dir / "spaghettinet_edgetpu_s_ckpt" / "model.ckpt"


@pytest.fixture(scope="module")
def s_reader(s_checkpoint):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(s_checkpoint))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def s_model_64():
    """A small S model shared by the tests that load into it (each load overwrites every weight it reports)."""
    return build_detector("s", 90, (64, 64))


def test_other_num_classes_loads_all_but_the_class_predictors(s_checkpoint, s_reader):
    # Weights do not depend on the input size, so a 128x128 model takes the 320x320 checkpoint.
    model = build_detector("s", num_classes=3, input_size=(128, 128))
    head = model.get_layer("BoxPredictor_2")
    report = load_tf1_checkpoint(model, s_checkpoint)
    assert report.fine_tuning
    assert report.checkpoint_num_classes == 90
    assert sorted(report.skipped_class_head) == sorted(
        f"BoxPredictor_{i}/ClassPredictor/{p}" for i in range(5) for p in ("weights", "biases")
    )
    assert report.missing == [] and report.unused == []
    assert len(report.loaded) == 596 - 10
    np.testing.assert_array_equal(
        head.class_depthwise.kernel.numpy(),
        s_reader["BoxPredictor_2/ClassPredictor_depthwise/depthwise_weights"],
    )
    np.testing.assert_allclose(
        head.class_predictor.bias.numpy(), -4.6, atol=1e-3
    )  # fresh layer keeps the focal prior
    assert "fine-tuning" in report.summary()


def test_training_state_entries_are_ignored_and_strays_reported(tmp_path, s_reader, s_model_64):
    arch = "FeatureExtractor/spaghettinet_edgetpu_s/spaghetti_net"
    extra = {
        "global_step": np.array(400000, np.int64),
        f"{arch}/n2_0/expansion/weights/Momentum": s_reader[f"{arch}/n2_0/expansion/weights"],
        f"{arch}/n1_0/concat/{arch}/n1_0/concat/min/biased": np.float32(0),
        f"{arch}/n1_0/concat/{arch}/n1_0/concat/min/local_step": np.float32(3),
        f"{arch}/n2_0/expansion/weights_quant/min": np.float32(-1),
        f"{arch}/n2_0/expansion/act_quant/max": np.float32(6),
        "BoxPredictor_0/ClassPredictor/ExponentialMovingAverage": np.zeros(3, np.float32),
        "SomethingElse/weights": np.zeros(3, np.float32),
    }
    tensors = {**s_reader, **extra}
    del tensors[f"{arch}/c0n5_1/pointwise/BatchNorm/gamma"]
    prefix = _save_tf1_checkpoint(tmp_path / "model.ckpt-7", tensors)
    report = load_tf1_checkpoint(s_model_64, tmp_path)  # a folder works too
    assert sorted(report.ignored) == sorted(set(extra) - {"SomethingElse/weights"})
    assert report.unused == ["SomethingElse/weights"]
    assert report.missing == [f"{arch}/c0n5_1/pointwise/BatchNorm/gamma"]
    assert report.prefix == prefix
    assert not report.complete


@pytest.mark.parametrize(
    "name",
    [
        "global_step",
        "a/b/weights/Momentum",
        "a/b/weights/Adam_1",
        "a/b/ExponentialMovingAverage",
        "x/y/min/biased",
        "x/y/local_step",
        "a/weights_quant/max",
        "a/act_quant/min",
        "a/add_quant/min",
    ],
)
def test_ignore_patterns(name):
    assert is_ignored_checkpoint_entry(name)


@pytest.mark.parametrize("name", ["a/b/weights", "a/n1_0/concat/min", "BoxPredictor_0/ClassPredictor/biases"])
def test_model_weights_are_not_ignored(name):
    assert not is_ignored_checkpoint_entry(name)


def test_checkpoint_of_another_variant_names_it(s_checkpoint):
    model = build_detector("m", 90, (64, 64))
    with pytest.raises(DataError, match=r"spaghettinet_edgetpu_s \(variant 's'\).*spaghettinet_edgetpu_m"):
        load_tf1_checkpoint(model, s_checkpoint)


def test_missing_and_corrupt_checkpoints_are_data_errors(tmp_path, s_checkpoint, s_model_64):
    model = s_model_64
    with pytest.raises(DataError, match="not found"):
        load_tf1_checkpoint(model, tmp_path / "nothing" / "model.ckpt")
    with pytest.raises(DataError, match="no TF checkpoint"):
        load_tf1_checkpoint(model, tmp_path)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copy(f"{s_checkpoint}.index", corrupt / "model.ckpt.index")
    (corrupt / "model.ckpt.data-00000-of-00001").write_bytes(b"\0" * 100)
    stem = model.get_layer("s0").stem.kernel
    stem.assign(np.zeros(stem.shape, np.float32))
    with pytest.raises(DataError, match="corrupt"):
        load_tf1_checkpoint(model, corrupt / "model.ckpt")
    assert not np.any(stem.numpy())  # nothing was assigned: no half-loaded model
    other = _save_tf1_checkpoint(tmp_path / "other.ckpt", {"conv/weights": np.zeros(3, np.float32)})
    with pytest.raises(DataError, match="not a SpaghettiNet"):
        load_tf1_checkpoint(model, other)


def test_inspect_groups_variables_and_finds_classes(s_checkpoint):
    info = inspect_checkpoint(s_checkpoint)
    assert info.variant == "spaghettinet_edgetpu_s"
    assert info.num_classes == 90
    assert info.total_params == 3_536_463  # reference total for S (README table)
    assert len(info.groups["stem"]) == 5
    assert len(info.groups["edge c0n0→c0n3"]) == 5
    assert len(info.groups["box predictor 4"]) == 14
    assert "node c0n5" in info.groups and "other" not in info.groups
