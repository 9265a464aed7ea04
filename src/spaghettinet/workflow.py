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
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from spaghettinet.data.problems import Problem
from spaghettinet.data.validation_file import VALIDATION_FILE, ValidationFile
from spaghettinet.errors import DataError, SpaghettiError, UsageError
from spaghettinet.io_utils import write_text_atomic

STATE_DIR = ".spaghettinet"
STAMPS_FILE = "stages.json"
START_FILE = "start.json"
CONFIG_HASH_FILE = ".workflow_config_sha256"
#: Timed runs per model in the latency stage (after 3 untimed ones).
LATENCY_RUNS = 30
#: Above this share of images left out by validation errors a run stops instead of going on without them.
MAX_EXCLUDED_SHARE = 1 / 3


@dataclass
class RunSettings:
    """Everything a run was asked for; each stage's stamp keeps the part it depends on.

    Attributes:
        data_dir: the folder of photos and ``.xml`` files (or photos only, with ``annotations``), or a COCO or
            YOLO dataset folder.
        workdir: the run's folder (the seed's layout is created inside).
        annotations: a separate folder of ``.xml`` files.
        format: ``voc``, ``coco`` or ``yolo``; None detects it from the folder.
        variant: SpaghettiNet-EdgeTPU ``s``, ``m`` or ``l``.
        input_size: side of the square model input.
        steps: training steps (default: scaled to the data size by ``config``).
        batch_size: training batch size (default: from the data size).
        time_budget: stop training when this wall-clock time is spent (``"20m"``, seconds).
        fine_tune_from: a checkpoint prefix to start from instead of the zoo's COCO checkpoint.
        from_scratch: start from random weights (no download).
        zoo_sha256: the sha256 the zoo tarball must have (default: ``$SPAGHETTINET_ZOO_SHA256_<V>``, else the
            hash recorded at its first download).
        test_fraction / seed: the split.
        quantize: ``auto`` (QAT when trained with it, else PTQ), ``qat``, ``ptq`` or ``none``.
        qat: train quantization-aware for the last 15 % of the steps (the config's ``graph_rewriter``); without
            it the int8 model comes from post-training quantization.
        calibration_images / check_images: export's PTQ calibration and check image counts (default: export's).
        latency_runs: timed runs per model in the latency stage.
        show_progress: training's progress bar on stderr.
        strict: stop at any validation error, as before this option existed; by default pairs with errors are
            left out (listed in the log, ``images/validation.json`` and the report) and the run goes on.

    Example:
        >>> RunSettings("photos", "work", time_budget="20m").model_dir
        PosixPath('work/training/training-output')
    """

    data_dir: Path
    workdir: Path
    annotations: Path | None = None
    format: str | None = None
    variant: str = "s"
    input_size: int = 320
    steps: int | None = None
    batch_size: int | None = None
    time_budget: str | float | None = None
    fine_tune_from: str | None = None
    from_scratch: bool = False
    zoo_sha256: str | None = None
    test_fraction: float = 0.2
    seed: int = 0
    quantize: str = "auto"
    qat: bool = True
    calibration_images: int | None = None
    check_images: int | None = None
    latency_runs: int = LATENCY_RUNS
    show_progress: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        # Callers pass strings and numbers as typed on a command line or in Python; keep one form.
        self.data_dir = Path(self.data_dir)
        self.workdir = Path(self.workdir)
        self.annotations = None if self.annotations is None else Path(self.annotations)
        self.input_size = int(self.input_size)
        self.fine_tune_from = None if self.fine_tune_from is None else str(self.fine_tune_from)
        self.from_scratch = bool(self.from_scratch)
        self.strict = bool(self.strict)

    # The seed's layout (the old TF1 recipe's folders), derived from the workdir.
    @property
    def images(self) -> Path:
        return self.workdir / "images"

    @property
    def training(self) -> Path:
        return self.workdir / "training"

    @property
    def model_dir(self) -> Path:
        return self.training / "training-output"

    @property
    def exported(self) -> Path:
        return self.workdir / "exported"

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    @property
    def label_map(self) -> Path:
        return self.training / "label_map.pbtxt"

    @property
    def config(self) -> Path:
        return self.training / "pipeline.config"

    @property
    def train_record(self) -> Path:
        return self.training / "train.record"

    @property
    def test_record(self) -> Path:
        return self.training / "test.record"

    @property
    def start_file(self) -> Path:
        return self.workdir / STATE_DIR / START_FILE

    @property
    def start_choice(self) -> str:
        """What was asked: ``"zoo"`` (the default), ``"scratch"`` or ``"checkpoint"`` (``fine_tune_from``)."""
        if self.fine_tune_from is not None:
            return "checkpoint"
        return "scratch" if self.from_scratch else "zoo"


