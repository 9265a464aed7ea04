"""Learning-rate schedule of the reference: cosine decay with linear warmup.

Reference (the zoo config, ``utils/learning_schedules.py`` ``cosine_decay_with_warmup``): base 0.8, warmup
from 0.13333 over 2000 steps, cosine to 0 at step 400000, 0 after it; batch 512.
:func:`cosine_decay_with_warmup` is that formula in plain Python; the trainer sets the optimizer's rate from it
every step (``training/plan.py``). How ``config`` sizes the schedule for a data set is
``pipeline_config/generate.py``'s.
"""

from __future__ import annotations

import math


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
