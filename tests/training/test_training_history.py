"""metrics_history.json: the curves the report draws, old files included, and a clear error for anything else."""

from __future__ import annotations

import json

import pytest

from spaghettinet.errors import DataError
from spaghettinet.training.history import HISTORY_FILE, EvaluationRecord, LossRecord, MetricsHistory


def test_history_round_trip_and_resume_cut(tmp_path):
    history = MetricsHistory(
        [LossRecord(10, 2.0, 1e-3), LossRecord(20, 1.5, 2e-3), LossRecord(30, 1.2, 1e-3)],
        [EvaluationRecord(20, 0.3, None)],
    )
    path = history.write(tmp_path / HISTORY_FILE)
    again = MetricsHistory.read(path)
    assert again == history and again.last_step == 30 and again.evaluated_at(20)
    resumed = again.up_to(20)  # a run resumed from the step-20 checkpoint drops what came after it
    assert [r.step for r in resumed.losses] == [10, 20] and resumed.evaluations == history.evaluations


def test_a_history_of_the_first_format_still_loads(tmp_path):
    path = tmp_path / HISTORY_FILE
    path.write_text(
        json.dumps(
            [
                {"step": 10, "loss": 2.0, "learning_rate": 0.001},
                {"step": 10, "AP": 0.1, "AP50": 0.2},
            ]
        )
    )
    history = MetricsHistory.read(path)
    assert history.losses == [LossRecord(10, 2.0, 0.001)]
    assert history.evaluations == [EvaluationRecord(10, 0.1, 0.2)]


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"version": 1, "losses": [{"step": 1, "loss": 1.0}], "evaluations": []}, "missing 'learning_rate'"),
        ({"version": 1, "losses": [], "evaluations": [{"step": 1, "mAP": 0.5}]}, "unknown 'mAP'"),
        (
            {"version": 1, "losses": [{"step": -1, "loss": 1.0, "learning_rate": 0.1}], "evaluations": []},
            "step -1",
        ),
        ({"version": 2, "losses": [], "evaluations": []}, "format version 2"),
        ("loss", "not a JSON object"),
    ],
)
def test_a_history_nothing_wrote_is_named(tmp_path, payload, reason):
    path = tmp_path / HISTORY_FILE
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match=reason) as caught:
        MetricsHistory.read(path)
    assert str(path) in str(caught.value)


def test_no_file_is_an_empty_history(tmp_path):
    assert MetricsHistory.read(tmp_path / HISTORY_FILE) == MetricsHistory()
