"""File safety helpers shared by every on-disk format: atomic replacement and checked opening.

Every write goes to a temporary file in the destination's folder, is flushed
and fsynced, and only then renamed over the destination (``os.replace`` is
atomic on POSIX and Windows), so an interrupted or failed write never damages
an existing file.  Opening for reading turns the usual h5py ``OSError`` zoo
into :class:`~hopfield_masks.errors.BankFileNotFoundError` or
:class:`~hopfield_masks.errors.StorageFormatError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py

from .errors import BankFileNotFoundError, FileWriteError, StorageFormatError

__all__ = ["atomic_path", "open_h5_read", "h5_signature_ok"]


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, copy_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : path-like
        The destination. Its folder must exist.
    copy_existing : bool
        Start the temporary file as a copy of ``path`` (for appending), when it exists.

    If the ``with`` body raises, the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path).expanduser()
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise BankFileNotFoundError(dest, f"cannot be created: the folder {folder} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise FileWriteError(dest, exc.strerror or str(exc)) from None
    tmp = Path(tmp_name)
    try:
        try:
            if copy_existing and dest.exists():
                shutil.copyfile(dest, tmp)
        except OSError as exc:
            raise FileWriteError(dest, exc.strerror or str(exc)) from None
        yield tmp
        try:
            with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
                os.fsync(fh.fileno())
            if dest.exists():
                shutil.copymode(dest, tmp)
            else:  # mkstemp creates 0600; a new file gets the usual permissions (0666 less the umask)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, dest)
        except OSError as exc:
            raise FileWriteError(dest, exc.strerror or str(exc)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def h5_signature_ok(path: str | os.PathLike) -> bool:
    """True when the file starts with the HDF5 signature (at offset 0, the usual case)."""
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_SIGNATURE


def open_h5_read(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, with errors that name the path.

    Raises
    ------
    BankFileNotFoundError
        ``path`` does not exist.
    StorageFormatError
        ``path`` is a folder, is not an HDF5 file, or is truncated or corrupt.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise BankFileNotFoundError(p)
    if p.is_dir():
        raise StorageFormatError(p, "is a folder, expected an HDF5 file")
    if p.stat().st_size == 0:
        raise StorageFormatError(p, "is empty, expected an HDF5 file")
    if not h5_signature_ok(p):
        raise StorageFormatError(p, "is not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise StorageFormatError(p, f"cannot be read as HDF5 (truncated or corrupt: {exc})") from None
