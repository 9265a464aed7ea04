"""TFRecords: VOC -> CSV -> TFRecord -> reader round trip, conversions, shards, and the seed's own records."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.data.csv_labels import xml2csv
from spaghettinet.data.labelmap import LabelMap, labelmap, read_label_map
from spaghettinet.data.split import split
from spaghettinet.data.tfrecord import list_record_files, parse_example, read_examples, tfrecord
from spaghettinet.data.voc import VocObject, parse_voc_xml, voc_xml_text
from spaghettinet.errors import DataError, UsageError
from spaghettinet.tf_runtime import import_tensorflow


def _photo(path: Path, size=(96, 64), seed=0, **save) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path.read_bytes()


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory) -> Path:
    """12 photos, 3 classes, several objects each, one negative, boxes with fractional pixels."""
    folder = tmp_path_factory.mktemp("voc") / "all"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(12):
        stem = f"img{index:02d}"
        _photo(folder / f"{stem}.jpg", seed=index, quality=90)
        objects = []
        for k in range(0 if index == 5 else 1 + index % 3):
            x0, y0 = rng.uniform(0, 40), rng.uniform(0, 30)
            objects.append(
                VocObject(
                    ["cat", "dog", "emu"][(index + k) % 3],
                    round(x0, 1),
                    round(y0, 1),
                    x0 + 30,
                    y0 + 20,
                    difficult=k == 1,
                )
            )
        (folder / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", 96, 64, objects))
    return folder


def test_round_trip_voc_csv_tfrecord_reader_equals_the_xml(voc_folder, tmp_path):
    split(voc_folder, tmp_path / "images", test_fraction=0.25, seed=3)
    xml2csv(tmp_path / "images")
    label_map = labelmap(tmp_path / "images", tmp_path / "label_map.pbtxt")
    for subset in ("train", "test"):
        via_csv = tmp_path / f"{subset}_csv.record"
        via_xml = tmp_path / f"{subset}_xml.record"
        tfrecord(
            via_csv,
            tmp_path / "label_map.pbtxt",
            csv=tmp_path / "images" / f"{subset}_labels.csv",
            images=tmp_path / "images" / subset,
        )
        result = tfrecord(via_xml, label_map, split_dir=tmp_path / "images" / subset, shards=2, workers=2)
        assert result.errors == [] and len(result.files) == 2
        by_name = {e.filename: e for e in read_examples(via_xml)}
        csv_examples = {e.filename: e for e in read_examples(via_csv)}
        xml_files = sorted((tmp_path / "images" / subset).glob("*.xml"))
        assert sorted(by_name) == sorted(x.stem + ".jpg" for x in xml_files)
        for xml in xml_files:
            ann = parse_voc_xml(xml)
            example = by_name[xml.stem + ".jpg"]
            expected = np.array(
                [[o.ymin / 64, o.xmin / 96, o.ymax / 64, o.xmax / 96] for o in ann.objects], np.float32
            ).reshape(-1, 4)
            np.testing.assert_allclose(example.boxes, expected, atol=1e-6)
            assert list(example.classes) == [label_map.id_of(o.name) for o in ann.objects]
            assert list(example.class_texts) == [o.name for o in ann.objects]
            assert list(example.difficult) == [int(o.difficult) for o in ann.objects]
            assert (example.height, example.width, example.format) == (64, 96, "jpeg")
            # Upright RGB JPEGs are stored byte for byte.
            assert example.encoded == (tmp_path / "images" / subset / example.filename).read_bytes()
            assert example.sha256 == hashlib.sha256(example.encoded).hexdigest()
            if ann.objects:  # the CSV keeps 2 decimals, as the seed's pixel integers need no more
                np.testing.assert_allclose(csv_examples[example.filename].boxes, expected, atol=1e-4)
            else:
                assert example.filename not in csv_examples  # the CSV format has no row for a negative


def test_parse_example_in_a_tf_data_pipeline(voc_folder, tmp_path):
    tf = import_tensorflow()
    label_map = labelmap(voc_folder, tmp_path / "lm.pbtxt")
    tfrecord(tmp_path / "r.record", label_map, split_dir=voc_folder, shards=3)
    files = list_record_files(tmp_path / "r.record")
    assert [f.name for f in files] == [f"r.record-0000{i}-of-00003" for i in range(3)]
    dataset = tf.data.TFRecordDataset([str(f) for f in files]).map(parse_example)
    reference = {e.filename: e for e in read_examples(files)}
    seen = 0
    for item in dataset:
        example = reference[item["filename"].numpy().decode()]
        assert item["image"].dtype == tf.uint8 and tuple(item["image"].shape) == (64, 96, 3)
        # TF and Pillow use different JPEG IDCTs: same picture, pixels within a few levels.
        difference = np.abs(item["image"].numpy().astype(int) - example.decode_image().astype(int))
        assert difference.mean() < 2
        np.testing.assert_array_equal(item["boxes"].numpy(), example.boxes)
        assert item["classes"].dtype == tf.int32 and list(item["classes"].numpy()) == list(example.classes)
        assert list(item["difficult"].numpy()) == list(example.difficult)
        assert (int(item["height"]), int(item["width"])) == (64, 96)
        assert item["source_id"].numpy().decode() == example.filename
        seen += 1
    assert seen == 12


def _seed_style_record(path: Path, jpeg: bytes) -> None:
    """A record as the seed's generate_tfrecord.py writes it: format 'jpg', labels from its elif chain, no flags."""
    tf = import_tensorflow()

    def b(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def i(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/height": i([64]),
                "image/width": i([96]),
                "image/filename": b([b"frodo.jpg"]),
                "image/source_id": b([b"frodo.jpg"]),
                "image/encoded": b([jpeg]),
                "image/format": b([b"jpg"]),
                "image/object/bbox/xmin": f([0.1, 0.5]),
                "image/object/bbox/xmax": f([0.4, 0.9]),
                "image/object/bbox/ymin": f([0.2, 0.0]),
                "image/object/bbox/ymax": f([0.6, 1.0]),
                "image/object/class/text": b([b"frodo", b"baggins"]),
                "image/object/class/label": i([1, 2]),
            }
        )
    )
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(example.SerializeToString())


