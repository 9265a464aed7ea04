"""Label maps: the class-name <-> id table, in the TF Object Detection API's text format.

Written as ``item { name: "x" id: 1 }`` with ids 1..N in sorted name order (0 is the background).
Read leniently, as the OD API's text-format parser does: the seed's hand-written style (``item{ name:"frodo" id:1 }``),
single or double quotes, ``#`` comments, ``display_name``, and the other optional fields (``keypoints { ... }``,
``ancestor_ids``, ``frequency``...) which are skipped. The text is parsed by the same parser as ``pipeline.config``
(:mod:`spaghettinet.textformat`): C escapes in strings, octal and hex ones included, as protobuf's
own writers emit them for non-ASCII names (``"caf\\303\\251"`` is ``café``), and a bound on nesting. Names are
written with the same escapes, so a name holding a line break or a carriage return reads back as it was.

Checked as ``_validate_label_map`` does: ids ≥ 0, id 0 only for ``background``; duplicate names or ids are errors
here (the OD API silently keeps the first); an id must fit the proto's ``int32`` (``string_int_label_map.proto``:
``optional int32 id = 2``), where a larger one would be cut when written into a TFRecord.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.voc import find_files, parse_voc_xml
from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import read_user_text, write_text_atomic

BACKGROUND = "background"


@dataclass(frozen=True)
class LabelMap:
    """Class names by 1-based id.

    Args:
        ids: the foreground ids, ascending (1..N for maps this package writes; gaps are allowed when read).
        names_by_id: ``names_by_id[i]`` is the name of ``ids[i]`` (see :attr:`names` for the id-indexed list).
        display_names: ``display_names[i]`` is the display name of ``ids[i]`` (the name when absent).

    Example:
        >>> lm = LabelMap.from_names(["frodo", "baggins"])
        >>> lm.names, lm.id_of("frodo"), lm.name_of(1), lm.num_classes
        (['baggins', 'frodo'], 2, 'baggins', 2)
    """

    ids: tuple[int, ...]
    names_by_id: tuple[str, ...]
    display_names: tuple[str, ...]

    @classmethod
    def from_names(cls, names) -> LabelMap:
        """A map with ids 1..N given to the unique names in sorted order."""
        unique = sorted(set(names))
        return cls(tuple(range(1, len(unique) + 1)), tuple(unique), tuple(unique))

    @property
    def num_classes(self) -> int:
        """Number of foreground classes the model needs: the largest id (the OD API's ``max_num_classes``)."""
        return max(self.ids, default=0)

    @property
    def names(self) -> list[str]:
        """Names in id order, indexed by ``id - 1``. Ids missing from the map read ``class_<id>`` (placeholders,
        as the OD API's ``fill_in_gaps_and_background`` does)."""
        by_id = dict(zip(self.ids, self.names_by_id, strict=True))
        return [by_id.get(i, f"class_{i}") for i in range(1, self.num_classes + 1)]

    def id_of(self, name: str) -> int:
        """The 1-based id of a class name (or display name).

        Raises:
            DataError: the name is not in the map.
        """
        for class_id, item_name in zip(self.ids, self.names_by_id, strict=True):
            if name == item_name:
                return class_id
        for class_id, display in zip(self.ids, self.display_names, strict=True):
            if name == display:
                return class_id
        raise DataError(f"class {name!r} is not in the label map (it has: {', '.join(self.names_by_id)})")

    def name_of(self, class_id: int) -> str:
        """The name of a 1-based id.

        Raises:
            DataError: the id is not in the map.
        """
        for item_id, name in zip(self.ids, self.names_by_id, strict=True):
            if item_id == class_id:
                return name
        raise DataError(f"id {class_id} is not in the label map (ids: {list(self.ids)})")

    def to_text(self) -> str:
        """The map in the OD API's text format (names escaped as protobuf's text format does)."""
        # Imported here: the tfrecord writer's worker processes import this module and never write a map.
        from spaghettinet.textformat import quote_text

        blocks = []
        for class_id, name, display in zip(self.ids, self.names_by_id, self.display_names, strict=True):
            lines = [f"  name: {quote_text(name)}", f"  id: {class_id}"]
            if display != name:
                lines.append(f"  display_name: {quote_text(display)}")
            blocks.append("item {\n" + "\n".join(lines) + "\n}\n")
        return "".join(blocks)


MAX_LABEL_ID = 2**31 - 1
"""Largest id a label map can hold: ``StringIntLabelMapItem.id`` is an ``int32``."""


def parse_label_map_text(text: str, path: str | Path = "<label map>") -> LabelMap:
    """Parse label map text (see :func:`read_label_map`)."""
    from spaghettinet.textformat import Message, Scalar, parse_text

    path = Path(path)
    try:
        tree = parse_text(text, source=str(path))
    except DataError as exc:
        # The parser's message starts with "<path>:<line>:<column>:"; here: "<path>: line <line>, column <column>:".
        where = re.match(rf"{re.escape(str(path))}:(\d+):(\d+): ", exc.message)
        message = exc.message[where.end() :] if where else exc.message
        prefix = f"line {where[1]}, column {where[2]}: " if where else ""
        raise DataError(prefix + message, path) from None
    ids, names, displays = [], [], []
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for entry in tree.fields:
        line = entry.line
        if entry.name != "item":
            raise DataError(
                f"line {line}: unexpected field {entry.name!r} (a label map holds only 'item' blocks)", path
            )
        if not isinstance(entry.value, Message):
            raise DataError(f"line {line}: 'item' must be a block: item {{ name: \"x\" id: 1 }}", path)
        item: dict[str, str] = {}
        for key in ("name", "id", "display_name"):
            found = entry.value.first(key)
            if found is not None and isinstance(found.value, Scalar):
                item[key] = found.value.text
        if "id" not in item:
            raise DataError(f"line {line}: item without an id", path)
        try:
            class_id = int(item["id"], 0) if item["id"].lower().startswith(("0x", "-0x")) else int(item["id"])
        except ValueError:
            raise DataError(f"line {line}: id {item['id']!r} is not an integer", path) from None
        name = item.get("name")
        display = item.get("display_name")
        if not name:
            name = display
        if not name:
            raise DataError(f"line {line}: item with id {class_id} has no name", path)
        if class_id < 0:
            raise DataError(f"line {line}: id {class_id} is negative; ids start at 1", path)
        if class_id > MAX_LABEL_ID:
            raise DataError(
                f"line {line}: id {class_id} is too large: label map ids are 32-bit (at most {MAX_LABEL_ID}, "
                "string_int_label_map.proto); number the classes 1, 2, 3...",
                path,
            )
        if class_id == 0:
            if BACKGROUND not in (name, display):
                raise DataError(
                    f"line {line}: id 0 is reserved for the background class (found {name!r}); ids start at 1",
                    path,
                )
            continue
        if name in seen_names:
            raise DataError(
                f"line {line}: the name {name!r} is used twice (first at line {seen_names[name]})", path
            )
        if class_id in seen_ids:
            raise DataError(
                f"line {line}: the id {class_id} is used twice (first at line {seen_ids[class_id]})", path
            )
        seen_names[name] = line
        seen_ids[class_id] = line
        ids.append(class_id)
        names.append(name)
        displays.append(display or name)
    if not ids:
        raise DataError('the label map has no items; write one `item { name: "x" id: 1 }` per class', path)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return LabelMap(
        tuple(ids[i] for i in order), tuple(names[i] for i in order), tuple(displays[i] for i in order)
    )


def read_label_map(path: str | Path) -> LabelMap:
    """Read a label map in the OD API text format, including the seed's hand-written style.

    Args:
        path: the ``.pbtxt`` / ``.txt`` file.

    Returns:
        A :class:`LabelMap`.

    Raises:
        DataError: unreadable file, syntax error (with the line), no items, an item without id or name, a
            negative id, id 0 for anything but ``background``, a duplicate name or id.

    Example:
        >>> lm = read_label_map("training/label_map.txt")  # item{ name:"frodo" id:1 } item{ name:"baggins" id:2 }
        >>> lm.names
        ['frodo', 'baggins']
    """
    path = Path(path)
    text = read_user_text(path, "label map")
    return parse_label_map_text(text, path)


def write_label_map(label_map: LabelMap, path: str | Path) -> Path:
    """Write a label map in the OD API text format, atomically.

    Example:
        >>> write_label_map(LabelMap.from_names(["cat", "dog"]), "training/label_map.pbtxt")
    """
    return write_text_atomic(path, label_map.to_text())


def class_names_in(data_dir: str | Path, annotations: str | Path | None = None) -> list[str]:
    """Sorted class names used in the VOC xml files of a folder (subfolders included).

    Raises:
        DataError: some xml files cannot be read (all of them are listed).
    """
    folder = Path(annotations if annotations is not None else data_dir)
    if not folder.is_dir():
        raise UsageError("is not a folder", folder)
    # Every xml counts, paired or not: a class seen only in test/ must still get an id.
    xml_paths, unreadable = find_files(folder, (".xml",))
    names: set[str] = set()
    failures = [f"{path}: {reason}" for path, reason in unreadable]
    for xml_path in xml_paths:
        try:
            names.update(obj.name for obj in parse_voc_xml(xml_path).objects)
        except DataError as exc:
            failures.append(str(exc))
    if failures:
        raise DataError(
            "cannot build a label map; these annotation files have errors (run `spaghettinet validate`):\n  "
            + "\n  ".join(failures)
        )
    return sorted(names)


def labelmap(data_dir: str | Path, out: str | Path, annotations: str | Path | None = None) -> LabelMap:
    """Write the label map of a VOC folder: ids 1..N in sorted class-name order.

    Args:
        data_dir: a VOC folder or a split folder (``train/`` and ``test/`` are searched).
        out: the ``label_map.pbtxt`` to write (atomically).
        annotations: a separate annotation folder, if any.

    Returns:
        The :class:`LabelMap` written.

    Raises:
        DataError: an xml cannot be read, or no object is labelled at all.

    Example:
        >>> labelmap("images", "training/label_map.pbtxt").names
        ['Arduino_Nano', 'ESP8266', 'Heltec_ESP32_Lora', 'Raspberry_Pi_3']
    """
    names = class_names_in(data_dir, annotations)
    if not names:
        raise UsageError("no labelled object found in any .xml file; nothing to put in a label map", data_dir)
    label_map = LabelMap.from_names(names)
    write_label_map(label_map, out)
    return label_map
