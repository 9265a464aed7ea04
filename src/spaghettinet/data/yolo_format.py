"""YOLO datasets (Ultralytics, Roboflow): read ``labels/*.txt`` with their class names, and write them.

The format (https://docs.ultralytics.com/datasets/detect/): one ``.txt`` per image, one line per object,
``class cx cy w h``: a 0-based class index, then the box centre and size as fractions of the image's width and
height. An image without a label file, or with an empty one, has no object (Ultralytics trains on such images as
backgrounds; here they are kept as negatives, the missing file noted). What is read, and how:

* **Which label file.** As Ultralytics' ``img2label_paths``: the last ``images`` folder of the image's path becomes
  ``labels`` and the suffix ``.txt`` (``images/train/a.jpg`` → ``labels/train/a.txt``, Roboflow's
  ``train/images/a.jpg`` → ``train/labels/a.txt``); without an ``images`` folder the label lies beside the image.
  Every image in the folder is read; ``data.yaml``'s ``train:``/``val:`` are not followed (they may point outside
  the folder, Roboflow's ``../train/images``) and the split is made here.
* **Class names** from ``data.yaml`` (or ``data.yml``, ``dataset.yaml``, or the only ``.yaml`` in the folder):
  ``names:`` as a list (``[cat, dog]`` or ``- cat`` lines) or a dict (``0: cat`` lines or ``{0: cat}``), checked
  against ``nc:`` when given; else ``classes.txt`` (one name a line, labelImg's YOLO mode) in the folder or in
  ``labels/``.
* **YAML without a YAML library.** PyYAML is not among this project's dependencies, so :func:`parse_data_yaml` reads
  the small part of YAML these files use: top-level ``key: value`` lines, plain and quoted scalars, one-line flow
  lists and maps, and one level of block lists and maps. Keys other than ``names`` and ``nc`` are skipped whatever
  they hold (Ultralytics' own files carry a ``download:`` script). Anything it cannot read is a named problem with
  the line, never code run: there are no tags, anchors or object constructors to abuse.
* **Polygons** (``class x1 y1 x2 y2 ...``, Ultralytics' segmentation labels) give their bounding box, as Ultralytics
  does for detection.
* **Hostile input** is a named problem with the file and line: not UTF-8, over
  :data:`~spaghettinet.data.formats.MAX_LABEL_TEXT_BYTES`, a line that is not numbers, a class index beyond the
  names, coordinates that are pixels rather than fractions; boxes outside the image or of no size are checked by
  :func:`spaghettinet.data.validate.check_objects` once the image's size is known.

Corners are ``(cx ∓ w/2) × width`` and ``(cy ∓ h/2) × height``, rounded to
:data:`~spaghettinet.data.formats.PIXEL_DECIMALS`; :func:`yolo_label_text` writes every fraction with ``repr`` (the
shortest decimal that reads back as the same float), so integer corners come back as the same integers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.formats import (
    MAX_LABEL_TEXT_BYTES,
    PIXEL_DECIMALS,
    LabelScan,
    decode_label_text,
    is_yolo_label,
    keep_unique_stems,
    read_label_bytes,
)
from spaghettinet.data.problems import ERROR, INFO, WARNING, Problem, ProblemError
from spaghettinet.data.voc import (
    IMAGE_EXTENSIONS,
    ImageXmlPair,
    ReadLabels,
    VocAnnotation,
    VocObject,
    find_files,
)

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
"""Class-name files looked for first, in this order."""

#: A YOLO coordinate above this is no fraction of the image: the file holds pixels.
_NOT_A_FRACTION = 2.0
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ClassNames:
    """The class names of a YOLO dataset.

    Args:
        names: class index -> name.
        path: the file they came from.
    """

    names: dict[int, str]
    path: Path


# ----------------------------------------------------------------------------------------------------------------
# data.yaml: the subset Ultralytics and Roboflow write
# ----------------------------------------------------------------------------------------------------------------


def _yaml_error(path: Path, line: int, message: str) -> ProblemError:
    return ProblemError("unparseable-yaml", f"line {line}: {message}", path)


def _unquoted(text: str) -> tuple[list[tuple[int, str]], bool]:
    """The characters of ``text`` outside quoted strings, with their index, and whether the last quote closed.

    A quote opens a string only where YAML starts a scalar (at the start, or after a blank or ``[{,:``), so the
    apostrophe of ``it's`` is text; ``''`` inside single quotes and ``\\"`` inside double ones do not close them.
    """
    outside, quote, index = [], None, 0
    while index < len(text):
        char = text[index]
        if quote is None:
            if char in "'\"" and (index == 0 or text[index - 1] in " \t[{,:"):
                quote = char
            else:
                outside.append((index, char))
        elif quote == '"' and char == "\\":
            index += 1  # the escaped character
        elif char == quote:
            if quote == "'" and text[index + 1 : index + 2] == "'":
                index += 1
            else:
                quote = None
        index += 1
    return outside, quote is None


def _strip_comment(text: str) -> str:
    """``text`` without its ``# comment`` (a ``#`` at the start or after a blank, outside quotes)."""
    for index, char in _unquoted(text)[0]:
        if char == "#" and (index == 0 or text[index - 1] in " \t"):
            return text[:index].rstrip()
    return text.rstrip()


_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _double_quoted(text: str, path: Path, line: int) -> tuple[str, str]:
    """Read a ``"..."`` scalar at the start of ``text``; return ``(value, the rest)`` (YAML 1.2, section 7.3.1)."""
    out = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(out), text[index + 1 :]
        if char == "\\":
            code = text[index + 1 : index + 2]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                index += 2
                continue
            digits = _HEX_ESCAPES.get(code)
            hex_text = text[index + 2 : index + 2 + digits] if digits else ""
            if digits and len(hex_text) == digits and all(c in "0123456789abcdefABCDEF" for c in hex_text):
                value = int(hex_text, 16)
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise _yaml_error(path, line, f"\\{code}{hex_text} is not a Unicode character")
                out.append(chr(value))
                index += 2 + digits
                continue
            raise _yaml_error(path, line, f"unknown escape \\{code} in a double-quoted string")
        out.append(char)
        index += 1
    raise _yaml_error(path, line, "a double-quoted string is not closed on its line")


def _single_quoted(text: str, path: Path, line: int) -> tuple[str, str]:
    out = []
    index = 1
    while index < len(text):
        if text[index] == "'":
            if text[index + 1 : index + 2] == "'":
                out.append("'")
                index += 2
                continue
            return "".join(out), text[index + 1 :]
        out.append(text[index])
        index += 1
    raise _yaml_error(path, line, "a single-quoted string is not closed on its line")


def _scalar(text: str, path: Path, line: int) -> str | None:
    """One scalar: quoted (escapes decoded) or plain (as written); None for an empty or null one."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        value, rest = (_double_quoted if text[0] == '"' else _single_quoted)(text, path, line)
        if rest.strip():
            raise _yaml_error(path, line, f"unexpected text after a quoted string: {rest.strip()!r}")
        return value
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text[0] in "&*!%@`|>[]{}":
        raise _yaml_error(
            path,
            line,
            f"{text!r}: YAML anchors, aliases, tags and nested values are not read here; quote the text",
        )
    return text


def _split_flow(text: str, path: Path, line: int) -> list[str]:
    """The comma-separated items of a flow collection's inside, quotes respected."""
    outside, closed = _unquoted(text)
    if not closed:
        raise _yaml_error(path, line, "a quoted string is not closed")
    items, start = [], 0
    for index, char in outside:
        if char in "[]{}":
            raise _yaml_error(path, line, "nested lists or maps are not read here")
        if char == ",":
            items.append(text[start:index])
            start = index + 1
    items.append(text[start:])
    if items and not items[-1].strip():
        items.pop()  # a trailing comma
    return items


def _map_item(text: str, path: Path, line: int) -> tuple[str, str | None]:
    """``key: value`` → ``(key, value)``; the key may be quoted."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        key, rest = (_double_quoted if text[0] == '"' else _single_quoted)(text, path, line)
        rest = rest.lstrip()
        if not rest.startswith(":"):
            raise _yaml_error(path, line, f"expected 'key: value', found {text!r}")
        return key, _scalar(rest[1:], path, line)
    match = re.match(r"([^:]+?)\s*:(?:\s+(.*))?$", text)
    if match is None:
        raise _yaml_error(path, line, f"expected 'key: value', found {text!r}")
    return match.group(1), _scalar(match.group(2) or "", path, line)


def _flow(text: str, path: Path, line: int) -> list | dict:
    text = text.strip()
    closing = "]" if text[0] == "[" else "}"
    if not text.endswith(closing):
        raise _yaml_error(path, line, f"a {text[0]}...{closing} value is not closed")
    items = _split_flow(text[1:-1], path, line)
    if closing == "]":
        return [_scalar(item, path, line) for item in items]
    result: dict = {}
    for item in items:
        key, value = _map_item(item, path, line)
        if key in result:
            raise _yaml_error(path, line, f"the key {key!r} is given twice")
        result[key] = value
    return result


def _block(lines: list[tuple[int, str]], path: Path) -> list | dict | None:
    """One level of ``- item`` lines or ``key: value`` lines."""
    if not lines:
        return None
    if all(text.lstrip().startswith("-") for _, text in lines):
        items = []
        for number, text in lines:
            item = text.lstrip()[1:]
            if item and not item[0].isspace():
                raise _yaml_error(path, number, f"expected '- item', found {text.strip()!r}")
            if item.strip().startswith(("[", "{")) or (
                item.strip()[:1] not in ("'", '"') and re.match(r"\s*[^:]+:(\s|$)", item)
            ):
                raise _yaml_error(path, number, "nested lists or maps are not read here")
            items.append(_scalar(item, path, number))
        return items
    result: dict = {}
    for number, text in lines:
        if text.lstrip().startswith("-"):
            raise _yaml_error(path, number, "a list item among 'key: value' lines")
        key, value = _map_item(text, path, number)
        if key in result:
            raise _yaml_error(path, number, f"the key {key!r} is given twice")
        result[key] = value
    return result


def parse_data_yaml(text: str, path: Path) -> dict[str, tuple[int, object]]:
    """Read the top level of a ``data.yaml``: ``{key: (line, value)}``.

    Values: a string (None when empty), a list or a dict of strings (flow or one block level). Block scalars
    (``key: |``) and deeper blocks are kept as None: only ``names`` and ``nc`` are used, and those are never such.

    Raises:
        ProblemError (``unparseable-yaml``): a line that is not ``key: value`` at the top level, a key given twice,
            a quoted string not closed, an unknown escape, anchors, aliases or tags.

    Example:
        >>> parse_data_yaml("nc: 2\\nnames: ['cat', dog]  # two\\n", Path("data.yaml"))["names"]
        (2, ['cat', 'dog'])
    """
    raw_lines = text.splitlines()
    result: dict[str, tuple[int, object]] = {}
    index = 0
    while index < len(raw_lines):
        number, raw = index + 1, raw_lines[index]
        content = _strip_comment(raw)
        index += 1
        if not content.strip() or content in ("---", "..."):
            continue
        if content[0].isspace():
            raise _yaml_error(path, number, "an indented line outside any key")
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise _yaml_error(path, number, "tabs cannot indent YAML")
        match = _KEY.match(content)
        if match is None or not content[match.end() :].startswith(":"):
            raise _yaml_error(
                path, number, f"expected 'key: value' at the top level, found {content.strip()!r}"
            )
        key = match.group(0)
        rest = content[match.end() + 1 :]
        if rest and not rest[0].isspace():
            raise _yaml_error(path, number, f"expected a blank after '{key}:'")
        rest = rest.strip()
        if key in result:
            raise _yaml_error(
                path, number, f"the key {key!r} is given twice (first on line {result[key][0]})"
            )
        # The block under the key: more indented lines, or '- item' lines at the key's own indentation.
        block: list[tuple[int, str]] = []
        while index < len(raw_lines):
            following = _strip_comment(raw_lines[index])
            if (
                following.strip()
                and not following[0].isspace()
                and not (rest == "" and following.startswith("-"))
            ):
                break
            if following.strip():
                block.append((index + 1, following))
            index += 1
        if rest.startswith(("|", ">")):
            result[key] = (number, None)  # a block scalar (a script): never a name
        elif rest.startswith(("[", "{")):
            # A flow value may go on over the following indented lines.
            whole = " ".join([rest] + [text.strip() for _, text in block])
            result[key] = (number, _flow(whole, path, number) if key in ("names", "nc") else None)
        elif rest:
            if block:
                raise _yaml_error(path, block[0][0], f"an indented line under '{key}: {rest}'")
            result[key] = (number, _scalar(rest, path, number))
        else:
            depth = {len(text) - len(text.lstrip()) for _, text in block}
            if key in ("names", "nc"):
                if len(depth) > 1:
                    raise _yaml_error(path, block[0][0], f"'{key}:' holds lines of different indentation")
                result[key] = (number, _block(block, path))
            else:
                result[key] = (number, None)
    return result


def _names_from_yaml(path: Path) -> dict[int, str]:
    text = decode_label_text(read_label_bytes(path, MAX_LABEL_TEXT_BYTES, "data.yaml"), path, "data.yaml")
    document = parse_data_yaml(text, path)
    if "names" not in document or document["names"][1] is None:
        raise ProblemError("no-class-names", "no 'names:' (the class names) in this file", path)
    line, value = document["names"]
    names: dict[int, str] = {}
    if isinstance(value, list):
        names = dict(enumerate(value))
    elif isinstance(value, dict):
        for key, name in value.items():
            if not key.isdigit():
                raise _yaml_error(path, line, f"names: the key {key!r} is not a class index (0, 1, ...)")
            if int(key) in names:
                raise _yaml_error(path, line, f"names: the class index {int(key)} is given twice")
            names[int(key)] = name
    else:
        raise _yaml_error(path, line, "names: expected a list or a map of class names")
    for class_index, name in names.items():
        if name is None or not name.strip():
            raise _yaml_error(path, line, f"names: class {class_index} has an empty name")
    if "nc" in document:
        nc_line, nc = document["nc"]
        if not isinstance(nc, str) or not nc.isdigit() or int(nc) != len(names):
            raise _yaml_error(path, nc_line, f"nc: {nc!r} but names holds {len(names)} class(es)")
    return {class_index: name.strip() for class_index, name in sorted(names.items())}


def _names_from_classes_txt(path: Path) -> dict[int, str]:
    text = decode_label_text(read_label_bytes(path, MAX_LABEL_TEXT_BYTES, "classes.txt"), path, "classes.txt")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, name in enumerate(lines, start=1):
        if not name.strip():
            raise ProblemError("empty-class-name", f"line {number} is empty: each line names one class", path)
    if not lines:
        raise ProblemError("no-class-names", "the file names no class", path)
    return {index: name.strip() for index, name in enumerate(lines)}


def read_class_names(data_dir: str | Path, problems: list[Problem] | None = None) -> ClassNames:
    """The class names of a YOLO dataset: ``data.yaml``'s ``names``, else ``classes.txt`` (see the module docstring).

    Args:
        data_dir: the dataset folder.
        problems: warnings are appended here (two indices with one name: their boxes become one class).

    Returns:
        :class:`ClassNames`.

    Raises:
        ProblemError: no class-name file, several candidate yaml files, or a file that cannot be read (the line and
            reason).

    Example:
        >>> read_class_names("yolo-data").names
        {0: 'ball', 1: 'block'}
    """
    data_dir = Path(data_dir)
    problems = [] if problems is None else problems
    path = next((data_dir / name for name in YAML_NAMES if (data_dir / name).is_file()), None)
    if path is None:
        others = sorted(
            p for p in data_dir.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file()
        )
        if len(others) > 1:
            listing = ", ".join(p.name for p in others)
            raise ProblemError(
                "no-class-names",
                f"several yaml files ({listing}) and no data.yaml: name the one with the class names data.yaml",
                data_dir,
            )
        path = others[0] if others else None
    if path is not None:
        names = _names_from_yaml(path)
    else:
        path = next(
            (p for p in (data_dir / "classes.txt", data_dir / "labels" / "classes.txt") if p.is_file()), None
        )
        if path is None:
            raise ProblemError(
                "no-class-names",
                "no class names: a YOLO dataset needs data.yaml with 'names:' (as Ultralytics and Roboflow write "
                "it) or classes.txt (one name a line)",
                data_dir,
            )
        names = _names_from_classes_txt(path)
    first_index: dict[str, int] = {}
    for class_index, name in names.items():
        if name in first_index:
            problems.append(
                Problem(
                    path,
                    "duplicate-class-name",
                    WARNING,
                    f"classes {first_index[name]} and {class_index} are both named {name!r}: their boxes are one "
                    "class here",
                )
            )
        first_index.setdefault(name, class_index)
    return ClassNames(names, path)


# ----------------------------------------------------------------------------------------------------------------
# Label files
# ----------------------------------------------------------------------------------------------------------------


def label_path_for(image_path: Path, data_dir: Path) -> Path:
    """The label file Ultralytics reads for an image: the last ``images`` folder of its path (below ``data_dir``)
    replaced by ``labels``, the suffix by ``.txt``; beside the image when there is no ``images`` folder.

    Example:
        >>> label_path_for(Path("d/images/train/a.jpg"), Path("d"))
        PosixPath('d/labels/train/a.txt')
    """
    parts = list(image_path.relative_to(data_dir).parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return (data_dir.joinpath(*parts)).with_suffix(".txt")


def _number(text: str, path: Path, line: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProblemError("bad-coordinate", f"line {line}: {what} {text!r} is not a number", path) from None
    if not math.isfinite(value):
        raise ProblemError("bad-coordinate", f"line {line}: {what} {text!r} is not a finite number", path)
    return value


def parse_yolo_label_text(
    text: str, path: Path, names: dict[int, str]
) -> tuple[tuple[VocObject, ...], tuple[str, ...]]:
    """The objects of one YOLO label file, corners as fractions of the image size, and a label per object
    (``"line 3"``).

    Args:
        text: the file's text.
        path: the file, for messages.
        names: class index -> name.

    Raises:
        ProblemError: a line that is not ``class cx cy w h`` (or a polygon), a class index that is not a
            non-negative integer or has no name, a coordinate that is not a finite number or is in pixels.

    Example:
        >>> parse_yolo_label_text("0 0.5 0.5 0.2 0.4\\n", Path("a.txt"), {0: "cat"})[0][0].xmin
        0.4
    """
    objects, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        polygon = len(fields) >= 7 and len(fields) % 2 == 1
        if len(fields) != 5 and not polygon:
            raise ProblemError(
                "bad-label-line",
                f"line {number}: expected 'class cx cy w h' (5 fields) or a polygon, found {len(fields)} field(s)",
                path,
            )
        class_text = fields[0]
        try:
            class_value = float(class_text)
        except ValueError:
            class_value = -1.0
        if not math.isfinite(class_value) or class_value < 0 or not class_value.is_integer():
            raise ProblemError(
                "bad-class", f"line {number}: the class {class_text!r} is not an index (0, 1, ...)", path
            )
        if int(class_value) not in names:
            highest = max(names) if names else -1
            raise ProblemError(
                "unknown-class",
                f"line {number}: class {int(class_value)} is beyond the names ({len(names)} class(es), 0 to "
                f"{highest})",
                path,
            )
        values = [_number(field, path, number, "coordinate") for field in fields[1:]]
        if any(abs(value) > _NOT_A_FRACTION for value in values):
            raise ProblemError(
                "bad-coordinate",
                f"line {number}: {max(values, key=abs):g} is not a fraction of the image size (YOLO coordinates run "
                "from 0 to 1); are these pixels?",
                path,
            )
        if polygon:
            xs, ys = values[0::2], values[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        else:
            cx, cy, w, h = values
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        objects.append(VocObject(names[int(class_value)], *box))
        labels.append(f"line {number}")
    return tuple(objects), tuple(labels)


def scale_normalized(annotation: VocAnnotation, width: int, height: int) -> VocAnnotation:
    """An annotation with fractional corners (YOLO) in pixels of a ``width`` x ``height`` image, rounded to
    :data:`~spaghettinet.data.formats.PIXEL_DECIMALS`.

    Example:
        >>> ann = VocAnnotation(Path("a.txt"), "a.jpg", 0, 0, 0, (VocObject("cat", 0.25, 0.5, 0.75, 1.0),))
        >>> scale_normalized(ann, 64, 48).objects[0]
        VocObject(name='cat', xmin=16.0, ymin=24.0, xmax=48.0, ymax=48.0, difficult=False, truncated=False)
    """
    objects = tuple(
        VocObject(
            obj.name,
            round(obj.xmin * width, PIXEL_DECIMALS),
            round(obj.ymin * height, PIXEL_DECIMALS),
            round(obj.xmax * width, PIXEL_DECIMALS),
            round(obj.ymax * height, PIXEL_DECIMALS),
            obj.difficult,
            obj.truncated,
        )
        for obj in annotation.objects
    )
    return VocAnnotation(annotation.xml_path, annotation.filename, width, height, annotation.depth, objects)


def read_yolo(data_dir: str | Path) -> LabelScan:
    """Read a YOLO dataset: every image under ``data_dir`` with its label file and the class names.

    Args:
        data_dir: the dataset folder.

    Returns:
        A :class:`~spaghettinet.data.formats.LabelScan`; each pair's ``xml_path`` is its label file (the label file
        it would have, for a negative without one), its labels normalized (scaled once the image is decoded).

    Example:
        >>> scan = read_yolo("roboflow-export")
        >>> scan.pairs[0].xml_path
        PosixPath('roboflow-export/train/labels/a.txt')
    """
    data_dir = Path(data_dir)
    scan = LabelScan()
    files, unreadable = find_files(data_dir, (*IMAGE_EXTENSIONS, ".txt"))
    scan.problems += [Problem(path, "unreadable-file", ERROR, reason) for path, reason in unreadable]
    images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
    scan.images_found = len(images)
    try:
        class_names = read_class_names(data_dir, scan.problems)
    except ProblemError as exc:
        # Without names no box can be read: every image is left out, and this one problem says why.
        scan.problems.append(exc.to_problem())
        return scan
    claimed: set[Path] = set()
    read: list[ImageXmlPair] = []
    for image_path in images:
        label_path = label_path_for(image_path, data_dir)
        claimed.add(label_path)
        if not label_path.is_file():
            objects, object_labels = (), ()
            scan.problems.append(
                Problem(
                    image_path,
                    "missing-label-file",
                    INFO,
                    f"no label file {label_path}: kept as a negative image (no objects), as Ultralytics does",
                )
            )
        else:
            try:
                data = read_label_bytes(label_path, MAX_LABEL_TEXT_BYTES, "YOLO label file")
                text = decode_label_text(data, label_path, "YOLO label file")
                objects, object_labels = parse_yolo_label_text(text, label_path, class_names.names)
            except ProblemError as exc:
                scan.problems.append(exc.to_problem())
                continue
        annotation = VocAnnotation(label_path, image_path.name, 0, 0, 0, objects)
        labels = ReadLabels(annotation, normalized=True, object_labels=object_labels)
        read.append(ImageXmlPair(image_path.stem, image_path, label_path, labels))
    for path in files:
        if is_yolo_label(path.relative_to(data_dir)) and path not in claimed:
            scan.problems.append(
                Problem(
                    path,
                    "label-without-image",
                    ERROR,
                    "no image found for this label file (images/ beside labels/)",
                )
            )
    keep_unique_stems(scan, read, lambda pair: str(pair.image_path))
    return scan


def _fraction(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def yolo_label_text(annotation: VocAnnotation, class_index: dict[str, int]) -> str:
    """A YOLO label file for an annotation in pixels: ``class cx cy w h`` lines, fractions written exactly.

    Args:
        annotation: boxes in pixels, with the image's ``width`` and ``height``.
        class_index: class name -> 0-based index.

    Example:
        >>> ann = VocAnnotation(Path("a.xml"), "a.jpg", 64, 48, 3, (VocObject("cat", 16, 24, 48, 48),))
        >>> yolo_label_text(ann, {"cat": 0})
        '0 0.5 0.75 0.5 0.5\\n'
    """
    width, height = annotation.width, annotation.height
    lines = []
    for obj in annotation.objects:
        values = (
            (obj.xmin + obj.xmax) / 2 / width,
            (obj.ymin + obj.ymax) / 2 / height,
            (obj.xmax - obj.xmin) / width,
            (obj.ymax - obj.ymin) / height,
        )
        lines.append(" ".join([str(class_index[obj.name])] + [_fraction(value) for value in values]))
    return "".join(line + "\n" for line in lines)


def _yaml_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that :func:`parse_data_yaml` and YAML 1.2 parsers read back."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029\ufeff":
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def data_yaml_text(class_names: list[str], images: str = "images") -> str:
    """An Ultralytics ``data.yaml`` for a dataset whose images are all in ``images`` (train and val both, the split
    being the user's to make), its names a map from index to quoted name.

    Example:
        >>> print(data_yaml_text(["cat", "dog"]), end="")
        # written by spaghettinet data convert (https://docs.ultralytics.com/datasets/detect/)
        train: images
        val: images
        nc: 2
        names:
          0: "cat"
          1: "dog"
    """
    lines = [
        "# written by spaghettinet data convert (https://docs.ultralytics.com/datasets/detect/)",
        f"train: {images}",
        f"val: {images}",
        f"nc: {len(class_names)}",
        "names:",
    ]
    lines += [f"  {index}: {_yaml_quoted(name)}" for index, name in enumerate(class_names)]
    return "\n".join(lines) + "\n"


__all__ = [
    "YAML_NAMES",
    "ClassNames",
    "data_yaml_text",
    "label_path_for",
    "parse_data_yaml",
    "parse_yolo_label_text",
    "read_class_names",
    "read_yolo",
    "scale_normalized",
    "yolo_label_text",
]
