"""``evaluate``: restore a training checkpoint and score it on the eval split with COCO metrics.

The scoring is :func:`spaghettinet.training.model_evaluation.evaluate_model`'s, the same that training runs. The result is written as ``eval.json``: the COCO summary metrics, per-class
AP, and every detection in COCO result format (``image_id``, ``category_id`` 1-based, ``bbox`` in pixels of the
original image, ``score``).
"""

from __future__ import annotations

from pathlib import Path


def evaluate(config, checkpoint: str | Path, out: str | Path | None = None, files=None):
    """Evaluate a training checkpoint (or a model directory's latest) on the eval split.

    Args:
        config: a ``PipelineConfig`` or the path of a ``pipeline.config``.
        checkpoint: a ``ckpt-<step>`` prefix or a model directory.
        out: the ``eval.json`` to write (default: ``eval.json`` beside the checkpoint).
        files: record files to use instead of the config's eval input paths.

    Returns:
        ``coco_metrics.CocoResult``.

    Raises:
        DataError: no checkpoint, a checkpoint that does not fit, unreadable records.

    Example:
        >>> result = evaluate("pipeline.config", "runs/demo")  # doctest: +SKIP
    """
    from spaghettinet.training.checkpoints import require_checkpoint, restore_detector
    from spaghettinet.training.model_evaluation import evaluate_model

    if isinstance(config, str | Path):
        from spaghettinet.pipeline_config import read_config

        config = read_config(config)
    prefix = require_checkpoint(checkpoint)
    model, step, _ = restore_detector(config, prefix)
    target = Path(out) if out is not None else Path(prefix).parent / "eval.json"
    return evaluate_model(model, config, out=target, step=step, files=files, checkpoint=prefix)
