"""Import TensorFlow quietly.

TensorFlow prints start-up lines users cannot act on (the oneDNN notice, failed CUDA probes on machines without a
GPU). :func:`import_tensorflow` hides them unless debug output was asked for (``spaghettinet --debug`` sets
``SPAGHETTINET_DEBUG=1``). Modules that need TF call it instead of importing TF at the top, so commands that do
not need TF (``--help``, ``validate``, ``split``) start in well under a second.
"""

from __future__ import annotations

import os
import sys


def debug_enabled() -> bool:
    return os.environ.get("SPAGHETTINET_DEBUG", "") not in ("", "0")


def import_tensorflow():
    """Return the ``tensorflow`` module, imported with its start-up chatter hidden unless debugging."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not debug_enabled():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        # The CUDA probe writes straight to file descriptor 2 from C++, below Python's sys.stderr: silence the fd.
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            import tensorflow as tf
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
        tf.get_logger().setLevel("ERROR")
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # pragma: no cover - absl ships with TF
            pass
        return tf
    import tensorflow as tf

    return tf


def import_keras():
    """Return ``keras`` (Keras 3), importing TensorFlow quietly first."""
    import_tensorflow()
    import keras

    return keras
