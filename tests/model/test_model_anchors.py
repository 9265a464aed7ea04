"""Anchors must match the TF1 reference exactly in values and order, since the predictor's rows align with them."""

from __future__ import annotations

import numpy as np
import pytest

from spaghettinet.model.anchors import (
    anchors_per_location,
    box_specs,
    feature_map_sizes,
    generate_ssd_anchors,
    spaghettinet_anchors,
)


def test_anchors_match_reference_golden(reference_dir):
    golden = np.load(reference_dir / "spaghettinet_edgetpu_s_golden.npz")["anchors"]
    anchors = generate_ssd_anchors(feature_map_sizes((320, 320)), (320, 320))
    assert anchors.dtype == np.float32
    assert anchors.shape == golden.shape == (2058, 4)
    np.testing.assert_allclose(anchors, golden, atol=1e-6, rtol=0)


def test_reference_facts_at_320():
    anchors = spaghettinet_anchors((320, 320))
    # spec §1.8: anchor 0 is the 0.1-scale square at the first 20x20 cell; anchors are not clipped.
    np.testing.assert_allclose(anchors[0], [-0.025, -0.025, 0.075, 0.075], atol=1e-7)
    last = anchors[-1]
    np.testing.assert_allclose((last[:2] + last[2:]) / 2, [5 / 6, 5 / 6], atol=1e-6)
    np.testing.assert_allclose(last[2:] - last[:2], [np.sqrt(0.95), np.sqrt(0.95)], atol=1e-6)
    assert anchors.min() < 0 and anchors.max() > 1


def test_feature_map_sizes_follow_same_padding():
    assert feature_map_sizes((320, 320)) == [(20, 20), (10, 10), (5, 5), (3, 3), (3, 3)]
    assert feature_map_sizes((128, 128)) == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert feature_map_sizes((300, 200)) == [(19, 13), (10, 7), (5, 4), (3, 2), (3, 2)]
    with pytest.raises(ValueError):
        feature_map_sizes((0, 320))


def test_anchors_per_location_and_counts_at_128():
    assert anchors_per_location() == [3, 6, 6, 6, 6]
    anchors = spaghettinet_anchors((128, 128))
    assert anchors.shape == (8 * 8 * 3 + 4 * 4 * 6 + 2 * 2 * 6 + 6 + 6, 4)


def test_order_is_level_then_y_then_x_then_box_spec():
    anchors = spaghettinet_anchors((128, 128)).astype(np.float64)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    sizes = anchors[:, 2:] - anchors[:, :2]
    level0 = centers[: 8 * 8 * 3].reshape(8, 8, 3, 2)
    grid = (np.arange(8) + 0.5) / 8
    np.testing.assert_allclose(level0[:, :, :, 0], np.broadcast_to(grid[:, None, None], (8, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(level0[:, :, :, 1], np.broadcast_to(grid[None, :, None], (8, 8, 3)), atol=1e-6)
    # Box spec fastest: at one location, (0.1, 1), (0.2, 2), (0.2, 0.5) as height/width pairs.
    expected = [[0.1, 0.1], [0.2 / np.sqrt(2), 0.2 * np.sqrt(2)], [0.2 * np.sqrt(2), 0.2 / np.sqrt(2)]]
    np.testing.assert_allclose(sizes[:3], expected, atol=1e-6)


def test_interpolated_scales_match_spec():
    extra = [layer[-1][0] for layer in box_specs()[1:]]
    np.testing.assert_allclose(extra, [0.47203, 0.66215, 0.85110, 0.97468], atol=1e-5)


def test_non_square_image_keeps_anchors_square_in_pixels():
    image_size = (320, 640)
    anchors = generate_ssd_anchors(feature_map_sizes(image_size), image_size).astype(np.float64)
    heights_px = (anchors[:, 2] - anchors[:, 0]) * image_size[0]
    widths_px = (anchors[:, 3] - anchors[:, 1]) * image_size[1]
    # Layer 0's first box per location has aspect 1: square in pixels, 0.1 of the shorter side.
    np.testing.assert_allclose(heights_px[0], 32.0, rtol=1e-6)
    np.testing.assert_allclose(widths_px[0], 32.0, rtol=1e-6)
    ratios = widths_px / heights_px
    assert {round(r, 4) for r in ratios} == {1.0, 2.0, 0.5, 3.0, round(1 / 0.3333333, 4), round(0.3333333, 4)}
