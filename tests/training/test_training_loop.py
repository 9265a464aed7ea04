"""The training loop: SIGINT saves and stops, resume continues (step, weights, schedule, data), QAT switch at the
delay survives resume, a non-finite loss stops with its step and keeps the last good checkpoint, restore_detector,
and evaluate on records. One small run (SpaghettiNet-S at 64², batch 2) is shared by the tests of this module.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_training_inputs import _example  # noqa: E402  (tiny TFRecord examples, shared with the inputs tests)

from spaghettinet.errors import DataError, UsageError  # noqa: E402
from spaghettinet.pipeline_config.settings import (  # noqa: E402
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    TrainSettings,
)
from spaghettinet.tf_runtime import import_tensorflow  # noqa: E402
from spaghettinet.training import loop  # noqa: E402
from spaghettinet.training.checkpoints import latest_checkpoint, restore_detector  # noqa: E402

tf = import_tensorflow()

INTERRUPT_AT = 3
QAT_DELAY = 4
NUM_STEPS = 6


def _config(folder: Path) -> PipelineConfig:
    reader = InputReaderSettings(label_map_path="label_map.pbtxt", input_paths=["train.record"])
    return PipelineConfig(
        model=ModelSettings(num_classes=2, variant="s", input_size=(64, 64)),
        train=TrainSettings(
            batch_size=2,
            num_steps=NUM_STEPS,
            total_steps=NUM_STEPS,
            warmup_steps=4,
            warmup_learning_rate=0.004,
            learning_rate_base=0.02,
            max_number_of_boxes=4,
        ),
        train_input=reader,
        eval_input=InputReaderSettings(
            label_map_path="label_map.pbtxt", input_paths=["train.record"], shuffle=False
        ),
        quantization=QuantizationSettings(delay=QAT_DELAY),
        path=folder / "pipeline.config",
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train with SIGINT at step 3, then resume to the end; returns what each part produced."""
    folder = tmp_path_factory.mktemp("loop")
    with tf.io.TFRecordWriter(str(folder / "train.record")) as writer:
        for index in range(5):
            writer.write(_example(index, with_object=index != 4))
    (folder / "label_map.pbtxt").write_text('item { id: 1 name: "a" }\nitem { id: 2 name: "b" }\n')
    cfg = _config(folder)
    model_dir = folder / "model"

    original_update = loop._Progress.update

    def interrupting_update(self, step, *args):
        original_update(self, step, *args)
        if step == INTERRUPT_AT:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT through the installed handler

    loop._Progress.update = interrupting_update
    handler_before = signal.getsignal(signal.SIGINT)  # ignored, not default, when run in the background
    try:
        first = loop.train(cfg, model_dir, log_every=1, evaluate_at_end=False, show_progress=False)
    finally:
        loop._Progress.update = original_update
    after_first, _, _ = restore_detector(cfg, model_dir)
    first_weights = [v.numpy().copy() for v in after_first.trainable_variables]
    second = loop.train(cfg, model_dir, log_every=1, show_progress=False)
    return {
        "cfg": cfg,
        "dir": model_dir,
        "first": first,
        "second": second,
        "first_weights": first_weights,
        "handler_before": handler_before,
        "handler_after": signal.getsignal(signal.SIGINT),
    }


def test_sigint_saves_a_checkpoint_at_the_step_reached_and_stops(run):
    first = run["first"]
    assert first.stopped == "interrupted"
    assert first.step == INTERRUPT_AT
    assert Path(first.checkpoint).name == f"ckpt-{INTERRUPT_AT}"
    assert run["handler_after"] is run["handler_before"]  # the caller's SIGINT handler is restored


def test_resume_continues_step_schedule_data_and_weights(run):
    second, cfg = run["second"], run["cfg"]
    assert second.resumed_from_step == INTERRUPT_AT and second.step == NUM_STEPS
    assert second.stopped == "completed"
    history = json.loads((run["dir"] / loop.HISTORY_FILE).read_text())
    rates = {entry["step"]: entry["learning_rate"] for entry in history if "learning_rate" in entry}
    # The first resumed step used the rate of step 3 (late warmup), not the warmup start again.
    plan = second.plan
    assert rates[INTERRUPT_AT + 1] == pytest.approx(plan.learning_rate(INTERRUPT_AT))
    assert rates[INTERRUPT_AT + 1] > cfg.train.warmup_learning_rate * 2
    assert sorted(rates) == list(range(1, NUM_STEPS + 1))
    # Optimizer iterations and the data position are in the checkpoint and continued.
    reader = tf.train.load_checkpoint(second.checkpoint)
    names = [name for name, _ in tf.train.list_variables(second.checkpoint)]
    iterations = [n for n in names if n.startswith("optimizer/") and "iteration" in n]
    assert iterations and int(reader.get_tensor(iterations[0])) == NUM_STEPS
    examples = [n for n in names if n.startswith("examples_seen")]
    assert int(reader.get_tensor(examples[0])) == NUM_STEPS * cfg.train.batch_size
    # The resumed run started from the saved weights and moved them.
    model, step, _ = restore_detector(cfg, run["dir"])
    assert step == NUM_STEPS
    moved = [
        not np.allclose(a, b.numpy())
        for a, b in zip(run["first_weights"], model.trainable_variables, strict=True)
    ]
    assert any(moved)


