"""Reference SSD post-processing in NumPy: decode, sigmoid, per-class NMS, merge — as the TF1 reference does it.

The zoo config's post-processing runs ``batch_multiclass_non_max_suppression`` (``core/post_processing.py``)
with ``use_static_shapes: true``, which calls ``tf.image.non_max_suppression_padded`` once per class. Its rules,
reproduced here exactly:

* scores are ``sigmoid(logits)``; the background column 0 is dropped, so detection classes are 0-based;
* a box takes part in a class's NMS only if its score is **strictly above** ``score_threshold``;
* candidates are visited by descending score (ties: lower anchor index first); a candidate is suppressed when its
  IoU with an already kept box is **≥** ``iou_threshold``, where ``IoU = inter / (area_a + area_b - inter + 1e-8)``
  computed in float32 on the *unclipped* decoded boxes;
* a kept box whose four coordinates are all ≤ 0 still suppresses others but is not output (the padded NMS marks
  output boxes by a positive coordinate);
* at most ``max_detections_per_class`` per class; all classes are merged (class order, then selection order) and
  sorted by descending score; boxes are clipped to [0, 1]; the best ``max_total_detections`` are kept.

Used by ``evaluate``, and as the float reference for the TFLite ``TFLite_Detection_PostProcess`` op in its
regular (per-class) mode. The op's default mode is class-agnostic; :func:`fast_postprocess` is its twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spaghettinet.model.box_coder import DEFAULT_SCALES, decode

#: The padded NMS's union epsilon (tf.image non_max_suppression_padded ``_bbox_overlap``).
_IOU_EPSILON = np.float32(1e-8)

#: Boxes are suppressed tile by tile, as the padded NMS does; any size gives the same result, this one is fast.
_TILE_SIZE = 512


@dataclass(frozen=True)
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes: float32 ``[K, 4]`` ``[ymin, xmin, ymax, xmax]`` normalized, clipped to [0, 1].
        scores: float32 ``[K]`` sigmoid scores, descending.
        classes: int32 ``[K]`` 0-based foreground class indices (label-map id minus 1).
        anchor_indices: int32 ``[K]`` the anchor (row of the model outputs) each detection came from.
        num: ``K``, the number of detections.

    Example:
        >>> Detections.empty().num
        0
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    anchor_indices: np.ndarray
    num: int

    @classmethod
    def empty(cls) -> Detections:
        """Detections of an image where nothing was found."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            classes=np.zeros((0,), np.int32),
            anchor_indices=np.zeros((0,), np.int32),
            num=0,
        )


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically safe float32 sigmoid (computed in float64, no overflow warnings).

    Args:
        logits: any-shaped array of logits.

    Returns:
        float32 array of probabilities, same shape.

    Example:
        >>> sigmoid(np.array([0.0, 1000.0, -1000.0]))
        array([0.5, 1. , 0. ], dtype=float32)
    """
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32)


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes_a`` with every box in ``boxes_b``, in float32, as the padded NMS computes it.

    Args:
        boxes_a: ``[A, 4]`` yxyx boxes (the suppressing boxes).
        boxes_b: ``[B, 4]`` yxyx boxes.

    Returns:
        float32 ``[A, B]``: ``inter / (area_a + area_b - inter + 1e-8)``.

    Example:
        >>> pairwise_iou(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 1, 0.5]])).round(6)
        array([[0.5]], dtype=float32)
    """
    a = np.asarray(boxes_a, dtype=np.float32)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float32)[None, :, :]
    zero = np.float32(0.0)
    inter_h = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), zero)
    inter_w = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), zero)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter + _IOU_EPSILON)


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    max_output_size: int,
    iou_threshold: float = 0.6,
    score_threshold: float = 1e-8,
) -> np.ndarray:
    """Greedy single-class NMS with the semantics of ``tf.image.non_max_suppression_padded`` (module docstring).

    Args:
        boxes: ``[N, 4]`` float32 yxyx boxes (unclipped).
        scores: ``[N]`` scores.
        max_output_size: most boxes to return.
        iou_threshold: a box is suppressed when its IoU with a kept box is ≥ this.
        score_threshold: only boxes scoring strictly above this take part.

    Returns:
        int64 indices into ``boxes`` of the kept boxes, by descending score.

    Example:
        >>> boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.9], [0, 0, 0.2, 0.2]], np.float32)
        >>> non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), 10, iou_threshold=0.5)
        array([0, 2])
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    candidates = np.flatnonzero(scores > np.float32(score_threshold))
    # Descending score, ties by ascending index (a stable sort on the negated scores).
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    threshold = np.float32(iou_threshold)
    survivors: list[int] = []  # kept boxes, including those not output because no coordinate is positive
    output: list[int] = []
    for start in range(0, len(candidates), _TILE_SIZE):
        if len(output) >= max_output_size:
            break
        tile = candidates[start : start + _TILE_SIZE]
        tile_boxes = boxes[tile]
        suppressed = np.zeros(len(tile), dtype=bool)
        if survivors:
            suppressed |= (pairwise_iou(boxes[survivors], tile_boxes) >= threshold).any(axis=0)
        tile_iou = pairwise_iou(tile_boxes, tile_boxes)
        has_positive_coordinate = (tile_boxes > 0).any(axis=1)
        for position in range(len(tile)):
            if suppressed[position]:
                continue
            survivors.append(int(tile[position]))
            if has_positive_coordinate[position]:
                output.append(int(tile[position]))
                if len(output) >= max_output_size:
                    break
            later = tile_iou[position, position + 1 :] >= threshold
            suppressed[position + 1 :] |= later
    return np.asarray(output, dtype=np.int64)


def _single_image(array: np.ndarray, rank: int, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == rank + 1:
        if array.shape[0] != 1:
            raise ValueError(
                f"{name}: postprocess takes one image; use postprocess_batch for a batch of {array.shape[0]}"
            )
        array = array[0]
    if array.ndim != rank:
        raise ValueError(
            f"{name}: expected rank {rank} (or {rank + 1} with a batch of 1), got shape {array.shape}"
        )
    return array


def _boxes_and_probabilities(
    box_encodings, class_logits, anchors, scales, scores_are_probabilities: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One image's decoded (unclipped) boxes ``[N, 4]`` and class probabilities ``[N, C + 1]``, shapes checked."""
    box_encodings = _single_image(box_encodings, 2, "box_encodings")
    class_logits = _single_image(class_logits, 2, "class_logits")
    anchors = np.asarray(anchors, dtype=np.float32)
    if not (box_encodings.shape[0] == class_logits.shape[0] == anchors.shape[0]):
        raise ValueError(
            f"box_encodings {box_encodings.shape}, class_logits {class_logits.shape} and anchors {anchors.shape} "
            "must have the same number of anchors"
        )
    boxes = decode(np.asarray(box_encodings, dtype=np.float32), anchors, scales)
    probabilities = (
        np.asarray(class_logits, np.float32) if scores_are_probabilities else sigmoid(class_logits)
    )
    return boxes, probabilities


