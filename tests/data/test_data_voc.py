"""VOC parsing and image/xml pairing: what a user's labelImg folder looks like, and hostile xml."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from spaghettinet.data.problems import ProblemError
from spaghettinet.data.voc import VocObject, find_pairs, parse_voc_xml, voc_xml_text
from spaghettinet.errors import DataError, UsageError


def _image(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)
    return path


def test_parse_reads_objects_in_pixels_with_flags(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><filename>elsewhere.png</filename><size><width>800</width><height>600</height>"
        "<depth>3</depth></size><object><name> Arduino_Nano </name><truncated>1</truncated>"
        "<difficult>0</difficult><bndbox><xmin>317</xmin><ymin>265.5</ymin><xmax>556</xmax>"
        "<ymax>342</ymax></bndbox></object></annotation>"
    )
    ann = parse_voc_xml(xml)
    assert (ann.width, ann.height, ann.depth, ann.filename) == (800, 600, 3, "elsewhere.png")
    assert ann.objects == (VocObject("Arduino_Nano", 317, 265.5, 556, 342, difficult=False, truncated=True),)


def test_written_xml_parses_back_to_the_same_objects(tmp_path):
    objects = [VocObject("star & <moon>", 1, 2.5, 30, 40, difficult=True), VocObject("ball", 0, 0, 64, 48)]
    xml = tmp_path / "a.xml"
    xml.write_text(voc_xml_text("a.jpg", 64, 48, objects))
    assert parse_voc_xml(xml).objects == tuple(objects)


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        (
            "<annotation><object><name></name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
            "</bndbox></object></annotation>",
            "empty-class-name",
            "empty class name",
        ),
        (
            "<annotation><object><name>a</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
            "</bndbox></object></annotation>",
            "bad-coordinate",
            "not a number",
        ),
        (
            "<annotation><object><name>a</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
            "</bndbox></object></annotation>",
            "bad-coordinate",
            "finite",
        ),
        ("<annotation><object><name>a</name></object></annotation>", "bad-coordinate", "bndbox"),
        ("<annotation><object>", "unparseable-xml", "well-formed"),
        ("", "unparseable-xml", "empty"),
        ("<svg></svg>", "unparseable-xml", "<svg>"),
    ],
)
def test_bad_xml_is_refused_with_its_reason(tmp_path, body, kind, words):
    xml = tmp_path / "bad.xml"
    xml.write_text(body)
    with pytest.raises(ProblemError) as caught:
        parse_voc_xml(xml)
    assert caught.value.kind == kind
    assert words in str(caught.value)
    assert str(xml) in str(caught.value)


def test_billion_laughs_is_refused_without_expansion(tmp_path):
    xml = tmp_path / "lol.xml"
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    xml.write_text(f"<?xml version='1.0'?><!DOCTYPE annotation [{entities}]><annotation>&lol9;</annotation>")
    with pytest.raises(ProblemError) as caught:
        parse_voc_xml(xml)
    assert caught.value.kind == "unsafe-xml"


def test_xxe_is_refused_and_the_secret_is_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xml = tmp_path / "xxe.xml"
    xml.write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<annotation><object><name>&x;</name></object></annotation>"
    )
    with pytest.raises(DataError) as caught:
        parse_voc_xml(xml)
    assert caught.value.kind == "unsafe-xml"
    assert "TOP-SECRET" not in str(caught.value)


def test_pairs_by_stem_across_subfolders_and_case_insensitive_extensions(tmp_path):
    _image(tmp_path / "a" / "IMG_1.JPG")
    (tmp_path / "a" / "IMG_1.xml").write_text("<annotation/>")
    _image(tmp_path / "b" / "IMG_2.png")
    (tmp_path / "b" / "IMG_2.xml").write_text("<annotation/>")
    _image(tmp_path / "lonely.jpeg")
    (tmp_path / "orphan.xml").write_text("<annotation/>")
    _image(tmp_path / "a" / "twin.jpg")
    _image(tmp_path / "b" / "twin.png")
    (tmp_path / "twin.xml").write_text("<annotation/>")
    scan = find_pairs(tmp_path)
    assert [(p.stem, p.image_path.name) for p in scan.pairs] == [
        ("IMG_1", "IMG_1.JPG"),
        ("IMG_2", "IMG_2.png"),
    ]
    assert scan.images_without_xml == [tmp_path / "lonely.jpeg"]
    assert scan.xml_without_image == [tmp_path / "orphan.xml"]
    assert sorted(p.name for p in scan.duplicate_stems["twin"]) == ["twin.jpg", "twin.png", "twin.xml"]


def test_separate_annotation_folder_layout(tmp_path):
    _image(tmp_path / "JPEGImages" / "000001.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "000001.xml").write_text("<annotation/>")
    scan = find_pairs(tmp_path / "JPEGImages", tmp_path / "Annotations")
    assert [p.stem for p in scan.pairs] == ["000001"]
    with pytest.raises(UsageError):
        find_pairs(tmp_path / "missing")
