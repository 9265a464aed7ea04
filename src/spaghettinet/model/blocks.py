"""The building blocks of SpaghettiNet-EdgeTPU in Keras 3, each with a float and a quantization-aware path.

* :class:`ConvBN`: one convolution (full or depthwise) with optional bias, batch norm, ReLU6 and output
  fake-quant; every conv of the network is one of these, named after its TF1 scope so checkpoints load by name.
* :class:`InvertedBottleneck`, :class:`FusedGroupedBottleneck`, :class:`SeparableConv`: the three layer ops.
* :class:`ResampleEdge`: how a node reads another node of a different level.
* :class:`SpaghettiNode`: the stem, or one node (edges, merge, layers).

All convolutions use TF ``SAME`` padding (Keras ``"same"``: any odd pad goes bottom/right). Conventions of the
reference (``extract_features`` in tensorflow/models
``research/object_detection/models/ssd_spaghettinet_feature_extractor.py``): extractor kernels are
initialised ``truncated_normal(0.03)`` and regularised with slim's L2 ``1e-5·Σw²/2`` (Keras ``L2(1e-5 / 2)``);
batch norm has epsilon 1e-3 and momentum 0.97.
"""

from __future__ import annotations

from spaghettinet.model.architecture import FUSED_IBN, IBN, SEPCONV, LayerSpec, NodeSpec
from spaghettinet.model.quantize import ActivationQuantizer, RangeTracker, fake_quantize_weights
from spaghettinet.tf_runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

BATCH_NORM_EPSILON = 1e-3  # slim batch_norm epsilon 0.001
BATCH_NORM_MOMENTUM = 0.97  # slim decay 0.97
EXTRACTOR_L2_WEIGHT = 1e-5  # slim.l2_regularizer(1e-5)
EXTRACTOR_INIT_STDDEV = 0.03  # truncated_normal(0, 0.03)


def _track_in_checkpoints(owner, prefix: str, layers: list) -> None:
    """Make each layer of a Python list an attribute of ``owner`` so ``tf.train.Checkpoint`` saves its variables.

    Keras 3 tracks layers held in a list for ``weights`` and ``_flatten_layers``, but not in TensorFlow's
    checkpoint object graph: without this, checkpoints silently lack every variable of those layers, and a model
    restored without the optimizer (export, evaluate) keeps their initial values. Attributes are tracked, and
    Keras does not count a layer twice.
    """
    for index, layer in enumerate(layers):
        setattr(owner, f"{prefix}_{index}", layer)


def slim_l2(weight: float):
    """Keras regularizer equal to slim's ``l2_regularizer(weight)``, i.e. ``weight·Σw²/2``."""
    return keras.regularizers.L2(weight / 2.0)


