"""Check a dataset folder (Pascal VOC, COCO JSON or YOLO) before anything is trained on it; report every problem.

The format is detected from the folder or forced (:mod:`spaghettinet.data.formats`); COCO and YOLO labels are read
into the same VOC records, so every check below applies to all three. The readers add their own kinds
(``unparseable-json``, ``unparseable-yaml``, ``unknown-image-id``, ``unknown-category-id``, ``unknown-class``,
``duplicate-image-id``, ``unsafe-path``, ``missing-image``, ``crowd-ignored``, ...: see
:mod:`spaghettinet.data.coco_format` and :mod:`spaghettinet.data.yolo_format`).

Checks (each problem is named with its file, see :mod:`spaghettinet.data.problems` for severities):

========================  ========  ============================================================================
kind                      severity  what
========================  ========  ============================================================================
image-without-xml         error     an image whose stem has no ``.xml``
xml-without-image         error     an ``.xml`` whose stem has no image
duplicate-stem            error     two images (or two xml files) share a stem, so pairing is ambiguous
unreadable-file           error     an entry that cannot be read: a symlink loop, a broken link, no permission
unparseable-xml           error     not well-formed xml, empty file, or a root other than ``<annotation>``
xml-too-large             error     an xml file over 10 MiB (a VOC file is a few KB; see ``voc.MAX_XML_BYTES``)
unsafe-xml                error     DOCTYPE with entities (billion laughs) or external references (XXE): refused
empty-class-name          error     an object with an empty ``<name>``
bad-coordinate            error     a missing, non-numeric or NaN box coordinate
bad-size                  error     a non-numeric ``<size>``
image-does-not-decode     error     0-byte, truncated, or not an image
image-too-large           error     more pixels than ``images.max_image_pixels()`` (a decompression bomb)
size-mismatch             error     ``<size>`` differs from the image as displayed (after its EXIF orientation)
box-outside-image         error     a box more than 1 % of the image size outside it
empty-box                 error     zero or negative width or height
box-clipped               warning   a box at most 1 % outside the image: clipped to it
missing-size              warning   no ``<size>`` in the xml: the decoded size is used
converted-image           warning   PNG, greyscale, RGBA, CMYK, 16-bit, misnamed or EXIF-turned: converted later
no-objects                info      an image without objects: kept as a negative example
small-object              info      with ``input_size``: an object under 6 px at the model's input size
========================  ========  ============================================================================
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from spaghettinet.data.formats import read_labelled_images, resolve_format
from spaghettinet.data.images import ImageInfo, inspect_image, inspect_image_for_record
from spaghettinet.data.problems import ERROR, INFO, WARNING, Problem, ProblemError
from spaghettinet.data.voc import (
    IMAGE_EXTENSIONS,
    ImageXmlPair,
    ReadLabels,
    VocAnnotation,
    find_pairs,
    parse_voc_xml,
)
from spaghettinet.data.yolo_format import scale_normalized

CLIP_TOLERANCE = 0.01
"""Boxes at most this fraction of the image size outside it are clipped (labelling tools overshoot by a pixel)."""

SMALL_OBJECT_PIXELS = 6
"""An object narrower than this at the model input is hard for any SSD anchor to match (reported as info)."""


@dataclass(frozen=True)
class CheckedPair:
    """An image/xml pair that passed every error check.

    Args:
        stem: the shared file stem.
        image_path, xml_path: the files (``xml_path``: the COCO json or YOLO txt for those formats).
        annotation: the parsed labels, with boxes in pixels clipped to the image and the size of the decoded image.
        image: what the image file really is.
    """

    stem: str
    image_path: Path
    xml_path: Path
    annotation: VocAnnotation
    image: ImageInfo


@dataclass
class PairCheck:
    """Result of :func:`check_pair`: the usable pair (None when an error was found) and the problems."""

    pair: CheckedPair | None
    problems: list[Problem]


def check_objects(
    annotation: VocAnnotation,
    image: ImageInfo,
    source: Path,
    input_size: tuple[int, int] | None = None,
    labels: ReadLabels | None = None,
) -> tuple[VocAnnotation, list[Problem]]:
    """Check an annotation against its decoded image; return it with clipped boxes, and the problems.

    Args:
        annotation: the parsed xml (or CSV rows, or COCO / YOLO labels in pixels).
        image: the image as decoded.
        source: the file to name in problems (the xml, the CSV, the json or the txt).
        input_size: ``(height, width)`` of the model input, to report objects too small at that size.
        labels: for COCO and YOLO, how their messages name the image and the objects (``where``,
            ``object_labels``) and the size (``size_field``); None for VOC.

    Returns:
        ``(annotation, problems)``: the annotation has the image's size and boxes clipped to it.
    """
    problems: list[Problem] = []
    object_labels = labels.object_labels if labels is not None else ()
    width, height = image.width, image.height
    size_field = None if labels is None else labels.size_field
    if labels is not None and size_field is None:
        pass  # YOLO: the labels hold no size; the boxes were scaled to the decoded image
    elif annotation.width == 0 or annotation.height == 0:
        missing = "no <size> in the xml" if labels is None else f"no {size_field} in {source.name}"
        problems.append(
            Problem(source, "missing-size", WARNING, f"{missing}; using the image's {width}x{height}")
        )
    elif (annotation.width, annotation.height) != (width, height):
        hint = ""
        if (annotation.width, annotation.height) == image.raw_size:
            hint = (
                f"; it matches the stored pixels before their EXIF orientation {image.orientation} "
                f"({image.orientation_words} for display), so the boxes were drawn by a tool that ignores the tag "
                "(labelImg before 2020). Boxes are read in the displayed view, as labelImg and photo viewers show "
                "it: remove the tag (exiftool -Orientation= -n FILE) and the boxes fit"
            )
        says = "<size> says" if labels is None else f"the {size_field} in {source.name} say"
        problems.append(
            Problem(
                source,
                "size-mismatch",
                ERROR,
                f"{says} {annotation.width}x{annotation.height} but {image.path.name} decodes to "
                f"{width}x{height} (after EXIF orientation){hint}",
            )
        )
        return annotation, _naming_the_image(problems, labels)
    kept = []
    slack_x, slack_y = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
    for index, obj in enumerate(annotation.objects, start=1):
        label = object_labels[index - 1] if index <= len(object_labels) else f"object {index}"
        xmin, ymin, xmax, ymax = obj.xmin, obj.ymin, obj.xmax, obj.ymax
        if xmax <= xmin or ymax <= ymin:
            problems.append(
                Problem(source, "empty-box", ERROR, f"{_describe(label, obj)} has zero or negative area")
            )
            continue
        if xmin < -slack_x or ymin < -slack_y or xmax > width + slack_x or ymax > height + slack_y:
            problems.append(
                Problem(
                    source,
                    "box-outside-image",
                    ERROR,
                    f"{_describe(label, obj)} lies outside the {width}x{height} image",
                )
            )
            continue
        clipped = obj
        if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
            clipped = replace(
                obj,
                xmin=min(max(xmin, 0.0), width),
                ymin=min(max(ymin, 0.0), height),
                xmax=min(max(xmax, 0.0), width),
                ymax=min(max(ymax, 0.0), height),
            )
            if clipped.xmax <= clipped.xmin or clipped.ymax <= clipped.ymin:
                problems.append(
                    Problem(
                        source, "empty-box", ERROR, f"{_describe(label, obj)} has no area inside the image"
                    )
                )
                continue
            problems.append(
                Problem(
                    source,
                    "box-clipped",
                    WARNING,
                    f"{_describe(label, obj)} overshoots the {width}x{height} image; clipped",
                )
            )
        if input_size is not None:
            scaled_w = (clipped.xmax - clipped.xmin) * input_size[1] / width
            scaled_h = (clipped.ymax - clipped.ymin) * input_size[0] / height
            if min(scaled_w, scaled_h) < SMALL_OBJECT_PIXELS:
                problems.append(
                    Problem(
                        source,
                        "small-object",
                        INFO,
                        f"{_describe(label, obj)} is {scaled_w:.1f}x{scaled_h:.1f} px at input size "
                        f"{input_size[0]}x{input_size[1]}; hard to detect",
                    )
                )
        kept.append(clipped)
    if any(p.severity == ERROR for p in problems):
        return annotation, _naming_the_image(problems, labels)
    if not annotation.objects:
        problems.append(
            Problem(source, "no-objects", INFO, "no objects: kept as a negative (background) image")
        )
    checked = VocAnnotation(
        annotation.xml_path, annotation.filename, width, height, annotation.depth, tuple(kept)
    )
    return checked, _naming_the_image(problems, labels)


def _naming_the_image(problems: list[Problem], labels: ReadLabels | None) -> list[Problem]:
    """Problems whose message starts with where the image is in a label file shared by many (COCO's json)."""
    if labels is None or not labels.where:
        return problems
    return [replace(p, message=f"{labels.where}: {p.message}") for p in problems]


def _describe(label: str, obj) -> str:
    return (
        f"{label} ({obj.name!r}) box "
        f"[xmin={obj.xmin:g}, ymin={obj.ymin:g}, xmax={obj.xmax:g}, ymax={obj.ymax:g}]"
    )


def image_problems(image: ImageInfo) -> list[Problem]:
    """Warnings for images that are accepted but converted (PNG, greyscale, RGBA, CMYK, 16-bit, rotated)."""
    notes = image.conversion_notes()
    if not notes:
        return []
    message = "; ".join(notes) + " (accepted: converted once to RGB JPEG when TFRecords are written)"
    return [Problem(image.path, "converted-image", WARNING, message)]


def check_pair(
    pair: ImageXmlPair, full_decode: bool = True, input_size: tuple[int, int] | None = None
) -> PairCheck:
    """Run every per-file check on one image/xml pair.

    Args:
        pair: the files.
        full_decode: decode all pixels of the image (``validate``) or only check headers and JPEG end markers
            (the faster check used when writing TFRecords).
        input_size: optional ``(height, width)`` of the model input, for the small-object note.

    Returns:
        A :class:`PairCheck`; ``pair`` is None when any error was found.
    """
    return _check_pair(pair, lambda path: (inspect_image(path, full_decode=full_decode), None), input_size)[0]


def check_pair_for_record(pair: ImageXmlPair) -> tuple[PairCheck, bytes | None]:
    """``check_pair(pair, full_decode=False)``, plus the image file's bytes when they are stored as they are.

    The TFRecord writer's check: the same problems, with the image file read once (see
    :func:`~spaghettinet.data.images.inspect_image_for_record`).

    Returns:
        ``(check, data)``; ``data`` is None when the check failed or the image is to be converted.
    """
    return _check_pair(pair, inspect_image_for_record, None)


def _check_pair(
    pair: ImageXmlPair, inspect: Callable, input_size: tuple[int, int] | None
) -> tuple[PairCheck, bytes | None]:
    problems: list[Problem] = []
    annotation = image = data = None
    if pair.labels is not None:  # COCO, YOLO: read with the whole dataset
        annotation = pair.labels.annotation
    else:
        try:
            annotation = parse_voc_xml(pair.xml_path)
        except ProblemError as exc:
            problems.append(exc.to_problem())
    try:
        image, data = inspect(pair.image_path)
        problems += image_problems(image)
    except ProblemError as exc:
        problems.append(exc.to_problem())
    if annotation is None or image is None:
        return PairCheck(None, problems), None
    if pair.labels is not None and pair.labels.normalized:
        annotation = scale_normalized(annotation, image.width, image.height)
    annotation, object_problems = check_objects(annotation, image, pair.xml_path, input_size, pair.labels)
    problems += object_problems
    if any(p.severity == ERROR for p in problems):
        return PairCheck(None, problems), None
    checked = CheckedPair(pair.stem, pair.image_path, pair.xml_path, annotation, image)
    return PairCheck(checked, problems), data


def check_pairs(
    pairs: list[ImageXmlPair],
    full_decode: bool = True,
    input_size: tuple[int, int] | None = None,
    workers: int | None = None,
) -> tuple[list[CheckedPair], list[Problem]]:
    """:func:`check_pair` on many pairs in threads (decoding releases the GIL); results keep the input order."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(pairs) < 16:
        results = [check_pair(p, full_decode, input_size) for p in pairs]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda p: check_pair(p, full_decode, input_size), pairs))
    checked = [r.pair for r in results if r.pair is not None]
    problems = [problem for r in results for problem in r.problems]
    return checked, problems


@dataclass
class ValidationReport:
    """Everything :func:`validate` found.

    Args:
        data_dir: the folder checked.
        annotations_dir: the separate annotation folder, if any.
        pairs: the pairs without errors (what ``split`` and ``tfrecord`` will use), sorted by stem.
        problems: every problem, errors first.
        images_found: number of image files seen (COCO: image entries of the json).
        class_counts: objects per class over ``pairs``, sorted by class name.
        format: the annotation format read: ``voc``, ``coco`` or ``yolo``.
    """

    data_dir: Path
    annotations_dir: Path | None
    pairs: list[CheckedPair]
    problems: list[Problem]
    images_found: int
    class_counts: dict[str, int] = field(default_factory=dict)
    format: str = "voc"

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity ``error``."""
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings and info allowed)."""
        return not self.errors

    @property
    def num_objects(self) -> int:
        """Objects in the valid pairs."""
        return sum(self.class_counts.values())

    @property
    def negative_images(self) -> int:
        """Valid images without objects."""
        return sum(1 for p in self.pairs if not p.annotation.objects)

    def problems_by_kind(self) -> dict[tuple[str, str], int]:
        """(severity, kind) -> count, errors first."""
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        counts = Counter((p.severity, p.kind) for p in self.problems)
        return dict(sorted(counts.items(), key=lambda item: (order[item[0][0]], item[0][1])))

    def to_dict(self) -> dict:
        """JSON-ready summary: counts, per-class objects, problems, and the valid pairs."""
        return {
            "data_dir": str(self.data_dir),
            "annotations_dir": None if self.annotations_dir is None else str(self.annotations_dir),
            "format": self.format,
            "ok": self.ok,
            "images_found": self.images_found,
            "valid_images": len(self.pairs),
            "negative_images": self.negative_images,
            "objects": self.num_objects,
            "class_counts": dict(self.class_counts),
            "counts": {
                "error": len(self.errors),
                "warning": len(self.warnings),
                "info": sum(1 for p in self.problems if p.severity == INFO),
            },
            "problems": [p.to_dict() for p in self.problems],
            "pairs": [{"image": str(p.image_path), "xml": str(p.xml_path)} for p in self.pairs],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2)


def pairing_problems(scan) -> list[Problem]:
    """The errors of a folder scan (:class:`~spaghettinet.data.voc.PairScan`): unreadable entries, images
    without xml, xml without image, stems shared by several files. Each names its file."""
    problems = [Problem(path, "unreadable-file", ERROR, reason) for path, reason in scan.unreadable]
    problems += [
        Problem(path, "image-without-xml", ERROR, f"no annotation file {path.stem}.xml found for this image")
        for path in scan.images_without_xml
    ]
    problems += [
        Problem(
            path, "xml-without-image", ERROR, f"no image {path.stem}.jpg/.jpeg/.png found for this annotation"
        )
        for path in scan.xml_without_image
    ]
    for stem, paths in scan.duplicate_stems.items():
        others = ", ".join(str(p) for p in paths)
        for path in paths:
            problems.append(
                Problem(
                    path,
                    "duplicate-stem",
                    ERROR,
                    f"the stem {stem!r} is shared by {others}; files are paired by stem, so rename one of them",
                )
            )
    return problems


def validate(
    data_dir: str | Path,
    annotations: str | Path | None = None,
    input_size: int | tuple[int, int] | None = None,
    workers: int | None = None,
    format: str | None = None,
) -> ValidationReport:
    """Check a folder of labelled images (Pascal VOC, COCO JSON or YOLO); report every problem instead of stopping.

    Args:
        data_dir: the folder (subfolders are searched; ``.jpg .jpeg .png`` in any case).
        annotations: a separate folder of xml files (``Annotations/``), if they are not beside the images (VOC).
        input_size: the model's input size (``N`` or ``(height, width)``); adds a note for objects that would be
            under 6 px there.
        workers: threads decoding images (default: up to 8, one per core).
        format: ``voc``, ``coco`` or ``yolo``; None detects it from the folder
            (:func:`~spaghettinet.data.formats.detect_format`).

    Returns:
        A :class:`ValidationReport`; ``report.ok`` is False when any error was found.

    Raises:
        UsageError: ``data_dir`` or ``annotations`` is not a folder, an unknown format, or a folder holding
            several formats without ``format``.

    Example:
        >>> report = validate("all_images_here")
        >>> report.ok, report.class_counts
        (True, {'Arduino_Nano': 43, 'ESP8266': 47})
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    data_format = resolve_format(data_dir, format, annotations)
    if data_format == "voc":
        scan = find_pairs(data_dir, annotations)
        pairs, reading_problems = scan.pairs, pairing_problems(scan)
        images_found = (
            len(scan.pairs)
            + len(scan.images_without_xml)
            + sum(1 for paths in scan.duplicate_stems.values() for p in paths if p.suffix.lower() != ".xml")
            + sum(1 for path, _ in scan.unreadable if path.suffix.lower() in IMAGE_EXTENSIONS)
        )
    else:
        labelled = read_labelled_images(data_dir, data_format)
        pairs, reading_problems, images_found = labelled.pairs, labelled.problems, labelled.images_found
    checked, pair_problems = check_pairs(pairs, full_decode=True, input_size=input_size, workers=workers)
    problems = reading_problems + pair_problems
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    problems.sort(key=lambda p: (order[p.severity], str(p.file)))
    counts = Counter(obj.name for pair in checked for obj in pair.annotation.objects)
    return ValidationReport(
        data_dir=Path(data_dir),
        annotations_dir=None if annotations is None else Path(annotations),
        pairs=checked,
        problems=problems,
        images_found=images_found,
        class_counts=dict(sorted(counts.items())),
        format=data_format,
    )


__all__ = [
    "CheckedPair",
    "PairCheck",
    "ValidationReport",
    "check_objects",
    "check_pair",
    "check_pair_for_record",
    "check_pairs",
    "image_problems",
    "pairing_problems",
    "validate",
]
