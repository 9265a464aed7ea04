"""CLI commands of the train stage: ``train`` and ``evaluate`` (thin wrappers over the Python API)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .console import console, err_console, styled


def _metrics_table(result, title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.stats.items():
        table.add_row(name, "-" if value is None else f"{value:.4f}")
    for name, value in result.per_class_ap.items():
        ap50 = result.per_class_ap50.get(name)
        shown = "-" if value is None else f"{value:.4f}"
        shown50 = "-" if ap50 is None else f"{ap50:.4f}"
        table.add_row(f"AP {name}", f"{shown} (AP50 {shown50})")
    return table


def _warn_unused_fields(cfg) -> None:
    """Name, in one warning, the pipeline.config fields this package does not use."""
    from spaghettinet.pipeline_config import describe_warnings

    sentence = describe_warnings(cfg)
    if sentence:
        err_console.print(styled(("warning:", "yellow"), f" {sentence}"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""

    @app.command("train")
    def train_command(
        config: Path = typer.Option(..., "--config", help="pipeline.config to train."),
        model_dir: Path = typer.Option(
            ..., "--model-dir", help="Checkpoints and logs; resumes if it has some."
        ),
        steps: int | None = typer.Option(None, "--steps", help="Stop at this step (default: the config's)."),
        time_budget: str | None = typer.Option(
            None, "--time-budget", help="Wall-clock budget (90s, 20m, 1h): schedule fitted to it, clean stop."
        ),
        batch_size: str | None = typer.Option(
            None, "--batch-size", help="'auto' or a number (default: config)."
        ),
        eval_every: int | None = typer.Option(None, "--eval-every", help="Also evaluate every N steps."),
        checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Save every N steps."),
        seed: int = typer.Option(0, "--seed", help="Data order / augmentation seed of a fresh run."),
    ) -> None:
        """Train (or resume) a SpaghettiNet detector; Ctrl-C saves a checkpoint and exits with code 130."""
        from spaghettinet.pipeline_config import read_config
        from spaghettinet.training.loop import train

        cfg = read_config(config)
        _warn_unused_fields(cfg)
        result = train(
            cfg,
            model_dir,
            steps=steps,
            time_budget=time_budget,
            batch_size=batch_size,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            seed=seed,
        )
        if result.evaluation is not None:
            console.print(_metrics_table(result.evaluation, f"COCO metrics at step {result.step}"))
        if result.stopped == "interrupted":
            err_console.print(
                styled(
                    ("interrupted", "yellow"),
                    f" at step {result.step}: saved {result.checkpoint}; run the same command again to resume",
                )
            )
            sys.exit(130)
        reason = {"time_budget": "time budget spent", "completed": "done"}.get(result.stopped, result.stopped)
        err_console.print(f"{reason}: step {result.step}, checkpoint {result.checkpoint}", highlight=False)

    @app.command("evaluate")
    def evaluate_command(
        config: Path = typer.Option(..., "--config", help="pipeline.config the model was trained with."),
        checkpoint: Path = typer.Option(
            ..., "--checkpoint", help="ckpt-<step> prefix, or a model dir (latest)."
        ),
        out: Path | None = typer.Option(
            None, "--out", help="eval.json to write (default: beside the checkpoint)."
        ),
    ) -> None:
        """COCO-evaluate a checkpoint on the eval split; writes eval.json with metrics and detections."""
        from spaghettinet.evaluation.evaluate import evaluate
        from spaghettinet.pipeline_config import read_config
        from spaghettinet.training.checkpoints import require_checkpoint

        cfg = read_config(config)
        _warn_unused_fields(cfg)
        prefix = require_checkpoint(checkpoint)
        target = out if out is not None else Path(prefix).parent / "eval.json"
        result = evaluate(cfg, prefix, out=target)
        console.print(_metrics_table(result, f"COCO metrics of {prefix}"))
        err_console.print(f"wrote {target}", highlight=False)
