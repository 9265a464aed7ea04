"""``run`` and ``config`` start from the zoo's COCO checkpoint by default: downloaded once into the cache, recorded in
pipeline.config, fine-tuned into the data set's classes; offline they say why in one line and train from scratch;
``--from-scratch`` and the demo never ask the network.

The "zoo" is an HTTP server on 127.0.0.1 (conftest.py) serving a 90-class S checkpoint made in the tests.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pytest

from spaghettinet import workflow

TARBALL = "spaghettinet_edgetpu_s_2021_10_13.tar.gz"
# Tiny and fast (CI: 2 cores), as in test_workflow_run.py.
FAST = dict(input_size=128, steps=2, batch_size=2, qat=False, show_progress=False)
ZOO_START = "fine-tuned from the zoo's COCO checkpoint (variant s)"


def _fine_tune_checkpoint(config: Path) -> str | None:
    match = re.search(r'fine_tune_checkpoint:\s*"([^"]*)"', config.read_text())
    return None if match is None else match.group(1)


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory, zoo_server_factory, coco_like_zoo_tarball):
    """One run, online, to the end of training: data, the local zoo, its cache, the run's lines and result."""
    from spaghettinet.data.demo import make_demo

    root = tmp_path_factory.mktemp("pretrained")
    make_demo(root / "data", images=10, seed=1)
    files = {f"zoo/{TARBALL}": coco_like_zoo_tarball.read_bytes()}
    with zoo_server_factory(files) as server, pytest.MonkeyPatch.context() as patch:
        patch.delenv("SPAGHETTINET_OFFLINE", raising=False)
        patch.setenv("SPAGHETTINET_ZOO_URL", server.base_url)
        patch.setenv("SPAGHETTINET_CACHE", str(root / "cache"))
        lines: list[str] = []
        result = workflow.run(root / "data", root / "work", until="train", log=lines.append, **FAST)
        yield {"root": root, "server": server, "lines": lines, "result": result, "patch": patch}


def test_the_default_run_downloads_once_and_fine_tunes_the_coco_checkpoint_into_its_classes(zoo_run):
    root, lines, result = zoo_run["root"], zoo_run["lines"], zoo_run["result"]
    assert zoo_run["server"].requests == [f"/zoo/{TARBALL}"]
    prefix = root / "cache" / "zoo" / "s" / "spaghettinet_edgetpu_s_2021_10_13" / "model.ckpt-400000"
    assert _fine_tune_checkpoint(root / "work" / "training" / "pipeline.config") == str(prefix)
    assert result.start == ZOO_START
    assert result.status_of("train") == "ran"
    # The 4 demo classes get fresh class predictors; everything else comes from the 90-class checkpoint.
    fine_tuning = [line for line in lines if line.startswith("fine-tuning:")]
    assert len(fine_tuning) == 1
    assert (
        "class predictors kept fresh" in fine_tuning[0]
        and "4 classes here, 90 in the checkpoint" in fine_tuning[0]
    )
    assert "ckpt-2" in (root / "work" / "training" / "training-output" / "checkpoint").read_text()
    assert sum(line.startswith("downloaded the zoo's COCO checkpoint") for line in lines) == 1
    assert not any(line.startswith("training from scratch") for line in lines)


def test_another_run_takes_the_checkpoint_from_the_cache_without_a_request(zoo_run):
    root = zoo_run["root"]
    lines: list[str] = []
    result = workflow.run(root / "data", root / "work-2", until="config", log=lines.append, **FAST)
    assert len(zoo_run["server"].requests) == 1
    assert result.start == ZOO_START
    assert _fine_tune_checkpoint(root / "work-2" / "training" / "pipeline.config") == _fine_tune_checkpoint(
        root / "work" / "training" / "pipeline.config"
    )
    assert not any("download" in line for line in lines)


