"""The learning rate follows the reference formula exactly, survives a save/load, and scales sensibly."""

from __future__ import annotations

import math

import pytest

from spaghettinet.training.schedule import cosine_decay_with_warmup


def _reference_formula(step):
    """Spec §3 "LR formula", written out independently."""
    if step < 2000:
        return 0.13333 + (0.8 - 0.13333) * step / 2000
    if step > 400000:
        return 0.0
    return 0.5 * 0.8 * (1 + math.cos(math.pi * (step - 2000) / (400000 - 2000)))


STEPS = [0, 1, 999, 1999, 2000, 2001, 100000, 201000, 399999, 400000, 400001, 10**6]


def test_python_formula_matches_spec():
    for step in STEPS:
        assert cosine_decay_with_warmup(step, 0.8, 400000, 0.13333, 2000) == pytest.approx(
            _reference_formula(step)
        )
    assert cosine_decay_with_warmup(201000, 0.8, 400000, 0.13333, 2000) == pytest.approx(0.4)


def test_hold_keeps_the_peak():
    assert cosine_decay_with_warmup(150, 1.0, 1000, 0.0, 100, hold_base_rate_steps=100) == 1.0
    assert cosine_decay_with_warmup(200, 1.0, 1000, 0.0, 100, hold_base_rate_steps=100) == 1.0
    assert cosine_decay_with_warmup(600, 1.0, 1000, 0.0, 100, hold_base_rate_steps=100) == pytest.approx(0.5)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="total_steps"):
        cosine_decay_with_warmup(0, 0.8, 100, 0.1, 200)
    with pytest.raises(ValueError, match="warmup_learning_rate"):
        cosine_decay_with_warmup(0, 0.1, 1000, 0.2, 10)