def test_reads_records_written_by_the_seeds_script(tmp_path):
    tf = import_tensorflow()
    jpeg = _photo(tmp_path / "frodo.jpg", quality=90)
    _seed_style_record(tmp_path / "train.record", jpeg)
    (example,) = read_examples(tmp_path / "train.record")
    assert example.format == "jpg" and list(example.classes) == [1, 2]
    assert list(example.difficult) == [0, 0]
    np.testing.assert_allclose(example.boxes, [[0.2, 0.1, 0.6, 0.4], [0.0, 0.5, 1.0, 0.9]], atol=1e-7)
    (parsed,) = tf.data.TFRecordDataset(str(tmp_path / "train.record")).map(parse_example)
    assert list(parsed["difficult"].numpy()) == [0, 0]
    assert list(parsed["classes"].numpy()) == [1, 2]
    assert tuple(parsed["image"].shape) == (64, 96, 3)


def _red_fraction(pixels: np.ndarray) -> float:
    return float(np.mean((pixels[..., 0] > 150) & (pixels[..., 1] < 100)))


@pytest.mark.parametrize(
    "kind", ["png-named-jpg", "greyscale", "cmyk", "rgba-png", "16-bit-png", "progressive"]
)
def test_unusual_images_are_converted_once_to_rgb_jpeg(tmp_path, kind):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (220, 30, 30)
    name = "x.png" if kind in ("rgba-png", "16-bit-png") else "x.jpg"
    path = folder / name
    if kind == "png-named-jpg":
        Image.fromarray(rgb).save(path, format="PNG")
    elif kind == "greyscale":
        Image.fromarray(rgb).convert("L").save(path, format="JPEG")
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG", quality=95)
    elif kind == "rgba-png":
        Image.fromarray(np.dstack([rgb, np.full((64, 96), 255, np.uint8)])).save(path)
    elif kind == "16-bit-png":
        Image.fromarray(np.full((64, 96), 50000, np.uint16)).save(path)
    else:
        Image.fromarray(rgb).save(path, format="JPEG", progressive=True, quality=95)
    (folder / "x.xml").write_text(voc_xml_text(name, 96, 64, [VocObject("cat", 0, 0, 48, 64)]))
    result = tfrecord(tmp_path / "r.record", LabelMap.from_names(["cat"]), split_dir=folder)
    assert result.errors == [] and result.images == 1
    (example,) = read_examples(tmp_path / "r.record")
    assert example.encoded[:2] == b"\xff\xd8"  # JPEG
    pixels = example.decode_image()
    assert pixels.shape == (64, 96, 3)
    if kind == "progressive":
        assert example.encoded == path.read_bytes() and result.converted == 0
    else:
        assert result.converted == 1
    if kind == "16-bit-png":
        assert abs(int(pixels.mean()) - round(50000 / 257)) <= 2
    elif kind == "greyscale":
        assert np.ptp(pixels[:, :40].astype(int), axis=-1).max() <= 2  # grey stays grey in 3 channels
    else:
        assert _red_fraction(pixels[:, :44]) > 0.95 and _red_fraction(pixels[:, 52:]) < 0.05


