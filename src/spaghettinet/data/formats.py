"""Which annotation format a dataset folder holds (Pascal VOC, COCO JSON or YOLO), and reading it into VOC records.

Three layouts are accepted, each as the tools that write it leave it:

* **voc**: ``.xml`` files beside the images (labelImg) or in a separate folder (``--annotations``), paired by stem.
* **coco**: a COCO "instances" json (``images``, ``annotations``, ``categories``; https://cocodataset.org/#format-data)
  and its images, e.g. MediaPipe Model Maker's ``labels.json`` + ``images/`` (``Dataset.from_coco_folder``),
  FiftyOne's ``labels.json`` + ``data/``, COCO's own ``annotations/instances_val2017.json`` + ``val2017/``, or
  Roboflow's ``train/_annotations.coco.json`` beside its images (several jsons are read together).
* **yolo**: ``labels/*.txt`` with one ``class cx cy w h`` line per object (fractions of the image size) and class
  names from ``data.yaml`` (``names:``, a list or a dict) or ``classes.txt``, as Ultralytics and Roboflow export it
  (https://docs.ultralytics.com/datasets/detect/). An image's labels are found as Ultralytics finds them: the last
  ``images`` folder of its path replaced by ``labels`` and the suffix by ``.txt``, so ``images/``, ``images/train``
  + ``images/val`` and Roboflow's ``train/images`` all work.

:func:`detect_format` tells them apart by what the folder holds; ``--format`` (the ``format`` argument) forces one.
Every reader yields the same records, :class:`~spaghettinet.data.voc.ImageXmlPair` with the labels as
:class:`~spaghettinet.data.voc.VocAnnotation`, so everything after validation is one pipeline; ``split`` writes VOC
xml for the other formats, and ``data convert`` (:mod:`spaghettinet.data.convert`) writes any format from any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from spaghettinet.data.problems import ERROR, Problem, ProblemError
from spaghettinet.data.voc import ImageXmlPair, read_capped
from spaghettinet.errors import UsageError

FORMATS = ("voc", "coco", "yolo")
"""The annotation formats read and written."""

PIXEL_DECIMALS = 6
"""Box corners computed from another format's numbers (COCO's ``x + width``, YOLO's fractions times the image size)
are rounded to this many decimals of a pixel: the rounding removes the float noise of that arithmetic (about
1e-12 px), so integer corners come back as the same integers, and no labelling tool measures finer than 1e-6 px."""

MAX_LABEL_TEXT_BYTES = 10 * 1024 * 1024
"""Largest YOLO label file, ``data.yaml`` or ``classes.txt`` read (the VOC reader's cap for one xml). A YOLO line is
about 40 bytes: 10 MiB is some 250 000 objects in one image."""

MAX_COCO_JSON_BYTES = 512 * 1024 * 1024
"""Largest COCO json read. COCO 2017's own ``instances_train2017.json`` (118 000 images with their segmentation
polygons) is 448 MiB; a larger file is not a dataset this tool trains on, and parsing it would take many GiB."""

_COCO_NAMES = ("labels.json",)
_COCO_HEAD_BYTES = 64 * 1024
_COCO_KEYS = ('"images"', '"annotations"', '"categories"')


@dataclass
class LabelScan:
    """What a COCO or YOLO reader found in a dataset folder.

    Args:
        pairs: images with their labels read (``pair.labels`` set), sorted by stem; their images are not yet
            checked.
        problems: what reading found: errors of images left out of ``pairs`` (and of label files that belong to
            no image), warnings and notes.
        images_found: image entries seen (COCO: listed in the json; YOLO: image files).
    """

    pairs: list[ImageXmlPair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    images_found: int = 0


@dataclass(frozen=True)
class Detection:
    """The format of a folder and why (:func:`detect_format`)."""

    format: str
    reason: str


def check_format(name: str | None, option: str = "--format") -> str | None:
    """``name`` lower-cased if it is one of :data:`FORMATS` (None passes); otherwise a UsageError naming ``option``."""
    if name is None:
        return None
    if name.lower() not in FORMATS:
        raise UsageError(f"{option} must be one of {', '.join(FORMATS)}, got {name!r}")
    return name.lower()


def looks_like_coco_json(path: Path) -> bool:
    """True for a COCO json by name (``labels.json``, ``instances*.json``, ``*.coco.json``) or by content (an object
    whose first 64 KiB name ``"images"``, ``"annotations"`` or ``"categories"``).

    A file that is named like one counts even when it is broken, so that its problem is reported, not ignored.
    """
    name = path.name.lower()
    if name in _COCO_NAMES or name.startswith("instances") or name.endswith(".coco.json"):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(_COCO_HEAD_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    except OSError:
        return False
    return head.startswith("{") and any(key in head for key in _COCO_KEYS)


def is_yolo_label(relative: PurePath) -> bool:
    """True for a path (relative to the dataset folder) that names a YOLO label file: a ``.txt`` in a ``labels``
    folder, other than ``classes.txt`` (labelImg's YOLO mode writes the class names there)."""
    return (
        relative.suffix.lower() == ".txt"
        and "labels" in relative.parts[:-1]
        and relative.name.lower() != "classes.txt"
    )


def detect_format(data_dir: str | Path) -> Detection:
    """Tell which annotation format a folder holds, from its files.

    VOC: ``.xml`` files. COCO: a json that :func:`looks_like_coco_json`. YOLO: ``.txt`` files in a ``labels``
    folder. A folder with none of them is read as VOC (whose validation then names every image without its xml);
    one with several is refused, since guessing could train on the wrong labels.

    Args:
        data_dir: the dataset folder (searched to any depth; hidden entries and symlinked folders are skipped).

    Returns:
        A :class:`Detection`.

    Raises:
        UsageError: ``data_dir`` is not a folder, or it holds more than one format.

    Example:
        >>> detect_format("photos").format
        'voc'
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError("is not a folder (expected a folder of labelled images)", data_dir)
    found: dict[str, str] = {}  # format -> the first file that shows it
    for root, folders, files in os.walk(data_dir):  # symlinked folders are listed but not entered
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        relative_root = PurePosixPath(Path(root).relative_to(data_dir).as_posix())
        for name in sorted(files):
            if name.startswith("."):
                continue
            relative = relative_root / name
            suffix = relative.suffix.lower()
            if suffix == ".xml":
                found.setdefault("voc", str(relative))
            elif suffix == ".json" and "coco" not in found and looks_like_coco_json(Path(root, name)):
                found["coco"] = str(relative)
            elif is_yolo_label(relative):
                found.setdefault("yolo", str(relative))
        if len(found) == len(FORMATS):
            break
    present = [name for name in FORMATS if name in found]
    evidence = {
        "voc": "Pascal VOC .xml files",
        "coco": "a COCO json",
        "yolo": "YOLO .txt files in a labels folder",
    }
    if not present:
        return Detection("voc", "no .xml, COCO json or YOLO labels found: read as a VOC folder")
    if len(present) > 1:
        listing = "; ".join(f"{evidence[name]} ({found[name]})" for name in present)
        raise UsageError(
            f"holds more than one annotation format: {listing}. Say which to read with --format "
            f"{'|'.join(FORMATS)}",
            data_dir,
        )
    name = present[0]
    return Detection(name, f"{evidence[name]} found ({found[name]})")


def resolve_format(
    data_dir: str | Path, format: str | None = None, annotations: str | Path | None = None
) -> str:
    """The format to read ``data_dir`` in: ``format`` when given (forced), else :func:`detect_format`'s.

    Args:
        data_dir: the dataset folder.
        format: ``voc``, ``coco``, ``yolo`` or None (detect).
        annotations: VOC's separate xml folder; with it the format is VOC (forcing another is a UsageError).

    Returns:
        One of :data:`FORMATS`.

    Raises:
        UsageError: an unknown or contradictory format, or a folder holding several formats.
    """
    format = check_format(format)
    if annotations is not None:
        if format not in (None, "voc"):
            raise UsageError(
                f"--annotations names a folder of VOC .xml files; a {format} dataset's labels are found in its "
                "folder (leave --annotations out)"
            )
        return "voc"
    if format is not None:
        return format
    return detect_format(data_dir).format


def read_labelled_images(data_dir: str | Path, format: str) -> LabelScan:
    """Read a COCO or YOLO dataset's labels (see :func:`spaghettinet.data.coco_format.read_coco` and
    :func:`spaghettinet.data.yolo_format.read_yolo`); VOC folders are paired by :func:`~spaghettinet.data.voc.find_pairs`.

    Raises:
        UsageError: ``data_dir`` is not a folder, or ``format`` is not ``coco`` or ``yolo``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError("is not a folder (expected a folder of labelled images)", data_dir)
    if format == "coco":
        from spaghettinet.data.coco_format import read_coco

        return read_coco(data_dir)
    if format == "yolo":
        from spaghettinet.data.yolo_format import read_yolo

        return read_yolo(data_dir)
    raise UsageError(f"read_labelled_images reads coco or yolo datasets, not {format!r}")


