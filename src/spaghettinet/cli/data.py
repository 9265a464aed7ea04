"""CLI commands of the data stage: validate, split, xml2csv, labelmap, tfrecord, data make-demo, data convert.

Each command calls the Python API in :mod:`spaghettinet.data` and prints with rich. Commands write everything
valid, list every bad file with its reason, and exit with code 1 when any file had an error (2 for usage errors).
Only ``tfrecord`` imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from spaghettinet.errors import DataError

from .console import console, err_console, styled

data_app = typer.Typer(
    help="Dataset helpers: the demo dataset, conversion between VOC, COCO and YOLO.", no_args_is_help=True
)

_FORMAT_HELP = (
    "Annotation format: voc, coco or yolo (default: detected from the folder: .xml files, a COCO json, or "
    "labels/*.txt)."
)

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_MAX_LISTED = 200  # a folder of 10 000 broken files should not scroll for minutes; the JSON has them all


def _print_problems(problems, to_console=None, limit: int = _MAX_LISTED, with_info: bool = False) -> None:
    out = to_console or err_console
    if (
        not with_info
    ):  # notes such as "no objects" belong to `validate`; other commands list what needs action
        problems = [p for p in problems if p.severity != "info"]
    for problem in problems[:limit]:
        style = _SEVERITY_STYLE.get(problem.severity, "")
        out.print(
            styled(
                (problem.severity, style),
                f": {problem.file}: {problem.message} ",
                (f"({problem.kind})", "dim"),
            ),
            soft_wrap=True,
        )
    if len(problems) > limit:
        out.print(f"... and {len(problems) - limit} more (use --json for the full list)")


def _exit_on_errors(problems, what: str) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(f"{len(errors)} file(s) had errors and were left out of {what}; see the list above")


def _print_validation_coverage(report, input_size: int) -> None:
    """Anchor coverage per class of the valid pairs' boxes at ``input_size`` (ids in sorted class-name order)."""
    import numpy as np

    from spaghettinet.evaluation.coverage_report import anchor_coverage_report

    from .config import print_coverage_report

    names = sorted({obj.name for pair in report.pairs for obj in pair.annotation.objects})
    ids = {name: index + 1 for index, name in enumerate(names)}
    boxes, classes = [], []
    for pair in report.pairs:
        width, height = pair.image.width, pair.image.height
        for obj in pair.annotation.objects:
            boxes.append([obj.ymin / height, obj.xmin / width, obj.ymax / height, obj.xmax / width])
            classes.append(ids[obj.name])
    if not boxes:
        return
    size = (input_size, input_size)
    coverage = anchor_coverage_report(np.array(boxes, np.float32), np.array(classes), names, size)
    print_coverage_report(coverage, size, 0.5)


def validate_command(
    data_dir: Path = typer.Argument(
        ...,
        help="Folder of labelled images: VOC .xml beside them, a COCO json, or YOLO labels/ (subfolders searched).",
    ),
    annotations: Path | None = typer.Option(None, "--annotations", help="Separate folder of .xml files."),
    data_format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
    input_size: int | None = typer.Option(
        None,
        "--input-size",
        help="Model input size: flags tiny objects and reports the anchor coverage per class at that size.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only (for scripts)."),
) -> None:
    """Check a dataset folder (VOC, COCO or YOLO) and list every problem (exit 1 when there are errors)."""
    from spaghettinet.data.validate import validate

    report = validate(data_dir, annotations, input_size=input_size, format=data_format)
    if as_json:
        typer.echo(report.to_json())
        if not report.ok:
            raise typer.Exit(1)
        return
    summary = Table(title=f"Dataset {data_dir}", show_header=False)
    summary.add_row("format", report.format)
    summary.add_row("images found", str(report.images_found))
    summary.add_row("valid images", str(len(report.pairs)))
    summary.add_row("negative images (no object)", str(report.negative_images))
    summary.add_row("objects", str(report.num_objects))
    console.print(summary)
    classes = Table(title="Objects per class")
    classes.add_column("class")
    classes.add_column("objects", justify="right")
    for name, count in report.class_counts.items():
        classes.add_row(name, str(count))
    console.print(classes)
    if report.problems:
        kinds = Table(title="Problems by kind")
        kinds.add_column("severity")
        kinds.add_column("kind")
        kinds.add_column("files", justify="right")
        for (severity, kind), count in report.problems_by_kind().items():
            kinds.add_row(styled((severity, _SEVERITY_STYLE[severity])), kind, str(count))
        console.print(kinds)
        _print_problems(report.problems, console, with_info=True)
    if input_size is not None and report.pairs:
        _print_validation_coverage(report, input_size)
    if report.ok:
        console.print(
            styled(("OK", "green"), f": {len(report.pairs)} images ready, {len(report.warnings)} warning(s)")
        )
    else:
        raise DataError(f"{len(report.errors)} error(s); fix or remove those files", data_dir)


