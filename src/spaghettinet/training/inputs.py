"""tf.data pipelines that feed training and evaluation from the TFRecords of the dataset stage.

Training (:func:`train_dataset`): records are shuffled with the run seed and repeated forever; each example gets its
own seed from ``(run seed, position in the stream)``, so augmentation is stateless and a resumed run that skips the
examples it already consumed sees exactly the batches an uninterrupted run would have seen. Each example is
decoded, augmented (the config's ``data_augmentation_options``, in order; ``training/augment.py``), resized to the
model input with bilinear interpolation without keeping the aspect ratio (the reference's ``fixed_shape_resizer``),
scaled to [-1, 1] (``x * 2/255 - 1``) and given its SSD targets on the anchors. Batches have static shapes
(``drop_remainder``) so the train step is traced once.

Decoded images are cached in memory when the decoded training set fits :func:`decoded_cache_budget` (see there for
the bound): each record is then decoded once per run instead of once per epoch. The cache sits before the shuffle,
which draws the same permutations whatever it shuffles, so the stream (order, per-example seeds, pixels) is the same
with and without it.

Evaluation (:func:`eval_dataset`): the same decode/resize/scale without augmentation, one pass, keeping the true
boxes, classes, difficult flags, file name, source id and original size for COCO evaluation.

Images without objects are kept: they train as negatives (all anchors background).

Records that cannot be used (not a ``tf.train.Example``, an image that does not decode, box lists of different
lengths, a NaN coordinate, a label outside the config's classes) are found before training by
:func:`check_records`, each named with its file, number and reason, and left out of both pipelines; a file with a
bad checksum or cut short is a :class:`~spaghettinet.errors.DataError` naming it. Without this, one such record
stopped training hours in with a raw ``InvalidArgumentError`` from tf.data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError
from spaghettinet.tf_runtime import import_tensorflow

# A known layering cycle (data imports training/, here and for targets below), being moved elsewhere.
from spaghettinet.training.augment import AugmentOptions, augment

tf = import_tensorflow()

#: Shuffle buffer cap (serialized records, so memory is the JPEG bytes): whole-dataset shuffles for the small
#: datasets this tool is for, a bounded window beyond.
_SHUFFLE_BUFFER = 2048
#: Share of the available memory the decoded-image cache may take, and its absolute cap (see decoded_cache_budget).
CACHE_MEMORY_SHARE = 0.25
CACHE_MAX_BYTES = 4 * 1024**3
#: Decoded bytes assumed per encoded byte for a record without image/height and image/width (JPEG photos
#: decode to about 10x their size; 20x errs on the side of not caching).
_DECODED_PER_ENCODED_BYTE = 20


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


@dataclass(frozen=True)
class BadRecord:
    """One record left out of training or evaluation.

    Args:
        file: the TFRecord file.
        number: the record's 1-based position in that file.
        reason: why it cannot be used.
    """

    file: str
    number: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: record {self.number}: {self.reason}"


@dataclass(frozen=True)
class RecordCheck:
    """What :func:`check_records` found: how many records the files hold and which ones are left out.

    Args:
        files: the record files, in reading order.
        counts: records per file.
        bad: the records that cannot be used, in file order.
    """

    files: tuple[str, ...]
    counts: tuple[int, ...]
    bad: tuple[BadRecord, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """Records in all files."""
        return sum(self.counts)

    @property
    def usable(self) -> int:
        """Records that will be read."""
        return self.total - len(self.bad)

    def skipped_mask(self) -> np.ndarray:
        """bool ``[total]``: True at the position (in the files read one after the other) of each bad record."""
        mask = np.zeros(self.total, bool)
        starts = dict(zip(self.files, np.cumsum((0,) + self.counts[:-1]), strict=True))
        for record in self.bad:
            mask[starts[record.file] + record.number - 1] = True
        return mask

    def messages(self, what: str = "training", most: int = 20) -> list[str]:
        """Lines for the user: the count, then each bad record (the first ``most``); empty when all are usable.

        Example:
            >>> RecordCheck(("a.record",), (3,), (BadRecord("a.record", 2, "image does not decode"),)).messages()
            ['skipped 1 of 3 training records that cannot be used:', '  a.record: record 2: image does not decode']
        """
        if not self.bad:
            return []
        lines = [f"skipped {len(self.bad)} of {self.total} {what} records that cannot be used:"]
        lines += [f"  {record}" for record in self.bad[:most]]
        if len(self.bad) > most:
            lines.append(f"  ... and {len(self.bad) - most} more")
        return lines


def _usable_record(num_classes: int | None):
    """A tf.data map function that raises for a record training cannot use (caught by ``ignore_errors``)."""

    def usable(position, serialized):
        example = _parse(
            serialized
        )  # raises for a non-Example, an undecodable image, box lists of other lengths
        boxes, classes = example["boxes"], example["classes"]
        checks = [
            tf.debugging.assert_equal(tf.shape(boxes)[0], tf.shape(classes)[0]),
            tf.debugging.assert_all_finite(boxes, "box coordinate"),
            tf.debugging.assert_positive(tf.size(example["image"])),
        ]
        if num_classes is not None:
            checks += [
                tf.debugging.assert_greater_equal(classes, 1),
                tf.debugging.assert_less_equal(classes, num_classes),
            ]
        with tf.control_dependencies(checks):
            return tf.identity(position)

    return usable


def _why_unusable(record: bytes, num_classes: int | None) -> str:
    """The reason a record failed :func:`_usable_record`, in words (eager, for the few records that fail)."""
    from google.protobuf.message import DecodeError

    from spaghettinet.data.tfrecord import example_problem, tf_error_text

    try:
        proto = tf.train.Example.FromString(record)
    except DecodeError:
        return "not a tf.train.Example (the record does not parse)"
    problem = example_problem(proto, num_classes)
    if problem is not None:
        return problem
    try:
        _parse(tf.constant(record))
    except (tf.errors.InvalidArgumentError, ValueError, UnicodeDecodeError) as exc:
        return f"cannot be read: {tf_error_text(exc)}"
    return "cannot be read (a value of an unexpected type)"


def check_records(files: Sequence[str | Path], num_classes: int | None = None) -> RecordCheck:
    """Find the records of ``files`` that training cannot use, before training starts.

    Every record is parsed and its image decoded once, in a parallel tf.data pass; the few that fail are looked
    at again one by one to say why. Checksums are verified (:func:`spaghettinet.data.tfrecord.count_records`).

    Args:
        files: TFRecord paths, in the order the pipelines read them.
        num_classes: the config's number of classes (labels outside 1..num_classes are unusable).

    Returns:
        A :class:`RecordCheck`.

    Raises:
        DataError: a file is missing, truncated or corrupt, or not one record in all the files is usable (each
            bad record listed).

    Example:
        >>> check = check_records(["train.record"], num_classes=4)  # doctest: +SKIP
        >>> check.usable, [str(record) for record in check.bad]  # doctest: +SKIP
        (118, ['train.record: record 7: cannot be read: Invalid JPEG data or crop window'])
    """
    from spaghettinet.data.tfrecord import count_records

    files = tuple(str(f) for f in files)
    counts, bad = [], []
    for file in files:
        count = count_records(file)
        counts.append(count)
        checked = (
            tf.data.TFRecordDataset(file)
            .enumerate()
            .map(_usable_record(num_classes), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .ignore_errors()
        )
        good = {int(position) for position in checked.as_numpy_iterator()}
        if len(good) == count:
            continue
        for position, record in enumerate(tf.data.TFRecordDataset(file).as_numpy_iterator()):
            if position not in good:
                bad.append(BadRecord(file, position + 1, _why_unusable(record, num_classes)))
    check = RecordCheck(files, tuple(counts), tuple(bad))
    if check.total and not check.usable:
        raise DataError("no record can be used:\n" + "\n".join(check.messages()[1:]))
    return check


def _usable_records(files: Sequence[str], check: RecordCheck | None):
    """The serialized records of ``files`` in order, without those ``check`` found unusable."""
    records = tf.data.TFRecordDataset(list(files))
    if check is None or not check.bad:
        return records
    skipped = tf.constant(check.skipped_mask())
    return (
        records.enumerate()
        .filter(lambda position, _: tf.logical_not(tf.gather(skipped, position)))
        .map(lambda _, serialized: serialized)
    )


def _report_skipped(check: RecordCheck, what: str) -> None:
    # The training loop prints check.messages() when it runs check_records itself and passes the result in; a
    # caller that does not still sees the skipped records, through the logging module's last-resort handler.
    for line in check.messages(what):
        logging.getLogger("spaghettinet").warning(line)


def augment_options(config) -> tuple:
    """The augmentation steps of ``train_config.data_augmentation_options``, in the config's order.

    Args:
        config: a ``PipelineConfig``.

    Returns:
        A tuple of step dataclasses (``pipeline_config.settings``), empty when the config lists none.

    Example:
        >>> [step.proto_name for step in augment_options(cfg)]  # doctest: +SKIP
        ['random_horizontal_flip', 'ssd_random_crop']
    """
    return tuple(config.train.data_augmentation_options)


def _available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (free memory plus reclaimable caches), or free pages elsewhere; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def decoded_cache_budget() -> int:
    """Bytes the decoded-image cache may use: 25 % of the available memory, at most 4 GiB.

    Why these numbers: the cache is the only copy of the decoded images (the shuffle buffer shares its tensors),
    but training needs memory beside it: the model and optimizer, the parallel map's working images (a float32 copy,
    4x the uint8 size, per colour step and parallel call) and prefetched batches, and the machine may run other jobs.
    A quarter of what is free leaves most of it to them. The 4 GiB cap bounds the startup cost (every image is
    decoded before the first batch when the dataset fits the shuffle buffer) and keeps a large machine's memory for
    other work; 4 GiB holds about 3,000 photos of 800x600, far more than the datasets this tool is for.

    Returns:
        The budget in bytes (0 when the available memory is unknown: no cache).

    Example:
        >>> decoded_cache_budget() <= CACHE_MAX_BYTES
        True
    """
    available = _available_memory_bytes()
    if available is None:
        return 0
    return int(min(CACHE_MEMORY_SHARE * available, CACHE_MAX_BYTES))


def decoded_size_bytes(files: Sequence[str | Path], check: RecordCheck | None = None) -> int:
    """Estimated bytes of all images of ``files`` once decoded to uint8 RGB (``height * width * 3`` each).

    Reads the records' ``image/height`` and ``image/width`` (no image is decoded); a record without them counts
    20 decoded bytes per encoded byte.

    Args:
        files: TFRecord paths.
        check: their :class:`RecordCheck`; the records it found unusable are left out.

    Returns:
        The estimate in bytes.

    Example:
        >>> decoded_size_bytes(["train.record"])  # doctest: +SKIP
        171360000
    """
    features = {
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }

    def _size(serialized):
        parsed = tf.io.parse_single_example(serialized, features)
        pixels = parsed["image/height"] * parsed["image/width"]
        encoded = tf.cast(tf.strings.length(parsed["image/encoded"]), tf.int64)
        return tf.where(pixels > 0, pixels * 3, encoded * _DECODED_PER_ENCODED_BYTE)

    sizes = _usable_records([str(f) for f in files], check).map(_size, num_parallel_calls=tf.data.AUTOTUNE)
    return int(sizes.reduce(np.int64(0), lambda total, size: total + size))


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
    options: AugmentOptions | Sequence | None = None,
    cache_images: bool | None = None,
    record_check: RecordCheck | None = None,
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
        options: augmentation steps to use instead of the config's ``data_augmentation_options`` (``()`` for
            none; an :class:`AugmentOptions` is accepted too).
        cache_images: keep decoded images in memory (True), decode every time (False), or decide by size (None:
            cache when :func:`decoded_size_bytes` is within :func:`decoded_cache_budget`). The stream is the same
            either way.
        record_check: :func:`check_records` of ``files``, when the caller ran it (to print its messages); else
            it is run here and any skipped record is logged as a warning. Unusable records are left out.

    Returns:
        ``tf.data.Dataset`` of dicts with ``images`` float32 ``[B, H, W, 3]`` in [-1, 1], ``cls_targets``
        ``[B, N, C + 1]``, ``box_targets`` ``[B, N, 4]``, ``matched`` ``[B, N]``, ``gt_boxes``
        ``[B, max_boxes, 4]``, ``gt_classes`` int32 ``[B, max_boxes]`` (1-based, 0 = padding) and ``num_boxes``
        int32 ``[B]``.

    Example:
        >>> batch = next(iter(train_dataset(cfg, model.anchors, batch_size=4)))  # doctest: +SKIP
        >>> batch["images"].shape  # doctest: +SKIP
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

    def _decode(serialized):
        example = _parse(serialized)
        return {"image": example["image"], "boxes": example["boxes"], "classes": example["classes"]}

    def _example(position, example):
        if not isinstance(example, dict):  # a serialized record: decode it here (no cache)
            example = _decode(example)
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

    if record_check is None:
        record_check = check_records(files, num_classes)
        _report_skipped(record_check, "training")
    if cache_images is None:
        cache_images = decoded_size_bytes(files, record_check) <= decoded_cache_budget()
    records = _usable_records(files, record_check)
    if cache_images:
        # Decoded once: the first pass fills the cache, later epochs read memory.
        records = records.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    # Without the cache the shuffle sits on serialized records (cheap to buffer and to skip). With a fixed seed its
    # sequence of permutations is the same on every run and does not depend on what it shuffles, which is what
    # lets a resume skip to its position and makes the cached stream equal to the uncached one.
    records = records.shuffle(_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
    stream = records.enumerate().skip(int(start_example))
    stream = stream.map(_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.batch(int(batch_size), drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_stream_options())


def eval_dataset(
    config, batch_size: int = 1, files: Sequence[str] | None = None, record_check: RecordCheck | None = None
):
    """One pass over the evaluation records, resized and scaled, with the ground truth kept.

    Args:
        config: a ``PipelineConfig``.
        batch_size: images per batch (the last batch may be smaller).
        files: record files to read instead of the config's eval input paths.
        record_check: as for :func:`train_dataset` (unusable records are left out, and logged when it is run
            here).

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

    if record_check is None:
        record_check = check_records(files, int(config.model.num_classes))
        _report_skipped(record_check, "evaluation")
    stream = _usable_records(files, record_check).map(
        _example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    stream = stream.padded_batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_stream_options())


def _stream_options():
    options = tf.data.Options()
    options.deterministic = True
    # Each worker reads all records and keeps its share: works with a single record file (FILE sharding fails).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
