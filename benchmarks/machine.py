"""What every benchmark records about the machine it ran on, so figures from different runs can be compared."""

from __future__ import annotations

import os
import platform


def describe_machine(**extra) -> dict:
    """Platform, CPU count, Python version and the load average now, plus any ``extra`` fields.

    Example:
        >>> sorted(describe_machine(workers=2))
        ['cpus', 'load_average', 'platform', 'python', 'workers']
    """
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        **extra,
    }