@dataclass(frozen=True)
class Stage:
    """One step of the chain.

    Attributes:
        name: what users see (``split``, ``train``, ...).
        inputs: files/folders whose change makes the stage stale.
        outputs: what it writes; all must exist for the stage to count as done.
        params: the settings it depends on (a change makes it stale).
        action: does the work; returns one line for the summary.
    """

    name: str
    inputs: Callable[[RunSettings], list[Path]]
    outputs: Callable[[RunSettings], list[Path]]
    params: Callable[[RunSettings], dict]
    action: Callable[[RunSettings, Callable[[str], None]], str]


@dataclass
class StageOutcome:
    """What happened to one stage in a run: ``ran``, ``skipped`` (up to date) or ``interrupted``."""

    name: str
    status: str
    seconds: float = 0.0
    summary: str = ""


@dataclass
class RunResult:
    """What :func:`run` did and where the results are.

    Attributes:
        workdir: the run's folder.
        stages: one outcome per stage attempted, in order.
        int8_model / float_model: the exported ``.tflite`` files (None if not exported).
        ap50: COCO AP50 of the shipped model on the test split (int8 if measured, else float), or None.
        latency_ms: median 1-thread latency of the int8 model, or None.
        start: where training started ("fine-tuned from the zoo's COCO checkpoint (variant s)", "from scratch
            (why)"), or None before the config stage.
        report_html: ``W/report/index.html`` if written.
        detections_picture: a picture of test images with the model's detections, if written.
        interrupted: training was interrupted (rerun to continue).
        excluded: the validation errors whose files were left out (``images/validation.json``'s ``excluded``),
            each a :class:`~spaghettinet.data.problems.Problem`.
    """

    workdir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    int8_model: Path | None = None
    float_model: Path | None = None
    ap50: float | None = None
    latency_ms: float | None = None
    start: str | None = None
    report_html: Path | None = None
    detections_picture: Path | None = None
    interrupted: bool = False
    excluded: tuple[Problem, ...] = ()

    def status_of(self, name: str) -> str | None:
        """The status of stage ``name`` in this run (None if it was not reached)."""
        return next((stage.status for stage in self.stages if stage.name == name), None)


# --------------------------------------------------------------------------------------------------------------
# Stage actions: each calls one stage's Python API.
# --------------------------------------------------------------------------------------------------------------


def _validate(settings: RunSettings, log) -> str:
    from spaghettinet.data.validate import validate

    report = validate(
        settings.data_dir, settings.annotations, input_size=settings.input_size, format=settings.format
    )
    errors = report.errors
    left_out = report.images_found - len(report.pairs)
    json_path = settings.images / VALIDATION_FILE
    ValidationFile.from_report(report, settings.strict).write(json_path)
    if errors:
        listing = "\n".join(f"  {problem.file}: {problem.message}" for problem in errors)
        share = left_out / report.images_found if report.images_found else 1.0
        why = None
        if settings.strict:
            why = "--strict: validation errors stop the run before training"
        elif not report.pairs:
            why = "no valid image/xml pair is left to train on"
        elif share > MAX_EXCLUDED_SHARE:
            why = (
                f"{left_out} of {report.images_found} images ({share:.0%}) would be left out, more than "
                f"{MAX_EXCLUDED_SHARE:.0%}: the folder needs a look before a model is worth training"
            )
        if why is not None:
            raise DataError(
                f"{len(errors)} problem(s) stop the run before training ({why}); fix or remove these files and run "
                f"again (full list in {json_path}):\n{listing}",
                settings.data_dir,
            )
        log(
            f"validate: {len(errors)} problem(s) leave {left_out} of {report.images_found} images out of training "
            f"(your files are not touched; `--strict` stops instead; listed in {json_path}):"
        )
        for problem in errors:
            log(f"  left out: {problem.file}: {problem.message}")
    classes = ", ".join(f"{name} {count}" for name, count in report.class_counts.items())
    excluded = f", {left_out} left out" if errors else ""
    read_as = "" if report.format == "voc" else f" ({report.format})"
    return (
        f"{len(report.pairs)} images{read_as}, {report.num_objects} objects ({classes}), "
        f"{len(report.warnings)} warnings{excluded}"
    )