def test_config_command_starts_from_the_cached_checkpoint_and_from_scratch_on_request(zoo_run, capsys):
    from spaghettinet.cli import main

    training = zoo_run["root"] / "work" / "training"
    common = ["config", "--variant", "s", "--label-map", str(training / "label_map.pbtxt")]
    common += ["--train", str(training / "train.record"), "--test", str(training / "test.record")]
    common += ["--input-size", "128"]
    out = zoo_run["root"] / "configs"
    for extra, name in (([], "zoo.config"), (["--from-scratch"], "scratch.config")):
        with pytest.raises(SystemExit) as exited:
            main([*common, "--out", str(out / name), *extra])
        assert exited.value.code in (0, None)
    printed = capsys.readouterr().out
    assert f"start: {ZOO_START}" in printed and "start: from scratch (as asked: --from-scratch)" in printed
    assert _fine_tune_checkpoint(out / "zoo.config") == _fine_tune_checkpoint(training / "pipeline.config")
    assert _fine_tune_checkpoint(out / "scratch.config") is None
    assert len(zoo_run["server"].requests) == 1


def test_switching_to_from_scratch_retrains_without_a_request_and_keeps_the_old_training(zoo_run):
    root = zoo_run["root"]
    old = root / "work" / "training" / "training-output"
    old_checkpoint = hashlib.sha256((old / "checkpoint").read_bytes()).hexdigest()
    lines: list[str] = []
    result = workflow.run(
        root / "data", root / "work", until="train", from_scratch=True, log=lines.append, **FAST
    )
    assert result.status_of("config") == "ran" and result.status_of("train") == "ran"
    assert result.start == "from scratch (as asked: --from-scratch)"
    assert _fine_tune_checkpoint(root / "work" / "training" / "pipeline.config") is None
    assert len(zoo_run["server"].requests) == 1
    kept = [folder for folder in old.parent.iterdir() if folder.name.startswith("training-output.")]
    assert len(kept) == 1 and any(str(kept[0]) in line for line in lines)
    assert hashlib.sha256((kept[0] / "checkpoint").read_bytes()).hexdigest() == old_checkpoint
    assert not any(line.startswith("fine-tuning") for line in lines)


def test_offline_run_says_why_in_one_line_and_goes_on_from_scratch(zoo_run, monkeypatch, tmp_path, capsys):
    from spaghettinet.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("SPAGHETTINET_ZOO_URL", f"http://127.0.0.1:{port}/zoo/")
    monkeypatch.setenv("SPAGHETTINET_CACHE", str(tmp_path / "empty-cache"))
    work = tmp_path / "work"
    argv = [
        "run",
        str(zoo_run["root"] / "data"),
        "--workdir",
        str(work),
        "--input-size",
        "128",
        "--until",
        "config",
    ]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code in (0, None)
    captured = capsys.readouterr()
    # One line, as it happens, says so and why; the summary at the end says it again (stdout).
    why = [line for line in captured.err.splitlines() if "Connection refused" in line]
    assert len(why) == 1
    assert why[0].startswith("training from scratch: could not download http://127.0.0.1:")
    assert "start: from scratch (could not download" in captured.out
    assert _fine_tune_checkpoint(work / "training" / "pipeline.config") is None


def test_a_wrong_checksum_stops_the_run_naming_the_file(zoo_run, monkeypatch, tmp_path, capsys):
    from spaghettinet.cli import main

    monkeypatch.setenv("SPAGHETTINET_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    argv = ["run", str(zoo_run["root"] / "data"), "--workdir", str(work), "--input-size", "128"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--sha256", "ab" * 32])
    assert exited.value.code == 1
    error = re.sub(r"\s+", "", capsys.readouterr().err)
    assert f"{TARBALL}.rejected" in error and "ab" * 32 in error and "Traceback" not in error
    assert not (work / "training" / "pipeline.config").exists()
    assert not (work / "training" / "training-output").exists()


def test_the_demo_trains_from_scratch_without_asking_the_network(zoo_run, tmp_path):
    asked_before = len(zoo_run["server"].requests)
    lines: list[str] = []
    result = workflow.demo(tmp_path / "demo", images=6, steps=1, until="config", log=lines.append)
    assert result.start == "from scratch (as asked: --from-scratch)"
    assert len(zoo_run["server"].requests) == asked_before
    assert not any("download" in line for line in lines)
