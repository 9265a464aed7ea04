"""Anchor coverage: how many ground-truth boxes some anchor matches at IoU ≥ 0.5 (NumPy, no TensorFlow).

A box no anchor reaches at IoU 0.5 is learnt only through the matcher's force match (one anchor,
``force_match_for_each_row``), so a class whose boxes are mostly uncovered trains poorly. The ``config``
command prints this per class and, when a class is poorly covered, which input size would cover it better.

IoU is the same in normalized and pixel coordinates (both axes scale areas alike), so boxes stay normalized. Anchor
scales are fractions of the image, so a larger input size only makes the grids finer: it helps boxes that fall
between anchor centres (the coarse 3×3 and 5×5 maps), not boxes smaller than the smallest anchor (0.1 of the
shorter side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spaghettinet.model.anchors import feature_map_sizes, generate_ssd_anchors
from spaghettinet.model.box_iou import iou_matrix

#: Rows of ground truth compared with all anchors at once (keeps the IoU matrix to a few MB).
_CHUNK = 1024

DEFAULT_CANDIDATE_SIZES = (320, 384, 448, 512, 640)


@dataclass(frozen=True)
class ClassCoverage:
    """Coverage of one class.

    Attributes:
        class_id: 1-based label-map id.
        num_boxes: ground-truth boxes of the class.
        num_covered: those with an anchor at IoU ≥ the threshold.

    Example:
        >>> ClassCoverage(1, 4, 3).share
        0.75
    """

    class_id: int
    num_boxes: int
    num_covered: int

    @property
    def share(self) -> float:
        return self.num_covered / self.num_boxes if self.num_boxes else 1.0


def best_anchor_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """The best IoU any anchor reaches with each box.

    Args:
        boxes: ``[M, 4]`` yxyx normalized.
        anchors: ``[N, 4]`` yxyx normalized.

    Returns:
        float64 ``[M]``.

    Example:
        >>> best_anchor_iou(np.array([[0, 0, 0.5, 0.5]]), np.array([[0, 0, 0.5, 1.0], [0.5, 0.5, 1, 1]]))
        array([0.5])
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    best = np.zeros(len(boxes))
    for start in range(0, len(boxes), _CHUNK):
        chunk = boxes[start : start + _CHUNK]
        iou = iou_matrix(chunk, anchors)
        best[start : start + len(chunk)] = iou.max(axis=1) if anchors.size else 0.0
    return best


def anchor_coverage(
    boxes: np.ndarray, classes: np.ndarray, anchors: np.ndarray, iou: float = 0.5
) -> dict[int, ClassCoverage]:
    """Per class, the ground-truth boxes some anchor matches at IoU ≥ ``iou``.

    Args:
        boxes: ``[M, 4]`` yxyx normalized boxes of the whole dataset (or split).
        classes: ``[M]`` 1-based class ids.
        anchors: ``[N, 4]`` anchors for the model's input size.
        iou: the matcher's threshold (0.5 in the reference).

    Returns:
        class id → :class:`ClassCoverage`, for each class present, sorted by id.

    Example:
        >>> anchors = generate_ssd_anchors(feature_map_sizes((320, 320)), (320, 320))
        >>> anchor_coverage(np.array([[0.4, 0.4, 0.6, 0.6]]), np.array([1]), anchors)[1].share
        1.0
    """
    classes = np.asarray(classes).ravel().astype(int)
    covered = best_anchor_iou(boxes, anchors) >= iou
    if len(covered) != len(classes):
        raise ValueError(f"{len(covered)} boxes but {len(classes)} classes")
    return {
        int(c): ClassCoverage(int(c), int((classes == c).sum()), int(covered[classes == c].sum()))
        for c in np.unique(classes)
    }


@dataclass(frozen=True)
class CoverageOption:
    """Coverage at one input size.

    Attributes:
        image_size: ``(height, width)``.
        coverage: class id → :class:`ClassCoverage`.
    """

    image_size: tuple[int, int]
    coverage: dict[int, ClassCoverage]

    @property
    def worst_share(self) -> float:
        return min((c.share for c in self.coverage.values()), default=1.0)


@dataclass(frozen=True)
class CoverageSuggestion:
    """What :func:`suggest_input_size` found.

    Attributes:
        current: coverage at the current size.
        poorly_covered: class ids below ``min_share`` at the current size.
        options: coverage at every larger candidate size, smallest first.
        recommended: the smallest candidate covering every class at ``min_share`` or better; if none does, the
            candidate with the best worst-class share, when it beats the current size; otherwise ``None``.
    """

    current: CoverageOption
    poorly_covered: list[int]
    options: list[CoverageOption]
    recommended: CoverageOption | None


def _candidate_size(candidate: int | tuple[int, int], current: tuple[int, int]) -> tuple[int, int]:
    if isinstance(candidate, tuple):
        return int(candidate[0]), int(candidate[1])
    height, width = current
    # A single number is the longer side; the aspect ratio of the current size is kept.
    longer = max(height, width)
    return max(1, round(candidate * height / longer)), max(1, round(candidate * width / longer))


def suggest_input_size(
    boxes: np.ndarray,
    classes: np.ndarray,
    image_size: tuple[int, int],
    candidate_sizes: Sequence[int | tuple[int, int]] = DEFAULT_CANDIDATE_SIZES,
    min_share: float = 0.9,
    iou: float = 0.5,
) -> CoverageSuggestion:
    """Coverage at the current input size and at larger candidates, and the smallest that covers every class.

    Args:
        boxes: ``[M, 4]`` yxyx normalized ground-truth boxes.
        classes: ``[M]`` 1-based class ids.
        image_size: current model input ``(height, width)``.
        candidate_sizes: sizes to try (an int is the longer side, keeping the aspect ratio); only those larger
            than the current size are tried.
        min_share: a class is well covered from this share on.
        iou: matcher threshold.

    Returns:
        :class:`CoverageSuggestion`.

    Example:
        >>> s = suggest_input_size(np.array([[0.4, 0.4, 0.6, 0.6]]), np.array([1]), (320, 320))
        >>> s.poorly_covered, s.recommended
        ([], None)
    """
    current_size = (int(image_size[0]), int(image_size[1]))

    def option(size: tuple[int, int]) -> CoverageOption:
        anchors = generate_ssd_anchors(feature_map_sizes(size), size)
        return CoverageOption(size, anchor_coverage(boxes, classes, anchors, iou))

    current = option(current_size)
    poorly = [c for c, cov in current.coverage.items() if cov.share < min_share]
    if not poorly:
        return CoverageSuggestion(current, [], [], None)
    sizes = sorted(
        {_candidate_size(c, current_size) for c in candidate_sizes} - {current_size},
        key=lambda s: s[0] * s[1],
    )
    options = [option(s) for s in sizes if s[0] * s[1] > current_size[0] * current_size[1]]
    recommended = next((o for o in options if o.worst_share >= min_share), None)
    if recommended is None and options:
        best = max(options, key=lambda o: o.worst_share)
        recommended = best if best.worst_share > current.worst_share else None
    return CoverageSuggestion(current, poorly, options, recommended)
