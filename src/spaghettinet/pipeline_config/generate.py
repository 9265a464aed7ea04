"""Generate a complete ``pipeline.config`` for a dataset: what ``spaghettinet config`` writes.

The zoo's config (tensorflow/models ``research/object_detection/configs/tf1/
ssd_spaghettinet_edgetpu_320x320_coco17_sync_4x4.config``) trains on COCO with batch 512 for 400k steps on 32
synchronous replicas; copying it onto one machine runs out of memory. We keep every model value of the reference and size training for the data,
in the TF Object Detection API's own fields so that the file stays readable and editable. The rules, each measured
on the 149 microcontroller photos (4 similar classes, from scratch, ``benchmarks/bench_peer.py``):

* batch size: 8 on CPU, 16 on a GPU (what fits a 12 GB card at 320², per the seed), at most the number of
  training images;
* steps: enough for 50 epochs, never fewer than 1000 (a time budget refits them to the measured speed);
* optimizer: Adam at 2e-3 for batch 8 (square-root scaling with the batch, Malladi et al. 2022, "On the SDEs and
  scaling rules for adaptive gradient algorithms", arXiv:2205.10287), cosine decay after a linear warmup over
  5 % of the steps from a tenth of the peak. The zoo's momentum SGD at 0.8 × batch/512 learns a few hundred
  photos far more slowly: AP50 0.37 against 0.42 after 600 steps at batch 8 (Adam 1e-3), and 0.43 (AP 0.26
  against 0.24) at 2e-3. (Ultralytics' automatic choice for short runs is also AdamW near 1e-3 to 2e-3, its
  ``engine/trainer.py``);
* weight averages (``use_moving_average``) for evaluation and export;
* quantization-aware training for the last 15 % of the steps only: QAT is a fine-tuning phase; starting it at
  10 % as the zoo does (40k of 400k steps) made 90 % of a short run train through fake quantization before the
  float model had learned anything (AP50 0.08 against 0.36 float-only);
* ``use_bfloat16`` (train.proto's field, set by the zoo's TPU configs): before QAT, the full convolutions compute
  in bfloat16 where the CPU or GPU does so natively (``model/precision.py``), float32 elsewhere. Side by side on
  an AVX512_BF16 CPU, 20 minutes from scratch each: 1.3x the images per second, 968 steps against 770, int8 AP
  0.40 / AP50 0.60 against 0.28 / 0.47;
* augmentation: the zoo's flip and SSD random crop, with ``random_self_concat_image`` between them (each copy
  half the time; the TF OD API's nearest step to mosaic): many more, smaller objects per picture. Side by side on
  one machine, 20 minutes from scratch each: AP 0.38 / AP50 0.58 with it against 0.28 / 0.46 without. Adding
  brightness, contrast, saturation and hue jitter (the proto's default ranges) gave no gain in 600 steps (AP50
  0.41 both) and costs input time; a zoom-out (``random_pad_image`` before the crop) lost (AP50 0.34). Every
  other step of the TF OD API can be added to the written file.

Every choice and its reason is written as a comment block at the top of the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from spaghettinet.data.tfrecord import count_records
from spaghettinet.errors import DataError, UsageError

from .settings import (
    DEFAULT_AUGMENTATION,
    VARIANTS,
    AugmentationOption,
    EvalSettings,
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    RandomHorizontalFlip,
    RandomSelfConcatImage,
    SsdRandomCrop,
    TrainSettings,
)
from .validate import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from .writer import write_config

ADAM_LEARNING_RATE = 2e-3
ADAM_REFERENCE_BATCH_SIZE = 8
WARMUP_SHARE_OF_STEPS = 0.05
WARMUP_START_FRACTION = 0.1
#: QAT runs for the last 15 % of the steps (the delay is this share of them).
QUANTIZATION_DELAY_SHARE = 0.85
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 16
TARGET_EPOCHS = 50
MIN_STEPS = 1000
#: Flip, a copy of the image beside and/or below itself (each half the time), then the SSD random crop.
GENERATED_AUGMENTATION: tuple[AugmentationOption, ...] = (
    RandomHorizontalFlip(),
    RandomSelfConcatImage(concat_vertical_probability=0.5, concat_horizontal_probability=0.5),
    SsdRandomCrop(),
)


@dataclass
class DatasetSizing:
    """What ``config`` chooses for a data set before any training, with the reason for each; written into
    ``pipeline.config``. (What one training run then decides, fitted to its time budget and resumed with, is
    :class:`spaghettinet.training.plan.TrainPlan`.)

    Args:
        num_train_examples / num_test_examples: records counted in the TFRecords.
        batch_size / num_steps / learning_rate_base / warmup_learning_rate / warmup_steps / quantization_delay:
            the schedule.
        optimizer: ``'adam'`` or ``'momentum'``.
        use_moving_average: keep weight averages and evaluate/export them.
        use_bfloat16: the float phase's convolutions in bfloat16 where the device has it natively.
        augmentation: the ``data_augmentation_options`` steps, in order.
        reasons: one line per choice, for the CLI summary and the config's comment block.
    """

    num_train_examples: int
    num_test_examples: int
    batch_size: int
    num_steps: int
    learning_rate_base: float
    warmup_learning_rate: float
    warmup_steps: int
    quantization_delay: int
    optimizer: str = "adam"
    use_moving_average: bool = True
    use_bfloat16: bool = True
    augmentation: tuple[AugmentationOption, ...] = DEFAULT_AUGMENTATION
    reasons: list[str] = field(default_factory=list)


def size_training(
    num_train_examples: int,
    num_test_examples: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    gpu: bool = False,
) -> DatasetSizing:
    """Choose the batch size, schedule, optimizer, averaging, augmentation and QAT start for a data set.

    Args:
        num_train_examples: training images.
        num_test_examples: test images (only reported).
        steps: fixed number of steps, or None to derive it.
        batch_size: fixed batch size, or None to derive it.
        gpu: whether a GPU will train (batch 16 instead of 8).

    Returns:
        A :class:`DatasetSizing`.

    Example:
        >>> plan = size_training(400, batch_size=8)
        >>> plan.num_steps, plan.learning_rate_base, plan.quantization_delay
        (2500, 0.002, 2125)
    """
    reasons = []
    if batch_size is None:
        default = GPU_BATCH_SIZE if gpu else CPU_BATCH_SIZE
        batch_size = max(1, min(default, num_train_examples))
        device = "a GPU" if gpu else "CPU"
        capped = " (capped at the number of training images)" if batch_size < default else ""
        reasons.append(
            f"batch size {batch_size}: default for {device}{capped}; the zoo's 512 needs a TPU pod"
        )
    else:
        reasons.append(f"batch size {batch_size}: as asked")
    if steps is None:
        epochs_steps = math.ceil(TARGET_EPOCHS * num_train_examples / batch_size)
        steps = max(MIN_STEPS, epochs_steps)
        why = (
            f"{TARGET_EPOCHS} epochs of {num_train_examples} images"
            if steps == epochs_steps
            else f"at least {MIN_STEPS}"
        )
        reasons.append(f"steps {steps}: {why} (the zoo's 400000 are for COCO; --time-budget refits them)")
    else:
        reasons.append(
            f"steps {steps}: as asked ({steps * batch_size / max(1, num_train_examples):.0f} epochs)"
        )
    learning_rate = ADAM_LEARNING_RATE * math.sqrt(batch_size / ADAM_REFERENCE_BATCH_SIZE)
    warmup_learning_rate = learning_rate * WARMUP_START_FRACTION
    warmup_steps = max(1, round(WARMUP_SHARE_OF_STEPS * steps)) if steps > 1 else 0
    reasons.append(
        f"optimizer Adam, learning rate {learning_rate:.3g} (2e-3 at batch 8, square-root scaling with the "
        f"batch), cosine decay after {warmup_steps} warmup steps from {warmup_learning_rate:.3g}: the zoo's "
        "momentum SGD learns a few hundred photos from scratch more slowly"
    )
    reasons.append(
        "weight averages (use_moving_average, decay 0.9999 with the dynamic warm-up) are what evaluation and "
        "export use"
    )
    delay = round(QUANTIZATION_DELAY_SHARE * steps)
    reasons.append(
        f"quantization-aware training from step {delay}, the last {100 - round(100 * QUANTIZATION_DELAY_SHARE)} % "
        "of the steps: QAT fine-tunes a float model that has already learned (started at 10 %, as the zoo's "
        "40k of 400k, a short run never learns)"
    )
    reasons.append(
        "augmentation: horizontal flip, the image beside and/or below a copy of itself (random_self_concat_image, "
        "each half the time: more, smaller objects per picture; AP 0.38 against 0.28 without it on 149 photos), "
        "then the SSD random crop (the zoo's); any other data_augmentation_options step of the TF Object "
        "Detection API can be added here"
    )
    reasons.append(
        "use_bfloat16: before quantization-aware training the convolutions compute in bfloat16 where the CPU or "
        "GPU does so natively (AVX512_BF16, AMX, compute capability 8.0+), float32 elsewhere: 1.3x the images per second; 20 minutes from scratch on 149 photos, 968 steps and AP 0.40 "
        "against 770 steps and AP 0.28 in float32"
    )
    return DatasetSizing(
        num_train_examples=num_train_examples,
        num_test_examples=num_test_examples,
        batch_size=batch_size,
        num_steps=steps,
        learning_rate_base=learning_rate,
        warmup_learning_rate=warmup_learning_rate,
        warmup_steps=warmup_steps,
        quantization_delay=delay,
        augmentation=GENERATED_AUGMENTATION,
        reasons=reasons,
    )


def _path_for_config(value: str | Path, config_dir: Path) -> str:
    """Write a path relative to the config's folder when it lies inside it, else absolute (globs kept)."""
    absolute = Path(os.path.abspath(Path(value).expanduser()))
    try:
        return absolute.relative_to(config_dir).as_posix()
    except ValueError:
        return absolute.as_posix()


