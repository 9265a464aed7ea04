"""data convert: VOC, COCO and YOLO written from one another, boxes exact to the pixel, nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cli_helpers import run_cli
from spaghettinet.data.coco_format import coco_bbox
from spaghettinet.data.convert import convert
from spaghettinet.data.demo import make_demo
from spaghettinet.data.formats import PIXEL_DECIMALS, detect_format
from spaghettinet.data.validate import validate
from spaghettinet.data.voc import VocAnnotation, VocObject, parse_voc_xml, voc_xml_text
from spaghettinet.data.yolo_format import parse_yolo_label_text, scale_normalized, yolo_label_text
from spaghettinet.errors import UsageError


@st.composite
def _boxes(draw, decimals: int):
    """An image size and a box inside it, corners with at most ``decimals`` decimals."""
    width = draw(st.integers(1, 8000))
    height = draw(st.integers(1, 8000))
    scale = 10**decimals

    def corner_pair(side: int) -> tuple[float, float]:
        low = draw(st.integers(0, side * scale - 1))
        high = draw(st.integers(low + 1, side * scale))
        return low / scale, high / scale

    (xmin, xmax), (ymin, ymax) = corner_pair(width), corner_pair(height)
    return width, height, VocObject("c", xmin, ymin, xmax, ymax)


@pytest.fixture(scope="module")
def xml_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("round-trip") / "a.xml"


def _voc_coco_yolo_voc(xml_path: Path, width: int, height: int, obj: VocObject) -> VocObject:
    """The box through VOC xml → COCO json → YOLO txt → VOC record, as the writers and readers do it."""
    xml_path.write_text(voc_xml_text("a.jpg", width, height, [obj]))
    from_voc = parse_voc_xml(xml_path).objects[0]
    x, y, w, h = json.loads(json.dumps(coco_bbox(from_voc)))
    from_coco = VocObject("c", x, y, round(x + w, PIXEL_DECIMALS), round(y + h, PIXEL_DECIMALS))
    text = yolo_label_text(VocAnnotation(Path("a.xml"), "a.jpg", width, height, 3, (from_coco,)), {"c": 0})
    objects, _ = parse_yolo_label_text(text, Path("a.txt"), {0: "c"})
    return scale_normalized(VocAnnotation(Path("a.txt"), "a.jpg", 0, 0, 0, objects), width, height).objects[0]


@given(_boxes(decimals=0))
@settings(max_examples=300, deadline=None)
def test_integer_pixel_boxes_round_trip_exactly(xml_path, case):
    width, height, obj = case
    back = _voc_coco_yolo_voc(xml_path, width, height, obj)
    assert (back.xmin, back.ymin, back.xmax, back.ymax) == (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
    assert all(float(v).is_integer() for v in (back.xmin, back.ymin, back.xmax, back.ymax))


@given(_boxes(decimals=3))
@settings(max_examples=300, deadline=None)
def test_sub_pixel_boxes_round_trip_exactly(xml_path, case):
    width, height, obj = case
    back = _voc_coco_yolo_voc(xml_path, width, height, obj)
    assert (back.xmin, back.ymin, back.xmax, back.ymax) == (obj.xmin, obj.ymin, obj.xmax, obj.ymax)


@pytest.fixture(scope="module")
def demo_voc(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("convert") / "voc"
    make_demo(folder, images=8, seed=3)
    return folder


def _boxes_by_stem(folder: Path, format: str | None = None) -> dict[str, tuple]:
    report = validate(folder, format=format)
    assert report.ok, report.errors
    return {
        pair.stem: (
            pair.annotation.width,
            pair.annotation.height,
            tuple((o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in pair.annotation.objects),
        )
        for pair in report.pairs
    }


def test_voc_to_coco_to_yolo_to_voc_gives_the_same_boxes_and_images(demo_voc, tmp_path):
    coco = convert(demo_voc, "coco", tmp_path / "coco")
    assert (coco.source_format, coco.target_format, coco.images) == ("voc", "coco", 8)
    assert sorted(p.name for p in (tmp_path / "coco").iterdir()) == ["images", "labels.json"]
    document = json.loads((tmp_path / "coco" / "labels.json").read_text())
    assert [c["id"] for c in document["categories"]] == list(range(1, len(coco.class_names) + 1))
    yolo = convert(tmp_path / "coco", "yolo", tmp_path / "yolo")
    assert yolo.source_format == "coco" and detect_format(tmp_path / "yolo").format == "yolo"
    assert (tmp_path / "yolo" / "data.yaml").is_file()
    assert len(list((tmp_path / "yolo" / "labels").glob("*.txt"))) == 8  # negatives get an empty file
    back = convert(tmp_path / "yolo", "voc", tmp_path / "back")
    assert back.source_format == "yolo"
    original = _boxes_by_stem(demo_voc)
    for folder in ("coco", "yolo", "back"):
        assert _boxes_by_stem(tmp_path / folder) == original, folder
    for image in demo_voc.glob("*.jpg"):
        assert (tmp_path / "back" / image.name).read_bytes() == image.read_bytes()
        assert (tmp_path / "yolo" / "images" / image.name).read_bytes() == image.read_bytes()
    # Every format to itself and to each other, from each: same boxes.
    for source in ("coco", "yolo", "back"):
        for target in ("voc", "coco", "yolo"):
            out = tmp_path / f"{source}-to-{target}"
            convert(tmp_path / source, target, out)
            assert _boxes_by_stem(out) == original, out


def test_convert_never_writes_into_a_non_empty_folder(demo_voc, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        convert(demo_voc, "coco", out)
    code, _, err = run_cli(capsys, "data", "convert", str(demo_voc), "--to", "yolo", "--out", str(out))
    assert code == 2 and "not empty" in err
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        convert(demo_voc, "coco", tmp_path / "file")
    with pytest.raises(UsageError, match="inside the source"):
        convert(demo_voc, "coco", demo_voc / "converted")
    with pytest.raises(UsageError, match="--to must be one of"):
        convert(demo_voc, "pascal", tmp_path / "new")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert(demo_voc, "voc", empty).images == 8 and (empty / "demo_00000.xml").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary folder left behind


def test_cli_convert_lists_left_out_images_and_exits_1_after_writing_the_rest(tmp_path, capsys):
    source = tmp_path / "voc"
    source.mkdir()
    for stem, box in (("good", VocObject("[b]cat", 1, 2, 20, 30)), ("bad", VocObject("cat", 1, 2, 500, 30))):
        Image.new("RGB", (40, 40)).save(source / f"{stem}.jpg")
        (source / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", 40, 40, [box]))
    code, out, err = run_cli(
        capsys, "data", "convert", str(source), "--to", "yolo", "--out", str(tmp_path / "y")
    )
    assert code == 1, err
    assert "1 images, 1 objects, 1 classes" in out and "bad.xml" in err and "Traceback" not in err
    assert json.dumps("[b]cat") in (tmp_path / "y" / "data.yaml").read_text()
    assert (tmp_path / "y" / "labels" / "good.txt").read_text() == "0 0.2625 0.4 0.475 0.7\n"
    assert not (tmp_path / "y" / "labels" / "bad.txt").exists()


def test_class_names_that_yaml_would_misread_survive_the_round_trip(tmp_path):
    names = [
        "a: b",
        "#hash",
        "- dash",
        '"quoted"',
        "back\\slash",
        "tab\there",
        "café",
        "[x]",
        "null",
        "*star",
    ]
    source = tmp_path / "voc"
    source.mkdir()
    Image.new("RGB", (64, 64)).save(source / "a.jpg")
    objects = [VocObject(name, k, k, k + 5, k + 5) for k, name in enumerate(names)]
    (source / "a.xml").write_text(voc_xml_text("a.jpg", 64, 64, objects))
    convert(source, "yolo", tmp_path / "yolo")
    convert(tmp_path / "yolo", "coco", tmp_path / "coco")
    convert(tmp_path / "coco", "voc", tmp_path / "back")
    assert [o.name for o in parse_voc_xml(tmp_path / "back" / "a.xml").objects] == names
