"""The demo dataset: deterministic, valid, learnable-looking (classes, sizes, negatives), in the seed's layout."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from spaghettinet.data.demo import DEMO_CLASSES, IMAGE_SIZE, make_demo
from spaghettinet.data.validate import validate
from spaghettinet.errors import UsageError


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "all"
    make_demo(out, images=60, seed=3)
    return out


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(demo_dir, tmp_path):
    again = make_demo(tmp_path / "again", images=60, seed=3)
    assert _digest(tmp_path / "again") == _digest(demo_dir)
    assert again.images == 60
    make_demo(tmp_path / "other", images=5, seed=4)
    assert _digest(tmp_path / "other")["demo_00000.jpg"] != _digest(demo_dir)["demo_00000.jpg"]


def test_demo_validates_cleanly_with_every_class_and_some_negatives(demo_dir):
    report = validate(demo_dir)
    assert report.ok and report.warnings == []
    assert len(report.pairs) == 60
    assert set(report.class_counts) == set(DEMO_CLASSES)
    assert min(report.class_counts.values()) >= 10
    assert 1 <= report.negative_images <= 12
    sides = np.array(
        [
            max(o.xmax - o.xmin, o.ymax - o.ymin) / IMAGE_SIZE[0]
            for p in report.pairs
            for o in p.annotation.objects
        ]
    )
    # Mostly medium to large objects, some small (spec of the demo in the module docstring).
    assert np.mean((sides >= 0.15) & (sides <= 0.85)) > 0.7 and np.mean(sides < 0.15) > 0.03
    assert all(len(p.annotation.objects) <= 4 for p in report.pairs)


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="not made by"):
        make_demo(tmp_path / "photos", images=2)
    assert (tmp_path / "photos" / "holiday.jpg").exists()
