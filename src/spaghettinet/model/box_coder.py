"""Faster R-CNN box coder: boxes relative to anchors as ``[ty, tx, th, tw]``.

``ty = 10 * (yc - yca) / ha``, ``tx = 10 * (xc - xca) / wa``, ``th = 5 * log(h / ha)``, ``tw = 5 * log(w / wa)``,
with ε = 1e-8 added to ``h, w, ha, wa`` when encoding (never when decoding), as the TF Object Detection API's
``box_coders/faster_rcnn_box_coder.py`` does. The NumPy and TensorFlow versions perform the same float
operations in the same order, so in float32 they agree with each other and with the reference to the last bit
(up to ``exp``/``log`` rounding in the library in use).

Boxes are ``[ymin, xmin, ymax, xmax]``; anchors ``[N, 4]`` broadcast against ``[..., N, 4]`` inputs.
TensorFlow is imported lazily, only by the ``*_tf`` functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spaghettinet.tf_runtime import import_tensorflow

#: Scales of the zoo config's ``faster_rcnn_box_coder`` (y, x, height, width).
DEFAULT_SCALES: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

#: Added to sizes before dividing or taking logs when encoding (box_coders/faster_rcnn_box_coder.py EPSILON).
EPSILON = 1e-8


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def _center_size(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(yc, xc, h, w)`` of ``[..., 4]`` yxyx boxes, computed as the API's BoxList does (center = min + size/2)."""
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    height = ymax - ymin
    width = xmax - xmin
    half = boxes.dtype.type(2.0)
    return ymin + height / half, xmin + width / half, height, width


def to_center_size(anchors_yxyx: np.ndarray) -> np.ndarray:
    """Convert ``[N, 4]`` yxyx anchors to ``[N, 4]`` ``(yc, xc, h, w)``, the layout TFLite's post-processing op wants.

    Args:
        anchors_yxyx: ``[N, 4]`` anchors ``[ymin, xmin, ymax, xmax]``.

    Returns:
        float32 ``[N, 4]`` ``[y_center, x_center, height, width]`` (computed in float64, then rounded).

    Example:
        >>> to_center_size(np.array([[0.0, 0.2, 0.5, 0.4]]))
        array([[0.25, 0.3 , 0.5 , 0.2 ]], dtype=float32)
    """
    anchors = np.asarray(anchors_yxyx, dtype=np.float64)
    return np.stack(_center_size(anchors), axis=-1).astype(np.float32)


def encode(boxes: np.ndarray, anchors: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES) -> np.ndarray:
    """Encode yxyx boxes relative to anchors as ``[ty, tx, th, tw]`` (NumPy).

    Args:
        boxes: ``[..., N, 4]`` boxes ``[ymin, xmin, ymax, xmax]`` matched to the anchors row by row.
        anchors: ``[N, 4]`` anchors ``[ymin, xmin, ymax, xmax]``.
        scales: ``(y, x, h, w)`` scale factors; ``(10, 10, 5, 5)`` in the reference.

    Returns:
        ``[..., N, 4]`` encodings in the inputs' float dtype (float32 for integer inputs).

    Example:
        >>> anchor = np.array([[0.0, 0.0, 0.5, 0.5]], dtype=np.float32)
        >>> encode(anchor, anchor).round(4)
        array([[0., 0., 0., 0.]], dtype=float32)
    """
    dtype = _float_dtype(np.asarray(boxes), np.asarray(anchors))
    boxes = np.asarray(boxes, dtype=dtype)
    anchors = np.asarray(anchors, dtype=dtype)
    eps = dtype.type(EPSILON)
    yc_a, xc_a, h_a, w_a = _center_size(anchors)
    yc, xc, h, w = _center_size(boxes)
    h_a, w_a, h, w = h_a + eps, w_a + eps, h + eps, w + eps
    ty = (yc - yc_a) / h_a * dtype.type(scales[0])
    tx = (xc - xc_a) / w_a * dtype.type(scales[1])
    th = np.log(h / h_a) * dtype.type(scales[2])
    tw = np.log(w / w_a) * dtype.type(scales[3])
    return np.stack([ty, tx, th, tw], axis=-1)


