"""Reading untrusted data files with bounds, shared by the loaders.

* :func:`open_regular` opens a path only when it is a regular file (after following links), without
  blocking on a FIFO; anything else is refused saying what the path is (:func:`describe_path`:
  missing, a link loop, a broken link, a folder, a FIFO, a device ...).
* :func:`read_regular` reads such a file after checking its size against a limit.
* :func:`read_some` reads from a stream (plain or gzip) at most a given number of bytes, turning
  read and decompression errors into one-line :class:`~supsup_core.errors.DataError`.
* :func:`gunzip` decompresses gzip data with a ceiling on the output: a bomb stops at the limit.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import zlib
from typing import BinaryIO

from ..errors import DataError
from ._text import one_line

__all__ = ["describe_path", "gunzip", "open_regular", "read_regular", "read_some"]

_CHUNK = 1 << 20  # bytes read at a time
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (a special file, not a regular file)"
    if stat.S_ISSOCK(mode):
        return "a socket (a special file, not a regular file)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device (a special file, not a regular file)"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file (not a regular file)"


def describe_path(path: str | os.PathLike, *, missing: str = "a path that does not exist") -> str:
    """What is at ``path``, worded for the "received ..." part of a message (never raises).

    >>> describe_path("/nowhere/at/all"), describe_path("/")
    ('a path that does not exist', 'a folder')
    """
    try:
        linked = stat.S_ISLNK(os.lstat(path).st_mode)
    except (OSError, ValueError):
        linked = False
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "a broken symbolic link (its target does not exist)" if linked else missing
        return f"a path that cannot be examined ({one_line(exc)})"
    except ValueError:  # an embedded NUL byte
        return "a path with a NUL byte"
    return ("a symbolic link to " if linked else "") + _kind(mode)


def open_regular(path: str | os.PathLike, what: str, *, missing: str = "a path that does not exist") -> BinaryIO:
    """``path`` opened for binary reading when it is a regular file, else DataError saying what it is.

    A FIFO is opened without blocking and refused, so no path can make the reader wait forever.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
            raise DataError(f"{path}: expected {what}, could not open it ({one_line(exc)})") from None
        raise DataError(f"{path}: expected {what}, received {describe_path(path, missing=missing)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: expected {what}, received {describe_path(path, missing=missing)}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_some(stream: BinaryIO, size: int, display: str, what: str) -> bytes:
    """At most ``size`` bytes from ``stream`` (fewer at its end); read or gzip errors become a DataError.

    Read in chunks, so memory follows what the stream holds, not the ``size`` asked for
    (``read(n)`` allocates ``n`` bytes up front).
    """
    buffer = io.BytesIO()
    left = size
    try:
        while left > 0:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                break
            buffer.write(chunk)
            left -= len(chunk)
    except _READ_ERRORS as exc:
        raise DataError(f"{display}: expected {what}, could not read it ({one_line(exc)})") from None
    return buffer.getvalue()  # no copy: BytesIO hands over its buffer


def read_regular(path: str | os.PathLike, *, limit: int, what: str,
                 missing: str = "a path that does not exist") -> bytes:
    """The bytes of the regular file at ``path``, refused (DataError naming it) beyond ``limit`` bytes.

    The size is checked before anything is read, and the read itself stops after ``limit + 1`` bytes.
    """
    with open_regular(path, what, missing=missing) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise DataError(f"{path}: expected {what} of at most {limit:,} bytes, received {size:,} bytes")
        data = read_some(fh, limit + 1, str(path), what)
    if len(data) > limit:  # it grew while being read
        raise DataError(f"{path}: expected {what} of at most {limit:,} bytes, received more")
    return data


def gunzip(source: bytes | bytearray | memoryview | BinaryIO, *, limit: int, display: str, limit_name: str = "") -> bytes:
    """Decompress gzip ``source`` (bytes or a binary file), refusing more than ``limit`` bytes of output.

    Memory stays within about ``limit`` however much the data would expand; ``limit_name`` names the
    limit in the message (an argument such as ``max_bytes``).

    >>> gunzip(gzip.compress(b"abc"), limit=3, display="x")
    b'abc'
    >>> gunzip(gzip.compress(b"abcd"), limit=3, display="x.gz")
    Traceback (most recent call last):
    ...
    supsup_core.errors.DataError: x.gz: expected at most 3 bytes once decompressed, received more
    """
    fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as stream:
        data = read_some(stream, limit + 1, display, "a gzip stream")
    if len(data) > limit:
        named = f" ({limit_name})" if limit_name else ""
        raise DataError(f"{display}: expected at most {limit:,} bytes{named} once decompressed, received more")
    return data
