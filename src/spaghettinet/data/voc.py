"""Pascal VOC annotations: find image/xml pairs in a folder and parse the xml into dataclasses.

Files are paired by stem (``IMG_1.jpg`` with ``IMG_1.xml``), searching subfolders, never by the xml's
``<filename>`` or ``<path>``: those fields are written by the labelling tool on another machine and may point
anywhere, so they are never opened. Every xml is read with defusedxml, which refuses DTDs with entities (billion
laughs) and external references (XXE).

Boxes here are in pixels, as written in the xml (``xmin, ymin, xmax, ymax``); the TFRecord stage normalizes them.
"""

from __future__ import annotations

import errno
import math
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from spaghettinet.data.problems import ProblemError
from spaghettinet.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Image file extensions looked for (compared case-insensitively)."""

MAX_XML_BYTES = 10 * 1024 * 1024
"""Largest annotation file read. labelImg writes about 300 bytes per object (a few KB per photo), so 10 MiB is
some 30 000 objects: a larger file is not an annotation, and reading it whole would only cost memory."""


@dataclass(frozen=True)
class VocObject:
    """One labelled object of a VOC annotation.

    Args:
        name: class name (``<name>``), stripped of surrounding blanks.
        xmin, ymin, xmax, ymax: box corners in pixels, as floats.
        difficult: VOC's ``<difficult>`` flag.
        truncated: VOC's ``<truncated>`` flag.
    """

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """A parsed VOC xml file.

    Args:
        xml_path: the file it was read from.
        filename: the ``<filename>`` field (informational only; pairing is by stem).
        width, height: ``<size>`` in pixels (0 when the xml has no size).
        depth: ``<size><depth>`` (0 when absent).
        objects: the labelled objects, in file order.
    """

    xml_path: Path
    filename: str
    width: int
    height: int
    depth: int
    objects: tuple[VocObject, ...]


@dataclass(frozen=True)
class ReadLabels:
    """An image's labels read from a COCO json or a YOLO txt (a VOC xml is read later, by validation).

    Args:
        annotation: the objects, as VOC records. Pixel corners, except with ``normalized``.
        normalized: YOLO: corners are fractions of the image size, scaled once the image is decoded (YOLO files
            do not say the size).
        where: names the image inside a label file shared by many (COCO: ``"image 'a.jpg' (id 3)"``), put in
            front of every problem about its objects; empty when the label file is the image's own.
        object_labels: what to call each object in messages (``"annotation 17"``, ``"line 3"``), in order;
            empty: ``"object N"``.
        size_field: what holds the image size in the label file (``"width and height"``), for messages; None
            when the format has none (YOLO).
    """

    annotation: VocAnnotation
    normalized: bool = False
    where: str = ""
    object_labels: tuple[str, ...] = ()
    size_field: str | None = None


@dataclass(frozen=True)
class ImageXmlPair:
    """An image and its annotation file, matched by stem.

    Args:
        stem: the image's file stem (unique in a dataset: the split names its files by it).
        image_path: the image.
        xml_path: the annotation file: the VOC xml, or for the other formats the file its labels came from (the
            COCO json, the YOLO txt), which problems name.
        labels: the labels already read (COCO, YOLO); None for VOC, whose xml validation parses.
    """

    stem: str
    image_path: Path
    xml_path: Path
    labels: ReadLabels | None = None


@dataclass
class PairScan:
    """Result of :func:`find_pairs`: the matched pairs and the files that could not be matched.

    Args:
        pairs: matched pairs, sorted by stem.
        images_without_xml: images whose stem has no xml.
        xml_without_image: xml files whose stem has no image.
        duplicate_stems: stem -> all files sharing it (two images ``a/x.jpg`` and ``b/x.png``, or two xml files);
            such stems are ambiguous and are left out of ``pairs``.
        unreadable: ``(path, reason)`` of every folder that could not be listed and every image or xml entry that
            could not be looked at (a symlink loop, a broken link, no permission).
    """

    pairs: list[ImageXmlPair] = field(default_factory=list)
    images_without_xml: list[Path] = field(default_factory=list)
    xml_without_image: list[Path] = field(default_factory=list)
    duplicate_stems: dict[str, list[Path]] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def _files_by_stem(
    folder: Path, extensions: tuple[str, ...], unreadable: list[tuple[Path, str]]
) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for _, path, stem in sorted(_walk(str(folder), (), extensions, unreadable)):
        found.setdefault(stem, []).append(Path(path))
    return found


def _walk(
    folder: str, parts: tuple[str, ...], extensions: tuple[str, ...], unreadable: list[tuple[Path, str]]
) -> Iterator[tuple]:
    """``(sort key, path, stem)`` of the files under ``folder`` whose suffix is in ``extensions``.

    What ``Path.rglob("*")`` finds, filtered, in one ``os.scandir`` per folder: symlinked files count, symlinked
    folders are not entered. The sort key is the path's parts, the order of ``sorted()`` over Paths. Nothing is
    dropped silently: a folder that cannot be listed, and an entry named like data that cannot be looked at (a
    symlink to itself, a broken link, no permission), are appended to ``unreadable`` as ``(path, reason)``.
    """
    try:
        with os.scandir(folder) as entries:
            entries = list(entries)
    except OSError as exc:
        unreadable.append((Path(folder), f"cannot list this folder: {_reason(exc)}"))
        return
    for entry in entries:
        name = entry.name
        dot = name.rfind(".")
        # Path.suffix / Path.stem, and hidden files (".IMG_1.jpg.tmp", macOS "._IMG_1.jpg") are never data.
        wanted = 0 < dot < len(name) - 1 and name[0] != "." and name[dot:].lower() in extensions
        try:
            # is_file() follows a symlink (a link to a photo counts); ELOOP (a link to itself) and EACCES raise.
            if wanted and entry.is_file():
                yield (*parts, os.path.normcase(name)), entry.path, name[:dot]
                continue
            if entry.is_dir() and not entry.is_symlink():
                yield from _walk(entry.path, (*parts, os.path.normcase(name)), extensions, unreadable)
                continue
            if wanted and entry.is_symlink():
                os.stat(entry.path)  # a dangling link: is_file() said False without saying why
        except OSError as exc:
            if wanted or exc.errno == errno.ELOOP:
                unreadable.append((Path(entry.path), f"cannot be read: {_reason(exc)}"))


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link that loops (points to itself)"
    if exc.errno == errno.ENOENT:
        return "a broken symbolic link (its target does not exist)"
    return exc.strerror or str(exc)


def find_files(folder: str | Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files under ``folder`` (subfolders searched) whose suffix is in ``extensions``, as :func:`find_pairs` sees them.

    Args:
        folder: the folder.
        extensions: lower-case suffixes with their dot (``(".xml",)``).

    Returns:
        ``(files, unreadable)``: the files in path order, and ``(path, reason)`` for every entry that could not be
        looked at (see :class:`PairScan`).

    Example:
        >>> files, unreadable = find_files("all_images_here", (".xml",))
    """
    unreadable: list[tuple[Path, str]] = []
    files = [Path(path) for _, path, _ in sorted(_walk(str(folder), (), extensions, unreadable))]
    return files, unreadable


