"""Label CSVs (issue 10, item 6 and its risks): what ``xml2csv`` writes, ``tfrecord --csv`` reads back exactly, formula
starts are quoted for spreadsheets, and file names cannot point outside ``--images``."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from cli_helpers import run_cli
from spaghettinet.data.csv_labels import plain_text, read_label_csv, spreadsheet_text, xml2csv
from spaghettinet.data.labelmap import LabelMap, write_label_map
from spaghettinet.data.tfrecord import read_examples, tfrecord

# File stems and class names that broke the round trip or would run in a spreadsheet.
STEMS = [
    " leading space",
    "trailing space ",
    "carriage\rreturn",
    "=HYPERLINK(1)",
    "-minus",
    "'quote",
    "comma,x",
]
CLASSES = [
    "=SUM(A1:A9)",
    "+plus",
    "-minus",
    "@at",
    "'quoted",
    "line\rbreak",
    "tab\tinside",
    'say "hi"',
    "plain",
]


def _xml_text(text: str) -> str:
    # Character references keep a carriage return or a tab through the xml parser's line-end normalization.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _split_folder(root: Path) -> Path:
    train = root / "images" / "train"
    train.mkdir(parents=True)
    for index, stem in enumerate(STEMS):
        Image.new("RGB", (40, 24), (90, 90, 90)).save(train / f"{stem}.jpg")
        names = CLASSES[index % len(CLASSES) :] + CLASSES[: index % len(CLASSES)]
        objects = "".join(
            f"<object><name>{_xml_text(name)}</name><bndbox><xmin>{1 + i}</xmin><ymin>2</ymin>"
            f"<xmax>{20 + i}</xmax><ymax>20</ymax></bndbox></object>"
            for i, name in enumerate(names[:3])
        )
        (train / f"{stem}.xml").write_text(
            f"<annotation><size><width>40</width><height>24</height></size>{objects}</annotation>"
        )
    return root / "images"


def test_xml2csv_output_reads_back_exactly_and_into_records(tmp_path):
    images = _split_folder(tmp_path)
    result = xml2csv(images)
    assert not result.errors
    csv_path = images / "train_labels.csv"
    rows, problems = read_label_csv(csv_path)
    assert problems == []
    assert sorted(row.filename for row in rows) == sorted(f"{stem}.jpg" for stem in STEMS)
    read_names = {obj.name for row in rows for obj in row.annotation.objects}
    assert read_names == set(CLASSES)
    label_map = LabelMap.from_names(CLASSES)
    write_label_map(label_map, tmp_path / "label_map.pbtxt")
    written = tfrecord(
        tmp_path / "r.record", tmp_path / "label_map.pbtxt", csv=csv_path, images=images / "train"
    )
    assert written.images == len(STEMS) and not written.errors
    texts = {name for example in read_examples(tmp_path / "r.record") for name in example.class_texts}
    assert texts == set(CLASSES)


def test_formula_starts_are_text_to_a_spreadsheet(tmp_path):
    images = _split_folder(tmp_path)
    xml2csv(images)
    with open(images / "train_labels.csv", newline="", encoding="utf-8") as handle:
        cells = list(csv.reader(handle))
    for row in cells[1:]:
        for cell in (row[0], row[3]):
            # No cell a spreadsheet would evaluate: formula starts carry a leading quote.
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    quoted = {cell for row in cells[1:] for cell in (row[0], row[3]) if cell.startswith("'")}
    assert {"'=SUM(A1:A9)", "''quoted", "'-minus.jpg", "'=HYPERLINK(1).jpg"} <= quoted
    for text in CLASSES + STEMS:
        assert plain_text(spreadsheet_text(text)) == text


def test_file_names_outside_the_image_folder_are_refused(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 24)).save(images / "ok.jpg")
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (40, 24)).save(secret)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        "ok.jpg,40,24,cat,1,1,20,20\n"
        f"{secret},40,24,cat,1,1,20,20\n"
        "../secret.jpg,40,24,cat,1,1,20,20\n"
        "sub/../../secret.jpg,40,24,cat,1,1,20,20\n"
    )
    rows, problems = read_label_csv(csv_path)
    assert [row.filename for row in rows] == ["ok.jpg"]
    assert [p.kind for p in problems] == ["bad-filename"] * 3
    assert [f"line {n}:" in p.message for n, p in zip((3, 4, 5), problems, strict=True)] == [True] * 3
    assert "absolute path" in problems[0].message and "'..'" in problems[1].message
    write_label_map(LabelMap.from_names(["cat"]), tmp_path / "lm.pbtxt")
    out = tmp_path / "r.record"
    code, _, err = run_cli(
        capsys,
        "tfrecord",
        "--csv",
        str(csv_path),
        "--images",
        str(images),
        "--label-map",
        str(tmp_path / "lm.pbtxt"),
        "--out",
        str(out),
    )
    assert code == 1 and "labels.csv" in err and "../secret.jpg" in err
    assert [example.filename for example in read_examples(out)] == ["ok.jpg"]
