"""The resumable training loop: ``train(config, model_dir, ...)`` behind ``spaghettinet train``.

One custom loop for every device layout: ``tf.distribute`` picks the default strategy on one device,
``MirroredStrategy`` on several GPUs and ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set; batches go
through ``experimental_distribute_dataset`` and ``strategy.run``, and each replica's loss is divided by the number
of replicas (Keras sums the replicas' gradients).

Per step: the config's optimizer (momentum SGD as the reference, or Adam) on the reference loss (sigmoid focal +
smooth L1, normalized by matches, plus the model's L2 regularization), learning rate from the
cosine-with-warmup schedule; with ``use_moving_average`` the weight averages move after the step
(``training/weight_averaging.py``) and evaluation uses them when ``eval_config.use_moving_averages`` asks. What a run decided
(batch size, schedule length, warmup, QAT delay, seed) is kept in ``<model_dir>/train_state.json`` so that a rerun
resumes with the same schedule; the checkpoint (``training/checkpoints.py``) holds the step, optimizer slots, data
position and QAT flag, so a resumed run continues where it stopped (no repeated warmup, same data).

Stops: after ``num_steps``; when a ``time_budget`` is spent (the schedule and QAT delay are fitted to the steps the
measured speed allows); on SIGINT (checkpoint, then :class:`TrainResult` with ``stopped == "interrupted"``); on a
non-finite loss (:class:`~spaghettinet.errors.DataError` naming the step; the last good checkpoint stays latest).
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, UsageError
from spaghettinet.tf_runtime import import_keras, import_tensorflow
from spaghettinet.training.history import HISTORY_FILE, EvaluationRecord, LossRecord, MetricsHistory
from spaghettinet.training.plan import STATE_FILE, TrainPlan
from spaghettinet.training.time_budget import StepTimer, TimeBudget

tf = import_tensorflow()
keras = import_keras()

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``90s``, ``20m``, ``1h``, ``1h30m`` or a bare number of seconds.

    Args:
        text: the duration.

    Returns:
        Seconds (> 0).

    Raises:
        UsageError: not a duration.

    Example:
        >>> parse_duration("1h30m"), parse_duration("90s"), parse_duration("20m")
        (5400.0, 90.0, 1200.0)
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match or not any(match.groups()):
            raise UsageError(f"--time-budget {text!r} is not a duration; write e.g. 90s, 20m, 1h or 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise UsageError(f"--time-budget must be positive, got {text!r}")
    return seconds


@dataclass
class TrainResult:
    """What a ``train`` call did.

    Attributes:
        model_dir: the model directory.
        step: the step reached.
        checkpoint: the last checkpoint written (prefix), or None.
        stopped: ``"completed"``, ``"time_budget"``, ``"run_steps"`` or ``"interrupted"``.
        resumed_from_step: the step the run started at (0 for a fresh run).
        quantization_aware: whether the model ended in QAT mode.
        final_loss: the last step's total loss.
        images_per_second: mean training speed of this run (after the first, traced step).
        evaluation: the last COCO result (``coco_metrics.CocoResult``), or None.
        plan: the :class:`TrainPlan` used.
        messages: notes for the user (batch size choice, fine-tune report, QAT switch...).
    """

    model_dir: Path
    step: int
    checkpoint: str | None
    stopped: str
    resumed_from_step: int = 0
    quantization_aware: bool = False
    final_loss: float | None = None
    images_per_second: float | None = None
    evaluation: object | None = None
    plan: TrainPlan | None = None
    messages: list[str] = field(default_factory=list)


def choose_strategy():
    """The distribution strategy for this machine (see the module docstring).

    Returns:
        A ``tf.distribute.Strategy``.

    Example:
        >>> choose_strategy().num_replicas_in_sync  # doctest: +SKIP
        1
    """
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief(strategy) -> bool:
    """Only the chief worker keeps checkpoints, summaries and evaluations (the others write to scratch dirs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


class _InterruptFlag:
    """Turns the first SIGINT into a flag the loop checks between steps (the second one interrupts at once)."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Progress:
    """Step, loss, images/s and ETA on stderr: a live bar on a terminal, else one line every ``every`` steps."""

    def __init__(self, start: int, total: int, every: int, enabled: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # Notes carry paths and class names: printed literally, never read as rich markup.
        self.console = Console(stderr=True, markup=False, emoji=False, highlight=False)
        self.every = max(1, every)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.bar = None
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, stats="")
            self.bar.start()

    def update(
        self, step: int, total: int, loss: float, images_per_second: float | None, eta_s: float | None
    ):
        speed = f"{images_per_second:.1f} img/s" if images_per_second else "- img/s"
        stats = f"loss {loss:.4f}  {speed}"
        if self.live:
            self.bar.update(self.task, completed=step, total=total, stats=stats)
        elif self.enabled and (step % self.every == 0 or step == total):
            eta = f"  ETA {eta_s / 60:.1f} min" if eta_s is not None else ""
            self.console.print(f"step {step}/{total}  {stats}{eta}", highlight=False)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _build_optimizer(config):
    """The optimizer ``train_config.optimizer`` names: momentum SGD (the reference) or Adam."""
    train = config.train
    if train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=0.0, epsilon=float(train.adam_epsilon))
    return keras.optimizers.SGD(learning_rate=0.0, momentum=float(train.momentum))


def _build_train_step(model, optimizer, strategy, config, averages=None):
    """A traced train step for the model's *current* mode (rebuild it after a QAT switch).

    With ``averages`` (a :class:`~spaghettinet.training.weight_averaging.WeightAverages`) the weight averages
    move after every step, in the same traced function.
    """
    from spaghettinet.training.losses import detection_loss

    settings = config.model
    replicas = strategy.num_replicas_in_sync

    def replica_step(batch):
        with tf.GradientTape() as tape:
            outputs = model(batch["images"], training=True)
            losses = detection_loss(
                batch["cls_targets"],
                batch["box_targets"],
                batch["matched"],
                outputs["class_logits"],
                outputs["box_encodings"],
                alpha=settings.focal_alpha,
                gamma=settings.focal_gamma,
                huber_delta=settings.smooth_l1_delta,
                classification_weight=settings.classification_weight,
                localization_weight=settings.localization_weight,
            )
            regularization = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
            total = losses["total"] + regularization
            # Keras sums the replicas' gradients: each replica contributes its share of the mean.
            scaled = total / replicas
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return {
            "classification": losses["classification"],
            "localization": losses["localization"],
            "regularization": regularization,
            "total": total,
        }

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        updates_before = optimizer.iterations.value
        per_replica = strategy.run(replica_step, args=(batch,))
        if averages is not None:
            averages.update(updates_before)
        return {
            name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in per_replica.items()
        }

    return train_step


def _apply_bfloat16(model, config) -> str | None:
    """``train_config.use_bfloat16``: bfloat16 convolutions in the float phase where the device has them natively.

    Returns:
        The line that tells the user what the run does, or None when the config does not ask.
    """
    if not config.train.use_bfloat16:
        return None
    from spaghettinet.model.precision import native_bfloat16, set_bfloat16_convolutions

    support = native_bfloat16()
    if not support.native:
        return f"use_bfloat16: training in float32, {support.reason}"
    count = set_bfloat16_convolutions(model, True)
    return f"use_bfloat16: {count} convolutions train in bfloat16 until quantization-aware training ({support.reason})"


def _is_our_checkpoint(prefix: str) -> bool:
    try:
        names = [name for name, _ in tf.train.list_variables(prefix)]
    except (tf.errors.OpError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"train_config.fine_tune_checkpoint cannot be read (corrupt or incomplete?): {first_line}", prefix
        ) from None
    return any(name.startswith("model/") for name in names)


def _fine_tune(model, config) -> str | None:
    """Load ``train_config.fine_tune_checkpoint`` (TF1 zoo or ours) into a fresh model; a line for the user.

    Only weights come over: the run starts at step 0 with a fresh optimizer, in float mode until its own QAT
    delay, whatever the source checkpoint had reached. With another number of classes the class predictors stay
    freshly initialised; ``fine_tune_checkpoint_type: "classification"`` takes the backbone only.
    """
    from spaghettinet.training.checkpoints import latest_checkpoint, load_for_fine_tuning

    source = config.train.fine_tune_checkpoint
    if not source:
        return None
    path = config.resolve_path(source)
    if path.is_dir() or Path(f"{path}.index").is_file():
        prefix = latest_checkpoint(path) if path.is_dir() else str(path)
    else:
        prefix = None
    if prefix is None:
        raise DataError(
            "train_config.fine_tune_checkpoint names no checkpoint (expected a TF1 zoo prefix like "
            ".../model.ckpt-400000, a ckpt-N prefix of ours, or a model directory)",
            path,
        )
    backbone_only = config.train.fine_tune_checkpoint_type == "classification"
    if _is_our_checkpoint(prefix):
        return load_for_fine_tuning(model, prefix, backbone_only=backbone_only).summary()
    from spaghettinet.model.quantize import mark_ranges_loaded
    from spaghettinet.model.tf1_checkpoint import load_tf1_checkpoint

    report = load_tf1_checkpoint(model, prefix, backbone_only=backbone_only)
    mark_ranges_loaded(model)
    return f"fine-tuning: {report.summary()}"


def _summary_images(model, batch, strategy, config, class_names, count: int = 3):
    """Images with predicted (solid) and true (dashed) boxes for TensorBoard, as uint8 ``[K, H, W, 3]``."""
    from PIL import Image

    from spaghettinet.drawing import draw_detections
    from spaghettinet.model.postprocess import postprocess

    local = {k: strategy.experimental_local_results(v)[0] for k, v in batch.items()}
    images = local["images"][:count]
    outputs = model(images, training=False)
    drawn = []
    for i in range(int(images.shape[0])):
        detections = postprocess(
            outputs["box_encodings"][i].numpy(),
            outputs["class_logits"][i].numpy(),
            model.anchors,
            score_threshold=0.3,
            iou_threshold=config.model.iou_threshold,
            max_detections_per_class=10,
            max_total_detections=10,
            scales=tuple(config.model.box_coder_scales),
        )
        pixels = np.clip((images[i].numpy() + 1.0) * 127.5, 0, 255).astype(np.uint8)
        n = int(local["num_boxes"][i])
        picture = draw_detections(
            Image.fromarray(pixels),
            detections.boxes,
            detections.classes,
            detections.scores,
            class_names,
            true_boxes=local["gt_boxes"][i][:n].numpy(),
            true_classes=local["gt_classes"][i][:n].numpy() - 1,
        )
        drawn.append(np.asarray(picture))
    return np.stack(drawn)


def _resolve_config(config):
    if isinstance(config, str | Path):
        from spaghettinet.pipeline_config import read_config

        return read_config(config)
    return config


def _plan_for(
    model_dir: Path, config, batch_size, steps, seed: int, budget_s, model, strategy, record_check
) -> tuple[TrainPlan, list[str]]:
    """The run's plan: the saved one on a resume (with ``--batch-size`` / ``--steps`` applied), else a new one
    from the config, the batch size asked for and ``--steps``; with what to tell the user."""
    from spaghettinet.training.batch_size import choose_batch_size

    messages = []
    plan = TrainPlan.read(model_dir / STATE_FILE)
    if plan is None:
        if batch_size == "auto":
            choice = choose_batch_size(
                model,
                config.model.input_size,
                strategy.num_replicas_in_sync,
                max_batch=max(1, record_check.usable),
            )
            chosen, reason = choice.batch_size, choice.reason
        elif isinstance(batch_size, int):
            chosen, reason = batch_size, "from --batch-size"
        else:
            chosen, reason = int(config.train.batch_size), "from the pipeline config"
        train_cfg = config.train
        plan = TrainPlan(
            batch_size=chosen,
            num_steps=int(train_cfg.num_steps),
            total_steps=int(train_cfg.total_steps or train_cfg.num_steps),
            warmup_steps=int(train_cfg.warmup_steps),
            learning_rate_base=float(train_cfg.learning_rate_base),
            warmup_learning_rate=float(train_cfg.warmup_learning_rate),
            hold_base_rate_steps=int(train_cfg.hold_base_rate_steps),
            quantization_delay=None if config.quantization is None else int(config.quantization.delay),
            seed=int(seed),
            time_budget_s=budget_s,
            batch_size_reason=reason,
        )
        if steps is not None and int(steps) != plan.num_steps:
            plan.fit_to_steps(int(steps), config)
        messages.append(f"batch size {plan.batch_size} ({reason})")
    else:
        if isinstance(batch_size, int) and batch_size != plan.batch_size:
            plan.batch_size, plan.batch_size_reason = batch_size, "from --batch-size (changed on resume)"
        if steps is not None and int(steps) != plan.num_steps:
            messages.append(
                f"stopping at step {steps} instead of {plan.num_steps}; the learning-rate schedule is kept"
            )
            plan.num_steps = int(steps)
    if plan.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(
            f"batch size {plan.batch_size} is not a multiple of the {strategy.num_replicas_in_sync} replicas"
        )
    return plan, messages


class _Checkpointer:
    """Saves a checkpoint, and the metrics history with it, every N steps, every M minutes and at the end."""

    def __init__(self, manager, history: MetricsHistory, history_path: Path, chief: bool, every, minutes):
        self.manager = manager
        self.history = history
        self.history_path = history_path
        self.chief = chief
        self.every = every
        self.minutes = minutes
        self.last_saved = manager.latest_checkpoint
        self.last_time = time.monotonic()

    def due(self, step: int) -> bool:
        return bool(self.every and step % self.every == 0) or (
            time.monotonic() - self.last_time >= self.minutes * 60
        )

    def save(self, step: int) -> str:
        self.last_saved = self.manager.save(checkpoint_number=step)
        self.last_time = time.monotonic()
        if self.chief:
            self.history.write(self.history_path)
        return self.last_saved


def _evaluate_during_training(model, config, averages, write_dir: Path, step: int, history, writer):
    """COCO-evaluate the model now (with the weight averages when the config evaluates them), write
    ``eval-<step>.json``, and record AP / AP50 in the history and TensorBoard."""
    from spaghettinet.training.model_evaluation import evaluate_model
    from spaghettinet.training.summaries import write_scalar

    out = write_dir / f"eval-{step}.json"
    if averages is not None and config.eval.use_moving_averages:
        with averages.swapped_in():
            result = evaluate_model(model, config, out=out, step=step)
    else:
        result = evaluate_model(model, config, out=out, step=step)
    history.evaluations.append(EvaluationRecord(step, result.ap, result.ap50))
    with writer.as_default(step=step):
        for name, value in (("AP", result.ap), ("AP50", result.ap50)):
            if value is not None:
                write_scalar(f"eval/{name}", value, step)
    return result


class _QuantizationSwitch:
    """Quantization-aware training from the plan's delay on: the model's mode and the checkpointed flag.

    A resumed run whose checkpoint was already quantization-aware (or is past the delay) starts in that mode.
    """

    def __init__(self, model, state, plan: TrainPlan):
        self.model = model
        self.state = state
        self.plan = plan

    def due(self, step: int) -> bool:
        delay = self.plan.quantization_delay
        return delay is not None and step >= delay

    def resume(self, start_step: int) -> None:
        if int(self.state.quantization_aware.numpy()) or self.due(start_step):
            self._switch()

    def switch_if_due(self, step: int) -> bool:
        """Switch now when the delay is reached; True when it switched (the train step must be retraced)."""
        from spaghettinet.model.quantize import is_quantization_aware

        if self.due(step) and not is_quantization_aware(self.model):
            self._switch()
            return True
        return False

    def _switch(self) -> None:
        from spaghettinet.model.quantize import set_quantization_aware

        set_quantization_aware(self.model, True)
        self.state.quantization_aware.assign(1)


class _StepLog:
    """What each step leaves behind: the progress line, and every ``log_every`` steps the TensorBoard scalars and
    a loss record; every ``image_every`` steps (chief only) TensorBoard pictures of the batch's predictions."""

    def __init__(
        self, progress: _Progress, writer, history: MetricsHistory, log_every: int, image_every: int, pictures
    ):
        self.progress = progress
        self.writer = writer
        self.history = history
        self.log_every = log_every
        self.image_every = image_every
        self.pictures = pictures  # batch -> images, or None (not the chief)

    def record(
        self,
        step: int,
        plan: TrainPlan,
        losses: dict,
        total: float,
        learning_rate: float,
        timer: StepTimer,
        batch,
    ) -> None:
        from spaghettinet.training.summaries import write_images, write_scalar

        seconds_per_step = timer.seconds_per_step
        images_per_second = timer.images_per_second(plan.batch_size)
        eta = (plan.num_steps - step) * seconds_per_step if seconds_per_step else None
        self.progress.update(step, plan.num_steps, total, images_per_second, eta)
        if step % self.log_every == 0 or step == plan.num_steps:
            with self.writer.as_default(step=step):
                for name, value in losses.items():
                    write_scalar(f"loss/{name}", float(value.numpy()), step)
                write_scalar("learning_rate", learning_rate, step)
                if images_per_second:
                    write_scalar("images_per_second", images_per_second, step)
            self.history.losses.append(LossRecord(step, total, learning_rate))
        if self.pictures is not None and step % self.image_every == 0:
            with self.writer.as_default(step=step):
                write_images("predicted_solid_true_dashed", self.pictures(batch), step)


def _fit_to_budget(
    budget: TimeBudget,
    timer: StepTimer,
    step: int,
    plan: TrainPlan,
    config,
    steps,
    evaluate_at_end: bool,
    model,
) -> tuple[int, str]:
    """Fit the plan to the steps the measured speed allows in the budget: the steps, and the line that says so."""
    from spaghettinet.data.tfrecord import count_records
    from spaghettinet.model.quantize import is_quantization_aware
    from spaghettinet.training.inputs import record_files

    eval_images = sum(count_records(f) for f in record_files(config, "eval")) if evaluate_at_end else 0
    fitted = budget.fit(
        time.monotonic(), step, plan, config, timer, eval_images, steps, is_quantization_aware(model)
    )
    qat_note = f", QAT from step {plan.quantization_delay}" if plan.quantization_delay is not None else ""
    return (
        fitted,
        f"{timer.seconds_per_step:.2f} s/step measured: schedule fitted to {fitted} steps{qat_note}",
    )


def _non_finite_loss(total: float, step: int, checkpoints: _Checkpointer, model_dir: Path) -> DataError:
    last = checkpoints.last_saved
    kept = f"the last good checkpoint {last} is kept" if last else "no checkpoint was written"
    return DataError(
        f"training loss became {total} at step {step + 1}; stopped without saving ({kept}). "
        "Lower train_config learning_rate_base or check the boxes in the records",
        model_dir,
    )


def train(
    config,
    model_dir: str | Path,
    steps: int | None = None,
    time_budget: str | float | None = None,
    batch_size: int | str | None = None,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float = 10.0,
    seed: int = 0,
    log_every: int = 10,
    image_every: int | None = None,
    evaluate_at_end: bool = True,
    show_progress: bool = True,
    max_checkpoints: int = 5,
    run_steps: int | None = None,
) -> TrainResult:
    """Train (or resume training) the detector a pipeline config describes.

    Args:
        config: a ``PipelineConfig`` or the path of a ``pipeline.config``.
        model_dir: where checkpoints (``ckpt-<step>``), ``train_state.json``, TensorBoard logs (``train/``),
            evaluations (``eval-<step>.json``) and ``metrics_history.json`` go. If it holds a checkpoint, training
            resumes from it.
        steps: stop at this step (default: the config's ``num_steps``); on a fresh run the schedule and QAT delay
            are fitted to it.
        time_budget: wall-clock budget (``"20m"``, ``"1h"``, seconds): speed is measured over the first steps,
            the schedule and QAT delay are fitted to the steps that fit, and training stops in time to save and
            evaluate.
        batch_size: ``None`` (the config's, or the saved one on resume), an int, or ``"auto"`` (largest that fits).
        eval_every: also evaluate on the eval split every N steps.
        checkpoint_every: save every N steps (besides every ``checkpoint_minutes`` and at the end).
        checkpoint_minutes: save at least this often in wall-clock time.
        seed: data order and augmentation seed of a fresh run (a resume keeps the saved one).
        log_every: progress line / TensorBoard scalar interval in steps.
        image_every: TensorBoard image interval (default: 10 x ``log_every``, at least 500 steps: each picture
            costs an eager forward pass and NMS, which the time-budget fit does not see).
        evaluate_at_end: run COCO evaluation on the eval split when training stops (not after SIGINT).
        show_progress: print progress on stderr.
        max_checkpoints: checkpoints kept.
        run_steps: stop after this many steps in this call (schedule unchanged; a later call continues), with
            ``stopped == "run_steps"``.

    Returns:
        :class:`TrainResult`.

    Raises:
        DataError: unreadable inputs, a checkpoint that does not fit, or a non-finite loss (with its step).
        UsageError: bad arguments.

    Example:
        >>> result = train("pipeline.config", "runs/demo", time_budget="15m")  # doctest: +SKIP
        >>> result.step, result.stopped
        (1830, 'time_budget')
    """
    from spaghettinet.model.detector import build_detector
    from spaghettinet.model.quantize import is_quantization_aware
    from spaghettinet.training.checkpoints import CHECKPOINT_NAME, TrainingState, make_checkpoint
    from spaghettinet.training.inputs import check_records, record_files, train_dataset
    from spaghettinet.training.weight_averaging import WeightAverages

    started = time.monotonic()
    config = _resolve_config(config)
    model_dir = Path(model_dir)
    budget_s = parse_duration(time_budget) if time_budget is not None else None
    if steps is not None and int(steps) < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if isinstance(batch_size, str) and batch_size != "auto":
        if not batch_size.isdigit():
            raise UsageError(f"--batch-size must be 'auto' or a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
    if isinstance(batch_size, int) and batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {batch_size}")
    train_files = record_files(config, "train")
    model_dir.mkdir(parents=True, exist_ok=True)
    # Before any TF op runs: a multi-worker strategy configures collective ops, which TF allows only at startup.
    strategy = choose_strategy()
    # Records training cannot use are named and left out now, not met as a raw tf.data error hours in.
    record_check = check_records(train_files, int(config.model.num_classes))
    messages: list[str] = record_check.messages("training")

    chief = _is_chief(strategy)
    write_dir = model_dir if chief else model_dir / f".worker-{strategy.cluster_resolver.task_id}"
    settings = config.model
    with strategy.scope():
        model = build_detector(settings.variant, settings.num_classes, input_size=tuple(settings.input_size))
        optimizer = _build_optimizer(config)
        optimizer.build(model.trainable_variables)
        state = TrainingState()
        averages = (
            WeightAverages(model, float(config.train.moving_average_decay))
            if config.train.use_moving_average
            else None
        )
    checkpoint = make_checkpoint(model, state, optimizer, averages=averages)
    manager = tf.train.CheckpointManager(
        checkpoint,
        str(write_dir),
        max_to_keep=max_checkpoints,
        checkpoint_name=CHECKPOINT_NAME,
        step_counter=state.step,
    )

    if manager.latest_checkpoint:
        try:
            checkpoint.read(manager.latest_checkpoint).assert_existing_objects_matched()
        except (AssertionError, ValueError) as exc:
            raise DataError(
                f"the checkpoint does not fit this config's model (trained with another config?): {exc}",
                manager.latest_checkpoint,
            ) from exc
        messages.append(f"resuming from {manager.latest_checkpoint} at step {int(state.step.numpy())}")
    else:
        note = _fine_tune(model, config)
        if note:
            messages.append(note)
        if averages is not None:
            averages.reset()
    start_step = int(state.step.numpy())
    precision_note = _apply_bfloat16(model, config)
    if precision_note:
        messages.append(precision_note)

    plan, plan_messages = _plan_for(
        model_dir, config, batch_size, steps, seed, budget_s, model, strategy, record_check
    )
    messages.extend(plan_messages)
    if chief:
        plan.write(model_dir / STATE_FILE)
    budget = None
    if budget_s is not None:
        budget = TimeBudget(
            budget_s,
            started,
            fit_pending=plan.measured_seconds_per_step is None and start_step < plan.num_steps,
            refit_after_qat=config.quantization is not None,
        )

    quantization = _QuantizationSwitch(model, state, plan)
    quantization.resume(start_step)
    train_step = _build_train_step(model, optimizer, strategy, config, averages)

    dataset = train_dataset(
        config,
        model.anchors,
        plan.batch_size,
        seed=plan.seed,
        start_example=int(state.examples_seen.numpy()),
        files=train_files,
        record_check=record_check,
    )
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(str(write_dir / "train"))
    history_path = model_dir / HISTORY_FILE
    history = MetricsHistory.read(history_path).up_to(start_step)
    from spaghettinet.pipeline_config.class_names import class_names as read_class_names

    class_names = read_class_names(config)
    image_every = image_every or max(10 * log_every, 500)
    progress = _Progress(start_step, plan.num_steps, log_every, show_progress)
    for line in messages:
        progress.note(line)

    step = start_step
    stopped = "completed"
    timer = StepTimer()
    checkpoints = _Checkpointer(manager, history, history_path, chief, checkpoint_every, checkpoint_minutes)
    step_log = _StepLog(
        progress,
        writer,
        history,
        log_every,
        image_every,
        (lambda batch: _summary_images(model, batch, strategy, config, class_names)) if chief else None,
    )
    losses: dict = {}
    evaluation = None

    def run_evaluation():
        return _evaluate_during_training(model, config, averages, write_dir, step, history, writer)

    def stop_reason() -> str | None:
        if interrupt.raised:
            return "interrupted"
        if run_steps is not None and step - start_step >= run_steps:
            return "run_steps"
        if budget is not None and budget.spent(time.monotonic()):
            return "time_budget"
        return None

    try:
        with _InterruptFlag() as interrupt:
            while step < plan.num_steps:
                if (reason := stop_reason()) is not None:
                    stopped = reason
                    break
                if quantization.switch_if_due(step):
                    train_step = _build_train_step(model, optimizer, strategy, config, averages)
                    timer.retraced()
                    if budget is not None:
                        budget.after_qat_switch(timer)
                    progress.note(f"step {step}: switching to quantization-aware training")
                    messages.append(f"quantization-aware training from step {step}")
                learning_rate = plan.learning_rate(step)
                optimizer.learning_rate = learning_rate
                batch = next(iterator)
                step_started = time.monotonic()
                losses = train_step(batch)
                total = float(losses["total"].numpy())
                if not math.isfinite(total):
                    raise _non_finite_loss(total, step, checkpoints, model_dir)
                step += 1
                state.step.assign(step)
                state.examples_seen.assign_add(plan.batch_size)
                timer.add(time.monotonic() - step_started)
                if budget is not None and budget.fit_due(timer):
                    fitted, note = _fit_to_budget(
                        budget, timer, step, plan, config, steps, evaluate_at_end, model
                    )
                    if chief:
                        plan.write(model_dir / STATE_FILE)
                    progress.note(note)
                    messages.append(f"schedule fitted to {fitted} steps for the time budget")
                step_log.record(step, plan, losses, total, learning_rate, timer, batch)
                if checkpoints.due(step):
                    checkpoints.save(step)
                if eval_every and step % eval_every == 0 and step < plan.num_steps:
                    evaluation = run_evaluation()
            if step > start_step or checkpoints.last_saved is None:
                checkpoints.save(step)
            if interrupt.raised:
                stopped = "interrupted"
        writer.flush()
        if evaluate_at_end and stopped != "interrupted" and not history.evaluated_at(step):
            evaluation = run_evaluation()
            if chief:
                history.write(history_path)
    finally:
        progress.close()
        writer.close()

    return TrainResult(
        model_dir=model_dir,
        step=step,
        checkpoint=checkpoints.last_saved,
        stopped=stopped,
        resumed_from_step=start_step,
        quantization_aware=is_quantization_aware(model),
        final_loss=float(losses["total"].numpy()) if losses else None,
        images_per_second=timer.images_per_second(plan.batch_size),
        evaluation=evaluation,
        plan=plan,
        messages=messages,
    )
