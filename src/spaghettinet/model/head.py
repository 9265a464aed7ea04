"""The SSD head of the reference: one independent box predictor and class predictor per feature map.

Per map ``i`` (TF1 ``ConvolutionalBoxPredictor``, scope ``BoxPredictor_<i>``): each branch reads the map,
``3x3 depthwise + BN + ReLU6`` (``*_depthwise``), then a linear ``1x1`` with a bias to ``A·4`` box codes or
``A·(num_classes+1)`` class logits. Outputs are reshaped ``[B, H, W, A·k] → [B, H·W·A, k]`` (anchor fastest, then
x, then y: the anchor generator's order) and concatenated over maps by the detector.

Predictor conventions (the zoo config's ``conv_hyperparams``): ``random_normal(0.03)`` initializer and slim L2
``4e-5``. The config's ``class_prediction_bias_init -4.6`` never reached the depthwise class head (TF1
``ConvolutionalClassHead``, in tensorflow/models ``research/object_detection/predictors/heads/class_head.py``,
passes it only to the non-depthwise conv); we initialise the class bias to a focal-loss prior ourselves
(``class_bias_init``), which only matters when training from scratch: a loaded TF1 checkpoint overwrites it
exactly, and in the fine-tuning case (other ``num_classes``) the fresh class layer starts from the prior, which
keeps the focal loss stable in the first steps.
"""

from __future__ import annotations

import numpy as np

from spaghettinet.model.blocks import ConvBN
from spaghettinet.tf_runtime import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

#: Anchors per location on the five maps (3 on the first: ``reduce_boxes_in_lowest_layer``).
ANCHORS_PER_LOCATION: tuple[int, ...] = (3, 6, 6, 6, 6)
PREDICTOR_L2_WEIGHT = 4e-5  # the zoo config's box predictor l2_regularizer
PREDICTOR_INIT_STDDEV = 0.03  # its random_normal_initializer
#: Focal-loss prior: sigmoid(-4.6) ≈ 0.01 (the config's class_prediction_bias_init).
FOCAL_PRIOR_BIAS = -4.6
BOX_CODE_SIZE = 4


#: Half-width of the deterministic spread given to a constant class bias (see :func:`_spread_constant`).
BIAS_SPREAD = 1e-3


def _spread_constant(value: float):
    """An initializer filling ``value`` plus a tiny deterministic per-channel spread (±1e-3).

    Why: the TF 2.21 TFLite converter mis-quantizes a conv bias that is one repeated non-zero constant when the
    weights are quantized per channel: it stores one int32 for all channels, so each channel's bias is scaled by
    its own weight scale (measured: -4.6 became -3.1 … -5.5). A spread far below anything training cares about
    keeps the bias a dense constant. A zero bias is unaffected (0 quantizes to 0 at any scale).
    """

    def initialize(shape, dtype=None):
        count = int(np.prod(shape))
        offsets = np.linspace(-BIAS_SPREAD, BIAS_SPREAD, count) if count > 1 else np.zeros(count)
        return tf.constant((value + offsets).reshape(shape), dtype=dtype or "float32")

    return initialize if value != 0 else keras.initializers.Zeros()


class BoxPredictor(keras.layers.Layer):
    """Box and class predictors of one feature map.

    Args:
        index: feature-map index; the TF1 scope is ``BoxPredictor_<index>``.
        num_anchors: anchors per location ``A``.
        num_classes: foreground classes; the class branch has ``num_classes + 1`` slots (column 0 background).
        class_bias_init: initial ClassPredictor bias (see the module docstring; 0 is the TF1 graph's value).
        **kwargs: Keras layer arguments.

    Call arguments:
        inputs: feature map ``[B, H, W, C]``.
        training: batch statistics / range updates.

    Returns:
        ``(box_encodings [B, H·W·A, 4], class_logits [B, H·W·A, num_classes + 1])``.

    Example:
        >>> head = BoxPredictor(0, 3, 2)
        >>> [t.shape for t in head(tf.zeros([1, 4, 4, 8]))]
        [TensorShape([1, 48, 4]), TensorShape([1, 48, 3])]
    """

    def __init__(
        self,
        index: int,
        num_anchors: int,
        num_classes: int,
        class_bias_init: float = FOCAL_PRIOR_BIAS,
        **kwargs,
    ):
        kwargs.setdefault("name", f"BoxPredictor_{index}")
        super().__init__(**kwargs)
        self.index = index
        self.num_anchors = num_anchors
        self.num_classes = num_classes
        self.class_bias_init = class_bias_init
        scope = f"BoxPredictor_{index}"
        init = keras.initializers.RandomNormal(stddev=PREDICTOR_INIT_STDDEV)
        common = {"kernel_initializer": init, "l2_weight": PREDICTOR_L2_WEIGHT}
        self.box_depthwise = ConvBN(
            None,
            3,
            depthwise=True,
            tf1_scope=f"{scope}/BoxEncodingPredictor_depthwise",
            name=f"{scope}_BoxEncodingPredictor_depthwise",
            **common,
        )
        # The 1x1 outputs are not fake-quantized here: one range after the cross-map concat serves all maps and
        # avoids the requantize ops that one range per map would add.
        self.box_predictor = ConvBN(
            num_anchors * BOX_CODE_SIZE,
            1,
            use_bias=True,
            batch_norm=False,
            relu6=False,
            quantize_output=False,
            tf1_scope=f"{scope}/BoxEncodingPredictor",
            name=f"{scope}_BoxEncodingPredictor",
            **common,
        )
        self.class_depthwise = ConvBN(
            None,
            3,
            depthwise=True,
            tf1_scope=f"{scope}/ClassPredictor_depthwise",
            name=f"{scope}_ClassPredictor_depthwise",
            **common,
        )
        self.class_predictor = ConvBN(
            num_anchors * (num_classes + 1),
            1,
            use_bias=True,
            batch_norm=False,
            relu6=False,
            quantize_output=False,
            tf1_scope=f"{scope}/ClassPredictor",
            bias_initializer=_spread_constant(class_bias_init),
            name=f"{scope}_ClassPredictor",
            **common,
        )

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        rows = -1 if height is None or width is None else int(height) * int(width) * self.num_anchors
        boxes = self.box_predictor(self.box_depthwise(inputs, training=training), training=training)
        logits = self.class_predictor(self.class_depthwise(inputs, training=training), training=training)
        # A static row count keeps the reshape free of shape arithmetic in TFLite.
        batch = -1 if rows != -1 else tf.shape(inputs)[0]
        boxes = tf.reshape(boxes, [batch, rows, BOX_CODE_SIZE])
        logits = tf.reshape(logits, [batch, rows, self.num_classes + 1])
        return boxes, logits

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        rows = None if height is None or width is None else height * width * self.num_anchors
        return (input_shape[0], rows, BOX_CODE_SIZE), (input_shape[0], rows, self.num_classes + 1)