def test_quantization_aware_switch_at_the_delay_survives_restore(run):
    first, second, cfg = run["first"], run["second"], run["cfg"]
    assert not first.quantization_aware
    assert second.quantization_aware
    assert any(f"from step {QAT_DELAY}" in m for m in second.messages)
    _, step, qat = restore_detector(cfg, run["dir"] / f"ckpt-{NUM_STEPS}")
    assert step == NUM_STEPS and qat
    _, step, qat = restore_detector(cfg, run["dir"] / f"ckpt-{INTERRUPT_AT}")
    assert step == INTERRUPT_AT and not qat


def test_training_ends_with_an_evaluation_and_a_history(run):
    second = run["second"]
    assert second.evaluation is not None and second.evaluation.num_images == 5
    saved = json.loads((run["dir"] / f"eval-{NUM_STEPS}.json").read_text())
    assert saved["step"] == NUM_STEPS and "AP50" in saved["metrics"] and saved["detections"]
    history = json.loads((run["dir"] / loop.HISTORY_FILE).read_text())
    assert any(entry.get("step") == NUM_STEPS and "AP50" in entry for entry in history)
    assert list((run["dir"] / "train").glob("events.out.tfevents.*"))


def test_evaluate_a_model_dir_writes_eval_json(run):
    from spaghettinet.evaluation.evaluate import evaluate

    out = run["dir"] / "eval-cli.json"
    result = evaluate(run["cfg"], run["dir"], out=out)
    assert result.num_images == 5 and 0.0 <= result.ap50 <= 1.0
    payload = json.loads(out.read_text())
    assert payload["checkpoint"].endswith(f"ckpt-{NUM_STEPS}")
    assert {"image_id", "category_id", "bbox", "score"} <= set(payload["detections"][0])


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(run):
    state_path = run["dir"] / loop.STATE_FILE
    saved_state = state_path.read_text()
    state = json.loads(saved_state)
    state.update(learning_rate_base=1e30, warmup_learning_rate=1e30, num_steps=NUM_STEPS + 4, total_steps=100)
    state_path.write_text(json.dumps(state))
    try:
        with pytest.raises(DataError, match=r"at step \d+.*last good checkpoint .*ckpt-6"):
            loop.train(run["cfg"], run["dir"], evaluate_at_end=False, show_progress=False)
    finally:
        state_path.write_text(saved_state)
    assert latest_checkpoint(run["dir"]).endswith(f"ckpt-{NUM_STEPS}")


def test_restore_detector_rejects_a_directory_without_checkpoints(tmp_path, run):
    with pytest.raises(DataError, match="no checkpoint"):
        restore_detector(run["cfg"], tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("20m", 1200), ("1h", 3600), ("1h30m", 5400), ("45", 45)]
)
def test_time_budget_durations(text, seconds):
    assert loop.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0s", ""])
def test_bad_time_budget_is_a_usage_error(text):
    with pytest.raises(UsageError):
        loop.parse_duration(text)


class _SimulatedClock:
    """A ``time`` module stand-in whose clock advances only when a train step runs (float 1 s, QAT 2 s)."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name):
        import time

        return getattr(time, name)


def test_time_budget_fits_the_schedule_to_the_steps_it_allows_and_refits_after_qat(
    tmp_path, run, monkeypatch
):
    """A 100 s budget with float steps of 1 s and QAT steps of 2 s (simulated: tracing costs nothing here).

    The schedule is fitted to the float speed first (QAT delay at 10 % of that), then once more after the
    switch, to the slower QAT speed, keeping the delay: the run completes its whole schedule inside the budget
    instead of being cut off mid-schedule.
    """
    from spaghettinet.model.quantize import is_quantization_aware

    clock = _SimulatedClock()
    original_build = loop._build_train_step

    def timed_build(model, optimizer, strategy, config):
        step_fn = original_build(model, optimizer, strategy, config)
        seconds = 2.0 if is_quantization_aware(model) else 1.0

        def timed_step(batch):
            clock.now += seconds
            return step_fn(batch)

        return timed_step

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop, "_build_train_step", timed_build)
    train_settings = dataclasses.replace(
        run["cfg"].train, num_steps=10_000, total_steps=10_000, warmup_steps=100
    )
    cfg = run["cfg"].replace(train=train_settings)
    budget = 100.0
    result = loop.train(
        cfg, tmp_path / "budget", time_budget=budget, evaluate_at_end=False, show_progress=False
    )

    assert result.stopped == "completed"
    assert clock.now <= budget
    assert result.step == result.plan.num_steps < 10_000
    switch = [m for m in result.messages if m.startswith("quantization-aware training from step")]
    assert switch and int(switch[0].rsplit(" ", 1)[1]) == result.plan.quantization_delay
    assert len([m for m in result.messages if "fitted" in m]) == 2
    history = json.loads((tmp_path / "budget" / loop.HISTORY_FILE).read_text())
    last_rate = [e["learning_rate"] for e in history if "learning_rate" in e][-1]
    assert last_rate < 0.05 * result.plan.learning_rate_base  # the cosine schedule ran to its end
