"""Bank locks: one writer at a time (whoever asks: another process, another thread, the same thread), readers never
see a half-written file.

Two locks, both ``flock``:

- the **writer lock** (:class:`BankLock`): an exclusive ``flock`` on the sidecar file ``.NAME.lock`` in the
  bank's folder, held by a writer (a bank opened ``"a"`` or ``"w"``, :func:`hopfield_masks.encoding.encode_bank`
  for its whole read-compute-write cycle, a training run) from open to close, with its pid written inside so a
  waiting process can name it.  The last holder deletes it (while still holding it exclusively, so nobody is
  left holding a lock on a deleted file unknowingly: every process checks, once it holds the lock, that the
  path still names the file it locked, and starts over if not).  So a folder keeps no lock files after clean
  exits; a ``kill -9`` may leave one, which is harmless (unlocked) and goes at the next use.  The sidecar is
  opened by :func:`hopfield_masks.safety.files.open_sidecar`: a symbolic link, a special file, a file with
  several names or a file of another owner planted at ``.NAME.lock`` is refused (one line naming it), never
  written through;
- the **file lock** (:class:`FileLock`): an ``flock`` on the bank file itself -- exclusive for a writer that
  changes the bank in place (mode ``"a"``, :mod:`hopfield_masks.safety.journal`) for its session, shared for a
  reader, taken before HDF5 reads a byte.  A reader needs no write access to the folder and creates no file
  there.  A bank replaced by a rename (mode ``"w"``, a repack) is a new file: readers of the old one finish
  undisturbed.  Rolling back a killed writer's journal happens only under this lock held exclusively.

A process that cannot get a lock retries every 50 ms until the timeout (``timeout=`` or
``HOPFIELD_MASKS_LOCK_TIMEOUT``, seconds: ``60``, ``0.5``, ``5s``; default 60) and then raises
:class:`~hopfield_masks.errors.BankLockedError` naming the bank and the holder's pid: a second writer waits,
then fails clearly -- never a silent lost update.

**Within one process** ``flock`` alone cannot tell threads apart, so each process keeps a registry of the
locks it holds, with the thread that holds them:

- the writer lock is re-entrant for the thread that holds it (a training run holds it and opens the bank
  ``"a"`` for each task); another thread of the process waits for it like another process would;
- a second writing bank object in the thread that already has one open on the bank is refused at once (it
  could only deadlock, or interleave two sessions on one file);
- a reader in the process that is changing the bank in place (any thread) does not wait for the session and
  never touches the live session's journal: it reads a snapshot of the last commit
  (:class:`hopfield_masks.safety.journal.CommittedView`, over the very descriptor it locked), and the process
  keeps the file locked until that reader is closed too.  It waits only while another thread holds the file
  exclusively without a session (rolling back a killed writer's journal, or opening its session): those
  changes are recorded nowhere a snapshot could read around;
- a writer thread waits for readers in other threads of the process to finish; a thread that is itself
  reading the bank cannot start writing it (a shared lock cannot be upgraded:
  :class:`~hopfield_masks.errors.InvalidArgumentError`).

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
import math
import os
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BankFileNotFoundError, BankLockedError, FileWriteError, InvalidArgumentError
from .files import SidecarRefused, open_sidecar, trusted_owners

__all__ = ["lock_path", "bank_lock", "BankLock", "FileLock", "lock_timeout", "held_exclusive", "DEFAULT_TIMEOUT",
           "with_free_lock"]

#: Seconds a process waits for a bank's lock when neither ``timeout=`` nor the environment says.
DEFAULT_TIMEOUT = 60.0
_POLL = 0.05
_LOCK_BYTES = 64  # a lock file holds a pid and a newline; anything larger was not written by a writer
_SECONDS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*[sS]?\s*$")


def lock_timeout(timeout: float | None = None) -> float:
    """``timeout`` if given, else ``HOPFIELD_MASKS_LOCK_TIMEOUT`` (seconds), else :data:`DEFAULT_TIMEOUT`.

    The variable holds a non-negative number of seconds, optionally followed by ``s``: ``60``, ``0.5``, ``5s``.

    Raises
    ------
    InvalidArgumentError
        The variable holds anything else (named, with what was expected and what it holds).
    """
    if timeout is not None:
        return max(0.0, float(timeout))
    text = os.environ.get("HOPFIELD_MASKS_LOCK_TIMEOUT")
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT
    match = _SECONDS.match(text)
    value = float(match.group(1)) if match else math.nan
    if not math.isfinite(value):
        raise InvalidArgumentError("HOPFIELD_MASKS_LOCK_TIMEOUT",
                                   "a non-negative number of seconds such as 60, 0.5 or 5s", repr(text))
    return value


def lock_path(path: str | os.PathLike) -> Path:
    """The sidecar lock file of the bank at ``path`` (symlinks resolved: one lock per real file)."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    return real.parent / f".{real.name}.lock"


