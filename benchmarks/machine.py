"""What every benchmark records about the machine it ran on, so figures from different runs can be compared."""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> dict:
    """The CPU's model name and whether it has AVX-512 VNNI, read from ``/proc/cpuinfo`` (Linux).

    int8 speed depends on the instruction set (on an AVX2-only CPU an int8 ``.tflite`` can be slower than the float
    one, on an AVX-512 VNNI CPU about twice as fast), so latency and speed figures are only comparable with it.

    Returns:
        ``cpu_model`` (None where unreadable) and ``avx512_vnni`` (None where unreadable).

    Example:
        >>> sorted(cpu_model())
        ['avx512_vnni', 'cpu_model']
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {"cpu_model": platform.processor() or None, "avx512_vnni": None}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry speaks for all
    flags = fields.get("flags", "").split()
    return {"cpu_model": fields.get("model name"), "avx512_vnni": "avx512_vnni" in flags if flags else None}


def describe_machine(**extra) -> dict:
    """Platform, CPU model and count, Python version and the load average now, plus any ``extra`` fields.

    Example:
        >>> sorted(describe_machine(workers=2))
        ['avx512_vnni', 'cpu_model', 'cpus', 'load_average', 'platform', 'python', 'workers']
    """
    return {
        "platform": platform.platform(),
        **cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        **extra,
    }
