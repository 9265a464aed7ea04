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
    """Download a zoo tarball, verify it (complete, safe paths, the right variant) and extract it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from spaghettinet.model import zoo

    variant = zoo.check_variant(variant)
    err_console.print(f"downloading {url or zoo.ZOO_URLS[variant]}", highlight=False, markup=False)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("download", total=None)

        def report(received: int, total: int | None) -> None:
            progress.update(task, completed=received, total=total)

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


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.add_typer(zoo_app, name="zoo")