def find_pairs(data_dir: str | Path, annotations: str | Path | None = None) -> PairScan:
    """Pair images and VOC xml files by stem, searching subfolders.

    Args:
        data_dir: folder with the images (and the xml files, in the labelImg layout).
        annotations: separate folder with the xml files (VOC's ``Annotations/``); ``None`` when they lie beside
            the images.

    Returns:
        A :class:`PairScan`.

    Raises:
        UsageError: when a folder does not exist.

    Example:
        >>> scan = find_pairs("all_images_here")
        >>> [p.stem for p in scan.pairs][:2]
        ['IMG_1', 'IMG_2']
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError("is not a folder (expected a folder of images and VOC .xml files)", data_dir)
    xml_dir = data_dir if annotations is None else Path(annotations)
    if not xml_dir.is_dir():
        raise UsageError("annotation folder does not exist", xml_dir)
    scan = PairScan()
    if xml_dir == data_dir:
        # One walk for both (the labelImg layout), so that an unreadable entry is named once.
        both = _files_by_stem(data_dir, (*IMAGE_EXTENSIONS, ".xml"), scan.unreadable)
        images, xmls = {}, {}
        for stem, paths in both.items():
            for path in paths:
                (xmls if path.suffix.lower() == ".xml" else images).setdefault(stem, []).append(path)
    else:
        images = _files_by_stem(data_dir, IMAGE_EXTENSIONS, scan.unreadable)
        xmls = _files_by_stem(xml_dir, (".xml",), scan.unreadable)
        scan.unreadable[:] = list(dict.fromkeys(scan.unreadable))
    for stem in sorted(set(images) | set(xmls)):
        image_paths = images.get(stem, [])
        xml_paths = xmls.get(stem, [])
        if len(image_paths) > 1 or len(xml_paths) > 1:
            scan.duplicate_stems[stem] = image_paths + xml_paths
        elif not xml_paths:
            scan.images_without_xml.append(image_paths[0])
        elif not image_paths:
            scan.xml_without_image.append(xml_paths[0])
        else:
            scan.pairs.append(ImageXmlPair(stem, image_paths[0], xml_paths[0]))
    return scan


def _text(element: ElementTree.Element | None, tag: str) -> str | None:
    if element is None:
        return None
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _number(element: ElementTree.Element | None, tag: str, path: Path, what: str) -> float:
    text = _text(element, tag)
    if text is None or text == "":
        raise ProblemError("bad-coordinate", f"{what}: <{tag}> is missing", path)
    try:
        value = float(text)
    except ValueError:
        raise ProblemError("bad-coordinate", f"{what}: <{tag}> is not a number: {text!r}", path) from None
    if not math.isfinite(value):
        raise ProblemError("bad-coordinate", f"{what}: <{tag}> is not a finite number: {text!r}", path)
    return value


def _flag_text(text: str | None) -> bool:
    """VOC's 0/1 flags (``<difficult>``, ``<truncated>``); also 'true'/'yes'. Missing or empty: False."""
    if not text or not (text := text.strip()):
        return False
    try:
        return float(text) != 0
    except ValueError:
        return text.lower() in ("true", "yes")


