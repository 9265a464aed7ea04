"""The export's accuracy checks: each exported model's detections and COCO AP on test images.

Every ``.tflite`` is compared with the Keras model it came from (under the same NMS rules, run in numpy), the fp16
and ONNX models with the float ``.tflite`` (also at every anchor for fp16, where the few kept boxes would hide a
broken weight), and each model is scored with the COCO evaluation against the test records' boxes. The results
are the ``checks`` section of ``export_report.json`` (:class:`~spaghettinet.deploy.export_report.ExportChecks`).
"""

from __future__ import annotations

import numpy as np

from spaghettinet.deploy import tflite
from spaghettinet.deploy.export_report import (
    AnchorDifferences,
    DetectionAgreement,
    ExportChecks,
    ModelAccuracy,
)
from spaghettinet.model.box_iou import iou_matrix

#: IoU above which an int8 detection counts as the same object as a Keras detection of the same class.
MATCH_IOU = 0.5
#: Largest score difference, over every anchor of every check image, that the fp16 model may show against the
#: float model. A float16 weight is its float32 value to 2**-11 (relative); measured on the demo model (S, 160²,
#: QAT, AP50 0.70, 60 test images, 552 anchors each): mean 1.3e-4, max 5.6e-3, the max where a value sits on a
#: rounding edge of the always-on 8-bit concat quantization and moves a whole step (Keras against the float file
#: shows the same, max 9.4e-4). Set at 3.5 times that max and a quarter of the int8 model's largest (8e-2): beyond
#: it, the fp16 file is broken, not rounded.
FP16_MAX_SCORE_DIFFERENCE = 2e-2
#: Largest decoded box coordinate difference over every anchor, as a fraction of the image (1.6 pixels at 320²);
#: measured on the same model: mean 8.4e-5, max 1.9e-3.
FP16_MAX_BOX_DIFFERENCE = 5e-3


def model_pixels(example, size: tuple[int, int]) -> np.ndarray:
    from spaghettinet.deploy.runtime import resize_for_model

    return resize_for_model(example.decode_image(), size)


def compare_detections(reference: list, candidate: list) -> DetectionAgreement:
    """Match each reference detection with the best-overlapping candidate detection of the same class.

    Args:
        reference: per image, ``(boxes [K, 4], classes [K], scores [K])`` (the Keras model's).
        candidate: the same for the model under test (the int8 ``.tflite``), boxes clipped to [0, 1].

    Returns:
        :class:`~spaghettinet.deploy.export_report.DetectionAgreement` (a match: IoU ≥ :data:`MATCH_IOU`, same
        class).
    """
    ious, score_differences = [], []
    total_reference = total_candidate = 0
    for (ref_boxes, ref_classes, ref_scores), (boxes, classes, scores) in zip(
        reference, candidate, strict=True
    ):
        total_reference += len(ref_scores)
        total_candidate += len(scores)
        used = np.zeros(len(scores), bool)
        for box, cls, score in zip(ref_boxes, ref_classes, ref_scores, strict=True):
            overlaps = iou_matrix([box], boxes)[0]
            overlaps[(np.asarray(classes) != cls) | used] = -1.0
            if len(overlaps) == 0 or overlaps.max() < MATCH_IOU:
                continue
            best = int(overlaps.argmax())
            used[best] = True
            ious.append(float(overlaps[best]))
            score_differences.append(abs(float(scores[best]) - float(score)))
    return DetectionAgreement(
        reference_detections=total_reference,
        candidate_detections=total_candidate,
        matched=len(ious),
        matched_fraction=(len(ious) / total_reference) if total_reference else None,
        mean_iou=float(np.mean(ious)) if ious else None,
        min_iou=float(np.min(ious)) if ious else None,
        mean_score_difference=float(np.mean(score_differences)) if ious else None,
        max_score_difference=float(np.max(score_differences)) if ious else None,
    )


def _keras_detections(model, settings: tflite.PostprocessSettings, pixels: np.ndarray):
    """The Keras model's detections under the same NMS rules as the exported op (fast or regular)."""
    outputs = model(pixels[np.newaxis] * (2.0 / 255.0) - 1.0, training=False)
    detections = tflite.op_detections(
        settings,
        np.asarray(outputs["box_encodings"])[0],
        np.asarray(outputs["class_logits"])[0],
        model.anchors,
    )
    return detections.boxes, detections.classes, detections.scores


def _tflite_detections(detector, pixels: np.ndarray):
    found = detector.detect(pixels)
    return np.clip(found.boxes, 0.0, 1.0), found.classes, found.scores


