"""COCO and YOLO datasets through the whole run: the same int8 AP as the VOC folder they were converted from.

Issue 12 ("datasets in") is done when a COCO and a YOLO version of the demo data each go through ``run`` to an int8
model with the same AP as the VOC version, within noise. This makes the demo dataset (``--images``, VOC), converts it
with ``spaghettinet data convert`` to COCO (Model Maker's ``images/`` + ``labels.json``) and YOLO (Ultralytics'
``images/``, ``labels/``, ``data.yaml``), and runs each through ``spaghettinet.run`` with the same settings: S at
``--input-size``, from scratch, a fixed ``--steps`` (not a time budget, so that the three trainings take the same
steps whatever the load), seed 0. It checks that the three splits hold the same images and boxes, then reports for
each format the COCO AP and AP50 of the int8 ``.tflite`` on the test split (as export measured it), the float
model's, and the wall time.

The three runs see the same images, boxes and split; only VOC's ``truncated`` flags, which training does not read,
differ. Any AP difference is the run-to-run noise of training on CPU threads.

Results go to ``benchmarks/results/bench_formats.json``. Usage:
``python benchmarks/bench_formats.py [--images 300] [--steps 600] [--input-size 160] [--quick]``
(about 25 minutes on 2 idle cores at the defaults; ``--quick``: 48 images, 40 steps, 128², to check the script).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine

HERE = Path(__file__).resolve().parent
FORMATS = ("voc", "coco", "yolo")


def _split_contents(images: Path) -> dict:
    """Names, sizes and boxes of a split folder, to check that every format split the same data."""
    from spaghettinet.data.voc import parse_voc_xml

    contents = {}
    for xml_path in sorted((images / "train").glob("*.xml")) + sorted((images / "test").glob("*.xml")):
        xml = parse_voc_xml(xml_path)
        boxes = [(o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in xml.objects]
        contents[f"{xml_path.parent.name}/{xml_path.name}"] = (xml.width, xml.height, boxes)
    return contents


def _scores(workdir: Path) -> dict:
    """AP and AP50 of each model the export evaluated (``float TFLite``, ``QAT int8 TFLite``...)."""
    from spaghettinet.evaluation.report_loading import load_report_inputs

    return {
        scores.label: {key: scores.metrics.get(key) for key in ("AP", "AP50")}
        for scores in load_report_inputs(workdir).scores
    }


def run_format(data_dir: Path, workdir: Path, args) -> dict:
    from spaghettinet.workflow import run

    started = time.perf_counter()
    result = run(
        data_dir,
        workdir,
        variant="s",
        input_size=args.input_size,
        steps=args.steps,
        from_scratch=True,
        seed=0,
        latency_runs=5,
        show_progress=False,
        log=lambda line: print(f"  [{data_dir.name}] {line}", flush=True),
    )
    scores = _scores(workdir)
    int8 = next((value for label, value in scores.items() if "int8" in label.lower()), {})
    return {
        "seconds": round(time.perf_counter() - started, 1),
        # Relative to the run's folder: the results name no path of the machine they were measured on.
        "int8_model": result.int8_model.relative_to(workdir).as_posix() if result.int8_model else None,
        "int8_AP": int8.get("AP"),
        "int8_AP50": int8.get("AP50"),
        "scores": scores,
        "split": _split_contents(workdir / "images"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument(
        "--quick", action="store_true", help="48 images, 40 steps, 128²: checks the script only"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_formats.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps, args.input_size = 48, 40, 128
    from spaghettinet.data.convert import convert
    from spaghettinet.data.demo import make_demo

    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as folder:
        root = Path(folder)
        make_demo(root / "voc", images=args.images, seed=0)
        convert(root / "voc", "coco", root / "coco")
        convert(root / "voc", "yolo", root / "yolo")
        runs = {}
        for name in FORMATS:
            print(f"{name}: running", flush=True)
            runs[name] = run_format(root / name, root / f"work-{name}", args)
    same_split = all(runs[name]["split"] == runs["voc"]["split"] for name in FORMATS)
    for entry in runs.values():
        entry["split_images"] = len(entry.pop("split"))
    results = {
        "machine": machine,
        "settings": {
            "images": args.images,
            "steps": args.steps,
            "input_size": args.input_size,
            "quick": args.quick,
        },
        "same_split_and_boxes": same_split,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'format':6} {'int8 AP':>8} {'int8 AP50':>10} {'seconds':>8}")
    for name, entry in runs.items():
        ap, ap50 = ("-" if entry[key] is None else f"{entry[key]:.4f}" for key in ("int8_AP", "int8_AP50"))
        print(f"{name:6} {ap:>8} {ap50:>10} {entry['seconds']:8.1f}")
    print(f"same split and boxes in all three: {same_split}; written to {args.out}")
    return 0 if same_split else 1


if __name__ == "__main__":
    sys.exit(main())
