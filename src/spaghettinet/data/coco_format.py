"""COCO JSON datasets: read the images and boxes of one or more COCO "instances" files, and write one.

The format (https://cocodataset.org/#format-data): a json object with ``images`` (``id``, ``file_name``, ``width``,
``height``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]`` in pixels
from the top-left corner, ``iscrowd``) and ``categories`` (``id``, ``name``). What is read, and how:

* **Where the images are.** ``file_name`` is relative to an image folder the json does not name. Each json's folder,
  its ``images/`` and ``data/`` (MediaPipe Model Maker's ``labels.json`` + ``images/``, FiftyOne's + ``data/``),
  the folder above it when the json sits in ``annotations/`` (COCO's and CVAT's layout), and COCO's
  ``instances_val2017.json`` → ``val2017/`` are tried; the one holding most of the listed files is used. Several
  jsons (Roboflow's ``train/``, ``valid/``, ``test/``) are read together.
* **Class ids of any numbering**: categories are matched by id and become classes by name (ids 0, 1..N, 17, strings
  all work; MediaPipe Model Maker reserves id 0 for "background", which is simply a category no box uses).
* **Crowd boxes** (``iscrowd: 1``) mark a region of many objects, not one; they are left out with a count, as COCO's
  evaluation ignores them and Ultralytics' COCO converter skips them.
* **Images without annotations** are kept as negatives (COCO lists them in ``images`` only).
* **Hostile input** is a named problem, never a traceback: a json that is not UTF-8, not JSON, over
  :data:`~spaghettinet.data.formats.MAX_COCO_JSON_BYTES`, or holds ``NaN``; entries of the wrong type; ids that point
  nowhere; duplicate image or category ids; ``file_name`` absolute or with ``..``; boxes with non-numbers, negative or
  zero size, or outside the image (checked by :func:`spaghettinet.data.validate.check_objects`).

Corners are ``x``, ``y``, ``x + width``, ``y + height``, the last two rounded to
:data:`~spaghettinet.data.formats.PIXEL_DECIMALS`; written back, ``width = xmax - xmin`` rounded the same way, so a box
goes COCO → VOC → COCO unchanged.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path, PurePosixPath

from spaghettinet.data.formats import (
    MAX_COCO_JSON_BYTES,
    PIXEL_DECIMALS,
    LabelScan,
    decode_label_text,
    keep_unique_stems,
    looks_like_coco_json,
    read_label_bytes,
    unsafe_file_name_reason,
)
from spaghettinet.data.problems import ERROR, WARNING, Problem, ProblemError
from spaghettinet.data.voc import (
    IMAGE_EXTENSIONS,
    ImageXmlPair,
    ReadLabels,
    VocAnnotation,
    VocObject,
    find_files,
)

#: Files sampled to choose a json's image folder.
_FOLDER_SAMPLE = 200


def read_coco(data_dir: str | Path) -> LabelScan:
    """Read every COCO json under ``data_dir`` with its images.

    Args:
        data_dir: the dataset folder (searched to any depth for jsons that
            :func:`~spaghettinet.data.formats.looks_like_coco_json`).

    Returns:
        A :class:`~spaghettinet.data.formats.LabelScan`: one pair per usable image, its ``xml_path`` the json, and
        every problem, each naming the json and the entry (``images[3]``, ``annotation 17``).

    Example:
        >>> scan = read_coco("model-maker-data")
        >>> scan.pairs[0].labels.annotation.objects[0].name
        'cat'
    """
    data_dir = Path(data_dir)
    files, unreadable = find_files(data_dir, (".json",))
    scan = LabelScan()
    scan.problems += [Problem(path, "unreadable-file", ERROR, reason) for path, reason in unreadable]
    jsons = [path for path in files if looks_like_coco_json(path)]
    if not jsons:
        scan.problems.append(
            Problem(
                data_dir,
                "no-labels",
                ERROR,
                "no COCO json found (a json object with images, annotations and categories, e.g. labels.json)",
            )
        )
        return scan
    for path in jsons:
        try:
            _read_json(path, data_dir, scan)
        except ProblemError as exc:
            scan.problems.append(exc.to_problem())
    read, scan.pairs = scan.pairs, []
    keep_unique_stems(scan, read, lambda pair: f"{pair.labels.where} in {pair.xml_path}")
    return scan


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def load_coco_document(path: Path) -> dict:
    """Parse a COCO json, checking only its shape: an object whose ``images``, ``annotations`` and ``categories``
    are lists (the last two may be missing: a dataset of negatives has no annotations).

    Raises:
        ProblemError: unreadable, too large, not UTF-8, not JSON (``NaN`` and ``Infinity`` included, with the line
            and column), nested too deep, or not shaped like a COCO dataset.
    """
    text = decode_label_text(read_label_bytes(path, MAX_COCO_JSON_BYTES, "COCO json"), path, "COCO json")
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ProblemError(
            "unparseable-json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path
        ) from None
    except RecursionError:
        raise ProblemError("unparseable-json", "not usable JSON: nested too deep", path) from None
    except ValueError as exc:  # NaN/Infinity, or an integer of more digits than Python converts
        raise ProblemError("unparseable-json", f"not usable JSON: {exc}", path) from None
    if not isinstance(document, dict):
        raise ProblemError(
            "unparseable-json",
            f"not a COCO dataset: the top level is a {_json_type(document)}, not an object with images, "
            "annotations and categories",
            path,
        )
    if not isinstance(document.get("images"), list):
        raise ProblemError("unparseable-json", 'not a COCO dataset: no "images" list', path)
    for key in ("annotations", "categories"):
        if not isinstance(document.setdefault(key, []), list):
            raise ProblemError(
                "unparseable-json", f'"{key}" is a {_json_type(document[key])}, not a list', path
            )
    return document


def _json_type(value: object) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value != ""
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\\ud800" escape
        return False
    return True


def _read_categories(categories: list, path: Path, problems: list[Problem]) -> tuple[dict, dict]:
    """``(names by id, reasons by id)``: the usable categories, and why each unusable id is unusable."""
    names: dict[object, str] = {}
    unusable: dict[object, str] = {}
    for index, category in enumerate(categories):
        where = f"categories[{index}]"
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            problems.append(
                Problem(path, "bad-category", ERROR, f"{where} is not an object with an integer or string id")
            )
            continue
        category_id, name = category["id"], category.get("name")
        if not isinstance(name, str) or not name.strip() or not _valid_unicode(name):
            reason = f"{where} (id {category_id!r}) has no usable name"
            problems.append(Problem(path, "empty-class-name", ERROR, reason))
            unusable[category_id] = reason
            continue
        if category_id in names or category_id in unusable:
            reason = f"category id {category_id!r} is given twice ({where} and before)"
            problems.append(Problem(path, "duplicate-category-id", ERROR, reason))
            names.pop(category_id, None)
            unusable[category_id] = reason
            continue
        # Names are stripped as the VOC reader strips <name>: a class is the same whatever format it came in.
        names[category_id] = name.strip()
    return names, unusable


def _size_field(image: dict, key: str) -> int | None:
    """The image's ``width``/``height``: 0 when absent, None when unusable."""
    value = image.get(key)
    if value is None:
        return 0
    if not _is_number(value) or value <= 0 or not float(value).is_integer():
        return None
    return int(value)


