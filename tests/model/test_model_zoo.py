"""Zoo tarballs: a good one installs and gives a usable prefix; hostile or broken ones are refused, leaving nothing.

No test touches the network: every tarball is built here (the good one around the reference S checkpoint).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from spaghettinet.errors import DataError, UsageError
from spaghettinet.model import zoo

TOP = "spaghettinet_edgetpu_s_2021_10_13"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, **attributes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attributes.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _make_tarball(path: Path, build) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        build(tar)
    return path


def _hostile(tmp_path: Path, build) -> Path:
    return _make_tarball(tmp_path / "hostile.tar.gz", build)


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


def test_absolute_member_is_refused(tmp_path):
    tarball = _hostile(tmp_path, lambda tar: _add_bytes(tar, str(tmp_path / "abs_evil"), b"x"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="absolute path") as caught:
        zoo.install_tarball(tarball, "s", out)
    assert "hostile.tar.gz" in str(caught.value)
    assert not (tmp_path / "abs_evil").exists()
    _assert_nothing_written(out)


def test_dotdot_member_is_refused(tmp_path):
    tarball = _hostile(tmp_path, lambda tar: _add_bytes(tar, f"{TOP}/../../evil.txt", b"x"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"'\.\.'"):
        zoo.install_tarball(tarball, "s", out)
    assert not (tmp_path / "evil.txt").exists()
    _assert_nothing_written(out)


def test_symlink_member_is_refused(tmp_path):
    def build(tar):
        info = tarfile.TarInfo(f"{TOP}/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
        _add_bytes(tar, f"{TOP}/link", b"overwrite through the link")

    out = tmp_path / "out"
    with pytest.raises(DataError, match="is a link"):
        zoo.install_tarball(_hostile(tmp_path, build), "s", out)
    _assert_nothing_written(out)


def test_hardlink_member_is_refused(tmp_path):
    def build(tar):
        info = tarfile.TarInfo(f"{TOP}/hard")
        info.type = tarfile.LNKTYPE
        info.linkname = "../../outside"
        tar.addfile(info)

    out = tmp_path / "out"
    with pytest.raises(DataError, match="is a link"):
        zoo.install_tarball(_hostile(tmp_path, build), "s", out)
    _assert_nothing_written(out)


def test_device_member_is_refused(tmp_path):
    def build(tar):
        info = tarfile.TarInfo(f"{TOP}/null")
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    out = tmp_path / "out"
    with pytest.raises(DataError, match="device"):
        zoo.install_tarball(_hostile(tmp_path, build), "s", out)
    _assert_nothing_written(out)


def test_truncated_gzip_is_refused(tmp_path):
    good = _make_tarball(
        tmp_path / "full.tar.gz", lambda tar: _add_bytes(tar, f"{TOP}/big.bin", bytes(range(256)) * 4096)
    )
    data = good.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(DataError, match="not a complete gzip file") as caught:
        zoo.install_tarball(truncated, "s", out)
    assert "truncated.tar.gz" in str(caught.value)
    _assert_nothing_written(out)


def test_not_a_gzip_is_refused(tmp_path):
    fake = tmp_path / "page.tar.gz"
    fake.write_text("<html>404 Not Found</html>")
    with pytest.raises(DataError, match="not a complete gzip file"):
        zoo.install_tarball(fake, "s", tmp_path / "out")


def test_wrong_sha256_is_refused_with_the_actual_hash(tmp_path):
    tarball = _make_tarball(tmp_path / "t.tar.gz", lambda tar: _add_bytes(tar, "a.txt", b"a"))
    actual = hashlib.sha256(tarball.read_bytes()).hexdigest()
    with pytest.raises(DataError, match=actual):
        zoo.install_tarball(tarball, "s", tmp_path / "out", expected_sha256="0" * 64)


def test_archive_without_checkpoint_is_refused_and_leaves_nothing(tmp_path):
    tarball = _make_tarball(
        tmp_path / "t.tar.gz", lambda tar: _add_bytes(tar, f"{TOP}/pipeline.config", b"model {}")
    )
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no TF1 checkpoint"):
        zoo.install_tarball(tarball, "s", out)
    _assert_nothing_written(out)


def test_unknown_variant_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="choose s, m or l"):
        zoo.install_tarball(tmp_path / "whatever.tar.gz", "xl", tmp_path / "out")


def test_download_rejects_other_url_schemes(tmp_path):
    with pytest.raises(UsageError, match="unsupported URL"):
        zoo.download("s", tmp_path / "out", url="ftp://example.invalid/x.tar.gz")


def test_find_checkpoint_prefix_prefers_the_latest_step(tmp_path):
    for step in (1000, 400000):
        (tmp_path / f"model.ckpt-{step}.index").write_bytes(b"")
        (tmp_path / f"model.ckpt-{step}.data-00000-of-00001").write_bytes(b"")
    (tmp_path / "orphan.index").write_bytes(b"")  # no data file: not a checkpoint
    assert zoo.find_checkpoint_prefix(tmp_path) == tmp_path / "model.ckpt-400000"


@pytest.fixture(scope="module")
def reference_s_tarball(reference_dir, tmp_path_factory) -> Path:
    """A zoo-like tarball around the reference S checkpoint, as the zoo lays it out."""
    source = reference_dir / "spaghettinet_edgetpu_s_ckpt"

    def build(tar):
        tar.add(source / "model.ckpt.index", f"{TOP}/model.ckpt-400000.index")
        tar.add(source / "model.ckpt.data-00000-of-00001", f"{TOP}/model.ckpt-400000.data-00000-of-00001")
        _add_bytes(tar, f"{TOP}/pipeline.config", b"model { ssd { num_classes: 90 } }\n")

    return _make_tarball(tmp_path_factory.mktemp("zoo") / f"{TOP}.tar.gz", build)


def test_good_tarball_installs_with_a_prefix_that_loads(reference_s_tarball, tmp_path):
    out = tmp_path / "zoo"
    expected = hashlib.sha256(reference_s_tarball.read_bytes()).hexdigest()
    installed = zoo.install_tarball(reference_s_tarball, "S", out, expected_sha256=expected.upper())
    assert installed.variant == "s"
    assert installed.sha256 == expected
    assert installed.prefix == out / TOP / "model.ckpt-400000"
    assert Path(f"{installed.prefix}.index").is_file()
    assert sorted(p.name for p in out.iterdir()) == [TOP]  # no staging folder left behind

    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(str(installed.prefix))
    stem = reader.get_tensor("FeatureExtractor/spaghettinet_edgetpu_s/spaghetti_net/stem_node/stem/weights")
    assert stem.shape == (5, 5, 3, 24)


def test_tarball_of_another_variant_is_refused(reference_s_tarball, tmp_path):
    out = tmp_path / "zoo"
    with pytest.raises(DataError, match="'s'.*not the 'm'"):
        zoo.install_tarball(reference_s_tarball, "m", out)
    _assert_nothing_written(out)


def test_cli_zoo_install_reports_a_hostile_tarball_in_one_line(tmp_path, capsys):
    from spaghettinet.cli import main

    tarball = _hostile(tmp_path, lambda tar: _add_bytes(tar, "../evil.txt", b"x"))
    with pytest.raises(SystemExit) as exited:
        main(["zoo", "install", str(tarball), "s", "--out", str(tmp_path / "out")])
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert "hostile.tar.gz" in error and "Traceback" not in error
    assert not (tmp_path / "evil.txt").exists()


def test_zoo_urls_are_https():
    assert all(url.startswith("https://download.tensorflow.org/") for url in zoo.ZOO_URLS.values())


def test_cli_zoo_download_from_a_mirror_installs_and_prints_the_prefix(
    zoo_server_factory, coco_like_zoo_tarball, tmp_path, capsys
):
    from spaghettinet.cli import main

    name = coco_like_zoo_tarball.name
    out = tmp_path / "zoo"
    with zoo_server_factory({f"zoo/{name}": coco_like_zoo_tarball.read_bytes()}) as server:
        with pytest.raises(SystemExit) as exited:
            main(["zoo", "download", "s", "--out", str(out), "--url", server.base_url + name])
    assert exited.value.code in (0, None)
    printed = capsys.readouterr().out
    assert hashlib.sha256(coco_like_zoo_tarball.read_bytes()).hexdigest() in printed
    assert str(out / TOP / "model.ckpt-400000") in printed.replace("\n", "")
    assert sorted(p.name for p in out.iterdir()) == [TOP]  # the download itself is not left behind


def test_cli_zoo_download_with_nothing_listening_is_one_error_and_leaves_nothing(tmp_path, capsys):
    import socket

    from spaghettinet.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "zoo"
    with pytest.raises(SystemExit) as exited:
        main(["zoo", "download", "s", "--out", str(out), "--url", f"http://127.0.0.1:{port}/x.tar.gz"])
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert "Connection refused" in error and "Traceback" not in error
    _assert_nothing_written(out)


def test_more_members_than_the_cap_are_refused_before_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "MAX_MEMBERS", 5)
    tarball = _hostile(tmp_path, lambda tar: [_add_bytes(tar, f"{TOP}/f{i}", b"x") for i in range(6)])
    out = tmp_path / "out"
    with pytest.raises(DataError, match="more than 5 members"):
        zoo.install_tarball(tarball, "s", out)
    _assert_nothing_written(out)


def test_a_gzip_bomb_is_refused_without_inflating_it_whole(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(zoo, "MAX_EXTRACTED_BYTES", 1 << 20)
    monkeypatch.setattr(zoo, "MAX_MEMBERS", 10)
    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as stream:
        for _ in range(64):  # 64 MiB of zeros in about 64 KB
            stream.write(bytes(1 << 20))
    read = []
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        data = real_read(self, size)
        read.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="inflates to more than .* decompression bomb"):
        zoo.install_tarball(bomb, "s", out)
    assert sum(read) < 4 << 20  # stopped near the cap, not after 64 MiB
    _assert_nothing_written(out)


def test_existing_files_in_out_are_never_deleted_or_replaced(coco_like_zoo_tarball, tmp_path, capsys):
    from cli_helpers import run_cli

    out = tmp_path / "zoo"
    mine = out / TOP / "my_notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    (out / "other.txt").write_text("other")
    with pytest.raises(UsageError, match="already exists and differs"):
        zoo.install_tarball(coco_like_zoo_tarball, "s", out)
    assert mine.read_text() == "mine" and (out / "other.txt").read_text() == "other"
    assert sorted(p.name for p in out.iterdir()) == sorted([TOP, "other.txt"])  # no staging folder left
    assert sorted(p.name for p in (out / TOP).iterdir()) == ["my_notes.txt"]
    code, _, err = run_cli(capsys, "zoo", "install", str(coco_like_zoo_tarball), "s", "--out", str(out))
    assert code == 2 and "my_notes" not in err and "already exists" in err
    # A second install of the same tarball into its own folder keeps what is there and succeeds.
    clean = tmp_path / "clean"
    first = zoo.install_tarball(coco_like_zoo_tarball, "s", clean)
    before = {p: p.stat().st_mtime_ns for p in clean.rglob("*")}
    second = zoo.install_tarball(coco_like_zoo_tarball, "s", clean)
    assert second.prefix == first.prefix and {p: p.stat().st_mtime_ns for p in clean.rglob("*")} == before
