"""The shipped model's detections on the whole test split: for the confusion matrix, the worst test images and the
verdict's AP.

The export stage scores its ``.tflite`` files on the first test images only and keeps no detections; the report
needs them all. :func:`detect_test_split` runs one ``.tflite`` (int8 when exported: what ships) over the test
records with LiteRT, as an app would (the export's own post-processing op and score threshold), and keeps:

* every image's detections and ground truth, without pixels (a few KB per image);
* COCO scores over all of them (:mod:`spaghettinet.coco_metrics`);
* thumbnails of the images with the most errors (missed objects + confused objects + false detections, matched as
  :mod:`spaghettinet.evaluation.confusion` does), for the report's gallery.

Needs TensorFlow (to read the records) and LiteRT; about the model's latency plus a JPEG decode per image.

Example:
    >>> results = detect_test_split("exported/model_int8.tflite", "training/test.record",
    ...                             ["ball", "block"], score_threshold=0.3)  # doctest: +SKIP
    >>> results.scores.metrics["AP50"]  # doctest: +SKIP
    0.86
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .confusion import ConfusionMatrix, confusion_matrix, match_image
from .report_inputs import COCO_METRIC_NAMES, ModelScores, PredictedPicture

#: Test images run at most; the figures then say how many of how many were used.
MAX_TEST_IMAGES = 2000
#: Images in the gallery of worst test images.
WORST_PICTURES = 8
#: The first test images shown with their detections (the report's sample pictures).
SAMPLE_PICTURES = 8
#: Longest side of a gallery thumbnail (the report's grid cell).
THUMBNAIL_PIXELS = 320


@dataclass
class ImageResult:
    """One test image's ground truth and detections (boxes yxyx normalized, classes 0-based).

    Attributes:
        name: the image's file name (untrusted text).
        width / height: its size in pixels.
        true_boxes / true_classes: ``[M, 4]`` and ``[M]``.
        boxes / classes / scores: ``[K, 4]``, ``[K]``, ``[K]``: the model's detections, boxes clipped to the image.
    """

    name: str
    width: int
    height: int
    true_boxes: np.ndarray
    true_classes: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass
class SplitDetections:
    """What :func:`detect_test_split` found.

    Attributes:
        model: the ``.tflite`` file's name.
        score_threshold: detections below it are ignored (the export's threshold).
        images: one :class:`ImageResult` per test image run.
        total_images: test images in the records (more than ``len(images)`` when :data:`MAX_TEST_IMAGES` cut).
        scores: COCO scores over ``images``.
        worst: the images with the most errors, worst first, as thumbnails.
        samples: the first test images with their detections, full size.
        class_names: 0-based class names.
        precision_recall: class name → (recall, precision) at IoU 0.5 over ``images`` (classes with objects).
    """

    model: str
    score_threshold: float
    images: list[ImageResult] = field(default_factory=list)
    total_images: int = 0
    scores: ModelScores | None = None
    worst: list[PredictedPicture] = field(default_factory=list)
    samples: list[PredictedPicture] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    precision_recall: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def confusion(self) -> ConfusionMatrix:
        """The confusion matrix over all images, at :attr:`score_threshold` and IoU 0.5."""
        return confusion_matrix(
            (
                match_image(i.true_boxes, i.true_classes, i.boxes, i.classes, i.scores, self.score_threshold)
                for i in self.images
            ),
            self.class_names,
            score_threshold=self.score_threshold,
        )


def _picture(image: ImageResult, pixels: Image.Image) -> PredictedPicture:
    return PredictedPicture(
        name=image.name,
        image=pixels,
        boxes=image.boxes,
        classes=image.classes,
        scores=image.scores,
        true_boxes=image.true_boxes,
        true_classes=image.true_classes,
    )


def worst_images(results: Iterable[tuple[int, int]], count: int) -> list[int]:
    """Positions of the ``count`` items with the most errors (ties: more missed objects, then the earlier one);
    items without errors are never chosen.

    Args:
        results: ``(errors, missed)`` per image, in order.
        count: how many to keep.

    Returns:
        Positions, worst first.

    Example:
        >>> worst_images([(0, 0), (2, 1), (2, 2), (1, 0)], 2)
        [2, 1]
    """
    ranked = [(-errors, -missed, position) for position, (errors, missed) in enumerate(results) if errors > 0]
    return [position for _, _, position in heapq.nsmallest(count, ranked)]


def detect_test_split(
    model: str | Path,
    records: str | Path | Sequence[str | Path],
    class_names: Sequence[str],
    score_threshold: float,
    max_images: int = MAX_TEST_IMAGES,
    worst: int = WORST_PICTURES,
    samples: int = SAMPLE_PICTURES,
) -> SplitDetections:
    """Run a ``.tflite`` detector over test records and score it (see the module docstring).

    Args:
        model: the exported ``.tflite`` (with the fused post-processing op).
        records: the test TFRecord file(s) or a glob.
        class_names: 0-based class names (the label map's order).
        score_threshold: the export's score threshold (``export_report.json`` ``postprocess.score_threshold``).
        max_images: run at most this many images.
        worst: thumbnails to keep of the images with the most errors.
        samples: the first images kept whole with their detections.

    Returns:
        :class:`SplitDetections`.

    Raises:
        DataError: the model or the records cannot be read.
    """
    from spaghettinet.coco_metrics import ImageDetections, ImageGroundTruth, coco_metrics
    from spaghettinet.data.tfrecord import read_examples
    from spaghettinet.deploy.runtime import TfliteDetector, resize_for_model

    detector = TfliteDetector(model)
    results = SplitDetections(
        model=Path(model).name, score_threshold=float(score_threshold), class_names=list(class_names)
    )
    errors = []
    for example in read_examples(records):
        results.total_images += 1
        if len(results.images) >= max_images:
            continue
        pixels = example.decode_image()
        found = detector.detect(resize_for_model(pixels, detector.input_size))
        image = ImageResult(
            name=example.filename,
            width=int(example.width),
            height=int(example.height),
            true_boxes=np.asarray(example.boxes, np.float32).reshape(-1, 4),
            true_classes=np.asarray(example.classes, np.int64) - 1,  # records are 1-based
            boxes=np.clip(found.boxes, 0.0, 1.0),
            classes=np.asarray(found.classes, np.int64),
            scores=np.asarray(found.scores, np.float32),
        )
        results.images.append(image)
        if len(results.samples) < samples:
            results.samples.append(_picture(image, Image.fromarray(pixels)))
        match = match_image(
            image.true_boxes, image.true_classes, image.boxes, image.classes, image.scores, score_threshold
        )
        errors.append((match.errors, match.missed))
    # A second read decodes only the chosen images again: no pixels are held for the whole split.
    chosen = worst_images(errors, worst)
    thumbnails: dict[int, Image.Image] = {}
    if chosen:
        for position, example in enumerate(read_examples(records)):
            if position > max(chosen):
                break
            if position in chosen:
                thumbnail = Image.fromarray(example.decode_image())
                thumbnail.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
                thumbnails[position] = thumbnail
    for position in chosen:
        results.worst.append(_picture(results.images[position], thumbnails[position]))
    if results.images:
        coco = coco_metrics(
            [
                ImageGroundTruth(n + 1, i.width, i.height, i.true_boxes, i.true_classes + 1, i.name)
                for n, i in enumerate(results.images)
            ],
            [ImageDetections(n + 1, i.boxes, i.scores, i.classes) for n, i in enumerate(results.images)],
            list(class_names),
        )
        metrics = {
            name: float(value)
            for name, value in coco.stats.items()
            if name in COCO_METRIC_NAMES and value is not None
        }
        results.scores = ModelScores(
            label=f"{results.model}, all {len(results.images)} test images",
            metrics=metrics,
            per_class_ap={k: v for k, v in coco.per_class_ap.items() if v is not None},
            per_class_ap50={k: v for k, v in coco.per_class_ap50.items() if v is not None},
        )
        results.precision_recall = {
            name: (curve["recall"], curve["precision"]) for name, curve in coco.pr_curves.items() if curve
        }
    return results