def _image_folder(path: Path, data_dir: Path, file_names: list[str]) -> Path:
    """The folder the json's ``file_name`` entries are relative to: of the usual places, the one holding most."""
    parent = path.parent
    candidates = [parent, parent / "images", parent / "data"]
    if parent != data_dir:
        candidates += [parent.parent, parent.parent / "images", parent.parent / "data"]
    stem = path.stem
    if stem.startswith("instances_"):  # COCO: annotations/instances_val2017.json -> val2017/
        candidates += [parent / stem[len("instances_") :], parent.parent / stem[len("instances_") :]]
    root = data_dir.resolve()
    inside = [
        c
        for c in dict.fromkeys(candidates)
        if c.is_dir() and (c.resolve() == root or root in c.resolve().parents)
    ]
    if not inside:
        return parent
    safe = [name for name in file_names if unsafe_file_name_reason(name) is None][:_FOLDER_SAMPLE]
    sample = [PurePosixPath(name.replace("\\", "/")) for name in safe]
    return max(inside, key=lambda folder: sum((folder / name).is_file() for name in sample))


def _read_json(path: Path, data_dir: Path, scan: LabelScan) -> None:
    document = load_coco_document(path)
    images, annotations = document["images"], document["annotations"]
    problems = scan.problems
    scan.images_found += len(images)
    names, unusable_categories = _read_categories(document["categories"], path, problems)

    entries: dict[object, list[tuple[int, dict]]] = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict) or not _is_id(image.get("id")):
            problems.append(
                Problem(
                    path,
                    "bad-image-entry",
                    ERROR,
                    f"images[{index}] is not an object with an integer or string id",
                )
            )
            continue
        entries.setdefault(image["id"], []).append((index, image))
    excluded: set[object] = set()
    for image_id, listed in entries.items():
        if len(listed) > 1:
            where = ", ".join(f"images[{index}]" for index, _ in listed)
            problems.append(
                Problem(
                    path,
                    "duplicate-image-id",
                    ERROR,
                    f"image id {image_id!r} is given to {len(listed)} images ({where}): their annotations cannot be "
                    "told apart, so they are left out",
                )
            )
            excluded.add(image_id)

    objects: dict[object, list[tuple[str, VocObject]]] = {image_id: [] for image_id in entries}
    image_errors: dict[object, Problem] = {}
    crowd = Counter()
    for index, annotation in enumerate(annotations):
        where = f"annotations[{index}]"
        if not isinstance(annotation, dict):
            problems.append(Problem(path, "bad-annotation", ERROR, f"{where} is not an object"))
            continue
        if _is_id(annotation.get("id")):
            where = f"annotation {annotation['id']!r}"
        image_id = annotation.get("image_id")
        if not _is_id(image_id) or image_id not in entries:
            problems.append(
                Problem(
                    path,
                    "unknown-image-id",
                    ERROR,
                    f"{where}: image_id {image_id!r} is not the id of any image; the annotation is left out",
                )
            )
            continue
        if image_id in excluded or image_id in image_errors:
            continue
        if annotation.get("iscrowd") == 1:
            crowd[image_id] += 1
            continue
        error = _annotation_error(annotation, names, unusable_categories)
        if error is not None:
            image_errors[image_id] = Problem(
                path, error[0], ERROR, f"{_image_words(entries[image_id][0])}: {where}: {error[1]}"
            )
            continue
        x, y, width, height = (float(value) for value in annotation["bbox"])
        box = VocObject(
            names[annotation["category_id"]],
            x,
            y,
            round(x + width, PIXEL_DECIMALS),
            round(y + height, PIXEL_DECIMALS),
        )
        objects[image_id].append((where, box))
    if crowd:
        problems.append(
            Problem(
                path,
                "crowd-ignored",
                WARNING,
                f"{sum(crowd.values())} crowd annotation(s) (iscrowd 1) in {len(crowd)} image(s) left out: a crowd "
                "box covers many objects, not one (COCO's evaluation ignores them; Ultralytics' converter skips them)",
            )
        )
    problems += image_errors.values()

    usable = {image_id: listed[0] for image_id, listed in entries.items() if image_id not in excluded}
    folder = _image_folder(
        path,
        data_dir,
        [image.get("file_name") for _, image in usable.values() if isinstance(image.get("file_name"), str)],
    )
    for image_id, (index, image) in usable.items():
        if image_id in image_errors:
            continue
        pair_or_problem = _pair(path, folder, image_id, index, image, objects[image_id])
        if isinstance(pair_or_problem, Problem):
            problems.append(pair_or_problem)
        else:
            scan.pairs.append(pair_or_problem)


