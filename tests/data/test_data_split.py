"""split: same input and seed give the same split; every class with two or more images is in both splits."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from spaghettinet.data.split import assign_split, split
from spaghettinet.data.voc import VocObject, voc_xml_text
from spaghettinet.errors import UsageError


@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=6),
        st.sets(st.sampled_from(["cat", "dog", "emu", "yak"]), max_size=1),
        min_size=2,
        max_size=60,
    ),
    st.floats(0.05, 0.5),
    st.integers(0, 5),
)
@settings(max_examples=60, deadline=None)
def test_split_is_deterministic_and_stratified(classes_by_stem, fraction, seed):
    train, test = assign_split(classes_by_stem, fraction, seed)
    assert (train, test) == assign_split(dict(reversed(list(classes_by_stem.items()))), fraction, seed)
    assert sorted(train + test) == sorted(classes_by_stem) and not set(train) & set(test)
    images_per_class = Counter(c for names in classes_by_stem.values() for c in names)
    for name, count in images_per_class.items():
        if count >= 2:
            assert any(name in classes_by_stem[s] for s in train), name
            assert any(name in classes_by_stem[s] for s in test), name


def test_shares_follow_the_fraction_for_multi_object_images():
    classes = {
        f"i{k:03d}": {["a", "b", "c", "d"][k % 4], ["a", "b", "c", "d"][(k * 7 + 1) % 4]} for k in range(200)
    }
    train, test = assign_split(classes, 0.2, seed=1)
    assert abs(len(test) - 40) <= 4
    per_class_test = Counter(c for s in test for c in classes[s])
    per_class_all = Counter(c for s in classes for c in classes[s])
    for name in per_class_all:
        assert 0.12 <= per_class_test[name] / per_class_all[name] <= 0.3


def test_different_seeds_give_different_splits():
    classes = {f"i{k}": {"a"} for k in range(50)}
    assert assign_split(classes, 0.2, 0)[1] != assign_split(classes, 0.2, 1)[1]


def _folder(tmp_path, count=20):
    folder = tmp_path / "all"
    folder.mkdir()
    for k in range(count):
        Image.new("RGB", (32, 32), (k, 0, 0)).save(folder / f"p{k:02d}.jpg")
        (folder / f"p{k:02d}.xml").write_text(
            voc_xml_text(f"p{k:02d}.jpg", 32, 32, [VocObject("ab"[k % 2], 1, 1, 20, 20)])
        )
    return folder


def test_split_writes_linked_pairs_and_a_summary_and_reruns_identically(tmp_path):
    folder = _folder(tmp_path)
    first = split(folder, tmp_path / "images", test_fraction=0.25, seed=7)
    listing = sorted(p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*"))
    second = split(folder, tmp_path / "images", test_fraction=0.25, seed=7)
    assert (first.train, first.test) == (second.train, second.test)
    assert listing == sorted(
        p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*")
    )
    assert len(first.test) == 5
    for stem in first.test:
        assert (tmp_path / "images" / "test" / f"{stem}.jpg").read_bytes() == (
            folder / f"{stem}.jpg"
        ).read_bytes()
        assert (tmp_path / "images" / "test" / f"{stem}.xml").exists()
    summary = json.loads((tmp_path / "images" / "split.json").read_text())
    assert summary["test"] == first.test and summary["seed"] == 7 and summary["excluded"] == []


def test_output_inside_the_dataset_is_refused(tmp_path):
    folder = _folder(tmp_path, count=4)
    with pytest.raises(UsageError, match="inside the dataset"):
        split(folder, folder / "images")
    with pytest.raises(UsageError):
        split(folder, tmp_path / "images", test_fraction=1.0)