class ConvBN(keras.layers.Layer):
    """A convolution with optional bias, batch norm, ReLU6 and (QAT) output fake-quant.

    In float mode: ``conv → (+bias) → (BN) → (ReLU6)``; batch norm uses batch statistics when training.
    In quantization-aware mode: batch norm is folded into the kernel and a bias with the moving statistics
    (frozen), the folded kernel is fake-quantized per output channel, and the output goes through an
    activation fake-quant when ``quantize_output``.

    Args:
        filters: output channels of a full conv; ignored for depthwise.
        kernel_size: square kernel size.
        strides: spatial stride.
        depthwise: depthwise conv (depth multiplier 1) instead of a full conv.
        use_bias: add a bias (only the sepconv depthwise and the predictor 1x1s have one).
        batch_norm: follow with batch norm.
        relu6: apply ReLU6 last.
        quantize_output: in QAT mode, fake-quantize the output (off where a following op owns the range).
        tf1_scope: TF1 variable scope, e.g. ``FeatureExtractor/spaghettinet_edgetpu_s/spaghetti_net/n2_0/expansion``.
        kernel_initializer, bias_initializer: Keras initializers.
        l2_weight: slim L2 weight of the kernel (0 for none).
        **kwargs: Keras layer arguments.

    Call arguments:
        inputs: ``[B, H, W, C]`` float tensor.
        training: batch statistics and range updates.

    Returns:
        ``[B, ceil(H/stride), ceil(W/stride), filters or C]``.

    Example:
        >>> conv = ConvBN(16, 3, strides=2, tf1_scope="demo/conv")
        >>> conv(tf.zeros([1, 8, 8, 3])).shape
        TensorShape([1, 4, 4, 16])
    """

    def __init__(
        self,
        filters: int | None,
        kernel_size: int,
        strides: int = 1,
        depthwise: bool = False,
        use_bias: bool = False,
        batch_norm: bool = True,
        relu6: bool = True,
        quantize_output: bool = True,
        tf1_scope: str = "",
        kernel_initializer=None,
        bias_initializer="zeros",
        l2_weight: float = EXTRACTOR_L2_WEIGHT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.depthwise = depthwise
        self.use_bias = use_bias
        self.batch_norm = batch_norm
        self.relu6 = relu6
        self.quantize_output = quantize_output
        self.tf1_scope = tf1_scope
        self.kernel_initializer = kernel_initializer or keras.initializers.TruncatedNormal(
            stddev=EXTRACTOR_INIT_STDDEV
        )
        self.bias_initializer = bias_initializer
        self.l2_weight = l2_weight
        self.quantization_aware = False
        # Set by model.precision.set_bfloat16_convolutions: the float-mode training convolution in bfloat16.
        self.bfloat16_training = False
        self.macs = 0  # multiply-accumulates of the last traced call (for the model summary)
        if quantize_output:
            self.output_quantizer = ActivationQuantizer(name=f"{self.name}_act_quant")

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.out_channels = channels if self.depthwise else int(self.filters)
        shape = (self.kernel_size, self.kernel_size, channels, 1 if self.depthwise else self.out_channels)
        regularizer = slim_l2(self.l2_weight) if self.l2_weight else None
        self.kernel = self.add_weight(
            name="depthwise_weights" if self.depthwise else "weights",
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="biases", shape=(self.out_channels,), initializer=self.bias_initializer
            )
        if self.batch_norm:
            n = (self.out_channels,)
            self.gamma = self.add_weight(name="gamma", shape=n, initializer="ones")
            self.beta = self.add_weight(name="beta", shape=n, initializer="zeros")
            self.moving_mean = self.add_weight(
                name="moving_mean", shape=n, initializer="zeros", trainable=False
            )
            self.moving_variance = self.add_weight(
                name="moving_variance", shape=n, initializer="ones", trainable=False
            )
        if self.quantize_output:
            self.output_quantizer.build(None)
        self.built = True

    def tf1_variables(self) -> dict:
        """TF1 checkpoint name → Keras variable, for this conv."""
        scope = self.tf1_scope
        names = {f"{scope}/{'depthwise_weights' if self.depthwise else 'weights'}": self.kernel}
        if self.use_bias:
            names[f"{scope}/biases"] = self.bias
        if self.batch_norm:
            for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
                names[f"{scope}/BatchNorm/{attribute}"] = getattr(self, attribute)
        return names

    def _convolve(self, inputs, kernel, training=None):
        strides = [1, self.strides, self.strides, 1]
        if self.depthwise:
            return tf.nn.depthwise_conv2d(inputs, kernel, strides=strides, padding="SAME")
        if self.bfloat16_training and training and not self.quantization_aware:
            # bfloat16 operands, float32 accumulation inside oneDNN / cuDNN; the result goes back to float32
            # before batch norm, so only the convolution's inputs are rounded.
            outputs = tf.nn.conv2d(
                tf.cast(inputs, tf.bfloat16), tf.cast(kernel, tf.bfloat16), strides=strides, padding="SAME"
            )
            return tf.cast(outputs, tf.float32)
        return tf.nn.conv2d(inputs, kernel, strides=strides, padding="SAME")

    def _count_macs(self, outputs) -> None:
        height, width, channels = outputs.shape[1], outputs.shape[2], outputs.shape[3]
        if height is None or width is None:
            return
        per_pixel = self.kernel_size**2 * (channels if self.depthwise else self.kernel.shape[2] * channels)
        self.macs = int(height * width * per_pixel)

    def _batch_norm(self, outputs, training):
        if training and self.trainable:
            # One fused op (FusedBatchNormV3, oneDNN's kernel on the CPU) as TF1's fused batch norm: it normalizes
            # with the biased batch variance and returns the unbiased one, which the moving variance takes. The
            # same arithmetic as moments + batch_normalization, which as separate ops took 44 % of a train step
            # (S at 320², batch 8, one thread: 1.26 s per step; op-level trace with tf.profiler).
            normalized, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                outputs, self.gamma, self.beta, epsilon=BATCH_NORM_EPSILON, is_training=True
            )
            momentum = BATCH_NORM_MOMENTUM
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + unbiased * (1.0 - momentum))
            return normalized
        else:
            mean, variance = self.moving_mean.value, self.moving_variance.value
        return tf.nn.batch_normalization(outputs, mean, variance, self.beta, self.gamma, BATCH_NORM_EPSILON)

    def _folded_kernel_and_bias(self):
        """Kernel and bias with the frozen batch norm folded in (moving statistics)."""
        kernel = self.kernel.value
        bias = self.bias.value if self.use_bias else None
        if not self.batch_norm:
            return kernel, bias
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + BATCH_NORM_EPSILON)
        if self.depthwise:
            kernel = kernel * tf.reshape(scale, [1, 1, -1, 1])
        else:
            kernel = kernel * scale
        folded_bias = self.beta - self.moving_mean * scale
        if bias is not None:
            folded_bias = folded_bias + bias * scale
        return kernel, folded_bias

    def call(self, inputs, training=None):
        if self.quantization_aware:
            kernel, bias = self._folded_kernel_and_bias()
            outputs = self._convolve(inputs, fake_quantize_weights(kernel, depthwise=self.depthwise))
            if bias is not None:
                outputs = tf.nn.bias_add(outputs, bias)
        else:
            outputs = self._convolve(inputs, self.kernel.value, training)
            if self.use_bias:
                outputs = tf.nn.bias_add(outputs, self.bias.value)
            if self.batch_norm:
                outputs = self._batch_norm(outputs, training)
        if self.relu6:
            outputs = tf.nn.relu6(outputs)
        if self.quantize_output:
            outputs = self.output_quantizer(outputs, training=training)
        self._count_macs(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else -(-int(size) // self.strides)

        channels = input_shape[-1] if self.depthwise else self.filters
        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), channels)