def _image_words(entry: tuple[int, dict]) -> str:
    index, image = entry
    name = image.get("file_name")
    return f"images[{index}]" + (f" {name!r}" if isinstance(name, str) else "") + f" (id {image['id']!r})"


def _annotation_error(annotation: dict, names: dict, unusable: dict) -> tuple[str, str] | None:
    category_id = annotation.get("category_id")
    if not _is_id(category_id):
        return "unknown-category-id", f"category_id {_short(category_id)} is not an integer or a string"
    if category_id in unusable:
        return "unknown-category-id", f"category_id {category_id!r} is unusable ({unusable[category_id]})"
    if category_id not in names:
        return "unknown-category-id", f"category_id {category_id!r} is not the id of any category"
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(value) for value in bbox):
        return (
            "bad-coordinate",
            f"bbox {_short(bbox)} is not a list of 4 finite numbers [x, y, width, height]",
        )
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _pair(
    path: Path, folder: Path, image_id: object, index: int, image: dict, objects: list[tuple[str, VocObject]]
) -> ImageXmlPair | Problem:
    where = _image_words((index, image))
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not _valid_unicode(file_name):
        return Problem(path, "bad-image-entry", ERROR, f"{where} has no usable file_name")
    reason = unsafe_file_name_reason(file_name)
    if reason is not None:
        return Problem(path, "unsafe-path", ERROR, f"{where}: {reason}")
    relative = PurePosixPath(file_name.replace("\\", "/"))
    if relative.suffix.lower() not in IMAGE_EXTENSIONS:
        return Problem(
            path, "unsupported-image", ERROR, f"{where}: only {', '.join(IMAGE_EXTENSIONS)} images are read"
        )
    width, height = _size_field(image, "width"), _size_field(image, "height")
    if width is None or height is None:
        return Problem(
            path,
            "bad-size",
            ERROR,
            f"{where}: width {image.get('width')!r} and height {image.get('height')!r} are not positive integers",
        )
    image_path = folder / relative
    if not image_path.is_file():
        return Problem(path, "missing-image", ERROR, f"{where}: no such image file {image_path}")
    annotation = VocAnnotation(path, file_name, width, height, 0, tuple(obj for _, obj in objects))
    labels = ReadLabels(
        annotation,
        where=where,
        object_labels=tuple(label for label, _ in objects),
        size_field="width and height",
    )
    return ImageXmlPair(relative.stem, image_path, path, labels)


