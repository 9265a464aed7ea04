"""``images/validation.json``: what ``run``'s validate stage found, and which files it left out.

Written by :func:`spaghettinet.workflow.run` after :func:`spaghettinet.data.validate.validate`; read back by the
report (the data section's errors and warnings) and by ``run`` itself (the files it left out, in its summary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.problems import Problem
from spaghettinet.data.validate import ValidationReport
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import check_object, check_version, count_table, read_json_file, typed_field

VALIDATION_FILE = "validation.json"
#: Version 1 added ``version``; version 0 files hold the same keys without it.
VALIDATION_FILE_VERSION = 1

_SCALARS = {
    "data_dir": str,
    "format": str,
    "ok": bool,
    "images_found": int,
    "valid_images": int,
    "negative_images": int,
    "objects": int,
    "images_left_out": int,
    "strict": bool,
}


@dataclass(frozen=True)
class ValidationFile:
    """The content of ``validation.json``.

    Attributes:
        data_dir / annotations_dir / format: what was validated.
        ok: no error was found.
        images_found / valid_images / negative_images / objects: counts.
        class_counts: objects per class name.
        counts: problems per severity (``error``, ``warning``, ``info``).
        problems: every problem found, in order.
        pairs: ``{"image", "xml"}`` paths of each valid pair.
        excluded: the errors, whose files the run left out.
        images_left_out: images not trained on because of those errors.
        strict: whether ``--strict`` made errors stop the run.

    Example:
        >>> from spaghettinet.data.validate import validate  # doctest: +SKIP
        >>> saved = ValidationFile.from_report(validate("photos"), strict=False)  # doctest: +SKIP
        >>> ValidationFile.from_dict(saved.to_dict()) == saved  # doctest: +SKIP
        True
    """

    data_dir: str
    annotations_dir: str | None
    format: str
    ok: bool
    images_found: int
    valid_images: int
    negative_images: int
    objects: int
    class_counts: dict[str, int]
    counts: dict[str, int]
    problems: tuple[Problem, ...]
    pairs: tuple[dict[str, str], ...]
    excluded: tuple[Problem, ...]
    images_left_out: int
    strict: bool

    @classmethod
    def from_report(cls, report: ValidationReport, strict: bool) -> ValidationFile:
        """What ``run`` keeps of a validation: the report, its errors as the files left out, and ``strict``."""
        summary = report.to_dict()
        return cls(
            data_dir=summary["data_dir"],
            annotations_dir=summary["annotations_dir"],
            format=summary["format"],
            ok=summary["ok"],
            images_found=summary["images_found"],
            valid_images=summary["valid_images"],
            negative_images=summary["negative_images"],
            objects=summary["objects"],
            class_counts=dict(summary["class_counts"]),
            counts=dict(summary["counts"]),
            problems=tuple(report.problems),
            pairs=tuple(summary["pairs"]),
            excluded=tuple(report.errors),
            images_left_out=report.images_found - len(report.pairs),
            strict=bool(strict),
        )

    def to_dict(self) -> dict:
        return {
            "version": VALIDATION_FILE_VERSION,
            "data_dir": self.data_dir,
            "annotations_dir": self.annotations_dir,
            "format": self.format,
            "ok": self.ok,
            "images_found": self.images_found,
            "valid_images": self.valid_images,
            "negative_images": self.negative_images,
            "objects": self.objects,
            "class_counts": dict(self.class_counts),
            "counts": dict(self.counts),
            "problems": [problem.to_dict() for problem in self.problems],
            "pairs": [dict(pair) for pair in self.pairs],
            "excluded": [problem.to_dict() for problem in self.excluded],
            "images_left_out": self.images_left_out,
            "strict": self.strict,
        }

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> ValidationFile:
        """Read a ``validation.json`` payload.

        Raises:
            DataError: a key missing or unknown, a newer format version, a value of the wrong type; the message
                names ``source``.
        """
        what = Path(source).name if source is not None else VALIDATION_FILE
        version = check_version(data, what, VALIDATION_FILE_VERSION, source)
        keys = [*_SCALARS, "annotations_dir", "class_counts", "counts", "problems", "pairs", "excluded"]
        check_object(data, what, keys + (["version"] if version else []), source=source)
        scalars = {key: typed_field(data, key, kind, what, source) for key, kind in _SCALARS.items()}
        counts = {key: count_table(data, key, what, source) for key in ("class_counts", "counts")}
        pairs = []
        for pair in typed_field(data, "pairs", list, what, source):
            check_object(pair, f"{what}: a pair", ("image", "xml"), source=source)
            pairs.append(
                {key: typed_field(pair, key, str, f"{what}: a pair", source) for key in ("image", "xml")}
            )
        problems = {
            key: tuple(
                Problem.from_dict(entry, source) for entry in typed_field(data, key, list, what, source)
            )
            for key in ("problems", "excluded")
        }
        return cls(
            annotations_dir=typed_field(data, "annotations_dir", str, what, source, nullable=True),
            pairs=tuple(pairs),
            **scalars,
            **counts,
            **problems,
        )

    @classmethod
    def read(cls, path: str | Path) -> ValidationFile:
        """Read a ``validation.json`` file (see :meth:`from_dict`)."""
        return cls.from_dict(read_json_file(path), path)

    def write(self, path: str | Path) -> Path:
        """Write atomically (a reader never sees half a file)."""
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")
