"""Export benchmark (issue 5 item 5). Results go to ``benchmarks/results/bench_export.json``.

On a trained run (a workdir in the layout ``spaghettinet run`` writes: ``training/pipeline.config`` and
``training/training-output/``, or ``model/`` as ``bench_train.py``'s demo run has it), measured side by side:

* accuracy: COCO AP / AP50 on the test split of the float ``.tflite``, the post-training-quantized (PTQ) int8 and,
  when the checkpoint was trained quantization-aware, the QAT int8 (goal: QAT int8 ≥ float − 0.5 AP point);
* latency of the float and int8 ``.tflite`` with LiteRT at 1 and 2 threads (goal: int8 ≤ 0.6 × float at 1 thread),
  with the CPU it ran on (model name; AVX2, AVX-512 VNNI, AVX-VNNI, AMX: XNNPACK's int8 kernels depend on them);
* the same at 1 thread as on an AVX2-only CPU (AMD EPYC Zen 2 / Zen 3), where XNNPACK's int8 kernels run about as
  fast as its float ones: XNNPACK limited to its AVX2 kernels in a child process
  (``evaluation.latency.benchmark_avx2_only``), and, with ``--instructions`` when valgrind is installed, the
  instructions per invocation under valgrind, whose virtual CPU has no AVX-512 (repeatable on a busy machine, and
  it names the XNNPACK kernels that ran);
* model sizes, op counts, and how long each export took.

Usage: ``python benchmarks/bench_export.py [WORKDIR]``. Without WORKDIR it uses ``benchmarks/results/demo-work``
(where a training benchmark that keeps its demo run leaves it). ``--quick`` first makes a tiny run of its own
(32 demo images, 128² input, a few dozen steps with QAT): it checks the script, its numbers are not the
benchmark's. Run the real one on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from machine import describe_machine

HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = HERE / "results" / "demo-work"
#: The goals of issue 5 item 5.
GOAL_QAT_AP_LOSS = 0.005  # AP is a fraction: 0.5 AP point
GOAL_INT8_LATENCY_RATIO = 0.6


def _portable(results: dict, names: dict[Path, str]) -> str:
    """The results as JSON with this machine's folders replaced by names (no absolute paths in committed files)."""
    text = json.dumps(results, indent=1, default=str) + "\n"
    for folder, name in sorted(names.items(), key=lambda item: -len(str(item[0]))):
        text = text.replace(str(folder), name)
    return text


def _quick_workdir(scratch: Path, steps: int) -> Path:
    """A tiny trained run (demo data, S at 128², QAT after 10 %) to exercise the script."""
    from spaghettinet.data.demo import make_demo
    from spaghettinet.workflow import run

    make_demo(scratch / "demo-data", images=32, seed=0)
    workdir = scratch / "demo-work"
    run(
        scratch / "demo-data",
        workdir,
        variant="s",
        input_size=128,
        steps=steps,
        batch_size=4,
        until="train",
        show_progress=False,
    )
    return workdir


def _export(config: Path, model_dir: Path, out: Path, quantize: str, args) -> dict:
    from spaghettinet.deploy.export import export

    started = time.perf_counter()
    result = export(
        config,
        model_dir,
        out,
        quantize=quantize,
        score_threshold=args.score_threshold,
        calibration_images=args.calibration_images,
        check_images=args.check_images,
        run_compiler=False,
    )
    checks = result.report.get("checks", {})
    return {
        "quantization": result.quantization,
        "step": result.step,
        "export_seconds": round(time.perf_counter() - started, 1),
        "files": result.report.get("files", {}),
        "map_float": checks.get("map_float"),
        "map_int8": checks.get("map_int8"),
        "int8_vs_keras": checks.get("int8_vs_keras"),
        "float_ops_in_int8": result.report.get("int8", {}).get("float_ops"),
        "widened_ranges": len(result.report.get("widened_ranges", [])),
        "float_model": str(result.float_model),
        "int8_model": None if result.int8_model is None else str(result.int8_model),
    }


def _latency(path: str, runs: int) -> dict:
    from spaghettinet.evaluation.latency import benchmark

    timings = {}
    for threads in (1, 2):
        result = benchmark(path, threads=threads, runs=runs)
        timings[f"{threads}_thread"] = {"median_ms": result.median_ms, "p90_ms": result.p90_ms}
        if result.cpu_median_ms is not None:
            timings[f"{threads}_thread"]["cpu_median_ms"] = result.cpu_median_ms
    timings["size_bytes"] = result.size_bytes
    timings["op_counts"] = result.op_counts
    return timings


