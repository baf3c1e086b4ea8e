"""The mask-bank file: one HDF5 bank class whose per-task encoding is a codec (``docs/FORMAT.md`` describes the
layout for h5py users).

File layout (format version 1)::

    /                     attrs: kind="mask-bank", format_version, backend (the codec id), metadata (JSON)
                                 (+ codec options, e.g. csc_rows for hdf5-sparse)
                                 (+ shared_layout (JSON MaskLayout), once a task was written)
    /tasks/               group, links in insertion order
    /tasks/<task>         ONE dataset per task holding the encoded flat pattern
                          attrs: layout (JSON MaskLayout), only when it differs from shared_layout
                                 attrs (JSON), only when not empty
                                 (+ the codec's attrs, e.g. indptr)
    /attachments/<name>   groups written by attachment writers (the reservoir...)

Why one dataset per task and not one per layer: every HDF5 object costs an
object header and a link, so three layer datasets per task would triple the
per-task overhead.  Strings are fixed-length UTF-8 (see :mod:`.fileformat`).

**Per-task overhead.**  The format promises ``n / 8`` bytes per packed mask
plus a fixed header, and 16 bits per kept entry for sparse masks, so what HDF5
adds per task must stay small (16.5 bits per kept entry leaves about 310
bytes per task for a LeNet 300-100 mask at 2 % density).  Measured on 20 such tasks (bytes per task
beyond the mask data, sparse / packed): 448 / 397 before these choices, then

- the layer layout is stored once, in the root attribute ``shared_layout``
  written with the first task of an empty bank; only a task whose layout
  differs carries its own ``layout`` attribute, and readers prefer it
  (files whose tasks all carry ``layout`` read as before): 371 / 397;
- the ``attrs`` attribute is left out when the task's attributes are ``{}``:
  no change while the 256-byte minimum header (next point) absorbs it, 77
  bytes per task once headers are exact;
- exact object headers: HDF5 gives a new dataset's object header at least
  256 bytes (room for attributes added later) and h5py cannot ask for less,
  while a *copied* object gets a header of exactly its messages.  So a task
  dataset is built, attributes included, in a scratch in-memory file and
  copied into the bank (``H5Ocopy``; about 0.02 ms more per 33 kB task): 268 / 192;
- the ``/tasks`` group tracks link creation order without indexing it: the
  index is a second B-tree (a 512-byte node and its header) that only speeds
  up "the i-th task in creation order", which nothing here asks for; h5py
  still lists the links in creation order (one sort per listing): 243 / 167.

Kept unchanged after measuring: dataset attribute creation order is not
tracked (h5py's default; tracking adds 2 bytes per message), and the
metadata block size stays at HDF5's 2048 bytes (512 or 4096 cost more).

**Writing** (format version 2).  Mode ``"w"`` writes a new temporary file
(:func:`hopfield_masks.safety.files.atomic_path`) renamed over the destination on a
successful close.  Mode ``"a"`` appends *in place* through a rollback journal
(:mod:`hopfield_masks.safety.journal`): an append writes about what it adds, and a
crash at any instant leaves the last committed bank.  Both hold the bank's
exclusive lock (:mod:`hopfield_masks.safety.locking`) from open to close.  HDF5 never
reclaims the space of deleted objects, so a session that deleted or overwrote
something rewrites ("repacks", :mod:`.repack`) the bank into a temporary file
renamed over it.

**Checksums.**  Each task dataset carries ``crc32`` = [CRC-32 of its bytes,
CRC-32 of its other attributes] (:mod:`hopfield_masks.safety.integrity`), written with
the task; the root group carries the CRC-32 of the root attributes, refreshed at
every commit.  Readers check the attribute part whenever they read a task's
record and both parts whenever they read its masks.  Measured per-task cost of
the attribute: see ``docs/FORMAT.md``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import stat
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..blocks import MaskLayout
from ..codecs import CodecError, CodingContext, MaskCodec, PackedCodec, Stored, get_codec
from ..patterns import pack_bits, unpack_bits
from ..safety.files import atomic_path, open_h5_read, write_target
from ..errors import BankFileNotFoundError, FileWriteError, HopfieldMasksError, InvalidArgumentError, StorageFormatError
from ..safety.integrity import (
    CHECKSUM_ATTR, attrs_crc, check_dataset, check_link, max_array_bytes, record_group_checksum, verify_dataset,
)
from ..safety.journal import (
    CommittedView, JournaledFile, PlainFile, clean_temporaries, journal_path, journal_state, recover, signals_deferred,
    stale_temporaries,
)
from ..safety.locking import BankLock, FileLock, lock_path, with_free_lock
from .fileformat import (
    ATTACHMENTS,
    FORMAT_VERSION,
    KIND,
    LIBVER,
    TASKS,
    check_mask_bank,
    create_tasks_group,
    json_safe,
    read_header,
    read_json_attr,
    read_str_attr,
    write_str_attr,
)
from .base import MaskBank
from .repack import repack, repack_into

__all__ = [
    "FORMAT_VERSION", "KIND", "SHARED_LAYOUT", "HDF5MaskBank", "open_shared", "check_mask_bank", "read_header", "read_str_attr",
    "write_str_attr", "json_safe",
]

#: Root attribute holding the layer layout of every task without its own ``layout`` attribute.
SHARED_LAYOUT = "shared_layout"
_EMPTY_ATTRS = "{}"
# The HDF5 core driver refuses two open files of the same name: every scratch file gets its own.
_SCRATCH_IDS = itertools.count()
_UNREAD = object()  # the shared layout has not been looked up yet
# Task dataset attributes the bank itself writes; every other one is the codec's.
_BANK_ATTRS = frozenset({"layout", "attrs", CHECKSUM_ATTR})


class _AttrSpec:
    """An attribute of a task dataset as :class:`~hopfield_masks.codecs.Stored` hands it to a codec: its declared
    shape and dtype first, its value only when read."""

    __slots__ = ("_ds", "_name", "shape", "dtype")

    def __init__(self, ds: h5py.Dataset, name: str) -> None:
        aid = ds.attrs.get_id(name)
        self._ds, self._name, self.shape, self.dtype = ds, name, aid.shape, aid.dtype

    def read(self) -> np.ndarray:
        return np.asarray(self._ds.attrs[self._name])


@contextlib.contextmanager
def open_shared(path: str | os.PathLike, lock_timeout: float | None = None):
    """Open an HDF5 file read-only under a shared flock (after rolling back a killed writer's journal).

    What :func:`~hopfield_masks.backends.open_bank`, ``describe_file`` and ``verify_file`` read
    before (or instead of) a bank object: never a file that a writer is changing in place.  A reader
    creates no file and never waits for a writer's whole run, only for a session under way; a hot
    journal is rolled back only under the exclusive flock of the bank file itself (a live session holds
    it).  In the process that is changing the bank in place, it reads the last commit instead
    (:class:`~hopfield_masks.safety.journal.CommittedView`) and does not wait.
    """
    max_array_bytes()  # a malformed HOPFIELD_MASKS_MAX_ARRAY_BYTES is reported as such, before any reading
    named = Path(path).expanduser()
    target = Path(os.path.realpath(named))
    view: CommittedView | None = None
    for _attempt in range(5):
        fd = _open_for_reading(named)
        if fd is None:  # missing, a folder, a special file, unreadable: open_h5_read says which
            _tidy(target)  # a new bank's writer killed before publishing it leaves its temporary
            open_h5_read(named).close()
            raise StorageFormatError(path, "cannot be read")  # pragma: no cover - open_h5_read raised
        try:
            lock = _lock_for_reading(path, fd, lock_timeout)
            if lock is not None and lock.view:  # this process is changing the file in place: its last commit
                try:
                    view = CommittedView(target, lock.hub, lock.identity, fd)
                    h5 = _open_view(view, path)
                except BaseException:
                    if view is not None:
                        view.close()
                    lock.release()
                    raise
                break
            try:
                state = journal_state(target, fd)
            except BaseException:
                if lock is not None:
                    lock.release()
                raise
            if state == "hot":  # a killed writer's session: roll it back under the exclusive flock, then read
                if lock is not None:
                    lock.release()
                _recover_exclusively(path, target, lock_timeout)
                continue
        finally:
            os.close(fd)
        try:
            h5 = open_h5_read(path)  # checks it is a regular HDF5 file first
        except StorageFormatError:
            # the name may since lead to another file (a repack renamed a new bank over the one locked, and a new
            # session may already have marked it): that one is judged and locked next time round, never reported
            replaced = lock is not None and lock.identity is not None and not _path_is(named, lock.identity)
            if lock is not None:
                lock.release()
            if replaced:
                continue
            raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if _same_inode(h5, lock):
            _tidy(target)
            break  # the file we locked is the file HDF5 opened
        h5.close()
        if lock is not None:
            lock.release()
    else:
        raise StorageFormatError(path, "keeps changing while being opened (a failing writer?); try again")
    try:
        yield h5, lock
    finally:
        try:
            h5.close()
        finally:
            try:
                if view is not None:
                    view.close()
            finally:
                if lock is not None:
                    lock.release()


def _tidy(target: Path) -> None:
    """Remove what a killed writer left (its temporaries, its lock file), unless a writer is at work: only under
    the free lock file, and creating nothing."""
    if os.path.lexists(lock_path(target)) or stale_temporaries(target):
        with contextlib.suppress(HopfieldMasksError, OSError):
            with_free_lock(target, lambda: clean_temporaries(target))


def _open_for_reading(path: Path) -> int | None:
    """A read-only descriptor of the regular file at ``path`` (None when there is none to read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None  # a folder or special file: open_h5_read refuses it
    return fd


def _open_view(view: CommittedView, path: str | os.PathLike) -> h5py.File:
    try:
        h5 = h5py.File(view, "r", locking=False)
        list(h5.attrs)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise StorageFormatError(path, f"cannot be read as HDF5 (truncated or corrupt: {exc})") from None
    return h5


def _lock_for_reading(path: str | os.PathLike, fd: int, lock_timeout: float | None) -> FileLock | None:
    """A shared flock of the file open as ``fd`` (a snapshot registration when this process changes it in place)."""
    return FileLock(path, fd, exclusive=False, timeout=lock_timeout)


def _recover_exclusively(path: str | os.PathLike, target: Path, lock_timeout: float | None) -> None:
    """Roll back a killed writer's journal under the exclusive flock of the bank file (waiting for readers)."""
    fd = _open_for_reading(Path(path).expanduser())
    if fd is None:
        return
    try:
        lock = FileLock(path, fd, exclusive=True, timeout=lock_timeout)
        try:
            if _names(target, fd):
                recover(target, fd)
        finally:
            lock.release()
    finally:
        os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _path_is(path: Path, identity: tuple[int, int]) -> bool:
    """Whether ``path`` (links followed) names the file of ``identity`` = (st_dev, st_ino)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


def _same_inode(h5: h5py.File, lock: FileLock | None) -> bool:
    if lock is None or lock.identity is None:
        return True
    try:
        st = os.fstat(h5.id.get_vfd_handle())
    except (OSError, RuntimeError, ValueError, TypeError):
        return True
    return (st.st_dev, st.st_ino) == lock.identity


class _Discard(Exception):
    """Thrown into :func:`atomic_path` to make it delete the temporary file."""


_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError, SystemError)


def _guard(method, *, writes: bool = False):
    """Turn what h5py raises on a damaged file (or a failed write) into this package's errors naming the path."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            with self._critical():
                result = method(self, *args, **kwargs)
        except HopfieldMasksError:
            raise
        except _H5_ERRORS as exc:
            raise self._translate(exc, writes=writes) from None
        if writes:
            self._check_write_errors()
        return result

    return wrapper


def _guard_write(method):
    """:func:`_guard` for a primitive that writes: an OS error there is a failed write."""
    return _guard(method, writes=True)


def _check_layout_dict(value: Any) -> None:
    """Refuse a stored layout whose types or sizes are not sane, before MaskLayout does arithmetic on it."""
    if not isinstance(value, dict) or not isinstance(value.get("names"), list) or not isinstance(value.get("shapes"), list):
        raise ValueError("expected {'names': [...], 'shapes': [[...], ...]}")
    if len(value["names"]) != len(value["shapes"]):
        raise ValueError(f"{len(value['names'])} names for {len(value['shapes'])} shapes")
    total = 0
    for shape in value["shapes"]:
        if not isinstance(shape, list) or len(shape) > 32 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape
        ):
            raise ValueError(f"shape {str(shape)[:80]} is not a list of non-negative integers")
        entries = 1
        for d in shape:
            entries *= d
        total += entries
    limit = max_array_bytes()
    if total > limit:
        raise ValueError(f"it declares {total:,} entries, above the per-array ceiling hopfield_masks.safety.integrity."
                         f"MAX_ARRAY_BYTES = {limit:,} (raise it with HOPFIELD_MASKS_MAX_ARRAY_BYTES)")


class HDF5MaskBank(MaskBank):
    """A mask bank in an HDF5 file; how each task is stored is its codec's business (:mod:`hopfield_masks.codecs`).

    Parameters
    ----------
    path : path-like
        The bank file.  A symlink is followed (its target is written).
    mode : str
        ``"r"`` (read-only), ``"a"`` (append in place, journaled) or ``"w"`` (create or replace).
    codec : MaskCodec or str, optional
        ``mode="w"``: the codec of the new bank (an instance, or a registered id; default
        ``"hdf5-packed"``).  ``"r"``/``"a"``: the bank's own codec is used; a codec given must be of
        the same id.
    overwrite : bool
        ``mode="w"`` only: whether an existing file may be replaced (checked under the lock).
    lock_timeout : float, optional
        Seconds to wait for the bank's lock (default ``HOPFIELD_MASKS_LOCK_TIMEOUT`` or 60).
    """

    persistent = True

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, codec: MaskCodec | str | None = None,
                 overwrite: bool = True, lock_timeout: float | None = None) -> None:
        super().__init__(mode)
        if isinstance(codec, str):
            codec = get_codec(codec)()
        if codec is not None and not isinstance(codec, MaskCodec):
            raise InvalidArgumentError("codec", "a MaskCodec or a registered codec id", repr(codec))
        self.codec: MaskCodec = codec if codec is not None else PackedCodec()
        self._asked = codec  # "r"/"a": the codec the caller expects (None: whatever the bank has)
        if path is None or not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError("path", f"a file path for backend {self.backend_id!r}", repr(path))
        self.path = Path(path).expanduser()
        self._lock: BankLock | None = None  # the writers' sidecar lock
        self._flock: FileLock | None = None  # the flock on the bank file itself (readers, in-place writers)
        self._reader = None  # open_shared() context of a read-only bank
        self._atomic = None
        self._tmp: Path | None = None
        self._fh: PlainFile | None = None  # the file object h5py writes through (writable modes)
        self._target: Path | None = None  # the real file written (symlinks resolved)
        self._dirty = False  # something was deleted: repack before publishing
        self._version = self.codec.write_version
        self._h5: h5py.File | None = None
        self._scratch: h5py.File | None = None  # in-memory file where task datasets are built (writable modes)
        self._tasks_group: h5py.Group | None = None  # /tasks of the open file, looked up once
        self._shared: Any = _UNREAD  # cached root shared layout: a MaskLayout, None (absent) or _UNREAD
        self._reset_chain()
        try:
            self._open(mode, overwrite, lock_timeout)
        except BaseException as exc:
            self._closed = True
            with contextlib.suppress(Exception):
                self._teardown(commit=False)
            if isinstance(exc, _H5_ERRORS) and not isinstance(exc, HopfieldMasksError):
                raise self._translate(exc) from None
            raise

    @property
    def backend_id(self) -> str:  # type: ignore[override]
        """The codec id recorded in the file (``"hdf5-packed"``...)."""
        return self.codec.codec_id

    # ------------------------------------------------------------------ file set-up
    def _open(self, mode: str, overwrite: bool, lock_timeout: float | None) -> None:
        if mode == "r":
            self._open_reader(lock_timeout)
            return
        max_array_bytes()  # a malformed HOPFIELD_MASKS_MAX_ARRAY_BYTES is reported as such, before any work
        self._lock = BankLock(self.path, exclusive=True, timeout=lock_timeout)
        self._lock.begin_session()  # one writing bank per thread: a second one is refused, never interleaved
        self._target = target = write_target(self.path)  # symlinks followed; folders and special files refused
        if target.exists() and not os.stat(target).st_mode & 0o222:  # even for root: 0444 means "do not change"
            raise FileWriteError(self.path, "it is read-only (no write permission bits); nothing was changed")
        if mode == "a":
            fd = self._open_in_place(target, lock_timeout)  # the bank file locked exclusively, journal settled
            clean_temporaries(target)
            try:
                with open_h5_read(self.path) as f:
                    self._open_existing(f)
                self._fh = JournaledFile(target, fd, self._flock.hub if self._flock is not None else None)
            except BaseException:
                if self._fh is None:
                    os.close(fd)
                raise
            if self._flock is not None:
                self._flock.attach(self._fh)  # readers of this process read around the session
            self._h5 = h5py.File(self._fh, "r+", libver=LIBVER)
            return
        self._recover(lock_timeout)
        if not overwrite and target.exists():
            raise InvalidArgumentError("path", "a file that does not exist yet (or overwrite=True)", str(self.path))
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._fh = PlainFile(self._tmp, "r+b")
        self._h5 = h5py.File(self._fh, "w", libver=LIBVER)
        self._create_layout(self._h5)

    def _open_in_place(self, target: Path, lock_timeout: float | None) -> int:
        """Open the bank read-write, lock it exclusively (readers done, no session of anyone else under way) and
        roll back or delete a killed writer's journal; return the descriptor (``self._flock`` holds the lock)."""
        for _attempt in range(5):
            try:
                fd = os.open(target, os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise BankFileNotFoundError(self.path) from None
            except PermissionError:
                raise FileWriteError(self.path, "it is read-only (permission denied); nothing was changed") from None
            except OSError as exc:
                raise FileWriteError(self.path, f"cannot be opened ({exc.strerror or exc}); nothing was changed") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FileWriteError(self.path, "it is a special file (FIFO, socket or device), which is never changed")
                os.set_blocking(fd, True)
                # readers of this very file must be done before it changes in place
                self._flock = FileLock(self.path, fd, exclusive=True, timeout=lock_timeout)
                if _names(target, fd):
                    recover(target, fd)
                    return fd
                self._flock.release()  # replaced meanwhile (a rename by a writer whose lock file was deleted)
                self._flock = None
            except BaseException:
                if self._flock is not None:
                    self._flock.release()
                    self._flock = None
                os.close(fd)
                raise
            os.close(fd)
        raise StorageFormatError(self.path, "keeps changing while being opened (a failing writer?); try again")

    def _open_reader(self, lock_timeout: float | None) -> None:
        """Open read-only under a shared flock of the file (after rolling back a killed writer's journal)."""
        self._reader = open_shared(self.path, lock_timeout)
        self._h5, self._flock = self._reader.__enter__()
        self._open_existing(self._h5)

    def _recover(self, lock_timeout: float | None) -> None:
        """Before a new bank replaces the file (mode ``"w"``, the writer lock held): settle a killed writer's journal
        (rolled back under the exclusive flock of the old file if hot, deleted if stale, refused if not ours) and
        delete its temporaries."""
        target = Path(os.path.realpath(self.path))
        if os.path.lexists(journal_path(target)):
            if target.exists():
                _recover_exclusively(self.path, target, lock_timeout)
            else:
                recover(target)  # no bank: the journal can only be stale (or not ours: refused)
        clean_temporaries(target)

    def _open_existing(self, f: h5py.File) -> None:
        backend = check_mask_bank(f, self.path)
        if self._asked is not None and backend != self._asked.codec_id:
            raise StorageFormatError(self.path, f"is a {backend!r} bank, not {self._asked.codec_id!r} (open it with "
                                                "open_bank())")
        try:
            cls = get_codec(backend)
        except HopfieldMasksError:
            raise StorageFormatError(self.path, f"was written by codec {backend!r}, which is not registered "
                                                "here") from None
        self.codec = cls.from_options(f.attrs, str(self.path))
        self._version = int(f.attrs["format_version"])

    def _create_layout(self, f: h5py.File) -> None:
        write_str_attr(f.attrs, "kind", KIND)
        f.attrs["format_version"] = np.int64(self.codec.write_version)
        write_str_attr(f.attrs, "backend", self.codec.codec_id)
        write_str_attr(f.attrs, "metadata", "{}")
        for key, value in self.codec.options().items():
            f.attrs[key] = np.int64(value)
        create_tasks_group(f)
        f.create_group(ATTACHMENTS, track_order=True)

    # ------------------------------------------------------------------ the codec
    def _context(self, position: int | None) -> CodingContext:
        """What the codec is told about a task at chain ``position`` (None: not in the chain)."""
        if not self.codec.uses_history or not position:
            return CodingContext(self._version)
        self._decode_chain_until(position)
        return CodingContext(self._version, self._chain_counts, position)

    def _stored(self, ds: h5py.Dataset, data: np.ndarray) -> Stored:
        attrs = {key: _AttrSpec(ds, key) for key in ds.attrs if key not in _BANK_ATTRS}
        return Stored(np.asarray(data), attrs, ds.dtype, ds.shape)

    def _decode_dataset(self, ds: h5py.Dataset, data: np.ndarray, layout: MaskLayout, position: int | None) -> np.ndarray:
        try:
            flat = self.codec.decode(self._stored(ds, data), layout, self._context(position))
        except CodecError as exc:
            raise self._corrupt(ds, exc.reason) from None
        if not isinstance(flat, np.ndarray) or flat.dtype != bool or flat.shape != (layout.length,):
            raise self._corrupt(ds, f"the codec decoded {getattr(flat, 'shape', type(flat).__name__)}, expected "
                                    f"({layout.length},) bool")
        return flat

    def _extra_nbytes(self, ds: h5py.Dataset) -> int:
        """Mask data the codec keeps in attributes (counts, column pointers...)."""
        return sum(int(ds.attrs.get_id(key).get_storage_size()) for key in ds.attrs if key not in _BANK_ATTRS)

    # ------------------------------------------------------------------ the chain (codecs with uses_history)
    # The tasks without their own ``layout`` attribute (those with the root shared layout), in insertion order.
    # A codec with ``uses_history`` codes each against the ones per entry over the chain tasks before it; they
    # are decoded once per open bank and kept packed.  Deleting a chain task re-encodes the chain tasks after it.
    def _reset_chain(self) -> None:
        self._chain_names: list[str] | None = None
        self._chain_bits: list[np.ndarray] = []  # packed masks of chain[0 : len(...)]
        self._chain_counts: np.ndarray | None = None  # (n,) int64, ones per entry over _chain_bits

    def _chain(self) -> list[str]:
        if self._chain_names is None:
            # A soft or external link is never followed (an external link to a FIFO would block here): it stays in
            # the chain, so that decoding any chain task after it raises naming the link (check_link in _dataset).
            tasks = self._tasks
            self._chain_names = [name for name in tasks
                                 if not isinstance(tasks.get(name, getlink=True), h5py.HardLink)
                                 or "layout" not in tasks[name].attrs]
        return self._chain_names

    def _decode_chain_until(self, position: int) -> None:
        """Decode chain tasks until the first ``position`` are known (their counts summed)."""
        chain = self._chain()
        while len(self._chain_bits) < position:
            at = len(self._chain_bits)
            ds = self._dataset(chain[at])
            data = ds[()]
            verify_dataset(ds, self.path, data=np.asarray(data), required=self._checksums_required())
            self._remember(self._decode_dataset(ds, data, self._layout(ds), at))

    def _remember(self, flat: np.ndarray) -> None:
        if self._chain_counts is None:
            self._chain_counts = np.zeros(flat.shape[0], dtype=np.int64)
        self._chain_counts += flat
        self._chain_bits.append(pack_bits(flat))

    def _corrupt(self, ds: h5py.Dataset, reason: str) -> StorageFormatError:
        """The error for a task dataset whose content is inconsistent."""
        return StorageFormatError(self.path, f"task dataset {ds.name} is damaged: {reason}")

    def _translate(self, exc: BaseException, *, writes: bool = True) -> HopfieldMasksError:
        """What an h5py/OS error means here: a failed write (the OS said why) or a damaged file."""
        fh = self._fh
        if fh is not None and fh.error is not None:
            return FileWriteError(self.path, f"{fh.error.strerror or fh.error}; nothing was committed")
        if isinstance(exc, OSError) and writes and self.mode != "r":
            return FileWriteError(self.path, f"{exc.strerror or exc}; nothing was committed")
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StorageFormatError(self.path, f"cannot be read: HDF5 reports {text!r} (damaged file)")

    def _critical(self):
        """Writable banks: SIGTERM/SIGINT wait while HDF5 works (see :func:`hopfield_masks.safety.journal.signals_deferred`)."""
        return signals_deferred() if self.mode != "r" else contextlib.nullcontext()

    def _check_write_errors(self) -> None:
        """Raise the first failed write of the session (full disk...), if any: the session cannot commit."""
        if self._fh is not None and self._fh.error is not None:
            raise self._translate(self._fh.error)

    # ------------------------------------------------------------------ integrity hooks
    def _file_bytes(self) -> int:
        try:
            return int(self._file.id.get_filesize())
        except _H5_ERRORS:
            return 1 << 16

    def _checksums_required(self) -> bool:
        return self._version >= 2

    # ------------------------------------------------------------------ primitives
    @property
    def _file(self) -> h5py.File:
        assert self._h5 is not None  # internal invariant: primitives run only on an open bank
        return self._h5

    @property
    def _tasks(self) -> h5py.Group:
        # cached: looking a group up by name costs about as much as storing a small task's attributes
        if self._tasks_group is None:
            self._tasks_group = self._file[TASKS]
        return self._tasks_group

    @_guard
    def _get_metadata_json(self) -> str:
        return read_str_attr(self._file, "metadata", self.path)

    @_guard_write
    def _put_metadata_json(self, text: str) -> None:
        write_str_attr(self._file.attrs, "metadata", text)

    @_guard
    def _task_names(self) -> list[str]:
        return list(self._tasks)

    def _shared_layout(self) -> MaskLayout | None:
        """The root ``shared_layout`` (None when absent), read once per session."""
        if self._shared is _UNREAD:
            self._shared = None
            if SHARED_LAYOUT in self._file.attrs:
                value = read_json_attr(self._file, SHARED_LAYOUT, self.path)  # raises naming the path
                try:
                    _check_layout_dict(value)
                    self._shared = MaskLayout.from_dict(value)
                except (KeyError, TypeError, ValueError, OverflowError, HopfieldMasksError) as exc:
                    raise StorageFormatError(self.path, f"has a bad root {SHARED_LAYOUT!r} attribute ({exc})") from None
        return self._shared

    def _share_layout(self, layout: MaskLayout) -> bool:
        """Whether a new task of ``layout`` can rely on the root shared layout (setting it if free)."""
        shared = self._shared_layout()
        if shared is not None and layout == shared:
            return True
        # the shared layout may be (re)set only while no stored task relies on it: when the bank is empty
        if shared is None or len(self._tasks) == 0:
            write_str_attr(self._file.attrs, SHARED_LAYOUT, json.dumps(layout.to_dict(), separators=(",", ":")))
            self._shared = layout
            return True
        return False

    def _scratch_file(self) -> h5py.File:
        if self._scratch is None:
            name = f"hopfield-masks-scratch-{os.getpid()}-{next(_SCRATCH_IDS)}"
            self._scratch = h5py.File(name, "w", driver="core", backing_store=False, libver=LIBVER)
        return self._scratch

    @_guard_write
    def _put_task(self, task: str, layout: MaskLayout, flat: np.ndarray, attrs_json: str) -> None:
        joins = False
        if self.codec.uses_history:
            if len(self._tasks) == 0:
                self._reset_chain()  # an empty bank may take a new shared layout: a new chain
            shared = self._shared_layout()
            joins = shared is None or len(self._tasks) == 0 or layout == shared  # what _share_layout decides
        context = self._context(len(self._chain()) if joins else None)
        encoded = self.codec.encode(flat, layout, context)
        data, extra = np.asarray(encoded.data), dict(encoded.attrs)
        if data.ndim != 1 or any(key in _BANK_ATTRS for key in extra):
            raise InvalidArgumentError("codec", f"a 1-D array and attributes other than {sorted(_BANK_ATTRS)}",
                                       f"{data.shape} and {sorted(extra)}")
        self._write_dataset(task, layout, data, extra, attrs_json)
        if joins:
            self._chain().append(task)
            self._remember(flat)

    def _write_dataset(self, task: str, layout: MaskLayout, data: np.ndarray, extra: dict[str, np.ndarray],
                       attrs_json: str) -> None:
        scratch = self._scratch_file()
        # Built in the scratch file then copied: a copy gets an exact object header where a dataset
        # created in place gets at least 256 bytes (module docstring).  Contiguous, no chunking or
        # filters: the format measures the raw encoding.  The scratch space is freed for the next task.
        ds = scratch.create_dataset("task", data=data, track_times=False)
        try:
            if not self._share_layout(layout):
                write_str_attr(ds.attrs, "layout", json.dumps(layout.to_dict(), separators=(",", ":")))
            if attrs_json != _EMPTY_ATTRS:
                write_str_attr(ds.attrs, "attrs", attrs_json)
            for key, value in extra.items():
                ds.attrs.create(key, value)
            data_crc = zlib.crc32(np.ascontiguousarray(data)) & 0xFFFFFFFF if data.size else 0
            ds.attrs.create(CHECKSUM_ATTR, np.array([data_crc, attrs_crc(ds)], dtype=np.uint32))
            scratch.copy(ds, self._tasks, name=task)
        finally:
            del scratch["task"]

    def _dataset(self, task: str) -> h5py.Dataset:
        check_link(self._tasks, task, self.path)
        obj = self._tasks[task]
        if not isinstance(obj, h5py.Dataset):
            raise StorageFormatError(self.path, f"{obj.name} is not a dataset (damaged file)")
        check_dataset(obj, self.path, file_bytes=self._file_bytes())
        return obj

    @_guard
    def _has_task(self, task: str) -> bool:
        return task in self._tasks  # one link lookup, not a listing of every task

    @_guard
    def _get_task(self, task: str) -> tuple[MaskLayout, np.ndarray]:
        ds = self._dataset(task)
        layout = self._layout(ds)
        position = None
        if self.codec.uses_history and task in self._chain():
            position = self._chain().index(task)
            if position < len(self._chain_bits):  # decoded (or written) earlier in this session
                return layout, unpack_bits(self._chain_bits[position], layout.length)
        data = ds[()]  # bounded: check_dataset compared the declared size with the stored bytes and the ceiling
        verify_dataset(ds, self.path, data=np.asarray(data), required=self._checksums_required())
        flat = self._decode_dataset(ds, data, layout, position)
        if position is not None:
            self._remember(flat)  # position == len(self._chain_bits): _context decoded the ones before it
        return layout, flat

    def task_encoding(self, task: str) -> dict[str, Any]:
        """What the codec says about how ``task`` is stored (``{"model": "adaptive"}`` for hdf5-entropy...)."""
        ds = self._dataset(self._check_task(task))
        position = self._chain().index(task) if self.codec.uses_history and task in self._chain() else None
        try:
            return self.codec.describe(self._stored(ds, np.zeros(0, ds.dtype)), self._layout(ds),
                                       CodingContext(self._version, None, position or 0))
        except CodecError as exc:
            raise self._corrupt(ds, exc.reason) from None

    @_guard
    def _task_record(self, task: str) -> tuple[MaskLayout, str]:
        ds = self._dataset(task)
        verify_dataset(ds, self.path, attrs_only=True, required=self._checksums_required())
        attrs = read_str_attr(ds, "attrs", self.path) if "attrs" in ds.attrs else _EMPTY_ATTRS
        return self._layout(ds), attrs

    def _layout(self, ds: h5py.Dataset) -> MaskLayout:
        """The task's own ``layout`` attribute when it has one, else the root shared layout."""
        if "layout" not in ds.attrs:
            shared = self._shared_layout()
            if shared is None:
                raise self._corrupt(ds, f"it has no 'layout' attribute and the file no root {SHARED_LAYOUT!r}")
            return shared
        try:
            value = read_json_attr(ds, "layout", self.path)
            _check_layout_dict(value)
            layout = MaskLayout.from_dict(value)
        except (KeyError, TypeError, ValueError, OverflowError, HopfieldMasksError) as exc:
            if isinstance(exc, StorageFormatError):
                raise
            raise self._corrupt(ds, f"bad 'layout' attribute ({exc})") from None
        return layout

    @_guard
    def _task_nbytes(self, task: str) -> int:
        ds = self._dataset(task)
        return int(ds.id.get_storage_size()) + self._extra_nbytes(ds)

    @_guard_write
    def _drop_task(self, task: str) -> None:
        if self.codec.uses_history:
            names = self._task_names()
            chain = self._chain()
            later = names[names.index(task) + 1:]
            if task in chain and any(name in chain for name in later):
                # later chain tasks were coded against counts that included this task: decode, drop, re-code in order
                records = [(name, *self._get_task(name), self._task_record(name)[1]) for name in later]
                for name in (task, *later):
                    del self._tasks[name]
                self._dirty = True
                self._reset_chain()
                for name, layout, flat, attrs_json in records:
                    self._put_task(name, layout, flat, attrs_json)
                return
            if task in chain:  # the last chain task: the prefix before it is unchanged
                position = chain.index(task)
                del chain[position]
                if len(self._chain_bits) > position:
                    self._chain_counts -= unpack_bits(self._chain_bits[position], self._chain_counts.shape[0])
                    del self._chain_bits[position]
        del self._tasks[task]
        self._dirty = True

    @_guard
    def _attachments_root(self) -> h5py.Group:
        return self._file[ATTACHMENTS]

    def _delete_attachment_group(self, name: str) -> None:
        super()._delete_attachment_group(name)
        self._dirty = True

    # ------------------------------------------------------------------ committing, closing
    def _seal_root(self) -> None:
        record_group_checksum(self._file)

    @_guard_write
    def _commit(self) -> None:
        self._seal_root()
        self._file.flush()
        if self._atomic is None:  # in place: fsync, then the journal's deletion commits
            assert isinstance(self._fh, JournaledFile)
            self._fh.commit()
            return
        # a new bank: publish it now, then continue in place (journaled) like an append session
        self._close_files()
        atomic, self._atomic = self._atomic, None
        try:
            atomic.__exit__(None, None, None)
        except BaseException:
            self._closed = True
            self._teardown(commit=False)
            raise
        assert self._target is not None
        fd = self._open_in_place(self._target, None)  # from now on changed in place
        try:
            self._fh = JournaledFile(self._target, fd, self._flock.hub if self._flock is not None else None)
        except BaseException:
            os.close(fd)
            raise
        if self._flock is not None:
            self._flock.attach(self._fh)
        self._h5 = h5py.File(self._fh, "r+", libver=LIBVER)

    def _close_files(self) -> None:
        if self._scratch is not None:
            scratch, self._scratch = self._scratch, None
            scratch.close()
        self._tasks_group = None
        if self._h5 is not None:
            h5, self._h5 = self._h5, None
            h5.close()

    def _close(self, commit: bool) -> None:
        self._reset_chain()
        with self._critical():
            self._close_deferred(commit)

    def _close_deferred(self, commit: bool) -> None:
        if commit and self.mode != "r":
            try:
                self._seal_root()
                self._close_files()
                if self._fh is not None and self._fh.error is not None:
                    raise self._translate(self._fh.error)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self._teardown(commit=False)
                if isinstance(exc, _H5_ERRORS) and not isinstance(exc, HopfieldMasksError):
                    raise self._translate(exc) from None
                raise
        try:
            self._teardown(commit=commit)
        except _H5_ERRORS as exc:
            if isinstance(exc, HopfieldMasksError):
                raise
            raise self._translate(exc) from None

    def _teardown(self, commit: bool) -> None:
        """Close the files; publish (``commit``) or undo the session's changes; release the lock."""
        try:
            if self._reader is not None:
                reader, self._reader = self._reader, None
                self._close_files()
                self._flock = None
                reader.__exit__(None, None, None)  # closes the h5py handle's file and releases the flock
            with contextlib.suppress(Exception):
                self._close_files()
            fh, self._fh = self._fh, None
            if isinstance(fh, JournaledFile):
                try:
                    if not commit:
                        fh.rollback()
                    elif self._dirty:
                        fh.settle_for_copy()  # the file on disk is the new state, still undoable
                        assert self._target is not None
                        try:
                            repack(self._target)  # renamed over the bank: the journal no longer applies
                        except BaseException:
                            fh.rollback()  # nothing was published: roll the in-place changes back
                            raise
                        fh.discard_journal()
                    else:
                        fh.commit()
                finally:
                    fh.close()
            elif fh is not None:
                fh.close()
            if self._atomic is not None:
                atomic, self._atomic = self._atomic, None
                if not commit:
                    atomic.__exit__(_Discard, _Discard(), None)
                else:
                    try:
                        if self._dirty:
                            assert self._tmp is not None
                            compact = self._tmp.with_name(self._tmp.name + ".repack")
                            repack_into(self._tmp, compact)
                            os.replace(compact, self._tmp)
                    except BaseException as exc:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._tmp.with_name(self._tmp.name + ".repack"))
                        atomic.__exit__(type(exc), exc, exc.__traceback__)
                        raise
                    atomic.__exit__(None, None, None)  # fsync, rename over the destination, fsync the folder
        finally:
            flock, self._flock = self._flock, None
            if flock is not None:
                flock.release()
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()

    def __del__(self) -> None:
        # A bank dropped without close() publishes nothing: half-finished work must not replace a good file.
        with contextlib.suppress(Exception):
            if not self._closed:
                self._closed = True
                self._close(commit=False)
