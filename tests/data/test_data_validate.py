"""validate: every crafted bad file is named with its reason; a folder of all of them at once goes through the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.cli import main
from spaghettinet.data.tfrecord import read_examples
from spaghettinet.data.validate import validate
from spaghettinet.data.voc import VocObject, voc_xml_text

W, H = 64, 48


def _jpeg(path: Path, size=(W, H), mode="RGB", **save) -> Path:
    colour = {"RGB": (200, 40, 40), "L": 128, "CMYK": (0, 200, 200, 0), "RGBA": (200, 40, 40, 128)}[mode]
    Image.new(mode, size, colour).save(path, format=save.pop("format", "JPEG"), **save)
    return path


def _xml(path: Path, objects, size=(W, H)) -> Path:
    path.write_text(voc_xml_text(path.stem + ".jpg", size[0], size[1], objects))
    return path


def _good(folder: Path, stem: str, name: str = "ball") -> None:
    _jpeg(folder / f"{stem}.jpg")
    _xml(folder / f"{stem}.xml", [VocObject(name, 5, 6, 40, 30)])


def _raw_xml(folder: Path, stem: str, box: str, size=(W, H)) -> None:
    _jpeg(folder / f"{stem}.jpg")
    (folder / f"{stem}.xml").write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
        f"<object><name>ball</name><bndbox>{box}</bndbox></object></annotation>"
    )


def _box(xmin, ymin, xmax, ymax) -> str:
    return f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def build_bad_folder(folder: Path) -> dict[str, str]:
    """A folder holding one file per check plus valid pairs; returns bad file name -> expected problem kind."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in ("good1", "good2", "good3"):
        _good(folder, stem, name="ball" if stem != "good3" else "star")
    expected = {}
    _jpeg(folder / "no_xml.jpg")
    expected["no_xml.jpg"] = "image-without-xml"
    _xml(folder / "no_image.xml", [VocObject("ball", 1, 1, 5, 5)])
    expected["no_image.xml"] = "xml-without-image"
    _jpeg(folder / "broken_xml.jpg")
    (folder / "broken_xml.xml").write_text("<annotation><object>")
    expected["broken_xml.xml"] = "unparseable-xml"
    _jpeg(folder / "lol.jpg")
    (folder / "lol.xml").write_text(
        '<!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]><annotation>&y;</annotation>'
    )
    expected["lol.xml"] = "unsafe-xml"
    _xml(folder / "wrong_size.xml", [VocObject("ball", 1, 1, 5, 5)], size=(W * 2, H))
    _jpeg(folder / "wrong_size.jpg")
    expected["wrong_size.xml"] = "size-mismatch"
    _raw_xml(folder, "far_outside", _box(10, 10, W + 20, 30))
    expected["far_outside.xml"] = "box-outside-image"
    _raw_xml(folder, "flat", _box(10, 10, 10, 30))
    expected["flat.xml"] = "empty-box"
    _raw_xml(folder, "nan", _box("nan", 10, 20, 30))
    expected["nan.xml"] = "bad-coordinate"
    _raw_xml(folder, "word", _box("ten", 10, 20, 30))
    expected["word.xml"] = "bad-coordinate"
    _jpeg(folder / "noname.jpg")
    (folder / "noname.xml").write_text(
        f"<annotation><object><name> </name><bndbox>{_box(1, 1, 5, 5)}</bndbox></object></annotation>"
    )
    expected["noname.xml"] = "empty-class-name"
    (folder / "empty.jpg").write_bytes(b"")
    _xml(folder / "empty.xml", [VocObject("ball", 1, 1, 5, 5)])
    expected["empty.jpg"] = "image-does-not-decode"
    _truncated_jpeg(folder / "cut.jpg")
    _xml(folder / "cut.xml", [VocObject("ball", 1, 1, 5, 5)])
    expected["cut.jpg"] = "image-does-not-decode"
    (folder / "sub").mkdir()
    _jpeg(folder / "sub" / "good1.jpg")
    expected["good1.jpg"] = "duplicate-stem"
    return expected


