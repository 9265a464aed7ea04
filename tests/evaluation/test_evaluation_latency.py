"""``evaluation.latency.benchmark``: timings, size and op counts of a ``.tflite`` model, and its input errors.

A tiny convolutional model is converted once per module (seconds); the benchmark of the real exported
SpaghettiNet-S int8 model runs in ``tests/deploy/test_deploy_export.py`` on that module's shared export.
"""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.errors import DataError, SpaghettiError, UsageError
from spaghettinet.evaluation.latency import (
    benchmark,
    benchmark_avx2_only,
    cpu_description,
    limit_xnnpack_to_avx2,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A float32 ``[1, 32, 32, 3]`` → conv → relu → conv model as ``.tflite`` (2 CONV_2D ops)."""
    from spaghettinet.tf_runtime import import_keras, import_tensorflow

    tf = import_tensorflow()
    keras = import_keras()
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3), batch_size=1),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(4, 1),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path = tmp_path_factory.mktemp("latency") / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


def test_benchmark_reports_timings_size_and_ops(tiny_model):
    result = benchmark(tiny_model, threads=1, runs=7, warmup=1)
    assert result.runs == 7 and result.threads == 1
    assert 0 < result.min_ms <= result.median_ms <= result.p90_ms
    assert result.mean_ms > 0
    assert result.size_bytes == tiny_model.stat().st_size
    assert result.input_shape == [1, 32, 32, 3] and result.input_type == "float32"
    assert result.op_counts == {"CONV_2D": 2}
    assert set(result.to_dict()) >= {"median_ms", "p90_ms", "size_bytes", "op_counts", "cpu"}
    assert 0 < result.cpu_median_ms and result.isa_limit is None
    assert result.cpu == cpu_description()


def test_benchmark_two_threads(tiny_model):
    result = benchmark(tiny_model, threads=2, runs=3, warmup=0)
    assert result.threads == 2 and result.median_ms > 0
    assert result.cpu_median_ms is None  # worker threads' time is not the calling thread's


def test_cpu_description_reads_model_and_int8_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx fma avx2 bmi2\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx fma avx2 bmi2\n"
    )
    assert cpu_description(cpuinfo) == {
        "model": "AMD EPYC 7B12",
        "avx2": True,
        "avx512_vnni": False,
        "avx_vnni": False,
        "amx_int8": False,
    }
    assert cpu_description(tmp_path / "missing")["avx512_vnni"] is None


def _avx2_proxy_or_skip(tiny_model):
    try:
        return benchmark_avx2_only(tiny_model, runs=3, warmup=1)
    except SpaghettiError as exc:
        pytest.skip(f"no AVX2-only measurement on this machine: {exc}")


def test_avx2_only_benchmark_runs_in_a_child_process(tiny_model):
    result = _avx2_proxy_or_skip(tiny_model)
    assert result.isa_limit == "avx2" and result.threads == 1 and result.runs == 3
    assert result.median_ms > 0 and result.cpu_median_ms > 0
    assert result.op_counts == {"CONV_2D": 2}


def test_avx2_limit_refuses_once_xnnpack_is_initialized(tiny_model):
    """This process already ran a delegate: changing its CPU features now would change nothing, so it refuses."""
    from ai_edge_litert.interpreter import Interpreter

    _avx2_proxy_or_skip(tiny_model)  # skips where the limit cannot work at all
    Interpreter(model_path=str(tiny_model), num_threads=1).allocate_tensors()
    with pytest.raises(SpaghettiError, match="already initialized"):
        limit_xnnpack_to_avx2()


@pytest.mark.parametrize("threads, runs", [(0, 5), (1, 0)])
def test_benchmark_rejects_bad_counts(tiny_model, threads, runs):
    with pytest.raises(UsageError):
        benchmark(tiny_model, threads=threads, runs=runs)


def test_benchmark_rejects_missing_and_broken_files(tmp_path):
    with pytest.raises(DataError, match="missing.tflite"):
        benchmark(tmp_path / "missing.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="broken.tflite"):
        benchmark(broken)
