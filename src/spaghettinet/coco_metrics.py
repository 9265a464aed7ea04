"""COCO detection metrics (pycocotools) from in-memory ground truth and detections.

The zoo config evaluates with ``metrics_set: "coco_detection_metrics"``. We feed pycocotools in memory:
normalized yxyx boxes become COCO ``[x, y, width, height]`` pixels using each image's size; ``category_id`` is the
1-based label-map id (detections arrive with 0-based classes and get +1). pycocotools' progress prints are
silenced. Classes without ground truth get AP ``None`` (COCO's -1) and are left out of the means, as COCO does.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import check_object, check_version, number_or_none, read_json_file

#: Names of pycocotools' 12 summary numbers (COCOeval.stats), in its order.
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR100_small",
    "AR100_medium",
    "AR100_large",
)


@dataclass(frozen=True)
class ImageGroundTruth:
    """Ground truth of one image.

    Attributes:
        image_id: unique integer id.
        width: image width in pixels.
        height: image height in pixels.
        boxes: ``[M, 4]`` yxyx normalized (``M`` may be 0).
        classes: ``[M]`` 1-based label-map ids.
        file_name: optional, for reports.

    Example:
        >>> gt = ImageGroundTruth(1, 640, 480, np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([1]))
    """

    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray
    file_name: str = ""


@dataclass(frozen=True)
class ImageDetections:
    """Detections of one image (as :class:`spaghettinet.model.postprocess.Detections`, plus the image id).

    Attributes:
        image_id: id of the matching :class:`ImageGroundTruth`.
        boxes: ``[K, 4]`` yxyx normalized.
        scores: ``[K]``.
        classes: ``[K]`` **0-based** class indices.

    Example:
        >>> det = ImageDetections(1, np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([0.9]), np.array([0]))
    """

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_detections(cls, image_id: int, detections) -> ImageDetections:
        """Wrap a :class:`~spaghettinet.model.postprocess.Detections` for image ``image_id``."""
        return cls(image_id, detections.boxes, detections.scores, detections.classes)


@dataclass
class CocoResult:
    """COCO metrics; ``None`` where COCO has no value (-1: no ground truth in that class or size range).

    Attributes:
        stats: the 12 COCO summary numbers by :data:`STAT_NAMES`.
        per_class_ap: class name → AP@[.5:.95] (``None`` when the class has no ground truth).
        per_class_ap50: class name → AP@0.5.
        pr_curves: class name → ``{"recall": [...], "precision": [...]}`` at IoU 0.5, all areas, 100 detections
            (``None`` when the class has no ground truth); COCO's 101 interpolated recall points.
        num_images: images evaluated.
        num_detections: detections evaluated.
    """

    stats: dict[str, float | None]
    per_class_ap: dict[str, float | None]
    per_class_ap50: dict[str, float | None]
    pr_curves: dict[str, dict[str, list[float]] | None] = field(repr=False)
    num_images: int = 0
    num_detections: int = 0

    @property
    def ap(self) -> float | None:
        return self.stats["AP"]

    @property
    def ap50(self) -> float | None:
        return self.stats["AP50"]

    @property
    def ap75(self) -> float | None:
        return self.stats["AP75"]

    @property
    def ar100(self) -> float | None:
        return self.stats["AR100"]

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of everything (the fields :meth:`from_dict` reads back)."""
        return {
            "metrics": dict(self.stats),
            "per_class_ap": dict(self.per_class_ap),
            "per_class_ap50": dict(self.per_class_ap50),
            "pr_curves_iou50": dict(self.pr_curves),
            "num_images": self.num_images,
            "num_detections": self.num_detections,
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str | Path | None = None) -> CocoResult:
        """Read back :meth:`to_dict`'s fields from ``data`` (other keys are the caller's to check).

        Raises:
            DataError: a missing field, a metric name nothing writes, or a value of the wrong type; the message
                names ``source``.
        """
        check_object(data, "the COCO result", RESULT_FIELDS, optional=None, source=source)
        metrics = check_object(data["metrics"], "the COCO metrics", STAT_NAMES, source=source)
        stats = {name: number_or_none(metrics[name], f"metric {name}", source) for name in STAT_NAMES}

        def per_class(key: str) -> dict[str, float | None]:
            table = data[key]
            if not isinstance(table, Mapping):
                raise DataError(f"{key} is not a JSON object", source)
            return {
                str(name): number_or_none(value, f"{key}[{name!r}]", source) for name, value in table.items()
            }

        curves_table = data["pr_curves_iou50"]
        if not isinstance(curves_table, Mapping):
            raise DataError("pr_curves_iou50 is not a JSON object", source)
        curves: dict[str, dict[str, list[float]] | None] = {}
        for name, curve in curves_table.items():
            if curve is not None:
                check_object(
                    curve, f"the precision-recall curve of {name!r}", ("recall", "precision"), source=source
                )
                if not all(isinstance(curve[key], list) for key in ("recall", "precision")):
                    raise DataError(f"the precision-recall curve of {name!r} is not two lists", source)
            curves[str(name)] = curve
        counts = {}
        for key in ("num_images", "num_detections"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"{key} is {value!r}, not a count", source)
            counts[key] = value
        return cls(
            stats=stats,
            per_class_ap=per_class("per_class_ap"),
            per_class_ap50=per_class("per_class_ap50"),
            pr_curves=curves,
            **counts,
        )


