"""The peer's own virtual environment, outside the repository: created once, reused while its requirements hold.

Ultralytics and torch are never dependencies of spaghettinet; they live only here. The environment is made with
``python3.11 -m venv`` and filled with pip in three groups, each its own ``pip install``:

1. torch and torchvision, first and pinned, so that nothing later asks pip for another torch (on this project's
   machines these two versions lie on disk for Python 3.11; PyPI's torchvision does not import beside the other
   torch build there);
2. ultralytics, pinned, so figures from different days compare the same peer;
3. what Ultralytics' int8 ``.tflite`` export needs (``format="litert", quantize=8``): litert-torch,
   ai-edge-quantizer and ai-edge-litert. Optional: when this group fails, the benchmark scores the PyTorch weights
   and says why.

A marker file in the environment records the groups installed; a later run with the same groups reuses it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = Path("~/.cache/spaghettinet-bench/peer-venv")
DEFAULT_PYTHON = "python3.11"
CORE_REQUIREMENTS = (
    ("torch==2.14.1", "torchvision==0.29.1"),
    ("ultralytics==8.4.190",),
)
INT8_EXPORT_REQUIREMENTS = ("litert-torch==0.10.0", "ai-edge-quantizer==0.10.0", "ai-edge-litert==2.3.0")
MARKER = ".bench-peer.json"
#: Distributions whose versions the benchmark reports.
REPORTED_PACKAGES = (
    "ultralytics",
    "torch",
    "torchvision",
    "numpy",
    "litert-torch",
    "ai-edge-quantizer",
    "ai-edge-litert",
)
#: Seconds one ``pip install`` group may take (torch is several GB when it comes from the registry).
INSTALL_TIMEOUT_S = 3600


class PeerEnvironmentError(Exception):
    """The peer environment could not be made; the message is the exact failure (command and its last lines)."""


@dataclass
class PeerEnvironment:
    """A ready peer environment.

    Attributes:
        path: the environment's folder.
        python: its interpreter.
        int8_export: whether the int8 export's packages are installed.
        int8_export_error: why not, when they are not.
        versions: installed versions of :data:`REPORTED_PACKAGES` (None when absent).
        created: True when this call made or refilled it.
    """

    path: Path
    python: Path
    int8_export: bool
    int8_export_error: str | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    created: bool = False

    def size_mib(self) -> float:
        """Disk space the environment takes."""
        total = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file() and not p.is_symlink())
        return round(total / 2**20, 1)


def _run(command: list[str], what: str, log: Path) -> None:
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        try:
            finished = subprocess.run(
                command, stdout=sink, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerEnvironmentError(f"{what}: `{' '.join(command)}` failed: {exc}") from exc
    if finished.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise PeerEnvironmentError(
            f"{what}: `{' '.join(command)}` exited {finished.returncode}; last lines:\n" + "\n".join(tail)
        )


def _marker(int8_export: bool) -> dict:
    return {
        "core": [list(group) for group in CORE_REQUIREMENTS],
        "int8_export": list(INT8_EXPORT_REQUIREMENTS) if int8_export else None,
    }


def installed_versions(python: Path) -> dict[str, str | None]:
    """Versions of :data:`REPORTED_PACKAGES` in the environment of ``python`` (None for an absent one)."""
    program = (
        "import importlib.metadata as m, json, sys\n"
        "def version(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({name: version(name) for name in sys.argv[1:]}))\n"
    )
    output = subprocess.run(
        [str(python), "-c", program, *REPORTED_PACKAGES], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output)


def ensure_peer_environment(
    path: Path = DEFAULT_PATH, base_python: str = DEFAULT_PYTHON, log=print
) -> PeerEnvironment:
    """Create the peer environment at ``path`` unless it already holds the same requirement groups.

    Args:
        path: the environment's folder (``~`` is expanded); must lie outside the repository.
        base_python: the interpreter that makes it (``python3.11``: torch's files on this disk are for 3.11).
        log: called with one line per step.

    Returns:
        :class:`PeerEnvironment`.

    Raises:
        PeerEnvironmentError: the interpreter is missing, ``venv`` or a core ``pip install`` failed; the message
            names the command and quotes its last lines (the full output is in ``<path>.install.log``).
    """
    path = path.expanduser()
    python = path / "bin" / "python"
    marker = path / MARKER
    log_path = path.with_name(path.name + ".install.log")
    wanted_with_export = _marker(True)
    recorded = None
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            recorded = None
    if python.is_file() and recorded is not None and recorded.get("core") == wanted_with_export["core"]:
        int8_export = recorded.get("int8_export") == wanted_with_export["int8_export"]
        return PeerEnvironment(
            path=path,
            python=python,
            int8_export=int8_export,
            int8_export_error=None if int8_export else recorded.get("int8_export_error"),
            versions=installed_versions(python),
        )

    if shutil.which(base_python) is None:
        raise PeerEnvironmentError(
            f"{base_python} is not on PATH; pass --peer-python with a Python 3.11 interpreter"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")
    except OSError as exc:
        raise PeerEnvironmentError(f"cannot write the peer venv's folder {path.parent}: {exc}") from exc
    log(f"peer environment: creating {path} (install log: {log_path})")
    if not python.is_file():
        _run([base_python, "-m", "venv", str(path)], "creating the peer venv", log_path)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"], "upgrading pip in the peer venv", log_path)
    for group in CORE_REQUIREMENTS:
        log(f"peer environment: pip install {' '.join(group)}")
        _run([*pip, *group], f"installing {', '.join(group)}", log_path)
    int8_export, int8_export_error = True, None
    log(f"peer environment: pip install {' '.join(INT8_EXPORT_REQUIREMENTS)}")
    try:
        _run([*pip, *INT8_EXPORT_REQUIREMENTS], "installing the int8 export's packages", log_path)
    except PeerEnvironmentError as exc:
        int8_export, int8_export_error = False, str(exc)
        log(f"peer environment: no int8 export ({exc})")
    recorded = _marker(int8_export) | {"int8_export_error": int8_export_error}
    marker.write_text(json.dumps(recorded, indent=1) + "\n", encoding="utf-8")
    return PeerEnvironment(
        path=path,
        python=python,
        int8_export=int8_export,
        int8_export_error=int8_export_error,
        versions=installed_versions(python),
        created=True,
    )