def _locking_enabled() -> bool:
    return os.environ.get("HOPFIELD_MASKS_LOCKING", "on").lower() not in ("off", "0", "no", "false")


def _same_file(fd: int, key: str | os.PathLike) -> bool:
    """Whether the path still names the file open as ``fd`` (a link there names nothing of ours)."""
    try:
        a, b = os.fstat(fd), os.lstat(key)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isascii() and text.isdecimal():
            return f" (pid {text})"
    return ""


def _no_locks(bank: Path) -> BankLockedError:
    return BankLockedError(bank, "its file system does not support locks (ENOLCK); set HOPFIELD_MASKS_LOCKING=off "
                                 "to work without them, one writer at a time")


def _try_flock(fd: int, op: int, bank: Path) -> bool:
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOLCK:
            raise _no_locks(bank) from None
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FileWriteError(bank, f"cannot be locked: {exc.strerror or exc}") from None
        return False


def _wait(cond: threading.Condition, deadline: float, on_timeout: Callable[[], BaseException]) -> None:
    """Wait on ``cond`` (held) until notified or the deadline; raise ``on_timeout()`` past it."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise on_timeout()
    cond.wait(min(left, 1.0))


# ---------------------------------------------------------------------------------------------- the writer lock
@dataclass
class _Held:
    """What this process holds of one bank's writer lock."""

    fd: int | None  # the locked lock file (None while being acquired, or for a reader that found none)
    exclusive: bool
    owner: int | None  # the thread holding it exclusively
    count: int = 0
    readers: Counter = field(default_factory=Counter)  # thread -> holds, for a shared lock
    pending: bool = True
    sessions: int = 0  # writing bank objects open under it (one at a time)


_GUARD = threading.Lock()
_COND = threading.Condition(_GUARD)
_HELD: dict[str, _Held] = {}