def read_label_bytes(path: Path, limit: int, what: str) -> bytes:
    """A label file's bytes (:func:`~spaghettinet.data.voc.read_capped`, problem kind ``labels-too-large``).

    Args:
        path: the file.
        limit: the most bytes accepted.
        what: what the file is, for the message (``"YOLO label file"``).
    """
    return read_capped(path, limit, "labels-too-large", what)


def decode_label_text(data: bytes, path: Path, what: str) -> str:
    """UTF-8 text of a label file (a BOM tolerated), or a ProblemError (``not-utf8``) with the byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            "not-utf8",
            f"the {what} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); save it as UTF-8",
            path,
        ) from None


def keep_unique_stems(
    scan: LabelScan, pairs: list[ImageXmlPair], describe: Callable[[ImageXmlPair], str]
) -> None:
    """Add to ``scan.pairs`` the pairs whose stem no other has, sorted by stem; name each of the others in
    ``scan.problems`` (``duplicate-stem``: the split names its files by stem, as for VOC).

    Args:
        scan: what is being read.
        pairs: the pairs read.
        describe: how to name a pair in the message (its image path, or its entry in a json).
    """
    by_stem: dict[str, list[ImageXmlPair]] = {}
    for pair in pairs:
        by_stem.setdefault(pair.stem, []).append(pair)
    for stem, sharing in sorted(by_stem.items()):
        if len(sharing) == 1:
            scan.pairs.append(sharing[0])
            continue
        others = ", ".join(describe(pair) for pair in sharing)
        scan.problems += [
            Problem(
                pair.image_path,
                "duplicate-stem",
                ERROR,
                f"the stem {stem!r} is shared by {others}; the split names files by stem, so rename one of them",
            )
            for pair in sharing
        ]


def unsafe_file_name_reason(name: str) -> str | None:
    """Why a file name from a label file cannot be opened safely, or None when it is a plain relative path.

    Label files come from other machines: a name may be absolute, climb out with ``..``, or hold a NUL. Windows
    separators (``\\``) are read as ``/`` (labelling tools on Windows write them).
    """
    if not name or not name.strip():
        return "the file name is empty"
    if "\x00" in name:
        return "the file name holds a NUL character"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "the file name is an absolute path; names must be relative to the image folder"
    if ".." in PurePosixPath(posix).parts:
        return "the file name climbs out of the image folder with '..'"
    return None


__all__ = [
    "FORMATS",
    "MAX_COCO_JSON_BYTES",
    "MAX_LABEL_TEXT_BYTES",
    "PIXEL_DECIMALS",
    "Detection",
    "LabelScan",
    "check_format",
    "decode_label_text",
    "detect_format",
    "is_yolo_label",
    "keep_unique_stems",
    "looks_like_coco_json",
    "read_label_bytes",
    "read_labelled_images",
    "resolve_format",
    "unsafe_file_name_reason",
]
