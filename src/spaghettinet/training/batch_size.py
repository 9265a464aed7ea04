"""``--batch-size auto``: the largest batch that fits the device's memory (the seed's out-of-memory problem).

* On GPUs: real forward + backward passes at growing batch sizes (doubling), catching
  ``ResourceExhaustedError``; the largest that ran is used (per replica, times the number of replicas).
* On CPU: the peak resident memory of a forward + backward pass is measured at two batch sizes; the difference
  gives the memory per image, and the batch is what fits in half of the available RAM (the rest is left to the
  input pipeline, evaluation and other programs), capped at :data:`CPU_MAX_BATCH` because larger CPU batches
  only slow each step without speeding up learning.

The probes compute gradients but never apply them, so the model is unchanged. Both rules take the trial as a
function of the batch size (:func:`search_on_gpu`, :func:`estimate_on_cpu`), so they can be checked without a GPU.
"""

from __future__ import annotations

import gc
import resource
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: Largest batch chosen on CPU (a 2-core machine runs ~5 images/s at 320²; bigger batches only add latency).
CPU_MAX_BATCH = 32
#: Largest batch tried on GPU (the zoo config trains with batch 512 over 32 replicas).
GPU_MAX_BATCH = 512
#: Share of the available RAM the CPU estimate may use.
CPU_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class BatchSizeChoice:
    """The chosen global batch size and why.

    Attributes:
        batch_size: images per step, all replicas together.
        reason: one sentence for the user.
    """

    batch_size: int
    reason: str


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), or None where unknown."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _gradient_probe(model, input_size):
    """A function running forward + backward at a given batch, without touching the weights."""

    @tf.function(reduce_retracing=True)
    def gradient_sum(batch_size: int):
        images = tf.random.uniform([batch_size, input_size[0], input_size[1], 3], -1.0, 1.0)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            loss = tf.reduce_mean(outputs["class_logits"]) + tf.reduce_mean(outputs["box_encodings"])
        gradients = tape.gradient(loss, model.trainable_variables)
        return tf.add_n([tf.reduce_sum(g) for g in gradients if g is not None])

    def probe(batch_size: int) -> None:
        # Reading the value (outside the traced function) forces the computation to finish.
        float(gradient_sum(batch_size).numpy())

    return probe


def choose_batch_size(
    model, input_size, num_replicas: int = 1, on_gpu: bool | None = None, max_batch: int | None = None
):
    """Pick the largest batch that fits, by trying (GPU) or measuring and estimating (CPU).

    Args:
        model: the detector (its weights are not changed).
        input_size: ``(height, width)``.
        num_replicas: replicas of the distribution strategy; the result is a multiple of it.
        on_gpu: force the GPU or CPU rule (default: GPU when TensorFlow sees one).
        max_batch: an upper bound (e.g. the number of training images).

    Returns:
        :class:`BatchSizeChoice`.

    Example:
        >>> choose_batch_size(model, (320, 320)).batch_size  # doctest: +SKIP
        16
    """
    if on_gpu is None:
        on_gpu = bool(tf.config.list_physical_devices("GPU"))
    probe = _gradient_probe(model, tuple(input_size))
    if on_gpu:
        return search_on_gpu(probe, num_replicas, max_batch)
    return estimate_on_cpu(probe, num_replicas, max_batch)


def search_on_gpu(trial, num_replicas: int = 1, max_batch: int | None = None) -> BatchSizeChoice:
    """Double the per-replica batch from 1 until ``trial`` runs out of device memory; keep the last that ran.

    Args:
        trial: runs one forward + backward pass at a per-replica batch size; raises
            ``tf.errors.ResourceExhaustedError`` (or ``InternalError``, which some allocators raise) when it does
            not fit. Any other error is a real failure and propagates.
        num_replicas: replicas of the distribution strategy (the result is per replica times this).
        max_batch: an upper bound on the global batch (e.g. the number of training images).

    Returns:
        :class:`BatchSizeChoice`.
    """
    limit = min(GPU_MAX_BATCH, max_batch or GPU_MAX_BATCH)
    best = 0
    per_replica = 1
    while per_replica * num_replicas <= limit:
        try:
            trial(per_replica)
        except (tf.errors.ResourceExhaustedError, tf.errors.InternalError):
            break
        best = per_replica
        per_replica *= 2
        gc.collect()
    if best == 0:
        return BatchSizeChoice(
            num_replicas, "even one image per GPU ran out of memory; trying batch 1 per GPU"
        )
    hit_limit = best * 2 * num_replicas > limit
    why = f"capped at {limit}" if hit_limit else f"{best * 2} per GPU ran out of memory"
    return BatchSizeChoice(best * num_replicas, f"largest power of two that ran on the GPU ({why})")


def estimate_on_cpu(
    trial,
    num_replicas: int = 1,
    max_batch: int | None = None,
    peak_memory=None,
    free_memory=None,
) -> BatchSizeChoice:
    """Measure the memory of one more image and take the batch that fits in a share of the free RAM.

    Args:
        trial: runs one forward + backward pass at a batch size (called with 1, then 2).
        num_replicas: replicas of the distribution strategy (the result is a multiple of it).
        max_batch: the number of training images, which no batch exceeds (or None).
        peak_memory: returns the process's peak memory in bytes (default: ``ru_maxrss``).
        free_memory: returns the available memory in bytes or None (default: :func:`available_memory_bytes`).

    Returns:
        :class:`BatchSizeChoice`, between ``num_replicas`` and :data:`CPU_MAX_BATCH` (or ``max_batch``).
    """
    peak_memory = peak_memory or _peak_rss_bytes
    free_memory = free_memory or available_memory_bytes
    small, large = 1, 2
    trial(small)
    after_small = peak_memory()
    trial(large)
    after_large = peak_memory()
    # Peak memory only grows; the step from batch 1 to 2 is the cost of one more image (at least 1 MiB).
    per_image = max(after_large - after_small, 1 << 20)
    available = free_memory()
    cap = min(CPU_MAX_BATCH, max_batch or CPU_MAX_BATCH)
    why_cap = (
        "the number of training images" if cap < CPU_MAX_BATCH else "CPU steps get slower, not better, beyond"
    )
    if available is None:
        batch = cap
        reason = f"available memory unknown; using the CPU cap of {cap}"
    else:
        fits = int(available * CPU_MEMORY_SHARE // per_image)
        batch = max(1, min(cap, fits))
        reason = (
            f"~{per_image / 2**20:.0f} MiB per image measured, {available / 2**30:.1f} GiB available: "
            f"{fits} would fit in half of it" + (f", capped at {cap} ({why_cap})" if fits > cap else "")
        )
    batch = max(num_replicas, batch - batch % num_replicas)
    return BatchSizeChoice(batch, reason)
