"""`validate --input-size N` reports, per class, the share of boxes some anchor matches at IoU >= 0.5 (issue 4
item 6), with advice when a class is poorly covered."""

from __future__ import annotations

from PIL import Image
from typer.testing import CliRunner

from spaghettinet.cli import app
from spaghettinet.data.voc import VocObject, voc_xml_text


def _photo(folder, stem, objects, size=(320, 320)):
    Image.new("RGB", size, (90, 120, 150)).save(folder / f"{stem}.jpg", quality=90)
    (folder / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", size[0], size[1], objects))


def test_validate_reports_anchor_coverage_per_class_at_the_input_size(tmp_path):
    # "plate": a box of 0.375 of the side centred at (0.375, 0.375): at 128x128 the second feature map is a 4x4 grid
    # with anchor centres at 0.125, 0.375, ... and a square anchor of scale 0.3875 there (IoU about 0.94).
    # "crumb": 6 px of 320 (< 2 % of the side), far below the smallest anchor (10 % of the image): no anchor
    # reaches IoU 0.5 at any input size, so the advice is to crop or tile, not to grow the input.
    _photo(tmp_path, "a", [VocObject("plate", 60, 60, 180, 180)])
    _photo(tmp_path, "b", [VocObject("plate", 60, 60, 180, 180), VocObject("crumb", 10, 10, 16, 16)])

    result = CliRunner().invoke(app, ["validate", str(tmp_path), "--input-size", "128"])

    assert result.exit_code == 0, result.output
    assert "Anchor coverage at 128x128" in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert "100.0% of 2 boxes" in lines["plate"] and "poorly covered" not in lines["plate"]
    assert "0.0% of 1 boxes" in lines["crumb"] and "poorly covered" in lines["crumb"]
    assert "crop or tile" in " ".join(result.output.split())


def test_validate_without_input_size_prints_no_coverage(tmp_path):
    _photo(tmp_path, "a", [VocObject("plate", 60, 60, 180, 180)])
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Anchor coverage" not in result.output
