"""Which objects a detector finds, misses or takes for another class: per-image matching and the confusion matrix.

Detections at or above a score threshold (the export's, so the figures are those an app sees) are matched to the
ground truth at IoU ≥ 0.5, one detection per object. Matching is greedy by IoU, first among pairs of the same class
and then among the rest, so an object with a right and a wrong detection on it counts as found (plus one false
detection) rather than confused. What stays unmatched is a *missed* object (its row's "background" column) or a
*false* detection (the "background" row).

Everything here is NumPy over normalized ``[ymin, xmin, ymax, xmax]`` boxes and **0-based** classes, as the TFLite
post-processing outputs them; IoU is the same in normalized and pixel coordinates.

Example:
    >>> match = match_image([[0, 0, 0.5, 0.5]], [1], [[0, 0, 0.5, 0.5], [0.6, 0.6, 1, 1]], [1, 0], [0.9, 0.8])
    >>> match.correct, match.missed, match.false_detections
    (1, 0, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from spaghettinet.model.box_iou import iou_matrix

#: IoU from which a detection counts as finding an object (COCO's AP50 and Ultralytics' confusion matrix).
MATCH_IOU = 0.5


def _boxes(values) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.float64)
    return array.reshape(-1, 4) if array.size else np.zeros((0, 4))


def _vector(values, dtype) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=dtype).reshape(-1)


@dataclass(frozen=True)
class ImageMatch:
    """How the detections of one image meet its ground truth.

    Attributes:
        true_classes: ``[M]`` 0-based classes of the objects.
        detection_classes: ``[K]`` 0-based classes of the detections kept (score ≥ threshold).
        detection_indices: ``[K]`` positions of the kept detections in the input arrays.
        object_match: ``[M]`` the kept detection (0..K-1) matched to each object, -1 when missed.
        detection_match: ``[K]`` the object matched to each kept detection, -1 for a false detection.
    """

    true_classes: np.ndarray
    detection_classes: np.ndarray
    detection_indices: np.ndarray
    object_match: np.ndarray
    detection_match: np.ndarray

    @property
    def correct(self) -> int:
        """Objects found with their own class."""
        found = self.object_match >= 0
        return int(np.sum(self.detection_classes[self.object_match[found]] == self.true_classes[found]))

    @property
    def confused(self) -> int:
        """Objects found at the right place but with another class."""
        return int(np.sum(self.object_match >= 0)) - self.correct

    @property
    def missed(self) -> int:
        """Objects no detection found."""
        return int(np.sum(self.object_match < 0))

    @property
    def false_detections(self) -> int:
        """Detections on no object."""
        return int(np.sum(self.detection_match < 0))

    @property
    def errors(self) -> int:
        """Missed objects + confused objects + false detections: how wrong the image is."""
        return self.missed + self.confused + self.false_detections


def match_image(
    true_boxes,
    true_classes,
    boxes,
    classes,
    scores,
    score_threshold: float = 0.0,
    iou_threshold: float = MATCH_IOU,
) -> ImageMatch:
    """Match one image's detections to its objects (see the module docstring for the rule).

    Args:
        true_boxes: ``[M, 4]`` objects, yxyx normalized.
        true_classes: ``[M]`` 0-based classes.
        boxes: ``[N, 4]`` detections, yxyx normalized.
        classes: ``[N]`` 0-based classes.
        scores: ``[N]`` scores; detections below ``score_threshold`` (or not finite) are left out.
        score_threshold: the lowest score that counts as a detection.
        iou_threshold: the lowest IoU at which a detection finds an object.

    Returns:
        :class:`ImageMatch`.

    Example:
        >>> match_image([[0, 0, 0.5, 0.5]], [0], [[0, 0, 0.5, 0.5]], [2], [0.9]).confused
        1
    """
    truth = _boxes(true_boxes)
    truth_classes = _vector(true_classes, np.int64)
    found = _boxes(boxes)
    found_classes = _vector(classes, np.int64)
    found_scores = _vector(scores, np.float64)
    if not (len(found) == len(found_classes) == len(found_scores)):
        raise ValueError(
            f"boxes, classes and scores differ in length: {len(found)}, {len(found_classes)}, {len(found_scores)}"
        )
    if len(truth) != len(truth_classes):
        raise ValueError(f"true_boxes and true_classes differ in length: {len(truth)}, {len(truth_classes)}")
    kept = np.flatnonzero(np.isfinite(found_scores) & (found_scores >= score_threshold))
    # Highest score first, so ties in IoU go to the more confident detection.
    kept = kept[np.argsort(-found_scores[kept], kind="stable")]
    kept_classes = found_classes[kept]
    object_match = np.full(len(truth), -1, dtype=np.int64)
    detection_match = np.full(len(kept), -1, dtype=np.int64)
    overlap = iou_matrix(truth, found[kept])
    same_class = truth_classes[:, None] == kept_classes[None, :]
    for allowed in (same_class, np.ones_like(same_class)):
        objects, detections = np.nonzero((overlap >= iou_threshold) & allowed)
        order = np.argsort(-overlap[objects, detections], kind="stable")
        for obj, det in zip(objects[order], detections[order], strict=True):
            if object_match[obj] < 0 and detection_match[det] < 0:
                object_match[obj] = det
                detection_match[det] = obj
    return ImageMatch(truth_classes, kept_classes, kept, object_match, detection_match)


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of true class (rows) against predicted class (columns), the last row and column being background.

    ``counts[t, p]`` objects of class ``t`` were detected as ``p``; ``counts[t, C]`` objects of class ``t`` were
    missed; ``counts[C, p]`` detections of class ``p`` were on no object.

    Attributes:
        counts: int64 ``[C + 1, C + 1]``.
        class_names: the ``C`` class names.
        score_threshold: the detections' score threshold.
        iou_threshold: the matching IoU.
        images: images counted.
    """

    counts: np.ndarray
    class_names: tuple[str, ...]
    score_threshold: float
    iou_threshold: float
    images: int

    @property
    def labels(self) -> list[str]:
        """Row and column names: the classes, then ``background``."""
        return [*self.class_names, "background"]

    def recall(self, class_index: int) -> float | None:
        """Share of class ``class_index``'s objects detected with their own class (None without objects)."""
        total = int(self.counts[class_index].sum())
        return self.counts[class_index, class_index] / total if total else None

    def most_confused_with(self, class_index: int) -> tuple[str, int] | None:
        """The other class that objects of ``class_index`` are most often detected as, with the count (None if never).

        Example:
            >>> m = confusion_matrix([match_image([[0, 0, 1, 1]], [0], [[0, 0, 1, 1]], [1], [1.0])], ["a", "b"])
            >>> m.most_confused_with(0)
            ('b', 1)
        """
        row = self.counts[class_index, : len(self.class_names)].copy()
        row[class_index] = 0
        if not row.any():
            return None
        other = int(np.argmax(row))
        return self.class_names[other], int(row[other])