def split_command(
    data_dir: Path = typer.Argument(..., help="Folder of labelled images (VOC, COCO or YOLO)."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: train/, test/ and split.json are written there."
    ),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of images for test."),
    seed: int = typer.Option(0, "--seed", help="Split seed (same input and seed give the same split)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="Separate folder of .xml files."),
    data_format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
) -> None:
    """Split into OUT/train and OUT/test (images with VOC .xml, whatever the input format): deterministic,
    class-stratified; pairs with errors are left out."""
    from spaghettinet.data.split import split

    result = split(
        data_dir, out, test_fraction=test_fraction, seed=seed, annotations=annotations, format=data_format
    )
    table = Table(title=f"Split of {data_dir} (seed {seed})")
    table.add_column("class")
    table.add_column("train images", justify="right")
    table.add_column("test images", justify="right")
    for name in sorted(set(result.class_counts["train"]) | set(result.class_counts["test"])):
        table.add_row(
            name,
            str(result.class_counts["train"].get(name, 0)),
            str(result.class_counts["test"].get(name, 0)),
        )
    table.add_row(styled(("all images", "bold")), str(len(result.train)), str(len(result.test)))
    console.print(table)
    console.print(f"wrote {out / 'train'}, {out / 'test'} and {out / 'split.json'}")
    _print_problems(result.excluded)
    _exit_on_errors(result.excluded, "the split")


def xml2csv_command(
    split_dir: Path = typer.Argument(..., help="Folder holding train/ and test/ (from `split`)."),
) -> None:
    """Write DIR/train_labels.csv and DIR/test_labels.csv (the seed's columns, one row per object)."""
    from spaghettinet.data.csv_labels import xml2csv

    result = xml2csv(split_dir)
    for written in result.files:
        note = f", {written.negatives} image(s) without objects not listed" if written.negatives else ""
        console.print(f"wrote {written.path}: {written.objects} objects in {written.images} images{note}")
    _print_problems(result.problems)
    _exit_on_errors(result.problems, "the CSV files")


def labelmap_command(
    data_dir: Path = typer.Argument(
        ..., help="VOC folder or split folder whose .xml files name the classes."
    ),
    out: Path = typer.Option(..., "--out", help="The label map to write (label_map.pbtxt)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="Separate folder of .xml files."),
) -> None:
    """Write the label map: ids 1..N in sorted class-name order (TF OD API text format)."""
    from spaghettinet.data.labelmap import labelmap

    label_map = labelmap(data_dir, out, annotations=annotations)
    console.print(f"wrote {out}: {label_map.num_classes} classes")
    for class_id, name in zip(label_map.ids, label_map.names_by_id, strict=True):
        console.print(f"  {class_id}: {name}", highlight=False, markup=False)


def tfrecord_command(
    out: Path = typer.Option(..., "--out", help="Output record path (shards: OUT-00000-of-0000N)."),
    label_map: Path = typer.Option(..., "--label-map", help="The label map giving the class ids."),
    split_dir: Path | None = typer.Option(
        None, "--split-dir", help="One split's folder: images with their xml."
    ),
    csv: Path | None = typer.Option(None, "--csv", help="A label CSV (train_labels.csv); needs --images."),
    images: Path | None = typer.Option(None, "--images", help="Folder of the CSV's images."),
    shards: int = typer.Option(1, "--shards", help="Number of output files."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Processes preparing examples (default: one per core, at most 8; used from 2000 images).",
    ),
) -> None:
    """Write tf.train.Example TFRecords (TF OD API keys); bad images are listed and left out."""
    from spaghettinet.data.tfrecord import tfrecord

    result = tfrecord(
        out, label_map, split_dir=split_dir, csv=csv, images=images, shards=shards, workers=workers
    )
    files = ", ".join(str(p) for p in result.files)
    console.print(
        f"wrote {files}: {result.images} images, {result.objects} objects "
        f"({result.converted} converted to RGB JPEG, the rest stored as they were)"
    )
    _print_problems(result.problems)
    _exit_on_errors(result.problems, "the records")


@data_app.command("make-demo")
def make_demo_command(
    out_dir: Path = typer.Argument(..., help="Folder to create (JPEG + VOC xml side by side)."),
    images: int | None = typer.Option(None, "--images", help="Number of images (default 300)."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed; the same seed gives the same files."),
) -> None:
    """Make the synthetic demo dataset (4 classes: ball, block, star, triangle)."""
    from spaghettinet.data.demo import DEFAULT_IMAGES, make_demo

    result = make_demo(out_dir, images=images or DEFAULT_IMAGES, seed=seed)
    counts = ", ".join(f"{name} {count}" for name, count in result.objects_per_class.items())
    console.print(
        f"wrote {result.images} images to {out_dir} ({result.negatives} without objects; objects: {counts}) "
        f"in {result.seconds:.1f} s"
    )


@data_app.command("convert")
def convert_command(
    source: Path = typer.Argument(..., help="Dataset folder to read: VOC, COCO or YOLO."),
    to: str = typer.Option(..., "--to", help="Format to write: voc, coco or yolo."),
    out: Path = typer.Option(..., "--out", help="Folder to write: must not exist, or be empty."),
    data_format: str | None = typer.Option(None, "--format", help="Format of SOURCE (default: detected)."),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="SOURCE's separate folder of .xml files."
    ),
) -> None:
    """Write SOURCE as a VOC (image + .xml), COCO (images/ + labels.json, Model Maker's layout) or YOLO (images/,
    labels/, data.yaml; Ultralytics' layout) dataset. Boxes convert exactly; images with errors are listed and
    left out (exit 1)."""
    from spaghettinet.data.convert import convert

    result = convert(source, to, out, format=data_format, annotations=annotations)
    console.print(
        f"wrote {result.out} ({result.target_format}, from {result.source_format}): {result.images} images, "
        f"{result.objects} objects, {len(result.class_names)} classes",
        soft_wrap=True,
    )
    _print_problems(result.problems)
    _exit_on_errors(result.problems, "the converted dataset")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("validate")(validate_command)
    app.command("split")(split_command)
    app.command("xml2csv")(xml2csv_command)
    app.command("labelmap")(labelmap_command)
    app.command("tfrecord")(tfrecord_command)
    app.add_typer(data_app, name="data")
