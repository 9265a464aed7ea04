"""``metrics_history.json``: the loss and learning rate by step, and the evaluations made during training.

Training appends a :class:`LossRecord` every ``log_every`` steps and an :class:`EvaluationRecord` after each
evaluation, and rewrites the file with every checkpoint; the report draws its curves from it. No TensorFlow here:
the report reads the file without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import check_object, check_version, number_or_none, read_json_file

HISTORY_FILE = "metrics_history.json"
#: Format version (0: the first files, one JSON list mixing loss and evaluation records).
HISTORY_VERSION = 1


@dataclass(frozen=True)
class LossRecord:
    """The total loss and the learning rate at a step."""

    step: int
    loss: float
    learning_rate: float

    def to_dict(self) -> dict:
        return {"step": self.step, "loss": self.loss, "learning_rate": self.learning_rate}


@dataclass(frozen=True)
class EvaluationRecord:
    """The COCO AP and AP50 of an evaluation during training (None where COCO has no value)."""

    step: int
    ap: float | None
    ap50: float | None

    def to_dict(self) -> dict:
        return {"step": self.step, "AP": self.ap, "AP50": self.ap50}


@dataclass
class MetricsHistory:
    """Everything ``metrics_history.json`` holds, in step order.

    Example:
        >>> history = MetricsHistory()
        >>> history.losses.append(LossRecord(10, 2.5, 0.002))
        >>> MetricsHistory.from_dict(history.to_dict()).last_step
        10
    """

    losses: list[LossRecord] = field(default_factory=list)
    evaluations: list[EvaluationRecord] = field(default_factory=list)

    @property
    def last_step(self) -> int | None:
        steps = [record.step for record in (*self.losses, *self.evaluations)]
        return max(steps) if steps else None

    def evaluated_at(self, step: int) -> bool:
        return any(record.step == step for record in self.evaluations)

    def up_to(self, step: int) -> MetricsHistory:
        """The records up to ``step`` (a resumed run drops what came after its checkpoint)."""
        return MetricsHistory(
            [record for record in self.losses if record.step <= step],
            [record for record in self.evaluations if record.step <= step],
        )

    def to_dict(self) -> dict:
        return {
            "version": HISTORY_VERSION,
            "losses": [record.to_dict() for record in self.losses],
            "evaluations": [record.to_dict() for record in self.evaluations],
        }

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> MetricsHistory:
        """Read a ``metrics_history.json`` payload (version 0, a plain list of records, included).

        Raises:
            DataError: a record or field nothing writes, a value of the wrong type, a newer format; the message
                names ``source``.
        """
        what = Path(source).name if source is not None else HISTORY_FILE
        if isinstance(data, list):  # version 0
            history = cls()
            for record in data:
                if isinstance(record, Mapping) and "loss" in record:
                    history.losses.append(_loss_record(record, what, source))
                else:
                    history.evaluations.append(_evaluation_record(record, what, source))
            return history
        if not isinstance(data, Mapping):
            raise DataError(f"{what} is not a JSON object", source)
        check_version(data, what, HISTORY_VERSION, source)
        check_object(data, what, ("version", "losses", "evaluations"), source=source)
        for key in ("losses", "evaluations"):
            if not isinstance(data[key], list):
                raise DataError(f"{what}: {key} is not a list", source)
        return cls(
            [_loss_record(record, what, source) for record in data["losses"]],
            [_evaluation_record(record, what, source) for record in data["evaluations"]],
        )

    @classmethod
    def read(cls, path: str | Path) -> MetricsHistory:
        """Read ``path``; a missing file is an empty history."""
        if not Path(path).is_file():
            return cls()
        return cls.from_dict(read_json_file(path), path)

    def write(self, path: str | Path) -> Path:
        """Write atomically (readers never see half a file)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")


def _step(record: Mapping, what: str, source) -> int:
    step = record["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DataError(f"{what}: step {step!r} is not a step number", source)
    return step


def _loss_record(record: object, what: str, source) -> LossRecord:
    record = check_object(
        record, f"a loss record of {what}", ("step", "loss", "learning_rate"), source=source
    )
    loss = number_or_none(record["loss"], f"{what}: loss", source)
    rate = number_or_none(record["learning_rate"], f"{what}: learning_rate", source)
    if loss is None or rate is None:
        raise DataError(f"{what}: a loss record without its loss or learning rate", source)
    return LossRecord(_step(record, what, source), loss, rate)


def _evaluation_record(record: object, what: str, source) -> EvaluationRecord:
    record = check_object(record, f"an evaluation record of {what}", ("step", "AP", "AP50"), source=source)
    return EvaluationRecord(
        _step(record, what, source),
        number_or_none(record["AP"], f"{what}: AP", source),
        number_or_none(record["AP50"], f"{what}: AP50", source),
    )