def _split(settings: RunSettings, log) -> str:
    from spaghettinet.data.split import split

    result = split(
        settings.data_dir,
        settings.images,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
        annotations=settings.annotations,
        format=settings.format,
    )
    return f"{len(result.train)} train, {len(result.test)} test images"


def _xml2csv(settings: RunSettings, log) -> str:
    from spaghettinet.data.csv_labels import xml2csv
    from spaghettinet.data.problems import raise_for_errors

    result = xml2csv(settings.images)
    raise_for_errors(result.errors, "the label CSVs")
    return ", ".join(f"{f.path.name}: {f.objects} objects" for f in result.files)


def _labelmap(settings: RunSettings, log) -> str:
    from spaghettinet.data.labelmap import labelmap

    label_map = labelmap(settings.images, settings.label_map)
    return f"{label_map.num_classes} classes: {', '.join(label_map.names)}"


def _tfrecord(settings: RunSettings, log) -> str:
    from spaghettinet.data.problems import raise_for_errors
    from spaghettinet.data.tfrecord import tfrecord

    lines = []
    for split_name, record in (("train", settings.train_record), ("test", settings.test_record)):
        result = tfrecord(record, settings.label_map, split_dir=settings.images / split_name)
        raise_for_errors(result.errors, record.name)
        lines.append(f"{record.name}: {result.images} images")
    return ", ".join(lines)


def _config(settings: RunSettings, log) -> str:
    from spaghettinet.model.pretrained import choose_start, download_progress, write_start
    from spaghettinet.pipeline_config.generate import config

    with download_progress(settings.show_progress) as progress:
        start = choose_start(
            settings.variant,
            fine_tune_from=settings.fine_tune_from,
            from_scratch=settings.from_scratch,
            sha256=settings.zoo_sha256,
            progress=progress,
            log=log,
        )
    if start.note:
        log(f"{start.note} (once it can be downloaded, `--force config` starts from it)")
    cfg = config(
        settings.variant,
        settings.label_map,
        settings.train_record,
        settings.test_record,
        settings.config,
        steps=settings.steps,
        batch_size=settings.batch_size,
        input_size=settings.input_size,
        quantize=settings.qat,
        fine_tune_checkpoint=start.prefix,
    )
    write_start(settings.start_file, start)
    started = "from scratch" if start.kind == "scratch" else start.description
    return (
        f"SpaghettiNet-EdgeTPU-{settings.variant.upper()} {settings.input_size}², {cfg.train.num_steps} steps, "
        f"{started}"
    )


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Interrupted(Exception):
    pass


