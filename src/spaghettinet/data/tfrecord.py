"""TFRecords of ``tf.train.Example`` in the TF Object Detection API's keys (spec §5.1): write, list, read, parse.

Writing (:func:`tfrecord`): from a split folder (images with their xml) or from the seed's CSV plus an image
folder. Every image is checked as it is read (header, JPEG end marker, size against the xml, boxes); a bad one is
reported and left out, the others are still written. Upright RGB JPEGs are stored byte for byte (baseline or
progressive: ``tf.io.decode_jpeg`` reads both); PNG, greyscale, RGBA, CMYK, 16-bit and EXIF-rotated images are
converted once to RGB JPEG (quality 95), rotated as labelImg showed them, so the stored pixels match the boxes.
Preparation runs in ``workers`` threads (file reads, JPEG header parsing and Pillow conversion release the GIL);
shards ``PATH-00000-of-0000N`` (or just ``PATH`` for one shard) are each written under a temporary name and
renamed when complete.

Reading: :func:`parse_example` for ``tf.data`` pipelines, :func:`read_examples` for tests and reports. Both read
the records of the seed's generate_tfrecord.py too (format ``jpg``, no difficult/truncated/sha256 keys).
"""

from __future__ import annotations

import contextlib
import glob as globbing
import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.data.csv_labels import read_label_csv
from spaghettinet.data.images import encoded_rgb_jpeg, inspect_image
from spaghettinet.data.labelmap import LabelMap, read_label_map
from spaghettinet.data.problems import ERROR, Problem, ProblemError
from spaghettinet.data.validate import check_objects, check_pair, image_problems
from spaghettinet.data.voc import VocAnnotation, find_pairs
from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import atomic_path
from spaghettinet.tf_runtime import import_tensorflow

_SHARD_PATTERN = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


def shard_paths(out: str | Path, shards: int) -> list[Path]:
    """The file names for ``shards`` shards of ``out``: ``out`` itself for one, else ``out-0000i-of-0000N``."""
    out = Path(out)
    if shards == 1:
        return [out]
    return [out.with_name(f"{out.name}-{i:05d}-of-{shards:05d}") for i in range(shards)]