def _avx2_latency(path: str, runs: int) -> dict:
    """1-thread figures with XNNPACK limited to its AVX2 kernels, or why they could not be measured."""
    from spaghettinet.errors import SpaghettiError
    from spaghettinet.evaluation.latency import benchmark_avx2_only

    try:
        result = benchmark_avx2_only(path, runs=runs)
    except SpaghettiError as exc:
        return {"skipped": str(exc)}
    return {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "cpu_median_ms": result.cpu_median_ms}


#: Run by valgrind: load the model, invoke it twice (the first allocates), on random input of its type.
_INVOKE_TWICE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
rng = np.random.default_rng(0)
if detail["dtype"] == np.float32:
    data = rng.uniform(-1, 1, size=detail["shape"]).astype(np.float32)
else:
    data = rng.integers(0, 256, size=detail["shape"]).astype(np.uint8).astype(detail["dtype"])
interpreter.set_tensor(detail["index"], data)
interpreter.invoke()
interpreter.invoke()
"""


def _self_costs(callgrind_file: Path) -> Counter:
    """Instructions per function (self cost) in one callgrind output file."""
    names: dict[str, str] = {}
    costs: Counter = Counter()
    function = None
    skip_call_cost = False
    for line in callgrind_file.read_text(errors="replace").splitlines():
        if line.startswith(("fn=", "cfn=")):
            match = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
            if match and match.group(2):
                names[match.group(1)] = match.group(2)
            if line.startswith("fn=") and match:
                function = names.get(match.group(1), match.group(1))
        elif line.startswith("calls="):
            skip_call_cost = True  # the next cost line is the call's inclusive cost, not the caller's own
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if skip_call_cost:
                skip_call_cost = False
            elif len(parts) >= 2 and function is not None:
                costs[function] += int(parts[1])
    return costs


def _instructions(path: str, timeout_s: float = 900.0) -> dict:
    """Instructions of one 1-thread invocation under valgrind's callgrind, and where they went.

    valgrind's virtual CPU has AVX2 but no AVX-512, so XNNPACK picks the kernels of an AVX2-only CPU; the count
    does not depend on the machine's load. The second invocation is counted (``--dump-before`` splits the run at
    each ``Subgraph::Invoke``; the last part is the last invocation).
    """
    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind is not installed (apt-get install valgrind)"}
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=tflite::interpreter_wrapper::InterpreterWrapper::Invoke*",
            "--dump-before=tflite::Subgraph::Invoke*",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            _INVOKE_TWICE,
            path,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not out.is_file():
            return {"skipped": f"valgrind failed: {done.stderr.strip()[-300:]}"}
        costs = _self_costs(out)
    total = sum(costs.values())
    xnnpack_kernels = sorted({name for name in costs if re.match(r"xnn_.*(gemm|conv).*_ukernel_", name)})
    return {
        "instructions": total,
        "top_functions": [
            {"function": name[:120], "instructions": count, "share": round(count / total, 4)}
            for name, count in costs.most_common(8)
        ],
        "xnnpack_conv_kernels": xnnpack_kernels,
    }


def _avx2_only(exports: dict, args) -> dict:
    """The float and PTQ int8 models as on an AVX2-only CPU: timed with XNNPACK's AVX2 kernels, and counted."""
    models = {"float": exports["ptq"]["float_model"], "ptq_int8": exports["ptq"]["int8_model"]}
    section: dict = {
        "what": "1 thread, XNNPACK limited to the kernels of an AVX2-only CPU (AMD EPYC Zen 2 / 3) on this CPU",
        "latency": {name: _avx2_latency(path, args.runs) for name, path in models.items()},
    }
    timed = section["latency"]
    if all("cpu_median_ms" in timed[name] for name in models):
        section["int8_over_float_cpu_time"] = (
            timed["ptq_int8"]["cpu_median_ms"] / timed["float"]["cpu_median_ms"]
        )
        section["int8_over_float_wall_time"] = timed["ptq_int8"]["median_ms"] / timed["float"]["median_ms"]
    if args.instructions:
        counted = {name: _instructions(path) for name, path in models.items()}
        section["valgrind_instructions"] = counted
        if all("instructions" in counted[name] for name in models):
            section["int8_over_float_instructions"] = (
                counted["ptq_int8"]["instructions"] / counted["float"]["instructions"]
            )
    return section


