"""Multi-worker training (issue 10): ``TF_CONFIG`` switches ``train`` to ``MultiWorkerMirroredStrategy``. Two worker
processes on 127.0.0.1 train a tiny model a few steps; both finish, only the chief keeps checkpoints in its model
folder, and a second run resumes from them. The commands are the ones the README shows.

Cost: two interpreters that import TensorFlow, build SpaghettiNet-S at 64x64 and trace its train step, twice (2
steps, then 1 more on resume), each ending with ``train``'s evaluation of the 2 test images. Most of it is tracing
the distributed train step (about a minute per run on 2 shared cores); about 4 minutes in all there, under 3 on an
idle machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER_TIMEOUT_S = 900


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _command() -> list[str]:
    script = Path(sys.executable).with_name("spaghettinet")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from spaghettinet.cli import main; main()"]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """A pipeline.config at 64x64 over the records of 6 demo images, trained from scratch."""
    from spaghettinet.data.demo import make_demo
    from spaghettinet.data.labelmap import labelmap
    from spaghettinet.data.split import split
    from spaghettinet.data.tfrecord import tfrecord
    from spaghettinet.pipeline_config.generate import config

    root = tmp_path_factory.mktemp("multi_worker")
    make_demo(root / "data", images=6, seed=5)
    split(root / "data", root / "images", test_fraction=0.34)
    training = root / "training"
    labelmap(root / "images", training / "label_map.pbtxt")
    for name in ("train", "test"):
        tfrecord(training / f"{name}.record", training / "label_map.pbtxt", split_dir=root / "images" / name)
    config(
        "s",
        training / "label_map.pbtxt",
        training / "train.record",
        training / "test.record",
        training / "pipeline.config",
        steps=3,
        batch_size=2,
        input_size=64,
        quantize=False,
    )
    return training / "pipeline.config"


def _train_both(config: Path, model_dirs: list[Path], steps: int) -> list[str]:
    """Start worker 0 (the chief) and worker 1 with the same TF_CONFIG cluster; return both outputs."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index, model_dir in enumerate(model_dirs):
        environment = os.environ | {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "",  # one CPU replica per worker, whatever the machine has
            "COLUMNS": "400",  # rich would wrap long paths at 80 columns in a pipe
        }
        command = _command() + [
            "train",
            "--config",
            str(config),
            "--model-dir",
            str(model_dir),
            "--steps",
            str(steps),
            "--batch-size",
            "2",
        ]
        processes.append(
            subprocess.Popen(
                command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=WORKER_TIMEOUT_S)
            outputs.append(output)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for index, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"worker {index} failed:\n{output[-4000:]}"
    return outputs


def _one_line(output: str) -> str:
    return " ".join(
        output.split()
    )  # rich wraps long lines at 80 columns when it does not print to a terminal


def _checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ckpt-*.index"))


def test_two_workers_train_only_the_chief_keeps_checkpoints_and_a_rerun_resumes(tiny_config, tmp_path):
    chief, worker = tmp_path / "chief", tmp_path / "worker1"
    started = time.monotonic()
    outputs = _train_both(tiny_config, [chief, worker], steps=2)
    first_run_s = time.monotonic() - started
    assert _checkpoints(chief) == ["ckpt-2.index"] and (chief / "checkpoint").is_file()
    # Worker 1 saves into its scratch folder only (the strategy needs every worker to write), never beside the
    # chief's checkpoints: its model folder holds no checkpoint of its own.
    assert _checkpoints(worker) == [] and not (worker / "checkpoint").exists()
    assert "done: step 2" in _one_line(outputs[0]) and "done: step 2" in _one_line(outputs[1])

    started = time.monotonic()
    outputs = _train_both(tiny_config, [chief, worker], steps=3)
    resume_s = time.monotonic() - started
    assert f"resuming from {chief / 'ckpt-2'} at step 2" in _one_line(outputs[0])
    assert _checkpoints(chief) == ["ckpt-2.index", "ckpt-3.index"]
    assert _checkpoints(worker) == []
    print(f"multi-worker: first run {first_run_s:.0f} s, resume {resume_s:.0f} s")
