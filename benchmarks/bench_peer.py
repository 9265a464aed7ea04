"""Side by side with the peer (issue 9 part 1): ``spaghettinet run`` against Ultralytics YOLOv8n trained from
scratch, on the same split, at the same input size, for the same wall-clock training budget, at the same time on one
CPU core each, both scored by our COCO evaluation on the same test images.
Results: ``benchmarks/results/bench_peer.json``.

For each dataset (``--datasets microcontrollers,demo``):

1. Our pipeline up to the TFRecords (``spaghettinet.workflow.run(..., until="tfrecord")``: validate, split, label
   map, records) in a scratch workdir. The records are written out in YOLO's layout (``peer/yolo_dataset.py``), so the
   peer trains and is tested on the same images, pixels, boxes and classes.
2. Both trainings start together, ``taskset -c 0`` ours and ``taskset -c 1`` the peer (``--cores``). Ours is what a
   user runs, ``spaghettinet run DATA --workdir W --input-size S --time-budget Nm`` with ``--from-scratch`` where
   ``run`` has that option (the peer starts from scratch too; ``--ours-start default`` leaves it out): the whole
   default chain, training then evaluate, export, latency and report (the stages before training are already done
   by step 1, so they are skipped as up to date). The peer is ``peer/train_yolo.py`` in its own environment: ``yolov8n.yaml``,
   ``pretrained=False``, ``time=N/60`` hours, ``imgsz=S``, batch 16, CPU, one torch thread, no dataloader workers,
   offline. What each side does after its budget (our evaluate/export/latency/report, the peer's final validation)
   is timed apart.
3. Scoring with :func:`spaghettinet.coco_metrics.coco_metrics` against the test records' ground truth. Ours from
   its int8 ``.tflite``: the shipped file as it is (its NMS keeps at most 10 boxes of score ≥ 0.3), and, for the
   headline figures, the same checkpoint exported again with the same quantization and NMS kind but 100 boxes of
   score ≥ 0.001, the budget the peer is scored with. The peer (``peer/evaluate_yolo.py``) from the int8 ``.tflite``
   of its own export when that works here, else from its PyTorch weights (``model`` says which), with conf 0.001,
   max_det 100 and its default NMS IoU; its boxes are converted to COCO results in the original images' pixels,
   classes matched by name.

Recorded per dataset: AP and AP50 of both, ``ratio_AP50`` and ``ratio_AP`` (ours / peer), training images/s, steps
and epochs, post-training seconds, the commands; and the versions and the machine (CPU model, AVX-512 VNNI).

The peer's environment (ultralytics, torch: never dependencies of spaghettinet) is made on first use outside the
repository, ``--peer-venv`` (default ``~/.cache/spaghettinet-bench/peer-venv``, about 7 GB, mostly torch); when it
cannot be made the JSON gets the exact error and the script exits 2.

Usage: ``python benchmarks/bench_peer.py`` (``make bench-peer``): about an hour (20 minutes' training on the microcontrollers,
10 on the demo data, plus data preparation, exports and scoring), on a machine whose two cores nothing else uses.
``--quick`` (2-minute budgets, 128² input, 48 demo images) checks that the script works end to end; its figures are
not the benchmark's, and it writes to a scratch file unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
from machine import describe_machine
from peer.environment import (
    DEFAULT_PATH,
    DEFAULT_PYTHON,
    PeerEnvironment,
    PeerEnvironmentError,
    ensure_peer_environment,
)
from peer.yolo_dataset import write_yolo_dataset, yolo_file_name

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MICROCONTROLLERS = REPO.parent / "shared" / "datasets" / "microcontrollers" / "all"
DEFAULT_OUT = HERE / "results" / "bench_peer.json"
DATASETS = ("microcontrollers", "demo")
#: How the peer is scored: Ultralytics' validation settings (conf 0.001; 100 boxes, COCO's own maximum).
SCORE_THRESHOLD = 0.001
MAX_DETECTIONS = 100
PEER_BATCH = 16
QUICK_MINUTES = 2.0
QUICK_SIZE = 128
QUICK_DEMO_IMAGES = 48
#: Beyond the budget, what a side may take before it is stopped: setup, our export/latency/report, their final val.
EXTRA_SECONDS = 1800
LOG_TAIL_LINES = 25
#: What the figures in the JSON mean, written into it.
DEFINITIONS = {
    "AP, AP50": "COCO AP@[.5:.95] and AP@.5 of the test split by spaghettinet.coco_metrics.coco_metrics, for both "
    "sides; ratio_AP50 and ratio_AP are ours / peer",
    "ours.model": "ours is scored from its int8 .tflite: int8_scoring_export (the same checkpoint exported again, "
    "100 boxes of score >= 0.001, as the peer is scored) unless that failed; int8_shipped is the file as shipped",
    "peer.model": "the peer's int8 .tflite from its own export when that worked, else its PyTorch weights",
    "ours.images_per_second": "steps x batch / seconds of the train stage (its budget clock starts before the model "
    "is built; tracing and checkpoints included); images_per_second_loop is the loop's own mean over timed steps",
    "peer.images_per_second": "images trained / seconds from Ultralytics' clock start (after its setup) to the end of "
    "its last epoch, per-epoch validation included; images_per_second_steps counts the train loops only",
    "post_training_seconds": "after the training budget: our evaluate, export, latency and report stages; the "
    "peer's final validation",
}
_STAGE_DONE = re.compile(r"^(?P<stage>[a-z0-9_]+): done in (?P<seconds>[\d.]+) s: (?P<summary>.*)$")
_STEP_SUMMARY = re.compile(r"^step (?P<step>\d+) \((?P<stopped>[a-z_]+)")
_LOOP_SPEED = re.compile(r"(?P<speed>[\d.]+) img/s")


def _log(line: str) -> None:
    print(f"[bench_peer] {line}", file=sys.stderr, flush=True)


class Portable:
    """Turns paths of this machine into names that mean the same on another one (no absolute paths in the JSON)."""

    def __init__(self, scratch: Path, peer_venv: Path):
        # Longest roots first, so a path inside the scratch folder is not written relative to the repository.
        self.roots = sorted(
            [
                (scratch.resolve(), "$SCRATCH"),
                (peer_venv.expanduser().resolve(), "$PEER_VENV"),
                (Path(sys.executable).parent.resolve(), ""),
                (Path(sys.executable).parent, ""),
                (REPO, "."),
                (REPO.parent, ".."),
                (Path.home(), "~"),
            ],
            key=lambda root: -len(str(root[0])),
        )

    def __call__(self, value) -> str:
        text = str(value)
        for root, label in self.roots:
            prefix = str(root)
            if text == prefix:
                return label or "."
            if text.startswith(prefix + os.sep):
                rest = text[len(prefix) + 1 :]
                return f"{label}/{rest}" if label else rest
        return text

    def command(self, command: list) -> str:
        return shlex.join(self(part) for part in command)

    def scrub(self, value):
        """``value`` (JSON-like) with this machine's paths replaced inside every string (logs, error messages)."""
        if isinstance(value, dict):
            return {key: self.scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        if isinstance(value, str):
            for root, label in self.roots:
                value = value.replace(str(root) + os.sep, f"{label}/" if label else "")
            return value
        return value


@dataclass
class Side:
    """One training process of the race: its command, log and how it ended."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    finished: float | None = None
    exit_code: int | None = None
    timed_out: bool = False

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w", encoding="utf-8") as sink:
            # A session of its own, so a stop on timeout or Ctrl-C reaches the side's children too.
            self.process = subprocess.Popen(
                self.command, stdout=sink, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.started = time.monotonic()

    def poll(self) -> bool:
        """True once the process has ended (and records when)."""
        if self.finished is None and self.process.poll() is not None:
            self.finished, self.exit_code = time.monotonic(), self.process.returncode
        return self.finished is not None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.poll()

    @property
    def wall_seconds(self) -> float | None:
        return None if self.finished is None else round(self.finished - self.started, 1)

    def log_tail(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return []


def race(sides: list[Side], timeout_s: float) -> None:
    """Start ``sides`` together and wait for all; any still running after ``timeout_s`` is stopped."""
    for side in sides:
        side.start()
        _log(f"{side.name}: started, log {side.log_path}")
    deadline = time.monotonic() + timeout_s
    try:
        # Every side is polled on every round (not all(...), which stops at the first one still running), so
        # each one's end is timed when it happens.
        while not all([side.poll() for side in sides]):
            if time.monotonic() > deadline:
                for side in sides:
                    if not side.poll():
                        side.timed_out = True
                        side.stop()
                break
            time.sleep(2)
    finally:  # Ctrl-C included: leave no training behind
        for side in sides:
            side.stop()
    for side in sides:
        _log(f"{side.name}: exit {side.exit_code} after {side.wall_seconds} s")


# --------------------------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------------------------


def prepare_data(name: str, args, folder: Path) -> tuple[Path, str]:
    """The labelled photos of dataset ``name``: their folder, and how the JSON names it."""
    if name == "microcontrollers":
        if not MICROCONTROLLERS.is_dir():
            raise BenchError(f"{MICROCONTROLLERS} not found (the shared microcontrollers dataset)")
        return MICROCONTROLLERS, str(Path("..") / MICROCONTROLLERS.relative_to(REPO.parent))
    from spaghettinet.data.demo import make_demo

    images = QUICK_DEMO_IMAGES if args.quick else None
    made = make_demo(folder / "demo-data", **({"images": images} if images else {}), seed=0)
    return folder / "demo-data", f"make_demo(images={made.images}, seed=0)"


def prepare_split(data_dir: Path, workdir: Path, input_size: int) -> None:
    """Our chain up to the records, in the workdir the timed ``spaghettinet run`` then continues."""
    from spaghettinet.workflow import run

    run(data_dir, workdir, input_size=input_size, until="tfrecord", show_progress=False, log=_log)


class BenchError(Exception):
    """An expected failure of one dataset's run (a missing dataset, a side that failed); the message says which."""


# --------------------------------------------------------------------------------------------------------------
# Our side
# --------------------------------------------------------------------------------------------------------------


def spaghettinet_program() -> Path:
    program = Path(sys.executable).with_name("spaghettinet")
    if not program.is_file():
        raise BenchError(
            f"no `spaghettinet` command beside {sys.executable}; run with the project's .venv/bin/python"
        )
    return program


def from_scratch_option(start: str) -> list[str]:
    """``--from-scratch`` when asked for and this version's ``run`` has it (the peer trains from scratch too).

    Versions that start from the zoo's COCO checkpoint by default have the option; older ones always start from
    scratch and do not.
    """
    import inspect

    from spaghettinet.workflow import run

    return (
        ["--from-scratch"]
        if start == "scratch" and "from_scratch" in inspect.signature(run).parameters
        else []
    )


def budget_text(minutes: float) -> str:
    """``--time-budget`` for ``minutes``: whole minutes as ``20m``, anything else in seconds.

    Example:
        >>> budget_text(20), budget_text(0.5)
        ('20m', '30s')
    """
    return f"{int(minutes)}m" if float(minutes).is_integer() else f"{round(minutes * 60)}s"


def summarize_ours(side: Side, workdir: Path) -> dict:
    """Steps, speed and stage seconds of our run, from its log and its training folder."""
    log_text = side.log_path.read_text(encoding="utf-8", errors="replace")
    stages = {}
    for line in log_text.splitlines():
        match = _STAGE_DONE.match(line.strip())
        if match:
            stages[match["stage"]] = {"seconds": float(match["seconds"]), "summary": match["summary"]}
    summary: dict = {
        "exit_code": side.exit_code,
        "timed_out": side.timed_out,
        "wall_seconds": side.wall_seconds,
        "stages": stages,
    }
    state_path = workdir / "training" / "training-output" / "train_state.json"
    plan = json.loads(state_path.read_text()) if state_path.is_file() else {}
    train = stages.get("train", {})
    step_match = _STEP_SUMMARY.match(train.get("summary", ""))
    steps = int(step_match["step"]) if step_match else None
    batch = plan.get("batch_size")
    speeds = _LOOP_SPEED.findall(log_text)
    summary.update(
        steps=steps,
        stopped=step_match["stopped"] if step_match else None,
        batch_size=batch,
        quantization_delay=plan.get("quantization_delay"),
        train_seconds=train.get("seconds"),
        images_trained=None if steps is None or batch is None else steps * batch,
        # The whole train stage (model build, tracing, checkpoints included), as the peer's figure is counted.
        images_per_second=(
            round(steps * batch / train["seconds"], 2) if steps and batch and train.get("seconds") else None
        ),
        # The training loop's own mean over its timed steps (its last progress line).
        images_per_second_loop=float(speeds[-1]) if speeds else None,
        post_training_seconds={
            name: stages[name]["seconds"]
            for name in ("evaluate", "export", "latency", "report")
            if name in stages
        },
    )
    evaluation_path = workdir / "training" / "training-output" / "eval.json"
    if evaluation_path.is_file():
        # The evaluate stage's float checkpoint on the test split (its own NMS settings), beside the int8 files.
        from spaghettinet.coco_metrics import EvalReport

        result = EvalReport.read(evaluation_path).result
        summary["checkpoint_eval"] = {"AP": result.ap, "AP50": result.ap50}
    if side.exit_code != 0:
        summary["log_tail"] = side.log_tail()
    return summary


def export_for_scoring(workdir: Path, out: Path) -> dict:
    """The shipped int8 model's checkpoint exported again as the peer is scored: 100 boxes of score ≥ 0.001.

    Same quantization (QAT or PTQ), same NMS kind and IoU as the shipped file; only the box budget differs.
    """
    from spaghettinet.deploy.export import export

    shipped = json.loads((workdir / "exported" / "export_report.json").read_text(encoding="utf-8"))
    postprocess = shipped["postprocess"]
    started = time.monotonic()
    result = export(
        workdir / "training" / "pipeline.config",
        workdir / "training" / "training-output",
        out,
        max_detections=MAX_DETECTIONS,
        score_threshold=SCORE_THRESHOLD,
        iou_threshold=postprocess["iou_threshold"],
        regular_nms=postprocess["use_regular_nms"],
        quantize=shipped["quantization"],
        # One image for the export's own accuracy check: the scoring below covers the test set, and the model
        # written does not depend on it.
        check_images=1,
        run_compiler=False,
    )
    if result.int8_model is None:
        raise BenchError(f"the scoring export wrote no int8 model (quantization {result.quantization})")
    return {
        "model": result.int8_model,
        "quantization": result.quantization,
        "step": result.step,
        "seconds": round(time.monotonic() - started, 1),
        "use_regular_nms": postprocess["use_regular_nms"],
        "iou_threshold": postprocess["iou_threshold"],
    }


# --------------------------------------------------------------------------------------------------------------
# Scoring (our evaluator for both sides)
# --------------------------------------------------------------------------------------------------------------


class ScoringSet:
    """The test records' ground truth, as our evaluator takes it, with the YOLO file names of the images."""

    def __init__(self, training_dir: Path):
        from spaghettinet.coco_metrics import ImageGroundTruth
        from spaghettinet.data.labelmap import read_label_map
        from spaghettinet.data.tfrecord import read_examples

        self.class_names = read_label_map(training_dir / "label_map.pbtxt").names
        self.examples = list(read_examples(training_dir / "test.record"))
        self.ground_truth = [
            ImageGroundTruth(
                image_id=index,
                width=int(example.width),
                height=int(example.height),
                boxes=np.asarray(example.boxes, np.float32).reshape(-1, 4),
                classes=np.asarray(example.classes, np.int64),
                file_name=example.filename,
            )
            for index, example in enumerate(self.examples)
        ]
        self.index_of = {
            yolo_file_name(example.filename): index for index, example in enumerate(self.examples)
        }

    def metrics(self, detections: list) -> dict:
        from spaghettinet.coco_metrics import coco_metrics

        result = coco_metrics(self.ground_truth, detections, self.class_names)
        return {
            "AP": result.ap,
            "AP50": result.ap50,
            "AP75": result.ap75,
            "per_class_AP50": result.per_class_ap50,
            "detections": result.num_detections,
        }

    def score_tflite(self, model: Path) -> dict:
        """COCO metrics of one of our ``.tflite`` files, run with LiteRT as the export's own check runs it."""
        from spaghettinet.coco_metrics import ImageDetections
        from spaghettinet.deploy.runtime import TfliteDetector, resize_for_model

        detector = TfliteDetector(model)
        detections = []
        for index, example in enumerate(self.examples):
            found = detector.detect(resize_for_model(example.decode_image(), detector.input_size))
            detections.append(
                ImageDetections(index, np.clip(found.boxes, 0.0, 1.0), found.scores, found.classes)
            )
        return self.metrics(detections)

    def score_coco_results(self, results: list[dict], sizes: dict[str, list[int]]) -> dict:
        """COCO metrics of the peer's COCO-format results (pixels of the original image, 1-based categories).

        Raises:
            BenchError: an image the test set lacks, or one the peer read at another size than our records hold.
        """
        from spaghettinet.coco_metrics import ImageDetections

        mismatched = [
            name
            for name, (height, width) in sizes.items()
            if name not in self.index_of
            or (self.examples[self.index_of[name]].height, self.examples[self.index_of[name]].width)
            != (height, width)
        ]
        unseen = sorted(set(self.index_of) - set(sizes))
        if mismatched or unseen:
            raise BenchError(
                f"the peer read test images at other sizes or names ({mismatched[:5]}) or not at all ({unseen[:5]})"
            )
        per_image: dict[int, list[dict]] = {index: [] for index in range(len(self.examples))}
        for result in results:
            per_image[self.index_of[result["file_name"]]].append(result)
        detections = []
        for index, found in per_image.items():
            example = self.examples[index]
            boxes = np.asarray([r["bbox"] for r in found], np.float64).reshape(-1, 4)
            x, y, w, h = boxes.T
            yxyx = np.stack(
                [y / example.height, x / example.width, (y + h) / example.height, (x + w) / example.width],
                axis=1,
            )
            detections.append(
                ImageDetections(
                    index,
                    yxyx.astype(np.float32),
                    np.asarray([r["score"] for r in found], np.float32),
                    np.asarray([r["category_id"] - 1 for r in found], np.int64),
                )
            )
        return self.metrics(detections)


# --------------------------------------------------------------------------------------------------------------
# The peer's side
# --------------------------------------------------------------------------------------------------------------


def peer_environment_variables(scratch: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="false",
        # Ultralytics' settings file and matplotlib's cache go to the scratch folder, not the user's home.
        YOLO_CONFIG_DIR=str(scratch / "yolo-config"),
        MPLCONFIGDIR=str(scratch / "matplotlib"),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
    )
    return env


def summarize_peer(side: Side, summary_path: Path) -> dict:
    summary: dict = {
        "exit_code": side.exit_code,
        "timed_out": side.timed_out,
        "wall_seconds": side.wall_seconds,
    }
    if summary_path.is_file():
        trained = json.loads(summary_path.read_text(encoding="utf-8"))
        seconds, step_seconds = trained.get("training_seconds"), trained.get("step_seconds")
        images = trained.get("images_trained")
        summary.update(trained)
        summary["images_per_second"] = round(images / seconds, 2) if images and seconds else None
        summary["images_per_second_steps"] = (
            round(images / step_seconds, 2) if images and step_seconds else None
        )
        summary["post_training_seconds"] = {"final_val": trained.get("final_eval_seconds")}
    if side.exit_code != 0 or not summary_path.is_file():
        summary["log_tail"] = side.log_tail()
    return summary


def evaluate_peer(
    environment: PeerEnvironment,
    weights: Path,
    dataset,
    imgsz: int,
    core: int,
    env: dict,
    out: Path,
    int8: bool,
) -> tuple[dict, list[str]]:
    """Run ``peer/evaluate_yolo.py`` (pinned to the peer's core); its report and the command."""
    command = [
        "taskset",
        "-c",
        str(core),
        str(environment.python),
        str(HERE / "peer" / "evaluate_yolo.py"),
        "--weights",
        str(weights),
        "--images",
        str(dataset.image_dir("test")),
        "--data",
        str(dataset.data_yaml),
        "--names",
        json.dumps(dataset.class_names),
        "--imgsz",
        str(imgsz),
        "--conf",
        str(SCORE_THRESHOLD),
        "--max-det",
        str(MAX_DETECTIONS),
        "--out",
        str(out),
    ] + (["--int8"] if int8 else [])
    log_path = out.with_suffix(".log")
    with log_path.open("w", encoding="utf-8") as sink:
        finished = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    if finished.returncode or not out.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise BenchError(f"peer evaluation exited {finished.returncode}:\n" + "\n".join(tail))
    return json.loads(out.read_text(encoding="utf-8")), command


# --------------------------------------------------------------------------------------------------------------
# One dataset
# --------------------------------------------------------------------------------------------------------------


def _ratio(ours: float | None, peer: float | None) -> float | None:
    return None if ours is None or not peer else round(ours / peer, 3)


def run_dataset(name: str, args, environment: PeerEnvironment, scratch: Path, portable: Portable) -> dict:
    folder = scratch / name
    folder.mkdir(parents=True, exist_ok=True)
    size = QUICK_SIZE if args.quick else (args.input_size if name == "microcontrollers" else args.demo_size)
    minutes = (
        args.quick_minutes
        if args.quick
        else (args.minutes if name == "microcontrollers" else args.demo_minutes)
    )
    entry: dict = {
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_at_start": describe_machine(),
        "input_size": size,
        "budget_minutes": minutes,
        "cores": {"ours": args.cores[0], "peer": args.cores[1]},
    }

    data_dir, entry["data"] = prepare_data(name, args, folder)
    workdir = folder / "ours"
    _log(f"{name}: our pipeline up to the records in {workdir}")
    prepare_split(data_dir, workdir, size)
    dataset = write_yolo_dataset(workdir / "training", folder / "yolo")
    entry["split"] = {
        "train_images": dataset.images["train"],
        "test_images": dataset.images["test"],
        "train_objects": dataset.objects["train"],
        "test_objects": dataset.objects["test"],
        "classes": dataset.class_names,
    }

    ours = Side(
        "ours",
        ["taskset", "-c", str(args.cores[0]), str(spaghettinet_program()), "run", str(data_dir)]
        + ["--workdir", str(workdir), "--input-size", str(size), "--time-budget", budget_text(minutes)]
        + from_scratch_option(args.ours_start),
        folder / "ours.log",
        # Wide enough that rich never wraps the stage lines this script reads back.
        dict(os.environ, COLUMNS="300", PYTHONUNBUFFERED="1"),
    )
    peer_env = peer_environment_variables(folder, threads=1)
    peer_summary_path = folder / "peer-train.json"
    peer = Side(
        "peer",
        ["taskset", "-c", str(args.cores[1]), str(environment.python), str(HERE / "peer" / "train_yolo.py")]
        + ["--data", str(dataset.data_yaml), "--imgsz", str(size), "--hours", f"{minutes / 60:.6g}"]
        + ["--batch", str(PEER_BATCH), "--threads", "1", "--project", str(folder / "peer-runs")]
        + ["--out", str(peer_summary_path)],
        folder / "peer.log",
        peer_env,
    )
    _log(
        f"{name}: both train for {minutes:g} min at {size}², ours on core {args.cores[0]}, peer on {args.cores[1]}"
    )
    race([ours, peer], timeout_s=2 * minutes * 60 + EXTRA_SECONDS)
    entry["commands"] = {"ours": portable.command(ours.command), "peer_train": portable.command(peer.command)}
    entry["ours"] = summarize_ours(ours, workdir)
    entry["peer"] = summarize_peer(peer, peer_summary_path)
    for key in ("last_weights", "best_weights"):
        if key in entry["peer"]:
            entry["peer"][key] = portable(entry["peer"][key])

    test_set = ScoringSet(workdir / "training")
    # Our side: the int8 file as shipped, and the same checkpoint exported with the peer's box budget.
    shipped = workdir / "exported" / "model_int8.tflite"
    if ours.exit_code == 0 and shipped.is_file():
        report = json.loads((workdir / "exported" / "export_report.json").read_text(encoding="utf-8"))
        entry["ours"]["int8_shipped"] = {
            "file": "exported/model_int8.tflite",
            "quantization": report.get("quantization"),
            "max_detections": report["postprocess"]["max_detections"],
            "score_threshold": report["postprocess"]["score_threshold"],
            **test_set.score_tflite(shipped),
        }
        try:
            scoring = export_for_scoring(workdir, folder / "ours-scoring-export")
            entry["ours"]["int8_scoring_export"] = {
                "file": "model_int8.tflite of the same checkpoint, exported again",
                "max_detections": MAX_DETECTIONS,
                "score_threshold": SCORE_THRESHOLD,
                **{k: v for k, v in scoring.items() if k != "model"},
                **test_set.score_tflite(scoring["model"]),
            }
            headline = entry["ours"]["int8_scoring_export"]
            entry["ours"]["model"] = f"int8 .tflite, {MAX_DETECTIONS} boxes of score >= {SCORE_THRESHOLD}"
        except Exception as exc:  # the shipped file's figures still stand
            entry["ours"]["int8_scoring_export"] = {"error": f"{type(exc).__name__}: {exc}"}
            headline = entry["ours"]["int8_shipped"]
            entry["ours"]["model"] = "int8 .tflite as shipped (the scoring export failed)"
        entry["ours"]["AP"], entry["ours"]["AP50"] = headline["AP"], headline["AP50"]
    else:
        entry["ours"]["error"] = "no int8 .tflite: `spaghettinet run` did not finish (log_tail)"
        entry["ours"].setdefault("log_tail", ours.log_tail())

    # The peer's side: its chosen weights, and its int8 export when its environment has the packages.
    weights_key = f"{args.peer_weights}_weights"
    weights = (
        Path(json.loads(peer_summary_path.read_text())[weights_key]) if peer_summary_path.is_file() else None
    )
    if peer.exit_code == 0 and weights is not None and weights.is_file():
        report, command = evaluate_peer(
            environment,
            weights,
            dataset,
            size,
            args.cores[1],
            peer_env,
            folder / "peer-detections.json",
            int8=environment.int8_export and not args.no_peer_int8,
        )
        entry["commands"]["peer_evaluate"] = portable.command(command)
        models = report["models"]
        entry["peer"]["prediction"] = report["settings"]
        entry["peer"]["pytorch"] = {
            "file": f"{args.peer_weights}.pt",
            "seconds": models["pytorch"]["seconds"],
            **test_set.score_coco_results(models["pytorch"]["detections"], report["sizes"]),
        }
        int8 = models.get("int8_tflite")
        if int8 is None:
            why = "--no-peer-int8" if args.no_peer_int8 else environment.int8_export_error
            entry["peer"]["int8_tflite"] = {"skipped": why or "the export's packages are not installed"}
        elif "error" in int8:
            entry["peer"]["int8_tflite"] = {k: v for k, v in int8.items() if k != "detections"}
        else:
            entry["peer"]["int8_tflite"] = {
                **{k: v for k, v in int8.items() if k != "detections"},
                **test_set.score_coco_results(int8["detections"], report["sizes"]),
            }
        if int8 is not None and "error" not in int8:
            headline, entry["peer"]["model"] = (
                entry["peer"]["int8_tflite"],
                f"int8 .tflite of {args.peer_weights}.pt",
            )
        else:
            headline, entry["peer"]["model"] = (
                entry["peer"]["pytorch"],
                f"PyTorch {args.peer_weights}.pt (float)",
            )
        entry["peer"]["AP"], entry["peer"]["AP50"] = headline["AP"], headline["AP50"]
    else:
        entry["peer"]["error"] = "the peer's training did not finish (log_tail)"
        entry["peer"].setdefault("log_tail", peer.log_tail())

    entry["ratio_AP50"] = _ratio(entry["ours"].get("AP50"), entry["peer"].get("AP50"))
    entry["ratio_AP"] = _ratio(entry["ours"].get("AP"), entry["peer"].get("AP"))
    entry["ratio_images_per_second"] = _ratio(
        entry["ours"].get("images_per_second"), entry["peer"].get("images_per_second")
    )
    return entry


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def _our_versions() -> dict:
    versions = {}
    for name in ("spaghettinet", "tensorflow", "keras", "ai-edge-litert", "pycocotools"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _check_peer_venv_outside_repository(peer_venv: Path) -> None:
    resolved = peer_venv.expanduser().resolve()
    if resolved == REPO or REPO in resolved.parents:
        raise BenchError(
            f"--peer-venv {peer_venv} lies inside the repository; the peer's packages stay outside it"
        )


def _check_cores(cores: list[int]) -> None:
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (util-linux); it pins each side to its core")
    allowed = os.sched_getaffinity(0)
    if len(set(cores)) != 2 or not set(cores) <= allowed:
        raise BenchError(
            f"--cores must name two different cores of this process's {sorted(allowed)}, got {cores}"
        )


def _write(results: dict, out: Path) -> None:
    from spaghettinet.io_utils import write_text_atomic

    write_text_atomic(out, json.dumps(results, indent=1, default=str) + "\n")


def _previous_results(out: Path, quick: bool) -> dict:
    """The file's other datasets, kept when only some are rerun (and only from a run of the same kind)."""
    try:
        previous = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict) or previous.get("quick") != quick:
        return {}
    return {name: previous[name] for name in DATASETS if name in previous}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS)
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget on the microcontrollers")
    parser.add_argument("--input-size", type=int, default=320, help="input side on the microcontrollers")
    parser.add_argument("--demo-minutes", type=float, default=10.0, help="training budget on the demo data")
    parser.add_argument(
        "--demo-size", type=int, default=160, help="input side on the demo data (as `make demo`)"
    )
    parser.add_argument("--cores", default="0,1", help="CPU cores for ours and the peer")
    parser.add_argument(
        "--peer-venv", type=Path, default=DEFAULT_PATH, help="the peer's environment (made if missing)"
    )
    parser.add_argument(
        "--peer-python", default=DEFAULT_PYTHON, help="interpreter that makes the peer's environment"
    )
    parser.add_argument(
        "--peer-weights",
        choices=("last", "best"),
        default="last",
        help="the peer's weights scored: last.pt (where its budget ended, as ours ships its last checkpoint) or "
        "best.pt (picked by its validation, which here is the test split)",
    )
    parser.add_argument(
        "--ours-start",
        choices=("scratch", "default"),
        default="scratch",
        help="scratch: pass --from-scratch to `spaghettinet run` where it has it, as the peer starts from scratch; "
        "default: whatever `spaghettinet run` starts from by default",
    )
    parser.add_argument("--no-peer-int8", action="store_true", help="score the peer's PyTorch weights only")
    parser.add_argument(
        "--quick", action="store_true", help="2-minute budgets at 128²: checks the script only"
    )
    parser.add_argument("--quick-minutes", type=float, default=QUICK_MINUTES)
    parser.add_argument("--scratch", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, logs, datasets)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"results file (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    args = parser.parse_args(argv)
    args.cores = [int(core) for core in args.cores.split(",")]
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    out = args.out or (Path(tempfile.gettempdir()) / "bench_peer_quick.json" if args.quick else DEFAULT_OUT)

    results: dict = {
        "quick": args.quick,
        "definitions": DEFINITIONS,
        "machine": describe_machine(),
        "settings": {
            "peer_model": "yolov8n.yaml, pretrained=False",
            "ours_start": args.ours_start,
            "peer_batch": PEER_BATCH,
            "peer_weights_scored": f"{args.peer_weights}.pt",
            "score_threshold": SCORE_THRESHOLD,
            "max_detections": MAX_DETECTIONS,
            "cores": {"ours": args.cores[0], "peer": args.cores[1]},
        },
        "versions": {"ours": _our_versions()},
        **_previous_results(out, args.quick),
    }
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-peer-"))
    scratch.mkdir(parents=True, exist_ok=True)
    portable = Portable(scratch, args.peer_venv)
    peer_venv_name = str(args.peer_venv).replace(str(Path.home()), "~", 1)
    try:
        _check_cores(args.cores)
        _check_peer_venv_outside_repository(args.peer_venv)
        environment = ensure_peer_environment(args.peer_venv, args.peer_python, log=_log)
    except (BenchError, PeerEnvironmentError) as exc:
        _log(f"error: {exc}")
        results["error"] = {
            "stage": "setup",
            "peer_venv": peer_venv_name,
            "message": portable.scrub(str(exc)),
        }
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        _write(results, out)
        _log(f"wrote {out}")
        return 2
    results["versions"]["peer"] = environment.versions
    results["peer_environment"] = {
        "venv": peer_venv_name,
        "size_mib": environment.size_mib(),
        "int8_export_packages": environment.int8_export,
        "int8_export_packages_error": environment.int8_export_error,
    }

    failed = False
    try:
        for name in names:
            started = time.monotonic()
            try:
                entry = run_dataset(name, args, environment, scratch, portable)
            except KeyboardInterrupt:
                results[name] = {"error": "interrupted"}
                _write(results, out)
                _log(f"interrupted; wrote {out}")
                return 130
            except Exception as exc:  # one dataset's failure is recorded; the next dataset still runs
                failed = True
                entry = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback_tail": traceback.format_exc().splitlines()[-8:],
                }
                _log(f"{name}: failed: {type(exc).__name__}: {exc}")
            entry["seconds"] = round(time.monotonic() - started, 1)
            failed = failed or any("error" in entry.get(side, {}) for side in ("ours", "peer"))
            results[name] = portable.scrub(entry)
            _write(results, out)
            _log(
                f"{name}: ours AP50 {entry.get('ours', {}).get('AP50')} AP {entry.get('ours', {}).get('AP')}; "
                f"peer AP50 {entry.get('peer', {}).get('AP50')} AP {entry.get('peer', {}).get('AP')}; "
                f"ratio AP50 {entry.get('ratio_AP50')}"
            )
    finally:
        if args.keep or args.scratch:
            _log(f"work folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    _log(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
