"""Bank locks: one writer at a time, readers never see a half-written file.

Each bank ``NAME`` has a sidecar lock file ``.NAME.lock`` in its folder, locked
with ``flock``.  The last holder deletes it (while still holding it exclusively,
so nobody is left holding a lock on a deleted file unknowingly: every process
checks, once it holds the lock, that the path still names the file it locked,
and starts over if not).  So a folder keeps no lock files after clean exits; a
``kill -9`` may leave one, which is harmless (unlocked) and goes at the next use.

- a **writer** (a bank opened ``"a"`` or ``"w"``, :func:`hopfield_masks.encoding.encode_bank`
  for its whole read-compute-write cycle) holds it *exclusively* from open to close,
  and writes its pid into it so a waiting process can name it;
- a writer that modifies the bank *in place* (mode ``"a"``, :mod:`hopfield_masks.safety.journal`)
  also holds an exclusive ``flock`` on the bank file itself (:class:`FileLock`);
- a **reader** (``"r"``) holds a *shared* ``flock`` on the bank file it opened, so it
  never reads a file being modified in place, and needs no write access to the
  folder (no lock file is created for reading).  A bank replaced by a rename (mode
  ``"w"``, a repack) is a new file: readers of the old one finish undisturbed.

A process that cannot get the lock retries every 50 ms until the timeout
(``timeout=`` or ``HOPFIELD_MASKS_LOCK_TIMEOUT`` seconds, default 60) and then
raises :class:`~hopfield_masks.errors.BankLockedError` naming the bank and the
holder's pid: a second writer waits, then fails clearly -- never a silent lost update.

Locks are per process and re-entrant: while a process holds a bank's exclusive
lock, opening the same bank again (to read it, or to append) reuses it.  A
shared lock cannot be upgraded (that would deadlock two readers that both want
to write); asking for it raises :class:`~hopfield_masks.errors.InvalidArgumentError`.

**Network file systems.**  On Linux, ``flock`` on NFS is emulated with NFS
byte-range locks (kernel 2.6.12 and later), so it works between clients of an
NFSv4 server, or an NFSv3 server with the lock manager (``lockd``/``statd``)
running; with ``nolock`` mounts, locks are only local to each client and two
writers on two machines are *not* excluded.  A file system without lock support
answers ``ENOLCK``; the error says so, and ``HOPFIELD_MASKS_LOCKING=off``
disables locking (one writer at a time is then the user's responsibility).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import BankFileNotFoundError, BankLockedError, FileWriteError, InvalidArgumentError

__all__ = ["lock_path", "bank_lock", "BankLock", "FileLock", "lock_timeout", "held_exclusive", "DEFAULT_TIMEOUT"]

#: Seconds a process waits for a bank's lock when neither ``timeout=`` nor the environment says.
DEFAULT_TIMEOUT = 60.0
_POLL = 0.05


def lock_timeout(timeout: float | None = None) -> float:
    """``timeout`` if given, else ``HOPFIELD_MASKS_LOCK_TIMEOUT`` (seconds), else :data:`DEFAULT_TIMEOUT`."""
    if timeout is not None:
        return max(0.0, float(timeout))
    text = os.environ.get("HOPFIELD_MASKS_LOCK_TIMEOUT")
    if text:
        with contextlib.suppress(ValueError):
            return max(0.0, float(text))
    return DEFAULT_TIMEOUT


def lock_path(path: str | os.PathLike) -> Path:
    """The sidecar lock file of the bank at ``path`` (symlinks resolved: one lock per real file)."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    return real.parent / f".{real.name}.lock"


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _same_file(fd: int, key: str) -> bool:
    """Whether the lock file path still names the file open as ``fd``."""
    try:
        a, b = os.fstat(fd), os.stat(key)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _locking_enabled() -> bool:
    return os.environ.get("HOPFIELD_MASKS_LOCKING", "on").lower() not in ("off", "0", "no", "false")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isascii() and text.isdecimal():
            return f" (pid {text})"
    return ""


