"""Hostile and unusual inputs of the dataset stage (issue 10): each built in a temporary folder, each outcome checked
as a user sees it (exit code, the message naming the file, what is on disk afterwards).

Covered here: worker processes never import from the current folder (item 1); one EXIF rule for all eight
orientations, checked by the pixels inside each stored box (item 2); decompression bombs (item 3); symlink loops,
broken links and unreadable folders in the scan (item 4); an oversized xml file.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from spaghettinet.data import tfrecord as tfrecord_module
from spaghettinet.data.images import MAX_IMAGE_PIXELS_VARIABLE
from spaghettinet.data.labelmap import LabelMap, labelmap
from spaghettinet.data.tfrecord import read_examples, tfrecord
from spaghettinet.data.validate import validate
from spaghettinet.data.voc import MAX_XML_BYTES, VocObject, voc_xml_text


def _pair(folder: Path, stem: str, size=(40, 24), box=(5, 4, 15, 12), name="ball") -> None:
    Image.new("RGB", size, (90, 90, 90)).save(folder / f"{stem}.jpg", quality=95)
    (folder / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", *size, [VocObject(name, *box)]))


# ------------------------------------------------------------------------------------------------------------------
# 1. Worker processes never import from the current folder
# ------------------------------------------------------------------------------------------------------------------


def test_tfrecord_workers_never_run_modules_from_the_current_folder(tmp_path, monkeypatch):
    """A numpy.py or defusedxml.py in the folder a user runs from must not be executed by the workers."""
    trap = tmp_path / "cwd"
    trap.mkdir()
    marker = tmp_path / "executed.txt"
    for module in ("numpy", "defusedxml", "spaghettinet"):
        (trap / f"{module}.py").write_text(
            f"open({str(marker)!r}, 'a').write('{module} from the current folder\\n')\n"
        )
    monkeypatch.chdir(trap)
    started = []

    class RecordingWorkers(tfrecord_module._Workers):
        def __init__(self, count):
            super().__init__(count)
            started.append(self)

    monkeypatch.setattr(tfrecord_module, "_Workers", RecordingWorkers)
    items = list(range(tfrecord_module.PARALLEL_MIN_IMAGES))
    results = list(tfrecord_module._ordered_parallel(abs, items, workers=2, chunk=64, wait_for_workers=True))
    assert results == items
    assert not marker.exists(), marker.read_text()
    # The worker did start and took part (a worker that died on import would have been dropped).
    assert len(started) == 1 and len(started[0].ready) == 1


# ------------------------------------------------------------------------------------------------------------------
# 2. One rule for all eight EXIF orientations: boxes refer to the displayed view
# ------------------------------------------------------------------------------------------------------------------

# What turns the displayed view back into the stored pixels, for each orientation: the inverse of what
# ImageOps.exif_transpose applies (EXIF 2.32 tag 274).
_STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
_SHOWN = (48, 32)  # displayed width, height
_BOX = (6, 4, 20, 14)  # xmin, ymin, xmax, ymax in the displayed view: the red object


def _displayed_view() -> Image.Image:
    pixels = np.full((_SHOWN[1], _SHOWN[0], 3), 90, np.uint8)
    xmin, ymin, xmax, ymax = _BOX
    pixels[ymin:ymax, xmin:xmax] = (230, 20, 20)
    pixels[20:28, 30:44] = (20, 20, 230)  # a second, blue patch makes mirror images differ
    return Image.fromarray(pixels)


def _photo(folder: Path, orientation: int, image_format: str = "JPEG", xml_size=None) -> str:
    """A photo whose viewer shows :func:`_displayed_view`, labelled in that view (as labelImg does)."""
    stem = f"orientation{orientation}{image_format.lower()}"
    stored = _displayed_view()
    if _STORE_AS[orientation] is not None:
        stored = stored.transpose(_STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    suffix = ".jpg" if image_format == "JPEG" else ".png"
    save = {"quality": 95} if image_format == "JPEG" else {}
    stored.save(folder / f"{stem}{suffix}", format=image_format, exif=exif.tobytes(), **save)
    width, height = xml_size or _SHOWN
    (folder / f"{stem}.xml").write_text(voc_xml_text(stem + suffix, width, height, [VocObject("red", *_BOX)]))
    return stem + suffix


def test_every_exif_orientation_keeps_the_object_inside_its_box(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    names = [_photo(data, orientation) for orientation in range(1, 9)] + [_photo(data, 6, "PNG")]
    report = validate(data)
    assert report.ok, report.errors
    # Each turned photo is named with what its tag does; the upright one has no warning.
    turned = {p.file.name: p.message for p in report.warnings}
    assert set(turned) == set(names) - {"orientation1jpeg.jpg"}
    assert "rotated 180°" in turned["orientation3jpeg.jpg"]
    result = tfrecord(tmp_path / "r.record", LabelMap.from_names(["red"]), split_dir=data)
    assert result.images == len(names) and not result.errors
    examples = {example.filename: example for example in read_examples(tmp_path / "r.record")}
    for name in names:
        example = examples[name]
        pixels = example.decode_image().astype(int)
        assert (example.width, example.height) == _SHOWN == (pixels.shape[1], pixels.shape[0]), name
        ymin, xmin, ymax, xmax = np.round(example.boxes[0] * ([_SHOWN[1], _SHOWN[0]] * 2)).astype(int)
        inside = pixels[ymin + 1 : ymax - 1, xmin + 1 : xmax - 1].reshape(-1, 3).mean(axis=0)
        assert inside[0] > 180 and inside[2] < 70, (name, inside)  # the red object fills the box
        assert pixels[24, 37, 2] > 180, name  # and the blue patch is where the displayed view has it


def test_box_drawn_on_the_unturned_pixels_is_named_with_the_fix(tmp_path):
    # A tool that ignores the tag (labelImg before 2020) records the stored size: 32x48 for a 48x32 view.
    _photo(tmp_path, 6, xml_size=(_SHOWN[1], _SHOWN[0]))
    report = validate(tmp_path)
    assert [(p.file.name, p.kind) for p in report.errors] == [("orientation6jpeg.xml", "size-mismatch")]
    assert "remove the tag" in report.errors[0].message
    assert "rotated 90° clockwise" in report.errors[0].message


def test_photos_open_as_displayed_for_every_orientation(tmp_path):
    """The reader predict is to use gives the displayed view, the one the records hold."""
    from spaghettinet.data.images import open_as_displayed

    expected = np.asarray(_displayed_view()).astype(int)
    for orientation in range(1, 9):
        pixels = np.asarray(open_as_displayed(tmp_path / _photo(tmp_path, orientation))).astype(int)
        assert pixels.shape == expected.shape and np.abs(pixels - expected).mean() < 4, orientation


def test_predict_reads_photos_in_the_view_the_boxes_refer_to(tmp_path):
    from spaghettinet.deploy.predict import _open_image

    name = _photo(tmp_path, 6)
    assert np.asarray(_open_image(tmp_path / name)).shape[:2] == (_SHOWN[1], _SHOWN[0])


# ------------------------------------------------------------------------------------------------------------------
# 3. Decompression bombs
# ------------------------------------------------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG of a few dozen bytes that claims ``width x height`` pixels (Pillow reads the size from IHDR)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_a_named_problem_not_a_traceback(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _pair(data, "good")
    _png_header_only(data / "bomb.png", 30_000, 30_000)  # 900 megapixels, over twice Pillow's limit
    (data / "bomb.xml").write_text(voc_xml_text("bomb.png", 30_000, 30_000, [VocObject("ball", 1, 1, 9, 9)]))
    report = validate(data)
    assert [(p.file.name, p.kind) for p in report.errors] == [("bomb.png", "image-too-large")]
    assert "900.0 megapixels" in report.errors[0].message
    assert "89.5 megapixels" in report.errors[0].message
    assert MAX_IMAGE_PIXELS_VARIABLE in report.errors[0].message
    code, out, err = run_cli(capsys, "validate", str(data))
    assert code == 1 and "Traceback" not in out + err
    assert "bomb.png" in out and "image-too-large" in out
    result = tfrecord(tmp_path / "r.record", LabelMap.from_names(["ball"]), split_dir=data)
    assert result.images == 1 and [(p.file.name, p.kind) for p in result.errors] == [
        ("bomb.png", "image-too-large")
    ]


def test_image_between_the_limit_and_twice_it_is_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    _pair(tmp_path, "big", size=(50, 50))  # 2500 pixels
    monkeypatch.setenv(MAX_IMAGE_PIXELS_VARIABLE, "2000")  # between 1x and 2x: Pillow only warned before
    report = validate(tmp_path)
    assert [(p.file.name, p.kind) for p in report.errors] == [("big.jpg", "image-too-large")]
    assert "50x50 = 2,500 pixels, over the limit of 2,000 pixels" in report.errors[0].message
    monkeypatch.setenv(MAX_IMAGE_PIXELS_VARIABLE, "0")  # no limit, for real gigapixel photos
    assert validate(tmp_path).ok
    monkeypatch.setenv(MAX_IMAGE_PIXELS_VARIABLE, "lots")
    with pytest.raises(Exception, match=MAX_IMAGE_PIXELS_VARIABLE):
        validate(tmp_path)


# ------------------------------------------------------------------------------------------------------------------
# 4. Entries the scan cannot read
# ------------------------------------------------------------------------------------------------------------------


def test_symlink_loop_and_broken_link_are_named_and_the_rest_goes_on(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _pair(data, "good")
    os.symlink("loop.jpg", data / "loop.jpg")  # points to itself: ELOOP
    os.symlink(tmp_path / "gone.xml", data / "gone.xml")
    (data / "sub").mkdir()
    os.symlink("self.xml", data / "sub" / "self.xml")
    report = validate(data)
    found = {p.file.name: (p.kind, p.message) for p in report.errors}
    assert found == {
        "loop.jpg": ("unreadable-file", "cannot be read: a symbolic link that loops (points to itself)"),
        "self.xml": ("unreadable-file", "cannot be read: a symbolic link that loops (points to itself)"),
        "gone.xml": ("unreadable-file", "cannot be read: a broken symbolic link (its target does not exist)"),
    }
    assert [pair.stem for pair in report.pairs] == ["good"]
    code, out, err = run_cli(capsys, "validate", str(data))
    assert code == 1 and "Traceback" not in out + err and "loop.jpg" in out
    out_dir = tmp_path / "images"
    code, out, err = run_cli(capsys, "split", str(data), "--out", str(out_dir))
    assert code == 1 and "loop.jpg" in err and (out_dir / "train" / "good.jpg").is_file()
    with pytest.raises(Exception, match="self.xml: cannot be read: a symbolic link that loops"):
        labelmap(data, tmp_path / "label_map.pbtxt")
    assert not (tmp_path / "label_map.pbtxt").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_folder_that_cannot_be_listed_is_named(tmp_path):
    _pair(tmp_path, "good")
    locked = tmp_path / "locked"
    locked.mkdir()
    _pair(locked, "hidden")
    locked.chmod(0)
    try:
        report = validate(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [(p.file, p.kind) for p in report.errors] == [(locked, "unreadable-file")]
    assert "cannot list this folder" in report.errors[0].message


def test_oversized_xml_is_refused_without_reading_it_whole(tmp_path):
    _pair(tmp_path, "huge")
    text = voc_xml_text("huge.jpg", 40, 24, [VocObject("ball", 5, 4, 15, 12)])
    padding = "<!--" + "x" * (MAX_XML_BYTES + 10) + "-->"
    (tmp_path / "huge.xml").write_text(text.replace("<folder>", padding + "<folder>"))
    report = validate(tmp_path)
    assert [(p.file.name, p.kind) for p in report.errors] == [("huge.xml", "xml-too-large")]
    assert "over 10 MiB" in report.errors[0].message


def test_image_bytes_survive_a_round_trip_through_the_record(tmp_path):
    """The scan and bomb checks change nothing for a plain photo: stored byte for byte."""
    _pair(tmp_path, "plain")
    tfrecord(tmp_path / "r.record", LabelMap.from_names(["ball"]), split_dir=tmp_path)
    (example,) = read_examples(tmp_path / "r.record")
    assert example.encoded == (tmp_path / "plain.jpg").read_bytes()
    assert Image.open(io.BytesIO(example.encoded)).size == (40, 24)


def test_label_ids_that_a_record_would_cut_are_refused_before_writing(tmp_path):
    _pair(tmp_path, "a")
    huge = LabelMap(ids=(2**63 + 5,), names_by_id=("ball",), display_names=("ball",))
    with pytest.raises(
        Exception, match=r"label map id 9223372036854775813 of class 'ball' is outside 1\.\.2147483647"
    ):
        tfrecord(tmp_path / "r.record", huge, split_dir=tmp_path)
    assert not (tmp_path / "r.record").exists()
