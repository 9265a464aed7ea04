"""The report: a first screen that says how good the model is and what limits it, self-contained HTML whose images
load, Markdown with its figures, a model card beside the models, hostile names shown as text, and sections that say
what is missing instead of failing."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaghettinet.coco_metrics import STAT_NAMES, CocoResult, EvalReport, write_eval_json
from spaghettinet.deploy.edgetpu import EdgeTpuCompatibility
from spaghettinet.deploy.export_report import (
    DetectionAgreement,
    ExportChecks,
    ExportReport,
    Int8Graph,
    Int8Ranges,
    ModelAccuracy,
)
from spaghettinet.deploy.tflite import PostprocessSettings
from spaghettinet.evaluation.document import CSP, escape_html, escape_markdown
from spaghettinet.evaluation.latency import LATENCY_FILE, LatencyReport, LatencyResult
from spaghettinet.evaluation.report import export_check_rows, format_op_counts, write_report
from spaghettinet.evaluation.report_inputs import (
    CoverageFacts,
    DatasetSummary,
    ModelScores,
    PredictedPicture,
    ReportInputs,
    TrainingFacts,
    run_facts,
)
from spaghettinet.evaluation.report_loading import load_report_inputs
from spaghettinet.evaluation.split_detections import ImageResult, SplitDetections
from spaghettinet.training.history import HISTORY_FILE, EvaluationRecord, LossRecord, MetricsHistory
from spaghettinet.training.plan import STATE_FILE, TrainPlan


def _latency(**changes) -> LatencyResult:
    """A latency measurement of the int8 model at 128², as the latency stage writes it."""
    values = dict(
        model="model_int8.tflite",
        threads=1,
        runs=30,
        median_ms=10.0,
        p90_ms=11.0,
        mean_ms=10.2,
        min_ms=9.5,
        size_bytes=1_234_567,
        input_shape=[1, 128, 128, 3],
        input_type="uint8",
        op_counts={"CONV_2D": 40},
        cpu={"model": "Test CPU"},
    )
    return LatencyResult(**(values | changes))


XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_FLAG_NAME = '<img src=x onerror="document.body.dataset.xss=1">'
FILE_NAME_XSS = "<script>document.body.dataset.xss=1</script>.jpg"
# One word far wider than a 1280-pixel window: the page must still not scroll sideways.
LONG_FILE_NAME = "x" * 400 + ".jpg"
NAMES = [XSS_FLAG_NAME, "bolt | *nut*", XSS_NAME]
FIGURES = (
    7  # training labels, loss, learning rate, precision-recall, confusion matrix, test pictures, worst images
)


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def _boxes(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0.0, 0.5, (count, 2))
    return np.concatenate([corner, corner + rng.uniform(0.1, 0.5, (count, 2))], axis=1)


def _test_results() -> SplitDetections:
    images = [
        ImageResult(
            name=f"test_{k}.jpg",
            width=128,
            height=96,
            true_boxes=np.array([[0.1, 0.1, 0.6, 0.7], [0.6, 0.6, 0.9, 0.9]]),
            true_classes=np.array([k % 3, 2]),
            boxes=np.array([[0.1, 0.1, 0.6, 0.7], [0.0, 0.7, 0.2, 0.95]]),
            classes=np.array([(k + 1) % 3 if k == 2 else k % 3, 1]),
            scores=np.array([0.9, 0.6]),
        )
        for k in range(3)
    ]
    worst = [
        PredictedPicture(
            name=name,
            image=_picture(10 + k),
            boxes=images[k].boxes,
            classes=images[k].classes,
            scores=images[k].scores,
            true_boxes=images[k].true_boxes,
            true_classes=images[k].true_classes,
        )
        for k, name in enumerate([FILE_NAME_XSS, LONG_FILE_NAME])
    ]
    return SplitDetections(
        model="model_int8.tflite",
        score_threshold=0.3,
        images=images,
        total_images=3,
        scores=ModelScores(
            "model_int8.tflite, all 3 test images",
            {"AP": 0.45, "AP50": 0.75},
            dict.fromkeys(NAMES, 0.4),
            dict.fromkeys(NAMES, 0.7),
        ),
        worst=worst,
        class_names=list(NAMES),
    )


EXPORT_REPORT = ExportReport(
    checkpoint="training-output/ckpt-200",
    step=200,
    quantization="qat",
    checkpoint_quantization_aware=True,
    postprocess=PostprocessSettings(num_classes=3, score_threshold=0.3, iou_threshold=0.6, max_detections=10),
    postprocess_signature="SIGNATURE-ONLY-IN-THE-JSON",
    class_names=tuple(NAMES),
    input_size=(128, 128),
    calibration_images=32,
    calibrated_ranges=(),
    int8_ranges=Int8Ranges(range_floor=0.0, widened_ranges=()),
    files={"model_float.tflite": 12_000_000, "model_int8.tflite": 1_234_567},
    int8=Int8Graph(
        input_type="UINT8",
        input_scale=2 / 255,
        input_zero_point=128,
        op_counts={"CONV_2D": 40, "ADD": 3},
        operators=(),
        float_ops=(),
    ),
    edgetpu=EdgeTpuCompatibility(
        unsupported_ops={},
        expected_cpu_ops={"DEQUANTIZE": 2},
        dynamic_shapes=[],
        batch_size=1,
        problems=[f"a problem naming {XSS_NAME}"],
        compiler={"status": "not found"},
    ),
    checks=ExportChecks(
        images=3,
        agreements={
            "int8_vs_keras": DetectionAgreement(
                reference_detections=10,
                candidate_detections=10,
                matched=10,
                matched_fraction=1.0,
                mean_iou=0.97,
                min_iou=0.9,
                mean_score_difference=0.01,
                max_score_difference=0.02,
            )
        },
        accuracy={"float": ModelAccuracy(0.5, 0.8, None), "int8": ModelAccuracy(0.45, 0.75, None)},
    ),
)


def _full_inputs() -> ReportInputs:
    recall = np.linspace(0, 1, 101)
    return ReportInputs(
        title="report of <b>run</b>",
        class_names=list(NAMES),
        settings={"variant": "s", "input size": "128"},
        dataset=DatasetSummary(
            images=10,
            objects_per_class={name: 3 + i for i, name in enumerate(NAMES)},
            split_images={"train": 7, "test": 3},
            objects_per_split={
                "train": {name: 2 + i for i, name in enumerate(NAMES)},
                "test": dict.fromkeys(NAMES, 1),
            },
            warnings=[f"{FILE_NAME_XSS}: greyscale image, converted to RGB"],
            errors=["broken.xml: not well-formed"],
        ),
        train_boxes={name: _boxes(i, 5 + i) for i, name in enumerate(NAMES)},
        coverage=CoverageFacts((128, 128), dict(zip(NAMES, (1.0, 0.95, 0.5), strict=True)), {}, 320),
        training=TrainingFacts(
            variant="s",
            input_size=(128, 128),
            planned_steps=200,
            trained_steps=200,
            batch_size=4,
            optimizer="adam",
            learning_rate=0.01,
            qat_from_step=20,
            moving_average_decay=0.999,
            augmentation=["random_horizontal_flip"],
            start="from scratch (as asked: --from-scratch)",
            from_scratch=True,
        ),
        loss_curves={"loss": ([1, 2, 3], [3.0, 2.0, 1.0])},
        learning_rate=([1, 2, 3], [0.01, 0.02, 0.015]),
        scores=[
            ModelScores("float", {"AP": 0.5, "AP50": 0.8, "AP75": 0.4, "AP_small": -1.0}, {XSS_NAME: 0.3}),
            ModelScores("QAT int8 TFLite", {"AP": 0.48, "AP50": 0.79}, {XSS_NAME: 0.29}),
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
        test_results=_test_results(),
        latency=[
            _latency(
                median_ms=12.3,
                p90_ms=14.0,
                op_counts={"CONV_2D": 40, "ADD": 3},
                cpu={"model": "Test CPU 9000", "avx2": True},
            )
        ],
        model_sizes={"model_int8.tflite": 1_234_567},
        export_report=EXPORT_REPORT,
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
    workdir = tmp_path_factory.mktemp("work")
    inputs = _full_inputs()
    inputs.model_card_path = workdir / "exported" / "model_card.md"
    inputs.export_report_path = workdir / "exported" / "export_report.json"
    return write_report(inputs, workdir / "report")


def _page(paths) -> _PageStructure:
    parser = _PageStructure()
    parser.feed(paths.html.read_text(encoding="utf-8"))
    return parser


def _verdict_text(paths) -> str:
    page = paths.html.read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)">', page)[0] == "verdict"
    parser = _PageStructure()
    parser.feed(re.search(r'<section id="verdict">(.*?)</section>', page, re.S).group(1))
    return parser.text


def test_html_is_self_contained_and_every_image_decodes(written_report):
    parser = _page(written_report)
    assert parser.external == []
    assert parser.event_attributes == []
    assert len(parser.image_sources) == FIGURES
    for source in parser.image_sources:
        match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", source)
        assert match, source[:60]
        image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
        image.load()
        assert image.format.lower() == ("png" if match.group(1) == "png" else "jpeg")
        assert image.width > 50 and image.height > 50
    for heading in ("Verdict", "Dataset", "Training", "Accuracy", "Test pictures", "Latency", "Export"):
        assert heading in parser.text


def test_the_first_section_is_the_verdict_with_figures_and_what_to_do(written_report):
    verdict = _verdict_text(written_report)
    # The shipped int8 model on the whole test split, its latency and its size.
    for figure in (
        "0.75",
        "0.45",
        "model_int8.tflite, 3 test images",
        "12.3 ms",
        "Test CPU 9000",
        "1.18 MiB",
    ):
        assert figure in verdict, figure
    assert "Usable with care" in verdict
    # What limits it, each with its action: few objects, small objects, the start, int8 loss, few test images.
    assert f"Add photos of {NAMES[0]}" in verdict
    assert "--input-size 320" in verdict
    assert "--from-scratch" in verdict
    assert "5.0 AP points" in verdict
    assert "3 test images" in verdict
    assert "Model card" in verdict


def test_run_facts_take_the_shipped_model_on_the_whole_split():
    facts = run_facts(_full_inputs())
    assert (facts.ap50, facts.ap, facts.test_images, facts.test_objects) == (0.75, 0.45, 3, 6)
    assert (facts.float_ap, facts.int8_ap, facts.input_size, facts.suggested_input_size) == (
        0.5,
        0.45,
        128,
        320,
    )
    by_name = {c.name: c for c in facts.classes}
    assert by_name[XSS_NAME].anchor_coverage == 0.5 and by_name[XSS_NAME].train_objects == 4
    # Image 2's object of class 2 was detected as class 0.
    assert by_name[XSS_NAME].confused_with == (XSS_FLAG_NAME, 1)


def test_confusion_matrix_and_worst_images_are_shown(written_report):
    parser = _page(written_report)
    assert "Confusion matrix, model_int8.tflite" in parser.text
    assert (
        "Of 6 test objects, 2 were found with their class, 1 with another class and 3 missed; 3 detections were "
        "on no object." in parser.text
    )
    assert "Worst test images" in parser.text and "missed objects dashed blue" in parser.text
    assert LONG_FILE_NAME in parser.text


def test_latency_shows_op_counts_as_a_list_and_export_checks_as_a_table(written_report):
    parser = _page(written_report)
    page = written_report.html.read_text(encoding="utf-8")
    assert "model_int8.tflite: CONV_2D ×40, ADD ×3" in parser.text
    assert "{'" not in parser.text and '{"' not in parser.text  # no Python dict, no JSON dump
    assert "<pre>" not in page
    assert "SIGNATURE-ONLY-IN-THE-JSON" not in page
    assert "UINT8, scale 0.00784314 (2/255), zero point 128" in parser.text
    assert 'href="../exported/export_report.json"' in page


def test_export_check_rows_mark_what_needs_a_look():
    rows = {row[0]: row for row in export_check_rows(EXPORT_REPORT)}
    assert rows["float ops in the int8 graph"][1:] == ["none", "ok"]
    assert rows["AP float vs int8 .tflite (3 test images)"][1:] == ["0.500 vs 0.450", "check"]
    assert rows["int8 .tflite vs Keras (3 test images)"][2] == "ok"
    with_float_op = replace(EXPORT_REPORT, int8=replace(EXPORT_REPORT.int8, float_ops=("7:CONV_2D",)))
    rows = {row[0]: row for row in export_check_rows(with_float_op)}
    assert rows["float ops in the int8 graph"][1:] == ["7:CONV_2D", "check"]
    assert rows["Edge TPU"][2] == "check"  # the problem listed


def test_format_op_counts_most_frequent_first():
    assert format_op_counts({"ADD": 2, "CONV_2D": 40, "LOGISTIC": 2}) == "CONV_2D ×40, ADD ×2, LOGISTIC ×2"


def test_the_model_card_is_written_beside_the_models_and_linked(written_report):
    card = written_report.model_card
    assert card == written_report.html.parent.parent / "exported" / "model_card.md"
    assert 'href="../exported/model_card.md"' in written_report.html.read_text(encoding="utf-8")
    text = card.read_text(encoding="utf-8")
    assert text.startswith("# Model card: SpaghettiNet-EdgeTPU-S detector, 3 classes, 128×128")
    assert escape_markdown(XSS_NAME) in text and "<img" not in text
    assert "| 0 | detection\\_boxes |" in text


def test_hostile_names_are_text_in_html(written_report):
    page = written_report.html.read_text(encoding="utf-8")
    parser = _page(written_report)
    # The names appear as text, never as markup.
    assert XSS_NAME in parser.text
    assert FILE_NAME_XSS in parser.text
    assert parser.tags.count("script") == 0
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_markdown_escapes_names_and_writes_its_figures(written_report):
    markdown = written_report.markdown.read_text(encoding="utf-8")
    # Fenced code shows its content literally in every Markdown renderer; everywhere else no raw HTML may remain.
    assert "<img" not in markdown and "<script" not in markdown
    assert escape_markdown(XSS_NAME) in markdown
    assert "bolt \\| \\*nut\\*" in markdown  # a pipe cannot split the table cell, stars do not emphasise
    referenced = re.findall(r"!\[[^\n]*?\]\(([^)\s]+)\)", markdown)
    assert sorted(referenced) == sorted(path.name for path in written_report.figures)
    for path in written_report.figures:
        assert path.parent == written_report.markdown.parent
        Image.open(path).load()


def test_missing_inputs_give_notices_not_errors(tmp_path):
    paths = write_report(ReportInputs(title="empty"), tmp_path / "report")
    page = paths.html.read_text(encoding="utf-8")
    for phrase in ("No dataset summary", "No loss history", "No evaluation results", "No test pictures"):
        assert phrase in page
    assert "No accuracy figures" in page  # the verdict says what it lacks
    assert paths.figures == () and paths.model_card is None


def test_load_report_inputs_tolerates_an_empty_or_broken_workdir(tmp_path):
    workdir = tmp_path / "work"
    (workdir / "training" / "training-output").mkdir(parents=True)
    (workdir / "training" / "training-output" / "metrics_history.json").write_text("{not json")
    inputs = load_report_inputs(workdir)
    assert inputs.dataset is None and inputs.scores == [] and inputs.loss_curves == {}
    assert any("metrics_history.json" in note for note in inputs.missing)
    paths = write_report(workdir, workdir / "report")
    assert "metrics_history.json could not be read" in paths.html.read_text(encoding="utf-8")


def _write_stage_files(workdir: Path) -> None:
    from spaghettinet.pipeline_config import (
        InputReaderSettings,
        ModelSettings,
        PipelineConfig,
        QuantizationSettings,
        TrainSettings,
        write_config,
    )

    (workdir / "images").mkdir(parents=True)
    (workdir / "images" / "train_labels.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        "a.jpg,200,100,cat,20,10,120,60\n"
        "a.jpg,200,100,dog,2,1,6,5\n"
    )
    (workdir / "images" / "test_labels.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\nb.jpg,10,10,cat,1,1,5,5\n"
    )
    training = workdir / "training"
    model_dir = training / "training-output"
    model_dir.mkdir(parents=True)
    (training / "label_map.pbtxt").write_text('item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n')
    reader = InputReaderSettings(label_map_path="label_map.pbtxt", input_paths=["train.record"])
    write_config(
        PipelineConfig(
            model=ModelSettings(num_classes=2, variant="s", input_size=(128, 128)),
            train=TrainSettings(
                batch_size=4,
                num_steps=200,
                total_steps=200,
                warmup_steps=10,
                learning_rate_base=0.01,
                warmup_learning_rate=0.001,
                optimizer="adam",
                use_moving_average=True,
                moving_average_decay=0.999,
            ),
            train_input=reader,
            eval_input=InputReaderSettings("label_map.pbtxt", ["test.record"], shuffle=False, num_epochs=1),
            quantization=QuantizationSettings(delay=20),
        ),
        training / "pipeline.config",
    )
    # The schedule training really ran: fitted to a 10-minute budget.
    TrainPlan(
        batch_size=4,
        num_steps=150,
        total_steps=150,
        warmup_steps=8,
        learning_rate_base=0.01,
        warmup_learning_rate=0.001,
        quantization_delay=15,
        time_budget_s=600.0,
    ).write(model_dir / STATE_FILE)
    (workdir / ".spaghettinet").mkdir()
    (workdir / ".spaghettinet" / "start.json").write_text(
        json.dumps({"kind": "scratch", "description": "from scratch (as asked: --from-scratch)"})
    )
    MetricsHistory(
        [LossRecord(10, 2.0, 0.1), LossRecord(150, 1.0, 0.001)], [EvaluationRecord(150, 0.4, 0.7)]
    ).write(model_dir / HISTORY_FILE)
    stats = dict.fromkeys(STAT_NAMES) | {"AP": 0.4, "AP50": 0.7}
    result = CocoResult(
        stats, {"cat": 0.5, "dog": None}, {"cat": 0.8, "dog": None}, {"cat": None, "dog": None}, 1, 1
    )
    write_eval_json(model_dir / "eval.json", EvalReport(result, step=150))
    exported = workdir / "exported"
    exported.mkdir()
    (exported / "model_int8.tflite").write_bytes(b"not really a model")
    two_classes = replace(EXPORT_REPORT, class_names=("cat", "dog"))
    two_classes.write(exported / "export_report.json")
    LatencyReport([_latency(median_ms=5.0)]).write(exported / LATENCY_FILE)


def test_load_report_inputs_reads_the_stage_files(tmp_path):
    workdir = tmp_path / "work"
    _write_stage_files(workdir)
    inputs = load_report_inputs(workdir)
    assert inputs.class_names == ["cat", "dog"]
    assert inputs.dataset.objects_per_class == {"cat": 2, "dog": 1}
    assert inputs.dataset.objects_per_split == {"train": {"cat": 1, "dog": 1}, "test": {"cat": 1}}
    assert inputs.dataset.split_images == {"train": 1, "test": 1}
    np.testing.assert_allclose(inputs.train_boxes["cat"], [[0.1, 0.1, 0.6, 0.6]])
    assert inputs.loss_curves == {"loss": ([10, 150], [2.0, 1.0])}
    assert inputs.learning_rate == ([10, 150], [0.1, 0.001])
    assert inputs.scores[0].metrics == {"AP": 0.4, "AP50": 0.7}
    assert (inputs.scores[0].per_class_ap, inputs.scores[0].per_class_ap50) == ({"cat": 0.5}, {"cat": 0.8})
    assert [s.label for s in inputs.scores] == ["float (checkpoint)", "float TFLite", "QAT int8 TFLite"]
    training = inputs.training
    assert (training.variant, training.input_size, training.optimizer) == ("s", (128, 128), "adam")
    assert (training.planned_steps, training.trained_steps, training.qat_from_step) == (150, 150, 15)
    assert (training.time_budget_s, training.moving_average_decay, training.from_scratch) == (
        600.0,
        0.999,
        True,
    )
    # The dog's 4×4-pixel box is far below the smallest anchor at 128×128; the cat's half-image box is covered.
    assert inputs.coverage.share == {"cat": 1.0, "dog": 0.0}
    assert inputs.min_score == 0.3 and inputs.latency[0].median_ms == 5.0
    assert inputs.model_card_path == workdir / "exported" / "model_card.md"
    assert inputs.test_results is None  # detect=False: no model is run


def test_a_workdir_report_writes_the_card_and_says_why_there_is_no_confusion_matrix(tmp_path):
    workdir = tmp_path / "work"
    _write_stage_files(workdir)
    (workdir / "exported" / "model_int8.tflite").unlink()  # no model to run: the report still comes out
    (workdir / "exported" / "model_float.tflite").write_bytes(b"x")
    paths = write_report(load_report_inputs(workdir), workdir / "report")
    page = paths.html.read_text(encoding="utf-8")
    assert "No confusion matrix" in page
    card = paths.model_card.read_text(encoding="utf-8")
    assert "| quantization-aware training | from step 15 |" in card
    assert "| cat | 1 | 1 |" in card  # train and test objects


@pytest.mark.parametrize(
    "name, payload, reason",
    [
        ("metrics_history.json", {"step": [1, 2], "loss": [0.5, 0.25]}, "missing 'version'"),
        ("metrics_history.json", [{"step": 1, "loss/total": 2.0}], "unknown 'loss/total'"),
        ("eval.json", {"version": 1, "mAP": 0.5}, "unknown 'mAP'"),
    ],
)
def test_a_stage_file_in_a_layout_nothing_writes_is_named_not_guessed(tmp_path, name, payload, reason):
    model_dir = tmp_path / "work" / "training" / "training-output"
    model_dir.mkdir(parents=True)
    (model_dir / name).write_text(json.dumps(payload))
    inputs = load_report_inputs(tmp_path / "work")
    assert inputs.loss_curves == {} and inputs.scores == []
    assert any(note.startswith(f"{name} could not be read") and reason in note for note in inputs.missing)


def test_an_export_report_in_a_layout_nothing_writes_is_named_and_its_scores_left_out(tmp_path):
    workdir = tmp_path / "work"
    _write_stage_files(workdir)
    report = workdir / "exported" / "export_report.json"
    report.write_text(json.dumps(EXPORT_REPORT.to_dict() | {"mAP": 0.9}))
    inputs = load_report_inputs(workdir)
    assert inputs.export_report is None
    assert [s.label for s in inputs.scores] == ["float (checkpoint)"]
    assert any(
        note.startswith("export_report.json could not be read") and "unknown 'mAP'" in note
        for note in inputs.missing
    )


def test_a_partial_training_state_is_named_and_the_config_plan_shown(tmp_path):
    workdir = tmp_path / "work"
    _write_stage_files(workdir)
    state = workdir / "training" / "training-output" / STATE_FILE
    state.write_text(json.dumps({"num_steps": 150, "batch_size": 4}))
    inputs = load_report_inputs(workdir)
    assert any(
        note.startswith("train_state.json could not be read") and "missing 'total_steps'" in note
        for note in inputs.missing
    )
    assert inputs.training.planned_steps == 200  # the config's plan, not a guess from half a file


_PROBE = """
<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const root = document.documentElement;
  document.body.dataset.total = images.length;
  document.body.dataset.loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.pageWidth = root.scrollWidth;
  document.body.dataset.windowWidth = root.clientWidth;
});
</script>
"""
#: What the closed network here needs (without them Chromium's background services hang on refused connections).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,900",
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_chromium = pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium on this machine (apt-get install chromium); structure and decoding are checked above",
)


@needs_chromium
def test_chromium_loads_every_image_without_sideways_scrolling_at_1280_px(written_report, tmp_path):
    page = written_report.html.read_text(encoding="utf-8")
    # The page forbids scripts. To measure it, a copy allows inline scripts and adds a probe; the rest of the policy
    # (images only from data: URIs) stays, so an image it would block counts as not loaded. Unescaped markup in the
    # names would now run too, and set data-xss.
    probe_page = page.replace(escape_html(CSP), escape_html(CSP + "; script-src 'unsafe-inline'"))
    assert probe_page != page
    probe = written_report.html.with_name("probe.html")
    probe.write_text(probe_page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        result = _run_chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', result.stdout))
    assert found.get("total") == str(FIGURES), result.stderr[-2000:]
    assert found.get("loaded") == str(FIGURES)
    assert found["window-width"] == "1280" and int(found["page-width"]) <= 1280
    assert "xss" not in found


@needs_chromium
def test_chromium_screenshot_of_the_first_screen(written_report, tmp_path):
    screenshot = tmp_path / "first_screen.png"
    result = _run_chromium(tmp_path, f"--screenshot={screenshot}", written_report.html.as_uri())
    assert screenshot.is_file(), result.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 900)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    # Something is drawn (a blank or error page would be one colour), and the verdict's tiles are on it.
    assert pixels.std() > 20


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
