"""Reading and writing TF Object Detection API pipeline.config files.

``read_config(path)`` parses a file into a typed :class:`PipelineConfig`; ``write_config(cfg, path)`` writes one
atomically; ``generate.config(...)`` builds one for a dataset. Relative paths inside a config resolve against the
config file's folder (``cfg.resolve_path``), not against the current directory as in the TF OD API.
"""

from .reader import describe_warnings, parse_config_text, read_config
from .settings import (
    EvalSettings,
    InputReaderSettings,
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    TrainSettings,
)
from .writer import format_config, write_config

__all__ = [
    "EvalSettings",
    "InputReaderSettings",
    "ModelSettings",
    "PipelineConfig",
    "QuantizationSettings",
    "TrainSettings",
    "describe_warnings",
    "format_config",
    "parse_config_text",
    "read_config",
    "write_config",
]