def coco_bbox(obj: VocObject) -> list[float]:
    """``[x, y, width, height]`` of a VOC box, width and height rounded to
    :data:`~spaghettinet.data.formats.PIXEL_DECIMALS` (integers stay integers).

    Example:
        >>> coco_bbox(VocObject("cat", 10, 20, 110, 70))
        [10, 20, 100, 50]
    """
    return [
        _plain(obj.xmin),
        _plain(obj.ymin),
        _plain(round(obj.xmax - obj.xmin, PIXEL_DECIMALS)),
        _plain(round(obj.ymax - obj.ymin, PIXEL_DECIMALS)),
    ]


def _plain(value: float) -> int | float:
    # COCO files write integer pixels as integers; json writes a float with repr, which reads back exactly.
    return int(value) if float(value).is_integer() else float(value)


def coco_document(images: list[tuple[str, VocAnnotation]], class_names: list[str]) -> dict:
    """A COCO dataset of ``images`` (``(file_name, annotation)``, annotation boxes in pixels).

    Category ids are 1..N in ``class_names`` order (0 stays free for "background", as MediaPipe Model Maker
    reserves it, and the ids match the label map's); image and annotation ids count from 1.

    Example:
        >>> doc = coco_document([("a.jpg", VocAnnotation(Path("a.xml"), "a.jpg", 64, 48, 3, ()))], ["cat"])
        >>> doc["images"][0]
        {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    """
    category_ids = {name: index for index, name in enumerate(class_names, start=1)}
    document = {
        "info": {"description": "written by spaghettinet data convert"},
        "images": [],
        "annotations": [],
        "categories": [{"id": category_ids[name], "name": name} for name in class_names],
    }
    for image_id, (file_name, annotation) in enumerate(images, start=1):
        document["images"].append(
            {"id": image_id, "file_name": file_name, "width": annotation.width, "height": annotation.height}
        )
        for obj in annotation.objects:
            bbox = coco_bbox(obj)
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[obj.name],
                    "bbox": bbox,
                    "area": _plain(round(bbox[2] * bbox[3], PIXEL_DECIMALS)),
                    "iscrowd": 0,
                }
            )
    return document


__all__ = ["coco_bbox", "coco_document", "load_coco_document", "read_coco"]
