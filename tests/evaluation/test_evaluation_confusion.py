"""Matching detections to objects and the confusion matrix: found, confused, missed and false detections land in the
cells a user reads them from."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.evaluation.confusion import confusion_matrix, match_image
from spaghettinet.model.box_iou import iou_matrix

CAT, DOG = 0, 1
LEFT = [0.1, 0.1, 0.5, 0.4]
RIGHT = [0.1, 0.6, 0.5, 0.9]
BOTTOM = [0.6, 0.1, 0.9, 0.9]


def test_iou_matrix_of_normalized_boxes():
    overlap = iou_matrix([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], [[0, 0, 1, 0.5], [2, 2, 3, 3]])
    np.testing.assert_allclose(overlap, [[0.5, 0.0], [0.5, 0.0]])


def test_an_image_with_every_outcome():
    match = match_image(
        true_boxes=[LEFT, RIGHT, BOTTOM],
        true_classes=[CAT, CAT, DOG],
        boxes=[LEFT, RIGHT, [0.0, 0.0, 0.05, 0.05], BOTTOM],
        classes=[CAT, DOG, DOG, DOG],
        scores=[0.9, 0.8, 0.7, 0.1],
        score_threshold=0.3,
    )
    # LEFT found as cat, RIGHT taken for a dog, BOTTOM's detection under the threshold, one dog on nothing.
    assert (match.correct, match.confused, match.missed, match.false_detections) == (1, 1, 1, 1)
    assert match.errors == 3
    matrix = confusion_matrix([match], ["cat", "dog"], score_threshold=0.3)
    assert matrix.counts.tolist() == [
        [1, 1, 0],  # cats: one found as cat, one detected as a dog
        [0, 0, 1],  # the dog was missed
        [0, 1, 0],  # one dog detection on no object
    ]
    assert matrix.labels == ["cat", "dog", "background"]
    assert matrix.most_confused_with(CAT) == ("dog", 1)
    assert matrix.recall(CAT) == pytest.approx(1 / 2)


def test_a_right_class_detection_wins_over_a_closer_wrong_one():
    # Both detections overlap the cat; the dog one overlaps it more, yet the cat is found and the dog is false.
    match = match_image([LEFT], [CAT], [LEFT, [0.12, 0.1, 0.5, 0.4]], [DOG, CAT], [0.9, 0.8])
    assert (match.correct, match.confused, match.false_detections) == (1, 0, 1)


def test_one_detection_finds_one_object_only():
    match = match_image([LEFT, LEFT], [CAT, CAT], [LEFT], [CAT], [0.9])
    assert (match.correct, match.missed) == (1, 1)


def test_below_half_iou_is_a_miss_and_a_false_detection():
    match = match_image([[0, 0, 1, 1]], [CAT], [[0, 0, 1, 0.49]], [CAT], [0.9])
    assert (match.missed, match.false_detections) == (1, 1)


def test_images_without_objects_or_detections():
    empty = match_image(np.zeros((0, 4)), [], np.zeros((0, 4)), [], [])
    assert empty.errors == 0
    matrix = confusion_matrix([empty, match_image([], [], [LEFT], [DOG], [0.5])], ["cat", "dog"])
    assert matrix.images == 2 and matrix.counts[2, DOG] == 1 and matrix.counts.sum() == 1


def test_mismatched_inputs_and_unknown_classes_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        match_image([LEFT], [CAT], [LEFT], [CAT, DOG], [0.9])
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion_matrix([match_image([LEFT], [5], [], [], [])], ["cat", "dog"])