def _ap(section: dict | None) -> float | None:
    return None if not isinstance(section, dict) else section.get("AP")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "workdir", nargs="?", type=Path, default=None, help="a trained `spaghettinet run` folder"
    )
    parser.add_argument("--quick", action="store_true", help="train a tiny run first: checks the script only")
    parser.add_argument("--quick-steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=50, help="timed invocations per latency figure")
    parser.add_argument("--score-threshold", type=float, default=0.05)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--check-images", type=int, default=100)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per invocation under valgrind (AVX2 kernels; about a minute per model)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_export.json")
    args = parser.parse_args(argv)

    from spaghettinet.errors import SpaghettiError
    from spaghettinet.evaluation.latency import cpu_description
    from spaghettinet.io_utils import write_text_atomic

    results: dict = {
        "machine": describe_machine(),
        "cpu": cpu_description(),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch_name:
        scratch = Path(scratch_name)
        workdir = args.workdir or (
            _quick_workdir(scratch, args.quick_steps) if args.quick else DEFAULT_WORKDIR
        )
        config = workdir / "training" / "pipeline.config"
        # `spaghettinet run` trains into training/training-output; bench_train.py's demo run into model/.
        model_dir = next(
            (d for d in (workdir / "training" / "training-output", workdir / "model") if d.is_dir()), None
        )
        if not config.is_file() or model_dir is None:
            print(
                f"{workdir}: no trained run there (expected training/pipeline.config and "
                "training/training-output/ or model/); pass a `spaghettinet run` workdir, or --quick",
                file=sys.stderr,
            )
            return 2
        results["workdir"] = str(workdir)
        try:
            exports = {"ptq": _export(config, model_dir, scratch / "ptq", "ptq", args)}
            print(json.dumps(exports["ptq"], indent=1, default=str)[:1500], file=sys.stderr)
            try:
                exports["qat"] = _export(config, model_dir, scratch / "qat", "qat", args)
            except SpaghettiError as exc:  # a checkpoint trained without QAT: PTQ only
                exports["qat"] = {"skipped": exc.message}
            results["exports"] = exports
            float_ap = _ap(exports["ptq"]["map_float"])
            qat_ap = _ap(exports["qat"].get("map_int8")) if "map_int8" in exports["qat"] else None
            results["accuracy"] = {
                "AP_float": float_ap,
                "AP50_float": (exports["ptq"]["map_float"] or {}).get("AP50"),
                "AP_ptq_int8": _ap(exports["ptq"]["map_int8"]),
                "AP50_ptq_int8": (exports["ptq"]["map_int8"] or {}).get("AP50"),
                "AP_qat_int8": qat_ap,
                "AP50_qat_int8": (exports["qat"].get("map_int8") or {}).get("AP50"),
                "goal": "QAT int8 AP >= float AP - 0.5 point",
                "met": None if qat_ap is None or float_ap is None else qat_ap >= float_ap - GOAL_QAT_AP_LOSS,
            }
            latency = {"float": _latency(exports["ptq"]["float_model"], args.runs)}
            latency["ptq_int8"] = _latency(exports["ptq"]["int8_model"], args.runs)
            if exports["qat"].get("int8_model"):
                latency["qat_int8"] = _latency(exports["qat"]["int8_model"], args.runs)
            ratio = latency["ptq_int8"]["1_thread"]["median_ms"] / latency["float"]["1_thread"]["median_ms"]
            latency["int8_over_float_1_thread"] = ratio
            latency["cpu"] = results["cpu"]
            latency["goal"] = "int8 median <= 0.6 x float median at 1 thread"
            latency["met"] = ratio <= GOAL_INT8_LATENCY_RATIO
            results["latency"] = latency
            results["avx2_only"] = _avx2_only(exports, args)
        except SpaghettiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            results["error"] = str(exc)
            write_text_atomic(args.out, _portable(results, {scratch: "$SCRATCH", workdir: "$WORKDIR"}))
            return 1
    write_text_atomic(args.out, _portable(results, {scratch: "$SCRATCH", workdir: "$WORKDIR"}))
    print(json.dumps({k: results[k] for k in ("accuracy", "latency", "avx2_only")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
