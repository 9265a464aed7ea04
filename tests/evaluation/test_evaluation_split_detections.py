"""The shipped model over the whole test split: every image scored, classes shifted from the records' 1-based ids,
the worst images chosen and drawn from a second read. The model and the records are stand-ins (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from spaghettinet.deploy import runtime
from spaghettinet.evaluation.split_detections import detect_test_split, worst_images


@dataclass
class _Example:
    """What ``read_examples`` yields, as far as the split's detection reads it."""

    filename: str
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray

    def decode_image(self) -> np.ndarray:
        return np.full((self.height, self.width, 3), 100, dtype=np.uint8)


GOOD = [0.1, 0.1, 0.5, 0.5]
EXAMPLES = [
    # found with its class
    _Example("found.jpg", 64, 48, np.array([GOOD]), np.array([1])),
    # missed, and a false detection elsewhere
    _Example("missed.jpg", 64, 48, np.array([GOOD]), np.array([2])),
    # an image without objects and without detections
    _Example("empty.jpg", 64, 48, np.zeros((0, 4)), np.zeros((0,), np.int64)),
]
DETECTIONS = {
    "found.jpg": ([GOOD], [0], [0.9]),
    "missed.jpg": ([[0.6, 0.6, 1.2, 0.9]], [0], [0.8]),  # reaches past the edge: clipped
    "empty.jpg": (np.zeros((0, 4)), [], []),
}


class _Detector:
    """Answers for the image last read (the stand-in records and the detector share ``_Detector.current``)."""

    current = ""

    def __init__(self, model, threads: int = 1):
        self.input_size = (32, 32)

    def detect(self, pixels):
        assert pixels.shape == (32, 32, 3)  # resized to the model's input first
        boxes, classes, scores = DETECTIONS[_Detector.current]
        return runtime.TfliteDetections(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int32),
            np.asarray(scores, np.float32),
        )


def _read_examples(records):
    for example in EXAMPLES:
        _Detector.current = example.filename
        yield example


@pytest.fixture
def stand_ins(monkeypatch):
    from spaghettinet.data import tfrecord

    monkeypatch.setattr(runtime, "TfliteDetector", _Detector)
    monkeypatch.setattr(tfrecord, "read_examples", _read_examples)


def test_every_test_image_is_scored_and_the_worst_kept(stand_ins):
    results = detect_test_split("model_int8.tflite", "test.record", ["cat", "dog"], score_threshold=0.3)
    assert results.model == "model_int8.tflite" and results.total_images == 3 and len(results.images) == 3
    missed = results.images[1]
    assert missed.true_classes.tolist() == [1]  # the record's 1-based dog is 0-based class 1
    np.testing.assert_allclose(missed.boxes, [[0.6, 0.6, 1.0, 0.9]])
    matrix = results.confusion()
    assert matrix.counts.tolist() == [[1, 0, 0], [0, 0, 1], [1, 0, 0]]
    # COCO over the whole split: the cat found, the dog missed.
    assert results.scores.label == "model_int8.tflite, all 3 test images"
    assert results.scores.per_class_ap50 == {"cat": pytest.approx(1.0), "dog": 0.0}
    assert set(results.precision_recall) == {"cat", "dog"}
    # Only the image with errors is in the gallery, with its pixels as a thumbnail.
    assert [picture.name for picture in results.worst] == ["missed.jpg"]
    assert results.worst[0].image.size == (64, 48)


def test_max_images_caps_the_run_but_counts_the_split(stand_ins):
    results = detect_test_split("m.tflite", "test.record", ["cat", "dog"], 0.3, max_images=1, worst=0)
    assert (len(results.images), results.total_images, results.worst) == (1, 3, [])


def test_worst_images_rank_by_errors_then_missed_objects():
    assert worst_images([(0, 0), (2, 1), (2, 2), (1, 0), (3, 0)], 3) == [4, 2, 1]
    assert worst_images([(0, 0)], 5) == []
