"""Strict reading of the JSON files that stages write (``eval.json``, ``metrics_history.json``, ...).

Each stage file has a dataclass owned by the module that writes it, with ``to_dict`` and ``from_dict``. The
``from_dict`` side uses the helpers here: a file that is not a JSON object, lacks a key, has a key nothing writes,
or carries a format version newer than this package reads is a :class:`~spaghettinet.errors.DataError` that names
the file, so that a reader never guesses at spellings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from spaghettinet.errors import DataError

#: The key holding a stage file's format version.
VERSION_KEY = "version"


def read_json_file(path: str | Path) -> object:
    """The parsed JSON of ``path``.

    Raises:
        DataError: the file cannot be read or is not JSON (the message names the file).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot be read as JSON ({exc})", path) from exc


def check_object(
    data: object,
    what: str,
    required: Iterable[str],
    optional: Iterable[str] | None = (),
    source: str | Path | None = None,
) -> Mapping:
    """Check that ``data`` is a JSON object with every ``required`` key and no key outside ``required + optional``
    (any other key when ``optional`` is None: a part of a larger object whose owner checks the rest).

    Args:
        data: the parsed JSON value.
        what: what the object is, for the message (``"eval.json"``, ``"a metrics history record"``).
        required / optional: the keys the writer emits always / sometimes.
        source: the file, put in front of the message.

    Returns:
        ``data``, now known to be a mapping.

    Raises:
        DataError: naming the missing or unknown keys.

    Example:
        >>> check_object({"step": 1}, "a record", required=["step"])
        {'step': 1}
    """
    if not isinstance(data, Mapping):
        raise DataError(f"{what} is not a JSON object (found {type(data).__name__})", source)
    required = list(required)
    missing = [key for key in required if key not in data]
    known = set(required) | set(optional or ())
    unknown = [] if optional is None else sorted(str(key) for key in data if key not in known)
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(repr(key) for key in missing))
        if unknown:
            parts.append("unknown " + ", ".join(repr(key) for key in unknown))
        raise DataError(f"{what} does not have the expected fields ({'; '.join(parts)})", source)
    return data


def check_version(data: object, what: str, current: int, source: str | Path | None = None) -> int:
    """The format version of a stage file; files written before versions existed count as version 0.

    Raises:
        DataError: ``data`` is not a JSON object, or its version is not an integer, or newer than ``current``
            (written by a newer spaghettinet).
    """
    if not isinstance(data, Mapping):
        raise DataError(f"{what} is not a JSON object", source)
    version = data.get(VERSION_KEY, 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise DataError(f"{what} has an invalid format version {version!r}", source)
    if version > current:
        raise DataError(
            f"{what} has format version {version}; this spaghettinet reads up to {current}: upgrade it, or "
            "rerun the stage that wrote the file",
            source,
        )
    return version


def number_or_none(value: object, what: str, source: str | Path | None = None) -> float | None:
    """``value`` as a float, ``None`` kept (JSON ``null``: no value).

    Raises:
        DataError: anything else (a string, a boolean, a list).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{what} is {value!r}, not a number", source)
    return float(value)


_KIND_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def typed_field(data: Mapping, key: str, kind: type, what: str, source=None, nullable: bool = False):
    """``data[key]`` checked to be of JSON type ``kind`` (``bool``, ``int``, ``float``, ``str``, ``list``,
    ``dict``); ``float`` accepts integers, ``int`` refuses booleans.

    Raises:
        DataError: the value has another type (the message names the key and ``what``).

    Example:
        >>> typed_field({"seed": 3}, "seed", int, "split.json")
        3
    """
    value = data[key]
    if value is None and nullable:
        return None
    accepted = (int, float) if kind is float else kind
    if isinstance(value, accepted) and (kind is bool or not isinstance(value, bool)):
        return float(value) if kind is float else value
    raise DataError(f"{what}: {key} is {value!r}, not {_KIND_NAMES.get(kind, kind.__name__)}", source)


def typed_list(data: Mapping, key: str, kind: type, what: str, source=None) -> list:
    """``data[key]`` checked to be a JSON list whose items all have JSON type ``kind`` (see :func:`typed_field`).

    Raises:
        DataError: not a list, or an item of another type (the message names the key and ``what``).

    Example:
        >>> typed_list({"names": ["cat", "dog"]}, "names", str, "export_report.json")
        ['cat', 'dog']
    """
    return [
        typed_field({key: item}, key, kind, what, source)
        for item in typed_field(data, key, list, what, source)
    ]


def count_table(data: Mapping, key: str, what: str, source=None) -> dict[str, int]:
    """``data[key]`` checked to be a JSON object of integer counts (``{"Arduino_Nano": 43, ...}``).

    Raises:
        DataError: not an object, or a count that is not an integer.

    Example:
        >>> count_table({"counts": {"error": 0}}, "counts", "validation.json")
        {'error': 0}
    """
    table = typed_field(data, key, dict, what, source)
    return {str(name): typed_field(table, name, int, f"{what} {key}", source) for name in table}
