"""TFRecord writing without TensorFlow's protos, and with worker processes: the same records, the same problems."""

from __future__ import annotations

import functools
import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.data import tfrecord as tfrecord_module
from spaghettinet.data.labelmap import LabelMap
from spaghettinet.data.tfrecord import _example_bytes, read_examples, tfrecord
from spaghettinet.data.voc import VocAnnotation, VocObject, voc_xml_text
from spaghettinet.tf_runtime import import_tensorflow


def _tf_example(filename: str, annotation: VocAnnotation, encoded: bytes, ids: dict[str, int]) -> bytes:
    """The example as the writer built it with tf.train protos before."""
    tf = import_tensorflow()
    objects, width, height = annotation.objects, annotation.width, annotation.height

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    name = filename.encode("utf-8")
    feature = {
        "image/height": ints([height]),
        "image/width": ints([width]),
        "image/filename": strings([name]),
        "image/source_id": strings([name]),
        "image/key/sha256": strings([hashlib.sha256(encoded).hexdigest().encode("ascii")]),
        "image/encoded": strings([encoded]),
        "image/format": strings([b"jpeg"]),
        "image/object/bbox/xmin": floats([o.xmin / width for o in objects]),
        "image/object/bbox/xmax": floats([o.xmax / width for o in objects]),
        "image/object/bbox/ymin": floats([o.ymin / height for o in objects]),
        "image/object/bbox/ymax": floats([o.ymax / height for o in objects]),
        "image/object/class/text": strings([o.name.encode("utf-8") for o in objects]),
        "image/object/class/label": ints([ids[o.name] for o in objects]),
        "image/object/difficult": ints([int(o.difficult) for o in objects]),
        "image/object/truncated": ints([int(o.truncated) for o in objects]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize(
    ("filename", "size", "objects", "encoded", "ids"),
    [
        ("negative.jpg", (96, 64), (), b"\xff\xd8\xff\xd9", {"cat": 1}),
        (
            "Ünïcode name.jpg",
            (4000, 3000),
            (
                VocObject("chat noir", 0.5, 2.25, 3999.75, 3000, difficult=True),
                VocObject("dog", 1, 1, 2, 2, truncated=True),
                VocObject("chat noir", 10, 20, 30, 40),
            ),
            bytes(range(256)) * 700,  # 179 200 bytes: multi-byte lengths at every level
            {"chat noir": 300, "dog": 2**40},
        ),
    ],
)
def test_hand_serialized_example_is_the_tf_proto(filename, size, objects, encoded, ids):
    tf = import_tensorflow()
    annotation = VocAnnotation(Path("x.xml"), filename, size[0], size[1], 3, objects)
    ours = _example_bytes(filename, annotation, encoded, ids)
    theirs = _tf_example(filename, annotation, encoded, ids)
    assert tf.train.Example.FromString(ours) == tf.train.Example.FromString(theirs)
    assert ours == _example_bytes(filename, annotation, encoded, ids)  # same input, same bytes


def _jpeg(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=85)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """40 good pairs (some negatives, one PNG to convert) and one of each kind of bad file."""
    folder = tmp_path_factory.mktemp("mixed")
    for index in range(40):
        _jpeg(folder / f"good{index:02d}.jpg", index)
        objects = [VocObject(["cat", "dog"][k % 2], 1 + k, 2, 20 + k, 22) for k in range(index % 3)]
        (folder / f"good{index:02d}.xml").write_text(voc_xml_text(f"good{index:02d}.jpg", 32, 24, objects))
    Image.new("L", (32, 24), 90).save(folder / "grey.png")
    (folder / "grey.xml").write_text(voc_xml_text("grey.png", 32, 24, [VocObject("cat", 0, 0, 9, 9)]))
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(99).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
        buffer, "JPEG"
    )
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "cut.xml").write_text(voc_xml_text("cut.jpg", 32, 24, [VocObject("cat", 0, 0, 9, 9)]))
    _jpeg(folder / "broken.jpg", 1)
    (folder / "broken.xml").write_text("<annotation><object>")
    _jpeg(folder / "emu.jpg", 2)
    (folder / "emu.xml").write_text(voc_xml_text("emu.jpg", 32, 24, [VocObject("emu", 0, 0, 9, 9)]))
    _jpeg(folder / "wide.jpg", 3)
    (folder / "wide.xml").write_text(voc_xml_text("wide.jpg", 64, 24, [VocObject("cat", 0, 0, 9, 9)]))
    return folder


