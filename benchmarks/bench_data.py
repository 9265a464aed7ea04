"""Data-stage speed: images/s of VOC folder -> TFRecord, beside a raw read of the same files in the same run.

Datasets: the real microcontrollers folder (../shared/datasets/microcontrollers/all, 149 photos of 800x600, when
present) and 5 000 demo images (320x320) made in a temporary folder. For each:

* ``raw_read``: open and read every image and xml file (the floor any converter pays), page cache warm;
* ``tfrecord``: ``spaghettinet.data.tfrecord.tfrecord(split_dir=...)`` (parse + check each xml, check each image
  header, sha256, serialize, write), TensorFlow already imported;
* ``validate``: the full check with every pixel decoded, for reference.

The ratio ``tfrecord / raw_read`` is printed (goal: at least 0.5). Results go to
``benchmarks/results/bench_data.json``. Usage: ``python benchmarks/bench_data.py [--demo-images N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

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


def measure(name: str, folder: Path, workdir: Path, workers: int) -> dict:
    from spaghettinet.data.labelmap import labelmap
    from spaghettinet.data.tfrecord import tfrecord
    from spaghettinet.data.validate import validate

    label_map = labelmap(folder, workdir / f"{name}.pbtxt")
    raw_read(folder)  # warm the page cache so both timings read from memory
    start = time.perf_counter()
    result = tfrecord(workdir / f"{name}.record", label_map, split_dir=folder, workers=workers)
    convert_seconds = time.perf_counter() - start
    images, raw_seconds = raw_read(folder)
    start = time.perf_counter()
    report = validate(folder, workers=workers)
    validate_seconds = time.perf_counter() - start
    assert result.images == images and not result.errors, result.errors[:3]
    entry = {
        "images": images,
        "objects": result.objects,
        "record_bytes": sum(p.stat().st_size for p in result.files),
        "tfrecord_images_per_s": images / convert_seconds,
        "raw_read_images_per_s": images / raw_seconds,
        "validate_images_per_s": len(report.pairs) / validate_seconds,
        "ratio_tfrecord_to_raw_read": (images / convert_seconds) / (images / raw_seconds),
    }
    print(
        f"{name:>17}: {images} images | tfrecord {entry['tfrecord_images_per_s']:8.0f} img/s | raw read "
        f"{entry['raw_read_images_per_s']:8.0f} img/s | ratio {entry['ratio_tfrecord_to_raw_read']:.2f} "
        f"(goal >= 0.5) | validate (full decode) {entry['validate_images_per_s']:6.0f} img/s",
        flush=True,
    )
    return entry


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_data.json")
    args = parser.parse_args(argv)
    from spaghettinet.data.demo import make_demo
    from spaghettinet.io_utils import write_text_atomic
    from spaghettinet.tf_runtime import import_tensorflow

    import_tensorflow()
    workers = args.workers or min(8, os.cpu_count() or 1)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "workers": workers,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if MICROCONTROLLERS.is_dir():
            results["datasets"]["microcontrollers"] = measure(
                "microcontrollers", MICROCONTROLLERS, workdir, workers
            )
        else:
            print(f"microcontrollers dataset not found at {MICROCONTROLLERS}: skipped")
        demo = make_demo(workdir / "demo", images=args.demo_images, seed=0)
        print(
            f"{'demo generation':>17}: {demo.images} images in {demo.seconds:.1f} s ({demo.images / demo.seconds:.0f} img/s)"
        )
        entry = measure(f"demo_{args.demo_images}", workdir / "demo", workdir, workers)
        entry["generation_images_per_s"] = demo.images / demo.seconds
        results["datasets"][f"demo_{args.demo_images}"] = entry
    results["machine"]["load_average_after"] = os.getloadavg()
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