def _train(settings: RunSettings, log) -> str:
    from spaghettinet.training.loop import train

    model_dir = settings.model_dir
    config_hash = _file_sha256(settings.config)
    marker = model_dir / CONFIG_HASH_FILE
    if model_dir.exists() and (not marker.is_file() or marker.read_text().strip() != config_hash):
        # Checkpoints of another config (other data, classes, settings or start) cannot be resumed: start afresh,
        # keeping the old training (hours of work, maybe the better model) under another name.
        if any(model_dir.iterdir()):
            aside = _set_aside(model_dir)
            log(
                f"the pipeline config changed since the last training: that training is kept in {aside}; "
                "training afresh"
            )
        else:
            model_dir.rmdir()
    model_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, config_hash + "\n")
    result = train(
        settings.config,
        model_dir,
        time_budget=settings.time_budget,
        seed=settings.seed,
        evaluate_at_end=False,
        show_progress=settings.show_progress,
    )
    for message in result.messages:
        log(message)
    if result.stopped == "interrupted":
        raise _Interrupted(
            f"training interrupted at step {result.step}; run the same command again to resume"
        )
    loss = "" if result.final_loss is None else f", loss {result.final_loss:.3f}"
    qat = ", quantization-aware" if result.quantization_aware else ""
    return f"step {result.step} ({result.stopped}{qat}{loss})"


def _set_aside(folder: Path) -> Path:
    """Rename ``folder`` to ``<name>.<local time>`` (``.2``, ``.3``... if taken) and return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = folder.with_name(f"{folder.name}.{stamp}")
    number = 1
    while candidate.exists():
        number += 1
        candidate = folder.with_name(f"{folder.name}.{stamp}.{number}")
    os.replace(folder, candidate)
    return candidate


def _start_of(settings: RunSettings) -> str:
    """The recorded start of this workdir's training, or what was asked if the config stage has not run."""
    from spaghettinet.model.pretrained import read_start

    start = read_start(settings.start_file)
    if start is not None:
        return start.description
    if settings.fine_tune_from is not None:
        return f"fine-tuned from {settings.fine_tune_from}"
    if settings.from_scratch:
        return "from scratch (as asked: --from-scratch)"
    return f"fine-tuned from the zoo's COCO checkpoint (variant {settings.variant})"


def _evaluate(settings: RunSettings, log) -> str:
    from spaghettinet.evaluation.evaluate import evaluate

    result = evaluate(settings.config, settings.model_dir, out=settings.model_dir / "eval.json")
    figures = [
        f"{name} {value:.3f}"
        for name, value in (("AP", result.ap), ("AP50", result.ap50))
        if value is not None
    ]
    return ", ".join(figures) or "evaluated (no ground truth in the test split)"


def _export(settings: RunSettings, log) -> str:
    from spaghettinet.deploy.export import export

    options = {}
    if settings.calibration_images is not None:
        options["calibration_images"] = settings.calibration_images
    if settings.check_images is not None:
        options["check_images"] = settings.check_images
    result = export(
        settings.config, settings.model_dir, settings.exported, quantize=settings.quantize, **options
    )
    if result.int8_model is None:
        others = ", ".join(p.name for p in (result.float_model, result.fp16_model) if p is not None)
        return f"{others} (no int8 model: quantize={result.quantization})"
    others = "".join(f", {p.name}" for p in (result.float_model, result.fp16_model) if p is not None)
    return f"{result.int8_model.name} ({result.quantization.upper()}){others}"


def _latency(settings: RunSettings, log) -> str:
    from spaghettinet.evaluation.latency import LATENCY_FILE, LatencyReport, benchmark

    report = LatencyReport()
    for name in _exported_models(settings):
        path = settings.exported / name
        if path.is_file():
            measured = benchmark(path, threads=1, runs=settings.latency_runs)
            measured.model = name  # the file name: the report and the card name models by file
            report.results.append(measured)
    report.write(settings.exported / LATENCY_FILE)
    return ", ".join(f"{result.model}: {result.median_ms:.1f} ms" for result in report.results)


def _exported_models(settings: RunSettings) -> list[str]:
    """The .tflite files the last export wrote (per its report), int8 first; a stale file of an earlier export
    with other options is left out."""
    try:
        files = json.loads((settings.exported / "export_report.json").read_text(encoding="utf-8")).get(
            "files", {}
        )
    except (OSError, ValueError, AttributeError):
        files = {}
    return [
        name for name in ("model_int8.tflite", "model_float.tflite", "model_fp16.tflite") if name in files
    ]