class BankLock:
    """A held writer lock on one bank; release it with :meth:`release` (or use :func:`bank_lock`)."""

    def __init__(self, bank: str | os.PathLike, *, exclusive: bool, timeout: float | None = None) -> None:
        self.bank = Path(bank).expanduser()
        self.exclusive = exclusive
        self._key: str | None = None
        self._thread = threading.get_ident()
        self._session = False
        if not _locking_enabled():
            return
        wait_s = lock_timeout(timeout)
        deadline = time.monotonic() + wait_s
        key = str(lock_path(self.bank))
        me = self._thread
        with _COND:
            while True:
                held = _HELD.get(key)
                if held is None:
                    held = _HELD[key] = _Held(None, exclusive, me if exclusive else None)
                    break
                if not held.pending:
                    if held.exclusive and held.owner == me:  # re-entrant in the holding thread
                        held.count += 1
                        self._key = key
                        return
                    if not held.exclusive and not exclusive:
                        held.count += 1
                        held.readers[me] += 1
                        self._key = key
                        return
                    if not held.exclusive and held.readers.get(me):
                        raise InvalidArgumentError(
                            "mode", f"no write while this thread holds {self.bank}'s lock shared (a shared lock "
                                    "cannot be upgraded)", "a write request")
                _wait(_COND, deadline, lambda: BankLockedError(
                    self.bank, f"is locked by another thread of this process; waited {wait_s:g} s (try again later, "
                               "or raise HOPFIELD_MASKS_LOCK_TIMEOUT)"))
        try:
            fd = self._acquire(key, deadline, wait_s)
        except BaseException:
            with _COND:
                del _HELD[key]
                _COND.notify_all()
            raise
        with _COND:
            held.fd, held.pending, held.count = fd, False, 1
            if not exclusive:
                held.readers[me] += 1
            _COND.notify_all()
        self._key = key

    def _acquire(self, key: str, deadline: float, wait_s: float) -> int | None:
        """Lock the lock file at the OS level (other processes), creating it if needed."""
        owners = trusted_owners(os.path.realpath(self.bank))
        while True:
            fd, created = self._open(key, owners)
            if fd is None:  # a reader in a folder it cannot write: nothing to lock, nothing can be appended there by us
                return None
            try:
                self._flock(fd, deadline, wait_s)
                if not _same_file(fd, key):
                    os.close(fd)  # the holder before us deleted the lock file: lock the new one
                    continue
                if self.exclusive:
                    self._write_pid(fd, key, created)
            except BaseException:
                os.close(fd)
                raise
            return fd

    def _open(self, key: str, owners: frozenset[int]) -> tuple[int | None, bool]:
        folder = os.path.dirname(key)
        if not os.path.isdir(folder):
            raise BankFileNotFoundError(self.bank, f"cannot be opened or created: the folder {folder} does not exist")
        try:
            return open_sidecar(key, owners, writable=True, create=True, max_bytes=_LOCK_BYTES)
        except SidecarRefused as exc:
            raise FileWriteError(self.bank, f"its lock file {key} {exc.reason}; refused, nothing was written (remove "
                                            "it if it is not yours)") from None
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError, SidecarRefused, OSError):
                # another user's lock file we may not write: a read-only descriptor locks it just as well
                return open_sidecar(key, owners, writable=False, max_bytes=_LOCK_BYTES)
            if not self.exclusive:
                return None, False
            raise FileWriteError(self.bank, f"its lock file {key} cannot be created ({exc.strerror or exc})") from None

    def _flock(self, fd: int, deadline: float, wait_s: float) -> None:
        op = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        while not _try_flock(fd, op, self.bank):
            if time.monotonic() >= deadline:
                who = "another writer" if not self.exclusive else "another process"
                raise BankLockedError(
                    self.bank,
                    f"is locked by {who}{_holder(fd)}; waited {wait_s:g} s (try again later, or raise "
                    "HOPFIELD_MASKS_LOCK_TIMEOUT)",
                )
            time.sleep(_POLL)

    def _write_pid(self, fd: int, key: str, created: bool) -> None:
        record = f"{os.getpid()}\n".encode("ascii").ljust(16, b" ")  # fixed width: no truncation needed
        try:
            os.pwrite(fd, record, 0)
        except OSError as exc:
            if exc.errno == errno.EBADF:  # opened read-only (another user's lock file): the pid stays theirs
                return
            if created and _same_file(fd, key):
                with contextlib.suppress(OSError):
                    os.unlink(key)
            raise FileWriteError(self.bank, f"its lock file {key} cannot be written ({exc.strerror or exc})") from None

    # ------------------------------------------------------------------ writing sessions
    def begin_session(self) -> None:
        """Mark a writing bank object open under this lock; refuse a second one in the same thread."""
        if self._key is None:
            return
        with _COND:
            held = _HELD[self._key]
            if held.sessions:
                raise BankLockedError(self.bank, "is already open for writing in this thread (close that bank first: "
                                                 "one writer at a time)")
            held.sessions += 1
        self._session = True

    def end_session(self) -> None:
        if self._session and self._key is not None:
            self._session = False
            with _COND:
                _HELD[self._key].sessions -= 1

    def release(self) -> None:
        """Release the lock (idempotent); the last release of a re-entrant lock unlocks the file."""
        self.end_session()
        key, self._key = self._key, None
        if key is None:
            return
        with _COND:
            held = _HELD[key]
            held.count -= 1
            if not held.exclusive:
                held.readers[self._thread] -= 1
            if held.count:
                return
            del _HELD[key]
            _COND.notify_all()
        if held.fd is None:
            return
        with contextlib.suppress(OSError):
            # the last user deletes the lock file, holding it exclusively (a shared holder tries to convert its lock)
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
    """Hold the bank's writer lock for the ``with`` block (exclusive by default).

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
    """Whether this process holds the bank's exclusive writer lock."""
    with _COND:
        held = _HELD.get(str(lock_path(bank)))
        return held is not None and held.exclusive and not held.pending


