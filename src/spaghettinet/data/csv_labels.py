"""The seed's label CSVs: ``filename,width,height,class,xmin,ymin,xmax,ymax``, one row per object.

``xml2csv(DIR)`` writes ``DIR/train_labels.csv`` and ``DIR/test_labels.csv`` from ``DIR/train`` and ``DIR/test``
(the layout :func:`spaghettinet.data.split.split` writes, and the seed's ``images/``). Boxes are in pixels, as in the
xml, clipped to the image when they overshoot by at most 1 %. The format has no row for an image without objects,
so negatives are counted in the result but not written (``tfrecord --split-dir`` keeps them).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.problems import ERROR, Problem
from spaghettinet.data.validate import check_pairs, pairing_problems
from spaghettinet.data.voc import VocAnnotation, VocObject, find_pairs
from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import read_user_text, write_text_atomic

CSV_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
"""The seed's xml_to_csv.py columns, in its order."""


@dataclass(frozen=True)
class CsvFile:
    """One CSV written by :func:`xml2csv`.

    Args:
        path: the CSV.
        images: images with at least one object (rows are written for these).
        objects: rows written.
        negatives: images without objects (not representable in the format, so not written).
    """

    path: Path
    images: int
    objects: int
    negatives: int


@dataclass(frozen=True)
class Xml2CsvResult:
    """What :func:`xml2csv` wrote, and the files it left out (errors) or noted."""

    files: list[CsvFile]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity error (their images have no rows)."""
        return [p for p in self.problems if p.severity == ERROR]


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def annotations_to_csv_text(annotations: list[tuple[str, VocAnnotation]]) -> str:
    """CSV text for ``(image file name, annotation)`` pairs, one row per object, in the given order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for filename, annotation in annotations:
        for obj in annotation.objects:
            writer.writerow(
                [filename, annotation.width, annotation.height, obj.name]
                + [_number_text(v) for v in (obj.xmin, obj.ymin, obj.xmax, obj.ymax)]
            )
    return buffer.getvalue()


def xml2csv(split_dir: str | Path) -> Xml2CsvResult:
    """Write ``train_labels.csv`` and ``test_labels.csv`` for a split folder.

    Args:
        split_dir: a folder holding ``train/`` and ``test/`` (images with their xml). A folder missing one of
            them gets only the CSV of the other.

    Returns:
        An :class:`Xml2CsvResult`; pairs with errors (unparseable xml, box far outside...) have no rows and are
        listed in ``problems``.

    Raises:
        UsageError: neither ``train/`` nor ``test/`` exists.

    Example:
        >>> result = xml2csv("images")
        >>> [f.path.name for f in result.files]
        ['train_labels.csv', 'test_labels.csv']
    """
    split_dir = Path(split_dir)
    subsets = [name for name in ("train", "test") if (split_dir / name).is_dir()]
    if not subsets:
        raise UsageError(
            "has neither train/ nor test/; run `spaghettinet split DATA_DIR --out DIR` first", split_dir
        )
    files, problems = [], []
    for name in subsets:
        scan = find_pairs(split_dir / name)
        checked, pair_problems = check_pairs(scan.pairs, full_decode=False)
        problems += [p for p in pair_problems if p.severity == ERROR]
        problems += pairing_problems(scan)
        rows = [(pair.image_path.name, pair.annotation) for pair in checked]
        path = write_text_atomic(split_dir / f"{name}_labels.csv", annotations_to_csv_text(rows))
        files.append(
            CsvFile(
                path=path,
                images=sum(1 for _, ann in rows if ann.objects),
                objects=sum(len(ann.objects) for _, ann in rows),
                negatives=sum(1 for _, ann in rows if not ann.objects),
            )
        )
    return Xml2CsvResult(files, problems)


@dataclass(frozen=True)
class CsvImage:
    """The rows of one image in a label CSV, as an annotation."""

    filename: str
    annotation: VocAnnotation


def read_label_csv(path: str | Path) -> tuple[list[CsvImage], list[Problem]]:
    """Read a label CSV (the seed's columns; extra columns are ignored) grouped by image, in first-seen order.

    Args:
        path: the CSV.

    Returns:
        ``(images, problems)``: rows with a non-numeric coordinate or an empty class make their image an error
        (listed in ``problems``, left out of ``images``).

    Raises:
        DataError: the file is missing, or lacks one of the columns.
    """
    path = Path(path)
    text = read_user_text(path, "label CSV")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}", path)
    objects: dict[str, list[VocObject]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    bad: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        filename = (row["filename"] or "").strip()
        if not filename:
            raise DataError(f"line {line}: empty filename", path)
        objects.setdefault(filename, [])
        try:
            numbers = [float(row[c]) for c in ("width", "height", "xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            bad.setdefault(filename, f"line {line}: a size or coordinate is not a number")
            continue
        if not all(math.isfinite(v) for v in numbers):
            bad.setdefault(filename, f"line {line}: a size or coordinate is NaN or infinite")
            continue
        name = (row["class"] or "").strip()
        if not name:
            bad.setdefault(filename, f"line {line}: empty class name")
            continue
        sizes[filename] = (int(numbers[0]), int(numbers[1]))
        objects[filename].append(VocObject(name, *numbers[2:]))
    images, problems = [], []
    for filename, image_objects in objects.items():
        if filename in bad:
            problems.append(Problem(path, "bad-coordinate", ERROR, f"{filename}: {bad[filename]}"))
            continue
        width, height = sizes[filename]
        images.append(
            CsvImage(filename, VocAnnotation(path, filename, width, height, 3, tuple(image_objects)))
        )
    return images, problems