def _report(settings: RunSettings, log) -> str:
    from spaghettinet.evaluation.report import load_report_inputs, write_report

    # detect=True: the shipped model on the whole test split (confusion matrix, worst images, the verdict's AP).
    inputs = load_report_inputs(settings.workdir, detect=True)
    inputs.settings = _settings_table(settings)
    paths = write_report(inputs, settings.report_dir)
    return str(paths.html)


def write_run_report(workdir: str | Path, out: str | Path | None = None):
    """Rewrite a run's report from its files, with the exported model's detections on test images.

    Args:
        workdir: the run's folder.
        out: the report folder (default ``workdir/report``).

    Returns:
        :class:`spaghettinet.evaluation.report.ReportPaths`.

    Example:
        >>> write_run_report("work").html  # doctest: +SKIP
        PosixPath('work/report/index.html')
    """
    from spaghettinet.evaluation.report import load_report_inputs, write_report

    workdir = Path(workdir)
    inputs = load_report_inputs(workdir, detect=True)
    return write_report(inputs, Path(out) if out is not None else workdir / "report")


def _settings_table(settings: RunSettings) -> dict[str, str]:
    return {
        "data": str(settings.data_dir),
        "annotations": _annotations_words(settings),
        "variant": f"spaghettinet_edgetpu_{settings.variant}",
        "input size": f"{settings.input_size}×{settings.input_size}",
        "steps": str(settings.steps) if settings.steps else "from the data size",
        "time budget": str(settings.time_budget) if settings.time_budget else "none",
        "start": _start_of(settings),
        "test fraction": str(settings.test_fraction),
        "seed": str(settings.seed),
    }


def _annotations_words(settings: RunSettings) -> str:
    if settings.format in ("coco", "yolo"):
        return {"coco": "COCO json in the folder", "yolo": "YOLO labels/ and class names in the folder"}[
            settings.format
        ]
    return str(settings.annotations) if settings.annotations else "beside the images"


# --------------------------------------------------------------------------------------------------------------
# The stage table
# --------------------------------------------------------------------------------------------------------------


def _data_inputs(s: RunSettings) -> list[Path]:
    return [s.data_dir] + ([s.annotations] if s.annotations else [])


def _split_dirs(s: RunSettings) -> list[Path]:
    return [s.images / "train", s.images / "test"]


def _records(s: RunSettings) -> list[Path]:
    return [s.train_record, s.test_record]


def _checkpoint_state(s: RunSettings) -> Path:
    return s.model_dir / "checkpoint"


STAGES: tuple[Stage, ...] = (
    Stage(
        "validate",
        _data_inputs,
        lambda s: [s.images / "validation.json"],
        # input_size only adds notes about tiny objects: not worth redoing the data stages for. strict is: a run
        # that went on without broken pairs must stop at them when asked to be strict. The format is, when it is
        # not VOC (left out for VOC so that workdirs made before formats existed stay up to date).
        lambda s: {"strict": s.strict} | ({"format": s.format} if s.format not in (None, "voc") else {}),
        _validate,
    ),
    Stage(
        "split",
        lambda s: _data_inputs(s) + [s.images / "validation.json"],
        lambda s: _split_dirs(s) + [s.images / "split.json"],
        lambda s: {"test_fraction": s.test_fraction, "seed": s.seed},
        _split,
    ),
    Stage(
        "xml2csv",
        _split_dirs,
        lambda s: [s.images / "train_labels.csv", s.images / "test_labels.csv"],
        lambda s: {},
        _xml2csv,
    ),
    Stage("labelmap", _split_dirs, lambda s: [s.label_map], lambda s: {}, _labelmap),
    Stage("tfrecord", lambda s: _split_dirs(s) + [s.label_map], _records, lambda s: {}, _tfrecord),
    Stage(
        "config",
        lambda s: [s.label_map] + _records(s),
        lambda s: [s.config],
        lambda s: {
            "variant": s.variant,
            "input_size": s.input_size,
            "steps": s.steps,
            "batch_size": s.batch_size,
            # The choice, not its outcome: a run that fell back to scratch offline is not redone by every rerun
            # (the fallback line says how: --force config).
            "start": s.start_choice,
            "fine_tune_from": s.fine_tune_from,
            "qat": s.qat,
        },
        _config,
    ),
    Stage(
        "train",
        lambda s: [s.config] + _records(s),
        lambda s: [_checkpoint_state(s)],
        lambda s: {"time_budget": s.time_budget, "seed": s.seed},
        _train,
    ),
    Stage(
        "evaluate",
        lambda s: [s.config, _checkpoint_state(s)],
        lambda s: [s.model_dir / "eval.json"],
        lambda s: {},
        _evaluate,
    ),
    Stage(
        "export",
        lambda s: [s.config, _checkpoint_state(s)],
        lambda s: [s.exported / "model_float.tflite", s.exported / "export_report.json"],
        lambda s: {"quantize": s.quantize, "calibration": s.calibration_images, "check": s.check_images},
        _export,
    ),
    Stage(
        "latency",
        lambda s: [s.exported / "model_float.tflite", s.exported / "export_report.json"],
        lambda s: [s.exported / "latency.json"],
        lambda s: {"runs": s.latency_runs},
        _latency,
    ),
    Stage(
        "report",
        lambda s: [
            s.images / "validation.json",
            s.images / "split.json",
            s.model_dir / "metrics_history.json",
            s.model_dir / "eval.json",
            s.exported / "export_report.json",
            s.exported / "latency.json",
        ],
        lambda s: [s.report_dir / "index.html", s.report_dir / "report.md", s.exported / "model_card.md"],
        lambda s: {"settings": _settings_table(s)},
        _report,
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)


# --------------------------------------------------------------------------------------------------------------
# Freshness
# --------------------------------------------------------------------------------------------------------------


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


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str, sort_keys=True))


