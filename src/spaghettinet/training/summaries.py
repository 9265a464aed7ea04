"""TensorBoard scalars and images written with TensorFlow's core ``tf.summary.write``.

``tf.summary.scalar`` and ``tf.summary.image`` live in the ``tensorboard`` package, which TF 2.21 no longer pulls
in (``TBNotInstalledError``). The event files only need the summary tensor plus the plugin name TensorBoard reads
(``scalars``: a float32 scalar; ``images``: a string vector ``[width, height, png, png, ...]``), so we write those
directly and TensorBoard, installed wherever the logs are viewed, shows them as usual.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()


def _metadata(plugin_name: str):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
    )


def write_scalar(name: str, value: float, step: int) -> None:
    """Write one scalar to the default summary writer (inside ``writer.as_default()``).

    Args:
        name: tag, e.g. ``loss/total``.
        value: the number.
        step: training step.

    Example:
        >>> with tf.summary.create_file_writer("logs").as_default():  # doctest: +SKIP
        ...     write_scalar("learning_rate", 0.1, step=10)
    """
    tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=int(step), metadata=_metadata("scalars")
    )


def write_images(name: str, images: np.ndarray, step: int) -> None:
    """Write uint8 images ``[K, H, W, 3]`` as one TensorBoard image summary (PNG-encoded).

    Args:
        name: tag.
        images: uint8 ``[K, H, W, 3]``.
        step: training step.

    Example:
        >>> with tf.summary.create_file_writer("logs").as_default():  # doctest: +SKIP
        ...     write_images("predictions", np.zeros([2, 8, 8, 3], np.uint8), step=10)
    """
    images = np.asarray(images, np.uint8)
    encoded = []
    for picture in images:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    height, width = images.shape[1:3]
    tensor = tf.constant([str(width).encode(), str(height).encode(), *encoded], tf.string)
    tf.summary.write(name, tensor, step=int(step), metadata=_metadata("images"))
