"""In-place appends that survive ``kill -9``: an authenticated rollback journal under HDF5's writes.

HDF5 updates a file in place (superblock, group B-trees, object headers) and is
not crash-safe by itself.  So an append session hands h5py a Python file object,
:class:`JournaledFile`, that sees every write HDF5 makes:

- before HDF5's first write, the session begins: a random 32-byte key is drawn
  (``os.urandom``), the journal ``.NAME.journal`` is created next to the bank
  (``O_EXCL``, mode 0600, never through a link) with a header recording the
  file's device, inode, original size and times and the key, followed by the
  original first page; the journal and the folder are fsynced; then the first 40
  bytes of the bank are replaced by the session's **mark** -- ``HMSESS03`` and
  the SHA-256 of the journal header -- and the bank is fsynced.  HDF5 keeps
  seeing the real first bytes (held in memory) through this file object;
- a write beyond the size the file had when the session began (new task data,
  new metadata blocks) goes straight to the file;
- before the first write into each further 4 KiB page *below* that size, the
  page's original bytes are appended to the journal (each record authenticated
  with HMAC-SHA256 under the key) and the journal is fsynced -- only then is the
  page overwritten.

**Commit** (:meth:`JournaledFile.commit`, after HDF5 flushed everything): fsync
the bank, append a commit record holding the real first bytes to the journal,
write them over the mark and fsync the bank -- **the mark's disappearance is the
commit** -- then delete the journal and fsync the folder.

**Which journal is hot** (:func:`recover`, run under the *exclusive* flock of the
bank file itself, which a live session holds for its whole duration, so a hot
journal is never a live writer's): the journal must be a trusted sidecar
(:func:`hopfield_masks.safety.files.open_sidecar`: a regular file of the bank's
owner or the current user, one name, not writable by others), its header intact,
and the bank must carry the mark made from that very header.  Only a writer that
ran can have put it there, and only one that knew the key (which never leaves
the 0600 journal) can have made the header: a journal planted by someone who can
write the folder but not the bank is never applied.  A hot journal's records are
written back (the first page last, so the mark stays until everything else is
restored), the file is truncated to its original size, fsynced, its times
restored, and the journal deleted -- the bank is again exactly the last committed one.

A journal that is not hot is never applied.  It is deleted without a word when it
is provably stale: its header is torn (the writer died creating it, before
marking the bank), it names another file (the bank was replaced by a rename, as
a repack does), it holds a commit record matching the bank (the writer died
between committing and deleting it), or writing its records back would change
nothing (the writer died before marking the bank).  Anything else -- a journal
of another version or format, of another owner, a link, or one that would change
a bank that carries no mark -- is reported with one line naming it
(:class:`~hopfield_masks.errors.StorageFormatError`) and left in place for the user.

Cost: the bytes appended plus a few journaled metadata pages (typically 3-8
pages, 12-32 KiB, per session) and one fsync of the bank more at the start and
at the commit of each session -- ``benchmarks/bench_bank_writes.py`` measures it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import io
import os
import re
import signal
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import SidecarRefused, fsync_folder, open_sidecar, trusted_owners
from ..errors import FileWriteError, StorageFormatError

__all__ = ["JournaledFile", "PlainFile", "CommittedView", "journal_path", "recover", "journal_state", "fsync_folder",
           "stale_temporaries", "clean_temporaries", "signals_deferred", "defer_signal", "MARK_BYTES"]

PAGE = 4096
_MAGIC = b"HMJRNL03"
_HEADER = struct.Struct("<8sQQQqq32s")  # magic, st_dev, st_ino, original size, atime_ns, mtime_ns, key
_RECORD = struct.Struct("<QI16s")  # offset, length, HMAC-SHA256 (first 16 bytes); then the page bytes
_COMMIT = 0xFFFF_FFFF_FFFF_FFFF  # offset of the commit record (its bytes: the real first bytes of the bank)
_MARK_MAGIC = b"HMSESS03"
#: Bytes at the start of a bank replaced by the session mark while an in-place session has overwritten pages.
MARK_BYTES = len(_MARK_MAGIC) + 32


_DEPTH = [0]  # nesting of signals_deferred() blocks in this process
_PENDING: list[int] = []  # signals that arrived inside one, delivered again when the outermost ends


@contextlib.contextmanager
def signals_deferred():
    """Mark a block in which HDF5 runs, so that a cooperating signal handler waits for its end.

    A Python signal handler that raises (the CLI turns SIGTERM into ``SystemExit`` and SIGINT into
    ``KeyboardInterrupt`` so that cleanup runs) would otherwise raise *inside* HDF5's callbacks into
    :class:`PlainFile` or between a flush and its commit record.  Handlers call :func:`defer_signal`
    first: inside such a block the signal is recorded and raised again (``signal.raise_signal``) when the
    outermost block ends, between two bank operations, where the bank rolls back cleanly.
    (``kill -9`` cannot be caught; the journal covers it.)
    """
    _DEPTH[0] += 1
    try:
        yield
    finally:
        _DEPTH[0] -= 1
        if _DEPTH[0] == 0 and _PENDING:
            signum = _PENDING.pop(0)
            _PENDING.clear()
            signal.raise_signal(signum)


def defer_signal(signum: int) -> bool:
    """For a signal handler: True (and the signal is kept for later) while a bank is inside HDF5 work."""
    if _DEPTH[0] > 0:
        _PENDING.append(signum)
        return True
    return False


def journal_path(path: str | os.PathLike) -> Path:
    """The rollback journal of the bank at ``path`` (in the bank's folder)."""
    p = Path(path)
    return p.parent / f".{p.name}.journal"


# ---------------------------------------------------------------------------------------------- temporaries
# tempfile.mkstemp names: 8 characters of [a-z0-9_] between the prefix and the suffix (6-16 accepted)
_RANDOM = r"[a-z0-9_]{6,16}"


def _temporary_pattern(name: str) -> re.Pattern[str]:
    """Exactly the temporaries this package names for the bank file ``name``.

    ``.NAME.XXXXXXXX.tmp`` (a new bank, :func:`~hopfield_masks.safety.files.atomic_path`), ``.NAME.XXXXXXXX.repack``
    (a repack), ``.NAME.XXXXXXXX.tmp.repack`` (a new bank compacted before publishing), ``.NAME.PID.train.tmp``
    (a training run's new bank) and that bank's own journal and lock file.  The random part holds no dot, so
    the temporaries of ``m.h5.bak`` (``.m.h5.bak.XXXXXXXX.tmp``) are never ``m.h5``'s.
    """
    own = re.escape(name)
    return re.compile(
        rf"^\.{own}\.(?:{_RANDOM}\.(?:tmp|repack|tmp\.repack)|[0-9]+\.train\.tmp)$"
        rf"|^\.\.{own}\.[0-9]+\.train\.tmp\.(?:journal|lock)$"
    )


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files a killed writer of the bank at ``path`` may have left (see :func:`_temporary_pattern`)."""
    p = Path(path)
    folder = p.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = _temporary_pattern(p.name)
    return [folder / n for n in names if pattern.match(n)]


def clean_temporaries(path: str | os.PathLike) -> int:
    """Delete the stale temporaries of a bank (call only while holding its writer lock); return how many went.

    Only regular files (or links, which are removed, never followed) of the bank's owner or the current user.
    """
    owners = trusted_owners(path)
    removed = 0
    for tmp in stale_temporaries(path):
        with contextlib.suppress(OSError):
            st = os.lstat(tmp)
            if not stat.S_ISLNK(st.st_mode) and (not stat.S_ISREG(st.st_mode) or st.st_uid not in owners):
                continue
            tmp.unlink()
            removed += 1
    return removed


# ---------------------------------------------------------------------------------------------- journal records
def _mark(header: bytes) -> bytes:
    return _MARK_MAGIC + hashlib.sha256(header).digest()


def _mac(key: bytes, header: bytes, offset: int, length: int, payload: bytes) -> bytes:
    return hmac.new(key, header + struct.pack("<QI", offset, length) + payload, hashlib.sha256).digest()[:16]


def _record(key: bytes, header: bytes, offset: int, payload: bytes) -> bytes:
    return _RECORD.pack(offset, len(payload), _mac(key, header, offset, len(payload), payload)) + payload


@dataclass
class _Journal:
    """A journal as read from disk."""

    fd: int
    kind: str  # "ours" (intact header of this version), "torn" (cut while being created), "foreign"
    header: bytes = b""
    identity: tuple[int, int] = (0, 0)
    size: int = 0
    times: tuple[int, int] = (0, 0)
    records: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, length, position of the bytes)
    commit_head: bytes | None = None


def _read_journal(fd: int) -> _Journal:
    """Parse the journal open as ``fd``: its header, then its records up to the first one failing its HMAC."""
    total = os.fstat(fd).st_size
    head = os.pread(fd, _HEADER.size, 0)
    if len(head) < _HEADER.size or head[:8] != _MAGIC:
        torn = len(head) == total and len(head) < _HEADER.size and _MAGIC.startswith(head[:8])
        return _Journal(fd, "torn" if torn else "foreign")
    _magic, dev, ino, size, atime, mtime, key = _HEADER.unpack(head)
    journal = _Journal(fd, "ours", head, (dev, ino), size, (atime, mtime))
    pos = _HEADER.size
    while pos + _RECORD.size <= total:
        offset, length, mac = _RECORD.unpack(os.pread(fd, _RECORD.size, pos))
        if length > PAGE or (offset != _COMMIT and offset + length > size) or (offset == _COMMIT and length != MARK_BYTES):
            break
        payload = os.pread(fd, length, pos + _RECORD.size)
        if len(payload) != length or not hmac.compare_digest(mac, _mac(key, head, offset, length, payload)):
            break  # torn by the crash (its page was therefore never overwritten), or not ours
        if offset == _COMMIT:
            journal.commit_head = payload
        else:
            journal.records.append((offset, length, pos + _RECORD.size))
        pos += _RECORD.size + length
    return journal


def _left_in_place(bank: Path, jpath: Path, why: str) -> StorageFormatError:
    return StorageFormatError(bank, f"has a journal {jpath} that {why}; it was not applied and is left in place "
                                    "(remove it if no writer of this bank was killed)")


def _open_journal_for_judging(bank: Path, jpath: Path, marked: bool) -> int | None:
    """The journal open for reading; None when absent, or when unreadable (another trusted user's 0600 journal)
    beside a bank that carries no mark (then it cannot be hot, and it is its owner's to remove)."""
    try:
        fd, _created = open_sidecar(jpath, trusted_owners(bank), writable=False, private=True)
    except FileNotFoundError:
        return None
    except SidecarRefused as exc:
        raise _left_in_place(bank, jpath, exc.reason) from None
    except OSError as exc:
        if isinstance(exc, PermissionError) and not marked:
            return None
        raise StorageFormatError(bank, f"its journal {jpath} cannot be read ({exc.strerror or exc})") from None
    return fd


def _judge(bank: Path, fd: int | None) -> tuple[str, _Journal | None]:
    """``("absent" | "hot" | "stale", journal)`` for the bank open as ``fd`` (None: the bank does not exist).

    Call under the bank file's flock (shared or exclusive).  Raises for a journal that is left for the user.
    """
    jpath = journal_path(bank)
    head = os.pread(fd, MARK_BYTES, 0) if fd is not None else b""
    marked = head[:len(_MARK_MAGIC)] == _MARK_MAGIC
    jfd = _open_journal_for_judging(bank, jpath, marked)
    if jfd is None:
        if marked:
            raise StorageFormatError(bank, f"is in the middle of a write whose journal {jpath} is missing; it cannot be "
                                           "rolled back (restore the bank from a copy)")
        return "absent", None
    try:
        journal = _read_journal(jfd)
        if journal.kind == "ours" and fd is not None and head == _mark(journal.header):
            return "hot", journal
        if marked:
            raise StorageFormatError(bank, f"is in the middle of a write whose journal is not {jpath} (that journal does "
                                           "not match the file's mark); it cannot be rolled back (restore the bank "
                                           "from a copy)")
        # the file carries no mark: no page of it was overwritten by a session that this journal could undo
        if journal.kind == "torn":
            return "stale", journal
        if journal.kind == "foreign":
            raise _left_in_place(bank, jpath, "is not a journal of this version of hopfield_masks")
        if fd is None:
            return "stale", journal  # the bank it was made for no longer exists
        st = os.fstat(fd)
        if journal.identity != (st.st_dev, st.st_ino):
            return "stale", journal  # made for a file since replaced (by a rename: a repack, a new bank)
        if journal.commit_head is not None and journal.commit_head == head:
            return "stale", journal  # committed: the writer died before deleting it
        if all(os.pread(fd, length, offset) == os.pread(jfd, length, pos) for offset, length, pos in journal.records):
            return "stale", journal  # writing it back would change nothing
        raise _left_in_place(bank, jpath, "no writer session of this file left (the file carries no mark of an "
                                          "unfinished write)")
    except BaseException:
        os.close(jfd)
        raise


def _unlink_journal(jpath: Path, jfd: int) -> None:
    """Delete the journal at ``jpath`` if it still is the file open as ``jfd``."""
    with contextlib.suppress(OSError):
        a, b = os.fstat(jfd), os.lstat(jpath)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            return
    try:
        os.unlink(jpath)
    except FileNotFoundError:
        return
    fsync_folder(jpath.parent)


def _write_back(fd: int, jfd: int, records: list[tuple[int, int, int]], size: int, times: tuple[int, int]) -> None:
    """Restore the original pages (the first page last: the mark goes only once all else is back), size and times."""
    first = [r for r in records if r[0] == 0]
    for offset, length, pos in records:
        if offset:
            os.pwrite(fd, os.pread(jfd, length, pos), offset)
    os.ftruncate(fd, size)
    os.fsync(fd)
    for offset, length, pos in first:
        os.pwrite(fd, os.pread(jfd, length, pos), offset)
    os.fsync(fd)
    os.utime(fd, ns=times)  # the file is as it was, its times included


def journal_state(path: str | os.PathLike, fd: int | None) -> str:
    """``"absent"``, ``"hot"`` (to be rolled back under the exclusive lock) or ``"stale"`` for the bank open as ``fd``.

    For readers holding the shared flock: a stale journal is deleted when the folder allows it.

    Raises
    ------
    StorageFormatError
        A journal that is reported and left in place (see the module docstring).
    """
    bank = Path(path)
    kind, journal = _judge(bank, fd)
    if journal is not None:
        try:
            if kind == "stale":
                with contextlib.suppress(OSError):  # a reader may not be allowed to; a writer will
                    _unlink_journal(journal_path(bank), journal.fd)
        finally:
            os.close(journal.fd)
    return kind


def recover(path: str | os.PathLike, fd: int | None = None) -> bool:
    """Roll a hot journal back into the bank at ``path`` (call under the exclusive flock of the bank file).

    ``fd``: a descriptor of the bank (the one locked); None opens it (or judges the journal alone when the
    bank does not exist).  A stale journal is deleted; True if one was applied.

    Raises
    ------
    StorageFormatError
        A journal that is reported and left in place (see the module docstring).
    FileWriteError
        The journal cannot be applied or removed (no write permission, I/O error); the message says what to do.
    """
    bank = Path(path)
    own = None
    if fd is None:
        try:
            own = fd = os.open(bank, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise FileWriteError(bank, f"cannot be opened to check its journal ({exc.strerror or exc})") from None
    try:
        kind, journal = _judge(bank, fd)
        if journal is None:
            return False
        jpath = journal_path(bank)
        try:
            if kind == "hot":
                assert fd is not None
                _apply(bank, fd, journal)
            try:
                _unlink_journal(jpath, journal.fd)
            except OSError as exc:
                raise FileWriteError(bank, f"its journal {jpath} cannot be removed ({exc.strerror or exc})") from None
            return kind == "hot"
        finally:
            os.close(journal.fd)
    finally:
        if own is not None:
            os.close(own)


def _apply(bank: Path, fd: int, journal: _Journal) -> None:
    try:
        rw = os.open(bank, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileWriteError(
            bank, f"has an unfinished write (journal {journal_path(bank)}); open it once with write permission to roll "
                  f"it back ({exc.strerror or exc})"
        ) from None
    try:
        a, b = os.fstat(rw), os.fstat(fd)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            raise StorageFormatError(bank, "was replaced while its journal was being rolled back; open it again")
        if not any(offset == 0 for offset, _length, _pos in journal.records):
            raise _left_in_place(bank, journal_path(bank), "lacks the bank's first page")
        _write_back(rw, journal.fd, journal.records, journal.size, journal.times)
    except OSError as exc:
        raise FileWriteError(bank, f"its journal {journal_path(bank)} cannot be rolled back ({exc.strerror or exc})") from None
    finally:
        os.close(rw)


# ---------------------------------------------------------------------------------------------- file objects
class PlainFile(io.RawIOBase):
    """A file object for h5py that remembers the first OS error (so a full disk is reported, not a vague HDF5 error)."""

    def __init__(self, path: str | os.PathLike, mode: str, fd: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        # noqa: SIM115 - closed by close(); an fd given is taken over
        self._fh = open(self.path if fd is None else fd, mode, buffering=0)  # noqa: SIM115
        self.error: OSError | None = None

    def __repr__(self) -> str:  # h5py names the file by this (File.filename, error messages)
        return str(self.path)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        return self._fh.readinto(buffer)

    # h5py calls these methods from inside HDF5; an exception raised there leaves Python's error indicator
    # set while HDF5 goes on calling back, which ends in unrelated errors.  So a failed write *poisons* the
    # file: the OS error is kept in ``error``, this and every later write or truncate is skipped (reported
    # done), and the bank checks ``error`` after each write and at commit, rolling the session back.
    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc

    def write(self, data) -> int:
        view = memoryview(data)
        if self.error is not None:
            return len(view)
        try:
            done = 0
            while done < len(view):  # a raw write may be short
                n = self._fh.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "short write")
                done += n
        except OSError as exc:
            self._fail(exc)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._fh.tell() if size is None else size
        if self.error is None:
            try:
                self._fh.truncate(size)
            except OSError as exc:
                self._fail(exc)
        return size

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def fsync(self) -> None:
        """Make the file's bytes durable (raises the first failed write's error instead, if there was one)."""
        if self.error is not None:
            raise self.error
        os.fsync(self._fh.fileno())

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()
        super().close()


class JournaledFile(PlainFile):
    """The bank file opened for an in-place append session (see the module docstring).

    ``fd``: the bank already opened read-write (taken over); ``hub``: what this process shares about the
    file with its snapshot readers (:class:`hopfield_masks.safety.locking.FileLock`), or None.
    """

    def __init__(self, path: str | os.PathLike, fd: int | None = None, hub: Any = None) -> None:
        if fd is not None and os.fstat(fd).st_size < MARK_BYTES:  # refused before the descriptor is taken over
            raise StorageFormatError(path, f"holds {os.fstat(fd).st_size} B, too few to be a bank")
        super().__init__(path, "r+b", fd)
        self.journal = journal_path(self.path)
        self._hub = hub
        self._jfd: int | None = None
        self._begin()
        if self.original_size < MARK_BYTES:
            self.close()
            raise StorageFormatError(self.path, f"holds {self.original_size} B, too few to be a bank")

    def _guard(self):
        return self._hub.lock if self._hub is not None else contextlib.nullcontext()

    def _begin(self) -> None:
        st = os.fstat(self._fh.fileno())
        self._identity = (st.st_dev, st.st_ino)
        self._times = (st.st_atime_ns, st.st_mtime_ns)
        self.original_size = st.st_size
        self._saved: dict[int, tuple[int, int]] = {}  # page -> (position of its original bytes in the journal, length)
        self._jfd = None
        self._jsize = 0
        self._key = b""
        self._header = b""
        self._head: bytearray | None = None  # the real first bytes while the mark is on disk
        self.journaled_bytes = 0

    # ------------------------------------------------------------------ the session
    def _start(self) -> None:
        """Create the journal (header and original first page), then mark the bank (see the module docstring)."""
        self._key = os.urandom(32)
        self._header = _HEADER.pack(_MAGIC, *self._identity, self.original_size, *self._times, self._key)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.journal, flags, 0o600)  # O_EXCL: a new file of ours, never something found there
        except FileExistsError:
            raise StorageFormatError(self.path, f"has a journal {self.journal} that was not rolled back") from None
        try:
            first = os.pread(self._fh.fileno(), min(PAGE, self.original_size), 0)
            blob = self._header + _record(self._key, self._header, 0, first)
            _write_all(fd, blob)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.journal)
            raise
        self._jfd, self._jsize = fd, len(blob)
        self._saved[0] = (_HEADER.size + _RECORD.size, len(first))
        self.journaled_bytes += len(blob)
        fsync_folder(self.path.parent)  # the journal must exist on disk before the file changes
        self._head = bytearray(first[:MARK_BYTES])
        os.pwrite(self._fh.fileno(), _mark(self._header), 0)
        os.fsync(self._fh.fileno())  # the mark is durable before any page is overwritten

    def _save_pages(self, start: int, end: int) -> None:
        """Journal the original bytes of the pages covering ``[start, end)`` below the original size (the first write
        of any kind begins the session: a crash then cuts what was appended too)."""
        if self._jfd is None:
            self._start()
        end = min(end, self.original_size)
        if start >= end:
            return
        new = [p for p in range(start // PAGE, (end - 1) // PAGE + 1) if p not in self._saved]
        if not new:
            return
        chunks, pos = [], self._jsize
        for p in new:
            offset = p * PAGE
            page = os.pread(self._fh.fileno(), min(PAGE, self.original_size - offset), offset)
            chunk = _record(self._key, self._header, offset, page)
            self._saved[p] = (pos + _RECORD.size, len(page))
            pos += len(chunk)
            chunks.append(chunk)
        blob = b"".join(chunks)
        try:
            _write_all(self._jfd, blob)
            os.fsync(self._jfd)  # durable before the pages are overwritten
        except OSError:
            for p in new:
                del self._saved[p]
            raise
        self._jsize = pos
        self.journaled_bytes += len(blob)

    def original_page(self, page: int) -> bytes | None:
        """The bytes page ``page`` had at the last commit, if this session overwrote it (else None)."""
        where = self._saved.get(page)
        if where is None or self._jfd is None:
            return None
        return os.pread(self._jfd, where[1], where[0])

    # ------------------------------------------------------------------ what HDF5 calls
    def readinto(self, buffer) -> int:
        start = self._fh.tell()
        n = super().readinto(buffer)
        head = self._head
        if head is not None and n and start < MARK_BYTES:
            k = min(n, MARK_BYTES - start)
            memoryview(buffer).cast("B")[:k] = head[start:start + k]
        return n

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        with self._guard():
            if self.error is None:
                start = self._fh.tell()
                try:
                    self._save_pages(start, start + len(view))
                except OSError as exc:  # the original bytes are not safe: the overwrite must not happen
                    self._fail(exc)
                if self.error is None and self._head is not None and start < MARK_BYTES:
                    k = min(len(view), MARK_BYTES - start)  # over the mark: kept in memory until the commit
                    self._head[start:start + k] = view[:k]
                    self._fh.seek(start + k)
                    return k + super().write(view[k:])
            return super().write(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._fh.tell() if size is None else size
        with self._guard():
            if self.error is None:
                try:
                    self._save_pages(size, self.original_size)
                except OSError as exc:
                    self._fail(exc)
            return super().truncate(size)

    def _extend_to_stored_eof(self) -> None:
        """After an HDF5 flush (not a close) the file may be shorter than the end address its superblock
        records; HDF5 then refuses it as truncated.  Extend it (sparse zeros) so the flushed state opens."""
        head = bytearray(os.pread(self._fh.fileno(), 48, 0))
        if self._head is not None:
            head[:MARK_BYTES] = self._head
        if len(head) < 36 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3) or head[9] != 8:
            return  # superblock versions 0/1 are never written by this package
        stored_eof = int.from_bytes(head[28:36], "little")
        size = os.fstat(self._fh.fileno()).st_size
        if size < stored_eof < (1 << 62):
            os.ftruncate(self._fh.fileno(), stored_eof)  # beyond the original size: nothing to journal

    def _freeze_views(self) -> None:
        """Snapshot readers of this process keep the pages of the last commit before they stop being recoverable."""
        if self._hub is None or not self._saved:
            return
        for view in list(self._hub.live_views):
            view._freeze(self)

    def _unmark(self) -> None:
        """Append the commit record and put the real first bytes back: the session's changes are committed."""
        assert self._head is not None and self._jfd is not None
        head = bytes(self._head)
        with contextlib.suppress(OSError):  # an aid to the next opener only (it proves this journal stale)
            _write_all(self._jfd, _record(self._key, self._header, _COMMIT, head))
        os.pwrite(self._fh.fileno(), head, 0)
        os.fsync(self._fh.fileno())
        self._head = None

    def _flush_to_disk(self) -> None:
        """Everything HDF5 wrote is in the file and durable (the first failed write raised instead)."""
        self._fh.flush()
        if self.error is not None:
            raise self.error
        self._extend_to_stored_eof()
        self.fsync()

    def commit(self) -> None:
        """Make everything written so far durable and committed (fsync, unmark the bank, delete the journal)."""
        with self._guard():
            self._flush_to_disk()
            if self._jfd is not None:
                self._freeze_views()
                if self._head is not None:
                    self._unmark()
                self._drop_journal()
            self._begin()

    def settle_for_copy(self) -> None:
        """Make the file on disk the complete new state (for a repack that reads it by name), still undoable by
        :meth:`rollback`; a crash from here on keeps the new state (the journal is then provably stale)."""
        with self._guard():
            self._flush_to_disk()
            self._freeze_views()
            if self._head is not None:
                self._unmark()

    def _drop_journal(self) -> None:
        if self._jfd is not None:
            jfd, self._jfd = self._jfd, None
            try:
                _unlink_journal(self.journal, jfd)
            finally:
                os.close(jfd)

    def rollback(self) -> None:
        """Undo every write since the last commit (the journal is applied and deleted)."""
        with self._guard():
            fd = self._fh.fileno()
            if self._jfd is not None:
                if self._head is None and 0 in self._saved:  # unmarked for a copy: mark again, then restore
                    os.pwrite(fd, _mark(self._header), 0)
                    os.fsync(fd)
                records = [(p * PAGE, length, pos) for p, (pos, length) in self._saved.items()]
                _write_back(fd, self._jfd, records, self.original_size, self._times)
                self._head = None
                self._drop_journal()
            elif os.fstat(fd).st_size != self.original_size:  # appended bytes only: cut them
                os.ftruncate(fd, self.original_size)
                os.fsync(fd)
                os.utime(fd, ns=self._times)
            self._begin()

    def discard_journal(self) -> None:
        """The file was replaced by a new one (a repack renamed over it): its journal is stale, delete it.

        Snapshot readers of this process that are reading this (old) file keep the pages of the commit they opened
        (taken from the journal before it goes); from then on the session describes the old file as it is on disk
        -- the settled new state, whole (:meth:`settle_for_copy`) -- so a snapshot reader that locked the old file
        just before the rename and opens it only now reads that state, never its bytes cut at the size before the
        session."""
        with self._guard():
            self._freeze_views()
            self._head = None
            self._drop_journal()
            self._begin()

    def abandon(self) -> None:
        """Close the journal without committing or rolling back (the next opener rolls it back)."""
        if self._jfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._jfd)
            self._jfd = None

    def close(self) -> None:
        self.abandon()  # a session neither committed nor rolled back (a failed commit) leaves its journal hot
        super().close()


def _write_all(fd: int, blob: bytes) -> None:
    view, done = memoryview(blob), 0
    while done < len(blob):
        n = os.write(fd, view[done:])
        if not n:
            raise OSError(errno.EIO, "short write")
        done += n


class CommittedView(io.RawIOBase):
    """A read-only file object showing a bank as of its last commit while this process changes it in place.

    What a reader in the writer's own process reads (:class:`hopfield_masks.safety.locking.FileLock` with
    ``view``): the bank's bytes up to the last commit's size, with every page the live session (or a later
    one of this process) overwrote read from what it was -- the session's journal, or a copy this view took
    when that session committed.  It never writes, and never touches the journal.
    """

    def __init__(self, path: str | os.PathLike, hub: Any, identity: tuple[int, int], fd: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._hub = hub
        # the descriptor that was locked (duplicated), never the name again: a repack may have renamed a new
        # file over it since, and this view is registered with the session of the file that was locked
        self._fd = os.dup(fd) if fd is not None else os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(self._fd)
        if (st.st_dev, st.st_ino) != identity:
            os.close(self._fd)
            raise StorageFormatError(self.path, "was replaced while being opened; open it again")
        self._frozen: dict[int, bytes] = {}
        self._pos = 0
        with hub.lock:
            # the size and the registration in one step under the lock a session holds around every change (and
            # a commit around freezing its views): a size taken before it could be that of a commit since
            # replaced, with no frozen pages of it (the view was not registered yet): a cut file
            session = hub.session
            self.size = session.original_size if session is not None else os.fstat(self._fd).st_size
            hub.live_views.add(self)

    def __repr__(self) -> str:
        return str(self.path)

    def _freeze(self, session: JournaledFile) -> None:  # called by the session, under the hub's lock
        for page in list(session._saved):
            if page not in self._frozen and page * PAGE < self.size:
                original = session.original_page(page)
                if original is not None:
                    self._frozen[page] = original

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        start = self._pos
        n = max(0, min(len(out), self.size - start))
        if not n:
            return 0
        with self._hub.lock:
            data = bytearray(os.pread(self._fd, n, start))
            data.extend(bytes(n - len(data)))
            session = self._hub.session
            for page in range(start // PAGE, (start + n - 1) // PAGE + 1):
                original = self._frozen.get(page)
                if original is None and session is not None:
                    original = session.original_page(page)
                if original is None:
                    continue
                lo, hi = max(start, page * PAGE), min(start + n, page * PAGE + len(original))
                if lo < hi:
                    data[lo - start:hi - start] = original[lo - page * PAGE:hi - page * PAGE]
        out[:n] = data
        self._pos = start + n
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with contextlib.suppress(Exception):
                self._hub.live_views.discard(self)
        super().close()

