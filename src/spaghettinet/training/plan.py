"""``train_state.json``: what a model directory's training does (batch size, schedule, QAT start, seed).

Decided once, when training starts in an empty model directory (from the config, the chosen batch size and a time
budget), saved, and reused on every resume so that a rerun continues the same schedule. No TensorFlow here: the
report reads the file without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import check_object, check_version, read_json_file

STATE_FILE = "train_state.json"
#: Format version (0: the first files, the same fields without ``version``).
PLAN_VERSION = 1
_START_OVER = "; it was not written by this spaghettinet: delete it to start the training over"
#: The JSON types each annotation of :class:`TrainPlan` accepts.
_FIELD_KINDS = {
    "int": ("int",),
    "float": ("float",),
    "str": ("str",),
    "int | None": ("int", "None"),
    "float | None": ("float", "None"),
}


@dataclass
class TrainPlan:
    """What this model directory's training does; saved as ``train_state.json`` and reused on resume.

    Attributes:
        batch_size: global batch size.
        num_steps: step at which training ends.
        total_steps: cosine schedule length.
        warmup_steps / learning_rate_base / warmup_learning_rate / hold_base_rate_steps: the schedule.
        quantization_delay: step at which QAT starts, or None (no ``graph_rewriter``).
        seed: data order and augmentation seed.
        time_budget_s: the budget the schedule was fitted to, if any.
        measured_seconds_per_step: the speed used for that fit.
        batch_size_reason: why this batch size.

    Example:
        >>> plan = TrainPlan(batch_size=8, num_steps=1000, total_steps=1000, warmup_steps=50,
        ...                  learning_rate_base=2e-3, warmup_learning_rate=2e-4, quantization_delay=850)
        >>> TrainPlan.from_dict(plan.to_dict()) == plan
        True
    """

    batch_size: int
    num_steps: int
    total_steps: int
    warmup_steps: int
    learning_rate_base: float
    warmup_learning_rate: float
    hold_base_rate_steps: int = 0
    quantization_delay: int | None = None
    seed: int = 0
    time_budget_s: float | None = None
    measured_seconds_per_step: float | None = None
    batch_size_reason: str = "from the pipeline config"

    def fit_to_steps(self, steps: int, config, keep_quantization_delay: bool = False) -> None:
        """Scale the schedule and QAT delay to ``steps`` the way the config scales them to its own length.

        Args:
            steps: the new length of the run.
            config: the pipeline config whose schedule is scaled.
            keep_quantization_delay: leave the QAT delay where it is (a refit after the switch has happened).
        """
        train = config.train
        steps = max(1, int(steps))
        reference_total = max(1, int(train.total_steps or train.num_steps or steps))
        self.num_steps = steps
        self.total_steps = steps
        self.warmup_steps = min(steps, max(0, round(train.warmup_steps * steps / reference_total)))
        self.hold_base_rate_steps = min(
            steps - self.warmup_steps, round(train.hold_base_rate_steps * steps / reference_total)
        )
        if config.quantization is not None and not keep_quantization_delay:
            # The config's own delay, scaled with the schedule: a user who moved it keeps its share of the run.
            share = min(1.0, max(0.0, int(config.quantization.delay) / reference_total))
            self.quantization_delay = min(steps, int(round(share * steps)))

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> TrainPlan:
        """Read a ``train_state.json`` payload (version 0: the same fields without ``version``).

        Raises:
            DataError: a missing or unknown field, a value of the wrong type, a newer format; naming ``source``.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"{STATE_FILE} is not a JSON object{_START_OVER}", source)
        version = check_version(data, STATE_FILE, PLAN_VERSION, source)
        names = {item.name: item for item in fields(cls)}
        required = [name for name, item in names.items() if item.default is MISSING]
        optional = [name for name in names if name not in required] + ["version"]
        if version:
            required.append("version")
        try:
            check_object(data, STATE_FILE, required, optional, source)
        except DataError as exc:
            raise DataError(exc.message + _START_OVER, source) from None
        values = {}
        for name, item in names.items():
            if name not in data:
                continue
            value = data[name]
            kinds = _FIELD_KINDS[str(item.type)]
            if value is None and "None" in kinds:
                values[name] = None
            elif "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
                values[name] = value
            elif "float" in kinds and isinstance(value, int | float) and not isinstance(value, bool):
                values[name] = float(value)
            elif "str" in kinds and isinstance(value, str):
                values[name] = value
            else:
                raise DataError(
                    f"{STATE_FILE}: {name} is {value!r}, not of type {item.type}{_START_OVER}", source
                )
        return cls(**values)

    @classmethod
    def read(cls, path: str | Path) -> TrainPlan | None:
        """The plan saved at ``path``; None when there is none yet."""
        if not Path(path).is_file():
            return None
        return cls.from_dict(read_json_file(path), path)

    def write(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def learning_rate(self, step: int) -> float:
        """The learning rate at ``step`` (cosine decay with linear warmup)."""
        from spaghettinet.training.schedule import cosine_decay_with_warmup

        return float(
            cosine_decay_with_warmup(
                step,
                learning_rate_base=self.learning_rate_base,
                total_steps=self.total_steps,
                warmup_learning_rate=self.warmup_learning_rate,
                warmup_steps=self.warmup_steps,
                hold_base_rate_steps=self.hold_base_rate_steps,
            )
        )
