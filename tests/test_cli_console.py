"""Untrusted text is printed literally by every command (issue 10, item 5): class names, file names, paths and the
messages built from them never act as rich markup or emoji codes, and never crash the printer."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cli_helpers import run_cli
from spaghettinet.cli.console import console, err_console, styled
from spaghettinet.data.voc import VocObject, voc_xml_text


def _pair(folder: Path, stem: str, name: str, box=(5, 4, 30, 20)) -> None:
    Image.new("RGB", (40, 24), (90, 90, 90)).save(folder / f"{stem}.jpg")
    (folder / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", 40, 24, [VocObject(name, *box)]))


def test_class_named_like_markup_prints_literally_in_validate_and_split(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(4):
        _pair(data, f"a{index}", "[/]")
        _pair(data, f"b{index}", "[bold]x:smile:")
    code, out, err = run_cli(capsys, "validate", str(data))
    assert code == 0, err
    assert "[/]" in out and "[bold]x:smile:" in out
    code, out, err = run_cli(capsys, "split", str(data), "--out", str(tmp_path / "images"))
    assert code == 0, err
    assert "[/]" in out and "[bold]x:smile:" in out


def test_file_names_and_box_coordinates_keep_their_brackets(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _pair(data, "good", "ball")
    _pair(data, "far", "ball", box=(10, 10, 84, 20))  # far outside the 40x24 image
    Image.new("RGB", (40, 24)).save(data / "[red]b.jpg")  # an image without its xml
    code, out, err = run_cli(capsys, "validate", str(data))
    assert code == 1
    assert "[red]b.jpg" in out
    assert "box [xmin=10, ymin=10, xmax=84, ymax=20] lies outside the 40x24 image" in out


def test_error_printer_prints_a_path_with_markup_literally(tmp_path, capsys):
    missing = tmp_path / "photos [/] [red]x"
    code, out, err = run_cli(capsys, "validate", str(missing))
    assert code == 2
    assert "error:" in err and "photos [/] [red]x" in err
    assert "Traceback" not in err


def test_consoles_never_read_markup_or_emoji(capsys):
    for target in (console, err_console):
        target.print("[/] :smile: [link=https://example.com]x[/link]", styled(("[b]", "bold"), " [/]"))
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "[/] :smile: [link=https://example.com]x[/link] [b] [/]" in text