def postprocess(
    box_encodings: np.ndarray,
    class_logits: np.ndarray,
    anchors: np.ndarray,
    score_threshold: float = 1e-8,
    iou_threshold: float = 0.6,
    max_detections_per_class: int = 100,
    max_total_detections: int = 100,
    scales: tuple[float, float, float, float] = DEFAULT_SCALES,
    scores_are_probabilities: bool = False,
) -> Detections:
    """Turn one image's raw SSD outputs into detections, exactly as the reference post-processing does.

    Args:
        box_encodings: ``[N, 4]`` (or ``[1, N, 4]``) raw ``[ty, tx, th, tw]``.
        class_logits: ``[N, C + 1]`` (or ``[1, N, C + 1]``) logits, column 0 = background.
        anchors: ``[N, 4]`` yxyx normalized anchors.
        score_threshold: keep scores strictly above this (reference 1e-8).
        iou_threshold: NMS IoU threshold (reference 0.6).
        max_detections_per_class: per-class cap (reference 100).
        max_total_detections: overall cap (reference 100).
        scales: box coder scales.
        scores_are_probabilities: ``class_logits`` already holds sigmoid scores (skip the sigmoid).

    Returns:
        :class:`Detections`, best first, boxes clipped to [0, 1].

    Example:
        >>> anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52]], np.float32)
        >>> logits = np.array([[0.0, 2.0, -9.0], [0.0, 1.0, -9.0]], np.float32)
        >>> result = postprocess(np.zeros((2, 4), np.float32), logits, anchors, score_threshold=0.01)
        >>> result.num, result.classes.tolist(), result.anchor_indices.tolist()
        (1, [0], [0])
    """
    boxes, probabilities = _boxes_and_probabilities(
        box_encodings, class_logits, anchors, scales, scores_are_probabilities
    )
    scores = probabilities[:, 1:]

    kept_scores, kept_classes, kept_anchors = [], [], []
    for class_index in range(scores.shape[1]):
        selected = non_max_suppression(
            boxes, scores[:, class_index], max_detections_per_class, iou_threshold, score_threshold
        )
        kept_scores.append(scores[selected, class_index])
        kept_classes.append(np.full(len(selected), class_index, dtype=np.int32))
        kept_anchors.append(selected.astype(np.int32))
    if not kept_scores:
        return Detections.empty()
    all_scores = np.concatenate(kept_scores)
    # Merged in class order, then sorted by descending score; ties keep that order (TF's top_k is stable).
    order = np.argsort(-all_scores, kind="stable")[:max_total_detections]
    anchor_indices = np.concatenate(kept_anchors)[order]
    return Detections(
        boxes=np.clip(boxes[anchor_indices], 0.0, 1.0).astype(np.float32),
        scores=all_scores[order].astype(np.float32),
        classes=np.concatenate(kept_classes)[order],
        anchor_indices=anchor_indices,
        num=int(len(order)),
    )


