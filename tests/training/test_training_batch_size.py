"""``--batch-size auto``: the GPU doubling search stops at the last size that ran, the CPU estimate turns measured
memory into a batch within its limits, the real probe leaves the model unchanged, and ``train --batch-size auto``
prints the size it chose. No GPU needed: the trials are injected (an out-of-memory error above a threshold) or run
on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.tf_runtime import import_keras, import_tensorflow
from spaghettinet.training import batch_size as bs

tf = import_tensorflow()
keras = import_keras()
MIB = 1 << 20
GIB = 1 << 30


def _fits_up_to(per_replica_limit: int, tried: list, error=None):
    """A trial that records each size and runs out of memory above ``per_replica_limit``."""

    def trial(size: int) -> None:
        tried.append(size)
        if size > per_replica_limit:
            raise (error or tf.errors.ResourceExhaustedError)(
                None, None, f"OOM when allocating for batch {size}"
            )

    return trial


# --- GPU: doubling until out of memory --------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (5, 4), (24, 16), (300, 256)])
def test_gpu_search_keeps_the_last_power_of_two_that_ran_and_stops_at_the_first_failure(limit, expected):
    tried = []
    choice = bs.search_on_gpu(_fits_up_to(limit, tried))
    assert choice.batch_size == expected
    assert tried[-1] == 2 * expected  # one failed trial, then no more
    assert tried == [2**i for i in range(len(tried))]
    assert f"{2 * expected} per GPU ran out of memory" in choice.reason


def test_gpu_search_multiplies_the_per_replica_size_by_the_replicas():
    tried = []
    choice = bs.search_on_gpu(_fits_up_to(10, tried), num_replicas=4)
    assert tried == [1, 2, 4, 8, 16]  # each trial runs on one device, per-replica sizes
    assert choice.batch_size == 32


def test_gpu_search_stops_at_the_cap_and_at_the_number_of_images():
    tried = []
    choice = bs.search_on_gpu(_fits_up_to(10**6, tried))
    assert choice.batch_size == bs.GPU_MAX_BATCH and max(tried) == bs.GPU_MAX_BATCH
    assert f"capped at {bs.GPU_MAX_BATCH}" in choice.reason
    tried = []
    choice = bs.search_on_gpu(_fits_up_to(10**6, tried), max_batch=100)
    assert choice.batch_size == 64 and max(tried) == 64  # 128 would exceed the 100 training images
    tried = []
    assert bs.search_on_gpu(_fits_up_to(10**6, tried), num_replicas=2, max_batch=100).batch_size == 64
    assert max(tried) == 32


def test_gpu_search_when_nothing_fits_falls_back_to_one_image_per_replica():
    choice = bs.search_on_gpu(_fits_up_to(0, []), num_replicas=2)
    assert choice.batch_size == 2 and "even one image" in choice.reason


def test_gpu_search_treats_an_allocator_internal_error_as_out_of_memory():
    assert bs.search_on_gpu(_fits_up_to(8, [], error=tf.errors.InternalError)).batch_size == 8


def test_gpu_search_does_not_mistake_a_real_failure_for_out_of_memory():
    def broken(size: int) -> None:
        raise ValueError("shape mismatch in the model")

    with pytest.raises(ValueError, match="shape mismatch"):
        bs.search_on_gpu(broken)


# --- CPU: measured memory per image, a share of the free memory, capped -----------------------------------------


def _cpu_choice(peaks, free, tried=None, **kwargs):
    """``estimate_on_cpu`` with a recorded trial and scripted peak / free memory readings."""
    readings = iter(peaks)
    tried = [] if tried is None else tried
    return bs.estimate_on_cpu(
        tried.append, peak_memory=lambda: next(readings), free_memory=lambda: free, **kwargs
    )


def test_cpu_estimate_divides_half_the_free_memory_by_the_measured_cost_of_one_image():
    tried = []
    choice = _cpu_choice([1000 * MIB, 1100 * MIB], 2 * GIB, tried)
    assert tried == [1, 2]
    assert choice.batch_size == 10  # 1 GiB (half of 2 GiB) / 100 MiB per image
    assert "~100 MiB per image" in choice.reason and "2.0 GiB available" in choice.reason


@pytest.mark.parametrize(
    ("peaks", "free", "kwargs", "expected"),
    [
        ([500 * MIB, 510 * MIB], 64 * GIB, {}, bs.CPU_MAX_BATCH),  # plenty of memory: the CPU cap
        ([500 * MIB, 500 * MIB], 64 * GIB, {}, bs.CPU_MAX_BATCH),  # no growth measured: no division by zero
        ([500 * MIB, 510 * MIB], 64 * GIB, {"max_batch": 5}, 5),  # no more than the training images
        ([500 * MIB, 3 * GIB], 1 * GIB, {}, 1),  # too little memory still trains, one image at a time
        ([1000 * MIB, 1100 * MIB], 2 * GIB, {"num_replicas": 4}, 8),  # a multiple of the replicas
    ],
)
def test_cpu_estimate_stays_within_its_limits(peaks, free, kwargs, expected):
    choice = _cpu_choice(peaks, free, **kwargs)
    assert choice.batch_size == expected
    if expected == bs.CPU_MAX_BATCH:
        assert f"capped at {bs.CPU_MAX_BATCH}" in choice.reason


def test_cpu_estimate_without_a_memory_reading_uses_the_cap():
    choice = _cpu_choice([MIB, 2 * MIB], None, max_batch=12)
    assert choice.batch_size == 12 and "unknown" in choice.reason


def _tiny_detector():
    """A small Keras model with the detector's output dict, so the real probe runs in a second."""
    image = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(image)
    features = keras.layers.Reshape((-1, 4))(features)
    outputs = {
        "box_encodings": keras.layers.Dense(4, name="box")(features),
        "class_logits": keras.layers.Dense(3, name="cls")(features),
    }
    return keras.Model(image, outputs)


