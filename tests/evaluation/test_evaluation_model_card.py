"""The model card: what a user needs to ship the model (classes, files with their inputs and outputs, data, training,
accuracy, latency, limits), with class names and paths Markdown-escaped."""

from __future__ import annotations

from spaghettinet.deploy.export_report import ExportReport, Int8Graph
from spaghettinet.deploy.tflite import PostprocessSettings
from spaghettinet.evaluation.document import escape_markdown
from spaghettinet.evaluation.latency import LatencyResult
from spaghettinet.evaluation.model_card import model_card_markdown
from spaghettinet.evaluation.report_inputs import DatasetSummary, ModelScores, ReportInputs, TrainingFacts

HOSTILE_CLASS = "[cat](javascript:alert(1)) <b>"
PATH_LIKE_START = "../../home/me/ckpt-5"


def _inputs() -> ReportInputs:
    names = [HOSTILE_CLASS, "dog"]
    return ReportInputs(
        class_names=names,
        dataset=DatasetSummary(
            images=60,
            objects_per_class={HOSTILE_CLASS: 70, "dog": 12},
            split_images={"train": 48, "test": 12},
            objects_per_split={
                "train": {HOSTILE_CLASS: 60, "dog": 10},
                "test": {HOSTILE_CLASS: 10, "dog": 2},
            },
        ),
        training=TrainingFacts(
            variant="m",
            input_size=(320, 320),
            planned_steps=2000,
            trained_steps=1800,
            batch_size=16,
            optimizer="momentum",
            learning_rate=0.08,
            qat_from_step=200,
            moving_average_decay=None,
            start=f"fine-tuned from {PATH_LIKE_START}",
            from_scratch=False,
        ),
        scores=[
            ModelScores("float TFLite", {"AP": 0.51, "AP50": 0.82}, {HOSTILE_CLASS: 0.6, "dog": 0.4}),
            ModelScores("QAT int8 TFLite", {"AP": 0.5, "AP50": 0.81}, {HOSTILE_CLASS: 0.59, "dog": 0.41}),
        ],
        latency=[
            LatencyResult(
                model="model_int8.tflite",
                threads=1,
                runs=30,
                median_ms=9.5,
                p90_ms=10.0,
                mean_ms=9.6,
                min_ms=9.0,
                size_bytes=4_200_000,
                input_shape=[1, 320, 320, 3],
                input_type="uint8",
                op_counts={"CONV_2D": 40},
                cpu={"model": "Test CPU"},
            )
        ],
        model_sizes={"model_int8.tflite": 4_200_000, "model_float.tflite": 12_800_000},
        export_report=ExportReport(
            checkpoint="ckpt-1800",
            step=1800,
            quantization="qat",
            checkpoint_quantization_aware=True,
            postprocess=PostprocessSettings(
                num_classes=2, max_detections=10, score_threshold=0.3, iou_threshold=0.6
            ),
            postprocess_signature="",
            class_names=tuple(names),
            input_size=(320, 320),
            calibration_images=0,
            calibrated_ranges=(),
            int8=Int8Graph("UINT8", 0.007843137718737125, 128, {}, (), ()),
        ),
    )


def test_the_card_says_what_it_detects_and_how_to_feed_each_file():
    card = model_card_markdown(_inputs())
    assert card.startswith("# Model card: SpaghettiNet-EdgeTPU-M detector, 2 classes, 320×320")
    assert "| 1 | dog |" in card  # class index = position in labels.txt
    assert "uint8 \\[1, 320, 320, 3\\]: raw RGB pixels 0-255" in card
    assert "scale 0.007843137718737125, zero point 128" in card
    assert "float32 \\[1, 320, 320, 3\\]: RGB pixels scaled x × 2/255 − 1" in card
    # The outputs, in the exported op's order.
    order = [
        card.index(f"| {i} | detection\\_{name}") for i, name in enumerate(("boxes", "classes", "scores"))
    ]
    assert order == sorted(order) and "| 3 | num\\_detections |" in card
    assert "(K = 10)" in card


def test_the_card_says_how_it_was_trained_how_good_it_is_and_its_limits():
    card = model_card_markdown(_inputs())
    assert "| steps | 1800 of 2000 planned |" in card
    assert "| quantization-aware training | from step 200 |" in card
    assert "| weight averaging | no |" in card
    assert "| dog | 10 | 2 |" in card  # train and test objects
    assert "| model\\_int8.tflite | 9.50 |" in card
    assert "AP, QAT int8 TFLite" in card
    # Limits: dog has few training objects and few test objects.
    limits = card[card.index("## Limits") :]
    assert "Add photos of dog" in limits and "**What to do:**" in limits


def test_untrusted_names_and_paths_are_escaped():
    card = model_card_markdown(_inputs())
    assert HOSTILE_CLASS not in card and "<b>" not in card
    assert escape_markdown(HOSTILE_CLASS) in card
    assert f"fine-tuned from {escape_markdown(PATH_LIKE_START)}" in card
    # No link and no HTML survives: every bracket of a name is escaped.
    assert "](" not in card.replace("\\](", "")


def test_an_empty_run_still_gives_a_card_that_says_what_is_missing():
    card = model_card_markdown(ReportInputs())
    for phrase in (
        "No label map found",
        "No exported .tflite files",
        "No dataset summary",
        "No evaluation results",
    ):
        assert phrase in card
