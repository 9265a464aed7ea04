"""Our train/test split in YOLO's layout, so the peer trains and is tested on exactly what we train and test on.

Read from the run's TFRecords (``training/train.record``, ``training/test.record``), which ``spaghettinet run``
makes from its split folders (``images/train``, ``images/test``): every image the records hold, with the same boxes
and classes, and the very JPEG bytes our input pipeline decodes (an upright RGB JPEG byte for byte as in the split,
anything else as our pipeline converted it, EXIF rotation applied). Written as::

    OUT/images/{train,test}/<stem>.jpg
    OUT/labels/{train,test}/<stem>.txt    one line per box: class cx cy w h (0-based class, normalized to [0, 1])
    OUT/data.yaml                         path, train, val (the test split, as Ultralytics needs one), names

The class indices are the label map's ids minus one, so a class name means the same thing on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "test")


@dataclass
class YoloDataset:
    """What :func:`write_yolo_dataset` wrote.

    Attributes:
        root: the dataset folder.
        data_yaml: ``root/data.yaml``.
        class_names: names by 0-based YOLO class (the label map's order).
        images: split → number of images.
        objects: split → number of boxes.
    """

    root: Path
    data_yaml: Path
    class_names: list[str]
    images: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / split


def yolo_file_name(record_file_name: str) -> str:
    """The name an image gets in the YOLO dataset: its stem with ``.jpg`` (the records hold JPEG bytes).

    Example:
        >>> yolo_file_name("IMG_1.png")
        'IMG_1.jpg'
    """
    return Path(record_file_name).stem + ".jpg"


def label_lines(boxes_yxyx_normalized: np.ndarray, classes_one_based: np.ndarray) -> list[str]:
    """YOLO label lines (``class cx cy w h``, 0-based class, normalized) for boxes as our records store them.

    Example:
        >>> label_lines(np.array([[0.2, 0.1, 0.6, 0.5]]), np.array([2]))
        ['1 0.300000 0.400000 0.400000 0.400000']
    """
    lines = []
    for (ymin, xmin, ymax, xmax), cls in zip(
        np.clip(np.asarray(boxes_yxyx_normalized, np.float64).reshape(-1, 4), 0.0, 1.0),
        np.asarray(classes_one_based).ravel(),
        strict=True,
    ):
        center_x, center_y = (xmin + xmax) / 2, (ymin + ymax) / 2
        lines.append(f"{int(cls) - 1} {center_x:.6f} {center_y:.6f} {xmax - xmin:.6f} {ymax - ymin:.6f}")
    return lines


def write_yolo_dataset(training_dir: Path, out: Path) -> YoloDataset:
    """Write the records of a ``spaghettinet run`` workdir's ``training/`` folder as a YOLO dataset in ``out``.

    Args:
        training_dir: the run's ``training/`` (``label_map.pbtxt``, ``train.record``, ``test.record``).
        out: the dataset folder (created; files of the same names are replaced).

    Returns:
        :class:`YoloDataset`.
    """
    from spaghettinet.data.labelmap import read_label_map
    from spaghettinet.data.tfrecord import read_examples

    class_names = read_label_map(training_dir / "label_map.pbtxt").names
    dataset = YoloDataset(root=out, data_yaml=out / "data.yaml", class_names=list(class_names))
    for split in SPLITS:
        image_dir, label_dir = out / "images" / split, out / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        images = objects = 0
        for example in read_examples(training_dir / f"{split}.record"):
            name = yolo_file_name(example.filename)
            (image_dir / name).write_bytes(example.encoded)
            lines = label_lines(example.boxes, example.classes)
            (label_dir / name).with_suffix(".txt").write_text("".join(f"{line}\n" for line in lines))
            images += 1
            objects += len(lines)
        dataset.images[split], dataset.objects[split] = images, objects
    # YAML is a superset of JSON: names written as JSON need no quoting rules of their own.
    settings = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/test",
        "names": list(class_names),
    }
    dataset.data_yaml.write_text(
        "# Written by benchmarks/peer/yolo_dataset.py from spaghettinet's records.\n"
        + json.dumps(settings, indent=1)
        + "\n"
    )
    return dataset
