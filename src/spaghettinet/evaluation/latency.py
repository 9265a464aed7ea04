"""``benchmark``: how fast a ``.tflite`` model runs on this CPU with LiteRT, how big it is, what ops it has.

The input is filled once with random pixels of the input's type and the model is invoked ``warmup`` times
untimed (the first invocations allocate and pack weights), then ``runs`` times timed one by one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, UsageError


@dataclass
class LatencyResult:
    """Latency of one model at one thread count.

    Args:
        model: the ``.tflite`` path.
        threads: interpreter threads.
        runs: timed invocations.
        median_ms / p90_ms / mean_ms / min_ms: invocation times in milliseconds.
        size_bytes: file size.
        input_shape / input_type: the model input (``[1, H, W, 3]``, ``uint8`` or ``float32``).
        op_counts: op name → count.
    """

    model: str
    threads: int
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    size_bytes: int
    input_shape: list[int]
    input_type: str
    op_counts: dict[str, int]

    def to_json(self) -> dict:
        return asdict(self)


def benchmark(
    model_path: str | Path, threads: int = 1, runs: int = 50, warmup: int = 5, seed: int = 0
) -> LatencyResult:
    """Time a ``.tflite`` model with LiteRT on the CPU.

    Args:
        model_path: the ``.tflite`` file.
        threads: CPU threads for the interpreter (≥ 1).
        runs: timed invocations (≥ 1).
        warmup: untimed invocations first.
        seed: seed of the random input.

    Returns:
        :class:`LatencyResult`.

    Raises:
        DataError: the file is missing or not a model LiteRT can load.
        UsageError: threads or runs below 1.

    Example:
        >>> benchmark("exported/model_int8.tflite", threads=2, runs=20).median_ms  # doctest: +SKIP
        9.1
    """
    from ai_edge_litert.interpreter import Interpreter

    from spaghettinet.deploy.edgetpu import list_operators, op_counts

    path = Path(model_path)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if runs < 1:
        raise UsageError(f"--runs must be at least 1, got {runs}")
    if not path.is_file():
        raise DataError("no such model file", path)
    flatbuffer = path.read_bytes()
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        counts = op_counts(list_operators(flatbuffer))
    except Exception as exc:  # LiteRT and the flatbuffer reader raise assorted types on a bad file
        raise DataError(f"not a TFLite model LiteRT can load: {exc}", path) from exc
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
    else:
        data = rng.uniform(-1.0, 1.0, size=detail["shape"]).astype(dtype)
    interpreter.set_tensor(detail["index"], data)
    for _ in range(max(0, warmup)):
        interpreter.invoke()
    times = np.empty(runs, np.float64)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = (time.perf_counter() - start) * 1000.0
    return LatencyResult(
        model=str(path),
        threads=threads,
        runs=runs,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()),
        min_ms=float(times.min()),
        size_bytes=len(flatbuffer),
        input_shape=[int(v) for v in detail["shape"]],
        input_type=dtype.name,
        op_counts=counts,
    )