def _count_chunks_sent(monkeypatch) -> list[int]:
    """Small chunks, workers from 8 images, started before any chunk is done; returns the chunks they get."""
    monkeypatch.setattr(tfrecord_module, "PARALLEL_MIN_IMAGES", 8)
    monkeypatch.setattr(tfrecord_module, "_CHUNK", 3)
    monkeypatch.setattr(
        tfrecord_module,
        "_ordered_parallel",
        functools.partial(tfrecord_module._ordered_parallel, wait_for_workers=True),
    )
    sent: list[int] = []
    send = tfrecord_module._Workers.send

    def counting_send(self, process, index, message):
        ok = send(self, process, index, message)
        if ok:
            sent.append(index)
        return ok

    monkeypatch.setattr(tfrecord_module._Workers, "send", counting_send)
    return sent


def _write(folder: Path, out: Path, workers: int, shards: int = 1):
    return tfrecord(
        out, LabelMap.from_names(["cat", "dog"]), split_dir=folder, workers=workers, shards=shards
    )


@pytest.mark.parametrize("shards", [1, 3])
def test_worker_processes_write_the_same_files_and_problems_as_one_process(
    mixed_folder, tmp_path, monkeypatch, shards
):
    serial = _write(mixed_folder, tmp_path / "serial.record", workers=1, shards=shards)
    sent = _count_chunks_sent(monkeypatch)
    parallel = _write(mixed_folder, tmp_path / "parallel.record", workers=3, shards=shards)
    assert sent, "no chunk went to a worker process"
    assert [p.read_bytes() for p in parallel.files] == [p.read_bytes() for p in serial.files]
    assert parallel.problems == serial.problems
    assert (parallel.images, parallel.objects, parallel.converted) == (serial.images, serial.objects, 1)
    assert {(p.file.name, p.kind) for p in parallel.errors} == {
        ("cut.jpg", "image-does-not-decode"),
        ("broken.xml", "unparseable-xml"),
        ("emu.xml", "unknown-class"),
        ("wide.xml", "size-mismatch"),
    }
    names = [e.filename for e in read_examples(parallel.files)]
    assert sorted(names) == sorted([f"good{i:02d}.jpg" for i in range(40)] + ["grey.png"])


def _not_for_workers(stem: str) -> str:
    """Defined in a test module the worker processes cannot import: they fail it, the parent does it."""
    return stem.upper()


@pytest.mark.parametrize(
    "worker_code",
    [
        None,  # the real workers, failing every chunk
        "import sys; sys.exit(3)",  # workers that die at once
        "print('hello from sitecustomize'); import time; time.sleep(30)",  # workers that talk garbage
        "import sys, time; sys.stdout.write('spg'); sys.stdout.flush(); time.sleep(30)",  # and stall
    ],
)
def test_failing_workers_only_cost_time(monkeypatch, worker_code):
    if worker_code is None:
        sent = _count_chunks_sent(monkeypatch)  # waits for the workers: they surely fail some chunks
    else:  # workers that never start: nothing waits for them
        sent = []
        monkeypatch.setattr(tfrecord_module, "PARALLEL_MIN_IMAGES", 8)
        monkeypatch.setattr(tfrecord_module, "_WORKER_CODE", worker_code)
    items = [f"s{i}" for i in range(50)]
    started = time.monotonic()
    got = list(tfrecord_module._ordered_parallel(_not_for_workers, items, 3, 4))
    assert got == [s.upper() for s in items]
    assert bool(sent) == (worker_code is None)
    assert time.monotonic() - started < 20


def test_unpicklable_items_are_done_by_the_parent(monkeypatch):
    _count_chunks_sent(monkeypatch)
    items = [lambda i=i: i for i in range(30)]
    assert [f() for f in tfrecord_module._ordered_parallel(lambda f: f, items, 2, 4)] == list(range(30))


def test_chunks_shrink_for_large_photos_so_little_is_in_flight(tmp_path):
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(b"x" * 20_000)
    large.write_bytes(b"x" * 5_000_000)
    assert tfrecord_module._chunk_size([small] * 40) == tfrecord_module._CHUNK
    assert tfrecord_module._chunk_size([large, small]) == 1
    assert tfrecord_module._chunk_size([tmp_path / "missing.jpg"]) == tfrecord_module._CHUNK