@pytest.mark.parametrize("on_gpu", [False, True])
def test_real_probe_chooses_a_size_within_limits_and_leaves_the_weights_alone(on_gpu):
    model = _tiny_detector()
    before = [v.numpy().copy() for v in model.variables]
    choice = bs.choose_batch_size(model, (16, 16), on_gpu=on_gpu, max_batch=8)
    if on_gpu:  # the doubling search, run on the CPU: nothing runs out of memory below the 8 images
        assert choice.batch_size == 8
    else:
        assert 1 <= choice.batch_size <= 8
        assert "MiB per image" in choice.reason or "unknown" in choice.reason
    for old, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


# --- CLI (a real ``train --batch-size auto`` run is in test_training_loop.py, with fine-tuning) -------------------


def test_train_cli_rejects_a_batch_size_that_is_neither_auto_nor_a_number(tmp_path, capsys):
    from spaghettinet.cli import main
    from spaghettinet.pipeline_config import write_config
    from spaghettinet.pipeline_config.settings import InputReaderSettings, ModelSettings, PipelineConfig

    (tmp_path / "train.record").write_bytes(b"")
    (tmp_path / "label_map.pbtxt").write_text('item { id: 1 name: "a" }\n')
    reader = InputReaderSettings(label_map_path="label_map.pbtxt", input_paths=["train.record"])
    cfg = PipelineConfig(
        model=ModelSettings(num_classes=1, variant="s", input_size=(64, 64)),
        train_input=reader,
        eval_input=reader,
        path=tmp_path / "pipeline.config",
    )
    config_path = write_config(cfg, tmp_path / "pipeline.config")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--config",
                str(config_path),
                "--model-dir",
                str(tmp_path / "m"),
                "--batch-size",
                "lots",
            ]
        )
    assert exit_info.value.code == 2
    assert "'auto' or a positive integer" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "m").exists()
