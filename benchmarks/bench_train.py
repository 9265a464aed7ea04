"""Training benchmarks (issue 4 item 8). Results go to ``benchmarks/results/bench_train.json``.

Parts (``--parts demo,micro,efficiency,memory``; all by default):

* ``demo``: the demo dataset (``make_demo`` default size, 320² images), SpaghettiNet-S at ``--demo-size`` (160, as
  ``spaghettinet demo``), ``train`` with a
  wall-clock budget of ``--demo-minutes`` (15; goal: COCO AP50 ≥ 0.8 on its test split), evaluating every
  ``--eval-every`` steps for the curve (``metrics_history.json`` is copied into the results).
* ``micro``: ``../shared/datasets/microcontrollers/all`` (149 photos, 4 classes), S at 320², a fixed budget of
  ``--micro-minutes`` (20): AP and AP50.
* ``efficiency``: training images/s of the real loop (tf.data from TFRecords, augmentation, targets) divided by
  the images/s of a bare forward + backward + SGD loop on in-memory tensors, same model, batch and size, same run
  (goal ≥ 0.8).
* ``memory``: peak RSS of a process running train steps at batch 8, 320² (measured in a child process so the
  other parts do not count).

``--quick`` shrinks everything (48 demo images, 128² input, ``--demo-minutes``/``--micro-minutes`` as given) to
check that the script works; its numbers are not the benchmark's. Run the full one on an otherwise idle machine:
``python benchmarks/bench_train.py`` (about 40 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine

HERE = Path(__file__).resolve().parent
MICROCONTROLLERS = HERE.parent.parent / "shared" / "datasets" / "microcontrollers" / "all"


def _prepare(data_dir: Path, workdir: Path, input_size: int, seed: int = 0) -> Path:
    """Run the pipeline up to the config (split, label map, TFRecords, pipeline.config); return the config."""
    from spaghettinet.workflow import run

    run(
        data_dir,
        workdir,
        variant="s",
        input_size=input_size,
        seed=seed,
        until="config",
        show_progress=False,
        from_scratch=True,
    )
    return workdir / "training" / "pipeline.config"


def _train_and_score(config: Path, model_dir: Path, minutes: float, eval_every: int | None) -> dict:
    from spaghettinet.training.history import HISTORY_FILE, MetricsHistory
    from spaghettinet.training.loop import train

    started = time.perf_counter()
    result = train(config, model_dir, time_budget=minutes * 60, eval_every=eval_every, show_progress=True)
    history = MetricsHistory.read(model_dir / HISTORY_FILE)
    evaluation = result.evaluation
    return {
        "budget_minutes": minutes,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "steps": result.step,
        "stopped": result.stopped,
        "batch_size": result.plan.batch_size,
        "images_per_second": result.images_per_second,
        "quantization_aware_at_end": result.quantization_aware,
        "AP": None if evaluation is None else evaluation.ap,
        "AP50": None if evaluation is None else evaluation.ap50,
        "curve": [record.to_dict() for record in history.evaluations],
        "loss_curve": [record.to_dict() for record in history.losses],
    }


def part_demo(args, scratch: Path) -> dict:
    from spaghettinet.data.demo import make_demo

    images = 48 if args.quick else None
    data_dir = scratch / "demo-data"
    make_demo(data_dir, **({"images": images} if images else {}))
    size = 128 if args.quick else args.demo_size
    config = _prepare(data_dir, scratch / "demo-work", size)
    result = _train_and_score(config, scratch / "demo-work" / "model", args.demo_minutes, args.eval_every)
    result.update(input_size=size, goal_AP50=0.8, met=(result["AP50"] or 0) >= 0.8)
    return result


def part_micro(args, scratch: Path) -> dict:
    if not MICROCONTROLLERS.is_dir():
        return {"skipped": f"{MICROCONTROLLERS} not found"}
    size = 128 if args.quick else 320
    config = _prepare(MICROCONTROLLERS, scratch / "micro-work", size)
    result = _train_and_score(config, scratch / "micro-work" / "model", args.micro_minutes, None)
    result.update(input_size=size)
    return result


def _timed_steps(step, batch_source, count: int) -> float:
    """Seconds for ``count`` steps after one warm-up (tracing) step."""
    step(batch_source())
    started = time.perf_counter()
    for _ in range(count):
        losses = step(batch_source())
    float(losses["total"].numpy())
    return time.perf_counter() - started


def part_efficiency(args, scratch: Path) -> dict:
    """Real input pipeline + loop step vs a bare step on tensors already in memory (same process, same model)."""
    from spaghettinet.data.demo import make_demo
    from spaghettinet.model.detector import build_detector
    from spaghettinet.pipeline_config import read_config
    from spaghettinet.tf_runtime import import_keras, import_tensorflow
    from spaghettinet.training.inputs import train_dataset
    from spaghettinet.training.loop import _build_train_step

    tf = import_tensorflow()
    keras = import_keras()
    size, batch, steps = (128, 4, 10) if args.quick else (args.efficiency_size, 8, 20)
    data_dir = scratch / "eff-data"
    make_demo(data_dir, images=48)
    cfg = read_config(_prepare(data_dir, scratch / "eff-work", size))
    strategy = tf.distribute.get_strategy()
    model = build_detector("s", cfg.model.num_classes, input_size=(size, size))
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    step = _build_train_step(model, optimizer, strategy, cfg)
    iterator = iter(strategy.experimental_distribute_dataset(train_dataset(cfg, model.anchors, batch)))
    fixed = next(iterator)
    bare = _timed_steps(step, lambda: fixed, steps)
    real = _timed_steps(step, lambda: next(iterator), steps)
    bare_ips, real_ips = batch * steps / bare, batch * steps / real
    return {
        "input_size": size,
        "batch_size": batch,
        "steps": steps,
        "bare_images_per_second": round(bare_ips, 2),
        "pipeline_images_per_second": round(real_ips, 2),
        "ratio": round(real_ips / bare_ips, 3),
        "goal": 0.8,
    }


_MEMORY_CHILD = """
import json, resource, sys
from spaghettinet.model.detector import build_detector
from spaghettinet.pipeline_config.settings import PipelineConfig, ModelSettings
from spaghettinet.tf_runtime import import_tensorflow, import_keras
from spaghettinet.training.loop import _build_train_step
from spaghettinet.training.targets import assign_targets
tf = import_tensorflow(); keras = import_keras()
size, batch = int(sys.argv[1]), int(sys.argv[2])
cfg = PipelineConfig(model=ModelSettings(num_classes=4, variant="s", input_size=(size, size)))
model = build_detector("s", 4, input_size=(size, size))
box = tf.constant([[0.2, 0.2, 0.6, 0.6]]); cls = tf.constant([1])
targets = [assign_targets(box, cls, model.anchors, 4) for _ in range(batch)]
data = {"images": tf.random.uniform([batch, size, size, 3], -1, 1),
        "cls_targets": tf.stack([t[0] for t in targets]), "box_targets": tf.stack([t[1] for t in targets]),
        "matched": tf.stack([t[2] for t in targets])}
