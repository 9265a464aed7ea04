"""spaghettinet: Pascal VOC folder -> trained SpaghettiNet-EdgeTPU detector -> int8 TFLite with NMS and metadata.

The Python API has the same verbs as the command line. Names are imported lazily, so ``import spaghettinet`` does
not import TensorFlow.

Example:
    >>> import spaghettinet
    >>> model = spaghettinet.build_detector("s", num_classes=4, input_size=(128, 128))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "SpaghettiError": "spaghettinet.errors",
    "DataError": "spaghettinet.errors",
    "UsageError": "spaghettinet.errors",
    # dataset stage
    "validate": "spaghettinet.data.validate",
    "split": "spaghettinet.data.split",
    "xml2csv": "spaghettinet.data.csv_labels",
    "labelmap": "spaghettinet.data.labelmap",
    "tfrecord": "spaghettinet.data.tfrecord",
    "make_demo": "spaghettinet.data.demo",
    # model
    "build_detector": "spaghettinet.model.detector",
    "load_tf1_checkpoint": "spaghettinet.model.tf1_checkpoint",
    # training and evaluation
    "config": "spaghettinet.pipeline_config.generate",
    "train": "spaghettinet.training.loop",
    "evaluate": "spaghettinet.evaluation.evaluate",
    # deployment
    "export": "spaghettinet.deploy.export",
    "predict": "spaghettinet.deploy.predict",
    "benchmark": "spaghettinet.evaluation.latency",
    # the whole chain
    "run": "spaghettinet.workflow",
    "demo": "spaghettinet.workflow",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'spaghettinet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
