"""Shared test fixtures: paths to ../shared material, and a quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED / "reference"
MICROCONTROLLERS_DIR = SHARED / "datasets" / "microcontrollers" / "all"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``; tests using it skip, saying why, when the folder is absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE_DIR} (they live in ../shared beside the checkout)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def microcontrollers_dir() -> Path:
    if not MICROCONTROLLERS_DIR.is_dir():
        pytest.skip(f"real dataset not found at {MICROCONTROLLERS_DIR}")
    return MICROCONTROLLERS_DIR
