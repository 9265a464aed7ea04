"""Shared test fixtures: paths to ../shared material, a quiet TensorFlow, no network, and a local zoo server.

Tests never reach the network. ``run`` and ``config`` download the zoo's COCO checkpoint by default, so this file
sets, before any test module is imported, ``SPAGHETTINET_OFFLINE=1`` (no download is attempted; users can set it
too) and, as a second guard, ``SPAGHETTINET_ZOO_URL`` to a port on 127.0.0.1 where nothing listens; the checkpoint
cache (``SPAGHETTINET_CACHE``) is a temporary folder. Tests of the download path lift the first guard and point the
URL at :func:`zoo_server_factory`'s HTTP server on 127.0.0.1, serving an archive made here.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Not setdefault: a developer's own SPAGHETTINET_OFFLINE=0 must not let the suite download.
os.environ["SPAGHETTINET_OFFLINE"] = "1"
os.environ["SPAGHETTINET_ZOO_URL"] = "http://127.0.0.1:9/tests-never-download/"
for _name in [name for name in os.environ if name.startswith("SPAGHETTINET_ZOO_SHA256_")]:
    del os.environ[_name]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED / "reference"
MICROCONTROLLERS_DIR = SHARED / "datasets" / "microcontrollers" / "all"

#: The zoo's tarball of S and the folder inside it, as the zoo names them.
ZOO_S_TARBALL = "spaghettinet_edgetpu_s_2021_10_13.tar.gz"
ZOO_S_TOP = "spaghettinet_edgetpu_s_2021_10_13"


@pytest.fixture(scope="session", autouse=True)
def _checkpoint_cache_in_a_temporary_folder(tmp_path_factory) -> Iterator[Path]:
    """Point ``SPAGHETTINET_CACHE`` away from the user's ``~/.cache`` for the whole session."""
    cache = tmp_path_factory.mktemp("spaghettinet-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPAGHETTINET_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``; tests using it skip, saying why, when the folder is absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(
            f"reference fixtures not found at {REFERENCE_DIR} (they live in ../shared beside the checkout)"
        )
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def microcontrollers_dir() -> Path:
    if not MICROCONTROLLERS_DIR.is_dir():
        pytest.skip(f"real dataset not found at {MICROCONTROLLERS_DIR}")
    return MICROCONTROLLERS_DIR


# ----------------------------------------------------------------------------------------------------------------
# A zoo on 127.0.0.1
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def coco_like_zoo_tarball(tmp_path_factory) -> Path:
    """A tarball laid out like the zoo's S one: a 90-class (COCO) S checkpoint in TF1 format, named as the Object
    Detection API's Saver names it, with ``global_step`` and an optimizer slot as real training checkpoints have.

    Made from a freshly built detector (no ../shared needed); the weights do not depend on the input size.
    """
    import numpy as np

    from spaghettinet.model.detector import build_detector
    from spaghettinet.model.tf1_checkpoint import tf1_variable_map
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    folder = tmp_path_factory.mktemp("zoo-build")
    model = build_detector("s", num_classes=90, input_size=(128, 128))
    tensors = {name: variable.numpy() for name, variable in tf1_variable_map(model).items()}
    tensors["global_step"] = np.array(400000, np.int64)
    stem = "FeatureExtractor/spaghettinet_edgetpu_s/spaghetti_net/stem_node/stem/weights"
    tensors[f"{stem}/Momentum"] = np.zeros_like(tensors[stem])
    prefix = folder / "model.ckpt-400000"
    names = list(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[name]) for name in names],
    )
    tarball = folder / ZOO_S_TARBALL
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.glob("model.ckpt-400000.*")):
            tar.add(path, f"{ZOO_S_TOP}/{path.name}")
        config = b"model { ssd { num_classes: 90 } }\n"
        info = tarfile.TarInfo(f"{ZOO_S_TOP}/pipeline.config")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
    return tarball


@dataclass
class ZooServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (path → bytes, or a handler function); ``requests`` lists
    every path asked for."""

    base_url: str
    files: dict[str, bytes | Callable] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _serve(files: dict[str, bytes | Callable]) -> Iterator[ZooServer]:
    server_state = ZooServer(base_url="", files=dict(files))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            server_state.requests.append(self.path)
            answer = server_state.files.get(self.path.lstrip("/"))
            if callable(answer):
                answer(self)
            elif answer is None:
                self.send_error(404, "Not Found")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/zoo/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def zoo_server_factory():
    """``with zoo_server_factory({"zoo/<tarball>": bytes}) as server:`` serves files on 127.0.0.1."""
    return _serve


@pytest.fixture
def online_zoo(zoo_server_factory, coco_like_zoo_tarball, monkeypatch, tmp_path) -> Iterator[ZooServer]:
    """The downloads of ``run`` and ``config`` go to a local server serving the COCO-like S tarball, into an empty
    cache in ``tmp_path/cache``; ``SPAGHETTINET_OFFLINE`` is lifted for this test."""
    with zoo_server_factory({f"zoo/{ZOO_S_TARBALL}": coco_like_zoo_tarball.read_bytes()}) as server:
        monkeypatch.delenv("SPAGHETTINET_OFFLINE", raising=False)
        monkeypatch.setenv("SPAGHETTINET_ZOO_URL", server.base_url)
        monkeypatch.setenv("SPAGHETTINET_CACHE", str(tmp_path / "cache"))
        yield server
