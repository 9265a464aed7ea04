"""Weight averaging (``use_moving_average``): the EMA rule with the dynamic decay, swapping the averages in for an
evaluation, and a real training run whose checkpoint gives its averaged weights to ``restore_detector`` when the
config asks for them (and its trained weights when it does not)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_training_inputs import _example  # noqa: E402  (tiny TFRecord examples)

from spaghettinet.model.detector import build_detector  # noqa: E402
from spaghettinet.pipeline_config.settings import (  # noqa: E402
    EvalSettings,
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    TrainSettings,
)
from spaghettinet.tf_runtime import import_tensorflow  # noqa: E402
from spaghettinet.training.checkpoints import restore_detector  # noqa: E402
from spaghettinet.training.loop import train  # noqa: E402
from spaghettinet.training.weight_averaging import WeightAverages, averaged_variables, dynamic_decay  # noqa: E402

tf = import_tensorflow()


def test_dynamic_decay_follows_the_weights_early_and_is_capped_by_the_configured_decay():
    assert float(dynamic_decay(0, 0.9999)) == pytest.approx(0.1)
    assert float(dynamic_decay(90, 0.9999)) == pytest.approx(91 / 100)
    assert float(dynamic_decay(100_000, 0.99)) == pytest.approx(0.99)


@pytest.fixture(scope="module")
def small_model():
    return build_detector("s", 2, input_size=(64, 64))


def test_averages_cover_weights_and_batch_norm_statistics_but_not_quantization_ranges(small_model):
    paths = [variable.path for variable in averaged_variables(small_model)]
    assert len(paths) > len(small_model.trainable_variables)
    assert any(path.endswith("moving_mean") for path in paths)
    assert not any(path.endswith(("/min", "/max", "range_steps")) for path in paths)


def test_update_applies_the_moving_average_formula_and_swap_restores_the_trained_weights(small_model):
    averages = WeightAverages(small_model, decay=0.9999)
    variable = small_model.trainable_variables[0]
    before = np.array(variable.numpy())
    variable.assign(before + 1.0)
    averages.update(5)  # dynamic decay at step 5: 6/15
    decay = 6 / 15
    shadow = averages.shadows[averaged_variables(small_model).index(variable)]
    np.testing.assert_allclose(shadow.numpy(), decay * before + (1 - decay) * (before + 1.0), rtol=1e-6)

    with averages.swapped_in():
        np.testing.assert_allclose(variable.numpy(), shadow.numpy())
    np.testing.assert_allclose(variable.numpy(), before + 1.0)


def _config(folder: Path, use_averages: bool) -> PipelineConfig:
    reader = InputReaderSettings(label_map_path="label_map.pbtxt", input_paths=["train.record"])
    train_settings = TrainSettings(
        batch_size=2,
        num_steps=3,
        total_steps=3,
        warmup_steps=0,
        learning_rate_base=0.05,
        max_number_of_boxes=4,
        use_moving_average=True,
        moving_average_decay=0.9999,
    )
    return PipelineConfig(
        model=ModelSettings(num_classes=2, variant="s", input_size=(64, 64)),
        train=train_settings,
        train_input=reader,
        eval_input=dataclasses.replace(reader, shuffle=False),
        eval=EvalSettings(use_moving_averages=use_averages),
        path=folder / "pipeline.config",
    )


def test_a_run_with_averages_evaluates_and_restores_the_averaged_weights(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "train.record")) as writer:
        for index in range(4):
            writer.write(_example(index, with_object=True))
    (tmp_path / "label_map.pbtxt").write_text('item { id: 1 name: "a" }\nitem { id: 2 name: "b" }\n')
    config = _config(tmp_path, use_averages=True)
    result = train(config, tmp_path / "model", evaluate_at_end=False, show_progress=False)
    assert result.step == 3

    reader = tf.train.load_checkpoint(result.checkpoint)
    stored = {name for name in reader.get_variable_to_shape_map() if name.startswith("averages/")}
    assert stored, "the checkpoint holds no weight averages"

    averaged, _, _ = restore_detector(config, result.checkpoint)
    trained, _, _ = restore_detector(_config(tmp_path, use_averages=False), result.checkpoint)
    differing = [
        a.path
        for a, t in zip(averaged.trainable_variables, trained.trainable_variables, strict=True)
        if not np.allclose(a.numpy(), t.numpy())
    ]
    # Three steps with decays 0.1, 2/11, 3/12: the averages lag the weights everywhere the gradient reached.
    assert len(differing) > len(trained.trainable_variables) // 2
    first_shadow = reader.get_tensor("averages/shadows/0/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_allclose(averaged_variables(averaged)[0].numpy(), first_shadow)
