"""train_state.json: what a resume reads back, old files included, and a clear error for anything else."""

from __future__ import annotations

import dataclasses
import json

import pytest

from spaghettinet.errors import DataError
from spaghettinet.training.plan import STATE_FILE, TrainPlan

PLAN = TrainPlan(
    batch_size=8,
    num_steps=900,
    total_steps=900,
    warmup_steps=45,
    learning_rate_base=2e-3,
    warmup_learning_rate=2e-4,
    quantization_delay=765,
    time_budget_s=1200.0,
    measured_seconds_per_step=1.3,
)


def test_a_written_plan_reads_back_equal(tmp_path):
    path = PLAN.write(tmp_path / STATE_FILE)
    assert json.loads(path.read_text())["version"] == 1
    assert TrainPlan.read(path) == PLAN


def test_a_plan_written_before_versions_still_resumes(tmp_path):
    path = tmp_path / STATE_FILE
    path.write_text(json.dumps(dataclasses.asdict(PLAN)))  # the first format: the fields, no version
    assert TrainPlan.read(path) == PLAN


def test_no_file_is_no_plan(tmp_path):
    assert TrainPlan.read(tmp_path / STATE_FILE) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.pop("batch_size"), "missing 'batch_size'"),
        (lambda d: d.update(steps_per_epoch=3), "unknown 'steps_per_epoch'"),
        (lambda d: d.update(batch_size="8"), "batch_size is '8'"),
        (lambda d: d.update(quantization_delay=True), "quantization_delay is True"),
        (lambda d: d.update(version=7), "format version 7"),
    ],
)
def test_a_state_file_not_written_by_this_version_is_named(tmp_path, change, reason):
    data = PLAN.to_dict()
    change(data)
    path = tmp_path / STATE_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=reason) as caught:
        TrainPlan.read(path)
    assert str(path) in str(caught.value)


def test_a_broken_state_file_is_named(tmp_path):
    path = tmp_path / STATE_FILE
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as JSON") as caught:
        TrainPlan.read(path)
    assert str(path) in str(caught.value)
