"""Atomic writes survive a power cut (issue 10, risks): data is fsync-ed before the rename and the folder after it;
an output folder is swapped with its replacement, never deleted before the new one has its name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spaghettinet import io_utils
from spaghettinet.io_utils import atomic_path, write_text_atomic


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, str]]:
    """Record fsync and rename calls in order, as (what, path)."""
    seen: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    def replace(source, target):
        seen.append(("rename", str(target)))
        return real_replace(source, target)

    monkeypatch.setattr(io_utils.os, "fsync", fsync)
    monkeypatch.setattr(io_utils.os, "replace", replace)
    return seen


def test_a_file_is_on_disk_before_it_takes_its_name_and_the_rename_after(tmp_path, events):
    target = tmp_path / "labels.csv"
    write_text_atomic(target, "filename\n")
    assert target.read_text() == "filename\n"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "rename", "fsync"]
    assert Path(events[0][1]).name.startswith(".labels.csv.")  # the temporary file's data
    assert events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)  # the folder holding the new name


def test_a_folder_is_swapped_in_and_every_file_in_it_synced_first(tmp_path, events):
    target = tmp_path / "train"
    target.mkdir()
    (target / "old.jpg").write_text("old")
    with atomic_path(target) as folder:
        folder.mkdir()
        (folder / "sub").mkdir()
        (folder / "new.jpg").write_text("new")
        (folder / "sub" / "deep.xml").write_text("x")
    assert sorted(p.name for p in target.rglob("*")) == ["deep.xml", "new.jpg", "sub"]
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # the old folder is gone afterwards
    synced = {Path(path).name for kind, path in events if kind == "fsync"}
    assert {"new.jpg", "deep.xml", "sub"} <= synced


def test_the_folder_swap_is_one_exchange_where_linux_has_it(tmp_path):
    target = tmp_path / "train"
    target.mkdir()
    (target / "old.jpg").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "new.jpg").write_text("new")
    if not io_utils._exchange(new, target):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    # One call swapped the two names: at no moment was "train" missing.
    assert (target / "new.jpg").is_file() and (new / "old.jpg").is_file()


def test_without_the_exchange_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "train"
    target.mkdir()
    (target / "old.jpg").write_text("old")
    monkeypatch.setattr(io_utils, "_exchange", lambda first, second: False)
    real_replace = os.replace
    calls = []

    def flaky_replace(source, destination):
        calls.append(destination)
        if len(calls) == 2:  # the new folder's rename onto the target: as if the disk failed right there
            raise OSError(5, "Input/output error")
        return real_replace(source, destination)

    monkeypatch.setattr(io_utils.os, "replace", flaky_replace)
    with pytest.raises(OSError), atomic_path(target) as folder:
        folder.mkdir()
        (folder / "new.jpg").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old.jpg"]
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_an_interrupted_block_leaves_the_old_output_alone(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