def test_exif_rotated_photo_is_stored_as_labelimg_showed_it(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    raw = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high, red strip on the left
    raw[:, :10] = (230, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": displayed 20 wide, 40 high, red strip on top
    Image.fromarray(raw).save(folder / "r.jpg", quality=95, exif=exif.tobytes())
    (folder / "r.xml").write_text(voc_xml_text("r.jpg", 20, 40, [VocObject("cat", 0, 0, 20, 10)]))
    tfrecord(tmp_path / "r.record", LabelMap.from_names(["cat"]), split_dir=folder)
    (example,) = read_examples(tmp_path / "r.record")
    pixels = example.decode_image()
    assert pixels.shape == (40, 20, 3) and (example.height, example.width) == (40, 20)
    assert _red_fraction(pixels[:8]) > 0.95 and _red_fraction(pixels[14:]) < 0.05
    np.testing.assert_allclose(example.boxes, [[0, 0, 0.25, 1]])


def test_unknown_class_and_bad_inputs_are_reported(tmp_path, voc_folder):
    result = tfrecord(tmp_path / "r.record", LabelMap.from_names(["cat", "dog"]), split_dir=voc_folder)
    assert result.errors and all(p.kind == "unknown-class" and "'emu'" in p.message for p in result.errors)
    assert result.images == 12 - len(result.errors)
    with pytest.raises(UsageError):
        tfrecord(tmp_path / "x", LabelMap.from_names(["cat"]), csv=tmp_path / "a.csv")
    with pytest.raises(DataError, match="no TFRecord file matches"):
        list_record_files(tmp_path / "none.record")


def test_resharding_replaces_the_old_shard_set_and_missing_shards_are_named(tmp_path, voc_folder):
    label_map = labelmap(voc_folder, tmp_path / "lm.pbtxt")
    tfrecord(tmp_path / "r.record", label_map, split_dir=voc_folder, shards=3)
    tfrecord(tmp_path / "r.record", label_map, split_dir=voc_folder, shards=2)
    assert sorted(p.name for p in tmp_path.glob("r.record*")) == [
        "r.record-00000-of-00002",
        "r.record-00001-of-00002",
    ]
    assert sum(1 for _ in read_examples(f"{tmp_path}/r.record*")) == 12
    (tmp_path / "r.record-00001-of-00002").unlink()
    with pytest.raises(DataError, match="incomplete"):
        list_record_files(tmp_path / "r.record")


def test_corrupt_record_file_is_a_data_error(tmp_path, voc_folder):
    tfrecord(tmp_path / "r.record", read_label_map_or_make(tmp_path, voc_folder), split_dir=voc_folder)
    data = (tmp_path / "r.record").read_bytes()
    (tmp_path / "r.record").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        list(read_examples(tmp_path / "r.record"))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # a bit flip inside a record: the data checksum fails
    (tmp_path / "r.record").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="corrupt or truncated"):
        list(read_examples(tmp_path / "r.record"))


def read_label_map_or_make(tmp_path: Path, folder: Path) -> LabelMap:
    path = tmp_path / "lm.pbtxt"
    return read_label_map(path) if path.exists() else labelmap(folder, path)


def test_jpeg_decoding_matches_pillow_for_converted_images(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 77).save(buffer, format="PNG")
    (tmp_path / "g.png").write_bytes(buffer.getvalue())
    (tmp_path / "g.xml").write_text(voc_xml_text("g.png", 8, 8, []))
    result = tfrecord(tmp_path / "g.record", LabelMap.from_names(["cat"]), split_dir=tmp_path)
    assert result.images == 1 and result.objects == 0
    (example,) = read_examples(tmp_path / "g.record")
    assert example.boxes.shape == (0, 4) and abs(int(example.decode_image().mean()) - 77) <= 1
