"""Run an exported ``.tflite`` detector with LiteRT (``ai_edge_litert``), the way a deployed app would.

The model's outputs are read by the canonical names our export gives them (boxes, classes, scores,
num_detections); rows past ``num_detections`` are not set by the op (float models can hold NaN there) and
are dropped here.
:class:`OnnxDetector` runs the ``export --onnx`` model the same way with onnxruntime (an optional extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaghettinet.deploy.tflite import OUTPUT_NAMES
from spaghettinet.errors import DataError


@dataclass
class TfliteDetections:
    """Detections of one image from a ``.tflite`` model.

    Args:
        boxes: float32 ``[K, 4]`` ``[ymin, xmin, ymax, xmax]`` normalized, *not clipped* (the op does not clip).
        classes: int32 ``[K]`` 0-based foreground class indices.
        scores: float32 ``[K]``, descending.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    @property
    def num(self) -> int:
        return int(len(self.scores))


class TfliteDetector:
    """A loaded ``.tflite`` detector with the fused post-processing op.

    Args:
        model: path to the ``.tflite`` file, or its bytes.
        threads: CPU threads for the interpreter.

    Example:
        >>> detector = TfliteDetector("exported/model_int8.tflite")  # doctest: +SKIP
        >>> detections = detector.detect(pixels_uint8_at_model_size)  # doctest: +SKIP
    """

    def __init__(self, model: str | Path | bytes, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        where = "<bytes>" if isinstance(model, bytes | bytearray) else str(model)
        try:
            if isinstance(model, bytes | bytearray):
                self.interpreter = Interpreter(model_content=bytes(model), num_threads=threads)
            else:
                self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"not a TFLite model LiteRT can load: {exc}", where) from exc
        self.input = self.interpreter.get_input_details()[0]
        outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            raise DataError(
                f"not a spaghettinet detector export: outputs {sorted(outputs)} lack {missing} "
                "(export it with `spaghettinet export`)",
                where,
            )
        self.outputs = [outputs[name] for name in OUTPUT_NAMES]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` the model takes."""
        shape = self.input["shape"]
        return int(shape[1]), int(shape[2])

    @property
    def input_is_uint8(self) -> bool:
        return self.input["dtype"] == np.uint8

    def detect(self, pixels: np.ndarray) -> TfliteDetections:
        """Detect objects in one image already resized to :attr:`input_size`.

        Args:
            pixels: uint8 (or float in [0, 255]) RGB ``[H, W, 3]`` raw pixels. The float model gets them scaled
                ``x * 2/255 - 1`` as in training; the uint8 model gets them as they are.

        Returns:
            :class:`TfliteDetections` with the valid rows only.
        """
        pixels = np.asarray(pixels)
        if pixels.shape != (*self.input_size, 3):
            raise ValueError(f"image must be {(*self.input_size, 3)} (resize first), got {pixels.shape}")
        if self.input_is_uint8:
            batch = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[np.newaxis]
        else:
            batch = (pixels.astype(np.float32) * (2.0 / 255.0) - 1.0)[np.newaxis]
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        boxes, classes, scores, count = (self.interpreter.get_tensor(d["index"]) for d in self.outputs)
        n = int(count.reshape(-1)[0])
        return TfliteDetections(
            boxes=np.asarray(boxes[0, :n], np.float32),
            classes=np.rint(classes[0, :n]).astype(np.int32),
            scores=np.asarray(scores[0, :n], np.float32),
        )

    def invoke(self) -> None:
        """Run the model on whatever input is set (for timing)."""
        self.interpreter.invoke()


class OnnxDetector:
    """The ``model.onnx`` of ``export --onnx`` run with onnxruntime on CPU, as :class:`TfliteDetector` runs a ``.tflite``.

    Args:
        model: path to the ``.onnx`` file, or its bytes.
        threads: CPU threads (onnxruntime's intra-op threads).

    Raises:
        UsageError: onnxruntime is not installed (``pip install 'spaghettinet[onnx]'``).
        DataError: onnxruntime cannot load the model, or its outputs are not the export's.

    Example:
        >>> detections = OnnxDetector("exported/model.onnx").detect(pixels_at_model_size)  # doctest: +SKIP
    """

    def __init__(self, model: str | Path | bytes, threads: int = 1):
        from spaghettinet.deploy.onnx_export import require_onnx_packages

        _, onnxruntime = require_onnx_packages()
        where = "<bytes>" if isinstance(model, bytes | bytearray) else str(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                bytes(model) if isinstance(model, bytes | bytearray) else str(model),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise DataError(f"not an ONNX model onnxruntime can load: {exc}", where) from exc
        self.input = self.session.get_inputs()[0]
        names = [output.name for output in self.session.get_outputs()]
        if sorted(names) != sorted(OUTPUT_NAMES):
            raise DataError(
                f"not a spaghettinet ONNX export: outputs {names}, expected {list(OUTPUT_NAMES)}", where
            )

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` the model takes."""
        return int(self.input.shape[1]), int(self.input.shape[2])

    def detect(self, pixels: np.ndarray) -> TfliteDetections:
        """Detect objects in one image already resized to :attr:`input_size`.

        Args:
            pixels: RGB ``[H, W, 3]`` raw pixels in [0, 255], scaled ``x * 2/255 - 1`` here as in training.

        Returns:
            :class:`TfliteDetections` with the valid rows only.
        """
        pixels = np.asarray(pixels)
        if pixels.shape != (*self.input_size, 3):
            raise ValueError(f"image must be {(*self.input_size, 3)} (resize first), got {pixels.shape}")
        batch = (pixels.astype(np.float32) * (2.0 / 255.0) - 1.0)[np.newaxis]
        found = dict(
            zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), {self.input.name: batch}), strict=True)
        )
        n = int(found[OUTPUT_NAMES[3]].reshape(-1)[0])
        return TfliteDetections(
            boxes=np.asarray(found[OUTPUT_NAMES[0]][0, :n], np.float32),
            classes=np.rint(found[OUTPUT_NAMES[1]][0, :n]).astype(np.int32),
            scores=np.asarray(found[OUTPUT_NAMES[2]][0, :n], np.float32),
        )


def _bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Half-pixel centres, as tf.image.resize(method="bilinear") without antialiasing samples them.
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    source = np.clip(source, 0.0, in_size - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (source - low)


def resize_for_model(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to ``(height, width)`` as the training input pipeline does.

    Bilinear with half-pixel centres and no antialiasing (``tf.image.resize(..., "bilinear")``), aspect ratio not
    kept, in NumPy so prediction does not need TensorFlow.

    Args:
        image: ``[H, W, 3]`` pixels in [0, 255].
        size: ``(height, width)`` of the model input.

    Returns:
        float32 ``[height, width, 3]`` pixels in [0, 255] (not rounded: training scales the float result).

    Example:
        >>> resize_for_model(np.zeros((480, 640, 3), np.uint8), (128, 128)).shape
        (128, 128, 3)
    """
    pixels = np.asarray(image, dtype=np.float64)
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels.astype(np.float32)
    y0, y1, fy = _bilinear_taps(height, pixels.shape[0])
    x0, x1, fx = _bilinear_taps(width, pixels.shape[1])
    top = pixels[y0][:, x0] * (1 - fx)[None, :, None] + pixels[y0][:, x1] * fx[None, :, None]
    bottom = pixels[y1][:, x0] * (1 - fx)[None, :, None] + pixels[y1][:, x1] * fx[None, :, None]
    return (top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]).astype(np.float32)
