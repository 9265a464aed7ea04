"""Data-stage speed: images/s of VOC folder -> TFRecord, beside a raw read of the same files in the same run.

Datasets: the real microcontrollers folder (../shared/datasets/microcontrollers/all, 149 photos of 800x600, when
present) and 5 000 demo images (320x320) made in a temporary folder. For each:

* ``raw_read``: open and read every image and xml file (the floor any converter pays), page cache warm;
* ``tfrecord``: ``spaghettinet.data.tfrecord.tfrecord(split_dir=...)`` (find the pairs, parse + check each xml,
  check each image header, sha256, serialize, write), TensorFlow already imported; with ``--workers`` processes
  (default: one per core, at most 8) and, beside it, with one process (``tfrecord_1_worker``);
* ``validate``: the full check with every pixel decoded, for reference.

Raw read and conversions are each run ``--repeats`` times, interleaved, and the fastest run of each is kept (the
same rule for all, against a machine shared with other jobs); the load average before each dataset is saved, and
the CPU seconds per image of each conversion (this process plus its workers), which depend less on that load.
The ratio ``tfrecord / raw_read`` is printed (goal: at least 0.5), and the same with one process.
Results go to ``benchmarks/results/bench_data.json``. Usage:
``python benchmarks/bench_data.py [--demo-images N] [--workers N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine

HERE = Path(__file__).resolve().parent
MICROCONTROLLERS = HERE.parent.parent / "shared" / "datasets" / "microcontrollers" / "all"


def raw_read(folder: Path) -> tuple[int, float]:
    """Read every image and xml file's bytes; return (images, seconds)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".xml")]
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as handle:
            handle.read()
    seconds = time.perf_counter() - start
    return sum(1 for p in files if p.suffix.lower() != ".xml"), seconds


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the conversion's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(name: str, folder: Path, workdir: Path, workers: int, repeats: int) -> dict:
    from spaghettinet.data.labelmap import labelmap
    from spaghettinet.data.tfrecord import tfrecord
    from spaghettinet.data.validate import validate

    label_map = labelmap(folder, workdir / f"{name}.pbtxt")
    load = os.getloadavg()
    raw_read(folder)  # warm the page cache so every timing reads from memory
    raw_times, convert_times = [], {workers: [], 1: []}
    convert_cpu: dict[int, list[float]] = {workers: [], 1: []}
    result = None
    for _ in range(repeats):
        for count in dict.fromkeys((workers, 1)):
            cpu, start = _cpu_seconds(), time.perf_counter()
            result = tfrecord(workdir / f"{name}.record", label_map, split_dir=folder, workers=count)
            convert_times[count].append(time.perf_counter() - start)
            convert_cpu[count].append(_cpu_seconds() - cpu)
        images, seconds = raw_read(folder)
        raw_times.append(seconds)
    start = time.perf_counter()
    report = validate(folder, workers=workers)
    validate_seconds = time.perf_counter() - start
    assert result is not None and result.images == images and not result.errors, result.errors[:3]
    raw_speed = images / min(raw_times)
    speeds = {count: images / min(times) for count, times in convert_times.items()}
    entry = {
        "images": images,
        "objects": result.objects,
        "record_bytes": sum(p.stat().st_size for p in result.files),
        "load_average_before": load,
        "tfrecord_images_per_s": speeds[workers],
        "tfrecord_1_worker_images_per_s": speeds[1],
        "tfrecord_cpu_us_per_image": 1e6 * min(convert_cpu[workers]) / images,
        "tfrecord_1_worker_cpu_us_per_image": 1e6 * min(convert_cpu[1]) / images,
        "raw_read_images_per_s": raw_speed,
        "validate_images_per_s": len(report.pairs) / validate_seconds,
        "ratio_tfrecord_to_raw_read": speeds[workers] / raw_speed,
        "ratio_tfrecord_1_worker_to_raw_read": speeds[1] / raw_speed,
    }
    print(
        f"{name:>17}: {images} images | tfrecord {speeds[workers]:6.0f} img/s ({workers} workers), "
        f"{speeds[1]:6.0f} img/s (1) | raw read {raw_speed:6.0f} img/s | ratio "
        f"{entry['ratio_tfrecord_to_raw_read']:.2f} ({entry['ratio_tfrecord_1_worker_to_raw_read']:.2f} with 1; "
        "goal >= 0.5) | validate (full decode) "
        f"{entry['validate_images_per_s']:5.0f} img/s | load {load[0]:.2f}",
        flush=True,
    )
    return entry


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_data.json")
    args = parser.parse_args(argv)
    from spaghettinet.data.demo import make_demo
    from spaghettinet.io_utils import write_text_atomic
    from spaghettinet.tf_runtime import import_tensorflow

    import_tensorflow()
    workers = args.workers or min(8, os.cpu_count() or 1)
    results: dict = {
        "machine": describe_machine(),
        "workers": workers,
        "repeats": args.repeats,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if MICROCONTROLLERS.is_dir():
            results["datasets"]["microcontrollers"] = measure(
                "microcontrollers", MICROCONTROLLERS, workdir, workers, args.repeats
            )
        else:
            print(f"microcontrollers dataset not found at {MICROCONTROLLERS}: skipped")
        demo = make_demo(workdir / "demo", images=args.demo_images, seed=0)
        print(
            f"{'demo generation':>17}: {demo.images} images in {demo.seconds:.1f} s ({demo.images / demo.seconds:.0f} img/s)"
        )
        entry = measure(f"demo_{args.demo_images}", workdir / "demo", workdir, workers, args.repeats)
        entry["generation_images_per_s"] = demo.images / demo.seconds
        results["datasets"][f"demo_{args.demo_images}"] = entry
    results["machine"]["load_average_after"] = os.getloadavg()
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