def _gpu_available() -> bool:
    from spaghettinet.tf_runtime import import_tensorflow

    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def config_with_plan(
    variant: str,
    label_map: str | Path,
    train: str | Path,
    test: str | Path,
    out: str | Path,
    steps: int | None = None,
    batch_size: int | None = None,
    input_size: int | tuple[int, int] = 320,
    quantize: bool = True,
    fine_tune_checkpoint: str | Path | None = None,
) -> tuple[PipelineConfig, DatasetSizing]:
    """Like :func:`config`, also returning the :class:`DatasetSizing` with the reasons for its choices."""
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.data.tfrecord import list_record_files

    variant = variant.lower()
    if variant not in VARIANTS:
        raise UsageError(f"--variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    for name, value in (("--steps", steps), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if not MIN_INPUT_SIZE <= min(size) <= max(size) <= MAX_INPUT_SIZE:
        raise UsageError(f"--input-size must be in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}], got {input_size}")
    labels = read_label_map(label_map)
    if labels.num_classes < 1:
        raise DataError("label map has no classes", label_map)
    train_files = list_record_files(str(train))
    test_files = list_record_files(str(test))
    num_train = sum(count_records(f) for f in train_files)
    num_test = sum(count_records(f) for f in test_files)
    if num_train == 0:
        raise DataError("the training TFRecords hold no examples", train)
    checkpoint = None
    if fine_tune_checkpoint is not None:
        prefix = Path(fine_tune_checkpoint)
        if not (prefix.exists() or Path(f"{prefix}.index").exists()):
            raise DataError(
                "fine-tune checkpoint not found (give the prefix, e.g. model.ckpt-400000)", prefix
            )
    gpu = _gpu_available() if batch_size is None else False
    plan = size_training(num_train, num_test, steps=steps, batch_size=batch_size, gpu=gpu)

    out = Path(out)
    config_dir = Path(os.path.abspath(out.parent))
    if fine_tune_checkpoint is not None:
        checkpoint = _path_for_config(fine_tune_checkpoint, config_dir)
    label_map_path = _path_for_config(label_map, config_dir)
    cfg = PipelineConfig(
        model=ModelSettings(num_classes=labels.num_classes, variant=variant, input_size=size),  # type: ignore[arg-type]
        train=TrainSettings(
            batch_size=plan.batch_size,
            num_steps=plan.num_steps,
            learning_rate_base=plan.learning_rate_base,
            warmup_learning_rate=plan.warmup_learning_rate,
            warmup_steps=plan.warmup_steps,
            total_steps=plan.num_steps,
            optimizer=plan.optimizer,
            use_moving_average=plan.use_moving_average,
            use_bfloat16=plan.use_bfloat16,
            data_augmentation_options=plan.augmentation,
            fine_tune_checkpoint=checkpoint,
            fine_tune_checkpoint_type="detection",
        ),
        train_input=InputReaderSettings(
            label_map_path=label_map_path, input_paths=[_path_for_config(train, config_dir)], shuffle=True
        ),
        eval_input=InputReaderSettings(
            label_map_path=label_map_path,
            input_paths=[_path_for_config(test, config_dir)],
            shuffle=False,
            num_epochs=1,
        ),
        eval=EvalSettings(use_moving_averages=plan.use_moving_average),
        quantization=QuantizationSettings(delay=plan.quantization_delay) if quantize else None,
        path=config_dir / out.name,
    )
    notes = ["Training settings chosen by `spaghettinet config` for this data set, and why:"]
    notes += [f"- {reason}" for reason in plan.reasons]
    write_config(cfg, out, notes=notes)
    return cfg, plan


def config(
    variant: str,
    label_map: str | Path,
    train: str | Path,
    test: str | Path,
    out: str | Path,
    steps: int | None = None,
    batch_size: int | None = None,
    input_size: int | tuple[int, int] = 320,
    quantize: bool = True,
    fine_tune_checkpoint: str | Path | None = None,
) -> PipelineConfig:
    """Write a complete ``pipeline.config`` for a data set and return its settings.

    Args:
        variant: ``'s'``, ``'m'`` or ``'l'``.
        label_map: the label map (``num_classes`` is its largest id).
        train / test: TFRecord files, globs or shard base names (records are counted to size the training).
        out: the config file to write (atomically); paths inside it are relative to its folder when they lie
            inside it, else absolute.
        steps / batch_size: fixed values instead of the rules of this module.
        input_size: side of the square input, or ``(height, width)``.
        quantize: add ``graph_rewriter.quantization`` (QAT for the last 15 % of the steps).
        fine_tune_checkpoint: checkpoint prefix to start from (TF1 zoo or ours).

    Returns:
        The settings written (``cfg.path`` is ``out``).

    Raises:
        UsageError: a bad variant, steps or batch size.
        DataError: a missing or bad label map, records or checkpoint.

    Example:
        >>> cfg = config("s", "training/label_map.pbtxt", "training/train.record",
        ...              "training/test.record", "training/pipeline.config")  # doctest: +SKIP
        >>> cfg.train.num_steps  # doctest: +SKIP
        1000
    """
    return config_with_plan(
        variant, label_map, train, test, out, steps, batch_size, input_size, quantize, fine_tune_checkpoint
    )[0]