def decode(
    encodings: np.ndarray, anchors: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES
) -> np.ndarray:
    """Decode ``[ty, tx, th, tw]`` against anchors into yxyx boxes (NumPy); unclipped.

    Args:
        encodings: ``[..., N, 4]`` box encodings (raw ``box_encodings`` of the model).
        anchors: ``[N, 4]`` anchors ``[ymin, xmin, ymax, xmax]``.
        scales: ``(y, x, h, w)`` scale factors.

    Returns:
        ``[..., N, 4]`` boxes ``[ymin, xmin, ymax, xmax]`` in the inputs' float dtype.

    Example:
        >>> anchor = np.array([[0.0, 0.0, 0.5, 0.5]], dtype=np.float32)
        >>> decode(np.zeros((1, 4), np.float32), anchor)
        array([[0. , 0. , 0.5, 0.5]], dtype=float32)
    """
    dtype = _float_dtype(np.asarray(encodings), np.asarray(anchors))
    encodings = np.asarray(encodings, dtype=dtype)
    anchors = np.asarray(anchors, dtype=dtype)
    yc_a, xc_a, h_a, w_a = _center_size(anchors)
    ty = encodings[..., 0] / dtype.type(scales[0])
    tx = encodings[..., 1] / dtype.type(scales[1])
    th = encodings[..., 2] / dtype.type(scales[2])
    tw = encodings[..., 3] / dtype.type(scales[3])
    w = np.exp(tw) * w_a
    h = np.exp(th) * h_a
    yc = ty * h_a + yc_a
    xc = tx * w_a + xc_a
    half = dtype.type(2.0)
    return np.stack([yc - h / half, xc - w / half, yc + h / half, xc + w / half], axis=-1)


def _center_size_tf(tf, boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    height = ymax - ymin
    width = xmax - xmin
    return ymin + height / 2.0, xmin + width / 2.0, height, width


def encode_tf(boxes, anchors, scales: Sequence[float] = DEFAULT_SCALES):
    """TensorFlow twin of :func:`encode`; usable inside ``tf.data`` maps and ``tf.function`` (graph mode).

    Args:
        boxes: ``[..., N, 4]`` float tensor of yxyx boxes.
        anchors: ``[N, 4]`` float tensor (or array) of yxyx anchors, cast to ``boxes``' dtype.
        scales: ``(y, x, h, w)`` scale factors.

    Returns:
        ``[..., N, 4]`` tensor ``[ty, tx, th, tw]``.

    Example:
        >>> encode_tf(tf.constant([[0.0, 0.0, 0.5, 0.5]]), tf.constant([[0.0, 0.0, 0.5, 0.5]]))  # doctest: +SKIP
    """
    tf = import_tensorflow()
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    anchors = tf.cast(anchors, boxes.dtype)
    yc_a, xc_a, h_a, w_a = _center_size_tf(tf, anchors)
    yc, xc, h, w = _center_size_tf(tf, boxes)
    h_a, w_a, h, w = h_a + EPSILON, w_a + EPSILON, h + EPSILON, w + EPSILON
    ty = (yc - yc_a) / h_a * scales[0]
    tx = (xc - xc_a) / w_a * scales[1]
    th = tf.math.log(h / h_a) * scales[2]
    tw = tf.math.log(w / w_a) * scales[3]
    return tf.stack([ty, tx, th, tw], axis=-1)


def decode_tf(encodings, anchors, scales: Sequence[float] = DEFAULT_SCALES):
    """TensorFlow twin of :func:`decode` (graph-mode safe).

    Args:
        encodings: ``[..., N, 4]`` float tensor ``[ty, tx, th, tw]``.
        anchors: ``[N, 4]`` yxyx anchors, cast to the encodings' dtype.
        scales: ``(y, x, h, w)`` scale factors.

    Returns:
        ``[..., N, 4]`` tensor of unclipped yxyx boxes.

    Example:
        >>> decode_tf(tf.zeros([1, 4]), tf.constant([[0.0, 0.0, 0.5, 0.5]]))  # doctest: +SKIP
    """
    tf = import_tensorflow()
    encodings = tf.convert_to_tensor(encodings)
    if not encodings.dtype.is_floating:
        encodings = tf.cast(encodings, tf.float32)
    anchors = tf.cast(anchors, encodings.dtype)
    yc_a, xc_a, h_a, w_a = _center_size_tf(tf, anchors)
    ty, tx, th, tw = tf.unstack(encodings, num=4, axis=-1)
    ty = ty / scales[0]
    tx = tx / scales[1]
    th = th / scales[2]
    tw = tw / scales[3]
    w = tf.exp(tw) * w_a
    h = tf.exp(th) * h_a
    yc = ty * h_a + yc_a
    xc = tx * w_a + xc_a
    return tf.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], axis=-1)
