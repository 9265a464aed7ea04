"""Anchor coverage per class for a config's training data (issue 4 item 6), as ``spaghettinet config`` reports it.

A ground-truth box no anchor overlaps at IoU >= the matcher threshold is learnt only through the force-match, one
anchor at a time; a class made mostly of such boxes (small objects at a small input size) is hardly learnt at all.
The IoU computation is :mod:`spaghettinet.evaluation.anchor_coverage`'s; this module gathers the boxes, builds the
config's anchors and words the advice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .settings import PipelineConfig

# Below this share a class loses more than one box in ten to the force-match alone; a larger input helps.
POOR_COVERAGE = 0.9
# Input sizes to suggest: multiples of 32 keep every SpaghettiNet feature map aligned (spec §1.6).
SUGGESTED_INPUT_SIZES = (384, 448, 512, 640)


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


def class_anchor_coverage(cfg: PipelineConfig) -> CoverageReport | None:
    """Compute the anchor coverage per class of ``cfg``'s training records at ``cfg``'s input size.

    Args:
        cfg: settings with ``train_input`` paths (resolved against ``cfg.path``'s folder) and a label map.

    Returns:
        The report, or None when this build has no ``evaluation.anchor_coverage`` module.

    Raises:
        DataError: the records or the label map cannot be read.
    """
    try:
        from spaghettinet.evaluation import anchor_coverage
    except ImportError:
        return None
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.data.tfrecord import read_examples
    from spaghettinet.model.anchors import feature_map_sizes, generate_ssd_anchors

    model = cfg.model

    def covered_at(size: tuple[int, int], boxes_yxyx: np.ndarray) -> np.ndarray:
        anchors = generate_ssd_anchors(
            feature_map_sizes(size),
            size,
            min_scale=model.min_scale,
            max_scale=model.max_scale,
            aspect_ratios=model.aspect_ratios,
            interpolated_scale_aspect_ratio=model.interpolated_scale_aspect_ratio,
            reduce_boxes_in_lowest_layer=model.reduce_boxes_in_lowest_layer,
        )
        return np.asarray(
            anchor_coverage.boxes_covered(boxes_yxyx, anchors, iou_threshold=model.matched_threshold), bool
        )

    paths = [str(cfg.resolve_path(p)) for p in cfg.train_input.input_paths]
    boxes, classes = [], []
    for example in read_examples(paths):
        boxes.append(example.boxes)
        classes.append(example.classes)
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    all_classes = np.concatenate(classes) if classes else np.zeros((0,), np.int64)
    covered = covered_at(model.input_size, all_boxes)
    names = read_label_map(cfg.resolve_path(cfg.train_input.label_map_path)).names
    report = CoverageReport()
    for class_id in sorted({int(c) for c in all_classes}):
        mask = all_classes == class_id
        name = names[class_id - 1] if 0 < class_id <= len(names) else f"class_{class_id}"
        report.rows.append(ClassCoverage(class_id, name, int(mask.sum()), float(covered[mask].mean())))
    poor = [row for row in report.rows if row.coverage < POOR_COVERAGE]
    if poor:
        report.suggestion = _suggest(poor, all_boxes, all_classes, covered_at, model.input_size, model)
    return report


def _suggest(poor, boxes, classes, covered_at, size, model) -> str:
    """Advise the smallest larger input size that covers every poor class, checked by recomputing coverage.

    Anchor sizes are fractions of the image, so a larger input only helps where the anchor grid is too coarse;
    boxes smaller than the smallest anchor (0.1 of the image, spec §1.8) need the photos cropped or tiled.
    """
    height, width = size
    mask = np.isin(classes, [row.class_id for row in poor])
    advice = None
    for side in SUGGESTED_INPUT_SIZES:
        if side <= max(height, width):
            continue
        shares = covered_at((side, side), boxes[mask])
        by_class = [shares[classes[mask] == row.class_id].mean() for row in poor]
        if min(by_class) >= POOR_COVERAGE:
            advice = f"--input-size {side} covers them all (at a higher latency)"
            break
    if advice is None:
        advice = (
            "a larger input size does not fix it (the boxes are smaller than the smallest anchor, 10 % of the "
            "image): crop or tile the photos so the objects are larger"
        )
    names = ", ".join(f"{row.name} ({row.coverage:.0%})" for row in poor)
    return (
        f"poorly covered classes: {names} have fewer than {POOR_COVERAGE:.0%} of their boxes with an anchor at "
        f"IoU >= {model.matched_threshold} at {height}x{width}; {advice}"
    )
