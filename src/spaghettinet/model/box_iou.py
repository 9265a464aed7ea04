"""Intersection over union of box sets, in float64: what matching, coverage and comparisons of detections use.

The NMS mirror in ``model/postprocess.py`` keeps its own float32 IoU with the op's epsilon on purpose: it must
round as the exported post-processing op does, not as exact arithmetic would.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every box in ``boxes_a`` with every box in ``boxes_b``.

    Args:
        boxes_a: ``[A, 4]`` yxyx boxes (any array-like; an empty list is no boxes).
        boxes_b: ``[B, 4]`` yxyx boxes.

    Returns:
        float64 ``[A, B]``; 0 where the union is empty. Inverted extents count as empty boxes.

    Example:
        >>> iou_matrix([[0, 0, 1, 1]], [[0, 0, 1, 0.5]])
        array([[0.5]])
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    inter_h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    inter_w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = inter_h * inter_w
    area_a = np.clip(a[..., 2] - a[..., 0], 0.0, None) * np.clip(a[..., 3] - a[..., 1], 0.0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0.0, None) * np.clip(b[..., 3] - b[..., 1], 0.0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
