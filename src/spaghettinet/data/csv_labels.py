"""The seed's label CSVs: ``filename,width,height,class,xmin,ymin,xmax,ymax``, one row per object.

``xml2csv(DIR)`` writes ``DIR/train_labels.csv`` and ``DIR/test_labels.csv`` from ``DIR/train`` and ``DIR/test``
(the layout :func:`spaghettinet.data.split.split` writes, and the seed's ``images/``). Boxes are in pixels, as in the
xml, clipped to the image when they overshoot by at most 1 %. The format has no row for an image without objects,
so negatives are counted in the result but not written (``tfrecord --split-dir`` keeps them).

What :func:`xml2csv` writes, :func:`read_label_csv` reads back exactly (tested with hostile names):

* Fields are quoted as RFC 4180 says when they hold a comma, a quote, a carriage return or a line feed, and the
  file is read with ``newline=""`` (as the :mod:`csv` module requires), so a name keeps its ``\r``; names are
  never stripped, so a leading space survives.
* A text field (file or class name) that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
  would run as a formula in a spreadsheet (OWASP, "CSV Injection"): it is written with a ``'`` in front, which
  spreadsheets show as text, and a field that starts with ``'`` gets one more, so that reading drops exactly one
  and the name comes back as it was.
* File names must stay inside the image folder: an absolute path or a ``..`` part is refused with the line.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

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


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP "CSV Injection",
# owasp.org/www-community/attacks/CSV_Injection); the quote itself is there so that the escape reads back exactly.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: a ``'`` in front when it could start a formula.

    Example:
        >>> spreadsheet_text("=1+1"), spreadsheet_text("cat"), spreadsheet_text("'quoted")
        ("'=1+1", 'cat', "''quoted")
    """
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def plain_text(cell: str) -> str:
    """The text :func:`spreadsheet_text` was given (one leading ``'`` dropped).

    Example:
        >>> plain_text("'=1+1"), plain_text("cat")
        ('=1+1', 'cat')
    """
    return cell[1:] if cell.startswith("'") else cell


def annotations_to_csv_text(annotations: list[tuple[str, VocAnnotation]]) -> str:
    """CSV text for ``(image file name, annotation)`` pairs, one row per object, in the given order.

    File and class names are written as :func:`spreadsheet_text`; :func:`read_label_csv` gives them back exactly.
    """
    lines = [",".join(CSV_COLUMNS)]
    for filename, annotation in annotations:
        for obj in annotation.objects:
            cells = [
                _text_cell(filename),
                str(annotation.width),
                str(annotation.height),
                _text_cell(obj.name),
            ]
            lines.append(
                ",".join(cells + [_number_text(v) for v in (obj.xmin, obj.ymin, obj.xmax, obj.ymax)])
            )
    return "\n".join(lines) + "\n"


def _text_cell(text: str) -> str:
    """A text field as RFC 4180 writes it: quoted (quotes doubled) when it holds a comma, a quote, a carriage
    return or a line feed. Python's csv.writer would leave a lone carriage return unquoted with "\\n" line ends, and
    a reader would then split the row in two."""
    text = spreadsheet_text(text)
    if any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


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


def _outside_reason(filename: str) -> str | None:
    """Why ``filename`` may not be looked up in the image folder, or None: it must be a relative path inside it."""
    if "\0" in filename:
        return "the file name holds a NUL character"
    pure = PurePosixPath(filename.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(filename).drive:
        return f"the file name {filename!r} is an absolute path; give names relative to --images"
    if ".." in pure.parts:
        return f"the file name {filename!r} climbs out of the image folder ('..'); give names relative to --images"
    return None


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
        ``(images, problems)``: rows with a non-numeric coordinate, an empty class or a file name outside the
        image folder make their image an error (listed in ``problems``, naming the line; left out of ``images``).
        File and class names are read exactly as written (see the module docstring).

    Raises:
        DataError: the file is missing, or lacks one of the columns.
    """
    path = Path(path)
    # newline="": a carriage return inside a quoted name stays one (text mode would turn it into a line feed).
    text = read_user_text(path, "label CSV", newline="")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}", path)
    objects: dict[str, list[VocObject]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    bad: dict[str, tuple[str, str]] = {}
    for row in reader:
        line = reader.line_num  # the row's last physical line: a quoted line break spans several
        filename = plain_text(row["filename"] or "")
        if not filename.strip():
            raise DataError(f"line {line}: empty filename", path)
        objects.setdefault(filename, [])
        outside = _outside_reason(filename)
        if outside:
            bad.setdefault(filename, ("bad-filename", f"line {line}: {outside}"))
            continue
        try:
            numbers = [float(row[c]) for c in ("width", "height", "xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            bad.setdefault(filename, ("bad-coordinate", f"line {line}: a size or coordinate is not a number"))
            continue
        if not all(math.isfinite(v) for v in numbers):
            bad.setdefault(
                filename, ("bad-coordinate", f"line {line}: a size or coordinate is NaN or infinite")
            )
            continue
        name = plain_text(row["class"] or "")
        if not name.strip():
            bad.setdefault(filename, ("empty-class-name", f"line {line}: empty class name"))
            continue
        sizes[filename] = (int(numbers[0]), int(numbers[1]))
        objects[filename].append(VocObject(name, *numbers[2:]))
    images, problems = [], []
    for filename, image_objects in objects.items():
        if filename in bad:
            kind, reason = bad[filename]
            problems.append(Problem(path, kind, ERROR, f"{filename!r}: {reason}"))
            continue
        width, height = sizes[filename]
        images.append(
            CsvImage(filename, VocAnnotation(path, filename, width, height, 3, tuple(image_objects)))
        )
    return images, problems
