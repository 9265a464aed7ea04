"""Split a dataset folder into ``train/`` and ``test/``: deterministic, class-stratified, nothing edited by hand.

The output is always the seed's VOC layout (each image beside its ``.xml``), whatever the input format: a VOC pair is
linked as it is, a COCO or YOLO image is linked and its labels written as VOC xml (the validated boxes, in pixels),
so ``xml2csv``, ``labelmap`` and ``tfrecord`` read every format alike.

The seed's split_data.py draws ``randint`` per file, so a rare class can land entirely in one split and the split
changes on every run. Here the split depends only on the stems, the classes and the seed, and every class with at
least two images appears in both splits (as long as the images allow it: an image goes wholly to one side).

Algorithm (a small form of iterative stratification): images are shuffled with the seed, then visited from the
rarest class up; an image goes to test while each of its classes still has fewer test images than its share
(``round(test_fraction * count)``, at least 1) and no class would lose its last training image. Test is then
topped up to ``round(test_fraction * images)`` from the rest (negatives first, since they have no share to
exceed), letting the classes overshoot their shares by as little as possible.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.problems import Problem
from spaghettinet.data.validate import CheckedPair, validate
from spaghettinet.data.voc import voc_xml_text
from spaghettinet.errors import UsageError
from spaghettinet.io_utils import atomic_path, write_text_atomic
from spaghettinet.stage_files import check_object, check_version, count_table, read_json_file, typed_field

SPLIT_FILE = "split.json"
#: Version 1 added ``version``; version 0 files hold the same keys without it.
SPLIT_FILE_VERSION = 1


@dataclass(frozen=True)
class SplitFile:
    """The content of ``split.json``: how a folder was split, and what was left out.

    Attributes:
        data_dir / annotations_dir / format: what was split.
        test_fraction / seed: the split's settings.
        train / test: the stems in each split, sorted.
        images_per_class: ``{"train": {class: images}, "test": {...}}``.
        excluded: the errors whose files are in neither split.

    Example:
        >>> saved = SplitFile("photos", None, "voc", 0.2, 0, ("a",), ("b",), {"train": {}, "test": {}}, ())
        >>> SplitFile.from_dict(saved.to_dict()) == saved
        True
    """

    data_dir: str
    annotations_dir: str | None
    format: str
    test_fraction: float
    seed: int
    train: tuple[str, ...]
    test: tuple[str, ...]
    images_per_class: dict[str, dict[str, int]]
    excluded: tuple[Problem, ...]

    def to_dict(self) -> dict:
        return {
            "version": SPLIT_FILE_VERSION,
            "data_dir": self.data_dir,
            "annotations_dir": self.annotations_dir,
            "format": self.format,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "train": list(self.train),
            "test": list(self.test),
            "images_per_class": {split: dict(counts) for split, counts in self.images_per_class.items()},
            "excluded": [problem.to_dict() for problem in self.excluded],
        }

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> SplitFile:
        """Read a ``split.json`` payload.

        Raises:
            DataError: a key missing or unknown, a newer format version, a value of the wrong type; the message
                names ``source``.
        """
        what = Path(source).name if source is not None else SPLIT_FILE
        version = check_version(data, what, SPLIT_FILE_VERSION, source)
        keys = ["data_dir", "annotations_dir", "format", "test_fraction", "seed", "train", "test"]
        keys += ["images_per_class", "excluded"] + (["version"] if version else [])
        check_object(data, what, keys, source=source)
        stems = {}
        for split in ("train", "test"):
            stems[split] = tuple(
                typed_field({"stem": stem}, "stem", str, f"{what} {split}", source)
                for stem in typed_field(data, split, list, what, source)
            )
        per_class = typed_field(data, "images_per_class", dict, what, source)
        check_object(per_class, f"{what} images_per_class", ("train", "test"), source=source)
        images_per_class = {
            split: count_table(per_class, split, f"{what} images_per_class", source)
            for split in ("train", "test")
        }
        return cls(
            data_dir=typed_field(data, "data_dir", str, what, source),
            annotations_dir=typed_field(data, "annotations_dir", str, what, source, nullable=True),
            format=typed_field(data, "format", str, what, source),
            test_fraction=typed_field(data, "test_fraction", float, what, source),
            seed=typed_field(data, "seed", int, what, source),
            images_per_class=images_per_class,
            excluded=tuple(
                Problem.from_dict(entry, source)
                for entry in typed_field(data, "excluded", list, what, source)
            ),
            **stems,
        )

    @classmethod
    def read(cls, path: str | Path) -> SplitFile:
        """Read a ``split.json`` file (see :meth:`from_dict`)."""
        return cls.from_dict(read_json_file(path), path)


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split` wrote.

    Args:
        out: the output folder (``train/``, ``test/`` and ``split.json`` inside).
        train, test: stems in each split, sorted.
        excluded: the problems of severity error; their files are in neither split.
        problems: every problem validation found (warnings and info included).
        class_counts: ``{"train": {class: images}, "test": {...}}`` (images containing the class).
    """

    out: Path
    train: list[str]
    test: list[str]
    excluded: list[Problem]
    problems: list[Problem]
    class_counts: dict[str, dict[str, int]]


