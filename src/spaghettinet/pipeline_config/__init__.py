"""Reading and writing TF Object Detection API pipeline.config files.

``read_config(path)`` parses a file into a typed :class:`PipelineConfig`; ``write_config(cfg, path)`` writes one
atomically; ``generate.config(...)`` builds one for a dataset. Relative paths inside a config resolve against the
config file's folder.
"""

from .settings import (
    EvalSettings,
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    TrainSettings,
)

__all__ = [
    "EvalSettings",
    "InputReaderSettings",
    "ModelSettings",
    "PipelineConfig",
    "QuantizationSettings",
    "TrainSettings",
]
