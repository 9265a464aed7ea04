"""The TFRecord writer's fast paths answer exactly as the slow ones they skip: JPEG headers read from the bytes
(against Pillow) and the folder scan (against ``sorted(rglob)``); xml is still read with defusedxml, which refuses
every DOCTYPE trick in any encoding."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.data import voc
from spaghettinet.data.images import inspect_image, inspect_image_for_record
from spaghettinet.data.problems import ProblemError
from spaghettinet.data.voc import VocObject, parse_voc_xml, voc_xml_text


def _jpeg_bytes(mode="RGB", size=(40, 24), **save) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "JPEG"), **save)
    return buffer.getvalue()


def _outcome(function, path: Path):
    """What an inspection answers: the ImageInfo, or the problem it reports."""
    try:
        result = function(path)
    except ProblemError as exc:
        return ("error", exc.kind, str(exc))
    return result[0] if isinstance(result, tuple) else result


def _same_as_pillow(path: Path) -> None:
    fast = _outcome(inspect_image_for_record, path)
    slow = _outcome(lambda p: inspect_image(p, full_decode=False), path)
    assert fast == slow, path.read_bytes()[:64]
    if not isinstance(fast, tuple):
        info, data = inspect_image_for_record(path)
        assert (data is not None) == info.stored_as_is
        if data is not None:
            assert data == path.read_bytes()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


VARIANTS = {
    "baseline": lambda: _jpeg_bytes(quality=90),
    "progressive": lambda: _jpeg_bytes(progressive=True),
    "optimized": lambda: _jpeg_bytes(optimize=True),
    "greyscale": lambda: _jpeg_bytes("L"),
    "cmyk": lambda: _jpeg_bytes("CMYK"),
    "exif-rotated": lambda: _jpeg_bytes(exif=_exif(6)),
    "exif-upright": lambda: _jpeg_bytes(exif=_exif(1)),
    "icc-profile": lambda: _jpeg_bytes(icc_profile=b"\0" * 300),
    "comment": lambda: _jpeg_bytes(comment=b"labelled by hand"),
    "restart-markers": lambda: _jpeg_bytes(restart_marker_blocks=1),
    "truncated": lambda: _jpeg_bytes()[:-200],
    "no-end-marker": lambda: _jpeg_bytes()[:-2],
    "png": lambda: _jpeg_bytes(format="PNG"),
    "empty": lambda: b"",
    "not-an-image": lambda: b"\xff\xd8\xff" + b"hello" * 20,
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_header_from_bytes_answers_as_pillow(tmp_path, variant):
    path = tmp_path / "x.jpg"
    path.write_bytes(VARIANTS[variant]())
    _same_as_pillow(path)


def test_header_from_bytes_answers_as_pillow_on_damaged_files(tmp_path):
    """Random damage to the header (bytes changed, segments cut, lengths broken): the same answer every time."""
    rng = random.Random(7)
    originals = [VARIANTS[name]() for name in ("baseline", "progressive", "icc-profile", "comment")]
    path = tmp_path / "x.jpg"
    for _ in range(400):
        data = bytearray(rng.choice(originals))
        header_end = data.index(b"\xff\xda") + 12
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(2, header_end)
            if rng.random() < 0.7:
                data[position] = rng.choice(
                    [0x00, 0x01, 0x03, 0x08, 0xC0, 0xC2, 0xDA, 0xE1, 0xFF, rng.randrange(256)]
                )
            else:
                del data[position : position + rng.randint(1, 40)]
        path.write_bytes(bytes(data))
        _same_as_pillow(path)


def test_missing_and_unreadable_images_are_reported_as_before(tmp_path):
    _same_as_pillow(tmp_path / "missing.jpg")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    _same_as_pillow(folder)


XML = voc_xml_text("a.jpg", 96, 64, [VocObject("cat", 1, 2.5, 30, 40, difficult=True)])


@pytest.mark.parametrize(
    "text",
    [
        XML,
        '<?xml version="1.0" encoding="UTF-8"?>\n' + XML,
        "<!-- labelImg -->" + XML.replace("<folder>", "<folder><![CDATA[im<ages]]>"),
        '<?xml version="1.0" encoding="cp1252"?>' + XML.replace("cat", "caf\xe9"),
        '<?xml version="1.0"?><!DOCTYPE annotation>' + XML,
    ],
)
def test_xml_as_annotation_tools_write_it_parses(tmp_path, text):
    path = tmp_path / "a.xml"
    encoding = "cp1252" if "cp1252" in text else "utf-8"
    path.write_bytes(text.encode(encoding))
    annotation = parse_voc_xml(path)
    assert [(o.name, o.xmin, o.ymax) for o in annotation.objects] == [
        ("caf\xe9" if "cp1252" in text else "cat", 1, 40)
    ]


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]><annotation>&y;</annotation>',
        '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/hostname">]><annotation><object><name>&x;</name></object></annotation>',
        '<?xml version="1.0" encoding="iso-8859-2"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>',
        "\ufeff<!DOCTYPE a [<!ENTITY x 'xx'>]><annotation>&x;</annotation>",
    ],
)
def test_doctype_tricks_are_still_refused_whatever_the_encoding(tmp_path, text):
    path = tmp_path / "bad.xml"
    encoding = "utf-16" if "UTF-16" in text else ("iso-8859-2" if "8859-2" in text else "utf-8")
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ProblemError) as caught:
        parse_voc_xml(path)
    assert caught.value.kind == "unsafe-xml"


def test_undeclared_entity_is_unparseable_not_expanded(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(XML.replace("cat", "&cat;"))
    with pytest.raises(ProblemError) as caught:
        parse_voc_xml(path)
    assert caught.value.kind == "unparseable-xml"


def test_folder_scan_finds_what_sorted_rglob_finds(tmp_path):
    names = ["a.jpg", "a-c/x.jpg", "a/b.jpg", "a/x.JPG", ".h.jpg", ".hid/y.jpg", "z.jpg.", "q.b.png"]
    names += ["dir.jpg/w.jpeg", "A.jpg", "a/b/c/x.xml", "..jpg", "x.xml", "a/b/c/d.Xml"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    os.symlink(tmp_path / "a", tmp_path / "linked_folder")
    os.symlink(tmp_path / "a.jpg", tmp_path / "linked.jpg")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken.jpg")
    for extensions in (voc.IMAGE_EXTENSIONS, (".xml",)):
        expected: dict[str, list[Path]] = {}
        for path in sorted(tmp_path.rglob("*")):
            if path.suffix.lower() in extensions and not path.name.startswith(".") and path.is_file():
                expected.setdefault(path.stem, []).append(path)
        unreadable: list = []
        assert list(voc._files_by_stem(tmp_path, extensions, unreadable).items()) == list(expected.items())
        # What rglob skips in silence is named: the broken link looks like an image.
        broken = [
            (tmp_path / "broken.jpg", "cannot be read: a broken symbolic link (its target does not exist)")
        ]
        assert unreadable == (broken if ".jpg" in extensions else [])
