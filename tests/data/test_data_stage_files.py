"""split.json and validation.json: what split and run's validate stage write reads back typed, old files load,
and a damaged file is refused with its name and the field at fault."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from spaghettinet.data.problems import Problem
from spaghettinet.data.split import SplitFile, split
from spaghettinet.data.validate import validate
from spaghettinet.data.validation_file import ValidationFile
from spaghettinet.data.voc import VocObject, voc_xml_text
from spaghettinet.errors import DataError


def _folder(tmp_path, count=8):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(count):
        Image.new("RGB", (64, 48), (index * 20, 90, 40)).save(folder / f"p{index}.jpg")
        name = "nut" if index % 2 else "bolt"
        xml = voc_xml_text(f"p{index}.jpg", 64, 48, [VocObject(name, 4, 4, 40, 30)])
        (folder / f"p{index}.xml").write_text(xml)
    (folder / "broken.jpg").write_bytes(b"not a picture")
    (folder / "broken.xml").write_text(voc_xml_text("broken.jpg", 64, 48, [VocObject("nut", 1, 1, 9, 9)]))
    return folder


def test_split_json_reads_back_as_written(tmp_path):
    result = split(_folder(tmp_path), tmp_path / "images", test_fraction=0.25, seed=3)
    saved = SplitFile.read(tmp_path / "images" / "split.json")
    assert (list(saved.train), list(saved.test), saved.seed) == (result.train, result.test, 3)
    assert saved.images_per_class == result.class_counts
    assert [problem.file.name for problem in saved.excluded] == ["broken.jpg"]
    assert saved.excluded == tuple(result.excluded)
    assert json.loads((tmp_path / "images" / "split.json").read_text())["version"] == 1


def test_validation_json_round_trip_keeps_problems_and_left_out_files(tmp_path):
    report = validate(_folder(tmp_path))
    saved = ValidationFile.from_report(report, strict=False)
    path = saved.write(tmp_path / "validation.json")
    again = ValidationFile.read(path)
    assert again == saved
    assert again.images_left_out == 1 and [p.file.name for p in again.excluded] == ["broken.jpg"]
    assert all(isinstance(problem, Problem) for problem in again.problems)
    assert again.class_counts == {"bolt": 4, "nut": 4}


def test_files_written_before_the_version_field_still_load(tmp_path):
    report = validate(_folder(tmp_path))
    data = ValidationFile.from_report(report, strict=True).to_dict()
    del data["version"]
    assert ValidationFile.from_dict(data).strict is True
    split_data = SplitFile("d", None, "voc", 0.2, 0, ("a",), ("b",), {"train": {}, "test": {}}, ()).to_dict()
    del split_data["version"]
    assert SplitFile.from_dict(split_data).test == ("b",)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("seed"), "missing 'seed'"),
        (lambda d: d.update(errors=[]), "unknown 'errors'"),
        (lambda d: d.update(seed="7"), "seed is '7', not an integer"),
        (lambda d: d.update(seed=True), "not an integer"),
        (lambda d: d.update(version=9), "format version 9"),
        (lambda d: d.update(train=[1]), "not a string"),
        (lambda d: d.update(excluded=[{"file": "a.jpg"}]), "missing 'kind'"),
        (
            lambda d: d.update(excluded=[{"file": "a", "kind": "k", "severity": "fatal", "message": "m"}]),
            "severity 'fatal'",
        ),
        (lambda d: d["images_per_class"]["train"].update(nut="3"), "not an integer"),
    ],
)
def test_damaged_split_json_is_refused_naming_the_file_and_field(tmp_path, change, fragment):
    split(_folder(tmp_path), tmp_path / "images", seed=1)
    path = tmp_path / "images" / "split.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=fragment) as caught:
        SplitFile.read(path)
    assert str(path) in str(caught.value)


def test_validation_json_that_is_not_json_or_not_an_object_is_named(tmp_path):
    path = tmp_path / "validation.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        ValidationFile.read(path)
    path.write_text("{")
    with pytest.raises(DataError, match="cannot be read as JSON") as caught:
        ValidationFile.read(path)
    assert str(path) in str(caught.value)
