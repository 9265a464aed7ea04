"""Per-node table of a detector: output shapes, parameters and multiply-accumulates (MACs).

MACs count the convolutions (full: ``H·W·k²·Cin·Cout``, depthwise: ``H·W·k²·C``) at the model's input size,
backbone and SSD head together; pooling, resizing, adds and batch norm are not counted. The reference config
quotes 1.0 / 1.25 / 1.57 billion MACs for S / M / L at 320x320 in its header comments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SummaryRow:
    """One node or head of the table.

    Attributes:
        name: node name (``"s0"``, ``"c0n3"``) or ``"BoxPredictor_<i>"``.
        kind: ``"stem"``, ``"node"``, ``"merge node"``, ``"feature node"`` or ``"head"``.
        output_shape: ``(H, W, C)``; for a head, ``(rows, 4)`` of its box output.
        params: all parameters (trainable and batch-norm statistics, concat ranges; not QAT ranges).
        macs: multiply-accumulates for one image.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    """The table plus totals.

    Attributes:
        variant: TF1 arch name.
        input_size: ``(H, W)``.
        num_classes: foreground classes.
        rows: one :class:`SummaryRow` per node and head.
        trainable_params, total_params, total_macs: totals over the model (``total_params`` counts the TF1
            variables: weights, batch-norm statistics and concat ranges).
        reference_macs: what the reference config quotes at 320x320.
        num_anchors: number of anchors.
    """

    variant: str
    input_size: tuple[int, int]
    num_classes: int
    rows: list[SummaryRow]
    trainable_params: int
    total_params: int
    total_macs: int
    reference_macs: float
    num_anchors: int


def _layer_params(layer) -> int:
    names = {}
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if hasattr(sub, "tf1_variables"):
            names.update(sub.tf1_variables())
    return sum(int(np.prod(v.shape)) for v in names.values())


def _layer_macs(layer) -> int:
    return sum(getattr(sub, "macs", 0) for sub in layer._flatten_layers(include_self=True, recursive=True))


def summarize(model) -> ModelSummary:
    """Summarize a detector built by :func:`~spaghettinet.model.detector.build_detector`.

    Args:
        model: the detector (its layers record their MACs when the functional graph is built).

    Returns:
        A :class:`ModelSummary`.

    Example:
        >>> summary = summarize(build_detector("s", 90))  # doctest: +SKIP
        >>> round(summary.total_macs / 1e9, 2)  # doctest: +SKIP
        0.99
    """
    from spaghettinet.model.architecture import FEATURE_NODES
    from spaghettinet.model.detector import box_predictors
    from spaghettinet.model.tf1_checkpoint import tf1_variable_map

    rows = []
    for spec in model.architecture.nodes:
        layer = model.get_layer(spec.name)
        if spec.is_stem:
            kind = "stem"
        elif spec.name in FEATURE_NODES:
            kind = "feature node"
        elif not spec.is_passthrough:
            kind = "merge node"
        else:
            kind = "node"
        shape = tuple(int(d) for d in layer.output.shape[1:])
        rows.append(SummaryRow(spec.name, kind, shape, _layer_params(layer), _layer_macs(layer)))
    for head in box_predictors(model):
        shape = tuple(int(d) for d in head.output[0].shape[1:])
        rows.append(SummaryRow(head.name, "head", shape, _layer_params(head), _layer_macs(head)))
    variables = tf1_variable_map(model)
    return ModelSummary(
        variant=model.variant,
        input_size=tuple(model.input_size),
        num_classes=model.num_classes,
        rows=rows,
        trainable_params=sum(int(np.prod(v.shape)) for v in variables.values() if v.trainable),
        total_params=sum(int(np.prod(v.shape)) for v in variables.values()),
        total_macs=sum(row.macs for row in rows),
        reference_macs=model.architecture.reference_macs,
        num_anchors=int(model.anchors.shape[0]),
    )


def summarize_variant(
    variant: str, input_size: Sequence[int] = (320, 320), num_classes: int = 90
) -> ModelSummary:
    """Build a detector and summarize it (see :func:`summarize`)."""
    from spaghettinet.model.detector import build_detector

    return summarize(build_detector(variant, num_classes, input_size))
