"""Anchor coverage tells users which classes the anchors can match at IoU 0.5, and whether a size would help."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.evaluation.anchor_coverage import anchor_coverage, best_anchor_iou, suggest_input_size
from spaghettinet.model.anchors import spaghettinet_anchors

# 0.134 x 0.083: between the 20x20 and 10x10 anchor centres at 320 (best IoU 0.45), reached at 640 (0.61).
BETWEEN_CENTRES = [0.278, 0.507, 0.412, 0.59]
# A centred 0.2 square: anchors reach IoU ≥ 0.5 with it at 320.
WELL_PLACED = [0.4, 0.4, 0.6, 0.6]
# Smaller than the smallest anchor (0.1): IoU ≤ (0.05/0.1)² = 0.25 at any input size.
TINY = [0.5, 0.5, 0.55, 0.55]


def test_best_iou_by_hand():
    anchors = np.array([[0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]])
    np.testing.assert_allclose(
        best_anchor_iou(np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1, 1]]), anchors), [0.5, 1.0]
    )
    assert best_anchor_iou(np.zeros((0, 4)), anchors).shape == (0,)


def test_per_class_shares():
    anchors = spaghettinet_anchors((320, 320))
    boxes = np.array([WELL_PLACED, TINY, TINY, WELL_PLACED])
    coverage = anchor_coverage(boxes, np.array([1, 2, 2, 2]), anchors)
    assert coverage[1].num_boxes == 1 and coverage[1].share == 1.0
    assert coverage[2].num_boxes == 3 and coverage[2].num_covered == 1
    assert coverage[2].share == pytest.approx(1 / 3)
    assert best_anchor_iou(np.array([TINY]), anchors)[0] == pytest.approx(0.25, abs=1e-6)


def test_suggests_a_larger_size_when_a_finer_grid_helps():
    suggestion = suggest_input_size(np.array([BETWEEN_CENTRES, WELL_PLACED]), np.array([3, 1]), (320, 320))
    assert suggestion.poorly_covered == [3]
    assert suggestion.recommended is not None
    assert suggestion.recommended.worst_share == 1.0
    assert suggestion.recommended.image_size[0] > 320
    assert all(o.image_size[0] > 320 for o in suggestion.options)


def test_no_suggestion_when_no_size_helps_or_all_covered():
    hopeless = suggest_input_size(np.array([TINY]), np.array([1]), (320, 320))
    assert hopeless.poorly_covered == [1] and hopeless.recommended is None
    fine = suggest_input_size(np.array([WELL_PLACED]), np.array([1]), (320, 320))
    assert fine.poorly_covered == [] and fine.recommended is None


def test_non_square_candidates_keep_aspect():
    suggestion = suggest_input_size(
        np.array([BETWEEN_CENTRES]), np.array([1]), (240, 320), candidate_sizes=(640,)
    )
    assert [o.image_size for o in suggestion.options] == [(480, 640)]
