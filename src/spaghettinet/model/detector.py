"""``build_detector``: a SpaghettiNet-EdgeTPU SSD as a Keras 3 functional model.

The model maps float32 images ``[B, H, W, 3]`` in [-1, 1] (pixels ``x·2/255 − 1``) to
``{"box_encodings": [B, N, 4], "class_logits": [B, N, num_classes + 1]}`` (column 0 background, as TF1).
Its top-level layers are the input quantizer, one :class:`~spaghettinet.model.blocks.SpaghettiNode` per node
(named ``"s0"``, ``"n0"``, ..., ``"c0n5"``), one :class:`~spaghettinet.model.head.BoxPredictor` per feature map
(``"BoxPredictor_0"``...), the two cross-map concats and their QAT quantizers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spaghettinet.errors import UsageError
from spaghettinet.model.anchors import generate_ssd_anchors
from spaghettinet.model.architecture import FEATURE_NODES, get_architecture
from spaghettinet.model.blocks import SpaghettiNode
from spaghettinet.model.head import ANCHORS_PER_LOCATION, FOCAL_PRIOR_BIAS, BoxPredictor
from spaghettinet.model.quantize import ActivationQuantizer
from spaghettinet.tf_runtime import import_keras

keras = import_keras()

#: The reference rejects smaller images (its ``extract_features`` calls ``check_min_image_dim(33, ...)``).
MIN_INPUT_SIZE = 33


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise UsageError(f"input_size must be (height, width), got {input_size!r}") from None
    if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
        raise UsageError(
            f"input_size {height}x{width} is too small: SpaghettiNet needs at least "
            f"{MIN_INPUT_SIZE} pixels per side"
        )
    return height, width


def build_detector(
    variant: str,
    num_classes: int,
    input_size: Sequence[int] = (320, 320),
    concat_fake_quant: bool = True,
    *,
    class_bias_init: float = FOCAL_PRIOR_BIAS,
):
    """Build a SpaghettiNet-EdgeTPU SSD detector.

    Args:
        variant: ``"s"``, ``"m"``, ``"l"`` or the TF1 name ``"spaghettinet_edgetpu_s"`` etc.
        num_classes: foreground classes (the logits get one more column, background, at index 0).
        input_size: ``(height, width)``, each ≥ 33; square or not.
        concat_fake_quant: the reference's always-on 8-bit fake-quant of the grouped concats
            (``_quantizable_concat``). Keep True for TF1 fidelity; False only for diagnostics (comparing
            with TF1 outputs computed without it).
        class_bias_init: initial ClassPredictor bias; -4.6 is the focal-loss prior, 0.0 the TF1 graph's value
            (see ``head.py``). Loading a TF1 checkpoint overwrites it.

    Returns:
        A Keras functional model with the extra attributes ``anchors`` (float32 ``[N, 4]`` yxyx normalized,
        unclipped), ``variant`` (TF1 arch name), ``num_classes``, ``input_size`` and ``architecture``.

    Raises:
        UsageError: unknown variant, bad ``num_classes`` or ``input_size``.

    Example:
        >>> model = build_detector("s", num_classes=3, input_size=(128, 128))
        >>> outputs = model(np.zeros([1, 128, 128, 3], np.float32))
        >>> outputs["class_logits"].shape, model.anchors.shape
        (TensorShape([1, 324, 4]), (324, 4))
    """
    arch = get_architecture(variant)
    height, width = _check_input_size(input_size)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)

    image = keras.Input((height, width, 3), name="image", dtype="float32")
    # The model input is x·2/255 − 1: its quantized range is the fixed [-1, 1] (uint8 pixels at export).
    x = ActivationQuantizer(fixed_range=(-1.0, 1.0), name="input_quant")(image)
    arch_scope = f"FeatureExtractor/{arch.name}"
    levels = {node.name: node.level for node in arch.nodes}
    tensors = {}
    for spec in arch.nodes:
        node = SpaghettiNode(
            spec, tuple(levels[s] for s in spec.sources), arch_scope, concat_fake_quant=concat_fake_quant
        )
        if spec.is_stem:
            tensors[spec.name] = node(x)
        elif spec.is_passthrough:
            tensors[spec.name] = node(tensors[spec.sources[0]])
        else:
            tensors[spec.name] = node([tensors[s] for s in spec.sources])

    boxes, logits = [], []
    for index, (name, num_anchors) in enumerate(zip(FEATURE_NODES, ANCHORS_PER_LOCATION, strict=True)):
        box, logit = BoxPredictor(index, num_anchors, num_classes, class_bias_init=class_bias_init)(
            tensors[name]
        )
        boxes.append(box)
        logits.append(logit)
    box_encodings = keras.layers.Concatenate(axis=1, name="box_encodings_concat")(boxes)
    class_logits = keras.layers.Concatenate(axis=1, name="class_logits_concat")(logits)
    # One range per output after the cross-map concat, not one per head (which would add requantize ops).
    box_encodings = ActivationQuantizer(name="box_encodings")(box_encodings)
    class_logits = ActivationQuantizer(name="class_logits")(class_logits)

    model = keras.Model(image, {"box_encodings": box_encodings, "class_logits": class_logits}, name=arch.name)
    map_sizes = [(int(tensors[n].shape[1]), int(tensors[n].shape[2])) for n in FEATURE_NODES]
    model.anchors = generate_ssd_anchors(map_sizes, (height, width))
    model.variant = arch.name
    model.architecture = arch
    model.num_classes = num_classes
    model.input_size = (height, width)
    model.feature_map_sizes = map_sizes
    if (
        model.anchors.shape[0] != box_encodings.shape[1]
    ):  # pragma: no cover - guards the two order conventions
        raise AssertionError(f"{model.anchors.shape[0]} anchors but {box_encodings.shape[1]} predictions")
    return model


def feature_extractor(model):
    """A model sharing ``model``'s layers that returns the five SSD feature maps (nodes c0n1 … c0n5).

    Args:
        model: a detector from :func:`build_detector`.

    Returns:
        Keras model ``image → [map_0, …, map_4]``.
    """
    return keras.Model(model.input, [model.get_layer(name).output for name in FEATURE_NODES])


def spaghetti_node(model, name: str):
    """The :class:`~spaghettinet.model.blocks.SpaghettiNode` layer called ``name`` (``"s0"``, ``"c0n3"``...)."""
    return model.get_layer(name)


def box_predictors(model) -> list:
    """The five :class:`~spaghettinet.model.head.BoxPredictor` layers, in feature-map order."""
    return [model.get_layer(f"BoxPredictor_{i}") for i in range(len(FEATURE_NODES))]


def set_concat_fake_quant(model, enabled: bool) -> int:
    """Turn the reference's grouped-concat fake-quant on or off in place (read at trace time; retrace after).

    Off matches TF1 outputs computed with that fake-quant removed (a diagnostic); in quantization-aware mode
    the concats are quantized whatever this says.

    Args:
        model: a detector from :func:`build_detector`.
        enabled: True for the reference behaviour.

    Returns:
        The number of concats changed.
    """
    from spaghettinet.model.blocks import ConcatQuantizer

    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ConcatQuantizer):
            layer.enabled = bool(enabled)
            count += 1
    return count