def assign_split(
    classes_by_stem: dict[str, set[str]], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Choose test images, stratified by class (see the module docstring).

    Args:
        classes_by_stem: each image's set of class names (empty for negatives).
        test_fraction: share of images for test, in [0, 1).
        seed: shuffling seed; same input and seed give the same split.

    Returns:
        ``(train_stems, test_stems)``, each sorted.

    Example:
        >>> assign_split({"a": {"cat"}, "b": {"cat"}, "c": {"dog"}, "d": {"dog"}}, 0.5)
        (['b', 'd'], ['a', 'c'])
    """
    if not 0 <= test_fraction < 1:
        raise UsageError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    stems = sorted(classes_by_stem)
    random.Random(seed).shuffle(stems)
    images_per_class = Counter(name for stem in stems for name in classes_by_stem[stem])
    target = {
        name: (max(1, round(test_fraction * count)) if count >= 2 and test_fraction > 0 else 0)
        for name, count in images_per_class.items()
    }
    test_quota = round(test_fraction * len(stems))
    in_test: set[str] = set()
    test_per_class: Counter[str] = Counter()

    def can_move(stem: str) -> bool:
        # Never take the last training image of a class.
        return all(test_per_class[name] + 1 < images_per_class[name] for name in classes_by_stem[stem])

    def move(stem: str) -> None:
        in_test.add(stem)
        test_per_class.update(classes_by_stem[stem])

    def rarity(stem: str) -> int:
        return min((images_per_class[name] for name in classes_by_stem[stem]), default=len(stems) + 1)

    for stem in sorted(stems, key=rarity):  # stable: ties keep the shuffled order
        names = classes_by_stem[stem]
        if names and all(test_per_class[name] < target[name] for name in names) and can_move(stem):
            move(stem)
    # Top up to the image quota, letting each class overshoot its share by as little as possible.
    for slack in range(0, len(stems) + 1):
        for stem in stems:
            if len(in_test) >= test_quota:
                break
            if stem in in_test or not can_move(stem):
                continue
            if all(test_per_class[name] < target[name] + slack for name in classes_by_stem[stem]):
                move(stem)
        if len(in_test) >= test_quota:
            break
    train = sorted(s for s in stems if s not in in_test)
    return train, sorted(in_test)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target``, or copy it where links are not possible."""
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not supported: copy instead
        shutil.copy2(source, target)


def _check_out_dir(data_dir: Path, out: Path, annotations: Path | None) -> None:
    data_resolved = data_dir.resolve()
    out_resolved = out.resolve()
    for folder in [data_resolved] + ([annotations.resolve()] if annotations else []):
        if out_resolved == folder or folder in out_resolved.parents:
            raise UsageError(
                f"--out {out} lies inside the dataset folder {folder}; a later scan would find every image twice. "
                "Choose a folder outside it (the seed uses images/ beside all_images_here/)."
            )
        for name in ("train", "test"):
            if (out_resolved / name) in [folder, *folder.parents]:
                raise UsageError(f"--out {out} would replace {out / name}, which holds the dataset itself")


def split(
    data_dir: str | Path,
    out: str | Path,
    test_fraction: float = 0.2,
    seed: int = 0,
    annotations: str | Path | None = None,
    format: str | None = None,
) -> SplitResult:
    """Validate a dataset folder and split its valid pairs into ``out/train`` and ``out/test``.

    Images keep their name and go with their xml (hard links where possible, else copies; COCO and YOLO labels are
    written as VOC xml). Pairs with errors are left out and listed in the result and in ``out/split.json``. Each of
    ``train/``, ``test/`` and ``split.json`` is replaced atomically.

    Args:
        data_dir: the dataset folder (VOC, COCO or YOLO).
        out: the output folder (the seed's ``images/``).
        test_fraction: share of images for test.
        seed: split seed.
        annotations: a separate annotation folder, if any (VOC).
        format: ``voc``, ``coco`` or ``yolo``; None detects it.

    Returns:
        A :class:`SplitResult`.

    Raises:
        UsageError: bad fraction, ``out`` inside the dataset, or no valid image at all.

    Example:
        >>> result = split("all_images_here", "images", test_fraction=0.2, seed=0)
        >>> len(result.train), len(result.test)
        (119, 30)
    """
    data_dir, out = Path(data_dir), Path(out)
    annotations_dir = None if annotations is None else Path(annotations)
    if not 0 <= test_fraction < 1:
        raise UsageError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if data_dir.is_dir():
        _check_out_dir(data_dir, out, annotations_dir)
    report = validate(data_dir, annotations_dir, format=format)
    if not report.pairs:
        raise UsageError(
            f"no valid image/xml pair to split ({len(report.errors)} error(s); run `spaghettinet validate`)",
            data_dir,
        )
    pairs: dict[str, CheckedPair] = {pair.stem: pair for pair in report.pairs}
    classes_by_stem = {stem: {obj.name for obj in pair.annotation.objects} for stem, pair in pairs.items()}
    train, test = assign_split(classes_by_stem, test_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, stems in (("train", train), ("test", test)):
        with atomic_path(out / name) as folder:
            folder.mkdir()
            for stem in stems:
                pair = pairs[stem]
                link_or_copy(pair.image_path, folder / pair.image_path.name)
                if report.format == "voc":
                    link_or_copy(pair.xml_path, folder / f"{stem}.xml")
                else:
                    checked = pair.annotation
                    text = voc_xml_text(pair.image_path.name, checked.width, checked.height, checked.objects)
                    (folder / f"{stem}.xml").write_text(text, encoding="utf-8")
    class_counts = {
        name: dict(sorted(Counter(c for stem in stems for c in classes_by_stem[stem]).items()))
        for name, stems in (("train", train), ("test", test))
    }
    excluded = report.errors
    summary = SplitFile(
        data_dir=str(data_dir),
        annotations_dir=None if annotations_dir is None else str(annotations_dir),
        format=report.format,
        test_fraction=float(test_fraction),
        seed=int(seed),
        train=tuple(train),
        test=tuple(test),
        images_per_class=class_counts,
        excluded=tuple(excluded),
    )
    write_text_atomic(out / SPLIT_FILE, json.dumps(summary.to_dict(), indent=2) + "\n")
    return SplitResult(out, train, test, excluded, report.problems, class_counts)
