"""``run`` (a labelled folder → an int8 model and a report, through :data:`~spaghettinet.workflow.stages.STAGES`)
and ``demo`` (the embedded demo dataset, then ``run``); :class:`RunResult` is what they return."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from spaghettinet.data.problems import Problem
from spaghettinet.data.validation_file import VALIDATION_FILE, ValidationFile
from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.workflow.engine import STATE_DIR, StageOutcome, run_stages
from spaghettinet.workflow.settings import RunSettings
from spaghettinet.workflow.stages import STAGE_NAMES, STAGES, exported_models, start_of


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
    done = run_stages(STAGES, settings, settings.workdir, until=until, force=force, log=log)
    result = RunResult(workdir=settings.workdir, stages=done.outcomes, interrupted=done.interrupted)
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


def _fill_results(settings: RunSettings, result: RunResult) -> None:
    from spaghettinet.evaluation.report_loading import load_report_inputs

    exported = exported_models(settings)
    result.int8_model = settings.exported / "model_int8.tflite" if "model_int8.tflite" in exported else None
    result.float_model = (
        settings.exported / "model_float.tflite" if "model_float.tflite" in exported else None
    )
    if settings.start_file.is_file():
        result.start = start_of(settings)
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