class BankLock:
    """A held lock on one bank; release it with :meth:`release` (or use :func:`bank_lock`)."""

    def __init__(self, bank: str | os.PathLike, *, exclusive: bool, timeout: float | None = None) -> None:
        self.bank = Path(bank).expanduser()
        self.exclusive = exclusive
        self._key: str | None = None
        if not _locking_enabled():
            return
        key = str(lock_path(self.bank))
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                if exclusive and not held.exclusive:
                    raise InvalidArgumentError(
                        "mode", f"no write while this process reads {self.bank} (a shared lock cannot be upgraded)",
                        "a write request"
                    )
                held.count += 1
                self._key = key
                return
        deadline = time.monotonic() + lock_timeout(timeout)
        while True:
            fd = self._open(key)
            if fd is None:  # a reader in a folder it cannot write: nothing to lock, nothing can be appended there by us
                return
            try:
                self._acquire(fd, exclusive, deadline, lock_timeout(timeout))
                if _same_file(fd, key):
                    if exclusive:
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder before us deleted the lock file: lock the new one
        with _GUARD:
            _HELD[key] = _Held(fd, exclusive, 1)
        self._key = key

    def _open(self, key: str) -> int | None:
        folder = os.path.dirname(key)
        if not os.path.isdir(folder):
            raise BankFileNotFoundError(self.bank, f"cannot be opened or created: the folder {folder} does not exist")
        try:
            return os.open(key, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            if not self.exclusive:
                with contextlib.suppress(OSError):
                    return os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                return None
            raise FileWriteError(self.bank, f"its lock file {key} cannot be created: {exc.strerror or exc}") from None

    def _acquire(self, fd: int, exclusive: bool, deadline: float, timeout: float) -> None:
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, op)
                return
            except OSError as exc:
                if exc.errno == errno.ENOLCK:
                    raise BankLockedError(
                        self.bank, "its file system does not support locks (ENOLCK); set HOPFIELD_MASKS_LOCKING=off "
                        "to work without them, one writer at a time"
                    ) from None
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise FileWriteError(self.bank, f"cannot be locked: {exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                who = "another writer" if not exclusive else "another process"
                raise BankLockedError(
                    self.bank,
                    f"is locked by {who}{_holder(fd)}; waited {timeout:g} s (try again later, or raise "
                    "HOPFIELD_MASKS_LOCK_TIMEOUT)",
                )
            time.sleep(_POLL)

    def release(self) -> None:
        """Release the lock (idempotent); the last release of a re-entrant lock unlocks the file."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            held = _HELD[key]
            held.count -= 1
            if held.count:
                return
            del _HELD[key]
        with contextlib.suppress(OSError):
            # the last user deletes the lock file, holding it exclusively (a reader tries to convert its lock)
            fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(held.fd, key):
                os.unlink(key)
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)

    def __enter__(self) -> BankLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def bank_lock(bank: str | os.PathLike, *, exclusive: bool = True, timeout: float | None = None) -> Iterator[BankLock]:
    """Hold the bank's lock for the ``with`` block (exclusive by default).

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.TemporaryDirectory()
    >>> with bank_lock(os.path.join(folder.name, "bank.h5")) as lock:
    ...     lock.exclusive
    True
    >>> folder.cleanup()
    """
    lock = BankLock(bank, exclusive=exclusive, timeout=timeout)
    try:
        yield lock
    finally:
        lock.release()


def held_exclusive(bank: str | os.PathLike) -> bool:
    """Whether this process holds the bank's exclusive lock."""
    with _GUARD:
        held = _HELD.get(str(lock_path(bank)))
        return held is not None and held.exclusive


_FILES: dict[tuple[int, int], _Held] = {}


def _wait_flock(fd: int, exclusive: bool, timeout: float, bank: Path, who: str) -> None:
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, op)
            return
        except OSError as exc:
            if exc.errno == errno.ENOLCK:
                raise BankLockedError(
                    bank, "its file system does not support locks (ENOLCK); set HOPFIELD_MASKS_LOCKING=off "
                    "to work without them, one writer at a time"
                ) from None
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FileWriteError(bank, f"cannot be locked: {exc.strerror or exc}") from None
        if time.monotonic() >= deadline:
            raise BankLockedError(
                bank, f"is in use by {who}; waited {timeout:g} s (try again later, or raise HOPFIELD_MASKS_LOCK_TIMEOUT)"
            )
        time.sleep(_POLL)


class FileLock:
    """An ``flock`` on the bank file itself: shared for readers, exclusive for an in-place writer (re-entrant).

    ``fd`` is an open descriptor of the file to lock; the lock keeps its own duplicate.
    """

    def __init__(self, bank: str | os.PathLike, fd: int, *, exclusive: bool, timeout: float | None = None) -> None:
        self.bank = Path(bank).expanduser()
        self._key: tuple[int, int] | None = None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        self.identity: tuple[int, int] | None = key  # (st_dev, st_ino) of the locked file
        if not _locking_enabled():
            return
        with _GUARD:
            held = _FILES.get(key)
            if held is not None:  # this process already locks the file (a reader inside a writer's session...)
                if exclusive and not held.exclusive:
                    raise InvalidArgumentError(
                        "mode", f"no write while this process reads {self.bank} (a shared lock cannot be upgraded)",
                        "a write request"
                    )
                held.count += 1
                self._key = key
                return
        own = os.dup(fd)
        try:
            _wait_flock(own, exclusive, lock_timeout(timeout), self.bank,
                        "a reader or writer" if exclusive else "a writer appending to it")
        except BaseException:
            os.close(own)
            raise
        with _GUARD:
            _FILES[key] = _Held(own, exclusive, 1)
        self._key = key

    def release(self) -> None:
        """Release (idempotent)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            held = _FILES[key]
            held.count -= 1
            if held.count:
                return
            del _FILES[key]
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)
