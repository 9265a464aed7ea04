"""TFRecords that cannot be used (issue 10, item 9): named with their file and record number when read back; left out
of training and evaluation with a count and a reason each; the config stage's count verifies checksums."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.data.tfrecord import count_records, read_examples
from spaghettinet.errors import DataError
from spaghettinet.model.anchors import spaghettinet_anchors
from spaghettinet.pipeline_config.settings import (
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    TrainSettings,
)
from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.inputs import check_records, eval_dataset, train_dataset

tf = import_tensorflow()
SIZE = 64


def _jpeg(width=40, height=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _example(
    name: str, encoded: bytes | None = None, corners=None, labels=(1,), height: int = 32, width: int = 40
) -> bytes:
    corners = corners or {"ymin": [0.1], "xmin": [0.1], "ymax": [0.8], "xmax": [0.9]}
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded or _jpeg()])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
    }
    for key, values in corners.items():
        feature[f"image/object/bbox/{key}"] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


BAD = {
    2: (b"\x00\x01 not a protocol buffer \xff\xfe", "not a tf.train.Example"),
    4: (
        _example("cut.jpg", encoded=_jpeg()[:-300]),
        "cannot be read: jpeg::Uncompress failed. Invalid JPEG data",
    ),
    5: (
        _example("uneven.jpg", corners={"ymin": [0.1, 0.2], "xmin": [0.1], "ymax": [0.8], "xmax": [0.9]}),
        "box lists differ in length (ymin 2, xmin 1, ymax 1, xmax 1; class/label 1)",
    ),
    6: (
        _example("nan.jpg", corners={"ymin": [float("nan")], "xmin": [0.1], "ymax": [0.8], "xmax": [0.9]}),
        "a box coordinate is NaN or infinite",
    ),
    8: (_example("class9.jpg", labels=(9,)), "class label(s) [9] are not in 1..2"),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("records") / "train.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for number in range(1, 10):
            writer.write(BAD[number][0] if number in BAD else _example(f"good{number}.jpg", labels=(2,)))
    return path


def _config(records: Path) -> PipelineConfig:
    reader = InputReaderSettings(input_paths=[str(records)])
    return PipelineConfig(
        model=ModelSettings(num_classes=2, variant="s", input_size=(SIZE, SIZE)),
        train=TrainSettings(batch_size=2, num_steps=10, max_number_of_boxes=4, data_augmentation_options=()),
        train_input=reader,
        eval_input=InputReaderSettings(input_paths=[str(records)], shuffle=False, num_epochs=1),
        path=records.parent / "pipeline.config",
    )


def test_read_examples_names_the_file_and_the_record(records):
    with pytest.raises(DataError) as caught:
        list(read_examples(records))
    assert str(caught.value) == f"{records}: record 2 is not a tf.train.Example"
    uneven = records.with_name("uneven.record")
    with tf.io.TFRecordWriter(str(uneven)) as writer:
        writer.write(_example("a.jpg"))
        writer.write(BAD[5][0])
    with pytest.raises(DataError, match=r"uneven.record: record 2: its box lists differ in length"):
        list(read_examples(uneven))


def test_check_records_names_every_unusable_record_with_its_reason(records):
    check = check_records([records], num_classes=2)
    assert (check.total, check.usable) == (9, 4)
    assert [(bad.number, bad.file) for bad in check.bad] == [(n, str(records)) for n in sorted(BAD)]
    for bad in check.bad:
        assert BAD[bad.number][1] in bad.reason, bad
    lines = check.messages()
    assert lines[0] == "skipped 5 of 9 training records that cannot be used:"
    assert lines[1] == f"  {records}: record 2: not a tf.train.Example (the record does not parse)"


def test_training_and_evaluation_skip_the_bad_records_and_say_so(records, caplog):
    config = _config(records)
    anchors = spaghettinet_anchors((SIZE, SIZE))
    with caplog.at_level(logging.WARNING, logger="spaghettinet"):
        stream = train_dataset(config, anchors, batch_size=2, cache_images=False)
        batches = [next(iter(stream)) for _ in range(1)] + list(stream.take(5))
    assert "skipped 5 of 9 training records that cannot be used:" in caplog.text
    assert "record 4: cannot be read" in caplog.text
    for batch in batches:
        # Only the good records (class 2, one box each) come through.
        assert batch["gt_classes"].numpy()[:, 0].tolist() == [2, 2]
    check = check_records([records], num_classes=2)
    cached = train_dataset(config, anchors, batch_size=2, cache_images=True, record_check=check)
    assert len(list(cached.take(4))) == 4
    names = [
        name.decode() for batch in eval_dataset(config, batch_size=3) for name in batch["filename"].numpy()
    ]
    assert names == ["good1.jpg", "good3.jpg", "good7.jpg", "good9.jpg"]


def test_nothing_usable_is_an_error_listing_the_records(tmp_path):
    path = tmp_path / "bad.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"garbage")
    with pytest.raises(DataError, match=r"no record can be used:\n  .*bad.record: record 1: not a tf.train"):
        check_records([path], num_classes=2)


def test_record_count_verifies_checksums(tmp_path, records):
    assert count_records(records) == 9
    damaged = tmp_path / "damaged.record"
    data = bytearray(records.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a record: its length still fits, its CRC does not
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"damaged.record: corrupt or truncated TFRecord file") as caught:
        count_records(damaged)
    assert "corrupted record at" in str(caught.value) and "function_node" not in str(caught.value)
    with pytest.raises(DataError, match=r"damaged.record: corrupt or truncated TFRecord file"):
        check_records([damaged])
    cut = tmp_path / "cut.record"
    cut.write_bytes(records.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"cut.record: corrupt or truncated TFRecord file"):
        count_records(cut)
    assert np.array_equal(check_records([records]).skipped_mask().nonzero()[0], [1, 3, 4, 5])