class ConcatQuantizer(RangeTracker, keras.layers.Layer):
    """The reference's "quantizable concat" (``_quantizable_concat``) of a fused grouped bottleneck.

    Every slice goes through ``fake_quant_with_min_max_vars`` (8 bits, not narrow range) with ONE shared range
    (``concat/min``, ``concat/max``; initial 0 and 6), then the slices are concatenated on channels. The range
    is the zero-debiased EMA (decay 0.999) of the batch ``min(·,0)`` / ``max(·,0)`` while training, and the
    stored variables in inference. The reference does this even in the float model; ``enabled=False`` gives a
    plain concat (the ``nofakequant`` diagnostic), except in quantization-aware mode, which always quantizes.

    Args:
        enabled: fake-quantize in float mode too (the reference behaviour).
        tf1_scope: the layer's TF1 scope; variables are ``<scope>/concat/min`` and ``.../max``.
        **kwargs: Keras layer arguments.

    Call arguments:
        inputs: list of ``[B, H, W, Ci]`` slices.
        training: update the shared range from this batch.

    Returns:
        ``[B, H, W, ΣCi]``.
    """

    def __init__(self, enabled: bool = True, tf1_scope: str = "", **kwargs):
        super().__init__(**kwargs)
        self.enabled = enabled
        self.tf1_scope = tf1_scope
        self.quantization_aware = False

    def build(self, input_shape) -> None:
        self._add_range_variables(0.0, 6.0)
        self.built = True

    def tf1_variables(self) -> dict:
        return {
            f"{self.tf1_scope}/concat/min": self.range_min,
            f"{self.tf1_scope}/concat/max": self.range_max,
        }

    def call(self, inputs, training=None):
        slices = list(inputs)
        if not (self.enabled or self.quantization_aware):
            return tf.concat(slices, axis=-1)
        if training:
            # With one shared range, quantizing the concat equals concatenating the quantized slices; in
            # training one concat and one fake-quant (and their gradients) cost less than one per slice.
            joined = tf.concat(slices, axis=-1)
            self._update_range(joined)
            return self._fake_quantize(joined)
        # Inference and export keep one fake-quant per slice, as the TF1 graph, so that the converter finds a
        # range on every input of the CONCATENATION.
        return tf.concat([self._fake_quantize(piece) for piece in slices], axis=-1)


