"""COCO and YOLO datasets in: format detection and forcing, the readers, and their hostile inputs.

Every bad input must end as a named problem (file + reason, exit 1 from the CLI), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import run_cli
from spaghettinet.data.formats import MAX_LABEL_TEXT_BYTES, detect_format, resolve_format
from spaghettinet.data.split import split
from spaghettinet.data.validate import validate
from spaghettinet.data.voc import VocObject, parse_voc_xml, voc_xml_text
from spaghettinet.data.yolo_format import label_path_for, parse_data_yaml, read_class_names
from spaghettinet.errors import UsageError


def _image(path: Path, size=(64, 48), colour=(90, 120, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _coco(folder: Path, document: dict, name: str = "labels.json", images_dir: str = "images") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image in document.get("images", []):
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if (
            isinstance(file_name, str) and ".." not in file_name and not file_name.startswith("/")
        ):  # stay inside
            size = (image.get("width", 64), image.get("height", 48))
            usable = all(isinstance(v, int) and v > 0 for v in size)
            _image(folder / images_dir / file_name, size if usable else (64, 48))
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _coco_doc(**changes) -> dict:
    document = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 9, "file_name": "b.jpg", "width": 64, "height": 48},
            {"id": 11, "file_name": "neg.jpg", "width": 64, "height": 48},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 0, "bbox": [4, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 9, "category_id": 17, "bbox": [10.5, 2.25, 30, 40], "iscrowd": 0},
            {"id": 3, "image_id": 9, "category_id": 17, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        ],
        "categories": [{"id": 0, "name": "cat"}, {"id": 17, "name": "dog"}, {"id": 3, "name": "unused"}],
    }
    document.update(changes)
    return document


def _yolo(
    folder: Path, labels: dict[str, str], names=("cat", "dog"), yaml: str | None = None, split_dir=""
) -> Path:
    for stem, text in labels.items():
        _image(folder / "images" / split_dir / f"{stem}.jpg")
        if text is not None:
            label = folder / "labels" / split_dir / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text, encoding="utf-8")
    if yaml is None:
        yaml = "names: [" + ", ".join(repr(n) for n in names) + "]\n"
    (folder / "data.yaml").write_text(yaml, encoding="utf-8")
    return folder


def _kinds(report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in report.problems:
        found.setdefault(problem.kind, []).append(problem.message)
    return found


# ----------------------------------------------------------------------------------------------------------------
# detection and forcing
# ----------------------------------------------------------------------------------------------------------------


def test_each_format_is_detected_from_the_folder(tmp_path):
    voc = tmp_path / "voc"
    _image(voc / "a.jpg")
    (voc / "a.xml").write_text(voc_xml_text("a.jpg", 64, 48, []))
    coco = tmp_path / "coco"
    _coco(coco, _coco_doc())
    yolo = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n"}, split_dir="train")
    roboflow = tmp_path / "roboflow"
    _coco(roboflow / "train", _coco_doc(), name="_annotations.coco.json", images_dir=".")
    assert detect_format(voc).format == "voc"
    assert detect_format(coco).format == "coco"
    assert detect_format(yolo).format == "yolo"
    assert detect_format(roboflow).format == "coco"
    assert (
        detect_format(_image(tmp_path / "bare" / "x.jpg").parent).format == "voc"
    )  # nothing: VOC's messages


def test_a_folder_with_two_formats_asks_for_format_and_format_forces_one(tmp_path, capsys):
    folder = tmp_path / "both"
    _coco(folder, _coco_doc())
    (folder / "images" / "a.xml").write_text(voc_xml_text("a.jpg", 64, 48, []))
    with pytest.raises(UsageError, match="more than one annotation format.*--format"):
        detect_format(folder)
    code, _, err = run_cli(capsys, "validate", str(folder))
    assert code == 2 and "--format" in err
    assert validate(folder, format="coco").format == "coco"
    assert validate(folder, format="voc").format == "voc"
    with pytest.raises(UsageError, match="--format must be one of"):
        resolve_format(folder, "pascal")
    with pytest.raises(UsageError, match="--annotations"):
        resolve_format(folder, "coco", annotations=folder)


# ----------------------------------------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------------------------------------


def test_coco_reads_any_category_numbering_keeps_negatives_and_ignores_crowd_boxes_with_a_count(tmp_path):
    folder = tmp_path / "coco"
    _coco(folder, _coco_doc())
    report = validate(folder)
    assert report.ok, report.problems
    by_stem = {pair.stem: pair for pair in report.pairs}
    assert sorted(by_stem) == ["a", "b", "neg"]
    assert by_stem["a"].annotation.objects[0] == VocObject("cat", 4.0, 5.0, 24.0, 15.0)
    assert by_stem["b"].annotation.objects == (VocObject("dog", 10.5, 2.25, 40.5, 42.25),)
    assert by_stem["neg"].annotation.objects == ()
    assert report.class_counts == {"cat": 1, "dog": 1}
    kinds = _kinds(report)
    assert "1 crowd annotation(s)" in kinds["crowd-ignored"][0]
    assert report.images_found == 3 and report.negative_images == 1


def test_coco_2017_layout_and_several_roboflow_jsons_are_read(tmp_path):
    coco = tmp_path / "coco2017"
    (coco / "annotations").mkdir(parents=True)
    document = _coco_doc()
    for image in document["images"]:
        _image(coco / "val2017" / image["file_name"])
    (coco / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    assert len(validate(coco).pairs) == 3
    roboflow = tmp_path / "roboflow"
    for part, names in (("train", ["a.jpg", "b.jpg"]), ("valid", ["c.jpg"])):
        images = [{"id": k, "file_name": n, "width": 64, "height": 48} for k, n in enumerate(names)]
        _coco(roboflow / part, _coco_doc(images=images, annotations=[]), "_annotations.coco.json", ".")
    report = validate(roboflow)
    assert sorted(p.stem for p in report.pairs) == ["a", "b", "c"] and report.ok


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        ('{"images": [', "unparseable-json", "line 1 column"),
        ("[1, 2]", "unparseable-json", "top level is a list"),
        ('{"images": {}}', "unparseable-json", 'no "images" list'),
        (
            '{"images": [], "annotations": [{"bbox": [NaN, 0, 1, 1]}]}',
            "unparseable-json",
            "NaN is not a JSON",
        ),
        ("[" * 100000 + "]" * 100000, "unparseable-json", "nested too deep"),
        (b'{"images": [], "x": "\xff"}', "not-utf8", "not UTF-8"),
    ],
)
def test_bad_coco_json_is_a_named_problem(tmp_path, capsys, text, kind, words):
    folder = tmp_path / "coco"
    folder.mkdir()
    path = folder / "labels.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    report = validate(folder, format="coco")
    problem = next(p for p in report.problems if p.kind == kind)
    assert problem.file == path and words in problem.message
    code, _, err = run_cli(capsys, "validate", str(folder), "--format", "coco")
    assert code == 1 and "Traceback" not in err


def test_a_huge_coco_json_is_refused_unread(tmp_path, monkeypatch):
    import spaghettinet.data.coco_format as coco_format

    monkeypatch.setattr(coco_format, "MAX_COCO_JSON_BYTES", 1000)
    folder = tmp_path / "coco"
    _coco(folder, _coco_doc(info={"padding": "x" * 2000}))
    report = validate(folder)
    assert [p.kind for p in report.errors] == ["labels-too-large"] and not report.pairs


def test_coco_ids_that_point_nowhere_duplicates_and_unsafe_names_are_named(tmp_path):
    document = _coco_doc()
    document["images"] += [
        {"id": 9, "file_name": "b2.jpg", "width": 64, "height": 48},  # duplicate id 9
        {"id": 20, "file_name": "../outside.jpg", "width": 64, "height": 48},
        {"id": 21, "file_name": "/etc/passwd.jpg", "width": 64, "height": 48},
        {"id": 22, "file_name": "c.jpg", "width": -5, "height": 48},
        {"id": 23, "file_name": "missing.jpg", "width": 64, "height": 48},
        {"id": 24, "file_name": "d.jpg", "width": 64, "height": 48},
        {"id": 25, "file_name": "e.jpg", "width": 64, "height": 48},
        {"id": 26, "file_name": "f.jpg", "width": 64, "height": 48},
        {"id": 27, "file_name": "g.jpg", "width": 64, "height": 48},
        "not an object",
    ]
    document["annotations"] += [
        {"id": 40, "image_id": 999, "category_id": 0, "bbox": [1, 1, 2, 2]},
        {"id": 41, "image_id": 24, "category_id": 5, "bbox": [1, 1, 2, 2]},
        {"id": 42, "image_id": 25, "category_id": 0, "bbox": [1, "x", 2, 2]},
        {"id": 43, "image_id": 26, "category_id": 0, "bbox": [10, 10, -4, 5]},
        {"id": 44, "image_id": 27, "category_id": 0, "bbox": [10, 10, 500, 5]},
        {"id": 45, "image_id": [1], "category_id": [2], "bbox": None},
    ]
    folder = tmp_path / "coco"
    _coco(folder, document)
    (folder / "images" / "missing.jpg").unlink()
    report = validate(folder)
    kinds = _kinds(report)
    assert "image id 9 is given to 2 images" in kinds["duplicate-image-id"][0]
    assert any("image_id 999 is not the id of any image" in m for m in kinds["unknown-image-id"])
    assert any("image_id [1]" in m for m in kinds["unknown-image-id"])
    assert "category_id 5 is not the id of any category" in kinds["unknown-category-id"][0]
    assert "'../outside.jpg'" in kinds["unsafe-path"][0] or "'..'" in " ".join(kinds["unsafe-path"])
    assert len(kinds["unsafe-path"]) == 2
    assert "-5" in kinds["bad-size"][0]
    assert "missing.jpg" in kinds["missing-image"][0]
    assert "not a list of 4 finite numbers" in kinds["bad-coordinate"][0]
    assert kinds["empty-box"][0].startswith("images[") and "annotation 43" in kinds["empty-box"][0]
    assert "annotation 44" in kinds["box-outside-image"][0] and "'g.jpg'" in kinds["box-outside-image"][0]
    assert "images[" in kinds["bad-image-entry"][0]
    assert sorted(pair.stem for pair in report.pairs) == ["a", "neg"]  # b's id 9 is ambiguous
    assert all(p.file == folder / "labels.json" for p in report.errors)


def test_coco_size_that_differs_from_the_image_is_an_error_and_a_missing_one_a_warning(tmp_path):
    document = _coco_doc(
        images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 48}, {"id": 2, "file_name": "b.jpg"}],
        annotations=[],
    )
    folder = tmp_path / "coco"
    _coco(folder, document)
    _image(folder / "images" / "a.jpg")
    report = validate(folder)
    kinds = _kinds(report)
    assert (
        "the width and height in labels.json say 100x48 but a.jpg decodes to 64x48"
        in kinds["size-mismatch"][0]
    )
    assert (
        kinds["missing-size"][0]
        == "images[1] 'b.jpg' (id 2): no width and height in labels.json; using the image's 64x48"
    )
    assert [p.stem for p in report.pairs] == ["b"]


# ----------------------------------------------------------------------------------------------------------------
# YOLO
# ----------------------------------------------------------------------------------------------------------------


def test_yolo_ultralytics_layout_with_names_dict_and_negatives(tmp_path):
    yaml = (
        "# Ultralytics-style\npath: .  # root\ntrain: images/train\nval: images/val\n\nnames:\n  0: cat\n  1: 'hot dog'\n"
        "download: |\n  import os\n  print('never run')\n"
    )
    folder = tmp_path / "yolo"
    _yolo(folder, {"a": "0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.5 0.5\n", "neg": ""}, yaml=yaml, split_dir="train")
    _yolo(folder, {"v": "1 0.5 0.5 1 1\n", "nolabel": None}, yaml=yaml, split_dir="val")
    report = validate(folder)
    assert report.ok, report.errors
    assert report.format == "yolo"
    by_stem = {pair.stem: pair for pair in report.pairs}
    assert by_stem["a"].annotation.objects == (
        VocObject("cat", 24.0, 12.0, 40.0, 36.0),
        VocObject("hot dog", 0.0, 0.0, 32.0, 24.0),
    )
    assert by_stem["v"].annotation.objects == (VocObject("hot dog", 0.0, 0.0, 64.0, 48.0),)
    assert by_stem["neg"].annotation.objects == () and by_stem["nolabel"].annotation.objects == ()
    assert any(p.kind == "missing-label-file" and p.severity == "info" for p in report.problems)


def test_yolo_roboflow_layout_classes_txt_and_polygons(tmp_path):
    folder = tmp_path / "roboflow"
    for part in ("train", "valid"):
        _image(folder / part / "images" / f"{part}1.jpg")
        (folder / part / "labels").mkdir(parents=True)
        (folder / part / "labels" / f"{part}1.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n")
    (folder / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['cat']\n")
    report = validate(folder)
    assert report.ok and len(report.pairs) == 2
    assert report.pairs[0].annotation.objects[0] == VocObject("cat", 6.4, 4.8, 32.0, 28.8)
    assert (
        label_path_for(folder / "train" / "images" / "x.jpg", folder) == folder / "train" / "labels" / "x.txt"
    )
    plain = tmp_path / "plain"
    _yolo(plain, {"a": "1 0.5 0.5 0.5 0.5\n"})
    (plain / "data.yaml").unlink()
    (plain / "labels" / "classes.txt").write_text("cat\ndog\n")
    assert validate(plain).pairs[0].annotation.objects[0].name == "dog"


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        ("0 0.5 0.5 0.2\n", "bad-label-line", "line 1: expected 'class cx cy w h'"),
        ("\n0 0.5 0.5 x 0.2\n", "bad-coordinate", "line 2: coordinate 'x' is not a number"),
        ("0 0.5 0.5 nan 0.2\n", "bad-coordinate", "not a finite number"),
        ("2 0.5 0.5 0.2 0.2\n", "unknown-class", "class 2 is beyond the names (2 class(es), 0 to 1)"),
        ("-1 0.5 0.5 0.2 0.2\n", "bad-class", "is not an index"),
        ("cat 0.5 0.5 0.2 0.2\n", "bad-class", "the class 'cat' is not an index"),
        ("0 150 120 40 30\n", "bad-coordinate", "are these pixels?"),
        ("0 0.5 0.5 -0.2 0.2\n", "empty-box", "line 1 ('cat') box"),
        ("0 1.4 0.5 0.2 0.2\n", "box-outside-image", "line 1 ('cat')"),
    ],
)
def test_bad_yolo_label_lines_are_named_with_file_and_line(tmp_path, text, kind, words):
    folder = _yolo(tmp_path / "yolo", {"a": text, "good": "0 0.5 0.5 0.2 0.2\n"})
    report = validate(folder)
    problem = next(p for p in report.problems if p.kind == kind)
    assert problem.file == folder / "labels" / "a.txt" and words in problem.message, problem
    assert [p.stem for p in report.pairs] == ["good"]


def test_yolo_non_utf8_huge_label_and_label_without_image(tmp_path):
    folder = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "", "good": ""})
    (folder / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 \xe9\n")
    (folder / "labels" / "b.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\n" * (MAX_LABEL_TEXT_BYTES // 18 + 1))
    (folder / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    kinds = _kinds(validate(folder))
    assert "not UTF-8 text (byte 18 is 0xe9)" in kinds["not-utf8"][0]
    assert "over 10 MiB" in kinds["labels-too-large"][0]
    assert "no image found for this label file" in kinds["label-without-image"][0]


def test_yolo_duplicate_stems_across_splits_are_named(tmp_path):
    folder = _yolo(tmp_path / "yolo", {"a": ""}, split_dir="train")
    _yolo(folder, {"a": ""}, split_dir="val")
    report = validate(folder)
    assert [p.kind for p in report.errors] == ["duplicate-stem", "duplicate-stem"] and not report.pairs


@pytest.mark.parametrize(
    ("yaml", "words"),
    [
        ("names: ['cat', 'dog'\n", "is not closed"),
        ("names:\n  - cat\n  - [dog]\n", "nested lists or maps"),
        ("names: {0: cat, 0: dog}\n", "given twice"),
        ("names:\n  0: cat\n  x: dog\n", "not a class index"),
        ("names: ['cat', '']\n", "class 1 has an empty name"),
        ("nc: 3\nnames: [cat, dog]\n", "nc: '3' but names holds 2"),
        ("names: *alias\n", "anchors, aliases, tags"),
        ("names: !!python/object:os.system [cat]\n", "anchors, aliases, tags"),
        ('names: ["caf\\q"]\n', "unknown escape"),
        ("names: [cat]\nnames: [dog]\n", "given twice (first on line 1)"),
        ("just text\n", "expected 'key: value'"),
        ("train: images\n", "no 'names:'"),
    ],
)
def test_bad_data_yaml_is_a_named_problem_with_the_line(tmp_path, capsys, yaml, words):
    folder = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n"}, yaml=yaml)
    report = validate(folder)
    assert not report.pairs
    problem = report.errors[0]
    assert problem.file == folder / "data.yaml" and words in problem.message, problem
    code, out, err = run_cli(capsys, "validate", str(folder))
    assert code == 1 and f"{folder / 'data.yaml'}: {problem.message}" in out and "Traceback" not in err


def test_data_yaml_subset_reads_what_ultralytics_and_roboflow_write():
    text = (
        "---\n# comment\npath: ../datasets/coco8 # dataset root dir\ntrain: images/train\nval: images/val\ntest:\n"
        "names: [\"a \\\"b\\\"\", 'it''s', c#d, caf\\u00e9]\n"
        "roboflow:\n  workspace: me\n  version: 3\nkpt_shape: [17, 3]\n"
    )
    document = parse_data_yaml(text, Path("data.yaml"))
    assert document["names"] == (7, ['a "b"', "it's", "c#d", "caf\\u00e9"])
    assert document["path"] == (3, "../datasets/coco8") and document["test"] == (6, None)
    block = parse_data_yaml("names:\n- cat\n- 'dog'  # a dog\nnc: 2\n", Path("d.yaml"))
    assert block["names"] == (1, ["cat", "dog"]) and block["nc"] == (4, "2")
    flow = parse_data_yaml('names: {0: cat,\n  1: "d\\u00f6g"}\n', Path("d.yaml"))
    assert flow["names"] == (1, {"0": "cat", "1": "dög"})


def test_class_names_need_a_file_and_several_yaml_files_are_refused(tmp_path):
    folder = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n"})
    (folder / "data.yaml").unlink()
    report = validate(folder, format="yolo")
    assert "needs data.yaml with 'names:'" in report.errors[0].message and not report.pairs
    (folder / "one.yaml").write_text("names: [cat]\n")
    assert read_class_names(folder).names == {0: "cat"}
    (folder / "two.yml").write_text("names: [dog]\n")
    assert "several yaml files (one.yaml, two.yml)" in validate(folder).errors[0].message


# ----------------------------------------------------------------------------------------------------------------
# split and the CLI
# ----------------------------------------------------------------------------------------------------------------


def test_split_writes_voc_xml_for_coco_and_yolo_and_the_cli_prints_names_literally(tmp_path, capsys):
    folder = tmp_path / "coco"
    document = _coco_doc(categories=[{"id": 0, "name": "[red]cat"}, {"id": 17, "name": "dog"}])
    _coco(folder, document)
    result = split(folder, tmp_path / "images", test_fraction=0.34, seed=0)
    assert sorted(result.train + result.test) == ["a", "b", "neg"]
    side = "train" if "a" in result.train else "test"
    xml = parse_voc_xml(tmp_path / "images" / side / "a.xml")
    assert (xml.width, xml.height, xml.objects) == (64, 48, (VocObject("[red]cat", 4, 5, 24, 15),))
    assert (tmp_path / "images" / side / "a.jpg").read_bytes() == (folder / "images" / "a.jpg").read_bytes()
    assert json.loads((tmp_path / "images" / "split.json").read_text())["format"] == "coco"
    code, out, _ = run_cli(capsys, "validate", str(folder))
    assert code == 0 and "[red]cat" in out and "coco" in out
    code, out, _ = run_cli(capsys, "split", str(folder), "--out", str(tmp_path / "again"), "--format", "coco")
    assert code == 0 and "[red]cat" in out


def test_data_yaml_not_utf8_and_two_indices_with_one_name(tmp_path):
    folder = _yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.4 0.4\n"})
    (folder / "data.yaml").write_bytes(b"names: [caf\xe9]\n")
    assert "not UTF-8 text (byte 11 is 0xe9)" in validate(folder).errors[0].message
    (folder / "data.yaml").write_text("names:\n  - cat\n  - cat\n")
    report = validate(folder)
    assert report.ok and report.class_counts == {"cat": 2}
    assert "classes 0 and 1 are both named 'cat'" in _kinds(report)["duplicate-class-name"][0]
