"""bfloat16 convolutions for training, where the device computes bfloat16 natively (``use_bfloat16``).

The TF Object Detection API's ``train_config.use_bfloat16`` trains in bfloat16 on TPUs. Here it means: in the
float phase of training, every full convolution takes bfloat16 operands and accumulates in float32 (oneDNN on a
CPU with AVX512_BF16 or AMX, cuDNN on a GPU of compute capability 8.0 or newer); weights, batch norm, activations
between layers, the losses and the optimizer stay float32. Depthwise convolutions stay float32: their backward
pass in bfloat16 took ten times as long as in float32 in an op-level ``tf.profiler`` trace on an AVX512_BF16 CPU.
Evaluation, export and the quantization-aware phase always run float32.

Elsewhere (an AVX2 CPU, where bfloat16 would be emulated and slower, or TensorFlow without oneDNN) training
stays float32 and :func:`native_bfloat16` says why.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

# /proc/cpuinfo flags of x86 CPUs with bfloat16 dot products (Cooper Lake and Zen 4 on, or AMX tiles).
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# Ampere and newer GPUs have bfloat16 tensor cores.
GPU_BFLOAT16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class BFloat16Support:
    """Whether this machine trains convolutions in bfloat16 natively, and why (one line for the user)."""

    native: bool
    reason: str


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> BFloat16Support:
    """Whether the device training runs on computes bfloat16 convolutions natively.

    Args:
        cpuinfo: where the CPU flags are read (Linux).

    Returns:
        :class:`BFloat16Support`.

    Example:
        >>> support = native_bfloat16()
        >>> isinstance(support.native, bool) and bool(support.reason)
        True
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and tuple(capability) >= GPU_BFLOAT16_CAPABILITY:
            return BFloat16Support(True, f"GPU compute capability {capability[0]}.{capability[1]}")
        return BFloat16Support(False, f"the GPU's compute capability {capability} is below 8.0")
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return BFloat16Support(
            False, "TF_ENABLE_ONEDNN_OPTS=0 turns off oneDNN, TensorFlow's bfloat16 kernels"
        )
    if not sys.platform.startswith("linux"):
        return BFloat16Support(False, f"CPU bfloat16 support is only detected on Linux, not {sys.platform}")
    found = [flag for flag in CPU_BFLOAT16_FLAGS if flag in _cpu_flags(cpuinfo)]
    if found:
        return BFloat16Support(True, f"the CPU has {found[0].upper()}")
    return BFloat16Support(
        False, "the CPU has neither AVX512_BF16 nor AMX (bfloat16 would be emulated, slower)"
    )


def set_bfloat16_convolutions(model, enabled: bool = True) -> int:
    """Make the full convolutions of ``model`` train in bfloat16 (or float32 again).

    Only calls with ``training=True`` outside quantization-aware mode change; retrace any ``tf.function`` that
    calls the model afterwards.

    Args:
        model: a detector from :func:`spaghettinet.model.detector.build_detector`.
        enabled: bfloat16 (True) or float32.

    Returns:
        The number of convolutions switched.
    """
    from spaghettinet.model.blocks import ConvBN

    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, ConvBN) and not layer.depthwise:
            layer.bfloat16_training = bool(enabled)
            count += 1
    return count