@dataclass
class TfRecordResult:
    """What :func:`tfrecord` wrote.

    Args:
        files: the shard files.
        images: examples written.
        objects: boxes written.
        converted: images re-encoded (not stored as they were).
        problems: errors (images left out) and warnings.
    """

    files: list[Path]
    images: int = 0
    objects: int = 0
    converted: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems of severity error."""
        return [p for p in self.problems if p.severity == ERROR]


@dataclass
class _Prepared:
    serialized: bytes | None
    problems: list[Problem]
    objects: int = 0
    converted: bool = False


def _example_bytes(
    tf, image_path: Path, annotation: VocAnnotation, encoded: bytes, label_map: LabelMap
) -> bytes:
    width, height = annotation.width, annotation.height
    objects = annotation.objects
    labels = [label_map.id_of(obj.name) for obj in objects]

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    filename = image_path.name.encode("utf-8")
    feature = {
        "image/height": ints([height]),
        "image/width": ints([width]),
        "image/filename": strings([filename]),
        "image/source_id": strings([filename]),
        "image/key/sha256": strings([hashlib.sha256(encoded).hexdigest().encode("ascii")]),
        "image/encoded": strings([encoded]),
        "image/format": strings([b"jpeg"]),
        "image/object/bbox/xmin": floats([obj.xmin / width for obj in objects]),
        "image/object/bbox/xmax": floats([obj.xmax / width for obj in objects]),
        "image/object/bbox/ymin": floats([obj.ymin / height for obj in objects]),
        "image/object/bbox/ymax": floats([obj.ymax / height for obj in objects]),
        "image/object/class/text": strings([obj.name.encode("utf-8") for obj in objects]),
        "image/object/class/label": ints(labels),
        "image/object/difficult": ints([int(obj.difficult) for obj in objects]),
        "image/object/truncated": ints([int(obj.truncated) for obj in objects]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _finish(tf, image_path, annotation, info, problems, source, label_map) -> _Prepared:
    unknown = sorted({obj.name for obj in annotation.objects} - set(label_map.names_by_id))
    if unknown:
        problems.append(
            Problem(
                source,
                "unknown-class",
                ERROR,
                f"class(es) {', '.join(map(repr, unknown))} not in the label map",
            )
        )
        return _Prepared(None, problems)
    try:
        encoded = encoded_rgb_jpeg(image_path, info)
    except ProblemError as exc:
        return _Prepared(None, problems + [exc.to_problem()])
    serialized = _example_bytes(tf, image_path, annotation, encoded, label_map)
    return _Prepared(serialized, problems, len(annotation.objects), not info.stored_as_is)


def _ordered_parallel(function: Callable, items: Sequence, workers: int) -> Iterator:
    """``map(function, items)`` in ``workers`` threads, results in order, at most a few dozen in flight."""
    if workers <= 1:
        yield from map(function, items)
        return
    window = 4 * workers
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _remove_stale_shards(out: Path, keep: list[Path]) -> None:
    """Delete shard sets of ``out`` with another shard count, so a glob ``out*`` finds only the new ones."""
    candidates = [out] + [Path(p) for p in globbing.glob(globbing.escape(str(out)) + "-?????-of-?????")]
    for path in candidates:
        if path not in keep and path.is_file():
            path.unlink()


def tfrecord(
    out: str | Path,
    label_map: str | Path | LabelMap,
    split_dir: str | Path | None = None,
    csv: str | Path | None = None,
    images: str | Path | None = None,
    shards: int = 1,
    workers: int | None = None,
) -> TfRecordResult:
    """Write TFRecords from a split folder (images + xml) or from a label CSV and its image folder.

    Args:
        out: output path; with ``shards > 1`` the files are ``out-00000-of-0000N``...
        label_map: a label map file (or :class:`LabelMap`) giving the 1-based ids.
        split_dir: one split's folder, images and xml side by side (``images/train``). Keeps negatives.
        csv: a label CSV (``images/train_labels.csv``); needs ``images``.
        images: the folder the CSV's file names are in.
        shards: number of output files.
        workers: threads preparing examples (default: one per core, at most 8).

    Returns:
        A :class:`TfRecordResult`. Images with errors are left out and listed in ``problems``; every valid image
        is written (the CLI then exits with code 1).

    Raises:
        UsageError: neither or both of ``split_dir`` / ``csv``, ``csv`` without ``images``, ``shards < 1``.
        DataError: the label map or CSV cannot be read.

    Example:
        >>> result = tfrecord("training/train.record", "training/label_map.pbtxt", split_dir="images/train")
        >>> result.images, result.files
        (119, [PosixPath('training/train.record')])
    """
    if (split_dir is None) == (csv is None):
        raise UsageError("give either --split-dir DIR or --csv CSV --images DIR")
    if csv is not None and images is None:
        raise UsageError("--csv needs --images DIR, the folder holding the CSV's images")
    if shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    workers = workers or min(8, os.cpu_count() or 1)
    if not isinstance(label_map, LabelMap):
        label_map = read_label_map(label_map)
    tf = import_tensorflow()
    problems: list[Problem] = []

    if split_dir is not None:
        scan = find_pairs(split_dir)
        problems += [
            Problem(p, "image-without-xml", ERROR, "no annotation file found")
            for p in scan.images_without_xml
        ]
        problems += [Problem(p, "xml-without-image", ERROR, "no image found") for p in scan.xml_without_image]
        problems += [
            Problem(paths[0], "duplicate-stem", ERROR, f"stem shared by {', '.join(map(str, paths))}")
            for paths in scan.duplicate_stems.values()
        ]

        def prepare(pair) -> _Prepared:
            check = check_pair(pair, full_decode=False)
            if check.pair is None:
                return _Prepared(None, check.problems)
            checked = check.pair
            return _finish(
                tf,
                checked.image_path,
                checked.annotation,
                checked.image,
                check.problems,
                checked.xml_path,
                label_map,
            )

        items: list = scan.pairs
    else:
        csv_images, csv_problems = read_label_csv(csv)
        problems += csv_problems
        image_dir = Path(images)
        if not image_dir.is_dir():
            raise UsageError("--images is not a folder", image_dir)

        def prepare(row) -> _Prepared:
            image_path = image_dir / row.filename
            try:
                info = inspect_image(image_path, full_decode=False)
            except ProblemError as exc:
                return _Prepared(None, [exc.to_problem()])
            row_problems = image_problems(info)
            annotation, object_problems = check_objects(row.annotation, info, Path(csv))
            row_problems += [
                Problem(p.file, p.kind, p.severity, f"{row.filename}: {p.message}") for p in object_problems
            ]
            if any(p.severity == ERROR for p in row_problems):
                return _Prepared(None, row_problems)
            return _finish(tf, image_path, annotation, info, row_problems, Path(csv), label_map)

        items = csv_images

    out = Path(out)
    targets = shard_paths(out, shards)
    result = TfRecordResult(files=targets)
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(target)) for target in targets]
        writers = [stack.enter_context(tf.io.TFRecordWriter(str(path))) for path in temporaries]
        for prepared in _ordered_parallel(prepare, items, workers):
            problems += prepared.problems
            if prepared.serialized is None:
                continue
            # Round-robin keeps every shard a similar mix when the input is sorted by name.
            writers[result.images % shards].write(prepared.serialized)
            result.images += 1
            result.objects += prepared.objects
            result.converted += prepared.converted
        for writer in writers:
            writer.close()
    _remove_stale_shards(out, targets)
    order = {ERROR: 0}
    result.problems = sorted(problems, key=lambda p: (order.get(p.severity, 1), str(p.file)))
    return result


def list_record_files(paths_or_glob: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand TFRecord inputs to files: an existing file, a glob (``train.record*``), or a shard set's base name.

    Args:
        paths_or_glob: a path, a glob, a comma-separated list of them, or a list of them. A base name
            ``train.record`` with no such file expands to ``train.record-?????-of-?????``.

    Returns:
        The files, sorted within each pattern, without duplicates.

    Raises:
        DataError: a pattern matches nothing, or a shard set is incomplete.

    Example:
        >>> list_record_files("training/train.record")
        [PosixPath('training/train.record-00000-of-00002'), PosixPath('training/train.record-00001-of-00002')]
    """
    if isinstance(paths_or_glob, str | Path):
        patterns = [p.strip() for p in str(paths_or_glob).split(",") if p.strip()]
    else:
        patterns = [str(p) for p in paths_or_glob]
    if not patterns:
        raise DataError("no TFRecord path given")
    files: list[Path] = []
    for pattern in patterns:
        if Path(pattern).is_file():
            matches = [Path(pattern)]
        else:
            matches = [Path(p) for p in sorted(globbing.glob(pattern)) if Path(p).is_file()]
            if not matches and not globbing.has_magic(pattern):
                matches = [
                    Path(p) for p in sorted(globbing.glob(globbing.escape(pattern) + "-?????-of-?????"))
                ]
        if not matches:
            raise DataError(
                "no TFRecord file matches (looked for the file, the glob, and shards PATH-?????-of-?????); "
                "write them with `spaghettinet tfrecord`",
                pattern,
            )
        if not Path(pattern).is_file():  # a file named explicitly is taken as asked
            _check_shard_sets(matches, pattern)
        files += [m for m in matches if m not in files]
    return files


