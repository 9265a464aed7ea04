"""Atomic file writing: outputs are written to a temporary name beside the target, then renamed.

A reader never sees a half-written file, and an interrupted command leaves either the old file or none. Two more
guarantees make that hold through a power cut, not only through a crash of this process:

* **fsync.** A rename can reach the disk before the data it names: after a power cut the new name may point at an
  empty file (the classic ext4 zero-length-file problem; see the ``rename(2)`` and ``fsync(2)`` man pages). So the
  temporary file (every file and folder of a temporary folder) is ``fsync``-ed before the rename, and the folder
  holding the target after it, so that the rename itself is on disk.
* **Folders are swapped, never deleted first.** An existing output folder is exchanged with the new one in one step
  (Linux ``renameat2(RENAME_EXCHANGE)``, see ``rename(2)``), and only then is the old one deleted. Where that call
  is missing (another OS, an old kernel or file system) the old folder is first renamed aside, the new one renamed
  in, and the old one deleted: the name is missing for the instant between the two renames, but a crash there
  leaves both folders on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` if the block succeeds.

    Works for files and for folders (the block creates whatever it likes at the yielded path). What the block wrote
    is flushed to disk before the rename, and the rename after it; an existing folder at ``target`` is swapped out,
    then deleted (see the module docstring).

    Example:
        >>> with atomic_path("out/labels.csv") as tmp:
        ...     tmp.write_text("filename,width\\n")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.is_dir() and not target.is_symlink():
            # After the swap, tmp holds the old folder; the finally below deletes it.
            _swap(tmp, target)
        else:
            os.replace(tmp, target)
        _fsync_folder(target.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def _fsync_tree(path: Path) -> None:
    """fsync a file, or every file and folder under a folder (a no-op for what the block did not create)."""
    if path.is_symlink() or not path.exists():
        return
    if not path.is_dir():
        _fsync_file(path)
        return
    for root, folders, files in os.walk(path):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync_file(Path(root, name))
        for name in folders:
            _fsync_folder(Path(root, name))
    _fsync_folder(path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    """fsync a folder, so that the names created or renamed in it are on disk (not possible everywhere)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except (
        OSError
    ):  # some file systems (and Windows) refuse fsync on a folder; the data files are on disk anyway
        pass
    finally:
        os.close(descriptor)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100  # fcntl.h on Linux


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux renameat2(RENAME_EXCHANGE); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the kernel or this file system cannot exchange
    raise OSError(code, os.strerror(code), str(second))


def _swap(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` and the old ``target`` at ``new``, never deleting anything first."""
    if _exchange(new, target):
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", suffix=".tmp", dir=target.parent))
    aside.rmdir()
    os.replace(target, aside)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(aside, target)  # put the old one back: the target never goes missing for good
        raise
    os.replace(aside, new)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (flushed to disk before it takes the name) and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (flushed to disk before it takes the name) and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def read_user_text(path: str | Path, what: str, newline: str | None = None) -> str:
    """Read a text file the user gave us (BOM tolerated), or raise a DataError naming it and the reason.

    Args:
        path: the file.
        what: what the file is, for the message (``"label map"``, ``"label CSV"``).
        newline: as :func:`open`; ``""`` keeps line endings as they are (what the :mod:`csv` module needs).

    Returns:
        The file's text.

    Example:
        >>> read_user_text("training/label_map.pbtxt", "label map")  # doctest: +SKIP
    """
    from spaghettinet.errors import DataError

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the {what}: {exc}", path) from None
