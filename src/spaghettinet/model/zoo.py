"""The TF1 detection zoo's SpaghettiNet-EdgeTPU checkpoints: download, verify, extract safely.

The zoo ships each variant as a ``.tar.gz`` (URLs in tensorflow/models
``research/object_detection/g3doc/tf1_detection_zoo.md``, "Pixel 6 Edge TPU models") holding a TF1 Object
Detection API checkpoint, the usual starting point for fine-tuning. A tarball from the network is untrusted,
so installing one:

1. hashes it (sha256, printed so a user can pin it with ``--sha256``) and compares with the expected hash if given;
2. reads the whole gzip stream to the end (a truncated download fails here, with its CRC and length checked), but
   never more than :data:`MAX_EXTRACTED_BYTES` plus the tar headers of :data:`MAX_MEMBERS` members: a gzip bomb
   (kilobytes that inflate to terabytes) is refused after that much, not read to its end;
3. checks every member before extracting anything: at most :data:`MAX_MEMBERS` of them, only regular files and
   folders, no absolute path, no ``..``, nothing resolving outside the output folder, no symlinks, hard links or
   devices, and a bound on the total size;
4. extracts into a fresh staging folder inside the output folder and moves the result into place only when all is
   well; **nothing already in the output folder is deleted or replaced**: a top-level entry of the archive that
   exists there already is kept when it holds the same files, and refused (naming it) when it differs;
5. finds the checkpoint prefix (``model.ckpt-<step>``) and checks, by its variable names, that it is the variant
   asked for (:func:`spaghettinet.model.tf1_checkpoint.inspect_checkpoint`).

The network fetch (:func:`fetch`, over https by default) is separate from :func:`install_tarball`.
:mod:`spaghettinet.model.pretrained` builds the default start of ``run`` and ``config`` (a cache of these
tarballs) on both.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spaghettinet.errors import DataError, SpaghettiError, UsageError

#: Where the zoo keeps its tarballs. The table in tensorflow/models research/object_detection/g3doc/
#: tf1_detection_zoo.md ("Pixel 6 Edge TPU models") writes these links with http://; the same
#: host serves https, and a download in the clear could be swapped on the way, so we always ask for https.
ZOO_BASE_URL = "https://download.tensorflow.org/models/object_detection/tf1/"
#: The tarball of each variant, as named in that table.
ZOO_TARBALLS: dict[str, str] = {
    "s": "spaghettinet_edgetpu_s_2021_10_13.tar.gz",
    "m": "spaghettinet_edgetpu_m_2021_10_13.tar.gz",
    "l": "spaghettinet_edgetpu_l_2021_10_13.tar.gz",
}
ZOO_URLS: dict[str, str] = {variant: ZOO_BASE_URL + name for variant, name in ZOO_TARBALLS.items()}

# The zoo tarballs are tens of MB; 4 GiB unpacked is far above any real one and stops a decompression bomb.
MAX_EXTRACTED_BYTES = 4 * 1024**3
# A zoo tarball holds a folder with a checkpoint (index, data, meta), a pipeline.config and a frozen graph or
# SavedModel: a few dozen members. Ten thousand is far above that and bounds the headers read and the list kept.
MAX_MEMBERS = 10_000
# A tar member costs a 512-byte header (more with long names, as pax headers) and up to 511 bytes of padding;
# the archive ends with at least two zero blocks, padded to a 10240-byte record.
_TAR_OVERHEAD_PER_MEMBER = 4 * 512

_CHUNK = 1 << 20
_STEP_PATTERN = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class ZooCheckpoint:
    """A zoo checkpoint installed on disk.

    Attributes:
        variant: "s", "m" or "l", as verified from the checkpoint's variable names.
        prefix: the checkpoint prefix to pass as ``--fine-tune-from`` (``.../model.ckpt-400000``).
        sha256: hex sha256 of the tarball it came from.
        directory: the folder it was extracted into.
        files: the extracted files, relative to ``directory``.
    """

    variant: str
    prefix: Path
    sha256: str
    directory: Path
    files: tuple[str, ...]


def check_variant(variant: str) -> str:
    """Return ``variant`` lower-cased if it is one of s, m, l; else raise :class:`UsageError`."""
    normalized = str(variant).strip().lower()
    if normalized not in ZOO_URLS:
        raise UsageError(f"unknown SpaghettiNet-EdgeTPU variant {variant!r}: choose s, m or l")
    return normalized


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_complete_gzip(path: Path, limit: int | None = None) -> None:
    """Decompress the whole stream once: gzip checks the CRC and length at the end of each member.

    Stops with a DataError once more than ``limit`` bytes (default: what :data:`MAX_MEMBERS` members of
    :data:`MAX_EXTRACTED_BYTES` in all can take, headers included) have come out: a bomb is never inflated whole.
    """
    if limit is None:
        limit = MAX_EXTRACTED_BYTES + MAX_MEMBERS * _TAR_OVERHEAD_PER_MEMBER + 10240
    inflated = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                inflated += len(chunk)
                if inflated > limit:
                    raise DataError(
                        f"refusing the archive: it inflates to more than {limit} bytes (a zoo archive unpacks to "
                        "a few hundred MB at most; this looks like a decompression bomb)",
                        path,
                    )
    except (EOFError, OSError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"not a complete gzip file ({exc}); the download may have been cut short", path
        ) from exc


def _member_problem(member: tarfile.TarInfo, out: Path) -> str | None:
    """Why ``member`` may not be extracted into ``out``, or None if it is a plain file or folder inside it."""
    name = member.name
    if member.issym() or member.islnk():
        return f"is a link (to {member.linkname!r}); links are not extracted"
    if not (member.isfile() or member.isdir()):
        return "is a device, FIFO or other special file"
    if not name or "\x00" in name:
        return "has an empty or invalid name"
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in pure.parts:
        return "contains '..'"
    target = (out / pure).resolve()
    root = out.resolve()
    if target != root and root not in target.parents:
        return "would land outside the output folder"
    return None


def _checked_members(tar: tarfile.TarFile, path: Path, staging: Path) -> list[tarfile.TarInfo]:
    members = []
    try:
        # One header at a time (getmembers() would list them all first): stop at the member too many.
        while (member := tar.next()) is not None:
            members.append(member)
            if len(members) > MAX_MEMBERS:
                raise DataError(
                    f"refusing the archive: it has more than {MAX_MEMBERS} members (a zoo archive has a few dozen)",
                    path,
                )
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"not a readable tar archive ({exc})", path) from exc
    if not members:
        raise DataError("the tar archive is empty", path)
    total = 0
    for member in members:
        problem = _member_problem(member, staging)
        if problem is not None:
            raise DataError(f"refusing the archive: member {member.name!r} {problem}", path)
        total += max(member.size, 0)
    if total > MAX_EXTRACTED_BYTES:
        raise DataError(
            f"refusing the archive: it unpacks to {total} bytes (limit {MAX_EXTRACTED_BYTES})", path
        )
    return members


def find_checkpoint_prefix(directory: str | Path) -> Path:
    """Find the TF1 checkpoint prefix in an extracted zoo folder.

    A prefix is an ``X.index`` file with at least one ``X.data-*`` beside it; with several, the one with the highest
    ``-<step>`` suffix wins (the zoo ships ``model.ckpt-400000``), then the shortest path.

    Args:
        directory: the folder to search (recursively).

    Returns:
        The prefix path (without ``.index``).

    Example:
        >>> find_checkpoint_prefix("zoo/spaghettinet_edgetpu_s_2021_10_13")  # doctest: +SKIP
        PosixPath('zoo/spaghettinet_edgetpu_s_2021_10_13/model.ckpt-400000')
    """
    directory = Path(directory)
    candidates = []
    for index_file in sorted(directory.rglob("*.index")):
        prefix = index_file.with_suffix("")
        if any(prefix.parent.glob(glob_escape(prefix.name) + ".data-*")):
            match = _STEP_PATTERN.search(prefix.name)
            step = int(match.group(1)) if match else -1
            candidates.append((-step, len(prefix.parts), str(prefix), prefix))
    if not candidates:
        raise DataError(
            "no TF1 checkpoint (a .index file with its .data-* files) found in the archive", directory
        )
    return min(candidates)[3]


def glob_escape(text: str) -> str:
    """Escape glob metacharacters so ``text`` matches itself literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _verify_variant(prefix: Path, variant: str, tarball: Path) -> str:
    from spaghettinet.model.tf1_checkpoint import inspect_checkpoint  # needs TensorFlow: only imported here

    found = getattr(inspect_checkpoint(str(prefix)), "variant", None)
    found_name = None if found is None else str(found).lower().removeprefix("spaghettinet_edgetpu_")
    if found_name != variant:
        looks_like = "no SpaghettiNet-EdgeTPU variant" if found_name is None else f"variant {found_name!r}"
        raise DataError(
            f"the checkpoint inside is {looks_like}, not the {variant!r} that was asked for "
            f"(its prefix: {prefix.name})",
            tarball,
        )
    return found_name