class _ResidualLayer(keras.layers.Layer):
    """Shared plumbing of the three layer ops: the optional residual add and its QAT fake-quant."""

    def __init__(self, spec: LayerSpec, filters: int, tf1_scope: str, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.filters = filters
        self.tf1_scope = tf1_scope
        if spec.residual:
            self.residual_quantizer = ActivationQuantizer(name=f"{self.name}_add_quant")

    def _conv(self, filters, kernel, part, **kwargs) -> ConvBN:
        return ConvBN(
            filters, kernel, tf1_scope=f"{self.tf1_scope}/{part}", name=f"{self.name}_{part}", **kwargs
        )

    def _finish(self, inputs, outputs, training):
        if not self.spec.residual:
            return outputs
        return self.residual_quantizer(outputs + inputs, training=training)

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else -(-int(size) // self.spec.stride)

        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.filters)


class InvertedBottleneck(_ResidualLayer):
    """IBN: 1x1 expansion to ``filters·expansion`` + BN + ReLU6, kxk depthwise (stride) + BN + ReLU6, linear
    1x1 projection + BN (the reference's ``_expanded_conv``; the expansion width is based on the OUTPUT
    width).

    Args:
        spec: the layer's :class:`LayerSpec`.
        filters: output channels (the node's width).
        tf1_scope: e.g. ``FeatureExtractor/<arch>/spaghetti_net/n2_0``.

    Example:
        >>> block = InvertedBottleneck(ibn(3, 4), 16, "demo/ibn", name="demo_ibn")
        >>> block(tf.zeros([1, 8, 8, 16])).shape
        TensorShape([1, 8, 8, 16])
    """

    def __init__(self, spec: LayerSpec, filters: int, tf1_scope: str, **kwargs):
        super().__init__(spec, filters, tf1_scope, **kwargs)
        self.expansion = self._conv(filters * spec.expansion, 1, "expansion")
        self.depthwise = self._conv(None, spec.kernel, "depthwise", strides=spec.stride, depthwise=True)
        self.projection = self._conv(filters, 1, "projection", relu6=False)

    def call(self, inputs, training=None):
        x = self.expansion(inputs, training=training)
        x = self.depthwise(x, training=training)
        x = self.projection(x, training=training)
        return self._finish(inputs, x, training)


class FusedGroupedBottleneck(_ResidualLayer):
    """Fused grouped IBN: the input channels split into ``groups`` slices, a full kxk conv (stride) per slice to
    ``C/groups·expansion`` channels + BN + ReLU6 (``slice_<g>``), the quantized concat, a linear 1x1 projection
    + BN (the reference's ``_ibn_fused_grouped``; per-group width is based on the INPUT width). The slices
    stay separate Conv2Ds, as in the TF1 graph: whether the Edge TPU compiler accepts a grouped CONV_2D is
    unknown.

    Args:
        spec: the layer's :class:`LayerSpec` (op ``fused_ibn``).
        filters: output channels.
        tf1_scope: e.g. ``FeatureExtractor/<arch>/spaghetti_net/n1_0``.
        concat_fake_quant: the reference's always-on concat fake-quant (False only for diagnostics).
    """

    def __init__(
        self, spec: LayerSpec, filters: int, tf1_scope: str, concat_fake_quant: bool = True, **kwargs
    ):
        super().__init__(spec, filters, tf1_scope, **kwargs)
        self.concat_fake_quant = concat_fake_quant
        self.slices: list[ConvBN] = []
        self.concat = ConcatQuantizer(concat_fake_quant, tf1_scope, name=f"{self.name}_concat")
        self.projection = self._conv(filters, 1, "projection", relu6=False)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        groups = self.spec.groups
        if channels % groups:
            raise ValueError(f"{self.name}: {channels} input channels do not split into {groups} groups")
        self.slice_channels = channels // groups
        for index in range(groups):
            self.slices.append(
                self._conv(
                    self.slice_channels * self.spec.expansion,
                    self.spec.kernel,
                    f"slice_{index}",
                    strides=self.spec.stride,
                    quantize_output=False,  # the shared concat range quantizes every slice
                )
            )
        _track_in_checkpoints(self, "slice_layer", self.slices)
        self.built = True

    def call(self, inputs, training=None):
        pieces = tf.split(inputs, self.spec.groups, axis=-1)
        outputs = [conv(piece, training=training) for conv, piece in zip(self.slices, pieces, strict=True)]
        x = self.concat(outputs, training=training)
        x = self.projection(x, training=training)
        return self._finish(inputs, x, training)


class SeparableConv(_ResidualLayer):
    """Separable conv: kxk depthwise (stride) WITH a bias and no BN/activation, then 1x1 pointwise + BN + ReLU6
    (the reference's ``_sep_conv``).

    Args:
        spec: the layer's :class:`LayerSpec` (op ``sepconv``).
        filters: output channels.
        tf1_scope: e.g. ``FeatureExtractor/<arch>/spaghetti_net/n4_1``.
    """

    def __init__(self, spec: LayerSpec, filters: int, tf1_scope: str, **kwargs):
        super().__init__(spec, filters, tf1_scope, **kwargs)
        self.depthwise = self._conv(
            None,
            spec.kernel,
            "depthwise",
            strides=spec.stride,
            depthwise=True,
            use_bias=True,
            batch_norm=False,
            relu6=False,
        )
        self.pointwise = self._conv(filters, 1, "pointwise")

    def call(self, inputs, training=None):
        x = self.depthwise(inputs, training=training)
        x = self.pointwise(x, training=training)
        return self._finish(inputs, x, training)


_LAYER_CLASSES = {IBN: InvertedBottleneck, FUSED_IBN: FusedGroupedBottleneck, SEPCONV: SeparableConv}


def nearest_upsample(inputs, ratio: int):
    """Repeat every pixel ``ratio x ratio`` times, with the op TFLite maps to RESIZE_NEAREST_NEIGHBOR.

    ``align_corners=False, half_pixel_centers=False`` is the reference's eval-graph op; for an integer ratio it
    equals UpSampling2D, which would convert to TILE + RESHAPE instead.
    """
    height, width = inputs.shape[1], inputs.shape[2]
    if height is None or width is None:
        size = tf.shape(inputs)[1:3] * ratio
    else:
        size = [int(height) * ratio, int(width) * ratio]
    return tf.raw_ops.ResizeNearestNeighbor(
        images=inputs, size=size, align_corners=False, half_pixel_centers=False
    )


class ResampleEdge(keras.layers.Layer):
    """A resample edge from node ``src`` to node ``dst`` (the reference's ``_spaghetti_edge``): no activation.

    * going up by ``r``: 1x1 conv + BN (``1x1_before_upsample``), then nearest-neighbour x``r``;
    * going down by ``r``: max-pool ``(r+1)x(r+1)`` stride ``r`` SAME, THEN 1x1 + BN (``1x1_after_downsampling``);
    * same level: 1x1 + BN (``1x1_no_resampling``).

    Args:
        source_level, target_level: levels of the two nodes.
        filters: the target node's width.
        tf1_scope: ``FeatureExtractor/<arch>/edge_<src>_<dst>`` (edges are outside ``spaghetti_net/``).
    """

    def __init__(self, source_level: int, target_level: int, filters: int, tf1_scope: str, **kwargs):
        super().__init__(**kwargs)
        self.source_level = source_level
        self.target_level = target_level
        if target_level < source_level:
            part = "1x1_before_upsample"
        elif target_level > source_level:
            part = "1x1_after_downsampling"
        else:
            part = "1x1_no_resampling"
        self.conv = ConvBN(
            filters, 1, relu6=False, tf1_scope=f"{tf1_scope}/{part}", name=f"{self.name}_{part}"
        )

    def call(self, inputs, training=None):
        x = inputs
        if self.target_level > self.source_level:
            ratio = 2 ** (self.target_level - self.source_level)
            x = tf.nn.max_pool2d(x, ksize=ratio + 1, strides=ratio, padding="SAME")
        x = self.conv(x, training=training)
        if self.target_level < self.source_level:
            x = nearest_upsample(x, 2 ** (self.source_level - self.target_level))
        return x


class SpaghettiNode(keras.layers.Layer):
    """One node of the graph: the stem, or edges + merge + layers (the reference's ``_spaghetti_node``).

    Args:
        spec: the node's :class:`NodeSpec`.
        source_levels: level of every source node, in ``spec.sources`` order.
        arch_scope: ``FeatureExtractor/<arch>``.
        concat_fake_quant: see :class:`FusedGroupedBottleneck`.
        **kwargs: Keras layer arguments; the layer is named after the node (``"c0n3"``).

    Call arguments:
        inputs: the stem takes the image; a passthrough node its source's tensor; a merging node a list of its
            sources' tensors in ``spec.sources`` order.
        training: batch statistics / range updates.

    Returns:
        ``[B, H/2**level, W/2**level, spec.filters]`` (SAME rounding up).
    """

    def __init__(
        self,
        spec: NodeSpec,
        source_levels: tuple[int, ...],
        arch_scope: str,
        concat_fake_quant: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("name", spec.name)
        super().__init__(**kwargs)
        self.spec = spec
        self.source_levels = tuple(source_levels)
        net_scope = f"{arch_scope}/spaghetti_net"
        self.stem = None
        self.edges: list[ResampleEdge] = []
        if spec.is_stem:
            self.stem = ConvBN(
                spec.filters,
                spec.stem_kernel,
                strides=2,
                tf1_scope=f"{net_scope}/stem_node/stem",
                name=f"{spec.name}_stem",
            )
        elif not spec.is_passthrough:
            for source, level in zip(spec.sources, self.source_levels, strict=True):
                self.edges.append(
                    ResampleEdge(
                        level,
                        spec.level,
                        spec.filters,
                        f"{arch_scope}/edge_{source}_{spec.name}",
                        name=f"edge_{source}_{spec.name}",
                    )
                )
            self.merge_quantizers = [
                ActivationQuantizer(name=f"{spec.name}_merge_quant_{i}") for i in range(len(self.edges) - 1)
            ]
        self.blocks = []
        for index, layer in enumerate(spec.layers):
            kwargs = {"concat_fake_quant": concat_fake_quant} if layer.op == FUSED_IBN else {}
            self.blocks.append(
                _LAYER_CLASSES[layer.op](
                    layer,
                    spec.filters,
                    f"{net_scope}/{spec.name}_{index}",
                    name=f"{spec.name}_{index}",
                    **kwargs,
                )
            )
        _track_in_checkpoints(self, "edge_layer", self.edges)
        _track_in_checkpoints(self, "merge_quantizer", getattr(self, "merge_quantizers", []))
        _track_in_checkpoints(self, "block_layer", self.blocks)

    def _merge(self, inputs, training):
        """Top-left crop to the edge from the lowest-level source, pairwise sum, ReLU6."""
        outputs = [edge(x, training=training) for edge, x in zip(self.edges, inputs, strict=True)]
        reference = outputs[self.source_levels.index(min(self.source_levels))]
        height, width = reference.shape[1], reference.shape[2]
        cropped = []
        for tensor in outputs:
            # A crop that changes nothing would still leave a STRIDED_SLICE in TFLite: skip it.
            if tensor.shape[1] != height or tensor.shape[2] != width:
                tensor = tensor[:, :height, :width, :]
            cropped.append(tensor)
        # Pairwise `+` (the converter keeps add_n as a float ADD_N); partial sums get their own range.
        total = cropped[0]
        for index, tensor in enumerate(cropped[1:]):
            total = total + tensor
            if index < len(cropped) - 2:
                total = self.merge_quantizers[index](total, training=training)
        return self.merge_quantizers[-1](tf.nn.relu6(total), training=training)

    def call(self, inputs, training=None):
        if self.stem is not None:
            x = self.stem(inputs, training=training)
        elif self.spec.is_passthrough:
            x = inputs
        else:
            x = self._merge(list(inputs), training)
        for block in self.blocks:
            x = block(x, training=training)
        return x
