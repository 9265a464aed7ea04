"""Model forward speed and size: S, M and L at 320x320, batch 1 and 8, on this machine's CPU.

For each variant: Keras forward time per image (inference mode, inside one traced ``tf.function``, median of
several runs after a warm-up), trainable parameters, and MACs beside the reference config's 1.0 / 1.25 / 1.57
billion (spec §3). Results go to ``benchmarks/results/bench_model.json``.

Usage: ``python benchmarks/bench_model.py [--variants s m l] [--batches 1 8] [--repeats 5]``. On a shared machine
the timings are noisy: the JSON records the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_model.json"


def time_forward(model, batch: int, repeats: int) -> dict:
    """Median and best milliseconds per image of ``model`` on random ``[batch, H, W, 3]`` inputs."""
    import numpy as np
    import tensorflow as tf

    height, width = model.input_size
    images = tf.constant(
        np.random.default_rng(0).uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)
    )
    forward = tf.function(lambda x: model(x, training=False))
    forward(images)  # trace + warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = forward(images)
        outputs["class_logits"].numpy()
        timings.append((time.perf_counter() - start) * 1000 / batch)
    return {
        "batch": batch,
        "ms_per_image_median": statistics.median(timings),
        "ms_per_image_best": min(timings),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["s", "m", "l"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=320)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parent / "src"))
    from spaghettinet.io_utils import write_text_atomic
    from spaghettinet.model.detector import build_detector
    from spaghettinet.model.summary import summarize
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    load_start = os.getloadavg()
    results = []
    for variant in args.variants:
        model = build_detector(variant, 90, (args.input_size, args.input_size))
        summary = summarize(model)
        entry = {
            "variant": summary.variant,
            "input_size": args.input_size,
            "trainable_params": summary.trainable_params,
            "macs_billion": round(summary.total_macs / 1e9, 4),
            "reference_macs_billion": summary.reference_macs / 1e9,
            "forward": [time_forward(model, batch, args.repeats) for batch in args.batches],
        }
        results.append(entry)
        timings = ", ".join(f"bs{t['batch']} {t['ms_per_image_median']:.1f} ms/img" for t in entry["forward"])
        print(
            f"{entry['variant']}: {entry['macs_billion']:.3f} G MACs (reference {entry['reference_macs_billion']:.2f}),"
            f" {entry['trainable_params']:,} params, {timings}",
            flush=True,
        )
    report = {
        "benchmark": "bench_model",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "results": results,
    }
    write_text_atomic(RESULTS, json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