def install_tarball(
    path: str | Path,
    variant: str,
    out: str | Path,
    expected_sha256: str | None = None,
) -> ZooCheckpoint:
    """Verify a zoo tarball and extract it safely into ``out``.

    Nothing is written into ``out`` unless every check passes: complete gzip, readable tar, no member outside
    ``out`` (absolute, ``..``, links, devices), a checkpoint inside, and that checkpoint is ``variant``. Nothing
    in ``out`` is ever deleted or replaced: a top-level entry of the archive that is there already is kept as it
    is when its files are the archive's, byte for byte (a second install of the same tarball), and refused
    otherwise.

    Args:
        path: the ``.tar.gz`` file.
        variant: "s", "m" or "l".
        out: the folder to extract into (created if missing).
        expected_sha256: if given, the tarball's sha256 must equal it (hex, case-insensitive).

    Returns:
        The installed :class:`ZooCheckpoint`; its ``prefix`` works as ``--fine-tune-from``.

    Raises:
        DataError: the tarball is incomplete, hostile, has no checkpoint or holds another variant.
        UsageError: ``variant`` is not s, m or l, or ``out`` already holds a different entry of the same name.

    Example:
        >>> ckpt = install_tarball("spaghettinet_edgetpu_s_2021_10_13.tar.gz", "s", "zoo")  # doctest: +SKIP
        >>> ckpt.prefix  # doctest: +SKIP
        PosixPath('zoo/spaghettinet_edgetpu_s_2021_10_13/model.ckpt-400000')
    """
    variant = check_variant(variant)
    path = Path(path)
    out = Path(out)
    if not path.is_file():
        raise DataError("tarball not found", path)
    digest = sha256_of_file(path)
    if expected_sha256 is not None and digest.lower() != expected_sha256.strip().lower():
        raise DataError(f"sha256 is {digest}, expected {expected_sha256.strip().lower()}", path)
    _check_complete_gzip(path)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".zoo-staging-", dir=out))
    try:
        try:
            with tarfile.open(path, mode="r:gz") as tar:
                members = _checked_members(tar, path, staging)
                for member in members:
                    # Checked above; the "data" filter (Python ≥ 3.11.4) is a second line of defence.
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, staging, filter="data")
                    else:  # pragma: no cover - older 3.11 patch releases
                        tar.extract(member, staging)
        except DataError:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"could not extract the archive ({exc})", path) from exc
        staged_prefix = find_checkpoint_prefix(staging)
        verified = _verify_variant(staged_prefix, variant, path)
        files = tuple(sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()))
        entries = sorted(staging.iterdir())
        # Every clash is found before anything moves: either all of the archive lands, or nothing does.
        present = [entry for entry in entries if os.path.lexists(out / entry.name)]
        for entry in present:
            if not _same_tree(entry, out / entry.name):
                raise UsageError(
                    "already exists and differs from the archive's entry of that name; `zoo` never deletes or "
                    "replaces files: remove or rename it yourself, or choose another --out",
                    out / entry.name,
                )
        for entry in entries:
            if entry not in present:
                os.replace(entry, out / entry.name)
        prefix = out / staged_prefix.relative_to(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ZooCheckpoint(variant=verified, prefix=prefix, sha256=digest, directory=out, files=files)


def _same_tree(new: Path, old: Path) -> bool:
    """True when ``old`` holds exactly the files of ``new`` with the same bytes (folders compared recursively)."""
    if old.is_symlink() or new.is_dir() != old.is_dir():
        return False
    if not new.is_dir():
        return new.stat().st_size == old.stat().st_size and sha256_of_file(new) == sha256_of_file(old)
    new_names = sorted(p.name for p in new.iterdir())
    if new_names != sorted(p.name for p in old.iterdir()):
        return False
    return all(_same_tree(new / name, old / name) for name in new_names)


class DownloadFailed(SpaghettiError):
    """No bytes could be fetched (no network, refused, timed out, cut short, an HTTP error status); exit code 1.

    Distinct from :class:`DataError`, which means bytes did arrive but are not a usable zoo archive: a run that
    starts from the zoo by default trains from scratch after this error, but stops at a DataError.
    """


def _failure_reason(exc: BaseException) -> str:
    """The short reason of a failed fetch, as users know it ("Connection refused", "timed out", "HTTP 404 ...")."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def fetch(
    url: str,
    folder: str | Path,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 10.0,
) -> Path:
    """Stream ``url`` into a new temporary file in ``folder`` and return it; the caller renames or removes it.

    Nothing is left behind when the fetch fails: a partial file never takes the place of a complete one.

    Args:
        url: an http, https or file address.
        folder: where the temporary file is made (created if missing); the same file system as its final place,
            so that moving it there is atomic.
        progress: called as ``progress(bytes_so_far, total_or_None)`` while downloading.
        timeout_s: socket timeout in seconds, for connecting and for each read: a server that sends nothing for
            this long counts as unreachable.

    Returns:
        The temporary file (``.zoo-download-*.part`` in ``folder``), complete and flushed to disk.

    Raises:
        DownloadFailed: the address could not be reached or the transfer stopped early; the message gives the URL
            and the reason.
        UsageError: the address is not http, https or file.

    Example:
        >>> part = fetch("https://download.tensorflow.org/models/object_detection/tf1/"
        ...              "spaghettinet_edgetpu_s_2021_10_13.tar.gz", "cache")  # doctest: +SKIP
    """
    import http.client
    import urllib.parse
    import urllib.request

    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise UsageError(f"unsupported URL {url!r}: use http, https or file")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".zoo-download-", suffix=".part", dir=folder)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as sink:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    received = 0
                    while chunk := response.read(_CHUNK):
                        sink.write(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(received, total)
            # URLError (DNS, refused, HTTP status), timeouts and resets are OSErrors; a server hanging up
            # mid-answer raises http.client's IncompleteRead or RemoteDisconnected.
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadFailed(f"could not download {url}: {_failure_reason(exc)}") from None
            if total is not None and received != total:
                raise DownloadFailed(
                    f"could not download {url}: it stopped after {received} of {total} bytes"
                )
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def download(
    variant: str,
    out: str | Path,
    url: str | None = None,
    expected_sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 10.0,
) -> ZooCheckpoint:
    """Download a zoo tarball and install it into ``out`` (``spaghettinet zoo download``).

    The download streams to a temporary file in ``out`` (:func:`fetch`), which is removed afterwards whatever
    happens. ``spaghettinet run`` and ``config`` use :mod:`spaghettinet.model.pretrained` instead, which keeps the
    tarball in a cache.

    Args:
        variant: "s", "m" or "l".
        out: the folder to extract into.
        url: another address for the tarball (http, https or file); default: the zoo's https URL for ``variant``.
        expected_sha256: if given, the tarball's sha256 must equal it.
        progress: called as ``progress(bytes_so_far, total_or_None)`` while downloading.
        timeout_s: socket timeout in seconds (see :func:`fetch`).

    Returns:
        The installed :class:`ZooCheckpoint`.

    Raises:
        DownloadFailed: nothing could be downloaded (the reason is in the message).
        DataError: the download is not a usable zoo archive of ``variant``.

    Example:
        >>> download("s", "zoo").prefix  # doctest: +SKIP
        PosixPath('zoo/spaghettinet_edgetpu_s_2021_10_13/model.ckpt-400000')
    """
    variant = check_variant(variant)
    temporary = fetch(url or ZOO_URLS[variant], out, progress=progress, timeout_s=timeout_s)
    try:
        return install_tarball(temporary, variant, out, expected_sha256=expected_sha256)
    finally:
        temporary.unlink(missing_ok=True)