#: The fields of :meth:`CocoResult.to_dict`.
RESULT_FIELDS = (
    "metrics",
    "per_class_ap",
    "per_class_ap50",
    "pr_curves_iou50",
    "num_images",
    "num_detections",
)
#: Format version of ``eval.json`` (0: files written before versions; the same fields without ``version``).
EVAL_REPORT_VERSION = 1


@dataclass
class EvalReport:
    """What ``eval.json`` holds: the COCO result of one evaluation, what was evaluated, and every detection.

    Attributes:
        result: the metrics.
        step: the training step evaluated (None when unknown).
        checkpoint: the checkpoint prefix evaluated (None for an in-memory model).
        images: ``{"id", "file_name"}`` per evaluated image.
        detections: the detections in COCO result format (:func:`coco_detections`).

    Example:
        >>> report = EvalReport(result, step=1200, checkpoint="model/ckpt-1200")  # doctest: +SKIP
        >>> EvalReport.from_dict(report.to_dict()).result.ap50 == result.ap50  # doctest: +SKIP
        True
    """

    result: CocoResult
    step: int | None = None
    checkpoint: str | None = None
    images: list[dict] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {
            "version": EVAL_REPORT_VERSION,
            "step": self.step,
            "checkpoint": self.checkpoint,
            **self.result.to_dict(),
            "images": list(self.images),
            "detections": list(self.detections),
        }

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> EvalReport:
        """Read an ``eval.json`` payload.

        Raises:
            DataError: a field missing or unknown, a newer format version, a value of the wrong type; the message
                names ``source``.
        """
        what = Path(source).name if source is not None else "eval.json"
        version = check_version(data, what, EVAL_REPORT_VERSION, source)
        required = (*RESULT_FIELDS, "version", "step", "checkpoint", "images", "detections")
        # Version 0 files carried no version, and those written by the first writer no step, checkpoint or images.
        optional = () if version else ("step", "checkpoint", "images", "detections")
        required = tuple(key for key in required if key not in optional and (version or key != "version"))
        check_object(data, what, required, optional, source)
        step = data.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise DataError(f"{what}: step is {step!r}, not an integer", source)
        checkpoint = data.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise DataError(f"{what}: checkpoint is {checkpoint!r}, not a path", source)
        lists = {key: data.get(key, []) for key in ("images", "detections")}
        for key, value in lists.items():
            if not isinstance(value, list):
                raise DataError(f"{what}: {key} is not a list", source)
        return cls(
            result=CocoResult.from_dict(data, source),
            step=step,
            checkpoint=checkpoint,
            **lists,
        )

    @classmethod
    def read(cls, path: str | Path) -> EvalReport:
        """Read an ``eval.json`` file (see :meth:`from_dict`)."""
        return cls.from_dict(read_json_file(path), path)


def _xywh_pixels(boxes_yxyx: np.ndarray, width: int, height: int) -> np.ndarray:
    boxes = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
    x = boxes[:, 1] * width
    y = boxes[:, 0] * height
    return np.stack([x, y, boxes[:, 3] * width - x, boxes[:, 2] * height - y], axis=1)


def coco_detections(
    groundtruth: Sequence[ImageGroundTruth], detections: Sequence[ImageDetections]
) -> list[dict]:
    """Detections in COCO result format (``image_id``, ``category_id`` 1-based, ``bbox`` xywh pixels, ``score``).

    Args:
        groundtruth: the images (their sizes convert the boxes).
        detections: detections per image.

    Returns:
        A list of COCO result dicts, floats rounded to 4 decimals (pixels) / 6 (scores).

    Example:
        >>> coco_detections([gt], [det])[0]["category_id"]  # doctest: +SKIP
        1
    """
    sizes = {int(g.image_id): (int(g.width), int(g.height)) for g in groundtruth}
    results = []
    for image in detections:
        if int(image.image_id) not in sizes:
            raise ValueError(f"detections for image_id {image.image_id}, which has no ground-truth entry")
        width, height = sizes[int(image.image_id)]
        boxes = _xywh_pixels(image.boxes, width, height)
        for box, score, cls in zip(
            boxes, np.asarray(image.scores).ravel(), np.asarray(image.classes).ravel(), strict=True
        ):
            results.append(
                {
                    "image_id": int(image.image_id),
                    "category_id": int(cls) + 1,
                    "bbox": [round(float(v), 4) for v in box],
                    "score": round(float(score), 6),
                }
            )
    return results


