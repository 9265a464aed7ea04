"""``predict``: run an exported ``.tflite`` on photos, draw the detections, and write them as JSON in pixels.

Each image is resized to the model input as training does (bilinear, aspect ratio not kept), run with LiteRT,
and its detections scoring at least ``threshold`` are drawn on a copy of the original image
(``OUT/<name>.png``) and listed in ``OUT/detections.json`` with boxes in the original image's pixels.
Class names come from the ``labels.txt`` packed in the model, else from ``labels.txt`` beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import atomic_path, write_text_atomic

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


@dataclass
class PredictResult:
    """What :func:`predict` wrote.

    Args:
        json_path: ``OUT/detections.json``.
        pictures: one drawn picture per input image, in input order.
        detections: per image, the list written to the JSON (dicts with ``label``, ``class``, ``score``, ``box``).
    """

    json_path: Path
    pictures: list[Path]
    detections: list[list[dict]]


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (their image files, sorted, not recursive) into a list of image paths.

    Raises:
        DataError: an input does not exist, or a folder holds no image.
    """
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder", path)
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise DataError("no such file or folder", path)
    if not images:
        raise UsageError("give at least one image or folder")
    return images


def class_names_for(model_path: Path, flatbuffer: bytes) -> list[str]:
    """Class names from the labels packed in the model, else ``labels.txt`` beside it, else ``class <i>``."""
    from spaghettinet.deploy.metadata import read_packed_labels

    names = read_packed_labels(flatbuffer)
    if names:
        return names
    beside = model_path.with_name("labels.txt")
    if beside.is_file():
        return [line for line in beside.read_text(encoding="utf-8").splitlines() if line.strip()]
    return []


def _open_image(path: Path):
    # The photo as its boxes see it (turned by its EXIF orientation, RGB, the decompression-bomb limit), as the
    # TFRecords store it: data/images.py states the rule.
    from spaghettinet.data.images import open_as_displayed

    return open_as_displayed(path)


def predict(
    model: str | Path, inputs: list[str | Path], out: str | Path, threshold: float = 0.3
) -> PredictResult:
    """Detect objects in images with an exported ``.tflite`` model.

    Args:
        model: the ``.tflite`` (float or int8) written by ``export``.
        inputs: image files and/or folders of images.
        out: output folder for the pictures and ``detections.json``.
        threshold: detections scoring below this are left out (the model's own NMS threshold applies first).

    Returns:
        :class:`PredictResult`.

    Raises:
        DataError: missing or unreadable model or image.
        UsageError: threshold outside [0, 1].

    Example:
        >>> predict("exported/model_int8.tflite", ["photos/"], "predictions")  # doctest: +SKIP
    """
    from spaghettinet.deploy.runtime import TfliteDetector, resize_for_model
    from spaghettinet.drawing import class_label, draw_detections

    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {threshold}")
    model_path = Path(model)
    if not model_path.is_file():
        raise DataError("no such model file", model_path)
    images = collect_images(list(inputs))
    flatbuffer = model_path.read_bytes()
    detector = TfliteDetector(flatbuffer)
    names = class_names_for(model_path, flatbuffer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    pictures, all_detections, records = [], [], []
    used_names: set[str] = set()
    for image_path in images:
        picture = _open_image(image_path)
        width, height = picture.size
        found = detector.detect(resize_for_model(np.asarray(picture), detector.input_size))
        keep = found.scores >= threshold
        boxes = np.clip(found.boxes[keep], 0.0, 1.0)
        classes, scores = found.classes[keep], found.scores[keep]
        detections = []
        for box, cls, score in zip(boxes, classes, scores, strict=True):
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            detections.append(
                {
                    "label": class_label(int(cls), names),
                    "class": int(cls),
                    "score": round(float(score), 5),
                    "box": {
                        "xmin": round(xmin * width, 2),
                        "ymin": round(ymin * height, 2),
                        "xmax": round(xmax * width, 2),
                        "ymax": round(ymax * height, 2),
                    },
                }
            )
        drawn = draw_detections(picture, boxes, classes, scores, names)
        stem = image_path.stem
        name, n = f"{stem}.png", 1
        while name in used_names:  # two inputs with the same name from different folders
            n += 1
            name = f"{stem}_{n}.png"
        used_names.add(name)
        with atomic_path(out / name, suffix=".png") as tmp:
            drawn.save(tmp, format="PNG")
        pictures.append(out / name)
        all_detections.append(detections)
        records.append(
            {
                "image": str(image_path),
                "picture": name,
                "width": width,
                "height": height,
                "detections": detections,
            }
        )
    document = {"model": str(model_path), "threshold": threshold, "class_names": names, "images": records}
    json_path = write_text_atomic(out / "detections.json", json.dumps(document, indent=2))
    return PredictResult(json_path=json_path, pictures=pictures, detections=all_detections)
