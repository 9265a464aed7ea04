"""CLI commands of the whole chain: ``run``, ``demo``, ``report`` and the ``zoo`` checkpoints.

Thin wrappers over :mod:`spaghettinet.workflow`, :mod:`spaghettinet.evaluation.report` and
:mod:`spaghettinet.model.zoo`; those modules are imported inside the commands so ``spaghettinet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .console import console, err_console

zoo_app = typer.Typer(
    name="zoo",
    help="Pretrained SpaghettiNet-EdgeTPU checkpoints from the TF1 detection zoo (for --fine-tune-from).",
    no_args_is_help=True,
)


def _print_installed(installed) -> None:
    console.print(f"variant: {installed.variant}", highlight=False, markup=False)
    console.print(f"sha256: {installed.sha256}", highlight=False, markup=False)
    console.print(
        f"checkpoint prefix (use as --fine-tune-from): {installed.prefix}", highlight=False, markup=False
    )


@zoo_app.command("download")
def zoo_download(
    variant: str = typer.Argument(..., help="s, m or l."),
    out: Path = typer.Option(..., "--out", help="Folder to extract the checkpoint into."),
    url: str | None = typer.Option(
        None, "--url", help="Another address for the tarball (http, https or file)."
    ),
    sha256: str | None = typer.Option(None, "--sha256", help="Refuse the tarball unless its sha256 is this."),
) -> None:
    """Download a zoo tarball, verify it (complete, safe paths, the right variant) and extract it.

    ``run`` and ``config`` do not need this: they start from the zoo's checkpoint by default, from their cache."""
    from spaghettinet.model import zoo
    from spaghettinet.model.pretrained import download_progress

    variant = zoo.check_variant(variant)
    err_console.print(f"downloading {url or zoo.ZOO_URLS[variant]}", highlight=False, markup=False)
    with download_progress() as report:
        installed = zoo.download(variant, out, url=url, expected_sha256=sha256, progress=report)
    _print_installed(installed)


@zoo_app.command("install")
def zoo_install(
    tarball: Path = typer.Argument(..., help="A zoo .tar.gz already on disk."),
    variant: str = typer.Argument(..., help="s, m or l."),
    out: Path = typer.Option(..., "--out", help="Folder to extract the checkpoint into."),
    sha256: str | None = typer.Option(None, "--sha256", help="Refuse the tarball unless its sha256 is this."),
) -> None:
    """Verify and extract a zoo tarball downloaded by other means (same checks as ``zoo download``)."""
    from spaghettinet.model import zoo

    _print_installed(zoo.install_tarball(tarball, variant, out, expected_sha256=sha256))


def _log(line: str) -> None:
    # soft_wrap: a line stays one line (paths and URLs are not broken at the terminal's width).
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_result(result) -> None:
    from rich.table import Table

    table = Table(title="stages", show_header=True)
    for column in ("stage", "status", "seconds", "result"):
        table.add_column(column)
    for stage in result.stages:
        seconds = f"{stage.seconds:.1f}" if stage.status == "ran" else ""
        table.add_row(stage.name, stage.status, seconds, stage.summary, style=None)
    err_console.print(table)
    if result.interrupted:
        console.print("interrupted: run the same command again to continue where it stopped", markup=False)
        raise typer.Exit(130)
    shipped = result.int8_model or result.float_model
    lines = [
        ("start", result.start),
        ("model", shipped),
        ("AP50 on the test split", None if result.ap50 is None else f"{result.ap50:.3f}"),
        ("latency (1 thread, median)", None if result.latency_ms is None else f"{result.latency_ms:.1f} ms"),
        ("detections on test images", result.detections_picture),
        ("report", result.report_html),
    ]
    for label, value in lines:
        if value is not None:
            console.print(f"{label}: {value}", highlight=False, markup=False)
    if result.excluded:
        files = len({problem.file for problem in result.excluded})
        console.print(
            f"left out: {files} file(s) with {len(result.excluded)} validation error(s), listed above, in "
            f"{result.workdir / 'images' / 'validation.json'} and in the report (`--strict` stops at them instead)",
            soft_wrap=True,
        )