def _check_shard_sets(matches: list[Path], pattern: str) -> None:
    sets: dict[tuple[str, int], set[int]] = {}
    for path in matches:
        found = _SHARD_PATTERN.match(path.name)
        if found:
            key = (str(path.parent / found["base"]), int(found["count"]))
            sets.setdefault(key, set()).add(int(found["index"]))
    for (base, count), indices in sets.items():
        missing = sorted(set(range(count)) - indices)
        if missing:
            raise DataError(
                f"shard set {base}-*-of-{count:05d} is incomplete: shard(s) {', '.join(map(str, missing))} missing",
                pattern,
            )


def parse_example(serialized):
    """Parse one serialized ``tf.train.Example`` (TF OD API keys) into tensors; use in ``Dataset.map``.

    Args:
        serialized: a scalar string tensor.

    Returns:
        A dict of tensors: ``image`` uint8 [H, W, 3] (decoded JPEG or PNG, RGB), ``boxes`` float32 [M, 4]
        ``[ymin, xmin, ymax, xmax]`` normalized, ``classes`` int32 [M] (1-based, ``image/object/class/label``),
        ``difficult`` int32 [M] (zeros when absent, as in the seed's records), ``filename`` and ``source_id``
        strings (``source_id`` falls back to ``filename``), ``height`` and ``width`` int32 (the decoded size
        when the record lacks them).

    Example:
        >>> dataset = tf.data.TFRecordDataset(list_record_files("train.record")).map(parse_example)
    """
    tf = import_tensorflow()
    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    }
    parsed = tf.io.parse_single_example(serialized, features)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])

    def dense(key, dtype):
        return tf.cast(tf.sparse.to_dense(parsed[key]), dtype)

    boxes = tf.stack(
        [dense(f"image/object/bbox/{k}", tf.float32) for k in ("ymin", "xmin", "ymax", "xmax")], axis=1
    )
    classes = dense("image/object/class/label", tf.int32)
    difficult = dense("image/object/difficult", tf.int32)
    difficult = tf.cond(
        tf.equal(tf.size(difficult), tf.size(classes)), lambda: difficult, lambda: tf.zeros_like(classes)
    )
    shape = tf.shape(image)
    height = tf.cast(parsed["image/height"], tf.int32)
    width = tf.cast(parsed["image/width"], tf.int32)
    filename = parsed["image/filename"]
    source_id = parsed["image/source_id"]
    return {
        "image": image,
        "boxes": tf.reshape(boxes, [-1, 4]),
        "classes": classes,
        "difficult": difficult,
        "filename": filename,
        "source_id": tf.where(tf.equal(source_id, ""), filename, source_id),
        "height": tf.where(height > 0, height, shape[0]),
        "width": tf.where(width > 0, width, shape[1]),
    }