def with_free_lock(bank: str | os.PathLike, action: Callable[[], Any]) -> bool:
    """Run ``action()`` if the bank's lock file exists and nobody holds it, then delete the lock file.

    For readers tidying after a killed writer: nothing is created, a lock file that
    :func:`~hopfield_masks.safety.files.open_sidecar` refuses is left alone, and a lock held by
    anyone (this process included) means "a writer is at work": nothing is done.  True if ``action`` ran.
    """
    if not _locking_enabled():
        return False
    key = str(lock_path(bank))
    with _COND:
        if key in _HELD:
            return False
    try:
        fd, _created = open_sidecar(key, trusted_owners(os.path.realpath(Path(bank).expanduser())), writable=False,
                                    max_bytes=_LOCK_BYTES)
    except (SidecarRefused, OSError):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if not _same_file(fd, key):
            return False
        action()
        with contextlib.suppress(OSError):
            os.unlink(key)
        return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- the file lock
class _FileEntry:
    """What this process holds of one bank file's flock (keyed by the file's device and inode)."""

    def __init__(self, exclusive: bool) -> None:
        self.fd: int | None = None  # our descriptor holding the flock
        self.exclusive = exclusive
        self.pending = True
        self.readers: Counter = Counter()  # thread -> holds (shared)
        self.writer: int | None = None  # the thread changing the file in place (exclusive)
        self.viewers: Counter = Counter()  # thread -> snapshot readers opened while the file was changed in place
        #: the live in-place session (a JournaledFile), read by the snapshot readers
        self.session: Any = None
        self.live_views: weakref.WeakSet = weakref.WeakSet()
        #: held by the session around every change of the file, and by snapshot readers around every read
        self.lock = threading.RLock()

    def unused(self) -> bool:
        return self.writer is None and not +self.viewers and not +self.readers

    def reading(self, thread: int) -> bool:
        return bool(self.readers.get(thread) or self.viewers.get(thread))


_FILES: dict[tuple[int, int], _FileEntry] = {}


def _wait_flock(fd: int, exclusive: bool, timeout: float, bank: Path, who: str) -> None:
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    while not _try_flock(fd, op, bank):
        if time.monotonic() >= deadline:
            raise BankLockedError(
                bank, f"is in use by {who}; waited {timeout:g} s (try again later, or raise HOPFIELD_MASKS_LOCK_TIMEOUT)"
            )
        time.sleep(_POLL)