def stage_is_current(stage: Stage, settings: RunSettings, stamps: dict) -> bool:
    """True when ``stage`` finished before with the same settings, its outputs exist and no input is newer."""
    stamp = stamps.get(stage.name)
    if not isinstance(stamp, dict) or stamp.get("params") != _jsonable(stage.params(settings)):
        return False
    oldest = oldest_output_ns(stage.outputs(settings))
    if oldest is None:
        return False
    return newest_change_ns(stage.inputs(settings)) <= oldest


# --------------------------------------------------------------------------------------------------------------
# run / demo
# --------------------------------------------------------------------------------------------------------------


def run(
    data_dir: str | Path,
    workdir: str | Path,
    *,
    until: str | None = None,
    force: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    **options,
) -> RunResult:
    """Take a folder of labelled photos (Pascal VOC, COCO JSON or YOLO) to an int8 ``.tflite`` and a report,
    skipping finished stages.

    Stages: validate → split → xml2csv → labelmap → tfrecord → config → train (QAT for the last 15 % of the
    steps) → evaluate → export → latency → report.

    Training starts from the TF1 detection zoo's COCO checkpoint of the variant (cached in ``~/.cache/spaghettinet``
    or ``$SPAGHETTINET_CACHE``, downloaded once when missing; see :mod:`spaghettinet.model.pretrained`) unless
    ``fine_tune_from`` or ``from_scratch`` says otherwise. When it cannot be downloaded, one line says why and
    training starts from scratch.

    Args:
        data_dir / workdir: the photos and the run's folder (:class:`RunSettings`).
        until: stop after this stage (one of :data:`STAGE_NAMES`).
        force: stages to run even if up to date (their dependants then follow, their outputs being newer).
        log: called with one line per event (stage start, skip, result); default: silent.
        **options: any other :class:`RunSettings` field (``variant``, ``input_size``, ``time_budget``, ...).

    Returns:
        :class:`RunResult`; ``excluded`` lists what validation left out.

    Raises:
        DataError: validation errors with ``strict``, with nothing valid left, or leaving out more than
            :data:`MAX_EXCLUDED_SHARE` of the images (each listed); or any stage's data problem.
        UsageError: bad arguments, an option :class:`RunSettings` does not have among them.

    Example:
        >>> result = run("all_images_here", "work", variant="s", time_budget="20m")  # doctest: +SKIP
        >>> result.int8_model, result.ap50  # doctest: +SKIP
        (PosixPath('work/exported/model_int8.tflite'), 0.87)
    """
    known = {item.name for item in fields(RunSettings)} - {"data_dir", "workdir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"run has no option {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    return run_settings(RunSettings(data_dir, workdir, **options), until=until, force=force, log=log)


def run_settings(
    settings: RunSettings,
    until: str | None = None,
    force: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """:func:`run` for a :class:`RunSettings` already made (what the CLI builds from its options)."""
    from spaghettinet.model.zoo import check_variant

    log = log or (lambda line: None)
    settings.variant = check_variant(settings.variant)
    _check_arguments(settings, until, force)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    stamps = read_stamps(settings.workdir)
    result = RunResult(workdir=settings.workdir)
    for stage in STAGES:
        if stage.name not in force and stage_is_current(stage, settings, stamps):
            log(f"{stage.name}: up to date, skipped")
            result.stages.append(StageOutcome(stage.name, "skipped"))
        else:
            log(f"{stage.name}: running")
            started = time.monotonic()
            try:
                summary = stage.action(settings, log)
            except _Interrupted as exc:
                log(str(exc))
                result.stages.append(
                    StageOutcome(stage.name, "interrupted", time.monotonic() - started, str(exc))
                )
                result.interrupted = True
                break
            except SpaghettiError:
                stamps.pop(stage.name, None)
                _write_stamps(settings.workdir, stamps)
                raise
            seconds = time.monotonic() - started
            stamps[stage.name] = {"params": _jsonable(stage.params(settings)), "finished_ns": time.time_ns()}
            _write_stamps(settings.workdir, stamps)
            log(f"{stage.name}: done in {seconds:.1f} s: {summary}")
            result.stages.append(StageOutcome(stage.name, "ran", seconds, summary))
        if stage.name == until:
            break
    _fill_results(settings, result)
    return result


def _check_arguments(settings: RunSettings, until: str | None, force: Sequence[str]) -> None:
    if not settings.data_dir.is_dir():
        raise UsageError("is not a folder of labelled photos", settings.data_dir)
    if settings.annotations is not None and not settings.annotations.is_dir():
        raise UsageError("--annotations is not a folder", settings.annotations)
    from spaghettinet.data.formats import resolve_format

    settings.format = resolve_format(settings.data_dir, settings.format, settings.annotations)
    unknown = [name for name in ([until] if until else []) + list(force) if name not in STAGE_NAMES]
    if unknown:
        raise UsageError(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    from spaghettinet.pipeline_config.validate import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    if not MIN_INPUT_SIZE <= settings.input_size <= MAX_INPUT_SIZE:
        raise UsageError(
            f"--input-size must be in [{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}], got {settings.input_size}"
        )
    if settings.steps is not None and settings.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {settings.steps}")
    if settings.from_scratch and settings.fine_tune_from is not None:
        raise UsageError("--from-scratch and --fine-tune-from contradict each other: give one of them")
    if settings.zoo_sha256 is not None:
        from spaghettinet.model.pretrained import expected_sha256

        if settings.start_choice != "zoo":
            raise UsageError(
                "--sha256 pins the zoo's checkpoint: it means nothing with --from-scratch or --fine-tune-from"
            )
        expected_sha256(settings.variant, settings.zoo_sha256)
    if settings.fine_tune_from is not None:
        prefix = Path(settings.fine_tune_from)
        if not (Path(f"{prefix}.index").is_file() or prefix.is_dir()):
            raise UsageError(
                "--fine-tune-from is not a checkpoint prefix (no .index file beside it); "
                "`spaghettinet zoo download s --out DIR` prints one",
                prefix,
            )
    if settings.quantize not in ("auto", "qat", "ptq", "none"):
        raise UsageError(f"--quantize must be auto, qat, ptq or none, got {settings.quantize!r}")


def _write_stamps(workdir: Path, stamps: dict) -> None:
    write_text_atomic(_stamps_path(workdir), json.dumps(stamps, indent=2, sort_keys=True) + "\n")


def _fill_results(settings: RunSettings, result: RunResult) -> None:
    from spaghettinet.evaluation.report import load_report_inputs

    exported = _exported_models(settings)
    result.int8_model = settings.exported / "model_int8.tflite" if "model_int8.tflite" in exported else None
    result.float_model = (
        settings.exported / "model_float.tflite" if "model_float.tflite" in exported else None
    )
    if settings.start_file.is_file():
        result.start = _start_of(settings)
    html = settings.report_dir / "index.html"
    result.report_html = html if html.is_file() else None
    picture = settings.report_dir / "test_pictures.jpg"
    result.detections_picture = picture if picture.is_file() else None
    result.excluded = _excluded(settings)
    inputs = load_report_inputs(settings.workdir)
    # Prefer the int8 model's score (what ships), then any other measured one.
    ranked = sorted(inputs.scores, key=lambda s: ("int8" not in s.label.lower(), "float" in s.label.lower()))
    for scores in ranked:
        if "AP50" in scores.metrics:
            result.ap50 = scores.metrics["AP50"]
            break
    for row in inputs.latency:
        if row.model == "model_int8.tflite":
            result.latency_ms = row.median_ms


def _excluded(settings: RunSettings) -> tuple[Problem, ...]:
    """The validation errors of the last validate stage (``images/validation.json``), () when none or unreadable."""
    path = settings.images / VALIDATION_FILE
    if not path.is_file():
        return ()
    try:
        return ValidationFile.read(path).excluded
    except DataError:
        return ()


def demo(
    workdir: str | Path,
    images: int | None = None,
    seed: int = 0,
    input_size: int = 160,
    time_budget: str | float = "10m",
    steps: int | None = None,
    log: Callable[[str], None] | None = None,
    show_progress: bool = True,
    **run_options,
) -> RunResult:
    """Make the embedded demo dataset in ``workdir/demo-data`` and :func:`run` it with settings that fit in 15 minutes
    on 2 CPU cores (S at 160², training stopped by a time budget).

    The demo trains from scratch (``from_scratch=True`` unless ``run_options`` names a ``fine_tune_from``): its
    figures stay comparable with earlier demos, and it runs offline.

    Args:
        workdir: the run's folder.
        images: demo images (default: the demo module's default).
        seed: dataset and training seed.
        input_size: model input side.
        time_budget: training wall-clock budget.
        steps: a fixed number of training steps instead (tests).
        log / show_progress: as :func:`run`.
        **run_options: passed to :func:`run`.

    Returns:
        :class:`RunResult`; its ``int8_model``, ``ap50``, ``latency_ms`` and ``detections_picture`` are the answer.

    Example:
        >>> result = demo("demo-workdir")  # doctest: +SKIP
        >>> result.int8_model  # doctest: +SKIP
        PosixPath('demo-workdir/exported/model_int8.tflite')
    """
    from spaghettinet.data.demo import make_demo

    log = log or (lambda line: None)
    workdir = Path(workdir)
    data_dir = workdir / "demo-data"
    options = {"seed": seed} if images is None else {"images": images, "seed": seed}
    if _demo_is_current(data_dir, options):
        log(f"demo data: {data_dir} already made, kept")
    else:
        made = make_demo(data_dir, **options)
        write_text_atomic(workdir / STATE_DIR / "demo.json", json.dumps(options) + "\n")
        log(f"demo data: {made.images} images in {data_dir}")
    if run_options.get("fine_tune_from") is None:
        run_options.setdefault("from_scratch", True)
    return run(
        data_dir,
        workdir,
        variant="s",
        input_size=input_size,
        steps=steps,
        time_budget=None if steps is not None else time_budget,
        seed=seed,
        log=log,
        show_progress=show_progress,
        **run_options,
    )


def _demo_is_current(data_dir: Path, options: dict) -> bool:
    # Remaking the demo data would touch every photo and so redo every stage: keep it when made with these options.
    record = data_dir.parent / STATE_DIR / "demo.json"
    try:
        return data_dir.is_dir() and json.loads(record.read_text()) == options
    except (OSError, ValueError):
        return False
