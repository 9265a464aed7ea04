"""The whole chain in one call: ``run`` (a labelled folder → an int8 model and a report) and ``demo``.

The folder holds Pascal VOC, COCO JSON or YOLO labels, detected from its files or forced with ``format`` (see
:mod:`spaghettinet.data.formats`); validation reads each into the same records and the split writes the seed's VOC
layout, so every later stage is the same for all three.

:func:`run` goes through the stages of :data:`STAGES` in order, in the seed's workdir layout::

    W/images/train, W/images/test, W/images/{train,test}_labels.csv, W/images/split.json, W/images/validation.json
    W/training/label_map.pbtxt, W/training/pipeline.config, W/training/{train,test}.record
    W/training/training-output/   (checkpoints, metrics_history.json, eval.json)
    W/exported/                   (model_int8.tflite, model_float.tflite, model_fp16.tflite, labels.txt, export_report.json,
                                   latency.json, model_card.md)
    W/report/                     (index.html, report.md and its figures)

A stage is skipped when it finished before (recorded in ``W/.spaghettinet/stages.json`` with the settings it ran
with), all its outputs exist, and none of its inputs is newer than its oldest output. So a rerun after an
interruption continues with the first unfinished stage, a change of the data (a new or edited photo or xml) redoes
the split and everything after it, and a change of settings (variant, input size, steps) redoes the config and
what follows. Training itself resumes from its latest checkpoint unless the pipeline config changed since that
training started, in which case it starts afresh and the old training is moved aside, never deleted
(``training-output.<time>/``).

Where training starts is chosen by the config stage (:func:`spaghettinet.model.pretrained.choose_start`): the TF1
zoo's COCO checkpoint of the variant by default (cached, downloaded once), a checkpoint given with
``fine_tune_from``, or random weights with ``from_scratch``; the choice is one of the config stage's settings, and
what it gave is kept in ``W/.spaghettinet/start.json`` for the report.

A pair with a validation error (a truncated photo, a broken xml...) is left out and the run goes on, as Ultralytics
and Model Maker users expect: each is listed with its reason in the log, in ``images/validation.json`` (``excluded``)
and in the report's dataset section, and their count ends the run's summary. The user's files are never touched.
The run still stops at validation, with the list, when ``strict`` is set, when no valid pair is left, or when more
than :data:`MAX_EXCLUDED_SHARE` of the images would be left out (a folder that broken needs a look, not a model).

The package: :mod:`~spaghettinet.workflow.engine` decides what is up to date and runs a table of stages,
:mod:`~spaghettinet.workflow.stages` holds that table and each stage's action, :mod:`~spaghettinet.workflow.settings`
what a run was asked for, :mod:`~spaghettinet.workflow.runner` ``run`` and ``demo``.
"""

from spaghettinet.workflow.engine import (
    STATE_DIR,
    Stage,
    StageOutcome,
    newest_change_ns,
    oldest_output_ns,
    read_stamps,
    stage_is_current,
)
from spaghettinet.workflow.runner import RunResult, demo, run, run_settings
from spaghettinet.workflow.settings import LATENCY_RUNS, START_FILE, RunSettings
from spaghettinet.workflow.stages import MAX_EXCLUDED_SHARE, STAGE_NAMES, STAGES, write_run_report

__all__ = [
    "LATENCY_RUNS",
    "MAX_EXCLUDED_SHARE",
    "STAGES",
    "STAGE_NAMES",
    "STATE_DIR",
    "START_FILE",
    "RunResult",
    "RunSettings",
    "Stage",
    "StageOutcome",
    "demo",
    "newest_change_ns",
    "oldest_output_ns",
    "read_stamps",
    "run",
    "run_settings",
    "stage_is_current",
    "write_run_report",
]
