"""The rebuild engine of ``run``: stages with inputs, outputs and settings, and when a stage is up to date.

A stage counts as done when it finished before with the same settings (recorded in ``W/.spaghettinet/stages.json``),
all its outputs exist, and none of its inputs changed after its oldest output, as ``make`` judges a target by its
prerequisites' times. :func:`run_stages` goes through a table of stages in order, skipping those that are done.
Nothing here knows what a stage does: the table is :data:`spaghettinet.workflow.stages.STAGES`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaghettinet.errors import SpaghettiError
from spaghettinet.io_utils import write_text_atomic

STATE_DIR = ".spaghettinet"
STAMPS_FILE = "stages.json"


@dataclass(frozen=True)
class Stage:
    """One step of the chain.

    Attributes:
        name: what users see (``split``, ``train``, ...).
        inputs: files/folders whose change makes the stage stale.
        outputs: what it writes; all must exist for the stage to count as done.
        params: the settings it depends on (a change makes it stale).
        action: does the work; returns one line for the summary.

    Each callable takes the run's settings (a :class:`~spaghettinet.workflow.settings.RunSettings`); ``action``
    also takes the log function.
    """

    name: str
    inputs: Callable[[Any], list[Path]]
    outputs: Callable[[Any], list[Path]]
    params: Callable[[Any], dict]
    action: Callable[[Any, Callable[[str], None]], str]


@dataclass
class StageOutcome:
    """What happened to one stage in a run: ``ran``, ``skipped`` (up to date) or ``interrupted``."""

    name: str
    status: str
    seconds: float = 0.0
    summary: str = ""


class StageInterrupted(Exception):
    """Raised by a stage action that stopped part-way on purpose (Ctrl-C in training); rerunning continues it."""


@dataclass
class StagesRun:
    """What :func:`run_stages` did: one outcome per stage reached, and whether a stage was interrupted."""

    outcomes: list[StageOutcome] = field(default_factory=list)
    interrupted: bool = False


def newest_change_ns(paths: Sequence[Path]) -> int:
    """Latest modification time (ns) of the given files and of everything inside the given folders.

    A folder's own time counts too: deleting a photo changes only its folder's time. Missing paths are ignored.
    """
    newest = 0
    for path in paths:
        if not path.exists():
            continue
        newest = max(newest, path.stat().st_mtime_ns)
        if path.is_dir():
            for root, folders, files in os.walk(path):
                for name in folders + files:
                    try:
                        newest = max(newest, (Path(root) / name).stat().st_mtime_ns)
                    except FileNotFoundError:  # removed while walking
                        continue
    return newest


def oldest_output_ns(paths: Sequence[Path]) -> int | None:
    """Earliest modification time (ns) of the outputs themselves, or None if one is missing.

    Only the path's own time is used: a split folder's files are hard links that keep the photos' old times.
    """
    times = []
    for path in paths:
        if not path.exists():
            return None
        times.append(path.stat().st_mtime_ns)
    return min(times) if times else None


def _stamps_path(workdir: Path) -> Path:
    return workdir / STATE_DIR / STAMPS_FILE


def read_stamps(workdir: Path) -> dict:
    """The record of finished stages (``{name: {"params": ..., "finished_ns": ...}}``); empty if unreadable."""
    path = _stamps_path(workdir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_stamps(workdir: Path, stamps: dict) -> None:
    """Replace the record of finished stages (atomically: an interrupted write leaves the old record)."""
    write_text_atomic(_stamps_path(workdir), json.dumps(stamps, indent=2, sort_keys=True) + "\n")


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str, sort_keys=True))


def stage_is_current(stage: Stage, settings, stamps: dict) -> bool:
    """True when ``stage`` finished before with the same settings, its outputs exist and no input is newer."""
    stamp = stamps.get(stage.name)
    if not isinstance(stamp, dict) or stamp.get("params") != _jsonable(stage.params(settings)):
        return False
    oldest = oldest_output_ns(stage.outputs(settings))
    if oldest is None:
        return False
    return newest_change_ns(stage.inputs(settings)) <= oldest


def run_stages(
    stages: Sequence[Stage],
    settings,
    workdir: Path,
    until: str | None = None,
    force: Sequence[str] = (),
    log: Callable[[str], None] = lambda line: None,
) -> StagesRun:
    """Run each stage that is not up to date, in order, recording the finished ones in ``workdir``'s stamps.

    Args:
        stages: the table, in dependency order.
        settings: passed to every stage callable.
        workdir: where the stamps are kept.
        until: stop after this stage.
        force: stages to run even if up to date (their dependants follow: their inputs are then newer).
        log: called with one line per stage start, skip and result.

    Returns:
        :class:`StagesRun`. A stage that raises :class:`StageInterrupted` ends the run there.

    Raises:
        SpaghettiError: a stage's error, after its stamp is removed (so the next run does it again).
    """
    stamps = read_stamps(workdir)
    done = StagesRun()
    for stage in stages:
        if stage.name not in force and stage_is_current(stage, settings, stamps):
            log(f"{stage.name}: up to date, skipped")
            done.outcomes.append(StageOutcome(stage.name, "skipped"))
        else:
            log(f"{stage.name}: running")
            started = time.monotonic()
            try:
                summary = stage.action(settings, log)
            except StageInterrupted as exc:
                log(str(exc))
                done.outcomes.append(
                    StageOutcome(stage.name, "interrupted", time.monotonic() - started, str(exc))
                )
                done.interrupted = True
                break
            except SpaghettiError:
                stamps.pop(stage.name, None)
                write_stamps(workdir, stamps)
                raise
            seconds = time.monotonic() - started
            stamps[stage.name] = {"params": _jsonable(stage.params(settings)), "finished_ns": time.time_ns()}
            write_stamps(workdir, stamps)
            log(f"{stage.name}: done in {seconds:.1f} s: {summary}")
            done.outcomes.append(StageOutcome(stage.name, "ran", seconds, summary))
        if stage.name == until:
            break
    return done