class FileLock:
    """An ``flock`` on the bank file itself: shared for readers, exclusive for an in-place writer.

    ``fd`` is an open descriptor of the file to lock; the lock keeps its own duplicate.  When this
    process already changes the file in place (any thread), a shared request does not wait: :attr:`view`
    is then true and the caller reads a snapshot of the last commit
    (:class:`hopfield_masks.safety.journal.CommittedView` over :attr:`hub`).
    """

    def __init__(self, bank: str | os.PathLike, fd: int, *, exclusive: bool, timeout: float | None = None) -> None:
        self.bank = Path(bank).expanduser()
        self.exclusive = exclusive
        self.view = False
        self.hub: _FileEntry | None = None
        self._thread = threading.get_ident()
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        self.identity: tuple[int, int] | None = key  # (st_dev, st_ino) of the locked file
        self._key: tuple[int, int] | None = None
        if not _locking_enabled():
            return
        wait_s = lock_timeout(timeout)
        deadline = time.monotonic() + wait_s
        me = self._thread
        with _COND:
            while True:
                entry = _FILES.get(key)
                if entry is None:
                    entry = _FILES[key] = _FileEntry(exclusive)
                    break
                if not entry.pending:
                    if self._join(entry, me):
                        self._key, self.hub = key, entry
                        return
                who = "a writer" if entry.exclusive else "a reader"
                _wait(_COND, deadline, lambda who=who: BankLockedError(
                    self.bank, f"is in use by {who} in another thread of this process; waited {wait_s:g} s (try again "
                               "later, or raise HOPFIELD_MASKS_LOCK_TIMEOUT)"))
        own = os.dup(fd)
        try:
            _wait_flock(own, exclusive, max(0.0, deadline - time.monotonic()), self.bank,
                        "a reader or writer" if exclusive else "a writer appending to it")
        except BaseException:
            os.close(own)
            with _COND:
                del _FILES[key]
                _COND.notify_all()
            raise
        with _COND:
            entry.fd, entry.pending = own, False
            if exclusive:
                entry.writer = me
            else:
                entry.readers[me] += 1
            _COND.notify_all()
        self._key, self.hub = key, entry

    def _join(self, entry: _FileEntry, me: int) -> bool:
        """Share what this process already holds, if that is safe now (``_COND`` held); False: wait."""
        if not self.exclusive:
            if entry.exclusive:  # this process changes the file in place: read its last commit instead
                if entry.writer not in (None, me) and entry.session is None:
                    # locked by another thread that has no session yet: it may be rolling back a killed writer's
                    # journal (or settling it for a new session), and nothing records the pages it restores; wait
                    return False
                entry.viewers[me] += 1
                self.view = True
            else:
                entry.readers[me] += 1
            return True
        if entry.exclusive:
            if entry.writer == me:
                raise BankLockedError(self.bank, "is already open for writing in this thread (close that bank first: "
                                                 "one writer at a time)")
            if entry.writer is None:  # only snapshot readers of this process keep it: take it over
                entry.writer = me
                return True
            return False
        if entry.reading(me):
            raise InvalidArgumentError(
                "mode", f"no write while this thread reads {self.bank} (a shared lock cannot be upgraded)",
                "a write request")
        return False  # readers in other threads: wait for them

    def attach(self, session: Any) -> None:
        """Record the in-place session (a JournaledFile) that snapshot readers of this process consult."""
        if self.hub is not None:
            with self.hub.lock:
                self.hub.session = session
            with _COND:
                _COND.notify_all()  # snapshot readers of other threads waited for the session

    def release(self) -> None:
        """Release (idempotent)."""
        key, self._key = self._key, None
        if key is None:
            return
        close: int | None = None
        with _COND:
            entry = _FILES[key]
            if self.view:
                entry.viewers[self._thread] -= 1
            elif self.exclusive:
                entry.writer = None
                with entry.lock:
                    entry.session = None
                if +entry.viewers and entry.fd is not None:
                    # the session is over but its snapshot readers remain: keep the file locked against changes
                    # only (other processes may read it again); converting a flock is atomic on Linux
                    with contextlib.suppress(OSError):
                        fcntl.flock(entry.fd, fcntl.LOCK_SH)
                        entry.exclusive = False
            else:
                entry.readers[self._thread] -= 1
            if entry.unused():
                del _FILES[key]
                close = entry.fd
            _COND.notify_all()
        if close is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(close, fcntl.LOCK_UN)
            os.close(close)


def _forget_after_fork() -> None:  # a forked child holds none of its parent's locks (nor its threads)
    global _GUARD, _COND
    _GUARD = threading.Lock()
    _COND = threading.Condition(_GUARD)
    _HELD.clear()
    _FILES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
