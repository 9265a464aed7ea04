"""COCO evaluation of an in-memory detector on the config's eval records: what training runs at its end and every
``--eval-every`` steps, and what ``evaluate`` runs on a restored checkpoint.

The model's raw outputs go through the reference post-processing (``model/postprocess.py``: sigmoid, decode,
per-class NMS with the zoo config's score threshold 1e-8, IoU 0.6, 100 per class, 100 in total), then
pycocotools (``coco_metrics.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: Images per forward pass during evaluation (memory stays small; speed is bound by the model, not the batch).
EVAL_BATCH_SIZE = 8


def evaluate_model(
    model,
    config,
    out: str | Path | None = None,
    step: int | None = None,
    files=None,
    batch_size: int = EVAL_BATCH_SIZE,
    checkpoint: str | None = None,
):
    """COCO-evaluate an in-memory detector on the config's eval records.

    Args:
        model: a detector from ``build_detector`` (float or QAT mode).
        config: a ``PipelineConfig`` (eval input paths, NMS settings, label map).
        out: where to write the ``eval.json`` payload (None: not written).
        step: training step, recorded in the file.
        files: record files to use instead of the config's eval input paths.
        batch_size: images per forward pass.
        checkpoint: checkpoint prefix, recorded in the file.

    Returns:
        ``coco_metrics.CocoResult``.

    Example:
        >>> result = evaluate_model(model, cfg, out="runs/demo/eval.json")  # doctest: +SKIP
        >>> result.ap50  # doctest: +SKIP
        0.91
    """
    from spaghettinet.coco_metrics import (
        EvalReport,
        ImageDetections,
        ImageGroundTruth,
        coco_detections,
        coco_metrics,
        write_eval_json,
    )
    from spaghettinet.model.postprocess import postprocess
    from spaghettinet.pipeline_config.class_names import class_names
    from spaghettinet.training.inputs import eval_dataset

    settings = config.model
    names = class_names(config)

    @tf.function(reduce_retracing=True)
    def predict(images):
        outputs = model(images, training=False)
        return outputs["box_encodings"], outputs["class_logits"]

    groundtruth, detections = [], []
    for batch in eval_dataset(config, batch_size=batch_size, files=files):
        encodings, logits = (t.numpy() for t in predict(batch["images"]))
        for i in range(encodings.shape[0]):
            image_id = len(groundtruth) + 1
            n = int(batch["num_boxes"][i])
            groundtruth.append(
                ImageGroundTruth(
                    image_id=image_id,
                    width=int(batch["width"][i]),
                    height=int(batch["height"][i]),
                    boxes=batch["gt_boxes"][i][:n].numpy().astype(np.float64),
                    classes=batch["gt_classes"][i][:n].numpy().astype(np.int64),
                    file_name=batch["filename"][i].numpy().decode("utf-8", "replace"),
                )
            )
            found = postprocess(
                encodings[i],
                logits[i],
                model.anchors,
                score_threshold=settings.score_threshold,
                iou_threshold=settings.iou_threshold,
                max_detections_per_class=settings.max_detections_per_class,
                max_total_detections=settings.max_total_detections,
                scales=tuple(settings.box_coder_scales),
            )
            detections.append(ImageDetections.from_detections(image_id, found))
    result = coco_metrics(groundtruth, detections, names)
    if out is not None:
        report = EvalReport(
            result,
            step=step,
            checkpoint=None if checkpoint is None else str(checkpoint),
            images=[{"id": g.image_id, "file_name": g.file_name} for g in groundtruth],
            detections=coco_detections(groundtruth, detections),
        )
        write_eval_json(out, report)
    return result
