"""In-place appends that survive ``kill -9``: a rollback journal under HDF5's writes.

HDF5 updates a file in place (superblock, group B-trees, object headers) and is
not crash-safe by itself.  So an append session hands h5py a Python file object,
:class:`JournaledFile`, that sees every write HDF5 makes:

- a write beyond the size the file had when the session began (new task data,
  new metadata blocks) goes straight to the file;
- before the first write into any 4 KiB page *below* that size, the page's
  original bytes are appended to the journal ``.NAME.journal`` next to the bank
  and the journal is fsynced -- only then is the page overwritten;
- the journal is created (and the folder fsynced) before the first write of the
  session; its header records the file's device, inode and original size.

**Commit** (:meth:`JournaledFile.commit`, after HDF5 flushed everything):
fsync the bank, delete the journal, fsync the folder.  The deletion is the
commit record: a session is committed exactly when its journal is gone.

**Recovery** (:func:`recover`, run by every opener under the bank's lock): a
journal left by a killed writer is *hot*; its intact records are written back,
the file is truncated to its original size (its times restored) and fsynced, and the journal is
deleted -- the bank is again exactly the last committed one.  A journal whose
device/inode do not match the bank (the bank was replaced by a rename after the
journal was written, as a repack does) is stale and only deleted.  Records
carry a CRC-32, so a record torn by the crash (whose page was therefore never
overwritten) is ignored.

Cost: the bytes appended plus a few journaled metadata pages (typically
3-8 pages, 12-32 KiB, per session) -- ``benchmarks/bench_bank_writes.py`` measures it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import struct
import zlib
from pathlib import Path

from .files import fsync_folder
from ..errors import FileWriteError, StorageFormatError

__all__ = ["JournaledFile", "PlainFile", "journal_path", "recover", "fsync_folder", "stale_temporaries", "clean_temporaries",
           "signals_deferred", "defer_signal"]

PAGE = 4096
_MAGIC = b"HMJRNL02"
_HEADER = struct.Struct("<8sQQQqq")  # magic, st_dev, st_ino, original size, atime_ns, mtime_ns
_RECORD = struct.Struct("<QII")  # offset, length, crc32 of the page bytes


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


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files a killed writer of the bank at ``path`` may have left (``.NAME.*.tmp`` / ``.repack``)."""
    p = Path(path)
    folder = p.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    prefix = f".{p.name}."
    return [folder / n for n in names if n.startswith(prefix) and (n.endswith(".tmp") or n.endswith(".repack"))]


def clean_temporaries(path: str | os.PathLike) -> int:
    """Delete the stale temporaries of a bank (call only while holding its lock); return how many went."""
    removed = 0
    for tmp in stale_temporaries(path):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def recover(path: str | os.PathLike) -> bool:
    """Roll a hot journal back into the bank at ``path`` (call under the exclusive lock); True if one was applied.

    Raises
    ------
    FileWriteError
        The journal cannot be applied (no write permission, I/O error); the message says what to do.
    """
    bank = Path(path)
    jpath = journal_path(bank)
    if not jpath.exists():
        return False
    try:
        with open(jpath, "rb") as jf:
            raw = jf.read()
    except OSError as exc:
        raise FileWriteError(bank, f"its journal {jpath} cannot be read ({exc.strerror or exc})") from None
    applied = False
    if len(raw) >= _HEADER.size:
        magic, dev, ino, size, atime_ns, mtime_ns = _HEADER.unpack_from(raw, 0)
        try:
            st = os.stat(bank)
        except FileNotFoundError:
            st = None
        if magic == _MAGIC and st is not None and (st.st_dev, st.st_ino) == (dev, ino):
            try:
                fd = os.open(bank, os.O_RDWR)
            except OSError as exc:
                raise FileWriteError(
                    bank, f"has an unfinished write (journal {jpath}); open it once with write permission to roll it "
                          f"back ({exc.strerror or exc})"
                ) from None
            try:
                pos = _HEADER.size
                while pos + _RECORD.size <= len(raw):
                    offset, length, crc = _RECORD.unpack_from(raw, pos)
                    page = raw[pos + _RECORD.size: pos + _RECORD.size + length]
                    if len(page) != length or zlib.crc32(page) & 0xFFFFFFFF != crc or offset + length > size:
                        break  # torn final record: its page was never overwritten
                    os.pwrite(fd, page, offset)
                    pos += _RECORD.size + length
                os.ftruncate(fd, size)
                os.fsync(fd)
                os.utime(fd, ns=(atime_ns, mtime_ns))  # the file is as it was, its times included
                applied = True
            except OSError as exc:
                raise FileWriteError(bank, f"its journal {jpath} cannot be rolled back ({exc.strerror or exc})") from None
            finally:
                os.close(fd)
    # an empty, torn-header or stale journal changed nothing that must be undone
    try:
        jpath.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise FileWriteError(bank, f"its journal {jpath} cannot be removed ({exc.strerror or exc})") from None
    fsync_folder(bank.parent)
    return applied


