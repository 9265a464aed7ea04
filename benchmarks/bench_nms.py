"""NMS kind of the exported op: class-agnostic fast NMS against per-class regular NMS (issue 9 item 2).

Results go to ``benchmarks/results/bench_nms.json``.

On one trained run (a workdir in the layout ``spaghettinet run`` writes), the same checkpoint is exported four
times: fast and regular NMS, each with the export's shipping defaults (10 boxes, score ≥ 0.3) and with the budget
COCO scoring uses (100 boxes, score ≥ 0.001, as ``bench_peer.py`` scores both sides). Each int8 ``.tflite`` is
scored with our COCO evaluation on the run's test split and timed with LiteRT at 1 thread. The checkpoint's own
evaluation (``training-output/eval.json``, per-class NMS in float) is recorded beside them.

Usage: ``python benchmarks/bench_nms.py WORKDIR`` (for example the microcontroller run that
``bench_peer.py --keep`` leaves in its scratch folder).
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
DEFAULT_OUT = HERE / "results" / "bench_nms.json"
BUDGETS = {"shipped": (10, 0.3), "coco": (100, 0.001)}


def measure(workdir: Path, scratch: Path, latency_runs: int) -> dict:
    """Export, score and time each (NMS kind, budget) pair on ``workdir``'s checkpoint."""
    from bench_peer import ScoringSet

    from spaghettinet.deploy.export import export
    from spaghettinet.evaluation.latency import benchmark

    training = workdir / "training"
    scoring = ScoringSet(training)
    shipped = json.loads((workdir / "exported" / "export_report.json").read_text(encoding="utf-8"))
    rows = []
    for regular in (False, True):
        for budget, (max_detections, score_threshold) in BUDGETS.items():
            out = scratch / f"{'regular' if regular else 'fast'}-{budget}"
            started = time.monotonic()
            result = export(
                training / "pipeline.config",
                training / "training-output",
                out,
                max_detections=max_detections,
                score_threshold=score_threshold,
                regular_nms=regular,
                quantize=shipped["quantization"],
                check_images=1,
                run_compiler=False,
            )
            metrics = scoring.score_tflite(result.int8_model)
            latency = benchmark(result.int8_model, threads=1, runs=latency_runs)
            row = {
                "nms": "regular (per class)" if regular else "fast (class-agnostic)",
                "budget": budget,
                "max_detections": max_detections,
                "score_threshold": score_threshold,
                "AP": metrics["AP"],
                "AP50": metrics["AP50"],
                "per_class_AP50": metrics["per_class_AP50"],
                "latency_median_ms": round(latency.median_ms, 2),
                "export_s": round(time.monotonic() - started, 1),
            }
            print(json.dumps({k: v for k, v in row.items() if k != "per_class_AP50"}), flush=True)
            rows.append(row)
    checkpoint_eval = training / "training-output" / "eval.json"
    checkpoint = None
    if checkpoint_eval.is_file():
        from spaghettinet.coco_metrics import EvalReport

        result = EvalReport.read(checkpoint_eval).result
        checkpoint = {"AP": result.ap, "AP50": result.ap50}
    return {
        "num_classes": len(scoring.class_names),
        "test_images": len(scoring.examples),
        "quantization": shipped["quantization"],
        "checkpoint_eval": checkpoint,
        "exports": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="a finished `spaghettinet run` workdir")
    parser.add_argument(
        "--dataset", default=None, help="name recorded in the results (default: the folder's)"
    )
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if not (workdir / "exported" / "export_report.json").is_file():
        print(
            f"error: {workdir} holds no finished run (exported/export_report.json is missing)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-nms-") as scratch:
        result = measure(workdir, Path(scratch), args.latency_runs)
    result["dataset"] = args.dataset or workdir.name
    result["command"] = "python benchmarks/bench_nms.py WORKDIR"
    result["machine"] = describe_machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
