"""A wall-clock budget for training: measure the step speed, fit the schedule to it, stop in time.

With ``--time-budget``, :data:`SPEED_MEASURE_STEPS` timed steps after :data:`SPEED_WARMUP_STEPS` warm-up steps
give the speed; the schedule (and the QAT
delay, scaled with it) is fitted to the steps that fit in what is left after the time reserved for the final
evaluation, and training stops when the budget less that reserve is spent. Quantization-aware steps are slower
than float ones, so a schedule fitted to the float speed is fitted once more after the switch to QAT has been timed.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Steps after each trace left out of the speed measurement: the first calls of a traced step run slower (oneDNN
#: creates and caches its kernels, memory is allocated). S at 320², batch 8, one core: the first three timed steps
#: averaged 1.25 s against 0.95 s later, and a schedule fitted to them left a quarter of a 20-minute budget unused.
SPEED_WARMUP_STEPS = 5
#: Timed steps, after the warm-up, that give the speed for a time budget.
SPEED_MEASURE_STEPS = 10


@dataclass
class StepTimer:
    """Seconds spent in train steps, leaving out the first step after each (re)trace (it measures tracing).

    Example:
        >>> timer = StepTimer()
        >>> for elapsed in (9.0, 0.5, 0.7):
        ...     timer.add(elapsed)
        >>> timer.seconds_per_step
        0.6
    """

    seconds: float = 0.0
    steps: int = 0
    skip_next: bool = True

    def add(self, elapsed: float) -> None:
        if self.skip_next:
            self.skip_next = False
        else:
            self.seconds += elapsed
            self.steps += 1

    def retraced(self) -> None:
        """The train step was rebuilt: its next call traces again."""
        self.skip_next = True

    def reset(self, skip_first: bool = True) -> None:
        """Forget the steps timed so far; ``skip_first``: the next step traces (leave it out)."""
        self.seconds, self.steps, self.skip_next = 0.0, 0, skip_first

    @property
    def seconds_per_step(self) -> float | None:
        return self.seconds / self.steps if self.steps else None

    def images_per_second(self, batch_size: int) -> float | None:
        seconds = self.seconds_per_step
        return batch_size / seconds if seconds else None


class TimeBudget:
    """When a budgeted run stops, and when its schedule is fitted.

    Args:
        budget_s: the budget in seconds, counted from ``started``.
        started: ``time.monotonic()`` when the run began (set-up counts against the budget). Every time is
            passed in by the caller, whose clock a test can replace.
        fit_pending: the schedule still has to be fitted (False on a resume whose plan was fitted before).
        refit_after_qat: fit again after the switch to quantization-aware training has been timed.
    """

    def __init__(self, budget_s: float, started: float, fit_pending: bool, refit_after_qat: bool):
        self.budget_s = budget_s
        self.deadline = started + budget_s
        self.fit_pending = fit_pending
        self.refit_after_qat = refit_after_qat and fit_pending
        self.eval_reserve_s = 0.0
        self.warming_up = fit_pending

    def spent(self, now: float) -> bool:
        """Stop at ``now`` (``time.monotonic()``): what is left is the time reserved for the final evaluation."""
        return now + self.eval_reserve_s >= self.deadline

    def after_qat_switch(self, timer: StepTimer) -> None:
        """Time the slower QAT steps afresh and fit the schedule to them once they are measured."""
        if self.refit_after_qat and not self.fit_pending:
            self.fit_pending = True
            self.warming_up = True
            timer.reset()

    def fit_due(self, timer: StepTimer) -> bool:
        """Whether the speed is measured: after the warm-up steps (then the timer starts afresh), the measured ones."""
        if not self.fit_pending:
            return False
        if self.warming_up:
            if timer.steps >= SPEED_WARMUP_STEPS:
                self.warming_up = False
                timer.reset(skip_first=False)
            return False
        return timer.steps >= SPEED_MEASURE_STEPS

    def fit(
        self,
        now: float,
        step: int,
        plan,
        config,
        timer: StepTimer,
        eval_images: int,
        max_steps: int | None,
        quantization_aware: bool,
    ) -> int:
        """Fit ``plan`` to the steps the measured speed allows in the time left; returns the new last step.

        Args:
            now: ``time.monotonic()``.
            step: the step reached.
            plan: the :class:`~spaghettinet.training.plan.TrainPlan` to fit (changed in place).
            config: the pipeline config whose schedule is scaled.
            timer: the measured speed.
            eval_images: images the final evaluation will run (0: no evaluation at the end).
            max_steps: ``--steps``, the most steps asked for (None: no limit).
            quantization_aware: QAT has started (its delay is then kept where it is).
        """
        self.fit_pending = False
        seconds_per_step = timer.seconds_per_step
        # Evaluation runs a forward pass only (~1/3 of a train step per image) plus one trace.
        self.eval_reserve_s = min(
            0.2 * self.budget_s, 20.0 + eval_images * seconds_per_step / plan.batch_size / 3
        )
        affordable = step + int((self.deadline - now - self.eval_reserve_s) / seconds_per_step)
        fitted = max(step + 1, min(affordable, max_steps if max_steps is not None else affordable))
        plan.fit_to_steps(fitted, config, keep_quantization_delay=quantization_aware)
        plan.measured_seconds_per_step = seconds_per_step
        return fitted
