"""The tf.data pipelines: shapes, targets, negatives, determinism and resume position (with and without the
decoded-image cache, with the config's augmentation steps), eval ground truth."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.data.tfrecord import count_records
from spaghettinet.errors import DataError
from spaghettinet.model.anchors import spaghettinet_anchors
from spaghettinet.pipeline_config.settings import (
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    RandomAdjustBrightness,
    RandomCropPadImage,
    RandomHorizontalFlip,
    RandomJpegQuality,
    RandomSelfConcatImage,
    SsdRandomCrop,
    TrainSettings,
)
from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training import inputs
from spaghettinet.training.augment import AugmentOptions
from spaghettinet.training.inputs import eval_dataset, record_files, train_dataset

tf = import_tensorflow()

SIZE = 64


def _example(index: int, with_object: bool) -> bytes:
    height, width = 48 + 4 * index, 64
    image = np.full((height, width, 3), 90, np.uint8)
    boxes, classes = [], []
    if with_object:
        y0, x0, y1, x1 = 8, 10 + index, 40, 50
        image[y0:y1, x0:x1] = (220, 30, 30)
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
        classes.append(1 + index % 2)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img{index}.jpg".encode()])),
        "image/source_id": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[f"img{index}.jpg".encode()])
        ),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        "image/object/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=classes)),
    }
    for axis, name in enumerate(("ymin", "xmin", "ymax", "xmax")):
        values = [box[axis] for box in boxes]
        feature[f"image/object/bbox/{name}"] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    path = folder / "train.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in range(6):
            writer.write(_example(index, with_object=index != 5))  # the last image is a negative
    (folder / "label_map.pbtxt").write_text('item { id: 1 name: "a" }\nitem { id: 2 name: "b" }\n')
    return path


def _config(records: Path) -> PipelineConfig:
    reader = InputReaderSettings(label_map_path="label_map.pbtxt", input_paths=[records.name])
    return PipelineConfig(
        model=ModelSettings(num_classes=2, variant="s", input_size=(SIZE, SIZE)),
        train=TrainSettings(batch_size=2, num_steps=10, max_number_of_boxes=4),
        train_input=reader,
        eval_input=InputReaderSettings(
            label_map_path="label_map.pbtxt", input_paths=[records.name], shuffle=False
        ),
        path=records.parent / "pipeline.config",
    )


@pytest.fixture(scope="module")
def anchors():
    return spaghettinet_anchors((SIZE, SIZE))


def test_train_batches_have_static_shapes_scaled_pixels_and_targets(records, anchors):
    cfg = _config(records)
    batch = next(iter(train_dataset(cfg, anchors, batch_size=3)))
    num_anchors = anchors.shape[0]
    assert batch["images"].shape == (3, SIZE, SIZE, 3)
    assert batch["cls_targets"].shape == (3, num_anchors, 3)
    assert batch["box_targets"].shape == (3, num_anchors, 4)
    assert batch["matched"].shape == (3, num_anchors)
    assert batch["gt_boxes"].shape == (3, 4, 4) and batch["gt_classes"].shape == (3, 4)
    images = batch["images"].numpy()
    assert images.min() >= -1.0 and images.max() <= 1.0
    # Every image with an object has matched anchors whose one-hot column is the object's class.
    for i in range(3):
        n = int(batch["num_boxes"][i])
        matched = batch["matched"][i].numpy() > 0
        assert matched.any() == (n > 0)
        if n:
            label = int(batch["gt_classes"][i][0])
            assert np.all(batch["cls_targets"][i].numpy()[matched].argmax(-1) == label)


def test_negative_image_trains_with_all_anchors_background(records, anchors):
    cfg = _config(records)
    no_augment = AugmentOptions(horizontal_flip=False, ssd_random_crop=False)
    seen_negative = False
    for batch in train_dataset(cfg, anchors, batch_size=6, options=no_augment).take(1):
        for i in range(6):
            if int(batch["num_boxes"][i]) == 0:
                seen_negative = True
                assert float(batch["matched"][i].numpy().sum()) == 0.0
                assert float(batch["cls_targets"][i].numpy().sum()) == 0.0
    assert seen_negative


def test_same_seed_same_stream_and_start_example_continues_it(records, anchors):
    cfg = _config(records)
    stream = [b["images"].numpy() for b in train_dataset(cfg, anchors, batch_size=2, seed=7).take(5)]
    again = [b["images"].numpy() for b in train_dataset(cfg, anchors, batch_size=2, seed=7).take(5)]
    for a, b in zip(stream, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # Resuming after 3 batches (6 examples, one full epoch) gives batches 4 and 5 exactly.
    resumed = [
        b["images"].numpy()
        for b in train_dataset(cfg, anchors, batch_size=2, seed=7, start_example=6).take(2)
    ]
    np.testing.assert_array_equal(resumed[0], stream[3])
    np.testing.assert_array_equal(resumed[1], stream[4])
    other = next(iter(train_dataset(cfg, anchors, batch_size=2, seed=8)))["images"].numpy()
    assert not np.array_equal(other, stream[0])


def test_eval_dataset_keeps_ground_truth_and_original_size(records):
    cfg = _config(records)
    batches = list(eval_dataset(cfg, batch_size=4))
    assert [int(b["images"].shape[0]) for b in batches] == [4, 2]
    first = batches[0]
    assert first["filename"][0].numpy() == b"img0.jpg"
    assert int(first["height"][0]) == 48 and int(first["width"][0]) == 64
    np.testing.assert_allclose(
        first["gt_boxes"][0][0].numpy(), [8 / 48, 10 / 64, 40 / 48, 50 / 64], atol=1e-6
    )
    assert int(batches[1]["num_boxes"][1]) == 0
    assert sum(count_records(f) for f in record_files(cfg, "eval")) == 6


def test_missing_records_name_the_pattern(records):
    cfg = _config(records)
    cfg.train_input.input_paths = ["nowhere-*.record"]
    with pytest.raises(DataError, match="nowhere"):
        record_files(cfg, "train")


#: Steps that change size, colour, dtype and the number of boxes: the stream must stay deterministic through them.
MIXED_STEPS = (
    RandomAdjustBrightness(),
    RandomCropPadImage(min_object_covered=0.5, random_coef=0.3),
    RandomSelfConcatImage(concat_vertical_probability=0.5, concat_horizontal_probability=0.5),
    RandomHorizontalFlip(),
    SsdRandomCrop(),
    RandomJpegQuality(min_jpeg_quality=60),
)


def _stream(cfg, anchors, batches: int, **kwargs) -> list[dict[str, np.ndarray]]:
    dataset = train_dataset(cfg, anchors, batch_size=2, seed=3, **kwargs)
    keys = ("images", "gt_boxes", "gt_classes", "num_boxes", "matched")
    return [{key: batch[key].numpy() for key in keys} for batch in dataset.take(batches)]


def _assert_same_stream(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_config_steps_drive_the_stream_and_the_cache_changes_nothing(records, anchors):
    cfg = _config(records)
    cfg.train.data_augmentation_options = MIXED_STEPS
    uncached = _stream(cfg, anchors, 5, cache_images=False)
    cached = _stream(cfg, anchors, 5, cache_images=True)
    _assert_same_stream(uncached, cached)
    # A resume from a cached stream continues the uncached one exactly (same permutations, same seeds).
    resumed = _stream(cfg, anchors, 2, cache_images=True, start_example=6)
    _assert_same_stream(resumed, uncached[3:5])
    images = np.concatenate([batch["images"] for batch in uncached])
    assert images.min() >= -1.0 and images.max() <= 1.0
    # The self-concatenation repeats boxes: some image holds more boxes than any record.
    assert max(int(n) for batch in uncached for n in batch["num_boxes"]) >= 2
    plain = _stream(cfg, anchors, 1, options=())
    assert not np.array_equal(plain[0]["images"], uncached[0]["images"])


def test_decoded_size_decides_the_cache(records, anchors, monkeypatch):
    heights = [48 + 4 * index for index in range(6)]
    assert inputs.decoded_size_bytes([records]) == sum(h * 64 * 3 for h in heights)
    assert 0 < inputs.decoded_cache_budget() <= inputs.CACHE_MAX_BYTES
    decisions = []
    original = inputs.decoded_size_bytes

    def _spy(files, check=None):
        decisions.append(original(files, check))
        return decisions[-1]

    monkeypatch.setattr(inputs, "decoded_size_bytes", _spy)
    monkeypatch.setattr(inputs, "decoded_cache_budget", lambda: 0)
    cfg = _config(records)
    no_cache = _stream(cfg, anchors, 2)
    assert decisions  # the automatic choice measured the data (and, with no budget, did not cache)
    monkeypatch.setattr(inputs, "decoded_cache_budget", lambda: 10**9)
    _assert_same_stream(no_cache, _stream(cfg, anchors, 2))