step = _build_train_step(model, keras.optimizers.SGD(0.01, momentum=0.9), tf.distribute.get_strategy(), cfg)
for _ in range(3):
    float(step(data)["total"])
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def part_memory(args, scratch: Path) -> dict:
    size, batch = (128, 8) if args.quick else (320, 8)
    output = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(size), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result.update(input_size=size, batch_size=batch)
    return result


PARTS = {"demo": part_demo, "micro": part_micro, "efficiency": part_efficiency, "memory": part_memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS)
    )
    parser.add_argument("--demo-minutes", type=float, default=15.0)
    parser.add_argument(
        "--demo-size", type=int, default=160, help="demo input side (the one-command demo trains at 160)"
    )
    parser.add_argument("--micro-minutes", type=float, default=20.0)
    parser.add_argument("--eval-every", type=int, default=200, help="evaluation interval of the demo curve")
    parser.add_argument("--efficiency-size", type=int, default=320)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the goals")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_train.json")
    args = parser.parse_args(argv)
    results: dict = {
        "machine": describe_machine(),
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for name in args.parts.split(","):
            started = time.perf_counter()
            print(f"== {name}", file=sys.stderr)
            results[name] = PARTS[name](args, Path(scratch))
            results[name]["part_seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(results[name], indent=1, default=str)[:2000], file=sys.stderr)
    results["peak_rss_mib_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from spaghettinet.io_utils import write_text_atomic

    write_text_atomic(args.out, json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
