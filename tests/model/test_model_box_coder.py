"""The box coder is the contract between targets (encode) and every decoder (NMS, TFLite op): it must round-trip."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spaghettinet.model.anchors import spaghettinet_anchors
from spaghettinet.model.box_coder import decode, decode_tf, encode, encode_tf, to_center_size


def _boxes_from(corners: np.ndarray, min_size: float) -> np.ndarray:
    """Turn arbitrary [N, 4] numbers into valid yxyx boxes at least ``min_size`` high and wide."""
    y0, x0 = corners[:, 0], corners[:, 1]
    h, w = min_size + np.abs(corners[:, 2]), min_size + np.abs(corners[:, 3])
    return np.stack([y0, x0, y0 + h, x0 + w], axis=-1)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (7, 4), elements=st.floats(-1.0, 1.5)),
    arrays(np.float64, (7, 4), elements=st.floats(-1, 1.5)),
)
def test_decode_inverts_encode(raw_boxes, raw_anchors):
    boxes, anchors = _boxes_from(raw_boxes, 0.001), _boxes_from(raw_anchors, 0.05)
    restored = decode(encode(boxes, anchors), anchors)
    # ε = 1e-8 is added to sizes when encoding only: a size comes back times (1 + ε/h) / (1 + ε/h_anchor), an
    # error of at most 2.5 · 1e-8 / 0.05 = 5e-7 here.
    np.testing.assert_allclose(restored, boxes, atol=1e-6, rtol=0)


def test_encoding_formula_by_hand():
    anchor = np.array([[0.2, 0.2, 0.6, 0.4]])  # centre (0.4, 0.3), h 0.4, w 0.2
    box = np.array([[0.3, 0.1, 0.5, 0.7]])  # centre (0.4, 0.4), h 0.2, w 0.6
    expected = [10 * 0.0 / 0.4, 10 * 0.1 / 0.2, 5 * np.log(0.2 / 0.4), 5 * np.log(0.6 / 0.2)]
    np.testing.assert_allclose(encode(box, anchor)[0], expected, atol=1e-6)
    np.testing.assert_allclose(decode(np.array([expected]), anchor)[0], box[0], atol=1e-7)


def test_custom_scales_are_used():
    anchor = np.array([[0.0, 0.0, 1.0, 1.0]])
    box = np.array([[0.1, 0.1, 1.1, 1.1]])
    np.testing.assert_allclose(encode(box, anchor, scales=(1, 1, 1, 1))[0], [0.1, 0.1, 0, 0], atol=1e-7)


def test_float32_in_float32_out_and_batch_broadcast():
    anchors = spaghettinet_anchors((128, 128))
    codes = np.random.default_rng(0).normal(size=(2, len(anchors), 4)).astype(np.float32)
    boxes = decode(codes, anchors)
    assert boxes.dtype == np.float32 and boxes.shape == codes.shape
    np.testing.assert_allclose(boxes[1], decode(codes[1], anchors))


def test_numpy_and_tensorflow_versions_agree():
    anchors = spaghettinet_anchors((128, 128))
    rng = np.random.default_rng(1)
    codes = rng.normal(scale=2.0, size=(2, len(anchors), 4)).astype(np.float32)
    boxes_np = decode(codes, anchors)
    boxes_tf = decode_tf(codes, anchors).numpy()
    # exp is rounded differently by Eigen and NumPy (≤ 1 ulp), nothing else differs.
    np.testing.assert_allclose(boxes_tf, boxes_np, atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(
        encode_tf(boxes_np, anchors).numpy(), encode(boxes_np, anchors), atol=2e-5, rtol=1e-5
    )


def test_decode_matches_reference_raw_boxes(reference_dir):
    golden = np.load(reference_dir / "spaghettinet_edgetpu_s_golden.npz")
    boxes = decode(golden["box_encodings"], golden["anchors"])
    np.testing.assert_allclose(boxes, golden["raw_detection_boxes"], atol=3e-7, rtol=0)


def test_to_center_size():
    anchors = spaghettinet_anchors((320, 320))
    centers = to_center_size(anchors)
    assert centers.dtype == np.float32
    np.testing.assert_allclose(centers[0], [0.025, 0.025, 0.1, 0.1], atol=1e-7)
    corners = np.concatenate(
        [centers[:, :2] - centers[:, 2:] / 2, centers[:, :2] + centers[:, 2:] / 2], axis=1
    )
    np.testing.assert_allclose(corners, anchors, atol=1e-7)
