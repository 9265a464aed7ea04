"""Training checkpoints: what they hold, how to find the latest one, and how to rebuild a detector from one.

A checkpoint is a TF2 object checkpoint with the prefix ``<model_dir>/ckpt-<step>`` (the TF OD API named its TF1
ones ``model.ckpt-<step>``) holding:

* ``model``: the detector's variables;
* ``optimizer``: the SGD momentum slots and iteration count;
* ``step``: the global step (int64);
* ``examples_seen``: how many training examples the input stream has delivered (the data position);
* ``quantization_aware``: 1 when the model was training in QAT mode at that step, else 0.

``tf.train.CheckpointManager`` writes the files first and updates the ``checkpoint`` state file last (itself
written to a temporary name and renamed), so a crash while saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import re
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: Prefix stem of our checkpoints: ``ckpt-<step>``.
CHECKPOINT_NAME = "ckpt"
_STEP_SUFFIX = re.compile(r"-(\d+)$")


class TrainingState(tf.Module):
    """The non-model variables saved with every checkpoint (step, data position, QAT flag).

    Example:
        >>> state = TrainingState()
        >>> int(state.step.numpy())
        0
    """

    def __init__(self):
        super().__init__(name="training_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
        self.quantization_aware = tf.Variable(0, dtype=tf.int64, trainable=False, name="quantization_aware")


def make_checkpoint(model, state: TrainingState, optimizer=None):
    """The ``tf.train.Checkpoint`` layout used by ``train`` (and read back by :func:`restore_detector`).

    Args:
        model: the Keras detector.
        state: a :class:`TrainingState`.
        optimizer: the optimizer, or None when only reading weights.

    Returns:
        A ``tf.train.Checkpoint``.

    Example:
        >>> ckpt = make_checkpoint(model, TrainingState(), optimizer)  # doctest: +SKIP
    """
    parts = {"model": model, "step": state.step, "examples_seen": state.examples_seen}
    parts["quantization_aware"] = state.quantization_aware
    if optimizer is not None:
        parts["optimizer"] = optimizer
    return tf.train.Checkpoint(**parts)


def is_checkpoint_prefix(path: str | Path) -> bool:
    """True when ``path`` is a TF checkpoint prefix (its ``.index`` file exists)."""
    return Path(f"{path}.index").is_file()


def latest_checkpoint(model_dir_or_prefix: str | Path) -> str | None:
    """The checkpoint to use for a model directory or a checkpoint prefix.

    Args:
        model_dir_or_prefix: a training model directory (its latest checkpoint is meant), or a prefix such as
            ``run/ckpt-200`` (returned as is when its files exist).

    Returns:
        The checkpoint prefix, or None when a directory has no checkpoint yet.

    Raises:
        DataError: the path is neither a directory nor an existing checkpoint prefix.

    Example:
        >>> latest_checkpoint("runs/demo")  # doctest: +SKIP
        'runs/demo/ckpt-1500'
    """
    path = Path(model_dir_or_prefix)
    if path.is_dir():
        found = tf.train.latest_checkpoint(str(path))
        if found is not None and is_checkpoint_prefix(found):
            return found
        # The state file may be missing or stale (copied folder): fall back to the highest-numbered prefix.
        prefixes = sorted(
            (p.with_suffix("") for p in path.glob(f"{CHECKPOINT_NAME}-*.index")),
            key=lambda p: checkpoint_step(p) or -1,
        )
        return str(prefixes[-1]) if prefixes else None
    if is_checkpoint_prefix(path):
        return str(path)
    raise DataError(
        "is neither a model directory nor a checkpoint prefix (expected a folder written by `spaghettinet train` "
        "or a prefix like run/ckpt-200 whose .index file exists)",
        path,
    )


def checkpoint_step(prefix: str | Path) -> int | None:
    """The step number at the end of a ``...-<step>`` prefix, or None.

    Example:
        >>> checkpoint_step("run/ckpt-1200")
        1200
    """
    match = _STEP_SUFFIX.search(Path(prefix).name)
    return int(match.group(1)) if match else None


def require_checkpoint(model_dir_or_prefix: str | Path) -> str:
    """Like :func:`latest_checkpoint`, but a directory without a checkpoint is an error naming it."""
    found = latest_checkpoint(model_dir_or_prefix)
    if found is None:
        raise DataError("has no checkpoint yet; train first with `spaghettinet train`", model_dir_or_prefix)
    return found


def restore_detector(config, checkpoint_or_model_dir: str | Path):
    """Build the detector a config describes and load a training checkpoint into it.

    The quantization mode is restored too: a checkpoint taken after the QAT switch gives a model in
    quantization-aware mode (what export uses to choose QAT conversion).

    Args:
        config: a ``PipelineConfig`` (variant, classes and input size must match the checkpoint).
        checkpoint_or_model_dir: a ``ckpt-<step>`` prefix, or a model directory meaning its latest checkpoint.

    Returns:
        ``(model, step, quantization_aware)``.

    Raises:
        DataError: no checkpoint there, or it does not fit the model (wrong variant / classes / input size).

    Example:
        >>> model, step, qat = restore_detector(read_config("pipeline.config"), "runs/demo")  # doctest: +SKIP
    """
    from spaghettinet.model.detector import build_detector
    from spaghettinet.model.quantize import set_quantization_aware

    prefix = require_checkpoint(checkpoint_or_model_dir)
    settings = config.model
    model = build_detector(settings.variant, settings.num_classes, input_size=tuple(settings.input_size))
    state = TrainingState()
    checkpoint = make_checkpoint(model, state)
    try:
        status = checkpoint.read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"does not fit a SpaghettiNet-{settings.variant.upper()} with {settings.num_classes} classes at "
            f"{settings.input_size[0]}x{settings.input_size[1]} (use the pipeline.config it was trained with): "
            f"{first_line}",
            prefix,
        ) from exc
    quantization_aware = bool(int(state.quantization_aware.numpy()))
    if quantization_aware:
        set_quantization_aware(model, True)
    return model, int(state.step.numpy()), quantization_aware
