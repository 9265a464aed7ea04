"""The time budget: speed measured without the tracing step, the schedule fitted to the time left."""

from __future__ import annotations

import time

from spaghettinet.pipeline_config.settings import PipelineConfig, QuantizationSettings, TrainSettings
from spaghettinet.training.plan import TrainPlan
from spaghettinet.training.time_budget import (
    SPEED_MEASURE_STEPS,
    SPEED_WARMUP_STEPS,
    StepTimer,
    TimeBudget,
)


def test_the_first_step_after_each_trace_is_not_timed():
    timer = StepTimer()
    for elapsed in (30.0, 1.0, 1.0):
        timer.add(elapsed)
    timer.retraced()  # the QAT switch rebuilds the step
    for elapsed in (20.0, 2.0):
        timer.add(elapsed)
    assert timer.steps == 3 and timer.seconds_per_step == 4.0 / 3
    assert timer.images_per_second(8) == 8 / (4.0 / 3)


def test_fit_uses_the_time_left_after_the_evaluation_reserve():
    config = PipelineConfig(
        train=TrainSettings(num_steps=1000, total_steps=1000, warmup_steps=50),
        quantization=QuantizationSettings(delay=850),
    )
    plan = TrainPlan(
        batch_size=8,
        num_steps=1000,
        total_steps=1000,
        warmup_steps=50,
        learning_rate_base=2e-3,
        warmup_learning_rate=2e-4,
        quantization_delay=850,
    )
    budget = TimeBudget(600.0, time.monotonic(), fit_pending=True, refit_after_qat=True)
    timer = StepTimer()
    # The traced step, then warm-up steps at 3 s that the measurement leaves out, then steps at 1 s.
    durations = [30.0] + [3.0] * SPEED_WARMUP_STEPS + [1.0] * SPEED_MEASURE_STEPS
    due = []
    for elapsed in durations:
        timer.add(elapsed)
        due.append(budget.fit_due(timer))
    assert due == [False] * (len(durations) - 1) + [True]
    assert timer.seconds_per_step == 1.0
    step = len(durations)
    fitted = budget.fit(
        time.monotonic(), step, plan, config, timer, eval_images=30, max_steps=None, quantization_aware=False
    )
    # 600 s less the reserve (20 s + 30 images at a third of a step per image, 1.25 s) at 1 s/step, from step 16.
    assert 570 + step <= fitted <= 582 + step and plan.num_steps == fitted
    assert plan.quantization_delay == round(0.85 * fitted)  # the config's own share, scaled
    assert not budget.fit_due(timer) and not budget.spent(time.monotonic())
    # After the switch to QAT, the slower steps are timed afresh, after a warm-up again, and fitted once more.
    budget.after_qat_switch(timer)
    assert timer.steps == 0 and budget.fit_pending and budget.warming_up


def test_a_budget_already_used_up_is_spent():
    budget = TimeBudget(1.0, time.monotonic() - 5.0, fit_pending=False, refit_after_qat=False)
    assert budget.spent(time.monotonic())
