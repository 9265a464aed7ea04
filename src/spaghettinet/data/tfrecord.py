"""TFRecords of ``tf.train.Example`` in the TF Object Detection API's keys: write, list, read, parse.

Writing (:func:`tfrecord`): from a split folder (images with their xml) or from the seed's CSV plus an image
folder. Every image is checked as it is read (header, JPEG end marker, size against the xml, boxes); a bad one is
reported and left out, the others are still written. Upright RGB JPEGs are stored byte for byte (baseline or
progressive: ``tf.io.decode_jpeg`` reads both); PNG, greyscale, RGBA, CMYK, 16-bit and EXIF-rotated images are
converted once to RGB JPEG (quality 95), rotated as labelImg showed them, so the stored pixels match the boxes.
Shards ``PATH-00000-of-0000N`` (or just ``PATH`` for one shard) are each written under a temporary name and
renamed when complete.

Speed (``benchmarks/bench_data.py``): each image file is read once, and for a plain RGB JPEG its header is parsed
from those bytes (:func:`~spaghettinet.data.images.inspect_image_for_record`) and the same bytes are stored; the
xml goes through the C parser when it has no DOCTYPE (:func:`~spaghettinet.data.voc.read_xml_root`); examples
are serialized without TensorFlow (:func:`_example_bytes`), which only writes the record files. The work is pure
Python and holds the GIL, so from :data:`PARALLEL_MIN_IMAGES` images on it is shared with ``workers - 1`` worker
processes, the output staying in input order and byte for byte the same.

Reading: :func:`parse_example` for ``tf.data`` pipelines, :func:`read_examples` for tests and reports. Both read
the records of the seed's generate_tfrecord.py too (format ``jpg``, no difficult/truncated/sha256 keys).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import glob as globbing
import hashlib
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spaghettinet.data.csv_labels import read_label_csv
from spaghettinet.data.images import encoded_rgb_jpeg, inspect_image_for_record
from spaghettinet.data.labelmap import MAX_LABEL_ID, LabelMap, read_label_map
from spaghettinet.data.problems import ERROR, Problem, ProblemError
from spaghettinet.data.validate import check_objects, check_pair_for_record, image_problems, pairing_problems
from spaghettinet.data.voc import ImageXmlPair, VocAnnotation, find_pairs
from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import atomic_path
from spaghettinet.tf_runtime import import_tensorflow

if TYPE_CHECKING:
    import numpy as np

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


def _varint(value: int) -> bytes:
    """Protocol-buffer base-128 varint (negative int64 values as their 64-bit two's complement)."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]

# Field tags of tf.train.Feature's "kind" oneof (example/feature.proto): bytes_list = 1, float_list = 2,
# int64_list = 3, each a length-delimited message (wire type 2). In the lists, ``value`` is field 1 (packed for
# floats and ints).
_BYTES, _FLOATS, _INT64S = b"\x0a", b"\x12", b"\x1a"


def _entry_prefix(key: str) -> bytes:
    # A Features.feature map entry is a message {key = 1: string, value = 2: Feature}.
    return b"\x0a" + _varint(len(key)) + key.encode("ascii") + b"\x12"


_PREFIX = {
    key: _entry_prefix(key)
    for key in (
        "image/height",
        "image/width",
        "image/filename",
        "image/source_id",
        "image/key/sha256",
        "image/encoded",
        "image/format",
        "image/object/bbox/xmin",
        "image/object/bbox/xmax",
        "image/object/bbox/ymin",
        "image/object/bbox/ymax",
        "image/object/class/text",
        "image/object/class/label",
        "image/object/difficult",
        "image/object/truncated",
    )
}


def _entry(key: str, kind: bytes, body: bytes) -> bytes:
    """One map entry of ``Features.feature`` (tag and length included); ``body`` is the serialized list."""
    size = len(body)
    feature = kind + (_SMALL_VARINTS[size] if size < 0x80 else _varint(size)) + body
    size = len(feature)
    entry = _PREFIX[key] + (_SMALL_VARINTS[size] if size < 0x80 else _varint(size)) + feature
    size = len(entry)
    return b"\x0a" + (_SMALL_VARINTS[size] if size < 0x80 else _varint(size)) + entry


def _bytes_body(values: Iterable[bytes]) -> bytes:
    return b"".join(b"\x0a" + _varint(len(value)) + value for value in values)


def _floats_body(values: list[float]) -> bytes:
    if not values:
        return b""
    # float32, rounded to nearest as protobuf stores a Python float in a float field.
    return b"\x0a" + _varint(4 * len(values)) + struct.pack(f"<{len(values)}f", *values)


def _int64s_body(values: list[int]) -> bytes:
    if not values:
        return b""
    if 0 <= min(values) and max(values) < 0x80:  # one byte each: labels, flags
        return b"\x0a" + _varint(len(values)) + bytes(values)
    packed = b"".join(map(_varint, values))
    return b"\x0a" + _varint(len(packed)) + packed


_FORMAT_ENTRY = _entry("image/format", _BYTES, _bytes_body([b"jpeg"]))


def _example_bytes(
    filename: str, annotation: VocAnnotation, encoded: bytes, label_ids: dict[str, int]
) -> bytes:
    """A serialized tf.train.Example with the TF OD API keys, written without TensorFlow.

    The wire format of example.proto / feature.proto: ``Example.features`` (field 1) holds ``Features.feature``
    (field 1), a map whose entries are ``{key: 1, value: 2}``. It parses to the same message as
    ``tf.train.Example(features=tf.train.Features(feature={...}))`` (tested), several times faster, and the image
    bytes are copied once. Entries are written in a fixed order, so the same input gives the same bytes
    (TensorFlow's own map order changes from run to run).
    """
    width, height = annotation.width, annotation.height
    objects = annotation.objects
    name = _bytes_body([filename.encode("utf-8")])
    # image/encoded, the only large value: its entry's header here, the bytes themselves joined once at the end.
    image_list_head = b"\x0a" + _varint(len(encoded))
    list_size = len(image_list_head) + len(encoded)
    feature_head = _BYTES + _varint(list_size)
    feature_size = len(feature_head) + list_size
    entry_head = _PREFIX["image/encoded"] + _varint(feature_size)
    image_entry_head = (
        b"\x0a" + _varint(len(entry_head) + feature_size) + entry_head + feature_head + image_list_head
    )
    digest = hashlib.sha256(encoded).hexdigest().encode("ascii")
    before = b"".join(
        (
            _entry("image/height", _INT64S, _int64s_body([height])),
            _entry("image/width", _INT64S, _int64s_body([width])),
            _entry("image/filename", _BYTES, name),
            _entry("image/source_id", _BYTES, name),
            _entry("image/key/sha256", _BYTES, b"\x0a" + _varint(len(digest)) + digest),
            image_entry_head,
        )
    )
    after = b"".join(
        (
            _FORMAT_ENTRY,
            _entry("image/object/bbox/xmin", _FLOATS, _floats_body([obj.xmin / width for obj in objects])),
            _entry("image/object/bbox/xmax", _FLOATS, _floats_body([obj.xmax / width for obj in objects])),
            _entry("image/object/bbox/ymin", _FLOATS, _floats_body([obj.ymin / height for obj in objects])),
            _entry("image/object/bbox/ymax", _FLOATS, _floats_body([obj.ymax / height for obj in objects])),
            _entry(
                "image/object/class/text", _BYTES, _bytes_body([obj.name.encode("utf-8") for obj in objects])
            ),
            _entry(
                "image/object/class/label", _INT64S, _int64s_body([label_ids[obj.name] for obj in objects])
            ),
            _entry("image/object/difficult", _INT64S, _int64s_body([int(obj.difficult) for obj in objects])),
            _entry("image/object/truncated", _INT64S, _int64s_body([int(obj.truncated) for obj in objects])),
        )
    )
    size = len(before) + len(encoded) + len(after)
    return b"".join((b"\x0a", _varint(size), before, encoded, after))


def _label_ids(label_map: LabelMap) -> dict[str, int]:
    """Class name -> id, as :meth:`LabelMap.id_of` answers for the names in the map (the first id of a name).

    Raises:
        DataError: an id outside 1..2**31-1 (a map built in Python can hold one a label map file cannot): the
            int64 list of a record would cut it to another number without a word.
    """
    ids: dict[str, int] = {}
    for class_id, name in zip(label_map.ids, label_map.names_by_id, strict=True):
        if not 1 <= class_id <= MAX_LABEL_ID:
            raise DataError(f"label map id {class_id} of class {name!r} is outside 1..{MAX_LABEL_ID}")
        ids.setdefault(name, class_id)
    return ids


def _finish(image_path, annotation, info, data, problems, source, label_ids) -> _Prepared:
    unknown = sorted({obj.name for obj in annotation.objects}.difference(label_ids))
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
        encoded = encoded_rgb_jpeg(image_path, info, data)
    except ProblemError as exc:
        return _Prepared(None, problems + [exc.to_problem()])
    serialized = _example_bytes(image_path.name, annotation, encoded, label_ids)
    return _Prepared(serialized, problems, len(annotation.objects), not info.stored_as_is)


def _prepare_pair(pair: ImageXmlPair, label_ids: dict[str, int]) -> _Prepared:
    """Check one image/xml pair and serialize its example (None with the problems when it has an error)."""
    check, data = check_pair_for_record(pair)
    if check.pair is None:
        return _Prepared(None, check.problems)
    checked = check.pair
    return _finish(
        checked.image_path,
        checked.annotation,
        checked.image,
        data,
        check.problems,
        checked.xml_path,
        label_ids,
    )


def _prepare_row(row, image_dir: Path, csv: Path, label_ids: dict[str, int]) -> _Prepared:
    """Check one image of a label CSV and serialize its example."""
    image_path = image_dir / row.filename
    try:
        info, data = inspect_image_for_record(image_path)
    except ProblemError as exc:
        return _Prepared(None, [exc.to_problem()])
    row_problems = image_problems(info)
    annotation, object_problems = check_objects(row.annotation, info, csv)
    row_problems += [
        Problem(p.file, p.kind, p.severity, f"{row.filename}: {p.message}") for p in object_problems
    ]
    if any(p.severity == ERROR for p in row_problems):
        return _Prepared(None, row_problems)
    return _finish(image_path, annotation, info, data, row_problems, csv, label_ids)


PARALLEL_MIN_IMAGES = 2000
"""Below this many images :func:`tfrecord` works alone: starting a worker (0.1-0.2 s of CPU) would not pay."""

_CHUNK = 16
"""Images per task sent to a worker process: enough to amortize the round trip, few enough to bound memory."""

_HEADER = struct.Struct("<Q")
_PIPE_SIZE = 1 << 20
_READY = (
    b"spgw-ok\n"  # what a worker writes once started; anything else first (a chatty sitecustomize) drops it
)
# Started as ``python -P -c``: ``-c`` alone puts the current folder first on sys.path, so a numpy.py or
# defusedxml.py in the user's folder would be run by every worker (docs.python.org/3/using/cmdline.html#cmdoption-P).
# -P (Python 3.11+, which this package requires) leaves it out; the code then drops any "" or "." that
# PYTHONPATH may add and puts this package's own folder first, before anything else is imported.
_WORKER_CODE = (
    "import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p not in ('', '.')]; "
    "from spaghettinet.data.tfrecord import _serve; _serve()"
)


def _prepare_chunk(function: Callable, chunk: Sequence) -> list:
    return [function(item) for item in chunk]


def _serve() -> None:
    """A worker process's loop: read ``(function, chunk)`` tasks on stdin, answer each with its results.

    Messages are a little-endian uint64 length and a pickle; :data:`_READY` first says the worker is ready.
    The answer is ``(True, results)`` or, when the chunk raised, ``(False, None)``: the parent then does that
    chunk itself and the error surfaces there.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; stdin's end stops us
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the answers
    answers.write(_READY)
    answers.flush()
    while header := requests.read(_HEADER.size):
        request = requests.read(_HEADER.unpack(header)[0])
        try:
            function, chunk = pickle.loads(request)
            answer = pickle.dumps((True, _prepare_chunk(function, chunk)), pickle.HIGHEST_PROTOCOL)
        except Exception:
            answer = pickle.dumps((False, None))
        answers.write(_HEADER.pack(len(answer)) + answer)
        answers.flush()


def _read_exactly(stream, size: int) -> bytes:
    """``size`` bytes from an unbuffered pipe (fewer at its end)."""
    parts = []
    while size > 0 and (part := stream.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


class _Workers:
    """Worker processes for :func:`_ordered_parallel`, talking over pipes.

    Each is a fresh interpreter: forking this process is unsafe once TensorFlow's threads run, and a
    ``multiprocessing`` child would re-run the caller's script when it has no ``__main__`` guard.
    """

    def __init__(self, count: int):
        import fcntl  # POSIX only, like the workers

        source_root = str(Path(__file__).resolve().parents[2])
        self.held: dict[subprocess.Popen, deque[int]] = {}
        self.ready: set[subprocess.Popen] = set()
        self.greetings: dict[subprocess.Popen, bytes] = {}
        for _ in range(count):
            try:
                process = subprocess.Popen(
                    [sys.executable, "-P", "-c", _WORKER_CODE, source_root],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    bufsize=0,  # unbuffered: select() must see every answer not yet read
                )
            except OSError:  # no interpreter to start (a frozen app): fewer workers, or none
                break
            with contextlib.suppress(AttributeError, OSError):
                # Room for a whole answer (16 images) in the pipe: the worker writes it in one go and the
                # parent reads it in one go, instead of the two taking turns 64 KiB at a time (Linux only).
                fcntl.fcntl(process.stdout, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            self.held[process] = deque()
        self.processes = list(self.held)

    def idle(self) -> list[subprocess.Popen]:
        """Started workers with fewer than two chunks (one being done, one queued)."""
        return [process for process in self.ready if len(self.held[process]) < 2]

    def send(self, process: subprocess.Popen, index: int, message: bytes) -> bool:
        try:
            view = memoryview(_HEADER.pack(len(message)) + message)
            while view:
                view = view[process.stdin.write(view) :]
        except OSError:
            self.drop(process)
            return False
        self.held[process].append(index)
        return True

    def receive(self, timeout: float | None) -> list[tuple[int, list | None]]:
        """``(chunk index, results)`` from each worker that answered within ``timeout`` seconds; results are
        None when the chunk is to be done again (the chunk raised, or the worker died)."""
        if not self.held:
            return []
        ready, _, _ = select.select([process.stdout for process in self.held], [], [], timeout)
        answers = []
        for process in [process for process in self.held if process.stdout in ready]:
            if process not in self.ready:
                # One read of what is there (select said something is): a short or odd greeting never blocks.
                greeting = self.greetings.get(process, b"") + process.stdout.read(len(_READY))
                self.greetings[process] = greeting
                if greeting == _READY:
                    self.ready.add(process)
                elif not greeting or not _READY.startswith(greeting):
                    self.drop(process)
                continue
            header = _read_exactly(process.stdout, _HEADER.size)
            if len(header) < _HEADER.size:
                answers += [(index, None) for index in self.drop(process)]
                continue
            size = _HEADER.unpack(header)[0]
            payload = _read_exactly(process.stdout, size)
            if len(payload) < size:
                answers += [(index, None) for index in self.drop(process)]
                continue
            ok, results = pickle.loads(payload)
            answers.append((self.held[process].popleft(), results if ok else None))
        return answers

    def drop(self, process: subprocess.Popen) -> list[int]:
        """Stop using a worker; return the chunks it held."""
        self.ready.discard(process)
        held = list(self.held.pop(process, ()))
        process.kill()
        return held

    def close(self) -> None:
        # Every answer wanted has been read: nothing is lost by not waiting for the interpreters to wind down.
        for process in self.processes:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()


def _chunk_size(image_paths: Sequence[Path]) -> int:
    """Images per chunk: :data:`_CHUNK`, fewer for large files (from a sample), so that a chunk is about 1 MiB
    at most and what is in flight stays small even for 5 MB photos."""
    sizes = []
    for path in image_paths[:32]:
        with contextlib.suppress(OSError):
            sizes.append(path.stat().st_size)
    average = sum(sizes) // len(sizes) if sizes else 0
    return max(1, min(_CHUNK, _PIPE_SIZE // max(average, 1)))


def _ordered_parallel(
    function: Callable, items: Sequence, workers: int, chunk: int = _CHUNK, wait_for_workers: bool = False
) -> Iterator:
    """``map(function, items)`` in this process and ``workers - 1`` worker processes, results in input order.

    Items go in chunks of ``chunk``. The parent never waits while there is work it could do: it does the
    first chunk not handed out, and waits only when every chunk up to ``2 * workers + 2`` ahead of the next
    one due is done or held by a worker. Workers get chunks once started, two at a time. A worker that fails or
    dies only costs its chunks being done again here, so errors are raised by the parent as without workers.
    ``wait_for_workers`` starts only once every worker is ready (tests use it so that workers surely take part).
    """
    if workers <= 1 or len(items) < PARALLEL_MIN_IMAGES or os.name != "posix":
        yield from map(function, items)
        return
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    window = 2 * workers + 2
    results: dict[int, list] = {}
    todo = list(range(len(chunks)))  # neither done nor held by a worker, ascending
    pool = _Workers(workers - 1)
    picklable = True
    try:
        deadline = time.monotonic() + 60
        while wait_for_workers and len(pool.ready) < len(pool.held) and time.monotonic() < deadline:
            pool.receive(1.0)
        for due in range(len(chunks)):
            while due not in results:
                for process in pool.idle() if picklable else ():
                    # todo[0] is left for the parent, which needs it soonest.
                    if len(todo) > 1 and todo[1] < due + window:
                        try:
                            message = pickle.dumps((function, chunks[todo[1]]), pickle.HIGHEST_PROTOCOL)
                        except Exception:  # nothing a worker could be given: this process does the rest
                            picklable = False
                            break
                        index = todo.pop(1)
                        if not pool.send(process, index, message):
                            bisect.insort(todo, index)
                parent_can_work = bool(todo) and todo[0] < due + window
                for index, answer in pool.receive(0 if parent_can_work else None):
                    if answer is None:
                        bisect.insort(todo, index)
                    else:
                        results[index] = answer
                if due not in results and todo and todo[0] < due + window:
                    index = todo.pop(0)
                    results[index] = _prepare_chunk(function, chunks[index])
            yield from results.pop(due)
    finally:
        pool.close()


@contextlib.contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Keep the objects that exist already (TensorFlow's 300 000 and more) out of the garbage collector's full
    scans while the records are written: the conversion allocates enough to set one off, and it alone took
    0.2 s. They are handed back to the collector afterwards; a caller's own ``gc.freeze()`` is left alone."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _remove_stale_shards(out: Path, keep: list[Path]) -> None:
    """Delete shard sets of ``out`` with another shard count, so a glob ``out*`` finds only the new ones."""
    candidates = [out] + [Path(p) for p in globbing.glob(globbing.escape(str(out)) + "-?????-of-?????")]
    for path in candidates:
        if path not in keep and path.is_file():
            path.unlink()


@_old_objects_frozen()
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
        workers: processes preparing examples, this one included (default: one per core, at most 8). Others
            are started only for :data:`PARALLEL_MIN_IMAGES` images or more; the records are the same either way.

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
    label_ids = _label_ids(label_map)
    tf = import_tensorflow()
    problems: list[Problem] = []

    if split_dir is not None:
        scan = find_pairs(split_dir)
        problems += pairing_problems(scan)

        prepare = functools.partial(_prepare_pair, label_ids=label_ids)
        items: list = scan.pairs
        image_paths = [pair.image_path for pair in items[:32]]
    else:
        csv_images, csv_problems = read_label_csv(csv)
        problems += csv_problems
        image_dir = Path(images)
        if not image_dir.is_dir():
            raise UsageError("--images is not a folder", image_dir)

        prepare = functools.partial(_prepare_row, image_dir=image_dir, csv=Path(csv), label_ids=label_ids)
        items = csv_images
        image_paths = [image_dir / row.filename for row in items[:32]]

    out = Path(out)
    targets = shard_paths(out, shards)
    result = TfRecordResult(files=targets)
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(target)) for target in targets]
        writers = [stack.enter_context(tf.io.TFRecordWriter(str(path))) for path in temporaries]
        prepared_items = _ordered_parallel(prepare, items, workers, _chunk_size(image_paths))
        for prepared in stack.enter_context(contextlib.closing(prepared_items)):
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

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(self.encoded)) as image:
            return np.asarray(image.convert("RGB"))


_CORNER_KEYS = tuple(f"image/object/bbox/{k}" for k in ("ymin", "xmin", "ymax", "xmax"))


def example_problem(proto, num_classes: int | None = None) -> str | None:
    """Why a parsed ``tf.train.Example`` cannot be trained on, or None (the image is not decoded here).

    Args:
        proto: a ``tf.train.Example``.
        num_classes: the model's classes; labels outside 1..num_classes are a problem when given.

    Returns:
        One sentence, or None.

    Example:
        >>> example_problem(tf.train.Example())
        'no image/encoded bytes'
    """
    import math

    feature = proto.features.feature

    def values(key, kind):
        return list(getattr(feature[key], kind).value) if key in feature else []

    if not values("image/encoded", "bytes_list"):
        return "no image/encoded bytes"
    counts = {key.rsplit("/", 1)[-1]: len(values(key, "float_list")) for key in _CORNER_KEYS}
    labels = values("image/object/class/label", "int64_list")
    if len(set(counts.values())) > 1 or len(labels) != counts["ymin"]:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        return f"its box lists differ in length ({listed}; class/label {len(labels)})"
    if not all(math.isfinite(v) for key in _CORNER_KEYS for v in values(key, "float_list")):
        return "a box coordinate is NaN or infinite"
    if num_classes is not None:
        outside = sorted({label for label in labels if not 1 <= label <= num_classes})
        if outside:
            return f"class label(s) {outside} are not in 1..{num_classes} (the config's num_classes)"
    return None


def _example_from_proto(proto) -> Example:
    import numpy as np

    problem = example_problem(proto)
    if problem is not None and problem != "no image/encoded bytes":
        raise ValueError(problem)
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


def tf_error_text(exc: BaseException) -> str:
    """The first line of a TensorFlow error without the op decoration eager errors carry
    (``{{function_node __wrapped__...}} <what> [Op:IteratorGetNext] name:``).

    Example:
        >>> tf_error_text(ValueError("{{function_node x}} corrupted record at 0 [Op:IteratorGetNext] name: "))
        'corrupted record at 0'
    """
    message = (getattr(exc, "message", None) or str(exc)).strip()
    first = message.splitlines()[0] if message else ""
    return re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:.*$", "", first) or type(exc).__name__


def _corrupt(path: Path, exc) -> DataError:
    return DataError(f"corrupt or truncated TFRecord file: {tf_error_text(exc)}; write it again", path)


def count_records(path: str | Path) -> int:
    """Count the records of one TFRecord file, checking every length and checksum as :func:`read_examples` does.

    TensorFlow's record reader verifies the masked CRC-32C of each record's length and data, so a file damaged
    anywhere (not only cut short) is named here, at the config stage, and not hours later in training.

    Args:
        path: one TFRecord file.

    Returns:
        The number of records.

    Raises:
        DataError: the file is missing, truncated or corrupt (its name and the reason).

    Example:
        >>> count_records("training/train.record")  # doctest: +SKIP
        119
    """
    tf = import_tensorflow()
    path = Path(path)
    try:
        _check_record_framing(path)
        count = 0
        for _ in tf.data.TFRecordDataset(str(path)):
            count += 1
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", path) from None
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as exc:
        raise _corrupt(path, exc) from None
    return count


def read_examples(paths_or_glob: str | Path | Iterable[str | Path]) -> Iterator[Example]:
    """Read records back as :class:`Example` objects (files in :func:`list_record_files` order).

    Args:
        paths_or_glob: as for :func:`list_record_files`.

    Yields:
        :class:`Example`, one per record.

    Raises:
        DataError: no file matches, a file is corrupt or truncated (checksums are verified), or a record is not a
            usable ``tf.train.Example`` (not one at all, or box lists of different lengths): the file and the
            record's number are named.

    Example:
        >>> [e.filename for e in read_examples("training/test.record")][:1]
        ['IMG_20181228_101826.jpg']
    """
    from google.protobuf.message import DecodeError

    tf = import_tensorflow()
    for path in list_record_files(paths_or_glob):
        _check_record_framing(path)
        try:
            for number, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator(), start=1):
                try:
                    yield _example_from_proto(tf.train.Example.FromString(record))
                except DecodeError:
                    raise DataError(f"record {number} is not a tf.train.Example", path) from None
                except ValueError as exc:
                    raise DataError(f"record {number}: {exc}", path) from None
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
            raise _corrupt(path, exc) from None