def postprocess_batch(
    box_encodings: np.ndarray, class_logits: np.ndarray, anchors: np.ndarray, **options
) -> list[Detections]:
    """:func:`postprocess` for each image of a batch.

    Args:
        box_encodings: ``[B, N, 4]``.
        class_logits: ``[B, N, C + 1]``.
        anchors: ``[N, 4]``.
        **options: any keyword argument of :func:`postprocess`.

    Returns:
        One :class:`Detections` per image.

    Example:
        >>> anchors = np.array([[0.1, 0.1, 0.5, 0.5]], np.float32)
        >>> [d.num for d in postprocess_batch(np.zeros((2, 1, 4)), np.zeros((2, 1, 3)), anchors)]
        [2, 2]
    """
    box_encodings = np.asarray(box_encodings)
    class_logits = np.asarray(class_logits)
    if box_encodings.ndim != 3 or class_logits.ndim != 3 or box_encodings.shape[0] != class_logits.shape[0]:
        raise ValueError(
            f"expected [B, N, 4] and [B, N, C + 1], got {box_encodings.shape} and {class_logits.shape}"
        )
    return [
        postprocess(box_encodings[i], class_logits[i], anchors, **options)
        for i in range(box_encodings.shape[0])
    ]


def fast_postprocess(
    box_encodings: np.ndarray,
    class_logits: np.ndarray,
    anchors: np.ndarray,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.6,
    max_detections: int = 10,
    scales: tuple[float, float, float, float] = DEFAULT_SCALES,
    scores_are_probabilities: bool = False,
) -> Detections:
    """The exported model's post-processing: ``TFLite_Detection_PostProcess`` with its default fast NMS.

    Unlike the reference's per-class NMS (:func:`postprocess`), the fused op's default mode is class-agnostic, so
    a float ``.tflite`` can only be compared with a Keras model through this twin of its rules:

    * each anchor keeps one class, its best foreground score (the first on ties, as an argmax);
    * anchors whose score is **at least** ``score_threshold`` are candidates, visited by descending score (ties:
      lower anchor first, the kernel sorts stably);
    * a candidate is suppressed when its IoU with a kept box is **strictly above** ``iou_threshold``, the IoU
      computed in float32 on the unclipped decoded boxes, and 0 when either box has no area;
    * selection stops after ``max_detections`` boxes, whatever their class.

    Args:
        box_encodings: ``[N, 4]`` (or ``[1, N, 4]``) raw ``[ty, tx, th, tw]``.
        class_logits: ``[N, C + 1]`` (or ``[1, N, C + 1]``) logits, column 0 = background.
        anchors: ``[N, 4]`` yxyx normalized anchors.
        score_threshold: the op's ``nms_score_threshold``.
        iou_threshold: the op's ``nms_iou_threshold``.
        max_detections: the op's ``max_detections``.
        scales: box coder scales (y, x, h, w).
        scores_are_probabilities: ``class_logits`` already holds sigmoid scores.

    Returns:
        :class:`Detections`, best first, boxes clipped to [0, 1].

    Example:
        >>> anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52]], np.float32)
        >>> logits = np.array([[0.0, 2.0, -9.0], [0.0, -9.0, 1.0]], np.float32)
        >>> result = fast_postprocess(np.zeros((2, 4), np.float32), logits, anchors, score_threshold=0.01)
        >>> result.num, result.classes.tolist(), result.anchor_indices.tolist()
        (1, [0], [0])
    """
    boxes, probabilities = _boxes_and_probabilities(
        box_encodings, class_logits, anchors, scales, scores_are_probabilities
    )
    foreground = probabilities[:, 1:]
    best_classes = foreground.argmax(axis=1).astype(np.int32)
    best_scores = foreground[np.arange(len(foreground)), best_classes]

    candidates = np.flatnonzero(best_scores >= np.float32(score_threshold))
    candidates = candidates[np.argsort(-best_scores[candidates], kind="stable")]
    candidate_boxes = boxes[candidates].astype(np.float32)
    areas = (candidate_boxes[:, 2] - candidate_boxes[:, 0]) * (candidate_boxes[:, 3] - candidate_boxes[:, 1])
    active = np.ones(len(candidates), dtype=bool)
    threshold = np.float32(iou_threshold)
    selected: list[int] = []
    for position in range(len(candidates)):
        if len(selected) >= max_detections:
            break
        if not active[position]:
            continue
        selected.append(position)
        active[position] = False
        later = np.flatnonzero(active[position + 1 :]) + position + 1
        if len(later) == 0 or areas[position] <= 0:
            continue  # a box without area overlaps nothing (IoU 0)
        box = candidate_boxes[position]
        others = candidate_boxes[later]
        zero = np.float32(0.0)
        inter_h = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), zero)
        inter_w = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), zero)
        inter = inter_h * inter_w
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[position] + areas[later] - inter)
        iou = np.where(areas[later] > 0, iou, zero)
        active[later[iou > threshold]] = False
    anchor_indices = candidates[selected].astype(np.int32)
    return Detections(
        boxes=np.clip(boxes[anchor_indices], 0.0, 1.0).astype(np.float32),
        scores=best_scores[anchor_indices].astype(np.float32),
        classes=best_classes[anchor_indices],
        anchor_indices=anchor_indices,
        num=int(len(anchor_indices)),
    )