def confusion_matrix(
    matches: Iterable[ImageMatch],
    class_names: Sequence[str],
    score_threshold: float = 0.0,
    iou_threshold: float = MATCH_IOU,
) -> ConfusionMatrix:
    """Add up image matches into a :class:`ConfusionMatrix`.

    Args:
        matches: from :func:`match_image`, one per image.
        class_names: the classes (0-based); a class index outside them raises ``ValueError``.
        score_threshold / iou_threshold: what the matches were made with (recorded for the captions).

    Returns:
        The matrix.

    Example:
        >>> m = confusion_matrix([match_image([[0, 0, 1, 1]], [0], [], [], [])], ["a"])
        >>> m.counts.tolist()
        [[0, 1], [0, 0]]
    """
    size = len(class_names)
    counts = np.zeros((size + 1, size + 1), dtype=np.int64)
    images = 0
    for match in matches:
        images += 1
        for classes in (match.true_classes, match.detection_classes):
            outside = classes[(classes < 0) | (classes >= size)]
            if outside.size:
                raise ValueError(f"class index {int(outside[0])} is outside 0..{size - 1}")
        for obj, det in enumerate(match.object_match):
            predicted = match.detection_classes[det] if det >= 0 else size
            counts[match.true_classes[obj], predicted] += 1
        for det in np.flatnonzero(match.detection_match < 0):
            counts[size, match.detection_classes[det]] += 1
    return ConfusionMatrix(counts, tuple(str(n) for n in class_names), score_threshold, iou_threshold, images)
