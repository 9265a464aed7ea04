"""Learning-rate schedule of the reference (cosine decay with linear warmup) and how we scale it to small jobs.

Reference (the zoo config, ``utils/learning_schedules.py`` ``cosine_decay_with_warmup``): base 0.8, warmup
from 0.13333 over 2000 steps, cosine to 0 at step 400000, 0 after it; batch 512.
:func:`cosine_decay_with_warmup` is that formula in plain Python; :class:`CosineDecayWithWarmup` is the same
as a serialisable Keras ``LearningRateSchedule``.

Importing this module does not import TensorFlow (the ``config`` command uses :func:`scaled_schedule`); the Keras
class is built on first access, ``from spaghettinet.training.schedule import CosineDecayWithWarmup``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Reference values (the zoo config's ``train_config``).
REFERENCE_BATCH_SIZE = 512
REFERENCE_BASE_LR = 0.8
REFERENCE_WARMUP_LR = 0.13333
REFERENCE_WARMUP_STEPS = 2000
REFERENCE_TOTAL_STEPS = 400_000

#: Our scaling rule's limits (see :func:`scaled_schedule`).
MIN_BASE_LR = 0.004
MAX_WARMUP_STEPS = REFERENCE_WARMUP_STEPS
WARMUP_FRACTION = 0.05


def cosine_decay_with_warmup(
    step: float,
    learning_rate_base: float,
    total_steps: int,
    warmup_learning_rate: float = 0.0,
    warmup_steps: int = 0,
    hold_base_rate_steps: int = 0,
) -> float:
    """The reference learning rate at ``step`` (plain Python).

    Linear from ``warmup_learning_rate`` to ``learning_rate_base`` over ``warmup_steps``, held for
    ``hold_base_rate_steps``, then ``0.5·base·(1 + cos(π·(step − warmup − hold)/(total − warmup − hold)))``; 0 after
    ``total_steps``.

    Args:
        step: global step.
        learning_rate_base: peak learning rate.
        total_steps: step at which the rate reaches 0.
        warmup_learning_rate: rate at step 0.
        warmup_steps: length of the linear warmup.
        hold_base_rate_steps: steps at the peak after warmup.

    Returns:
        The learning rate.

    Example:
        >>> cosine_decay_with_warmup(0, 0.8, 400000, 0.13333, 2000)
        0.13333
        >>> cosine_decay_with_warmup(2000, 0.8, 400000, 0.13333, 2000)
        0.8
    """
    _check(learning_rate_base, total_steps, warmup_learning_rate, warmup_steps, hold_base_rate_steps)
    if step > total_steps:
        return 0.0
    if warmup_steps > 0 and step < warmup_steps:
        return (learning_rate_base - warmup_learning_rate) / warmup_steps * step + warmup_learning_rate
    if hold_base_rate_steps > 0 and step <= warmup_steps + hold_base_rate_steps:
        return learning_rate_base
    decay_steps = total_steps - warmup_steps - hold_base_rate_steps
    progress = (step - warmup_steps - hold_base_rate_steps) / decay_steps if decay_steps > 0 else 1.0
    return 0.5 * learning_rate_base * (1.0 + math.cos(math.pi * progress))


def _check(base: float, total: int, warmup_lr: float, warmup: int, hold: int) -> None:
    # The same preconditions as the API's cosine_decay_with_warmup.
    if total < warmup + hold:
        raise ValueError(
            f"total_steps ({total}) must be at least warmup_steps + hold_base_rate_steps ({warmup + hold})"
        )
    if warmup > 0 and base < warmup_lr:
        raise ValueError(f"learning_rate_base ({base}) must be at least warmup_learning_rate ({warmup_lr})")


@dataclass(frozen=True)
class ScheduleSettings:
    """Cosine-with-warmup settings, as written in ``pipeline.config``'s ``cosine_decay_learning_rate``.

    Example:
        >>> ScheduleSettings(0.8, 400000, 0.13333, 2000).warmup_steps
        2000
    """

    learning_rate_base: float
    total_steps: int
    warmup_learning_rate: float
    warmup_steps: int
    hold_base_rate_steps: int = 0


def scaled_schedule(batch_size: int, total_steps: int) -> ScheduleSettings:
    """The reference schedule scaled to a smaller batch and step count.

    Rule: linear LR scaling with the batch (``0.8 · batch / 512``), floored at 0.004 so that tiny batches still
    learn, capped at the reference's 0.8; the warmup starts at the reference's ratio (0.13333 / 0.8 = 1/6 of the
    base) and lasts ``min(2000, max(1, 5 % of the steps))`` steps (the reference's 2000 steps are 0.5 % of 400k, too
    short a share for runs of a few thousand steps, whose first steps move the most).

    Args:
        batch_size: images per step (all replicas together).
        total_steps: training steps.

    Returns:
        :class:`ScheduleSettings`.

    Example:
        >>> scaled_schedule(512, 400000) == ScheduleSettings(0.8, 400000, 0.13333, 2000)
        True
        >>> scaled_schedule(8, 2000)
        ScheduleSettings(learning_rate_base=0.0125, total_steps=2000, warmup_learning_rate=0.0020833, warmup_steps=100, hold_base_rate_steps=0)
    """
    if batch_size < 1 or total_steps < 1:
        raise ValueError(f"batch_size and total_steps must be positive, got {batch_size} and {total_steps}")
    base = min(REFERENCE_BASE_LR, max(MIN_BASE_LR, REFERENCE_BASE_LR * batch_size / REFERENCE_BATCH_SIZE))
    warmup_lr = round(base * REFERENCE_WARMUP_LR / REFERENCE_BASE_LR, 7)
    warmup_steps = min(MAX_WARMUP_STEPS, max(1, round(WARMUP_FRACTION * total_steps)))
    warmup_steps = min(warmup_steps, total_steps)
    return ScheduleSettings(round(base, 7), int(total_steps), warmup_lr, int(warmup_steps))


def _build_keras_class():
    from spaghettinet.tf_runtime import import_keras, import_tensorflow

    keras = import_keras()
    tf = import_tensorflow()

    @keras.saving.register_keras_serializable(package="spaghettinet", name="CosineDecayWithWarmup")
    class CosineDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
        """Keras schedule for :func:`cosine_decay_with_warmup`; serialisable (``get_config``/``from_config``).

        Args:
            learning_rate_base: peak learning rate.
            total_steps: step at which the rate reaches 0 (and stays 0).
            warmup_learning_rate: rate at step 0.
            warmup_steps: linear warmup length.
            hold_base_rate_steps: steps held at the peak.

        Example:
            >>> schedule = CosineDecayWithWarmup(**vars(scaled_schedule(8, 2000)))  # doctest: +SKIP
            >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)  # doctest: +SKIP
        """

        def __init__(
            self,
            learning_rate_base: float,
            total_steps: int,
            warmup_learning_rate: float = 0.0,
            warmup_steps: int = 0,
            hold_base_rate_steps: int = 0,
        ):
            _check(learning_rate_base, total_steps, warmup_learning_rate, warmup_steps, hold_base_rate_steps)
            self.learning_rate_base = float(learning_rate_base)
            self.total_steps = int(total_steps)
            self.warmup_learning_rate = float(warmup_learning_rate)
            self.warmup_steps = int(warmup_steps)
            self.hold_base_rate_steps = int(hold_base_rate_steps)

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            base = self.learning_rate_base
            decay_start = float(self.warmup_steps + self.hold_base_rate_steps)
            decay_steps = max(float(self.total_steps) - decay_start, 1.0)
            progress = tf.clip_by_value((step - decay_start) / decay_steps, 0.0, 1.0)
            rate = 0.5 * base * (1.0 + tf.cos(math.pi * progress))
            if self.warmup_steps > 0:
                slope = (base - self.warmup_learning_rate) / self.warmup_steps
                rate = tf.where(step < self.warmup_steps, slope * step + self.warmup_learning_rate, rate)
            return tf.where(step > self.total_steps, 0.0, rate)

        def get_config(self) -> dict:
            return {
                "learning_rate_base": self.learning_rate_base,
                "total_steps": self.total_steps,
                "warmup_learning_rate": self.warmup_learning_rate,
                "warmup_steps": self.warmup_steps,
                "hold_base_rate_steps": self.hold_base_rate_steps,
            }

    return CosineDecayWithWarmup


def __getattr__(name: str):
    # PEP 562: build the Keras class (importing TensorFlow) only when someone asks for it.
    if name == "CosineDecayWithWarmup":
        cls = _build_keras_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
