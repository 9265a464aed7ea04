"""Quantization-aware mode of the detector: fake-quant helpers, range-tracking layers, and the mode switch.

TF2 has no ``contrib.quantize`` and tfmot's ``quantize_model`` rejects Keras 3 models, so the layers of
``blocks.py`` and ``head.py`` carry their own quantization-aware path:

* weights: batch norm folded into the kernel with the *moving* statistics, then per-channel symmetric 8-bit
  fake-quant, narrow range, on the kernel in its final layout (a reshape between fake-quant and conv makes
  the TFLite converter fail);
* activations: 8-bit fake-quant with a moving-average range at the input, after every ReLU6, residual add,
  merge and concat, on linear conv outputs (without a range there the converter silently keeps them float),
  and once on each concatenated head output.

The mode is a plain Python attribute read when a call is traced (no ``tf.cond``): after
:func:`set_quantization_aware` the training loop must retrace its step function, and an exported QAT model traces
a clean graph. All range variables exist from the moment the model is built, so a checkpoint has the same
variables before and after the switch.

The activation ranges follow ``contrib.quantize``: an exponential moving average (decay 0.999) of the batch
``min(x, 0)`` and ``max(x, 0)``, zero-debiased so that the first batches after the switch set the range rather
than the arbitrary initial values.
"""

from __future__ import annotations

from collections.abc import Iterable

from spaghettinet.tf_runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

#: EMA decay of activation ranges: ``ema_decay``'s default in TF 1.x ``contrib/quantize/python/quantize.py``.
RANGE_EMA_DECAY = 0.999
#: Step count given to ranges loaded from a checkpoint: the zero-debias factor ``1 - decay**steps`` is then ~1,
#: so training continues the loaded range instead of replacing it with the next batch's.
LOADED_RANGE_STEPS = 100_000.0


def fake_quantize_weights(kernel, depthwise: bool = False):
    """Per-output-channel symmetric 8-bit fake quantization of a conv kernel (narrow range, [-127, 127]).

    Args:
        kernel: ``[kh, kw, in, out]`` conv kernel, or ``[kh, kw, channels, 1]`` depthwise kernel.
        depthwise: the kernel is depthwise; its channels are moved last before quantizing and back after, so
            the fake-quant sits on the layout TFLite uses (output channels last).

    Returns:
        The fake-quantized kernel, same shape. Gradients pass straight through (range not trained).

    Example:
        >>> fake_quantize_weights(tf.ones([1, 1, 2, 3])).shape
        TensorShape([1, 1, 2, 3])
    """
    if depthwise:
        kernel = tf.transpose(kernel, [0, 1, 3, 2])
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2]), 1e-8))
    quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, num_bits=8, narrow_range=True
    )
    if depthwise:
        quantized = tf.transpose(quantized, [0, 1, 3, 2])
    return quantized


class RangeTracker:
    """The variables and update rule of one moving-average activation range (a mix-in for Keras layers).

    Creates ``min`` and ``max`` (TF1 names; initial 0 and 6, as the reference's ``_quantizable_concat``)
    and ``range_steps`` (the number of batches seen, for zero-debiasing; not a TF1 variable).
    """

    def _add_range_variables(self, initial_min: float = 0.0, initial_max: float = 6.0) -> None:
        const = keras.initializers.Constant
        self.range_min = self.add_weight(
            name="min", shape=(), initializer=const(initial_min), trainable=False
        )
        self.range_max = self.add_weight(
            name="max", shape=(), initializer=const(initial_max), trainable=False
        )
        self.range_steps = self.add_weight(
            name="range_steps", shape=(), initializer=const(0.0), trainable=False
        )

    def _update_range(self, values) -> None:
        """Fold one batch's ``min(values, 0)`` / ``max(values, 0)`` into the zero-debiased EMA."""
        decay = RANGE_EMA_DECAY
        steps = self.range_steps.value
        old_correction = 1.0 - tf.pow(decay, steps)
        new_correction = 1.0 - tf.pow(decay, steps + 1.0)
        batch_min = tf.minimum(tf.reduce_min(values), 0.0)
        batch_max = tf.maximum(tf.reduce_max(values), 0.0)
        for variable, batch_value in ((self.range_min, batch_min), (self.range_max, batch_max)):
            biased = variable.value * old_correction * decay + (1.0 - decay) * batch_value
            variable.assign(biased / new_correction)
        self.range_steps.assign(steps + 1.0)

    def _fake_quantize(self, values):
        """8-bit fake quantization with the tracked range (0 is kept inside it, as TFLite requires)."""
        low = tf.minimum(self.range_min.value, 0.0)
        high = tf.maximum(self.range_max.value, low + 1e-6)
        return tf.quantization.fake_quant_with_min_max_vars(values, low, high, num_bits=8, narrow_range=False)