def _optional_int(element: ElementTree.Element | None, tag: str, path: Path) -> int:
    text = _text(element, tag)
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        raise ProblemError("bad-size", f"<size><{tag}> is not a number: {text!r}", path) from None
    if not math.isfinite(value) or value < 0:
        raise ProblemError("bad-size", f"<size><{tag}> is not a positive number: {text!r}", path)
    return int(value)


def read_capped(path: Path, limit: int, kind: str, what: str, note: str = "") -> bytes:
    """A label file's bytes, reading at most ``limit`` + 1 of them, or a ProblemError naming it.

    Args:
        path: the file.
        limit: the most bytes accepted.
        kind: the problem kind of a larger file (``"xml-too-large"``).
        what: what the file is, for that message (``"xml file"``, ``"YOLO label file"``).
        note: said after the limit (``" (a VOC annotation is a few KB)"``).

    Raises:
        ProblemError (a DataError): the file cannot be read (``unreadable-file``) or is over ``limit`` bytes.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ProblemError("unreadable-file", f"cannot read the file: {_reason(exc)}", path) from None
    if len(data) > limit:
        raise ProblemError(
            kind,
            f"refused: the {what} is over {limit // (1024 * 1024)} MiB{note}; is it the right file?",
            path,
        )
    return data


def read_xml_root(path: str | Path) -> ElementTree.Element:
    """Read an xml file safely (defusedxml) and return its root element.

    Raises:
        ProblemError (a DataError): the file cannot be read, is over :data:`MAX_XML_BYTES`, is not well-formed xml,
            or uses entities / external references.
    """
    path = path if isinstance(path, Path) else Path(path)
    data = read_capped(path, MAX_XML_BYTES, "xml-too-large", "xml file", " (a VOC annotation is a few KB)")
    if not data.strip():
        raise ProblemError("unparseable-xml", "the xml file is empty", path)
    # Always defusedxml, even for files without a DOCTYPE: a fast path around it saved about 28 us per file
    # (of ~150 us per record) and is not worth a second way of reading untrusted xml.
    try:
        return SafeElementTree.fromstring(data)
    except (defusedxml.EntitiesForbidden, defusedxml.DTDForbidden) as exc:
        raise ProblemError(
            "unsafe-xml",
            f"refused: the xml declares entities ({type(exc).__name__}); entity tricks such as billion laughs "
            "or XXE are never expanded. Re-save the annotation without a DOCTYPE.",
            path,
        ) from None
    except defusedxml.ExternalReferenceForbidden:
        raise ProblemError(
            "unsafe-xml", "refused: the xml references an external file or URL (XXE)", path
        ) from None
    except ElementTree.ParseError as exc:
        raise ProblemError("unparseable-xml", f"not well-formed xml ({exc})", path) from None


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse one Pascal VOC annotation file.

    Args:
        path: the ``.xml`` file.

    Returns:
        A :class:`VocAnnotation` with boxes in pixels as written. Geometry is not checked here (see
        :mod:`spaghettinet.data.validate`), but every field that must be a number is one.

    Raises:
        ProblemError (a DataError): unreadable or unsafe xml, a root other than ``<annotation>``, an object without a class name,
            without ``<bndbox>``, or with a non-numeric / NaN coordinate.

    Example:
        >>> ann = parse_voc_xml("IMG_1.xml")
        >>> ann.objects[0].name, ann.objects[0].xmin
        ('Arduino_Nano', 317.0)
    """
    path = path if isinstance(path, Path) else Path(path)
    root = read_xml_root(path)
    if root.tag != "annotation":
        raise ProblemError(
            "unparseable-xml",
            f"not a Pascal VOC annotation: the root element is <{root.tag}>, not <annotation>",
            path,
        )
    size = root.find("size")
    width = _optional_int(size, "width", path)
    height = _optional_int(size, "height", path)
    depth = _optional_int(size, "depth", path)
    objects = []
    for index, element in enumerate(root.iterfind("object"), start=1):
        name = _text(element, "name")
        if not name:
            raise ProblemError(
                "empty-class-name", f"{_object_label(index, name)} has an empty class name (<name>)", path
            )
        box = element.find("bndbox")
        if box is None:
            raise ProblemError("bad-coordinate", f"{_object_label(index, name)} has no <bndbox>", path)
        try:
            # float() ignores the blanks strip() removes; anything it refuses is reported by _number below.
            xmin, ymin, xmax, ymax = map(float, map(box.findtext, _CORNERS))
            usable = math.isfinite(xmin + ymin + xmax + ymax)
        except (TypeError, ValueError):
            usable = False
        if not usable:
            what = _object_label(index, name)
            xmin, ymin, xmax, ymax = (_number(box, tag, path, what) for tag in _CORNERS)
        objects.append(
            VocObject(
                name,
                xmin,
                ymin,
                xmax,
                ymax,
                _flag_text(element.findtext("difficult")),
                _flag_text(element.findtext("truncated")),
            )
        )
    return VocAnnotation(
        xml_path=path,
        filename=_text(root, "filename") or "",
        width=width,
        height=height,
        depth=depth,
        objects=tuple(objects),
    )


_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _object_label(index: int, name: str | None) -> str:
    return f"object {index}" + (f" ({name!r})" if name else "")


def _format_number(value: float) -> str:
    # repr is the shortest text that reads back as the same float: a converted box keeps every bit.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def voc_xml_text(
    filename: str, width: int, height: int, objects: list[VocObject] | tuple[VocObject, ...]
) -> str:
    """Return a VOC xml document (the layout labelImg writes) for an image and its objects.

    Example:
        >>> text = voc_xml_text("a.jpg", 320, 240, [VocObject("star", 10, 20, 110, 120)])
    """
    from xml.sax.saxutils import escape

    lines = [
        "<annotation>",
        "\t<folder>images</folder>",
        f"\t<filename>{escape(filename)}</filename>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for obj in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(obj.name)}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(obj.truncated)}</truncated>",
            f"\t\t<difficult>{int(obj.difficult)}</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{_format_number(obj.xmin)}</xmin>",
            f"\t\t\t<ymin>{_format_number(obj.ymin)}</ymin>",
            f"\t\t\t<xmax>{_format_number(obj.xmax)}</xmax>",
            f"\t\t\t<ymax>{_format_number(obj.ymax)}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"
