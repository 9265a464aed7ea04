"""The default start of a training: the TF1 detection zoo's COCO checkpoint of the variant, from a local cache.

A detector fine-tuned from COCO weights learns a few hundred photos far better than one trained from random
weights, so ``spaghettinet run`` and ``spaghettinet config`` start from the zoo's checkpoint of the chosen variant
unless told otherwise (:func:`choose_start`):

* ``--fine-tune-from PREFIX`` (``config``: ``--fine-tune-checkpoint``) starts from that checkpoint instead;
* ``--from-scratch`` starts from random weights and touches no network;
* otherwise the checkpoint comes from the cache, downloaded once (over https) when it is not there yet. When the
  download cannot happen (no network, refused, timed out, an HTTP error), one line says so with the reason and the
  training starts from scratch. Bytes that did arrive but fail their checksum or are not a valid zoo archive are an
  error naming the file: a mirror or proxy handing out something else must not go unnoticed.

The cache (``~/.cache/spaghettinet``, or the folder in ``SPAGHETTINET_CACHE``) holds, per variant::

    zoo/spaghettinet_edgetpu_s_2021_10_13.tar.gz      the download, as it came
    zoo/spaghettinet_edgetpu_s_2021_10_13.sha256      sha256 of the tarball and of each extracted file
                                                      (``sha256sum -c`` format, paths relative to zoo/)
    zoo/s/spaghettinet_edgetpu_s_2021_10_13/model.ckpt-400000.{index,data-*}   the extracted checkpoint

Trust: the zoo publishes no checksums, and the real tarballs' sha256 could not be computed where this was written
(no internet), so :data:`PINNED_SHA256` is empty. A first download is therefore checked for being a complete, safe
archive holding a checkpoint of the right variant (:func:`spaghettinet.model.zoo.install_tarball`), and its hash is
recorded beside it; every later use hashes the cached files again and compares (a corrupted cache is named and
downloaded again). A user who wants more pins the hash: ``--sha256 HEX`` or ``SPAGHETTINET_ZOO_SHA256_S`` (``_M``,
``_L``); the first download prints the hash it got.

Environment (all optional):

* ``SPAGHETTINET_CACHE``: the cache folder.
* ``SPAGHETTINET_OFFLINE=1``: never download; a cached checkpoint is still used.
* ``SPAGHETTINET_ZOO_URL``: another base address for the tarballs (a mirror; ``http``, ``https`` or ``file``), the
  tarball's name is appended.
* ``SPAGHETTINET_ZOO_SHA256_S`` / ``_M`` / ``_L``: the sha256 the variant's tarball must have.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from spaghettinet.errors import DataError, UsageError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.model.zoo import (
    ZOO_BASE_URL,
    ZOO_TARBALLS,
    DownloadFailed,
    ZooCheckpoint,
    check_variant,
    fetch,
    find_checkpoint_prefix,
    install_tarball,
    sha256_of_file,
)

CACHE_ENV = "SPAGHETTINET_CACHE"
OFFLINE_ENV = "SPAGHETTINET_OFFLINE"
ZOO_URL_ENV = "SPAGHETTINET_ZOO_URL"
SHA256_ENV_PREFIX = "SPAGHETTINET_ZOO_SHA256_"
#: Seconds to wait for the server to answer, and for each read after: offline machines find out quickly.
TIMEOUT_S = 10.0

#: The sha256 of each variant's zoo tarball, once known. None for all: the zoo does not publish them and they could
#: not be measured here (no internet when this was written). Fill one in only from a download you have checked;
#: until then the hash of the first download is recorded in the cache and checked on every later use.
PINNED_SHA256: dict[str, str | None] = {"s": None, "m": None, "l": None}

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int | None], None]
Log = Callable[[str], None]


def cache_dir() -> Path:
    """The cache folder: ``$SPAGHETTINET_CACHE`` if set, else ``~/.cache/spaghettinet``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "spaghettinet"