class ActivationQuantizer(RangeTracker, keras.layers.Layer):
    """Identity in float mode; 8-bit fake-quant with a moving-average range in quantization-aware mode.

    Args:
        fixed_range: a constant ``(min, max)`` instead of a tracked one (the model input uses ``(-1, 1)``).
        **kwargs: Keras layer arguments (``name``...).

    Call arguments:
        inputs: any float tensor.
        training: update the range from this batch (QAT mode only).

    Returns:
        The tensor, fake-quantized in QAT mode.

    Example:
        >>> quantizer = ActivationQuantizer()
        >>> quantizer.quantization_aware = True
        >>> y = quantizer(tf.constant([0.0, 1.0, 2.0]), training=True)
    """

    def __init__(self, fixed_range: tuple[float, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fixed_range = fixed_range
        self.quantization_aware = False

    def build(self, input_shape) -> None:
        if self.fixed_range is None:
            self._add_range_variables()
        self.built = True

    def call(self, inputs, training=None):
        if not self.quantization_aware:
            return inputs
        if self.fixed_range is not None:
            low, high = self.fixed_range
            return tf.quantization.fake_quant_with_min_max_vars(inputs, low, high, num_bits=8)
        if training:
            self._update_range(inputs)
        return self._fake_quantize(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fixed_range": self.fixed_range}


def _all_layers(model) -> Iterable:
    return model._flatten_layers(include_self=True, recursive=True)


def set_quantization_aware(model, enabled: bool = True) -> int:
    """Switch every layer of ``model`` into (or out of) quantization-aware mode, keeping its variables.

    Batch norm statistics are frozen while the mode is on (the moving statistics are folded into the kernels;
    gamma and beta stay trainable). Any ``tf.function`` that calls the model must be retraced afterwards.

    Args:
        model: a model from :func:`spaghettinet.model.detector.build_detector`.
        enabled: True for QAT, False to return to the float model.

    Returns:
        The number of layers whose mode was set.

    Example:
        >>> set_quantization_aware(model, True)  # doctest: +SKIP
    """
    count = 0
    for layer in _all_layers(model):
        if hasattr(layer, "quantization_aware"):
            layer.quantization_aware = bool(enabled)
            count += 1
    return count


def is_quantization_aware(model) -> bool:
    """True when the model's layers are in quantization-aware mode."""
    return any(getattr(layer, "quantization_aware", False) for layer in _all_layers(model))


def calibrate_quantization_ranges(model, batches: Iterable) -> int:
    """Run QAT-mode forward passes that only update the activation ranges (weights and BN stay untouched).

    In quantization-aware mode batch norm uses its moving statistics even when ``training=True``, so a
    training-mode forward pass changes nothing but the ranges. Useful before exporting a model switched to QAT
    without further training.

    Args:
        model: a QAT-mode detector.
        batches: iterable of float32 image batches ``[B, H, W, 3]`` in [-1, 1].

    Returns:
        The number of batches seen.
    """
    if not is_quantization_aware(model):
        raise ValueError("calibrate_quantization_ranges needs a model in quantization-aware mode")
    seen = 0
    for batch in batches:
        model(batch, training=True)
        seen += 1
    return seen


def mark_ranges_loaded(layers_or_model) -> None:
    """Make the zero-debiased range EMAs continue from their current (loaded) values.

    Only for ranges that were actually loaded: a range still at its initial value must be replaced by the first
    batches it sees, not averaged with them. :func:`~spaghettinet.model.tf1_checkpoint.load_tf1_checkpoint`
    already calls this for the ranges it loaded.

    Args:
        layers_or_model: the layers whose ranges were loaded, or a detector, meaning its TF1-checkpoint ranges
            (the grouped-concat ranges; the QAT activation ranges are never in a TF1 checkpoint).
    """
    if hasattr(layers_or_model, "_flatten_layers"):
        layers = [
            layer
            for layer in _all_layers(layers_or_model)
            if hasattr(layer, "tf1_variables") and isinstance(layer, RangeTracker)
        ]
    else:
        layers = list(layers_or_model)
    for layer in layers:
        if isinstance(layer, RangeTracker) and hasattr(layer, "range_steps"):
            layer.range_steps.assign(LOADED_RANGE_STEPS)
