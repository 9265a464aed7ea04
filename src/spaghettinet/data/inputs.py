"""tf.data pipelines that feed training and evaluation from the TFRecords of the dataset stage.

Training (:func:`train_dataset`): records are shuffled with the run seed and repeated forever; each example gets its
own seed from ``(run seed, position in the stream)``, so augmentation is stateless and a resumed run that skips the
examples it already consumed sees exactly the batches an uninterrupted run would have seen. Each example is
decoded, augmented (flip, SSD random crop; ``training/augment.py``), resized to the model input with bilinear
interpolation without keeping the aspect ratio (the reference's ``fixed_shape_resizer``), scaled to [-1, 1]
(``x * 2/255 - 1``) and given its SSD targets on the anchors. Batches have static shapes (``drop_remainder``) so
the train step is traced once.

Evaluation (:func:`eval_dataset`): the same decode/resize/scale without augmentation, one pass, keeping the true
boxes, classes, difficult flags, file name, source id and original size for COCO evaluation.

Images without objects are kept: they train as negatives (all anchors background).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError
from spaghettinet.tf_runtime import import_tensorflow
from spaghettinet.training.augment import AugmentOptions, augment

tf = import_tensorflow()

#: Shuffle buffer cap (serialized records, so memory is the JPEG bytes): whole-dataset shuffles for the small
#: datasets this tool is for, a bounded window beyond.
_SHUFFLE_BUFFER = 2048


def record_files(config, split: str = "train") -> list[str]:
    """Expand the input paths (globs allowed) of the config's train or eval input reader.

    Args:
        config: a ``PipelineConfig``.
        split: ``'train'`` or ``'eval'``.

    Returns:
        The sorted list of existing record files.

    Raises:
        DataError: no pattern is configured, or a pattern matches no file.

    Example:
        >>> record_files(cfg, "eval")  # doctest: +SKIP
        ['/data/run/test.record']
    """
    reader = config.train_input if split == "train" else config.eval_input
    section = "train_input_reader" if split == "train" else "eval_input_reader"
    if not reader.input_paths:
        raise DataError(
            f"{section} has no tf_record_input_reader.input_path; add the {split} TFRecords", config.path
        )
    # Imported here: the tfrecord module is the dataset owner's; it knows shard-set names and globs.
    from spaghettinet.data.tfrecord import list_record_files

    return [
        str(path) for path in list_record_files([str(config.resolve_path(p)) for p in reader.input_paths])
    ]


def augment_options(config) -> AugmentOptions:
    """The augmentations switched on in ``train_config`` (``data_augmentation_options``).

    Args:
        config: a ``PipelineConfig``.

    Returns:
        An :class:`AugmentOptions`.

    Example:
        >>> augment_options(cfg).ssd_random_crop  # doctest: +SKIP
        True
    """
    train = config.train
    return AugmentOptions(
        horizontal_flip=bool(train.random_horizontal_flip),
        flip_probability=float(getattr(train, "horizontal_flip_probability", 0.5)),
        ssd_random_crop=bool(train.ssd_random_crop),
        crop_random_coef=float(train.random_crop_coef),
    )


def resize_and_scale(image, input_size: Sequence[int]):
    """Resize to ``(height, width)`` bilinearly, aspect not kept, and scale pixels to [-1, 1] (``x * 2/255 - 1``).

    Args:
        image: ``[H, W, 3]`` uint8 (or float in 0..255).
        input_size: ``(height, width)``.

    Returns:
        float32 ``[height, width, 3]``.

    Example:
        >>> resize_and_scale(tf.zeros([5, 7, 3], tf.uint8), (4, 4)).shape
        TensorShape([4, 4, 3])
    """
    height, width = int(input_size[0]), int(input_size[1])
    resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="bilinear")
    resized = tf.ensure_shape(resized, [height, width, 3])
    return resized * (2.0 / 255.0) - 1.0


def _pad_rows(values, rows: int, pad_value=0):
    """Pad (or cut) the first axis of ``values`` to exactly ``rows``; cut rows are beyond ``max_number_of_boxes``."""
    values = values[:rows]
    padding = [[0, rows - tf.shape(values)[0]]] + [[0, 0]] * (len(values.shape) - 1)
    padded = tf.pad(values, padding, constant_values=pad_value)
    return tf.ensure_shape(padded, [rows] + values.shape.as_list()[1:])


def _parse(serialized):
    # Imported here: the tfrecord module is the dataset owner's; the pipeline only needs its parser.
    from spaghettinet.data.tfrecord import parse_example

    return parse_example(serialized)


def train_dataset(
    config,
    anchors: np.ndarray,
    batch_size: int,
    seed: int = 0,
    start_example: int = 0,
    files: Sequence[str] | None = None,
    options: AugmentOptions | None = None,
):
    """The endless, shuffled, augmented training stream, batched with SSD targets.

    Args:
        config: a ``PipelineConfig`` (input paths, input size, classes, matcher, augmentation switches).
        anchors: float32 ``[N, 4]`` yxyx normalized anchors of the model (``model.anchors``).
        batch_size: global batch size (all replicas together).
        seed: run seed: the record order and every augmentation draw derive from it.
        start_example: examples already consumed by earlier steps (``step * batch_size`` for a constant batch):
            the stream starts there, so a resumed run continues with the data an uninterrupted run would see.
        files: record files to read instead of the config's train input paths.
        options: augmentations to use instead of the config's (``AugmentOptions(False, 0, False)`` for none).

    Returns:
        ``tf.data.Dataset`` of dicts with ``images`` float32 ``[B, H, W, 3]`` in [-1, 1], ``cls_targets``
        ``[B, N, C + 1]``, ``box_targets`` ``[B, N, 4]``, ``matched`` ``[B, N]``, ``gt_boxes``
        ``[B, max_boxes, 4]``, ``gt_classes`` int32 ``[B, max_boxes]`` (1-based, 0 = padding) and ``num_boxes``
        int32 ``[B]``.

    Example:
        >>> batch = next(iter(train_dataset(cfg, model.anchors, batch_size=4)))  # doctest: +SKIP
        >>> batch["images"].shape
        TensorShape([4, 320, 320, 3])
    """
    from spaghettinet.training.targets import assign_targets

    model_settings = config.model
    files = list(files) if files is not None else record_files(config, "train")
    options = options if options is not None else augment_options(config)
    input_size = tuple(model_settings.input_size)
    max_boxes = int(config.train.max_number_of_boxes)
    anchors_tensor = tf.constant(np.asarray(anchors, np.float32))
    num_classes = int(model_settings.num_classes)

    def _example(position, serialized):
        example = _parse(serialized)
        example_seed = tf.stack([tf.constant(seed, tf.int64), position])
        image, boxes, kept = augment(example["image"], example["boxes"], example_seed, options)
        classes = tf.gather(tf.cast(example["classes"], tf.int32), kept)
        cls_targets, box_targets, matched = assign_targets(
            boxes,
            classes,
            anchors_tensor,
            num_classes,
            matched_threshold=float(model_settings.matched_threshold),
            scales=tuple(model_settings.box_coder_scales),
        )
        return {
            "images": resize_and_scale(image, input_size),
            "cls_targets": tf.cast(cls_targets, tf.float32),
            "box_targets": tf.cast(box_targets, tf.float32),
            "matched": tf.cast(matched, tf.float32),
            "gt_boxes": _pad_rows(tf.cast(boxes, tf.float32), max_boxes),
            "gt_classes": _pad_rows(classes, max_boxes),
            "num_boxes": tf.minimum(tf.shape(classes)[0], max_boxes),
        }

    records = tf.data.TFRecordDataset(files)
    # The shuffle sits on serialized records (cheap to buffer and to skip); with a fixed seed its sequence of
    # permutations is the same on every run, which is what lets a resume skip to its position.
    records = records.shuffle(_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
    stream = records.enumerate().skip(int(start_example))
    stream = stream.map(_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.batch(int(batch_size), drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_stream_options())


def eval_dataset(config, batch_size: int = 1, files: Sequence[str] | None = None):
    """One pass over the evaluation records, resized and scaled, with the ground truth kept.

    Args:
        config: a ``PipelineConfig``.
        batch_size: images per batch (the last batch may be smaller).
        files: record files to read instead of the config's eval input paths.

    Returns:
        ``tf.data.Dataset`` of dicts with ``images`` float32 ``[B, H, W, 3]``, ``gt_boxes`` ``[B, M, 4]`` yxyx
        normalized (padded), ``gt_classes`` int32 ``[B, M]`` (1-based, 0 = padding), ``difficult`` int32
        ``[B, M]``, ``num_boxes`` int32 ``[B]``, ``filename`` / ``source_id`` strings ``[B]``, ``height`` /
        ``width`` int32 ``[B]`` (original pixel size).

    Example:
        >>> for batch in eval_dataset(cfg, batch_size=8):  # doctest: +SKIP
        ...     outputs = model(batch["images"], training=False)
    """
    files = list(files) if files is not None else record_files(config, "eval")
    input_size = tuple(config.model.input_size)

    def _example(serialized):
        example = _parse(serialized)
        classes = tf.cast(example["classes"], tf.int32)
        difficult = example.get("difficult")
        difficult = tf.zeros_like(classes) if difficult is None else tf.cast(difficult, tf.int32)
        return {
            "images": resize_and_scale(example["image"], input_size),
            "gt_boxes": tf.cast(example["boxes"], tf.float32),
            "gt_classes": classes,
            "difficult": difficult,
            "num_boxes": tf.shape(classes)[0],
            "filename": example["filename"],
            "source_id": example["source_id"],
            "height": tf.cast(example["height"], tf.int32),
            "width": tf.cast(example["width"], tf.int32),
        }

    stream = tf.data.TFRecordDataset(files).map(
        _example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    stream = stream.padded_batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_stream_options())


def count_records(files: Sequence[str | Path]) -> int:
    """Number of records in TFRecord files (reads them once; fine for the datasets this tool targets).

    Args:
        files: TFRecord paths.

    Returns:
        The record count.

    Example:
        >>> count_records(["train.record"])  # doctest: +SKIP
        120
    """
    return int(
        tf.data.TFRecordDataset([str(f) for f in files]).reduce(np.int64(0), lambda count, _: count + 1)
    )


def _stream_options():
    options = tf.data.Options()
    options.deterministic = True
    # Each worker reads all records and keeps its share: works with a single record file (FILE sharding fails).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