def is_offline() -> bool:
    """True when ``SPAGHETTINET_OFFLINE`` is set to 1, true, yes or on: no download is attempted."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def zoo_url(variant: str, base_url: str | None = None) -> str:
    """The address of ``variant``'s tarball: ``base_url``, else ``$SPAGHETTINET_ZOO_URL``, else the zoo (https).

    Example:
        >>> zoo_url("s", "http://127.0.0.1:8000/mirror")
        'http://127.0.0.1:8000/mirror/spaghettinet_edgetpu_s_2021_10_13.tar.gz'
    """
    variant = check_variant(variant)
    base = base_url or os.environ.get(ZOO_URL_ENV, "").strip() or ZOO_BASE_URL
    return base.rstrip("/") + "/" + ZOO_TARBALLS[variant]


def expected_sha256(variant: str, sha256: str | None = None) -> str | None:
    """The hash ``variant``'s tarball must have: ``sha256``, else ``$SPAGHETTINET_ZOO_SHA256_<V>``, else the pinned
    one (:data:`PINNED_SHA256`), else None.

    Raises:
        UsageError: the hash given is not 64 hex digits.
    """
    variant = check_variant(variant)
    env_name = SHA256_ENV_PREFIX + variant.upper()
    for source, value in (
        ("--sha256", sha256),
        (env_name, os.environ.get(env_name)),
        ("PINNED_SHA256", PINNED_SHA256[variant]),
    ):
        if value is not None and value.strip():
            digest = value.strip().lower()
            if not _HEX_SHA256.match(digest):
                raise UsageError(f"{source} must be a sha256 (64 hex digits), got {value.strip()!r}")
            return digest
    return None


@dataclass(frozen=True)
class Start:
    """Where a training starts.

    Attributes:
        kind: ``"zoo"`` (the zoo's COCO checkpoint), ``"checkpoint"`` (one the user named) or ``"scratch"``.
        variant: "s", "m" or "l".
        prefix: the checkpoint prefix to write as ``fine_tune_checkpoint`` (None from scratch).
        reason: from scratch: why (asked, or the zoo checkpoint could not be had).
        fell_back: True when the zoo's checkpoint was the default but could not be had.
        sha256: zoo: the tarball's sha256.
    """

    kind: str
    variant: str
    prefix: Path | None = None
    reason: str = ""
    fell_back: bool = False
    sha256: str | None = None

    @property
    def description(self) -> str:
        """For summaries and reports: "fine-tuned from the zoo's COCO checkpoint (variant s)" or "from scratch (...)"."""
        if self.kind == "zoo":
            return f"fine-tuned from the zoo's COCO checkpoint (variant {self.variant})"
        if self.kind == "checkpoint":
            return f"fine-tuned from {self.prefix}"
        return f"from scratch ({self.reason})"

    @property
    def note(self) -> str | None:
        """The one line to show when the default zoo start fell back to scratch; None otherwise."""
        return f"training from scratch: {self.reason}" if self.fell_back else None

    def to_dict(self) -> dict:
        """JSON-ready fields, with ``description``."""
        data = asdict(self)
        data["prefix"] = None if self.prefix is None else str(self.prefix)
        data["description"] = self.description
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Start:
        """The inverse of :meth:`to_dict` (``description`` is recomputed)."""
        prefix = data.get("prefix")
        return cls(
            kind=str(data["kind"]),
            variant=str(data["variant"]),
            prefix=None if prefix is None else Path(prefix),
            reason=str(data.get("reason", "")),
            fell_back=bool(data.get("fell_back", False)),
            sha256=data.get("sha256"),
        )


def choose_start(
    variant: str,
    fine_tune_from: str | Path | None = None,
    from_scratch: bool = False,
    sha256: str | None = None,
    *,
    base_url: str | None = None,
    cache: str | Path | None = None,
    offline: bool | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    timeout_s: float = TIMEOUT_S,
) -> Start:
    """Decide where a training starts: the named checkpoint, from scratch, or (the default) the zoo's COCO one.

    Args:
        variant: "s", "m" or "l".
        fine_tune_from: a checkpoint prefix the user gave; it wins over the default.
        from_scratch: start from random weights (no network access).
        sha256: the hash the zoo tarball must have (see :func:`expected_sha256`).
        base_url / cache / offline / progress / log / timeout_s: see :func:`ensure_zoo_checkpoint`.

    Returns:
        A :class:`Start`. When the zoo checkpoint could not be downloaded it is a from-scratch start with
        ``fell_back`` set and the reason; print its :attr:`Start.note`.

    Raises:
        UsageError: contradictory options, a malformed hash.
        DataError: a download arrived but is not the zoo archive it should be (named); an unusable cache folder.

    Example:
        >>> start = choose_start("s")  # doctest: +SKIP
        >>> start.description, start.prefix  # doctest: +SKIP
        ("fine-tuned from the zoo's COCO checkpoint (variant s)",
         PosixPath('/home/me/.cache/spaghettinet/zoo/s/spaghettinet_edgetpu_s_2021_10_13/model.ckpt-400000'))
    """
    variant = check_variant(variant)
    if from_scratch and fine_tune_from is not None:
        raise UsageError("--from-scratch and --fine-tune-from contradict each other: give one of them")
    if sha256 is not None and (from_scratch or fine_tune_from is not None):
        raise UsageError(
            "--sha256 pins the zoo's checkpoint: it means nothing with --from-scratch or --fine-tune-from"
        )
    if fine_tune_from is not None:
        return Start("checkpoint", variant, prefix=Path(fine_tune_from))
    if from_scratch:
        return Start("scratch", variant, reason="as asked: --from-scratch")
    try:
        installed = ensure_zoo_checkpoint(
            variant,
            sha256=sha256,
            base_url=base_url,
            cache=cache,
            offline=offline,
            progress=progress,
            log=log,
            timeout_s=timeout_s,
        )
    except DownloadFailed as exc:
        return Start("scratch", variant, reason=str(exc), fell_back=True)
    return Start("zoo", variant, prefix=installed.prefix, sha256=installed.sha256)


def ensure_zoo_checkpoint(
    variant: str,
    *,
    sha256: str | None = None,
    base_url: str | None = None,
    cache: str | Path | None = None,
    offline: bool | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    timeout_s: float = TIMEOUT_S,
) -> ZooCheckpoint:
    """The zoo's COCO checkpoint of ``variant`` from the cache, verified; downloaded into it first when missing.

    Args:
        variant: "s", "m" or "l".
        sha256: the hash the tarball must have (default: see :func:`expected_sha256`).
        base_url: where the tarballs are (default: ``$SPAGHETTINET_ZOO_URL``, else the zoo over https).
        cache: the cache folder (default: :func:`cache_dir`).
        offline: never download (default: :func:`is_offline`).
        progress: called as ``progress(bytes_so_far, total_or_None)`` while downloading.
        log: called with a line for each event worth telling (download, recorded hash, a corrupted cache).
        timeout_s: seconds to wait for the server, and for each read.

    Returns:
        The :class:`~spaghettinet.model.zoo.ZooCheckpoint`; its ``prefix`` is a TF1 checkpoint prefix.

    Raises:
        DownloadFailed: not cached and nothing could be downloaded (offline, refused, timed out, HTTP error).
        DataError: the download is not a valid zoo archive of ``variant`` or fails its hash (the message names the
            rejected file, kept beside the cache); the cache folder cannot be written.

    Example:
        >>> ensure_zoo_checkpoint("s").prefix.name  # doctest: +SKIP
        'model.ckpt-400000'
    """
    variant = check_variant(variant)
    log = log or (lambda line: None)
    pin = expected_sha256(variant, sha256)
    zoo_dir = Path(cache if cache is not None else cache_dir()).expanduser() / "zoo"
    try:
        zoo_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the checkpoint cache ({exc.strerror or exc}); set {CACHE_ENV} to a writable folder "
            "or train with --from-scratch",
            zoo_dir,
        ) from None
    with _locked(zoo_dir):
        cached = _verified_cache(zoo_dir, variant, pin, log)
        if cached is not None:
            return cached
        if is_offline() if offline is None else offline:
            raise DownloadFailed(
                f"{OFFLINE_ENV} is set, so nothing is downloaded, and the cache ({zoo_dir}) has no COCO checkpoint "
                f"for variant {variant}"
            )
        return _download_into_cache(
            zoo_dir, variant, pin, zoo_url(variant, base_url), progress, log, timeout_s
        )


@contextlib.contextmanager
def download_progress(enabled: bool = True) -> Iterator[Progress | None]:
    """A rich progress bar on stderr for a download; yields the ``progress`` callback (None when not enabled).

    Example:
        >>> with download_progress() as progress:  # doctest: +SKIP
        ...     choose_start("s", progress=progress)
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("download"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("download", total=None)

        def report(received: int, total: int | None) -> None:
            bar.update(task, completed=received, total=total)

        yield report


# ------------------------------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------------------------------


def _record_path(zoo_dir: Path, variant: str) -> Path:
    return zoo_dir / (ZOO_TARBALLS[variant].removesuffix(".tar.gz") + ".sha256")


@contextlib.contextmanager
def _locked(zoo_dir: Path) -> Iterator[None]:
    """One process at a time fills or checks the cache (two runs started together download once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, the atomic renames still keep each file whole
        yield
        return
    with open(zoo_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(path: Path) -> dict[str, str] | None:
    """``{relative path: sha256}`` from a ``sha256sum``-format file, or None if it is not one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    entries = {}
    for line in lines:
        digest, separator, name = line.partition("  ")
        if not separator or not _HEX_SHA256.match(digest) or not name:
            return None
        entries[name] = digest
    return entries


def _forget(zoo_dir: Path, variant: str) -> None:
    """Remove a variant's cached files, the record first (so a half-removed cache never looks complete)."""
    _record_path(zoo_dir, variant).unlink(missing_ok=True)
    (zoo_dir / ZOO_TARBALLS[variant]).unlink(missing_ok=True)
    _remove_folder(zoo_dir / variant)


def _remove_folder(folder: Path) -> None:
    """Move a cache folder aside, then delete it: the name is free at once even if deleting fails half-way."""
    if not folder.exists():
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def _verified_cache(zoo_dir: Path, variant: str, pin: str | None, log: Log) -> ZooCheckpoint | None:
    """The cached checkpoint if every cached file still has the hash recorded at download; else None (after
    saying what was wrong and removing it). A changed extracted file is extracted again from the tarball."""
    record = _record_path(zoo_dir, variant)
    tarball = zoo_dir / ZOO_TARBALLS[variant]
    if not record.is_file():
        # Never completed (or never started): whatever is there is replaced by the download.
        return None
    entries = _read_record(record)
    recorded = None if entries is None else entries.get(tarball.name)
    if recorded is None:
        log(f"{record}: not a readable record of the cached checkpoint; downloading it again")
        _forget(zoo_dir, variant)
        return None
    actual = sha256_of_file(tarball) if tarball.is_file() else None
    if actual != recorded:
        state = (
            "is missing"
            if actual is None
            else f"has sha256 {actual}, not the {recorded} recorded at download"
        )
        log(f"{tarball}: the cached zoo checkpoint {state} (corrupted); downloading it again")
        _forget(zoo_dir, variant)
        return None
    if pin is not None and recorded != pin:
        log(
            f"{tarball}: the cached zoo checkpoint has sha256 {recorded}, not the pinned {pin}; downloading it again"
        )
        _forget(zoo_dir, variant)
        return None
    extracted = {name: digest for name, digest in entries.items() if name != tarball.name}
    changed = [
        name
        for name, digest in sorted(extracted.items())
        if not (zoo_dir / name).is_file() or sha256_of_file(zoo_dir / name) != digest
    ]
    if changed or not extracted:
        what = zoo_dir / changed[0] if changed else zoo_dir / variant
        log(f"{what}: changed or missing since it was extracted; extracting {tarball.name} again")
        return _install_into_cache(tarball, zoo_dir, variant, recorded)
    folder = zoo_dir / variant
    files = tuple(name.removeprefix(f"{variant}/") for name in sorted(extracted))
    return ZooCheckpoint(
        variant=variant,
        prefix=find_checkpoint_prefix(folder),
        sha256=recorded,
        directory=folder,
        files=files,
    )


def _install_into_cache(source: Path, zoo_dir: Path, variant: str, pin: str | None) -> ZooCheckpoint:
    """Verify and extract ``source`` into a fresh folder, swap it in as ``zoo/<variant>``, write the record."""
    staging = Path(tempfile.mkdtemp(prefix=f".{variant}-staging-", dir=zoo_dir))
    folder = zoo_dir / variant
    try:
        installed = install_tarball(source, variant, staging, expected_sha256=pin)
        _record_path(zoo_dir, variant).unlink(missing_ok=True)
        _remove_folder(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    tarball = zoo_dir / ZOO_TARBALLS[variant]
    if source != tarball:
        os.replace(source, tarball)
    lines = [f"{installed.sha256}  {tarball.name}"]
    lines += [f"{sha256_of_file(folder / name)}  {variant}/{name}" for name in installed.files]
    # Written last: its presence means the tarball and the folder beside it are complete.
    write_text_atomic(_record_path(zoo_dir, variant), "\n".join(lines) + "\n")
    return ZooCheckpoint(
        variant=installed.variant,
        prefix=folder / installed.prefix.relative_to(staging),
        sha256=installed.sha256,
        directory=folder,
        files=installed.files,
    )


def _download_into_cache(
    zoo_dir: Path,
    variant: str,
    pin: str | None,
    url: str,
    progress: Progress | None,
    log: Log,
    timeout_s: float,
) -> ZooCheckpoint:
    # No line before the download: when it fails, the caller's one line (from scratch, and why) is all users see.
    part = fetch(url, zoo_dir, progress=progress, timeout_s=timeout_s)
    try:
        try:
            installed = _install_into_cache(part, zoo_dir, variant, pin)
        except DataError as exc:
            rejected = zoo_dir / (ZOO_TARBALLS[variant] + ".rejected")
            os.replace(part, rejected)
            raise DataError(
                f"downloaded from {url} and refused: {exc.message}. The file is kept for inspection; "
                "train with --from-scratch, or give the right hash with --sha256",
                rejected,
            ) from None
    finally:
        part.unlink(missing_ok=True)
    if pin is None:
        checked = (
            f"sha256 {installed.sha256}, no pinned hash to compare with (pin it with --sha256); recorded in "
            f"{_record_path(zoo_dir, variant).name} and checked on every later use"
        )
    else:
        checked = f"sha256 {installed.sha256} as pinned"
    log(f"downloaded the zoo's COCO checkpoint for variant {variant} from {url} into {zoo_dir}: {checked}")
    return installed


def read_start(path: str | Path) -> Start | None:
    """A :class:`Start` saved with :func:`write_start`, or None when the file is absent or unreadable."""
    try:
        return Start.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_start(path: str | Path, start: Start) -> Path:
    """Save ``start`` as JSON (atomically), for the report of a run whose config stage is later skipped."""
    return write_text_atomic(path, json.dumps(start.to_dict(), indent=2) + "\n")
