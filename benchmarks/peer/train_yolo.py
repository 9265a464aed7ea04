"""Train Ultralytics YOLOv8n from scratch for a wall-clock budget, offline, on one thread: the peer's side of
``benchmarks/bench_peer.py``. Runs with the peer environment's Python (it imports ultralytics, not spaghettinet).

What a user of the peer runs (``YOLO("yolov8n.yaml").train(data=..., time=H, imgsz=S, batch=16)``), with what keeps
it comparable and off the network: ``pretrained=False``, ``device="cpu"``, ``workers=0``, ``plots=False``, one torch
thread, ``YOLO_OFFLINE`` and no automatic pip installs. Its own validation (every epoch, and the final one with
``best.pt``) runs as usual; the final one is timed apart, as a post-training step.

Writes ``--out`` (JSON): epochs and images trained, training seconds (from Ultralytics' own clock start to the end of
the last epoch, per-epoch validation included) and the seconds spent in train steps alone, the final validation's
seconds and metrics, and the weights' paths.

Usage: ``PEER_PYTHON train_yolo.py --data data.yaml --imgsz 320 --hours 0.333 --project DIR --out train.json``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _stay_offline_and_single_threaded(threads: int) -> None:
    # Read by ultralytics when it is imported: is_online() answers False at once (no DNS probes, no telemetry),
    # and a missing requirement is an error instead of a pip install in the middle of a timed run.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def _patch_ultralytics(threads: int) -> None:
    import torch
    import ultralytics.data.utils
    import ultralytics.utils.torch_utils

    # select_device() resets torch's thread count to NUM_THREADS (CPU count - 1, at most 8) for CPU training and
    # again for the final validation; one core is what the benchmark gives each side.
    ultralytics.utils.torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)
    # check_det_dataset() looks for Arial.ttf and downloads it when missing, though only plots draw text with it
    # (plots=False here): skip the look-up so the run never reaches for the network.
    ultralytics.data.utils.check_font = lambda *args, **kwargs: None


class TrainingClock:
    """Ultralytics callbacks that count what was trained and time the training apart from the final validation.

    Attributes:
        train_images: images in the train split.
        batches_per_epoch: batches of one full epoch.
        epochs: epochs trained, the last one as the fraction of its batches that ran before the time ran out.
        images_trained: images that went through a train step.
        step_seconds: seconds inside the epochs' train loops (per-epoch validation and checkpointing excluded).
        training_seconds: from Ultralytics' own clock start to the end of the last epoch.
        final_eval_seconds: the final validation with ``best.pt`` (after the budget).
    """

    def __init__(self):
        self.train_images = 0
        self.batches_per_epoch = 0
        self.epochs = 0.0
        self.images_trained = 0
        self.step_seconds = 0.0
        self.training_seconds: float | None = None
        self.final_eval_seconds: float | None = None
        self._clock_start = 0.0
        self._epoch_start = 0.0
        self._batches = 0

    def on_train_start(self, trainer) -> None:
        self._clock_start = trainer.train_time_start
        self.train_images = len(trainer.train_loader.dataset)
        self.batches_per_epoch = len(trainer.train_loader)
        run_final_eval = trainer.final_eval

        def timed_final_eval():
            loop_end = time.time()
            self.training_seconds = loop_end - self._clock_start
            run_final_eval()
            self.final_eval_seconds = time.time() - loop_end

        trainer.final_eval = timed_final_eval  # the trainer calls it once, right after the last epoch

    def on_train_epoch_start(self, trainer) -> None:
        self._epoch_start = time.time()
        self._batches = 0

    def on_train_batch_start(self, trainer) -> None:
        # Counted at the start: the batch that runs out the time is trained, then the loop breaks before the
        # batch-end callbacks.
        self._batches += 1

    def on_train_epoch_end(self, trainer) -> None:
        self.step_seconds += time.time() - self._epoch_start
        if self._batches >= self.batches_per_epoch:
            self.images_trained += self.train_images
        else:
            self.images_trained += min(self.train_images, self._batches * trainer.batch_size)
        self.epochs += self._batches / max(1, self.batches_per_epoch)

    def register(self, model) -> None:
        for event in (
            "on_train_start",
            "on_train_epoch_start",
            "on_train_batch_start",
            "on_train_epoch_end",
        ):
            model.add_callback(event, getattr(self, event))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the YOLO data.yaml")
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--hours", type=float, required=True, help="Ultralytics' `time` argument")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=Path, required=True, help="folder for Ultralytics' run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    _stay_offline_and_single_threaded(args.threads)
    started = time.time()
    _patch_ultralytics(args.threads)
    import torch
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    clock = TrainingClock()
    clock.register(model)
    metrics = model.train(
        data=str(args.data),
        imgsz=args.imgsz,
        batch=args.batch,
        time=args.hours,
        pretrained=False,
        device="cpu",
        workers=0,
        plots=False,
        seed=args.seed,
        project=str(args.project.resolve()),
        name="train",
        exist_ok=True,
    )
    trainer = model.trainer
    own_validation = getattr(metrics, "results_dict", None) or {}
    summary = {
        "model": "yolov8n.yaml",
        "pretrained": False,
        "batch": args.batch,
        "imgsz": args.imgsz,
        "time_hours": args.hours,
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "train_images": clock.train_images,
        "batches_per_epoch": clock.batches_per_epoch,
        "epochs": round(clock.epochs, 3),
        "epochs_started": trainer.epoch + 1,
        "images_trained": clock.images_trained,
        "training_seconds": None if clock.training_seconds is None else round(clock.training_seconds, 1),
        "step_seconds": round(clock.step_seconds, 1),
        "final_eval_seconds": None
        if clock.final_eval_seconds is None
        else round(clock.final_eval_seconds, 1),
        "setup_seconds": round(clock._clock_start - started, 1) if clock._clock_start else None,
        "process_seconds": round(time.time() - started, 1),
        "own_validation": {key: float(value) for key, value in own_validation.items()},
        "last_weights": str(trainer.last),
        "best_weights": str(trainer.best),
    }
    args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
