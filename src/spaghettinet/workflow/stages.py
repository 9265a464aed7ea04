"""The stages of ``run``: what each does (its action calls one stage's Python API) and the table that orders them.

Each stage is a row of :data:`STAGES`: the files it reads, the files it writes and the settings it depends on, which
:mod:`spaghettinet.workflow.engine` uses to decide whether it is up to date.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from spaghettinet.data.validation_file import VALIDATION_FILE, ValidationFile
from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.workflow.engine import Stage, StageInterrupted
from spaghettinet.workflow.settings import RunSettings

#: The training folder's record of the pipeline config it was trained with (a change starts a new training).
CONFIG_HASH_FILE = ".workflow_config_sha256"
#: Above this share of images left out by validation errors a run stops instead of going on without them.
MAX_EXCLUDED_SHARE = 1 / 3


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
        raise StageInterrupted(
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


def start_of(settings: RunSettings) -> str:
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
    for name in exported_models(settings):
        path = settings.exported / name
        if path.is_file():
            measured = benchmark(path, threads=1, runs=settings.latency_runs)
            measured.model = name  # the file name: the report and the card name models by file
            report.results.append(measured)
    report.write(settings.exported / LATENCY_FILE)
    return ", ".join(f"{result.model}: {result.median_ms:.1f} ms" for result in report.results)


def exported_models(settings: RunSettings) -> list[str]:
    """The .tflite files the last export wrote (per its report), int8 first; a stale file of an earlier export
    with other options is left out."""
    from spaghettinet.deploy.export_report import EXPORT_REPORT_FILE, ExportReport

    try:
        files = ExportReport.read(settings.exported / EXPORT_REPORT_FILE).files
    except DataError:
        files = {}
    return [
        name for name in ("model_int8.tflite", "model_float.tflite", "model_fp16.tflite") if name in files
    ]


def _report(settings: RunSettings, log) -> str:
    from spaghettinet.evaluation.report import write_report
    from spaghettinet.evaluation.report_loading import load_report_inputs

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
    from spaghettinet.evaluation.report import write_report
    from spaghettinet.evaluation.report_loading import load_report_inputs

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
        "start": start_of(settings),
        "test fraction": str(settings.test_fraction),
        "seed": str(settings.seed),
    }


def _annotations_words(settings: RunSettings) -> str:
    if settings.format in ("coco", "yolo"):
        return {"coco": "COCO json in the folder", "yolo": "YOLO labels/ and class names in the folder"}[
            settings.format
        ]
    return str(settings.annotations) if settings.annotations else "beside the images"


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
