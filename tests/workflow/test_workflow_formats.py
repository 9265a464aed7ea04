"""run on COCO and YOLO datasets: detected (or forced) at validation, split into the same VOC files as VOC data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from spaghettinet import workflow
from spaghettinet.data.convert import convert
from spaghettinet.data.demo import make_demo
from spaghettinet.data.voc import parse_voc_xml
from spaghettinet.errors import UsageError


@pytest.fixture(scope="module")
def demo_in_three_formats(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    make_demo(root / "voc", images=12, seed=5)
    convert(root / "voc", "coco", root / "coco")
    convert(root / "voc", "yolo", root / "yolo")
    return {name: root / name for name in ("voc", "coco", "yolo")}


def _split_files(images: Path) -> dict[str, object]:
    """What a split folder holds: file names, image bytes, the parsed xml, and split.json's lists."""
    files: dict[str, object] = {}
    for path in sorted(p for side in ("train", "test") for p in (images / side).iterdir()):
        key = path.relative_to(images).as_posix()
        if path.suffix == ".xml":
            xml = parse_voc_xml(path)
            files[key] = (
                xml.filename,
                xml.width,
                xml.height,
                [(o.name, o.xmin, o.ymin, o.xmax, o.ymax) for o in xml.objects],
            )
        else:
            files[key] = path.read_bytes()
    summary = json.loads((images / "split.json").read_text())
    files["split.json"] = (
        summary["train"],
        summary["test"],
        summary["images_per_class"],
        summary["excluded"],
    )
    return files


def test_run_until_split_on_coco_and_yolo_writes_the_split_of_the_voc_data(
    demo_in_three_formats, tmp_path, capsys
):
    splits, logs = {}, {}
    for name, data in demo_in_three_formats.items():
        lines: list[str] = []
        result = workflow.run(data, tmp_path / name, until="split", log=lines.append, show_progress=False)
        assert [stage.status for stage in result.stages] == ["ran", "ran"], name
        splits[name], logs[name] = _split_files(tmp_path / name / "images"), lines
        assert json.loads((tmp_path / name / "images" / "validation.json").read_text())["format"] == name
    assert splits["coco"] == splits["voc"]
    assert splits["yolo"] == splits["voc"]
    assert any("12 images (coco)" in line for line in logs["coco"])
    # A rerun is up to date; forcing the detected format changes nothing.
    again = workflow.run(demo_in_three_formats["yolo"], tmp_path / "yolo", until="split", format="yolo")
    assert [stage.status for stage in again.stages] == ["skipped", "skipped"]
    code, _, err = run_cli(
        capsys,
        "run",
        str(demo_in_three_formats["coco"]),
        "--workdir",
        str(tmp_path / "coco"),
        "--until",
        "split",
        "--format",
        "coco",
    )
    assert code == 0, err


def test_run_format_contradicting_the_folder_stops_with_named_problems(
    demo_in_three_formats, tmp_path, capsys
):
    code, out, err = run_cli(
        capsys,
        "run",
        str(demo_in_three_formats["coco"]),
        "--workdir",
        str(tmp_path / "w"),
        "--until",
        "split",
        "--format",
        "yolo",
    )
    assert code == 1 and "no class names" in err and "Traceback" not in err
    with pytest.raises(UsageError, match="--format must be one of"):
        workflow.run(demo_in_three_formats["coco"], tmp_path / "w2", until="split", format="labelme")
