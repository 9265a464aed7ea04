"""CLI commands of the configuration stage: ``spaghettinet config`` writes a pipeline.config for a data set."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import console, err_console, styled


def _print_anchor_coverage(cfg) -> None:
    """Per-class share of training boxes some anchor matches at IoU >= the matcher threshold."""
    from spaghettinet.evaluation.coverage_report import class_anchor_coverage

    print_coverage_report(class_anchor_coverage(cfg), cfg.model.input_size, cfg.model.matched_threshold)


def print_coverage_report(report, input_size: tuple[int, int], matched_threshold: float) -> None:
    """Print a :class:`~spaghettinet.evaluation.coverage_report.CoverageReport` (``config`` and ``validate``)."""
    from spaghettinet.evaluation.coverage_report import POOR_COVERAGE

    height, width = input_size
    console.print(
        f"Anchor coverage at {height}x{width} (boxes with an anchor at IoU >= {matched_threshold}):"
    )
    for row in report.rows:
        flag = ("  poorly covered", "yellow") if row.coverage < POOR_COVERAGE else ""
        console.print(styled(f"  {row.name:<24} {row.coverage:6.1%} of {row.num_boxes} boxes", flag))
    if report.suggestion:
        err_console.print(styled(("warning:", "yellow"), f" {report.suggestion}"))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""

    @app.command("config")
    def config_command(
        variant: str = typer.Option(..., "--variant", help="SpaghettiNet variant: s, m or l."),
        label_map: Path = typer.Option(..., "--label-map", help="Label map (.pbtxt) of the data set."),
        train: str = typer.Option(..., "--train", help="Training TFRecords: file, glob or shard base name."),
        test: str = typer.Option(..., "--test", help="Test TFRecords: file, glob or shard base name."),
        out: Path = typer.Option(..., "--out", help="The pipeline.config to write."),
        steps: int | None = typer.Option(
            None, "--steps", help="Training steps (default: 50 epochs, at least 1000)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Batch size (default: 8 on CPU, 16 on GPU)."
        ),
        input_size: int = typer.Option(320, "--input-size", help="Side of the square model input in pixels."),
        no_quantize: bool = typer.Option(False, "--no-quantize", help="No quantization-aware training."),
        fine_tune_checkpoint: str | None = typer.Option(
            None,
            "--fine-tune-checkpoint",
            help="Checkpoint prefix to start from (TF1 zoo or ours) instead of the zoo's COCO checkpoint.",
        ),
        from_scratch: bool = typer.Option(
            False, "--from-scratch", help="No fine_tune_checkpoint: train from random weights (no download)."
        ),
        sha256: str | None = typer.Option(
            None,
            "--sha256",
            help="The sha256 the zoo's checkpoint tarball must have (pins the default start).",
        ),
    ) -> None:
        """Write a complete pipeline.config sized for the data set, and report anchor coverage per class.

        fine_tune_checkpoint is the TF1 zoo's COCO checkpoint of the variant by default (cached in
        ~/.cache/spaghettinet or $SPAGHETTINET_CACHE, downloaded once; SPAGHETTINET_OFFLINE=1 never downloads);
        offline, the config trains from scratch and one line says why."""
        from spaghettinet.model.pretrained import choose_start, download_progress
        from spaghettinet.pipeline_config.generate import config_with_plan

        def log(line: str) -> None:
            err_console.print(line, highlight=False, markup=False, soft_wrap=True)

        with download_progress() as progress:
            start = choose_start(
                variant,
                fine_tune_from=fine_tune_checkpoint,
                from_scratch=from_scratch,
                sha256=sha256,
                progress=progress,
                log=log,
            )
        if start.note:
            log(f"{start.note} (once it can be downloaded, run `spaghettinet config` again to start from it)")
        cfg, plan = config_with_plan(
            variant=variant,
            label_map=label_map,
            train=train,
            test=test,
            out=out,
            steps=steps,
            batch_size=batch_size,
            input_size=input_size,
            quantize=not no_quantize,
            fine_tune_checkpoint=start.prefix,
        )
        console.print(
            f"Wrote {out}: SpaghettiNet-{cfg.model.variant.upper()}, {cfg.model.num_classes} classes, "
            f"{input_size}x{input_size}, {plan.num_train_examples} training / {plan.num_test_examples} test images."
        )
        console.print(f"  - start: {start.description}", highlight=False, markup=False, soft_wrap=True)
        for reason in plan.reasons:
            console.print(f"  - {reason}", highlight=False)
        if no_quantize:
            console.print("  - no quantization-aware training (export will use post-training quantization)")
        _print_anchor_coverage(cfg)
