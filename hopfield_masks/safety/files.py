"""File safety helpers shared by every on-disk format: atomic replacement, checked opening, sidecar files.

Every write goes to a temporary file in the destination's folder, is flushed
and fsynced, and only then renamed over the destination (``os.replace`` is
atomic on POSIX and Windows), so an interrupted or failed write never damages
an existing file.  Opening for reading turns the usual h5py ``OSError`` zoo
into :class:`~hopfield_masks.errors.BankFileNotFoundError` or
:class:`~hopfield_masks.errors.StorageFormatError` naming the path.

**Sidecar files** (a bank's ``.NAME.lock`` and ``.NAME.journal``) live in a folder
that others may be able to write (a shared ``/tmp``-like folder), so anything
found under those names may have been planted.  :func:`open_sidecar` never
follows a symbolic link (``O_NOFOLLOW``), never truncates, never opens a FIFO or
device (the name is ``lstat``-ed first and the opened file must be the one
seen), and refuses a file that is not a regular file with a single name, or
that belongs to someone other than the bank's owner or the current user
(:func:`trusted_owners`); a new sidecar is created with ``O_EXCL``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py

from ..errors import BankFileNotFoundError, FileWriteError, StorageFormatError

__all__ = ["atomic_path", "open_h5_read", "h5_signature_ok", "check_regular_or_absent", "write_target", "check_output_file",
           "fsync_folder", "keep_owner_and_mode", "open_sidecar", "sidecar_problem", "trusted_owners", "SidecarRefused"]


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def fsync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder so that a rename in it survives a power cut (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class SidecarRefused(Exception):
    """A sidecar file that is not ours to use; ``reason`` says why (callers name the bank and the file)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} {reason}")


def trusted_owners(bank: str | os.PathLike) -> frozenset[int]:
    """Who may own a bank's sidecar files: the current (effective) user and the bank file's owner."""
    owners = {os.geteuid()}
    with contextlib.suppress(OSError):
        owners.add(os.stat(bank).st_uid)
    return frozenset(owners)


