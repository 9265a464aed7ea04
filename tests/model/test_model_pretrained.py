"""The default start: the zoo's COCO checkpoint from the cache, downloaded once, checked on every use; offline,
one line and from scratch; a bad download is an error naming the file.

Every download goes to an HTTP server on 127.0.0.1 (``online_zoo`` in conftest.py) serving an archive made in the
tests; nothing here reaches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from pathlib import Path

import pytest

from spaghettinet.errors import DataError, UsageError
from spaghettinet.model import pretrained

TARBALL = "spaghettinet_edgetpu_s_2021_10_13.tar.gz"


def _zoo_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "zoo"


def _start(lines: list[str], **options) -> pretrained.Start:
    return pretrained.choose_start("s", log=lines.append, **options)


def _cached_files(zoo_dir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(zoo_dir)) for p in zoo_dir.rglob("*") if p.is_file() and p.name != ".lock"
    )


@contextlib.contextmanager
def _free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def _go_offline_at(url: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPAGHETTINET_OFFLINE", raising=False)
    monkeypatch.setenv("SPAGHETTINET_ZOO_URL", url)
    monkeypatch.setenv("SPAGHETTINET_CACHE", str(tmp_path / "cache"))


def test_first_use_downloads_and_records_the_hash_and_later_uses_make_no_request(
    online_zoo, coco_like_zoo_tarball, tmp_path
):
    lines: list[str] = []
    start = _start(lines)
    zoo_dir = _zoo_dir(tmp_path)
    assert start.kind == "zoo" and not start.fell_back
    assert start.description == "fine-tuned from the zoo's COCO checkpoint (variant s)"
    assert start.prefix == zoo_dir / "s" / "spaghettinet_edgetpu_s_2021_10_13" / "model.ckpt-400000"
    assert Path(f"{start.prefix}.index").is_file()
    assert online_zoo.requests == [f"/zoo/{TARBALL}"]
    actual = hashlib.sha256(coco_like_zoo_tarball.read_bytes()).hexdigest()
    assert start.sha256 == actual
    # One line: where from, the hash it got and that it is recorded (no pinned hash exists yet).
    assert len(lines) == 1 and actual in lines[0] and "--sha256" in lines[0]
    record = (zoo_dir / "spaghettinet_edgetpu_s_2021_10_13.sha256").read_text()
    assert f"{actual}  {TARBALL}" in record.splitlines()
    assert not any(".part" in name for name in _cached_files(zoo_dir))

    again: list[str] = []
    assert _start(again).prefix == start.prefix
    assert again == [] and len(online_zoo.requests) == 1


def test_a_corrupted_cached_tarball_is_named_and_downloaded_again(online_zoo, tmp_path):
    _start([])
    tarball = _zoo_dir(tmp_path) / TARBALL
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))

    lines: list[str] = []
    start = _start(lines)
    assert start.kind == "zoo"
    assert str(tarball) in lines[0] and "corrupted" in lines[0]
    assert len(online_zoo.requests) == 2
    assert _start([]).kind == "zoo" and len(online_zoo.requests) == 2  # repaired: no third download


def test_a_changed_extracted_file_is_extracted_again_without_a_request(online_zoo, tmp_path):
    first = _start([])
    data_file = Path(f"{first.prefix}.data-00000-of-00001")
    original = data_file.read_bytes()
    data_file.write_bytes(original[:1000])

    lines: list[str] = []
    assert _start(lines).prefix == first.prefix
    assert str(data_file) in lines[0] and "extracting" in lines[0]
    assert data_file.read_bytes() == original
    assert len(online_zoo.requests) == 1


def test_nothing_listening_gives_one_line_and_a_start_from_scratch(monkeypatch, tmp_path):
    with _free_port() as port:
        _go_offline_at(f"http://127.0.0.1:{port}/zoo/", monkeypatch, tmp_path)
        lines: list[str] = []
        start = _start(lines)
    assert start.kind == "scratch" and start.fell_back and start.prefix is None
    assert lines == []  # the caller prints start.note: the one line
    assert start.note.startswith("training from scratch: could not download http://127.0.0.1:")
    assert start.note.endswith("Connection refused")
    assert start.description.startswith("from scratch (could not download")
    assert _cached_files(_zoo_dir(tmp_path)) == []


def test_a_server_that_never_answers_times_out(monkeypatch, tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts the connection; nobody ever answers
        _go_offline_at(f"http://127.0.0.1:{silent.getsockname()[1]}/zoo/", monkeypatch, tmp_path)
        start = _start([], timeout_s=0.5)
    assert start.fell_back and start.note.endswith("timed out")


def test_an_http_error_falls_back_with_the_status(zoo_server_factory, monkeypatch, tmp_path):
    with zoo_server_factory({}) as server:
        _go_offline_at(server.base_url, monkeypatch, tmp_path)
        start = _start([])
    assert start.fell_back and "HTTP 404" in start.note


def test_a_download_cut_short_leaves_nothing_in_the_cache(
    zoo_server_factory, coco_like_zoo_tarball, monkeypatch, tmp_path
):
    data = coco_like_zoo_tarball.read_bytes()

    def hang_up_half_way(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.close_connection = True

    with zoo_server_factory({f"zoo/{TARBALL}": hang_up_half_way}) as server:
        _go_offline_at(server.base_url, monkeypatch, tmp_path)
        start = _start([])
    assert start.fell_back and "stopped after" in start.note
    assert _cached_files(_zoo_dir(tmp_path)) == []


def test_a_wrong_checksum_is_an_error_naming_the_downloaded_file(
    online_zoo, coco_like_zoo_tarball, monkeypatch, tmp_path
):
    actual = hashlib.sha256(coco_like_zoo_tarball.read_bytes()).hexdigest()
    monkeypatch.setenv("SPAGHETTINET_ZOO_SHA256_S", "0" * 64)
    with pytest.raises(DataError) as caught:
        _start([])
    rejected = _zoo_dir(tmp_path) / f"{TARBALL}.rejected"
    assert caught.value.path == rejected and rejected.is_file()
    assert actual in str(caught.value) and "0" * 64 in str(caught.value)
    assert _cached_files(_zoo_dir(tmp_path)) == [f"{TARBALL}.rejected"]  # nothing cached

    lines: list[str] = []
    assert (
        _start(lines, sha256=actual.upper()).kind == "zoo"
    )  # the right pin, given on the command line, wins
    assert "as pinned" in lines[0]


def test_a_download_that_is_no_zoo_archive_is_an_error_naming_the_file(
    zoo_server_factory, monkeypatch, tmp_path
):
    with zoo_server_factory({f"zoo/{TARBALL}": b"<html>Sign in to the hotel wifi</html>"}) as server:
        _go_offline_at(server.base_url, monkeypatch, tmp_path)
        with pytest.raises(DataError, match="not a complete gzip file") as caught:
            _start([])
    assert caught.value.path == _zoo_dir(tmp_path) / f"{TARBALL}.rejected"


def test_offline_setting_never_downloads_but_uses_the_cache(online_zoo, monkeypatch):
    monkeypatch.setenv("SPAGHETTINET_OFFLINE", "1")
    start = _start([])
    assert start.fell_back and "SPAGHETTINET_OFFLINE" in start.note
    assert online_zoo.requests == []

    monkeypatch.delenv("SPAGHETTINET_OFFLINE")
    cached = _start([])
    monkeypatch.setenv("SPAGHETTINET_OFFLINE", "1")
    assert _start([]).prefix == cached.prefix
    assert len(online_zoo.requests) == 1


def test_from_scratch_and_a_named_checkpoint_make_no_request(online_zoo, tmp_path):
    scratch = _start([], from_scratch=True)
    assert scratch.description == "from scratch (as asked: --from-scratch)" and scratch.note is None
    named = _start([], fine_tune_from=tmp_path / "mine" / "ckpt-10")
    assert named.kind == "checkpoint" and named.prefix == tmp_path / "mine" / "ckpt-10"
    assert online_zoo.requests == []
    with pytest.raises(UsageError, match="contradict"):
        _start([], from_scratch=True, fine_tune_from="x")
    with pytest.raises(UsageError, match="64 hex digits"):
        _start([], sha256="abc")