def run_command(
    data_dir: Path = typer.Argument(
        ..., help="Folder of labelled photos: Pascal VOC .xml beside them, a COCO json, or YOLO labels/."
    ),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="Folder for everything the run writes."),
    variant: str = typer.Option("s", "--variant", help="SpaghettiNet-EdgeTPU variant: s, m or l."),
    input_size: int = typer.Option(320, "--input-size", help="Side of the square model input."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: scaled to the data)."),
    fine_tune_from: Path | None = typer.Option(
        None,
        "--fine-tune-from",
        help="Checkpoint prefix to start from instead of the zoo's COCO checkpoint (the default).",
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="Start from random weights, not the zoo's COCO checkpoint (no download).",
    ),
    sha256: str | None = typer.Option(
        None, "--sha256", help="The sha256 the zoo's checkpoint tarball must have (pins the default start)."
    ),
    annotations: Path | None = typer.Option(None, "--annotations", help="Separate folder of .xml files."),
    data_format: str | None = typer.Option(
        None, "--format", help="Annotation format: voc, coco or yolo (default: detected from the folder)."
    ),
    time_budget: str | None = typer.Option(None, "--time-budget", help="Stop training after e.g. 20m or 1h."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Training batch size."),
    quantize: str = typer.Option("auto", "--quantize", help="auto, qat, ptq or none."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage."),
    force: list[str] = typer.Option([], "--force", help="Rerun this stage even if up to date (repeatable)."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Stop at any validation error (default: leave broken pairs out, list them, and go on).",
    ),
) -> None:
    """Validate, split, convert, configure, train (QAT for the last 15 %), evaluate, export and report, skipping
    stages that are up to date. Photos whose image or xml has an error are left out and listed (your files are
    never touched); the run stops instead with --strict, with nothing valid left, or with over a third left out.

    Training starts from the TF1 zoo's COCO checkpoint of the variant (cached in ~/.cache/spaghettinet or
    $SPAGHETTINET_CACHE, downloaded once; SPAGHETTINET_OFFLINE=1 never downloads); offline it starts from scratch
    and says why."""
    from spaghettinet import workflow

    result = workflow.run(
        data_dir,
        workdir,
        variant=variant,
        input_size=input_size,
        steps=steps,
        fine_tune_from=fine_tune_from,
        from_scratch=from_scratch,
        zoo_sha256=sha256,
        annotations=annotations,
        format=data_format,
        time_budget=time_budget,
        batch_size=batch_size,
        quantize=quantize,
        until=until,
        force=force,
        log=_log,
        strict=strict,
    )
    _print_result(result)


def demo_command(
    workdir: Path = typer.Option(Path("demo-workdir"), "--workdir", "-w", help="Folder for the demo run."),
    images: int | None = typer.Option(None, "--images", help="Demo images to make."),
    input_size: int = typer.Option(160, "--input-size", help="Side of the square model input."),
    time_budget: str = typer.Option("10m", "--time-budget", help="Training wall-clock budget."),
    seed: int = typer.Option(0, "--seed", help="Dataset and training seed."),
) -> None:
    """Make the demo dataset and run the whole chain on it (about 15 minutes on 2 CPU cores), from scratch."""
    from spaghettinet import workflow

    _print_result(
        workflow.demo(
            workdir, images=images, seed=seed, input_size=input_size, time_budget=time_budget, log=_log
        )
    )


def report_command(
    workdir: Path = typer.Argument(..., help="A run's workdir."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: WORKDIR/report)."),
) -> None:
    """(Re)write the HTML and Markdown report of a run from the files its stages wrote."""
    from spaghettinet import workflow
    from spaghettinet.errors import UsageError

    if not workdir.is_dir():
        raise UsageError("is not a folder", workdir)
    paths = workflow.write_run_report(workdir, out)
    console.print(f"report: {paths.html}", highlight=False, markup=False)
    console.print(f"markdown: {paths.markdown}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("run")(run_command)
    app.command("demo")(demo_command)
    app.command("report")(report_command)
    app.add_typer(zoo_app, name="zoo")