def _coco_groundtruth(groundtruth: Sequence[ImageGroundTruth], class_names: Sequence[str]) -> dict:
    images, annotations = [], []
    seen: set[int] = set()
    for image in groundtruth:
        image_id = int(image.image_id)
        if image_id in seen:
            raise ValueError(f"image_id {image_id} appears twice in the ground truth")
        seen.add(image_id)
        images.append(
            {
                "id": image_id,
                "width": int(image.width),
                "height": int(image.height),
                "file_name": image.file_name,
            }
        )
        classes = np.asarray(image.classes).ravel()
        if len(classes) and (classes.min() < 1 or classes.max() > len(class_names)):
            raise ValueError(
                f"image_id {image_id}: class ids must be 1..{len(class_names)}, got {classes.tolist()}"
            )
        for box, cls in zip(_xywh_pixels(image.boxes, image.width, image.height), classes, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _none_if_missing(value: float) -> float | None:
    return None if value < 0 or math.isnan(value) else float(value)


def coco_metrics(
    groundtruth: Sequence[ImageGroundTruth], detections: Sequence[ImageDetections], class_names: Sequence[str]
) -> CocoResult:
    """COCO box metrics of detections against ground truth, with pycocotools.

    Args:
        groundtruth: one entry per evaluated image (images without objects included).
        detections: detections per image (images may be missing: no detections there).
        class_names: names of classes 1..C, in label-map order.

    Returns:
        :class:`CocoResult`.

    Example:
        >>> result = coco_metrics([gt], [det], ["resistor"])  # doctest: +SKIP
        >>> result.ap50  # doctest: +SKIP
        1.0
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = coco_detections(groundtruth, detections)
    valid_ids = set(range(1, len(class_names) + 1))
    for result in results:
        if result["category_id"] not in valid_ids:
            raise ValueError(
                f"detection class {result['category_id'] - 1} is outside 0..{len(class_names) - 1}"
            )

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = _coco_groundtruth(groundtruth, class_names)
        coco_gt.createIndex()
        # Built by hand rather than loadRes, which fails on an empty detection list.
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": coco_gt.dataset["images"],
            "categories": coco_gt.dataset["categories"],
            "annotations": [
                dict(r, id=i + 1, area=r["bbox"][2] * r["bbox"][3], iscrowd=0) for i, r in enumerate(results)
            ],
        }
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = sorted(int(g.image_id) for g in groundtruth)
        evaluator.params.catIds = sorted(valid_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    stats = {name: _none_if_missing(float(v)) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]; -1 where undefined.
    precision = evaluator.eval["precision"]
    area_all = list(evaluator.params.areaRngLbl).index("all")
    max_dets_100 = list(evaluator.params.maxDets).index(100)
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    recall_points = [float(r) for r in evaluator.params.recThrs]
    per_class_ap, per_class_ap50, pr_curves = {}, {}, {}
    for k, name in enumerate(class_names):
        class_precision = precision[:, :, k, area_all, max_dets_100]
        defined = class_precision[class_precision > -1]
        per_class_ap[name] = float(defined.mean()) if defined.size else None
        curve = class_precision[iou50]
        defined50 = curve[curve > -1]
        per_class_ap50[name] = float(defined50.mean()) if defined50.size else None
        pr_curves[name] = (
            {"recall": recall_points, "precision": [float(p) for p in curve]} if defined50.size else None
        )
    return CocoResult(
        stats=stats,
        per_class_ap=per_class_ap,
        per_class_ap50=per_class_ap50,
        pr_curves=pr_curves,
        num_images=len(groundtruth),
        num_detections=len(results),
    )


def write_eval_json(path: str | Path, report: EvalReport) -> Path:
    """Write an :class:`EvalReport` to ``path`` atomically (``eval.json``).

    Args:
        path: output file.
        report: the result with what was evaluated and the COCO-format detections (:func:`coco_detections`).

    Returns:
        The path written.

    Example:
        >>> write_eval_json("model/eval.json", EvalReport(result, detections=coco_detections(gt, dets)))  # doctest: +SKIP
    """
    return write_text_atomic(path, json.dumps(report.to_dict(), indent=1) + "\n")