def test_each_bad_file_is_reported_with_its_kind(tmp_path):
    expected = build_bad_folder(tmp_path / "data")
    report = validate(tmp_path / "data")
    found = {(p.file.name, p.kind) for p in report.errors}
    for name, kind in expected.items():
        assert (name, kind) in found, f"{name}: expected {kind}, got {sorted(found)}"
    # The duplicated stem makes good1 ambiguous; the other valid pairs are kept.
    assert sorted(p.stem for p in report.pairs) == ["good2", "good3"]
    assert not report.ok
    data = json.loads(report.to_json())
    assert data["counts"]["error"] == len(report.errors) and data["valid_images"] == 2


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """Run the real entry point in-process: any exception other than SystemExit (a traceback) fails the test."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    # rich wraps long lines at the terminal width; compare text with single spaces
    return code, captured.out, " ".join(captured.err.split())


def test_folder_of_all_bad_files_goes_through_every_command(tmp_path, capsys):
    expected = build_bad_folder(tmp_path / "data")
    data, images = str(tmp_path / "data"), tmp_path / "images"

    code, out, err = run_cli(capsys, ["validate", data])
    assert code == 1
    for name, kind in expected.items():
        assert name in out and kind in out, (name, kind)
    assert "15 error(s)" in err and "Traceback" not in out + err

    code, out, _ = run_cli(capsys, ["validate", data, "--json"])
    assert code == 1
    assert json.loads(out)["ok"] is False

    code, _, err = run_cli(capsys, ["split", data, "--out", str(images), "--test-fraction", "0.34"])
    assert code == 1
    assert "left out of the split" in err
    assert sorted(p.name for p in images.rglob("*.jpg")) == ["good2.jpg", "good3.jpg"]
    summary = json.loads((images / "split.json").read_text())
    assert {Path(e["file"]).name for e in summary["excluded"]} >= set(expected)

    assert run_cli(capsys, ["xml2csv", str(images)])[0] == 0
    assert run_cli(capsys, ["labelmap", str(images), "--out", str(tmp_path / "lm.pbtxt")])[0] == 0

    # The converter, handed the bad folder directly, still writes every valid file and exits 1.
    args = [
        "tfrecord",
        "--split-dir",
        data,
        "--label-map",
        str(tmp_path / "lm.pbtxt"),
        "--out",
        str(tmp_path / "all.record"),
    ]
    code, _, err = run_cli(capsys, args)
    assert code == 1
    for name in expected:
        if expected[name] not in ("duplicate-stem",):
            assert name in err, name
    assert sorted(e.filename for e in read_examples(tmp_path / "all.record")) == ["good2.jpg", "good3.jpg"]


def test_box_slightly_outside_is_clipped_with_a_warning(tmp_path):
    _raw_xml(tmp_path, "over", _box(-0.5, 2, W + 0.5, H))
    report = validate(tmp_path)
    assert report.ok
    assert [p.kind for p in report.warnings] == ["box-clipped"]
    obj = report.pairs[0].annotation.objects[0]
    assert (obj.xmin, obj.xmax) == (0, W)


@pytest.mark.parametrize(
    ("maker", "words"),
    [
        (lambda p: _jpeg(p, mode="L"), "greyscale"),
        (lambda p: _jpeg(p, mode="CMYK"), "CMYK"),
        (lambda p: _jpeg(p, mode="RGBA", format="PNG"), "PNG file named .jpg"),
        (lambda p: Image.fromarray(np.full((H, W), 40000, np.uint16)).save(p, format="PNG"), "16/32-bit"),
    ],
)
def test_unusual_images_are_accepted_with_a_conversion_warning(tmp_path, maker, words):
    maker(tmp_path / "odd.jpg")
    _xml(tmp_path / "odd.xml", [VocObject("ball", 1, 1, 20, 20)])
    report = validate(tmp_path)
    assert report.ok and len(report.pairs) == 1
    assert [p.kind for p in report.warnings] == ["converted-image"]
    assert words in report.warnings[0].message


def test_exif_rotated_image_is_compared_after_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: a 64x48 file shows as 48x64
    Image.new("RGB", (W, H), (1, 2, 3)).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    _xml(tmp_path / "rot.xml", [VocObject("ball", 1, 1, 20, 20)], size=(H, W))
    assert validate(tmp_path).ok
    _xml(tmp_path / "rot.xml", [VocObject("ball", 1, 1, 20, 20)], size=(W, H))
    report = validate(tmp_path)
    assert [p.kind for p in report.errors] == ["size-mismatch"]
    assert "EXIF orientation" in report.errors[0].message


def test_negative_image_is_kept_as_info_and_small_objects_are_noted(tmp_path):
    _jpeg(tmp_path / "empty_scene.jpg")
    _xml(tmp_path / "empty_scene.xml", [])
    _jpeg(tmp_path / "tiny.jpg")
    _xml(tmp_path / "tiny.xml", [VocObject("ball", 1, 1, 3, 3)])
    report = validate(tmp_path, input_size=64)
    assert report.ok and report.negative_images == 1
    assert {(p.file.name, p.kind) for p in report.problems} == {
        ("empty_scene.xml", "no-objects"),
        ("tiny.xml", "small-object"),
    }


def test_real_dataset_validates_with_zero_errors(microcontrollers_dir):
    report = validate(microcontrollers_dir)
    assert report.errors == []
    assert len(report.pairs) == 149
    assert set(report.class_counts) == {"Arduino_Nano", "ESP8266", "Heltec_ESP32_Lora", "Raspberry_Pi_3"}