def sidecar_problem(st: os.stat_result, owners: frozenset[int], *, max_bytes: int | None = None,
                    private: bool = False) -> str | None:
    """Why a sidecar with status ``st`` is refused (None: it is acceptable)."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "is a special file (FIFO, socket or device)"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} names (a hard link to another file)"
    if st.st_uid not in owners:
        return (f"belongs to user id {st.st_uid}, not to the bank's owner or the current user "
                f"({', '.join(str(o) for o in sorted(owners))})")
    if private and st.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    if max_bytes is not None and st.st_size > max_bytes:
        return f"holds {st.st_size:,} B, more than a file of this kind ever does"
    return None


def open_sidecar(path: str | os.PathLike, owners: frozenset[int], *, writable: bool, create: bool = False,
                 mode: int = 0o644, max_bytes: int | None = None, private: bool = False) -> tuple[int, bool]:
    """Open a bank's sidecar file without following links; return ``(fd, created)``.

    ``create``: make it (``O_EXCL``, ``mode``) when absent.  An existing one is opened only after
    :func:`sidecar_problem` accepts it (``lstat`` first, so a FIFO or device is never opened, then the
    opened file must be the one examined); it is never truncated.

    Raises
    ------
    SidecarRefused
        A link, folder, special file, a file with several names or of another owner (or larger than
        ``max_bytes``, or writable by others when ``private``).
    FileNotFoundError
        Absent (and ``create`` is false); other ``OSError`` as the system reports them.
    """
    p = Path(path)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    for _attempt in range(100):  # a sidecar deleted between two calls by its last holder: try again
        if create:
            try:
                return os.open(p, flags | os.O_CREAT | os.O_EXCL, mode), True
            except FileExistsError:
                pass
        try:
            before = os.lstat(p)
        except FileNotFoundError:
            if create:
                continue
            raise
        problem = sidecar_problem(before, owners, max_bytes=max_bytes, private=private)
        if problem:
            raise SidecarRefused(p, problem)
        try:
            fd = os.open(p, flags)
        except FileNotFoundError:
            if create:
                continue
            raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # replaced by a link since the lstat
                raise SidecarRefused(p, "is a symbolic link") from None
            raise
        after = os.fstat(fd)
        if after.st_nlink == 0 and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino):
            os.close(fd)  # deleted by its last holder between the lstat and the open (a lock file): look again
            continue
        problem = sidecar_problem(after, owners, max_bytes=max_bytes, private=private)
        if problem or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise SidecarRefused(p, problem or "was replaced while being opened")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return fd, False
    raise SidecarRefused(p, "keeps appearing and disappearing")


def check_regular_or_absent(path: Path) -> None:
    """Refuse to replace a folder, FIFO, socket or device node (``path`` is already symlink-resolved)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileWriteError(path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(mode):
        raise FileWriteError(path, "it is a folder, expected a file path")
    if not stat.S_ISREG(mode):
        raise FileWriteError(path, "it is a special file (FIFO, socket or device), which is never replaced")


def write_target(path: str | os.PathLike) -> Path:
    """Where a write to ``path`` lands: symlinks are followed to their target, which must be a regular file or absent."""
    target = Path(os.path.realpath(Path(path).expanduser()))
    check_regular_or_absent(target)
    return target


def keep_owner_and_mode(src_stat: os.stat_result, dest: Path) -> None:
    """Give ``dest`` the permission bits and (where allowed) the owner of the file it replaces."""
    os.chmod(dest, stat.S_IMODE(src_stat.st_mode))
    with contextlib.suppress(OSError):  # only root (or the owner, for the group) may chown
        os.chown(dest, src_stat.st_uid, src_stat.st_gid)


def check_output_file(path: str | os.PathLike, *, overwrite: bool, expected_bytes: int = 0,
                      argument: str = "out", folder_may_be_created: bool = False) -> Path:
    """Check, before any long work, that a new file can be written at ``path``; return the resolved target.

    Refuses: a folder or special file at ``path``; an existing file without
    ``overwrite``; a missing (unless ``folder_may_be_created``) or non-writable
    folder; a folder whose file system has less than ``expected_bytes`` (plus
    1 MiB of slack) free.  ``supsup-store train`` and ``demo`` call it before training.

    Raises
    ------
    InvalidArgumentError
        Naming ``argument`` with what was expected and what was found.
    """
    from ..errors import InvalidArgumentError

    raw = Path(path).expanduser()
    target = Path(os.path.realpath(raw))
    if target.is_dir():
        raise InvalidArgumentError(argument, "a file path (the bank file to write)", f"{path} is a folder")
    if target.exists():
        if not stat.S_ISREG(target.stat().st_mode):
            raise InvalidArgumentError(argument, "a regular file path", f"{path} is a special file (FIFO, socket or device)")
        if not overwrite:
            raise InvalidArgumentError(argument, "a new file (or pass --overwrite)", f"existing file {path}")
    folder = target.parent
    if folder_may_be_created:  # the caller creates the folder: the nearest existing ancestor must take it
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InvalidArgumentError(argument, "a path under a folder", f"{path} ({folder} is not a folder)")
    if not folder.is_dir():
        raise InvalidArgumentError(argument, "a file in an existing folder", f"{path} (folder {folder} does not exist)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidArgumentError(argument, "a file in a folder you can write", f"{path} (folder {folder} is not writable)")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and expected_bytes and free < expected_bytes + (1 << 20):
        raise InvalidArgumentError(
            argument, f"a folder with at least {expected_bytes + (1 << 20):,} B free", f"{free:,} B free in {folder}"
        )
    return target


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
    named = Path(path).expanduser()
    folder = Path(os.path.realpath(named)).parent
    if not folder.is_dir():
        raise BankFileNotFoundError(named, f"cannot be created: the folder {folder} does not exist")
    dest = write_target(named)  # a symlink is followed: its target is replaced, the link kept
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
            try:
                keep_owner_and_mode(os.stat(dest), tmp)
            except FileNotFoundError:  # mkstemp creates 0600; a new file gets the usual permissions (0666 less the umask)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            check_regular_or_absent(dest)  # again: something may have appeared meanwhile
            os.replace(tmp, dest)
            fsync_folder(folder)  # the rename itself must survive a power cut
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
    try:
        st = p.stat()
    except FileNotFoundError:
        raise BankFileNotFoundError(p) from None
    except OSError as exc:  # e.g. a folder on the way that cannot be searched (PermissionError)
        raise StorageFormatError(p, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise StorageFormatError(p, "is a folder, expected an HDF5 file")
    if not stat.S_ISREG(st.st_mode):
        raise StorageFormatError(p, "is a special file (FIFO, socket or device), expected an HDF5 file")
    if st.st_size == 0:
        raise StorageFormatError(p, "is empty, expected an HDF5 file")
    try:
        signed = h5_signature_ok(p)
    except OSError as exc:
        raise StorageFormatError(p, f"cannot be read ({exc.strerror or exc})") from None
    if not signed:
        raise StorageFormatError(p, "is not an HDF5 file (no HDF5 signature)")
    try:
        # HDF5's own flock is off: banks are locked by hopfield_masks.safety.locking (sidecar lock files)
        f = h5py.File(p, "r", locking=False)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise StorageFormatError(p, f"cannot be read as HDF5 (truncated or corrupt: {exc})") from None
    try:
        list(f.attrs)  # the root group's object header: damaged metadata shows here first
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        f.close()
        raise StorageFormatError(p, f"cannot be read as HDF5 (damaged root group: {exc})") from None
    return f