def _coco_map(examples: list, detections: list, class_names: list[str]) -> ModelAccuracy:
    """COCO metrics of per-image ``(boxes, classes 0-based, scores)`` against the examples' ground truth.

    Args:
        examples: ``data.tfrecord.Example`` records (normalized boxes, 1-based classes).
        detections: per example, ``(boxes [K, 4] normalized, classes [K] 0-based, scores [K])``.
        class_names: label-map names of classes 1..C.

    Returns:
        :class:`~spaghettinet.deploy.export_report.ModelAccuracy` (None where COCO has no value).
    """
    from spaghettinet.coco_metrics import ImageDetections, ImageGroundTruth, coco_metrics

    ground_truth = [
        ImageGroundTruth(
            image_id=index,
            width=int(example.width),
            height=int(example.height),
            boxes=np.asarray(example.boxes, np.float32).reshape(-1, 4),
            classes=np.asarray(example.classes, np.int64),
            file_name=example.filename,
        )
        for index, example in enumerate(examples)
    ]
    predicted = [
        ImageDetections(
            image_id=index,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(scores, np.float32),
            classes=np.asarray(classes, np.int64),
        )
        for index, (boxes, classes, scores) in enumerate(detections)
    ]
    result = coco_metrics(ground_truth, predicted, class_names)
    return ModelAccuracy(
        ap=result.ap, ap50=result.ap50, ap75=result.ap75, per_class_ap=dict(result.per_class_ap)
    )


def _every_anchor_differences(
    reference: bytes, candidate: bytes, pixels: list[np.ndarray], anchors
) -> AnchorDifferences:
    """Largest differences between two float-input ``.tflite`` models at the post-processing op's inputs.

    The op's inputs hold every anchor's box encoding and class scores, so this compares all of them, where the
    few detections above the op's threshold compare almost none.
    """
    from spaghettinet.model.box_coder import decode

    images = [(p.astype(np.float32) * (2.0 / 255.0) - 1.0)[np.newaxis] for p in pixels]
    score_differences, box_differences = [], []
    for want, got in zip(
        tflite.postprocess_inputs(reference, images),
        tflite.postprocess_inputs(candidate, images),
        strict=True,
    ):
        (want_encodings, want_scores), (got_encodings, got_scores) = want, got
        score_differences.append(np.abs(want_scores[..., 1:] - got_scores[..., 1:]).ravel())
        box_differences.append(
            np.abs(decode(want_encodings[0], anchors) - decode(got_encodings[0], anchors)).ravel()
        )
    scores = np.concatenate(score_differences)
    boxes = np.concatenate(box_differences)
    return AnchorDifferences(
        anchors=int(len(anchors)),
        max_score_difference=float(scores.max()),
        mean_score_difference=float(scores.mean()),
        max_box_difference=float(boxes.max()),
        mean_box_difference=float(boxes.mean()),
        score_tolerance=FP16_MAX_SCORE_DIFFERENCE,
        box_tolerance=FP16_MAX_BOX_DIFFERENCE,
    )


def accuracy_checks(
    model,
    settings,
    tflite_models: dict[str, bytes],
    onnx_bytes: bytes | None,
    examples: list,
    size,
    class_names: list[str],
) -> ExportChecks:
    """Each model's detections against the Keras model's, fp16 and ONNX against the float ``.tflite``, COCO mAP.

    Args:
        model: the Keras detector (float mode).
        settings: the post-processing attributes (the Keras side runs the op's rules in numpy).
        tflite_models: ``{"float": bytes, "fp16": bytes, "int8": bytes}`` (int8 absent without quantization).
        onnx_bytes: ``model.onnx``, or None.
        examples: test records.
        size: model input ``(height, width)``.
        class_names: label-map names.

    Returns:
        :class:`~spaghettinet.deploy.export_report.ExportChecks`: ``<model>_vs_keras`` per ``.tflite``,
        ``fp16_vs_float`` and ``onnx_vs_float`` (detections), the fp16 model's largest differences at every
        anchor, the AP of every model; ``skipped`` when there are no test records.
    """
    from spaghettinet.deploy.runtime import OnnxDetector, TfliteDetector

    if not examples:
        return ExportChecks(skipped="eval_input_reader lists no readable records")
    detectors = {name: TfliteDetector(flatbuffer) for name, flatbuffer in tflite_models.items()}
    if onnx_bytes is not None:
        detectors["onnx"] = OnnxDetector(onnx_bytes)
    keras_found: list = []
    found: dict[str, list] = {name: [] for name in detectors}
    all_pixels = []
    for example in examples:
        pixels = model_pixels(example, size)
        all_pixels.append(pixels)
        keras_found.append(_keras_detections(model, settings, pixels))
        for name, detector in detectors.items():
            found[name].append(_tflite_detections(detector, pixels))
    agreements = {f"{name}_vs_keras": compare_detections(keras_found, found[name]) for name in tflite_models}
    agreements["fp16_vs_float"] = compare_detections(found["float"], found["fp16"])
    if "onnx" in found:
        agreements["onnx_vs_float"] = compare_detections(found["float"], found["onnx"])
    return ExportChecks(
        images=len(examples),
        agreements=agreements,
        fp16_every_anchor=_every_anchor_differences(
            tflite_models["float"], tflite_models["fp16"], all_pixels, model.anchors
        ),
        accuracy={name: _coco_map(examples, found[name], class_names) for name in found},
    )
