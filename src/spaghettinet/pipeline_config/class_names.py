"""The class names a pipeline config's label map gives, for evaluation results and pictures."""

from __future__ import annotations


def class_names(config) -> list[str]:
    """Class names 1..C from the label map of the eval (else train) input reader; ``class N`` when absent.

    Args:
        config: a ``PipelineConfig``.

    Returns:
        ``num_classes`` names, in id order.
    """
    from spaghettinet.data.labelmap import read_label_map

    for reader in (config.eval_input, config.train_input):
        if reader.label_map_path:
            names = list(read_label_map(config.resolve_path(reader.label_map_path)).names)
            return names[: config.model.num_classes] + [
                f"class {i + 1}" for i in range(len(names), config.model.num_classes)
            ]
    return [f"class {i + 1}" for i in range(config.model.num_classes)]
