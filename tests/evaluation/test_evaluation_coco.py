"""COCO metrics on hand-made cases whose AP follows from COCO's definition (101-point interpolated precision)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from spaghettinet.coco_metrics import (
    EvalReport,
    ImageDetections,
    ImageGroundTruth,
    coco_detections,
    coco_metrics,
    write_eval_json,
)
from spaghettinet.errors import DataError

NAMES = ["resistor", "capacitor"]


def _gt(image_id, boxes, classes, width=640, height=480):
    return ImageGroundTruth(
        image_id, width, height, np.array(boxes, float).reshape(-1, 4), np.array(classes, int)
    )


def _det(image_id, boxes, scores, classes):
    return ImageDetections(
        image_id, np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(classes)
    )


BOX_A = [0.1, 0.1, 0.5, 0.4]
BOX_B = [0.5, 0.5, 0.9, 0.95]
BOX_C = [0.0, 0.6, 0.3, 0.9]


def test_perfect_detections_score_one():
    groundtruth = [_gt(1, [BOX_A, BOX_B], [1, 2]), _gt(2, [BOX_C], [1])]
    detections = [_det(1, [BOX_B, BOX_A], [0.8, 0.9], [1, 0]), _det(2, [BOX_C], [0.7], [0])]
    result = coco_metrics(groundtruth, detections, NAMES)
    assert result.ap == pytest.approx(1.0)
    assert result.ap50 == pytest.approx(1.0)
    assert result.ap75 == pytest.approx(1.0)
    assert result.ar100 == pytest.approx(1.0)
    assert result.per_class_ap == {"resistor": pytest.approx(1.0), "capacitor": pytest.approx(1.0)}
    # All boxes are larger than 96² pixels: COCO has no small objects to score.
    assert result.stats["AP_small"] is None and result.stats["AP_large"] == pytest.approx(1.0)
    assert result.num_images == 2 and result.num_detections == 3


def test_one_of_two_objects_missed():
    # Precision 1 up to recall 0.5, nothing beyond: 51 of COCO's 101 recall points (0, 0.01, ..., 0.5) score 1.
    groundtruth = [_gt(1, [BOX_A, BOX_B], [1, 1])]
    detections = [_det(1, [BOX_A], [0.9], [0])]
    result = coco_metrics(groundtruth, detections, ["resistor"])
    assert result.ap50 == pytest.approx(51 / 101)
    assert result.ap == pytest.approx(51 / 101)
    assert result.ar100 == pytest.approx(0.5)
    curve = result.pr_curves["resistor"]
    assert (
        len(curve["recall"]) == 101
        and curve["precision"][50] == pytest.approx(1.0)
        and curve["precision"][51] == 0.0
    )


def test_false_positive_on_image_without_objects_halves_precision():
    # Ranked: a false positive (0.9, empty image) then the true positive (0.5): precision at full recall is 0.5.
    groundtruth = [_gt(1, [BOX_A], [1]), _gt(2, [], [])]
    detections = [_det(1, [BOX_A], [0.5], [0]), _det(2, [BOX_B], [0.9], [0])]
    result = coco_metrics(groundtruth, detections, ["resistor"])
    assert result.ap50 == pytest.approx(0.5)


def test_class_without_ground_truth_is_none_and_left_out_of_the_mean():
    groundtruth = [_gt(1, [BOX_A], [1])]
    detections = [_det(1, [BOX_A, BOX_B], [0.9, 0.8], [0, 1])]
    result = coco_metrics(groundtruth, detections, NAMES)
    assert result.per_class_ap["capacitor"] is None
    assert result.pr_curves["capacitor"] is None
    assert result.ap == pytest.approx(1.0)


def test_no_detections_at_all_and_no_ground_truth_at_all():
    result = coco_metrics([_gt(1, [BOX_A], [1])], [], NAMES)
    assert result.ap == 0.0 and result.per_class_ap["resistor"] == 0.0
    empty = coco_metrics([_gt(1, [], [])], [], NAMES)
    assert empty.ap is None


def test_localization_error_counts_at_iou_75_but_not_50():
    # Shifted so that IoU with the ground truth is 0.6: a hit at 0.5 (and 0.55, 0.6), a miss from 0.65 on.
    gt_box = [0.0, 0.0, 0.5, 0.5]
    shift = 0.125  # overlap 0.375 x 0.5 → IoU = 0.1875 / (0.25 + 0.25 - 0.1875) = 0.6
    result = coco_metrics(
        [_gt(1, [gt_box], [1], 400, 400)], [_det(1, [[0, shift, 0.5, 0.5 + shift]], [0.9], [0])], NAMES
    )
    assert result.ap50 == pytest.approx(1.0)
    assert result.ap75 == pytest.approx(0.0)
    assert result.ap == pytest.approx(3 / 10)


def test_coco_format_and_eval_json(tmp_path):
    groundtruth = [_gt(7, [BOX_A], [1], width=200, height=100)]
    detections = [_det(7, [[0.1, 0.2, 0.5, 0.6]], [0.75], [1])]
    coco = coco_detections(groundtruth, detections)
    assert coco == [{"image_id": 7, "category_id": 2, "bbox": [40.0, 10.0, 80.0, 40.0], "score": 0.75}]
    result = coco_metrics(groundtruth, detections, NAMES)
    path = write_eval_json(tmp_path / "eval.json", EvalReport(result, step=5, detections=coco))
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and saved["detections"] == coco
    assert saved["metrics"]["AP"] == 0.0 and saved["per_class_ap"]["capacitor"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    again = EvalReport.read(path)
    assert again.step == 5 and again.detections == coco
    assert again.result.to_dict() == result.to_dict()


def _saved_eval(tmp_path, change) -> Path:
    result = coco_metrics([_gt(1, [BOX_A], [1])], [_det(1, [BOX_A], [0.9], [0])], NAMES)
    payload = EvalReport(result, step=1).to_dict()
    change(payload)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["metrics"].pop("AP50"), "missing 'AP50'"),
        (lambda p: p["metrics"].update(mAP=0.5), "unknown 'mAP'"),
        (lambda p: p.update(ap=0.5), "unknown 'ap'"),
        (lambda p: p.pop("per_class_ap"), "missing 'per_class_ap'"),
        (lambda p: p["metrics"].update(AP="0.5"), "not a number"),
        (lambda p: p.update(version=99), "format version 99"),
        (lambda p: p.update(step="ten"), "not an integer"),
    ],
)
def test_eval_json_reading_names_the_file_and_the_field(tmp_path, change, message):
    path = _saved_eval(tmp_path, change)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        EvalReport.read(path)
    assert str(path) in str(caught.value)


def test_eval_json_of_the_first_format_still_loads(tmp_path):
    # Files written before the version field: no version, and the first writer put no step, checkpoint or images.
    path = _saved_eval(
        tmp_path, lambda p: [p.pop(key) for key in ("version", "step", "checkpoint", "images")]
    )
    assert EvalReport.read(path).result.ap50 == pytest.approx(1.0)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="image_id 3"):
        coco_detections([_gt(1, [BOX_A], [1])], [_det(3, [BOX_A], [0.9], [0])])
    with pytest.raises(ValueError, match="outside"):
        coco_metrics([_gt(1, [BOX_A], [1])], [_det(1, [BOX_A], [0.9], [5])], NAMES)
