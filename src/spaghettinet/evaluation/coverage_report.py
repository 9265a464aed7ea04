"""Anchor coverage per class for a config's training data, as ``spaghettinet config`` reports it.

A ground-truth box no anchor overlaps at IoU >= the matcher threshold is learnt only through the force-match, one
anchor at a time; a class made mostly of such boxes (small objects at a small input size) is hardly learnt at all.
The computation is :mod:`spaghettinet.evaluation.anchor_coverage`'s; this module gathers the boxes and names,
and words the advice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spaghettinet.pipeline_config.settings import PipelineConfig

# Below this share a class loses more than one box in ten to the force-match alone; a larger input helps.
POOR_COVERAGE = 0.9


@dataclass
class ClassCoverage:
    """Coverage of one class: ``coverage`` is the share of its ``num_boxes`` training boxes with a good anchor."""

    class_id: int
    name: str
    num_boxes: int
    coverage: float


@dataclass
class CoverageReport:
    """Per-class coverage rows (classes with boxes, by id) and a suggestion when some class is poorly covered."""

    rows: list[ClassCoverage] = field(default_factory=list)
    suggestion: str | None = None


def class_anchor_coverage(cfg: PipelineConfig) -> CoverageReport:
    """Compute the anchor coverage per class of ``cfg``'s training records at ``cfg``'s input size.

    Args:
        cfg: settings with ``train_input`` paths (resolved against ``cfg.path``'s folder) and a label map.

    Returns:
        The report, with a suggestion when a class is below :data:`POOR_COVERAGE`.

    Raises:
        DataError: the records or the label map cannot be read.
    """
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.data.tfrecord import read_examples

    model = cfg.model
    paths = [str(cfg.resolve_path(p)) for p in cfg.train_input.input_paths]
    boxes, classes = [], []
    for example in read_examples(paths):
        boxes.append(example.boxes)
        classes.append(example.classes)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    all_classes = np.concatenate(classes) if classes else np.zeros((0,), np.int64)
    names = read_label_map(cfg.resolve_path(cfg.train_input.label_map_path)).names
    return anchor_coverage_report(all_boxes, all_classes, names, model.input_size, model.matched_threshold)


def anchor_coverage_report(
    boxes: np.ndarray,
    class_ids: np.ndarray,
    names: list[str],
    input_size: tuple[int, int],
    matched_threshold: float = 0.5,
) -> CoverageReport:
    """Per-class anchor coverage of ground-truth boxes with the reference anchors at ``input_size``, and advice.

    Args:
        boxes: ``[M, 4]`` ground-truth boxes, ymin, xmin, ymax, xmax normalized by the image size.
        class_ids: ``[M]`` 1-based class ids (index into ``names`` + 1).
        names: class names in id order.
        input_size: ``(height, width)`` of the model input.
        matched_threshold: the matcher's IoU threshold (0.5 in the reference config).

    Returns:
        The rows (classes with boxes, by id) and, when some class is below :data:`POOR_COVERAGE`, a suggestion.

    Example:
        >>> report = anchor_coverage_report(np.array([[0.2, 0.2, 0.8, 0.8]]), np.array([1]), ["cup"], (320, 320))
        >>> report.rows[0].coverage
        1.0
    """
    from .anchor_coverage import suggest_input_size

    # The reference anchors at the given size and at larger candidates.
    found = suggest_input_size(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(class_ids),
        tuple(input_size),
        min_share=POOR_COVERAGE,
        iou=matched_threshold,
    )
    report = CoverageReport()
    for class_id, coverage in found.current.coverage.items():
        name = names[class_id - 1] if 0 < class_id <= len(names) else f"class_{class_id}"
        report.rows.append(ClassCoverage(class_id, name, coverage.num_boxes, coverage.share))
    if found.poorly_covered:
        height, width = input_size
        poor = ", ".join(
            f"{row.name} ({row.coverage:.0%})" for row in report.rows if row.class_id in found.poorly_covered
        )
        if found.recommended is not None:
            size = found.recommended.image_size
            advice = (
                f"--input-size {max(size)} raises the worst class to {found.recommended.worst_share:.0%} "
                "(at a higher latency)"
            )
        else:
            advice = (
                "a larger input size does not help (the boxes are smaller than the smallest anchor, 10 % of the "
                "image): crop or tile the photos so the objects are larger"
            )
        report.suggestion = (
            f"poorly covered: {poor} of the boxes have an anchor at IoU >= {matched_threshold} at "
            f"{height}x{width}; {advice}"
        )
    return report
