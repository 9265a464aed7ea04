"""SSD anchors (default boxes) for SpaghettiNet-EdgeTPU, as the TF1 Object Detection API generates them.

The reference uses ``ssd_anchor_generator`` → ``multiple_grid_anchor_generator.create_ssd_anchors`` with
``num_layers 5, min_scale 0.2, max_scale 0.95, aspect_ratios [1, 2, 0.5, 3, 1/3]`` (the zoo config).
Anchors are ``[ymin, xmin, ymax, xmax]`` normalized to the image, *not* clipped, ordered by feature map, then
row (y), then column (x), then box spec (fastest) — the order the box predictor's reshape produces.

Pure NumPy: no TensorFlow import, so the ``config`` command can use it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Aspect ratios of the reference config; 0.3333333 is written that way in the config.
DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333333)

#: SpaghettiNet feeds five maps to the SSD head: strides 16, 32, 64, 128, then c0n5, the 4th's size.
_FEATURE_MAP_STRIDES = (16, 32, 64, 128)


def _layer_scales(num_layers: int, min_scale: float, max_scale: float) -> list[float]:
    """Linearly spaced scales per layer, plus 1.0 used only to interpolate the last layer's extra box."""
    if num_layers == 1:
        return [min_scale, 1.0]
    return [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]


