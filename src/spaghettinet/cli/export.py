"""CLI commands of the export stage: ``export``, ``predict``, ``benchmark``.

Thin wrappers: parse the arguments, call the Python API (imported inside the command so ``--help`` stays fast),
print a rich table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

if TYPE_CHECKING:
    from spaghettinet.deploy.export_report import DetectionAgreement, ExportReport

from .console import console, err_console


def _export_table(report: ExportReport) -> Table:
    from spaghettinet.deploy.export_report import CHECKED_MODELS

    table = Table(title="export checks", show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_row("quantization", report.quantization)
    for name, size in report.files.items():
        table.add_row(name, f"{size / 1e6:.2f} MB")
    if report.int8 is not None:
        int8 = report.int8
        table.add_row(
            "int8 input", f"{int8.input_type} scale {int8.input_scale:.6f} zero point {int8.input_zero_point}"
        )
        table.add_row("int8 ops", ", ".join(f"{k} {v}" for k, v in int8.op_counts.items()))
        table.add_row("float ops outside post-processing", ", ".join(int8.float_ops) or "none")
    if report.int8_ranges is not None:
        widened = ", ".join(report.int8_ranges.widened_ranges) or "none"
        table.add_row("int8 ranges widened", f"{widened} (floor {report.int8_ranges.range_floor})")
    if report.fp16 is not None:
        kept = ", ".join(report.fp16.kept_float32) or "none"
        table.add_row(
            "fp16 weights", f"{report.fp16.float16_constants} constants float16, kept float32: {kept}"
        )
    if report.onnx is not None:
        onnx = report.onnx
        table.add_row("ONNX", f"opset {onnx.opset}, tf2onnx {onnx.tf2onnx}, NMS: {onnx.nms}")
    if report.edgetpu is not None:
        table.add_row("Edge TPU problems", "; ".join(report.edgetpu.problems) or "none found")
        table.add_row("edgetpu_compiler", str(report.edgetpu.compiler.get("status", "?")))
    checks = report.checks
    if checks is not None and checks.skipped is not None:
        table.add_row("accuracy checks", f"skipped: {checks.skipped}")
    elif checks is not None:
        for key, label in (
            ("int8_vs_keras", "int8 vs Keras"),
            ("fp16_vs_float", "fp16 vs float .tflite"),
            ("onnx_vs_float", "ONNX vs float .tflite"),
        ):
            if key in checks.agreements:
                table.add_row(f"{label} ({checks.images} test images)", _agreement(checks.agreements[key]))
        anchors = checks.fp16_every_anchor
        if anchors is not None:
            verdict = "within tolerance" if anchors.within_tolerance else "BEYOND tolerance"
            table.add_row(
                "fp16 vs float, every anchor",
                f"max |score diff| {anchors.max_score_difference:.2e}, max |box diff| "
                f"{anchors.max_box_difference:.2e} ({verdict})",
            )
        models = [name for name in CHECKED_MODELS if name in checks.accuracy]
        for metric in ("ap", "ap50", "ap75"):
            shown = [_metric(getattr(checks.accuracy[name], metric)) for name in models]
            table.add_row(f"COCO {metric.upper()} {' / '.join(models)}", " / ".join(shown))
    return table


def _agreement(comparison: DetectionAgreement) -> str:
    """One detection comparison of the report as a table cell."""
    mean_iou = comparison.mean_iou
    return (
        f"matched {comparison.matched}/{comparison.reference_detections}, mean IoU "
        f"{'-' if mean_iou is None else f'{mean_iou:.4f}'}, max |score diff| {comparison.max_score_difference}"
    )


def _metric(value: float | None) -> str:
    """One COCO number for the table ('-' where COCO has none)."""
    return "-" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""

    @app.command("export")
    def export_command(
        config: Path = typer.Option(..., "--config", help="pipeline.config the model was trained with."),
        checkpoint: Path = typer.Option(
            ..., "--checkpoint", help="ckpt-<step> prefix or model directory (latest)."
        ),
        out: Path = typer.Option(..., "--out", help="Export folder."),
        max_detections: int = typer.Option(10, "--max-detections", help="Detections per image (K)."),
        score_threshold: float = typer.Option(
            0.3, "--score-threshold", help="NMS score threshold of the op."
        ),
        iou_threshold: float = typer.Option(0.6, "--iou-threshold", help="NMS IoU threshold of the op."),
        regular_nms: bool | None = typer.Option(
            None,
            "--regular-nms/--fast-nms",
            help="Per-class NMS, or the op's class-agnostic fast NMS (default: per class when there are 2+ classes).",
            show_default=False,
        ),
        quantize: str = typer.Option("auto", "--quantize", help="auto | qat | ptq | none."),
        onnx: bool = typer.Option(
            False,
            "--onnx",
            help="Also write model.onnx (needs the optional extra: pip install 'spaghettinet\\[onnx]').",
        ),
    ) -> None:
        """Export SavedModel, float, fp16 and int8 .tflite (fused NMS op, metadata), labels.txt, export_report.json."""
        from spaghettinet.deploy.export import export

        err_console.print(f"exporting {checkpoint} to {out} ...")
        result = export(
            config,
            checkpoint,
            out,
            max_detections=max_detections,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            regular_nms=regular_nms,
            quantize=quantize,
            onnx=onnx,
        )
        console.print(_export_table(result.report))
        for label, path in (
            ("float16-weight model", result.fp16_model),
            ("ONNX model", result.onnx_model),
            ("float model", result.float_model),
            ("int8 model", result.int8_model),
        ):
            if path is not None:
                console.print(f"{label}: {path}", highlight=False, markup=False)

    @app.command("predict")
    def predict_command(
        model: Path = typer.Argument(..., help="Exported .tflite model."),
        images: list[Path] = typer.Argument(..., help="Image files and/or folders."),
        out: Path = typer.Option(..., "--out", help="Folder for the drawn pictures and detections.json."),
        threshold: float = typer.Option(0.3, "--threshold", help="Minimum score shown."),
    ) -> None:
        """Detect objects in images with a .tflite model; draw them and write detections.json (pixels)."""
        from spaghettinet.deploy.predict import predict

        result = predict(model, images, out, threshold=threshold)
        table = Table(title="detections")
        table.add_column("image")
        table.add_column("found")
        for picture, found in zip(result.pictures, result.detections, strict=True):
            table.add_row(picture.name, ", ".join(f"{d['label']} {d['score']:.2f}" for d in found) or "-")
        console.print(table)
        console.print(f"wrote {result.json_path}")

    @app.command("benchmark")
    def benchmark_command(
        model: Path = typer.Argument(..., help=".tflite model."),
        threads: int = typer.Option(1, "--threads", help="CPU threads."),
        runs: int = typer.Option(50, "--runs", help="Timed runs."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Median and p90 latency with LiteRT, model size and op counts."""
        from spaghettinet.evaluation.latency import benchmark

        result = benchmark(model, threads=threads, runs=runs)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        table = Table(title=f"{model.name}, {threads} thread(s), {runs} runs")
        table.add_column("measure")
        table.add_column("value")
        table.add_row("median latency", f"{result.median_ms:.2f} ms")
        table.add_row("p90 latency", f"{result.p90_ms:.2f} ms")
        table.add_row("size", f"{result.size_bytes / 1e6:.2f} MB")
        table.add_row("input", f"{result.input_type} {result.input_shape}")
        table.add_row("ops", ", ".join(f"{k} {v}" for k, v in result.op_counts.items()))
        console.print(table)
