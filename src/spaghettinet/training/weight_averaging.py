"""Exponential moving averages of the model's weights (``optimizer { use_moving_average: true }``).

The TF Object Detection API keeps a shadow copy of the weights, ``shadow -= (1 - decay) * (shadow - weight)`` after
every step, and evaluates and exports the shadow copy when ``eval_config { use_moving_averages: true }``. Its TF2
trainer takes the optimizer wrapper of ``official/modeling/optimization/ema_optimizer.py`` (tensorflow/models),
whose *dynamic* decay ``min(decay, (1 + step) / (10 + step))`` lets the average follow the weights closely in the
first steps; without it a decay of 0.9999 would average in the random initial weights for the whole of a short
run. We use the same rule.

What is averaged: every trainable weight and the batch-norm moving statistics (a detector evaluated with averaged
kernels but the raw network's statistics disagrees with itself; Ultralytics' ``ModelEMA`` averages both for the
same reason). The quantization ranges of QAT are not: they already are moving averages of the activations.

The shadow variables live in a ``tf.Module`` saved with every checkpoint (``averages``), so a resumed run keeps them
and ``restore_detector`` can load them instead of the raw weights.
"""

from __future__ import annotations

from contextlib import contextmanager

from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: ``moving_average_decay`` default of the TF OD API's optimizer.proto.
DEFAULT_DECAY = 0.9999


def averaged_variables(model) -> list:
    """The model variables that get a moving average: trainable weights and batch-norm moving statistics.

    Args:
        model: a detector from ``build_detector``.

    Returns:
        The variables, in ``model.variables`` order.

    Example:
        >>> len(averaged_variables(model)) > len(model.trainable_variables)  # doctest: +SKIP
        True
    """
    trainable = {id(variable) for variable in model.trainable_variables}
    return [
        variable
        for variable in model.variables
        if id(variable) in trainable or variable.path.endswith(("moving_mean", "moving_variance"))
    ]


def dynamic_decay(step, decay: float):
    """The decay used at ``step``: ``min(decay, (1 + step) / (10 + step))`` (see the module docstring).

    Args:
        step: the number of updates done so far (scalar, Python or tensor).
        decay: the configured ``moving_average_decay``.

    Returns:
        The decay, as a float32 tensor.

    Example:
        >>> float(dynamic_decay(0, 0.9999))
        0.10000000149011612
    """
    step = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + step) / (10.0 + step))


class WeightAverages(tf.Module):
    """Shadow copies of a model's weights, updated after every training step.

    Args:
        model: the detector whose weights are averaged.
        decay: ``moving_average_decay`` (the upper bound of the dynamic decay).

    Example:
        >>> averages = WeightAverages(model, decay=0.9999)  # doctest: +SKIP
        >>> averages.update(step)  # inside the train step, after the optimizer  # doctest: +SKIP
        >>> with averages.swapped_in():  # doctest: +SKIP
        ...     evaluate_model(model, config)
    """

    def __init__(self, model, decay: float = DEFAULT_DECAY):
        super().__init__(name="weight_averages")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"moving_average_decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self._live = averaged_variables(model)
        self.shadows = [
            tf.Variable(tf.convert_to_tensor(variable), trainable=False, name=f"average_{i}")
            for i, variable in enumerate(self._live)
        ]

    def update(self, step) -> None:
        """Move every shadow towards its weight with the decay of ``step`` (graph-safe).

        Args:
            step: updates done before this one (the global step before the train step's increment).
        """
        decay = dynamic_decay(step, self.decay)
        for shadow, variable in zip(self.shadows, self._live, strict=True):
            shadow.assign_sub((1.0 - decay) * (shadow - tf.convert_to_tensor(variable)))

    def reset(self) -> None:
        """Copy the current weights into the shadows (a fine-tuning start or a fresh model)."""
        for shadow, variable in zip(self.shadows, self._live, strict=True):
            shadow.assign(tf.convert_to_tensor(variable))

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with their averages (for evaluation or export; training must stop)."""
        for shadow, variable in zip(self.shadows, self._live, strict=True):
            variable.assign(shadow)

    @contextmanager
    def swapped_in(self):
        """Give the model its averaged weights inside the ``with`` block and the trained ones back after it."""
        kept = [tf.identity(tf.convert_to_tensor(variable)) for variable in self._live]
        self.copy_to_model()
        try:
            yield
        finally:
            for value, variable in zip(kept, self._live, strict=True):
                variable.assign(value)