def box_specs(
    num_layers: int = 5,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
) -> list[list[tuple[float, float]]]:
    """The ``(scale, aspect_ratio)`` pairs placed at every location of each layer.

    Args:
        num_layers: number of feature maps.
        min_scale: scale of the finest layer (fraction of the image's shorter side).
        max_scale: scale of the coarsest layer.
        aspect_ratios: width/height ratios placed on layers 1.. (and on layer 0 unless reduced).
        interpolated_scale_aspect_ratio: aspect of the extra box of scale ``sqrt(s_l * s_{l+1})``; 0 disables it.
        reduce_boxes_in_lowest_layer: layer 0 gets the fixed three boxes (0.1, 1), (s0, 2), (s0, 0.5).

    Returns:
        One list per layer of ``(scale, aspect_ratio)`` tuples, in the order anchors are emitted.

    Example:
        >>> [len(layer) for layer in box_specs()]
        [3, 6, 6, 6, 6]
    """
    scales = _layer_scales(num_layers, min_scale, max_scale)
    specs: list[list[tuple[float, float]]] = []
    for layer in range(num_layers):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and reduce_boxes_in_lowest_layer:
            # The API hard-codes these three boxes for the lowest layer (create_ssd_anchors).
            layer_specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            layer_specs = [(scale, float(ratio)) for ratio in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0.0:
                layer_specs.append((math.sqrt(scale * scale_next), float(interpolated_scale_aspect_ratio)))
        specs.append(layer_specs)
    return specs


def anchors_per_location(
    num_layers: int = 5,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    reduce_boxes_in_lowest_layer: bool = True,
    interpolated_scale_aspect_ratio: float = 1.0,
) -> list[int]:
    """Number of anchors at each spatial location of each feature map.

    Args:
        num_layers: number of feature maps.
        aspect_ratios: see :func:`box_specs`.
        reduce_boxes_in_lowest_layer: see :func:`box_specs`.
        interpolated_scale_aspect_ratio: see :func:`box_specs`.

    Returns:
        A list of ``num_layers`` integers; ``[3, 6, 6, 6, 6]`` for the reference config.

    Example:
        >>> anchors_per_location()
        [3, 6, 6, 6, 6]
    """
    specs = box_specs(
        num_layers=num_layers,
        aspect_ratios=aspect_ratios,
        interpolated_scale_aspect_ratio=interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer=reduce_boxes_in_lowest_layer,
    )
    return [len(layer) for layer in specs]


def feature_map_sizes(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial sizes of the five SpaghettiNet maps fed to the SSD head, for an input of ``(height, width)``.

    With SAME padding every stride-2 step rounds up, so map ``k`` is ``ceil(H / stride_k)`` for strides
    16, 32, 64, 128; the fifth map (``c0n5``) is built from the fourth with stride-1 layers and has its size
    (20, 10, 5, 3, 3 at 320x320, as upstream ``ssd_spaghettinet_feature_extractor_tf1_test.py`` expects).

    Args:
        image_size: model input ``(height, width)`` in pixels.

    Returns:
        Five ``(height, width)`` tuples.

    Example:
        >>> feature_map_sizes((320, 320))
        [(20, 20), (10, 10), (5, 5), (3, 3), (3, 3)]
    """
    height, width = (int(v) for v in image_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    sizes = [
        (_ceil_halvings(height, stride), _ceil_halvings(width, stride)) for stride in _FEATURE_MAP_STRIDES
    ]
    sizes.append(sizes[-1])
    return sizes


def _ceil_halvings(length: int, stride: int) -> int:
    """Size after repeated SAME-padded stride-2 steps; equals ceil(length / stride) for power-of-two strides."""
    return -(-length // stride)


def generate_ssd_anchors(
    feature_map_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
) -> np.ndarray:
    """Generate the SSD anchors of the reference, in its order.

    Centres sit on each map's own grid at ``(i + 0.5) / G``. A box of scale ``s`` and aspect ``a`` is
    ``s / sqrt(a)`` high and ``s * sqrt(a)`` wide, times the base anchor size. For a non-square image the base
    size is ``(min(H, W) / H, min(H, W) / W)`` in normalized units, as in the API's MultipleGridAnchorGenerator,
    so that an aspect-1 anchor is square in pixels.

    Args:
        feature_map_sizes: ``(height, width)`` of every feature map, finest first (see :func:`feature_map_sizes`).
        image_size: model input ``(height, width)`` in pixels.
        min_scale: scale of the finest layer.
        max_scale: scale of the coarsest layer.
        aspect_ratios: width/height ratios.
        interpolated_scale_aspect_ratio: aspect of the extra interpolated-scale box; 0 disables it.
        reduce_boxes_in_lowest_layer: use the fixed three boxes on layer 0.

    Returns:
        float32 array ``[N, 4]`` of ``[ymin, xmin, ymax, xmax]``, normalized, unclipped; computed in float64.

    Example:
        >>> anchors = generate_ssd_anchors(feature_map_sizes((320, 320)), (320, 320))
        >>> anchors.shape
        (2058, 4)
    """
    sizes = [(int(h), int(w)) for h, w in feature_map_sizes]
    specs = box_specs(
        num_layers=len(sizes),
        min_scale=min_scale,
        max_scale=max_scale,
        aspect_ratios=aspect_ratios,
        interpolated_scale_aspect_ratio=interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer=reduce_boxes_in_lowest_layer,
    )
    image_height, image_width = float(image_size[0]), float(image_size[1])
    shorter_side = min(image_height, image_width)
    base_height, base_width = shorter_side / image_height, shorter_side / image_width

    per_layer = []
    for (grid_height, grid_width), layer_specs in zip(sizes, specs, strict=True):
        scales = np.array([spec[0] for spec in layer_specs], dtype=np.float64)
        ratio_roots = np.sqrt(np.array([spec[1] for spec in layer_specs], dtype=np.float64))
        heights = scales / ratio_roots * base_height
        widths = scales * ratio_roots * base_width
        y_centers = (np.arange(grid_height, dtype=np.float64) + 0.5) / grid_height
        x_centers = (np.arange(grid_width, dtype=np.float64) + 0.5) / grid_width
        # Broadcast to [H, W, A]: y slowest, then x, then box spec — the predictor's reshape order.
        yc = np.broadcast_to(y_centers[:, None, None], (grid_height, grid_width, len(layer_specs)))
        xc = np.broadcast_to(x_centers[None, :, None], (grid_height, grid_width, len(layer_specs)))
        h = np.broadcast_to(heights[None, None, :], yc.shape)
        w = np.broadcast_to(widths[None, None, :], yc.shape)
        corners = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
        per_layer.append(corners.reshape(-1, 4))
    return np.concatenate(per_layer, axis=0).astype(np.float32)


def spaghettinet_anchors(image_size: tuple[int, int] = (320, 320)) -> np.ndarray:
    """The reference anchors for a SpaghettiNet-EdgeTPU SSD with the given input ``(height, width)``.

    Args:
        image_size: model input ``(height, width)`` in pixels.

    Returns:
        float32 ``[N, 4]`` anchors (2058 at 320x320), see :func:`generate_ssd_anchors`.

    Example:
        >>> spaghettinet_anchors((128, 128)).shape
        (324, 4)
    """
    return generate_ssd_anchors(feature_map_sizes(image_size), image_size)
