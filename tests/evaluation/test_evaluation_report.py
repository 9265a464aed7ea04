"""The report: self-contained HTML whose images load, Markdown with its figures, hostile names shown as text, and
sections that say what is missing instead of failing."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from spaghettinet.evaluation.report import (
    DatasetSummary,
    ModelScores,
    PredictedPicture,
    ReportInputs,
    escape_markdown,
    history_series,
    load_report_inputs,
    write_report,
)

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_FLAG_NAME = '<img src=x onerror="document.body.dataset.xss=1">'
FILE_NAME_XSS = "<script>document.body.dataset.xss=1</script>.jpg"


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def _full_inputs() -> ReportInputs:
    names = [XSS_FLAG_NAME, "bolt | *nut*", XSS_NAME]
    recall = np.linspace(0, 1, 101)
    return ReportInputs(
        title="report of <b>run</b>",
        class_names=names,
        settings={"variant": "s", "input size": "128"},
        dataset=DatasetSummary(
            images=10,
            objects_per_class={name: 3 + i for i, name in enumerate(names)},
            split_images={"train": 8, "test": 2},
            warnings=[f"{FILE_NAME_XSS}: greyscale image, converted to RGB"],
            errors=["broken.xml: not well-formed"],
        ),
        loss_curves={"loss/total": ([1, 2, 3], [3.0, 2.0, 1.0]), "loss/box": ([1, 2, 3], [1.0, 0.8, 0.5])},
        learning_rate=([1, 2, 3], [0.01, 0.02, 0.015]),
        scores=[
            ModelScores("float", {"AP": 0.5, "AP50": 0.8, "AP75": 0.4, "APs": -1.0}, {XSS_NAME: 0.3}),
            ModelScores("QAT int8", {"AP": 0.48, "AP50": 0.79}, {XSS_NAME: 0.29}),
        ],
        precision_recall={XSS_NAME: (recall, 1 - recall * 0.5)},
        precision_recall_model="QAT int8",
        test_pictures=[
            PredictedPicture(
                name=FILE_NAME_XSS,
                image=_picture(seed),
                boxes=np.array([[0.1, 0.1, 0.6, 0.7]]),
                classes=np.array([seed % 3]),
                scores=np.array([0.9]),
                true_boxes=np.array([[0.12, 0.1, 0.6, 0.68]]),
                true_classes=np.array([seed % 3]),
            )
            for seed in range(3)
        ],
        latency=[{"model": "model_int8.tflite", "threads": 1, "median_ms": 12.3, "p90_ms": 14.0}],
        model_sizes={"model_int8.tflite": 1_234_567},
        export_report={"int8_float_ops": 0, "note": XSS_NAME},
    )


class _PageStructure(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.image_sources: list[str] = []
        self.event_attributes: list[tuple[str, str]] = []
        self.external: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, _value in attrs:
            if name.startswith("on"):
                self.event_attributes.append((tag, name))
        attributes = dict(attrs)
        if tag == "img":
            self.image_sources.append(attributes.get("src", ""))
        if tag in ("link", "iframe", "object", "embed") or (tag == "script"):
            self.external.append(tag)

    def handle_data(self, data):
        self.text += data


@pytest.fixture(scope="module")
def written_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(_full_inputs(), out)


def test_html_is_self_contained_and_every_image_decodes(written_report):
    page = written_report.html.read_text(encoding="utf-8")
    parser = _PageStructure()
    parser.feed(page)
    assert parser.external == []
    assert parser.event_attributes == []
    # loss, learning rate, precision-recall, test pictures
    assert len(parser.image_sources) == 4
    for source in parser.image_sources:
        match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", source)
        assert match, source[:60]
        image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
        image.load()
        assert image.format.lower() == ("png" if match.group(1) == "png" else "jpeg")
        assert image.width > 50 and image.height > 50
    for heading in ("Dataset", "Training", "Accuracy", "Test pictures", "Latency", "Export"):
        assert heading in parser.text


def test_hostile_names_are_text_in_html(written_report):
    page = written_report.html.read_text(encoding="utf-8")
    parser = _PageStructure()
    parser.feed(page)
    # The names appear as text, never as markup.
    assert XSS_NAME in parser.text
    assert FILE_NAME_XSS in parser.text
    assert parser.tags.count("script") == 0
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_markdown_escapes_names_and_writes_its_figures(written_report):
    markdown = written_report.markdown.read_text(encoding="utf-8")
    # Fenced code shows its content literally in every Markdown renderer; everywhere else no raw HTML may remain.
    outside_code = re.sub(r"(?ms)^(`{3,})\n.*?^\1$", "", markdown)
    assert "<img" not in outside_code and "<script" not in outside_code
    assert XSS_NAME in markdown  # the export report's raw JSON, inside the fence
    assert escape_markdown(XSS_NAME) in markdown
    assert "bolt \\| \\*nut\\*" in markdown  # a pipe cannot split the table cell, stars do not emphasise
    referenced = re.findall(r"!\[[^\n]*?\]\(([^)\s]+)\)", markdown)
    assert sorted(referenced) == sorted(path.name for path in written_report.figures)
    for path in written_report.figures:
        assert path.parent == written_report.markdown.parent
        Image.open(path).load()


def test_escape_markdown_neutralises_links_and_html():
    text = escape_markdown("[click](http://evil)\n# <b>&amp;")
    assert "](" not in text.replace("\\]\\(", "")
    assert "<" not in text and "\n" not in text
    assert text.startswith("\\[click\\]\\(")


def test_missing_inputs_give_notices_not_errors(tmp_path):
    paths = write_report(ReportInputs(title="empty"), tmp_path / "report")
    page = paths.html.read_text(encoding="utf-8")
    for phrase in ("No dataset summary", "No loss history", "No evaluation results", "No test pictures"):
        assert phrase in page
    assert paths.figures == ()


def test_load_report_inputs_tolerates_an_empty_or_broken_workdir(tmp_path):
    workdir = tmp_path / "work"
    (workdir / "training" / "training-output").mkdir(parents=True)
    (workdir / "training" / "training-output" / "metrics_history.json").write_text("{not json")
    inputs = load_report_inputs(workdir)
    assert inputs.dataset is None and inputs.scores == [] and inputs.loss_curves == {}
    assert any("metrics_history.json" in note for note in inputs.missing)
    paths = write_report(workdir, workdir / "report")
    assert "metrics_history.json could not be read" in paths.html.read_text(encoding="utf-8")


def test_load_report_inputs_reads_the_stage_files(tmp_path):
    workdir = tmp_path / "work"
    (workdir / "images").mkdir(parents=True)
    (workdir / "images" / "train_labels.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,cat,1,1,5,5\na.jpg,10,10,dog,1,1,5,5\n"
    )
    (workdir / "images" / "test_labels.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\nb.jpg,10,10,cat,1,1,5,5\n"
    )
    model_dir = workdir / "training" / "training-output"
    model_dir.mkdir(parents=True)
    (model_dir / "metrics_history.json").write_text(
        json.dumps([{"step": 10, "loss/total": 2.0, "learning_rate": 0.1}, {"step": 20, "loss/total": 1.0}])
    )
    (model_dir / "eval.json").write_text(
        json.dumps({"metrics": {"AP": 0.4, "AP50": 0.7}, "per_class_ap": {"cat": 0.5}})
    )
    inputs = load_report_inputs(workdir)
    assert inputs.dataset.objects_per_class == {"cat": 2, "dog": 1}
    assert inputs.dataset.split_images == {"train": 1, "test": 1}
    assert inputs.loss_curves == {"loss/total": ([10.0, 20.0], [2.0, 1.0])}
    assert inputs.learning_rate == ([10.0], [0.1])
    assert inputs.scores[0].metrics == {"AP": 0.4, "AP50": 0.7}
    assert inputs.scores[0].per_class_ap == {"cat": 0.5}


def test_history_series_reads_column_layout():
    assert history_series({"step": [1, 2], "loss": [0.5, 0.25], "note": "x"}) == {
        "loss": ([1.0, 2.0], [0.5, 0.25])
    }


_PROBE = """
<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  document.body.dataset.total = images.length;
  document.body.dataset.loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(
    _chromium() is None, reason="no Chromium on this machine; structure and decoding are checked above"
)
def test_chromium_renders_the_page_and_loads_every_image(written_report, tmp_path):
    page = written_report.html.read_text(encoding="utf-8")
    # The page forbids scripts; to measure it, a copy drops that policy and adds a probe. Unescaped markup in the
    # names would then run and set data-xss.
    probe_page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>", _PROBE + "</body>"
    )
    probe = tmp_path / "probe.html"
    probe.write_text(probe_page, encoding="utf-8")
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    assert 'data-total="4"' in dom, result.stderr[-2000:]
    assert 'data-loaded="4"' in dom
    assert "data-xss" not in dom


def test_write_report_overwrites_atomically(tmp_path):
    out = tmp_path / "report"
    write_report(ReportInputs(title="first"), out)
    paths = write_report(ReportInputs(title="second"), out)
    assert "second" in paths.html.read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "report.md"]


def test_base64_of_figures_is_valid(written_report):
    page = written_report.html.read_text(encoding="utf-8")
    for payload in re.findall(r"base64,([^\"]+)", page):
        try:
            base64.b64decode(payload, validate=True)
        except binascii.Error as exc:  # pragma: no cover - the assertion message
            raise AssertionError(f"invalid base64: {exc}") from exc
