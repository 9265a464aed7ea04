"""The training loop: SIGINT saves and stops, resume continues (step, weights, schedule, data), QAT switch at the
delay survives resume, a non-finite loss stops with its step and keeps the last good checkpoint, restore_detector,
and evaluate on records, fine-tuning from our own checkpoints (other class count, backbone only, misfits). One
small run (SpaghettiNet-S at 64², batch 2, 2 classes, QAT from step 4) is shared by the tests of this module and
is the source checkpoint of the fine-tuning tests.
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

from spaghettinet.coco_metrics import EvalReport  # noqa: E402
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
from spaghettinet.training.history import HISTORY_FILE, MetricsHistory  # noqa: E402

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
    history = MetricsHistory.read(run["dir"] / HISTORY_FILE)
    rates = {record.step: record.learning_rate for record in history.losses}
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
    saved = EvalReport.read(run["dir"] / f"eval-{NUM_STEPS}.json")
    assert saved.step == NUM_STEPS and saved.result.num_images == 5 and saved.detections
    assert saved.result.ap50 == second.evaluation.ap50
    history = MetricsHistory.read(run["dir"] / HISTORY_FILE)
    assert history.evaluated_at(NUM_STEPS) and history.last_step == NUM_STEPS
    assert list((run["dir"] / "train").glob("events.out.tfevents.*"))


def test_evaluate_a_model_dir_writes_eval_json(run):
    from spaghettinet.evaluation.evaluate import evaluate

    out = run["dir"] / "eval-cli.json"
    result = evaluate(run["cfg"], run["dir"], out=out)
    assert result.num_images == 5 and 0.0 <= result.ap50 <= 1.0
    saved = EvalReport.read(out)
    assert saved.checkpoint.endswith(f"ckpt-{NUM_STEPS}") and saved.result.ap50 == result.ap50
    assert {"image_id", "category_id", "bbox", "score"} <= set(saved.detections[0])


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

    def timed_build(model, optimizer, strategy, config, averages=None):
        step_fn = original_build(model, optimizer, strategy, config, averages)
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
    # QAT after half of the config's steps: the fitted schedule keeps that share.
    cfg = run["cfg"].replace(train=train_settings, quantization=QuantizationSettings(delay=5_000))
    budget = 100.0
    result = loop.train(
        cfg, tmp_path / "budget", time_budget=budget, evaluate_at_end=False, show_progress=False
    )

    assert result.stopped == "completed"
    assert clock.now <= budget
    assert result.step == result.plan.num_steps < 10_000
    switch = [m for m in result.messages if m.startswith("quantization-aware training from step")]
    assert switch and int(switch[0].rsplit(" ", 1)[1]) == result.plan.quantization_delay
    fits = [int(m.split(" steps")[0].rsplit(" ", 1)[1]) for m in result.messages if "fitted" in m]
    assert len(fits) == 2
    # The first fit (float speed) put QAT at half its steps; the refit after the slower QAT steps keeps that step.
    assert result.plan.quantization_delay == round(0.5 * fits[0]) and fits[1] == result.plan.num_steps
    history = MetricsHistory.read(tmp_path / "budget" / HISTORY_FILE)
    last_rate = history.losses[-1].learning_rate
    assert last_rate < 0.05 * result.plan.learning_rate_base  # the cosine schedule ran to its end


@pytest.mark.parametrize(
    "delay, fitted, expected", [(520, 60, 31), (850, 600, 510), (100, 600, 60), (0, 50, 0)]
)
def test_a_fitted_schedule_keeps_the_configs_share_of_float_training_before_qat(delay, fitted, expected):
    """``--steps``/``--time-budget`` scale the config's own QAT delay (a user's edit is kept), never a constant."""
    cfg = PipelineConfig(
        train=TrainSettings(num_steps=1000, total_steps=1000, warmup_steps=50),
        quantization=QuantizationSettings(delay=delay),
    )
    plan = loop.TrainPlan(
        batch_size=8,
        num_steps=1000,
        total_steps=1000,
        warmup_steps=50,
        learning_rate_base=0.01,
        warmup_learning_rate=0.001,
        quantization_delay=delay,
    )
    plan.fit_to_steps(fitted, cfg)
    assert (plan.num_steps, plan.quantization_delay) == (fitted, expected)
    assert plan.warmup_steps == round(50 * fitted / 1000)


# --- Fine-tuning from one of our own checkpoints -------------------------------------------------------------------

FINE_TUNE_CLASSES = 4


def _class_predictor_paths(model) -> set[str]:
    from spaghettinet.model.head import BoxPredictor

    return {
        v.path
        for layer in model.layers
        if isinstance(layer, BoxPredictor)
        for v in layer.class_predictor.variables
    }


def _fine_tune_config(
    run, num_classes: int, checkpoint, checkpoint_type: str = "detection"
) -> PipelineConfig:
    cfg = run["cfg"]
    label_map = run["dir"].parent / f"label_map_{num_classes}.pbtxt"
    label_map.write_text("".join(f'item {{ id: {i} name: "c{i}" }}\n' for i in range(1, num_classes + 1)))
    return cfg.replace(
        model=dataclasses.replace(cfg.model, num_classes=num_classes),
        train=dataclasses.replace(
            cfg.train, fine_tune_checkpoint=str(checkpoint), fine_tune_checkpoint_type=checkpoint_type
        ),
        train_input=dataclasses.replace(cfg.train_input, label_map_path=label_map.name),
        eval_input=dataclasses.replace(cfg.eval_input, label_map_path=label_map.name),
    )


@pytest.fixture(scope="module")
def fine_tune(run):
    """A fresh 4-class model with its initial values, and the variables of the 2-class source ckpt-6 by path."""
    from spaghettinet.model.detector import build_detector

    source_prefix = run["dir"] / f"ckpt-{NUM_STEPS}"
    source, _, _ = restore_detector(run["cfg"], source_prefix)
    model = build_detector("s", FINE_TUNE_CLASSES, input_size=run["cfg"].model.input_size)
    return {
        "prefix": source_prefix,
        "source": {v.path: v.numpy().copy() for v in source.variables},
        "model": model,
        "initial": {v.path: v.numpy().copy() for v in model.variables},
    }


def _fresh(fine_tune):
    """The shared 4-class model, put back to its initial values."""
    model = fine_tune["model"]
    for variable in model.variables:
        variable.assign(fine_tune["initial"][variable.path])
    return model


def test_fine_tune_to_other_classes_restores_all_but_the_class_predictor(run, fine_tune):
    model = _fresh(fine_tune)
    source, initial = fine_tune["source"], fine_tune["initial"]
    class_head = _class_predictor_paths(model)
    assert len(class_head) == 10  # 1x1 kernel + bias on each of the five feature maps

    note = loop._fine_tune(model, _fine_tune_config(run, FINE_TUNE_CLASSES, fine_tune["prefix"]))

    changed = 0
    for variable in model.variables:
        value = variable.numpy()
        if variable.path in class_head:
            assert value.shape != source[variable.path].shape
            np.testing.assert_array_equal(value, initial[variable.path])  # left as freshly initialised
        else:
            np.testing.assert_array_equal(value, source[variable.path])
            changed += not np.array_equal(value, initial[variable.path])
    assert (
        changed > 300
    )  # the source really differs from a fresh model, so the equalities above mean something
    restored = len(model.variables) - len(class_head)
    assert f"restored {restored} variables" in note
    assert f"kept fresh: class predictor ({FINE_TUNE_CLASSES} classes here, 2 in the checkpoint)" in note
    assert str(fine_tune["prefix"]) in note


def test_fine_tune_with_the_same_classes_restores_every_model_variable(run, fine_tune):
    # A model trained 3 steps takes the weights of step 6 (the range EMAs included), nothing kept fresh.
    model, _, _ = restore_detector(run["cfg"], run["dir"] / f"ckpt-{INTERRUPT_AT}")
    cfg = run["cfg"].replace(
        train=dataclasses.replace(run["cfg"].train, fine_tune_checkpoint=str(fine_tune["prefix"]))
    )
    note = loop._fine_tune(model, cfg)
    for variable in model.variables:
        np.testing.assert_array_equal(variable.numpy(), fine_tune["source"][variable.path])
    assert f"restored {len(model.variables)} variables" in note and "kept fresh" not in note


def test_fine_tune_backbone_only_keeps_the_whole_head_fresh(run, fine_tune):
    model = _fresh(fine_tune)
    source, initial = fine_tune["source"], fine_tune["initial"]
    cfg = _fine_tune_config(run, FINE_TUNE_CLASSES, run["dir"], checkpoint_type="classification")

    note = loop._fine_tune(model, cfg)  # a model directory means its latest checkpoint, ckpt-6

    head = [
        v
        for v in model.variables
        if v.path.startswith("BoxPredictor_") or v.path.split("/")[0] in ("box_encodings", "class_logits")
    ]
    head_paths = {v.path for v in head}
    for variable in model.variables:
        expected = initial if variable.path in head_paths else source
        np.testing.assert_array_equal(variable.numpy(), expected[variable.path])
    box_kernel = next(v for v in head if "BoxEncodingPredictor/weights" in v.path)
    assert not np.array_equal(box_kernel.numpy(), source[box_kernel.path])  # same shape, yet not loaded
    assert "(backbone only)" in note and f"the box-predictor head ({len(head)} variables)" in note


def test_fine_tune_backbone_only_from_a_tf1_checkpoint(tmp_path, run, fine_tune):
    from spaghettinet.model.tf1_checkpoint import tf1_variable_map

    # A TF1-style (name-keyed) checkpoint of the 2-class source, as the Object Detection API saves them.
    source_model, _, _ = restore_detector(run["cfg"], fine_tune["prefix"])
    tensors = {name: v.numpy() for name, v in tf1_variable_map(source_model).items()}
    prefix = str(tmp_path / "model.ckpt-7")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(t) for t in tensors.values()],
    )
    model = _fresh(fine_tune)
    note = loop._fine_tune(model, _fine_tune_config(run, FINE_TUNE_CLASSES, prefix, "classification"))

    head = 0
    for name, variable in tf1_variable_map(model).items():
        backbone = name.startswith("FeatureExtractor/")
        head += not backbone
        expected = tensors[name] if backbone else fine_tune["initial"][variable.path]
        np.testing.assert_array_equal(variable.numpy(), expected)
    assert head == 70  # 5 maps x 14: two depthwise convs with BN, two 1x1 predictors
    assert f"box-predictor head kept fresh (backbone only, {head} variables)" in note


def test_fine_tune_from_another_variant_is_a_data_error_naming_the_checkpoint(run, fine_tune):
    from spaghettinet.model.detector import build_detector

    model = build_detector("m", 2, input_size=run["cfg"].model.input_size)
    before = [v.numpy().copy() for v in model.trainable_variables[:5]]
    cfg = _fine_tune_config(run, 2, fine_tune["prefix"]).replace(
        model=dataclasses.replace(run["cfg"].model, variant="m")
    )
    with pytest.raises(DataError, match=r"ckpt-6.*does not fit this SpaghettiNet-M.*another variant"):
        loop._fine_tune(model, cfg)
    for old, variable in zip(before, model.trainable_variables[:5], strict=True):
        np.testing.assert_array_equal(old, variable.numpy())  # nothing half-loaded


def test_fine_tune_box_predictor_mismatch_is_a_data_error(tmp_path, run, fine_tune):
    from spaghettinet.training.checkpoints import _checkpoint_keys

    # A copy of ckpt-6 whose first box predictor has 5 anchors per location instead of 3 (20 outputs, not 12).
    model = _fresh(fine_tune)
    reader = tf.train.load_checkpoint(str(fine_tune["prefix"]))
    keys = _checkpoint_keys(reader, model)  # the keys follow the object graph (often through the optimizer)
    box = model.get_layer("BoxPredictor_0").box_predictor
    patched = {keys[id(v)] for v in box.variables}
    tensors = {}
    for key in reader.get_variable_to_shape_map():
        value = reader.get_tensor(key)
        if key in patched:
            assert value.shape[-1] == 12
            value = np.zeros([*value.shape[:-1], 20], value.dtype)
        tensors[key] = value
    prefix = str(tmp_path / "ckpt-9")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(t) for t in tensors.values()],
    )
    with pytest.raises(
        DataError, match=r"ckpt-9.*box predictor BoxPredictor_0/\S+ has shape \[.*20\] .* but \[.*12\] here"
    ):
        loop._fine_tune(model, _fine_tune_config(run, FINE_TUNE_CLASSES, prefix))
    for variable in model.variables:  # nothing half-loaded
        np.testing.assert_array_equal(variable.numpy(), fine_tune["initial"][variable.path])


def test_fine_tune_cli_run_starts_at_step_zero_with_a_fresh_optimizer_and_an_auto_batch(
    tmp_path, run, fine_tune, monkeypatch, capsys
):
    """``train --batch-size auto`` fine-tuning the 2-class ckpt-6 (step 6, QAT on, 6 optimizer iterations) into
    4 classes: none of that state carries over, the chosen batch size and what was kept fresh are printed."""
    import re

    from spaghettinet.cli import main
    from spaghettinet.pipeline_config import write_config

    source = tf.train.load_checkpoint(str(fine_tune["prefix"]))
    assert int(source.get_tensor("quantization_aware/.ATTRIBUTES/VARIABLE_VALUE")) == 1
    # No graph_rewriter: QAT can only be on in the new run if the source's flag came with the weights.
    cfg = _fine_tune_config(run, FINE_TUNE_CLASSES, fine_tune["prefix"]).replace(quantization=None)
    config_path = write_config(cfg, run["dir"].parent / "pipeline_fine_tune.config")
    real_train = loop.train  # the CLI's train without the final COCO evaluation (slow, not the point here)
    monkeypatch.setattr(loop, "train", lambda *a, **k: real_train(*a, **{**k, "evaluate_at_end": False}))
    model_dir = tmp_path / "tuned"

    with pytest.raises(SystemExit) as exit_info:
        args = [
            "--config",
            str(config_path),
            "--model-dir",
            str(model_dir),
            "--batch-size",
            "auto",
            "--steps",
            "2",
        ]
        main(["train", *args])
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())  # undo the console's line wrapping
    assert exit_info.value.code == 0, output

    assert f"kept fresh: class predictor ({FINE_TUNE_CLASSES} classes here, 2 in the checkpoint)" in output
    match = re.search(r"batch size (\d+) \((.*?)\) step 2/2", output)  # the last note, then progress
    assert match, output
    chosen, reason = int(match.group(1)), match.group(2)
    assert 1 <= chosen <= 5  # never more than the 5 training images
    assert "MiB per image measured" in reason  # the CPU rule's choice, not the config's batch of 2
    assert json.loads((model_dir / loop.STATE_FILE).read_text())["batch_size"] == chosen

    prefix = latest_checkpoint(model_dir)
    reader = tf.train.load_checkpoint(prefix)
    names = [name for name, _ in tf.train.list_variables(prefix)]
    iterations = next(n for n in names if n.startswith("optimizer/") and "iteration" in n)
    assert int(reader.get_tensor(iterations)) == 2
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 2
    assert int(reader.get_tensor("quantization_aware/.ATTRIBUTES/VARIABLE_VALUE")) == 0
    model, step, qat = restore_detector(cfg, model_dir)
    assert step == 2 and not qat and model.num_classes == FINE_TUNE_CLASSES
