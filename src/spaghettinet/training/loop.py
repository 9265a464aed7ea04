"""The resumable training loop: ``train(config, model_dir, ...)`` behind ``spaghettinet train``.

One custom loop for every device layout: ``tf.distribute`` picks the default strategy on one device,
``MirroredStrategy`` on several GPUs and ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set; batches go
through ``experimental_distribute_dataset`` and ``strategy.run``, and each replica's loss is divided by the number
of replicas (Keras sums the replicas' gradients).

Per step: the config's optimizer (momentum SGD as the reference, or Adam) on the reference loss (sigmoid focal +
smooth L1, normalized by matches, plus the model's L2 regularization, spec §3), learning rate from the
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

import json
import math
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.tf_runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

STATE_FILE = "train_state.json"
HISTORY_FILE = "metrics_history.json"
#: Timed steps (after the first, traced one) used to measure speed for ``time_budget``.
SPEED_MEASURE_STEPS = 3
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
class TrainPlan:
    """What this model directory's training does; saved as ``train_state.json`` and reused on resume.

    Attributes:
        batch_size: global batch size.
        num_steps: step at which training ends.
        total_steps: cosine schedule length.
        warmup_steps / learning_rate_base / warmup_learning_rate / hold_base_rate_steps: the schedule.
        quantization_delay: step at which QAT starts, or None (no ``graph_rewriter``).
        seed: data order and augmentation seed.
        time_budget_s: the budget the schedule was fitted to, if any.
        measured_seconds_per_step: the speed used for that fit.
        batch_size_reason: why this batch size.
    """

    batch_size: int
    num_steps: int
    total_steps: int
    warmup_steps: int
    learning_rate_base: float
    warmup_learning_rate: float
    hold_base_rate_steps: int = 0
    quantization_delay: int | None = None
    seed: int = 0
    time_budget_s: float | None = None
    measured_seconds_per_step: float | None = None
    batch_size_reason: str = "from the pipeline config"

    def fit_to_steps(self, steps: int, config, keep_quantization_delay: bool = False) -> None:
        """Scale the schedule and QAT delay to ``steps`` the way the config scales them to its own length.

        Args:
            steps: the new length of the run.
            config: the pipeline config whose schedule is scaled.
            keep_quantization_delay: leave the QAT delay where it is (a refit after the switch has happened).
        """
        train = config.train
        steps = max(1, int(steps))
        reference_total = max(1, int(train.total_steps or train.num_steps or steps))
        self.num_steps = steps
        self.total_steps = steps
        self.warmup_steps = min(steps, max(0, round(train.warmup_steps * steps / reference_total)))
        self.hold_base_rate_steps = min(
            steps - self.warmup_steps, round(train.hold_base_rate_steps * steps / reference_total)
        )
        if config.quantization is not None and not keep_quantization_delay:
            # The config's own delay, scaled with the schedule: a user who moved it keeps its share of the run.
            share = min(1.0, max(0.0, int(config.quantization.delay) / reference_total))
            self.quantization_delay = min(steps, int(round(share * steps)))

    def learning_rate(self, step: int) -> float:
        """The learning rate at ``step`` (cosine decay with linear warmup, spec §3 "LR formula")."""
        from spaghettinet.training.schedule import cosine_decay_with_warmup

        return float(
            cosine_decay_with_warmup(
                step,
                learning_rate_base=self.learning_rate_base,
                total_steps=self.total_steps,
                warmup_learning_rate=self.warmup_learning_rate,
                warmup_steps=self.warmup_steps,
                hold_base_rate_steps=self.hold_base_rate_steps,
            )
        )


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
        evaluation: the last COCO result (``evaluation.coco.CocoResult``), or None.
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


def _read_plan(model_dir: Path) -> TrainPlan | None:
    path = model_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return TrainPlan(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"is not a training state written by this tool ({exc}); delete it to start over", path
        ) from exc


def _write_plan(model_dir: Path, plan: TrainPlan) -> None:
    write_text_atomic(model_dir / STATE_FILE, json.dumps(asdict(plan), indent=2) + "\n")


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

    from spaghettinet.evaluation.visualize import draw_detections
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


def _metric(result, *names: str):
    """Read a metric from a CocoResult whatever its attribute spelling (AP / ap / metrics['AP'])."""
    for name in names:
        for candidate in (name, name.lower()):
            value = getattr(result, candidate, None)
            if value is not None:
                return float(value)
        metrics = getattr(result, "metrics", None)
        if isinstance(metrics, dict) and name in metrics:
            return float(metrics[name])
    return None


def _resolve_config(config):
    if isinstance(config, str | Path):
        from spaghettinet.pipeline_config import read_config

        return read_config(config)
    return config


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
    from spaghettinet.model.quantize import is_quantization_aware, set_quantization_aware
    from spaghettinet.training.batch_size import choose_batch_size
    from spaghettinet.training.checkpoints import CHECKPOINT_NAME, TrainingState, make_checkpoint
    from spaghettinet.training.inputs import check_records, count_records, record_files, train_dataset
    from spaghettinet.training.summaries import write_images, write_scalar
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

    plan = _read_plan(model_dir)
    if plan is None:
        if batch_size == "auto":
            train_count = record_check.usable
            choice = choose_batch_size(
                model, settings.input_size, strategy.num_replicas_in_sync, max_batch=max(1, train_count)
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
    if chief:
        _write_plan(model_dir, plan)
    fit_pending = (
        budget_s is not None and plan.measured_seconds_per_step is None and start_step < plan.num_steps
    )
    # Quantization-aware steps are slower than float ones: a run whose schedule was fitted to the float speed is
    # fitted once more, to the remaining time, after QAT has been timed.
    refit_after_switch = fit_pending and config.quantization is not None

    def qat_due(step: int) -> bool:
        return plan.quantization_delay is not None and step >= plan.quantization_delay

    if int(state.quantization_aware.numpy()) or qat_due(start_step):
        set_quantization_aware(model, True)
        state.quantization_aware.assign(1)
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
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.is_file() else []
    history = [entry for entry in history if entry.get("step", 0) <= start_step]
    from spaghettinet.evaluation.evaluate import class_names as read_class_names

    class_names = read_class_names(config)
    image_every = image_every or max(10 * log_every, 500)
    progress = _Progress(start_step, plan.num_steps, log_every, show_progress)
    for line in messages:
        progress.note(line)

    step = start_step
    stopped = "completed"
    last_saved = manager.latest_checkpoint
    last_save_time = time.monotonic()
    deadline = None if budget_s is None else started + budget_s
    eval_reserve_s = 0.0
    timed_seconds, timed_steps, first_timed = 0.0, 0, True
    losses: dict = {}
    evaluation = None

    def save() -> str:
        nonlocal last_saved, last_save_time
        last_saved = manager.save(checkpoint_number=step)
        last_save_time = time.monotonic()
        if chief:
            write_text_atomic(history_path, json.dumps(history, indent=1) + "\n")
        return last_saved

    def run_evaluation() -> object:
        from spaghettinet.evaluation.evaluate import evaluate_model

        if averages is not None and config.eval.use_moving_averages:
            with averages.swapped_in():
                result = evaluate_model(model, config, out=write_dir / f"eval-{step}.json", step=step)
        else:
            result = evaluate_model(model, config, out=write_dir / f"eval-{step}.json", step=step)
        entry = {"step": step, "AP": _metric(result, "AP", "map"), "AP50": _metric(result, "AP50", "map50")}
        history.append(entry)
        with writer.as_default(step=step):
            for name in ("AP", "AP50"):
                if entry[name] is not None:
                    write_scalar(f"eval/{name}", entry[name], step)
        return result

    try:
        with _InterruptFlag() as interrupt:
            while step < plan.num_steps:
                if interrupt.raised:
                    stopped = "interrupted"
                    break
                if run_steps is not None and step - start_step >= run_steps:
                    stopped = "run_steps"
                    break
                if deadline is not None and time.monotonic() + eval_reserve_s >= deadline:
                    stopped = "time_budget"
                    break
                if qat_due(step) and not is_quantization_aware(model):
                    set_quantization_aware(model, True)
                    state.quantization_aware.assign(1)
                    train_step = _build_train_step(model, optimizer, strategy, config, averages)
                    first_timed = True
                    if refit_after_switch and not fit_pending:
                        fit_pending, timed_seconds, timed_steps = True, 0.0, 0
                    progress.note(f"step {step}: switching to quantization-aware training")
                    messages.append(f"quantization-aware training from step {step}")
                learning_rate = plan.learning_rate(step)
                optimizer.learning_rate = learning_rate
                batch = next(iterator)
                step_started = time.monotonic()
                losses = train_step(batch)
                total = float(losses["total"].numpy())
                if not math.isfinite(total):
                    kept = (
                        f"the last good checkpoint {last_saved} is kept"
                        if last_saved
                        else "no checkpoint was written"
                    )
                    raise DataError(
                        f"training loss became {total} at step {step + 1}; stopped without saving ({kept}). "
                        "Lower train_config learning_rate_base or check the boxes in the records",
                        model_dir,
                    )
                step += 1
                state.step.assign(step)
                state.examples_seen.assign_add(plan.batch_size)
                elapsed = time.monotonic() - step_started
                if first_timed:  # the first step after a (re)trace measures tracing, not speed
                    first_timed = False
                else:
                    timed_seconds += elapsed
                    timed_steps += 1
                seconds_per_step = timed_seconds / timed_steps if timed_steps else None
                images_per_second = plan.batch_size / seconds_per_step if seconds_per_step else None

                if fit_pending and timed_steps >= SPEED_MEASURE_STEPS:
                    fit_pending = False
                    eval_images = count_records(record_files(config, "eval")) if evaluate_at_end else 0
                    # Evaluation runs a forward pass only (~1/3 of a train step per image) plus one trace.
                    eval_reserve_s = min(
                        0.2 * budget_s, 20.0 + eval_images * seconds_per_step / plan.batch_size / 3
                    )
                    affordable = step + int((deadline - time.monotonic() - eval_reserve_s) / seconds_per_step)
                    fitted = max(step + 1, min(affordable, int(steps) if steps is not None else affordable))
                    plan.fit_to_steps(fitted, config, keep_quantization_delay=is_quantization_aware(model))
                    plan.measured_seconds_per_step = seconds_per_step
                    if chief:
                        _write_plan(model_dir, plan)
                    progress.note(
                        f"{seconds_per_step:.2f} s/step measured: schedule fitted to {fitted} steps"
                        + (
                            f", QAT from step {plan.quantization_delay}"
                            if plan.quantization_delay is not None
                            else ""
                        )
                    )
                    messages.append(f"schedule fitted to {fitted} steps for the time budget")

                eta = (plan.num_steps - step) * seconds_per_step if seconds_per_step else None
                progress.update(step, plan.num_steps, total, images_per_second, eta)
                if step % log_every == 0 or step == plan.num_steps:
                    with writer.as_default(step=step):
                        for name, value in losses.items():
                            write_scalar(f"loss/{name}", float(value.numpy()), step)
                        write_scalar("learning_rate", learning_rate, step)
                        if images_per_second:
                            write_scalar("images_per_second", images_per_second, step)
                    history.append({"step": step, "loss": total, "learning_rate": learning_rate})
                if chief and step % image_every == 0:
                    with writer.as_default(step=step):
                        write_images(
                            "predicted_solid_true_dashed",
                            _summary_images(model, batch, strategy, config, class_names),
                            step,
                        )
                if (checkpoint_every and step % checkpoint_every == 0) or (
                    time.monotonic() - last_save_time >= checkpoint_minutes * 60
                ):
                    save()
                if eval_every and step % eval_every == 0 and step < plan.num_steps:
                    evaluation = run_evaluation()
            if step > start_step or last_saved is None:
                save()
            if interrupt.raised:
                stopped = "interrupted"
        writer.flush()
        if (
            evaluate_at_end
            and stopped != "interrupted"
            and not any(entry.get("step") == step and "AP50" in entry for entry in history)
        ):
            evaluation = run_evaluation()
            if chief:
                write_text_atomic(history_path, json.dumps(history, indent=1) + "\n")
    finally:
        progress.close()
        writer.close()

    return TrainResult(
        model_dir=model_dir,
        step=step,
        checkpoint=last_saved,
        stopped=stopped,
        resumed_from_step=start_step,
        quantization_aware=is_quantization_aware(model),
        final_loss=float(losses["total"].numpy()) if losses else None,
        images_per_second=(plan.batch_size * timed_steps / timed_seconds) if timed_seconds else None,
        evaluation=evaluation,
        plan=plan,
        messages=messages,
    )