@dataclass(frozen=True)
class Example:
    """One record read back by :func:`read_examples`.

    Args:
        filename, source_id: image name and id.
        height, width: stored size in pixels.
        encoded: the stored image bytes; ``format`` the stored format string (``jpeg``, or ``jpg`` from the seed).
        sha256: the stored hex digest ('' when absent).
        boxes: float32 [M, 4] ``[ymin, xmin, ymax, xmax]`` normalized.
        classes: int64 [M], 1-based labels; ``class_texts`` the names.
        difficult, truncated: int64 [M] (zeros when absent).
    """

    filename: str
    source_id: str
    height: int
    width: int
    encoded: bytes
    format: str
    sha256: str
    boxes: np.ndarray
    classes: np.ndarray
    class_texts: tuple[str, ...]
    difficult: np.ndarray
    truncated: np.ndarray

    def decode_image(self) -> np.ndarray:
        """The stored image as a uint8 RGB array [H, W, 3] (Pillow)."""
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.encoded)) as image:
            return np.asarray(image.convert("RGB"))


def _example_from_proto(proto) -> Example:
    feature = proto.features.feature

    def values(key, kind):
        if key not in feature:
            return []
        return list(getattr(feature[key], kind).value)

    def text(key):
        found = values(key, "bytes_list")
        return found[0].decode("utf-8", "replace") if found else ""

    def number(key):
        found = values(key, "int64_list")
        return int(found[0]) if found else 0

    corners = [
        np.asarray(values(f"image/object/bbox/{k}", "float_list"), np.float32)
        for k in ("ymin", "xmin", "ymax", "xmax")
    ]
    classes = np.asarray(values("image/object/class/label", "int64_list"), np.int64)
    count = len(corners[0])

    def flags(key):
        found = np.asarray(values(key, "int64_list"), np.int64)
        return found if len(found) == count else np.zeros(count, np.int64)

    encoded = values("image/encoded", "bytes_list")
    filename = text("image/filename")
    return Example(
        filename=filename,
        source_id=text("image/source_id") or filename,
        height=number("image/height"),
        width=number("image/width"),
        encoded=encoded[0] if encoded else b"",
        format=text("image/format"),
        sha256=text("image/key/sha256"),
        boxes=np.stack(corners, axis=1).reshape(-1, 4) if count else np.zeros((0, 4), np.float32),
        classes=classes,
        class_texts=tuple(
            v.decode("utf-8", "replace") for v in values("image/object/class/text", "bytes_list")
        ),
        difficult=flags("image/object/difficult"),
        truncated=flags("image/object/truncated"),
    )


def _check_record_framing(path: Path) -> None:
    """Walk the record lengths of a TFRecord file: TF reads a file cut inside its last record as a clean end."""
    size = path.stat().st_size
    position = 0
    with open(path, "rb") as handle:
        while position < size:
            handle.seek(position)
            header = handle.read(8)
            # Each record: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC of the data.
            end = position + 12 + int.from_bytes(header, "little") + 4 if len(header) == 8 else size + 1
            if end > size:
                raise DataError(
                    f"corrupt or truncated TFRecord file: the record at byte {position} runs past the end "
                    f"({size} bytes); write it again",
                    path,
                )
            position = end


def read_examples(paths_or_glob: str | Path | Iterable[str | Path]) -> Iterator[Example]:
    """Read records back as :class:`Example` objects (files in :func:`list_record_files` order).

    Args:
        paths_or_glob: as for :func:`list_record_files`.

    Yields:
        :class:`Example`, one per record.

    Raises:
        DataError: no file matches, or a file is corrupt or truncated (checksums are verified).

    Example:
        >>> [e.filename for e in read_examples("training/test.record")][:1]
        ['IMG_20181228_101826.jpg']
    """
    tf = import_tensorflow()
    for path in list_record_files(paths_or_glob):
        _check_record_framing(path)
        try:
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                yield _example_from_proto(tf.train.Example.FromString(record))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
            raise DataError(
                f"corrupt or truncated TFRecord file: {exc.message.splitlines()[0]}", path
            ) from None
        except Exception as exc:
            if type(exc).__name__ == "DecodeError":
                raise DataError("a record is not a tf.train.Example", path) from None
            raise
