"""CLI commands of the model stage: ``model summary`` and ``checkpoint inspect``.

TensorFlow is imported inside the commands only (through the model modules), so ``spaghettinet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from spaghettinet.errors import UsageError

from .console import console

model_app = typer.Typer(help="Inspect SpaghettiNet-EdgeTPU architectures.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Inspect TF1 Object Detection API checkpoints.", no_args_is_help=True)


def _parse_input_size(text: str) -> tuple[int, int]:
    """``"320"`` → (320, 320); ``"240x320"`` → (240, 320) (height x width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--input-size must be N or HxW (e.g. 320 or 240x320), got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise UsageError(f"--input-size must be N or HxW (e.g. 320 or 240x320), got {text!r}")


@model_app.command("summary")
def summary_command(
    variant: str = typer.Option("m", "--variant", "-v", help="s, m or l (or spaghettinet_edgetpu_s ...)."),
    input_size: str = typer.Option("320", "--input-size", help="N or HxW pixels (each ≥ 33)."),
    num_classes: int = typer.Option(90, "--num-classes", help="Foreground classes (90 for COCO)."),
) -> None:
    """Node table: output shapes, parameters and MACs, with totals beside the reference's."""
    from rich.table import Table

    from spaghettinet.model.architecture import get_architecture
    from spaghettinet.model.summary import summarize_variant

    get_architecture(variant)  # fail fast, before TensorFlow loads
    size = _parse_input_size(input_size)
    summary = summarize_variant(variant, size, num_classes)
    table = Table(title=f"{summary.variant} at {size[0]}x{size[1]}, {summary.num_classes} classes")
    table.add_column("node")
    table.add_column("kind")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MMACs", justify="right")
    for row in summary.rows:
        shape = "x".join(str(d) for d in row.output_shape)
        table.add_row(row.name, row.kind, shape, f"{row.params:,}", f"{row.macs / 1e6:,.1f}")
    table.add_section()
    table.add_row(
        "total",
        "",
        f"{summary.num_anchors} anchors",
        f"{summary.total_params:,}",
        f"{summary.total_macs / 1e6:,.1f}",
    )
    console.print(table)
    console.print(
        f"trainable parameters: {summary.trainable_params:,}; MACs: {summary.total_macs / 1e9:.3f} billion "
        f"(reference config: {summary.reference_macs / 1e9:.2f} billion at 320x320)"
    )


@checkpoint_app.command("inspect")
def inspect_command(
    prefix: Path = typer.Argument(..., help="Checkpoint prefix (…/model.ckpt-400000) or its folder."),
    show_variables: bool = typer.Option(False, "--variables", help="List every variable with its shape."),
) -> None:
    """Variant, number of classes and variables grouped by stem / node / edge / box predictor."""
    from rich.table import Table

    from spaghettinet.model.tf1_checkpoint import inspect_checkpoint

    info = inspect_checkpoint(prefix)
    console.print(f"checkpoint: {info.prefix}")
    console.print(f"variant: {info.variant or 'not a SpaghettiNet-EdgeTPU checkpoint'}")
    console.print(f"classes: {info.num_classes if info.num_classes is not None else 'unknown'}")
    console.print(f"model parameters: {info.total_params:,}")
    table = Table()
    table.add_column("group")
    table.add_column("variables", justify="right")
    table.add_column("values", justify="right")
    for group, entries in info.groups.items():
        values = sum(int(_count(shape)) for _, shape in entries)
        table.add_row(group, str(len(entries)), f"{values:,}")
        if show_variables:
            for name, shape in entries:
                table.add_row(f"  {name}", "", str(list(shape)))
    console.print(table)


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app: ``model summary`` and ``checkpoint inspect``."""
    app.add_typer(model_app, name="model")
    app.add_typer(checkpoint_app, name="checkpoint")