class PlainFile(io.RawIOBase):
    """A file object for h5py that remembers the first OS error (so a full disk is reported, not a vague HDF5 error)."""

    def __init__(self, path: str | os.PathLike, mode: str) -> None:
        super().__init__()
        self.path = Path(path)
        self._fh = open(self.path, mode, buffering=0)  # noqa: SIM115 - closed by close()
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
    """The bank file opened for an in-place append session (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, "r+b")
        self.journal = journal_path(self.path)
        self._begin()

    def _begin(self) -> None:
        st = os.fstat(self._fh.fileno())
        self._identity = (st.st_dev, st.st_ino)
        self._times = (st.st_atime_ns, st.st_mtime_ns)
        self.original_size = st.st_size
        self._pages: set[int] = set()
        self._jfd: int | None = None
        self.journaled_bytes = 0

    def _open_journal(self) -> None:
        try:
            fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            raise StorageFormatError(self.path, f"has a journal {self.journal} that was not rolled back") from None
        try:
            header = _HEADER.pack(_MAGIC, *self._identity, self.original_size, *self._times)
            os.write(fd, header)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.journal)
            raise
        self._jfd = fd
        self.journaled_bytes += len(header)
        fsync_folder(self.path.parent)  # the journal must exist on disk before the file changes

    def _save_pages(self, start: int, end: int) -> None:
        """Journal the original bytes of the pages covering ``[start, end)`` below the original size."""
        if self._jfd is None:
            self._open_journal()
        end = min(end, self.original_size)
        if start >= end:
            return
        new = [p for p in range(start // PAGE, (end - 1) // PAGE + 1) if p not in self._pages]
        if not new:
            return
        chunks = []
        for p in new:
            offset = p * PAGE
            page = os.pread(self._fh.fileno(), min(PAGE, self.original_size - offset), offset)
            chunks.append(_RECORD.pack(offset, len(page), zlib.crc32(page) & 0xFFFFFFFF) + page)
        blob = b"".join(chunks)
        view, done = memoryview(blob), 0
        while done < len(blob):
            done += os.write(self._jfd, view[done:])
        os.fsync(self._jfd)  # durable before the pages are overwritten
        self._pages.update(new)
        self.journaled_bytes += len(blob)

    def write(self, data) -> int:
        if self.error is None:
            try:
                start = self._fh.tell()
                self._save_pages(start, start + len(memoryview(data)))
            except OSError as exc:  # the original bytes are not safe: the overwrite must not happen
                self._fail(exc)
        return super().write(data)

    def truncate(self, size: int | None = None) -> int:
        size = self._fh.tell() if size is None else size
        if self.error is None:
            try:
                self._save_pages(size, self.original_size)
            except OSError as exc:
                self._fail(exc)
        return super().truncate(size)

    def _drop_journal(self) -> None:
        if self._jfd is not None:
            os.close(self._jfd)
            self._jfd = None
            os.unlink(self.journal)
            fsync_folder(self.path.parent)

    def _extend_to_stored_eof(self) -> None:
        """After an HDF5 flush (not a close) the file may be shorter than the end address its superblock
        records; HDF5 then refuses it as truncated.  Extend it (sparse zeros) so the flushed state opens."""
        head = os.pread(self._fh.fileno(), 48, 0)
        if len(head) < 36 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3) or head[9] != 8:
            return  # superblock versions 0/1 are never written by this package
        stored_eof = int.from_bytes(head[28:36], "little")
        size = os.fstat(self._fh.fileno()).st_size
        if size < stored_eof < (1 << 62):
            os.ftruncate(self._fh.fileno(), stored_eof)  # beyond the original size: nothing to journal

    def commit(self) -> None:
        """Make everything written so far durable and committed (fsync the bank, then delete the journal)."""
        self._fh.flush()
        if self.error is not None:
            raise self.error
        self._extend_to_stored_eof()
        self.fsync()
        self._drop_journal()
        self._begin()

    def rollback(self) -> None:
        """Undo every write since the last commit (the journal is applied and deleted)."""
        if self._jfd is not None:
            os.close(self._jfd)
            self._jfd = None
        recover(self.path)
        self._begin()

    def abandon(self) -> None:
        """Close the journal without committing or rolling back (the next opener rolls it back)."""
        if self._jfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._jfd)
            self._jfd = None
