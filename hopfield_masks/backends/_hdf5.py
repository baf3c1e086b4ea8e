"""The HDF5 layout shared by the ``hdf5-*`` backends (``docs/FORMAT.md`` describes it for h5py users).

File layout (format version 1)::

    /                     attrs: kind="mask-bank", format_version=1, backend, metadata (JSON)
                                 (+ backend options, e.g. csc_rows for hdf5-sparse)
                                 (+ shared_layout (JSON MaskLayout), once a task was written)
    /tasks/               group, links in insertion order
    /tasks/<task>         ONE dataset per task holding the encoded flat pattern
                          attrs: layout (JSON MaskLayout), only when it differs from shared_layout
                                 attrs (JSON), only when not empty
                                 (+ encoding attrs, e.g. indptr)
    /attachments/<name>   groups written by attachment writers (the reservoir...)

Why one dataset per task and not one per layer: every HDF5 object costs an
object header and a link, so three layer datasets per task would triple the
per-task overhead.  Strings are fixed-length UTF-8 (see :mod:`._h5attrs`).

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
(:func:`hopfield_masks._files.atomic_path`) renamed over the destination on a
successful close.  Mode ``"a"`` appends *in place* through a rollback journal
(:mod:`hopfield_masks.journal`): an append writes about what it adds, and a
crash at any instant leaves the last committed bank.  Both hold the bank's
exclusive lock (:mod:`hopfield_masks.locking`) from open to close.  HDF5 never
reclaims the space of deleted objects, so a session that deleted or overwrote
something rewrites ("repacks") the bank into a temporary file renamed over it
(mode and owner kept; hard links to the old file then keep the old bytes).

**Checksums.**  Each task dataset carries ``crc32`` = [CRC-32 of its bytes,
CRC-32 of its other attributes] (:mod:`hopfield_masks.integrity`), written with
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
import tempfile
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._files import atomic_path, fsync_folder, keep_owner_and_mode, open_h5_read, write_target
from ..blocks import MaskLayout
from ..errors import FileWriteError, HopfieldMasksError, InvalidArgumentError, StorageFormatError
from ..integrity import (
    CHECKSUM_ATTR, attrs_crc, check_dataset, check_link, max_array_bytes, record_group_checksum, verify_dataset,
)
from ..journal import (
    JournaledFile, PlainFile, clean_temporaries, journal_path, recover, signals_deferred, stale_temporaries,
)
from ..locking import BankLock, FileLock, lock_path
from ._h5attrs import (
    ATTACHMENTS,
    FORMAT_VERSION,
    KIND,
    TASKS,
    check_mask_bank,
    json_safe,
    read_header,
    read_json_attr,
    read_str_attr,
    write_str_attr,
)
from .base import MaskBank

__all__ = [
    "FORMAT_VERSION", "KIND", "SHARED_LAYOUT", "HDF5MaskBank", "open_shared", "check_mask_bank", "read_header", "read_str_attr",
    "write_str_attr", "json_safe",
]

#: Root attribute holding the layer layout of every task without its own ``layout`` attribute.
SHARED_LAYOUT = "shared_layout"
# Object formats of HDF5 1.8 (readable by any h5py of the last decade), never newer than 1.10's.
LIBVER = ("v108", "v110")
_EMPTY_ATTRS = "{}"
# The HDF5 core driver refuses two open files of the same name: every scratch file gets its own.
_SCRATCH_IDS = itertools.count()
_UNREAD = object()  # the shared layout has not been looked up yet


def _create_tasks_group(parent: h5py.Group) -> h5py.Group:
    """Create ``/tasks``: link creation order tracked (insertion-order listing) but not indexed."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED)
    gcpl.set_obj_track_times(False)  # no timestamps: same content, same bytes
    return h5py.Group(h5py.h5g.create(parent.id, TASKS.encode(), gcpl=gcpl))


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)


def _repack_into(src_path: Path, dst_path: Path) -> None:
    """Write a compact copy of the bank ``src_path`` into the new file ``dst_path``, keeping every order and group."""
    out = PlainFile(dst_path, "w+b")  # written through Python: a full disk is an OSError naming the cause
    try:
        with h5py.File(src_path, "r", locking=False) as src, h5py.File(out, "w", libver=LIBVER) as dst:
            _copy_group_contents(src, dst, src_path)
        if out.error is not None:
            raise out.error
    finally:
        out.close()


def _copy_group_contents(src: h5py.File, dst: h5py.File, src_path: Path) -> None:
    """Copy root attributes and children of ``src`` into ``dst`` (groups other tools added are kept too)."""
    _copy_attrs(src, dst)
    for key in src:
        check_link(src, key, src_path)
        if key == TASKS:  # an old file's indexed /tasks group becomes the current kind: the order is the same
            out = _create_tasks_group(dst)
        elif key == ATTACHMENTS:
            out = dst.create_group(key, track_order=True)
        else:
            src.copy(src[key], dst, name=key)
            continue
        _copy_attrs(src[key], out)
        for child in src[key]:  # one by one: the creation order of the copy is ours
            src.copy(src[key][child], out, name=child)  # copies get exact object headers


def _repack(bank: Path) -> None:
    """Replace ``bank`` by a compact copy (temporary file, fsync, rename, folder fsync); mode and owner kept."""
    fd, name = tempfile.mkstemp(prefix=f".{bank.name}.", suffix=".repack", dir=bank.parent)
    os.close(fd)
    try:
        _repack_into(bank, Path(name))
        with open(name, "rb+") as fh:
            os.fsync(fh.fileno())
        keep_owner_and_mode(os.stat(bank), Path(name))
        os.replace(name, bank)
        fsync_folder(bank.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


@contextlib.contextmanager
def open_shared(path: str | os.PathLike, lock_timeout: float | None = None):
    """Open an HDF5 file read-only under a shared flock (after rolling back a killed writer's journal).

    What :func:`~hopfield_masks.backends.open_bank`, ``describe_file`` and ``verify_file`` read
    before (or instead of) a bank object: never a file that a writer is changing in place.
    """
    target = Path(os.path.realpath(Path(path).expanduser()))
    for _attempt in range(3):
        if journal_path(target).exists():  # a killed writer's session: undo it first (needs the writer lock)
            with BankLock(path, exclusive=True, timeout=lock_timeout):
                recover(target)
                clean_temporaries(target)
        elif lock_path(target).exists() or stale_temporaries(target):  # left by a killed writer, unless one is at work
            with contextlib.suppress(HopfieldMasksError, OSError), BankLock(path, exclusive=True, timeout=0):
                clean_temporaries(target)  # (releasing the free lock deletes its file)
        lock = _lock_for_reading(path, lock_timeout)  # before HDF5 reads (and caches) a single byte
        try:
            h5 = open_h5_read(path)  # checks it is a regular HDF5 file first
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if _same_inode(h5, lock) and not journal_path(target).exists():
            break  # the file we locked is the file HDF5 opened, and no writer died meanwhile
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
            if lock is not None:
                lock.release()


def _lock_for_reading(path: str | os.PathLike, lock_timeout: float | None) -> FileLock | None:
    """A shared flock of the file at ``path`` (None when it cannot be opened: open_h5_read then says why)."""
    try:
        fd = os.open(Path(path).expanduser(), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a folder or special file: open_h5_read refuses it
        return FileLock(path, fd, exclusive=False, timeout=lock_timeout)
    finally:
        os.close(fd)


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
        raise ValueError(f"it declares {total:,} entries, above the per-array ceiling hopfield_masks.integrity."
                         f"MAX_ARRAY_BYTES = {limit:,} (raise it with HOPFIELD_MASKS_MAX_ARRAY_BYTES)")


class HDF5MaskBank(MaskBank):
    """Shared implementation of the HDF5 backends; subclasses define the per-task encoding.

    Subclasses implement ``_encode(flat) -> (data, extra_attrs)`` and
    ``_decode(dataset, length) -> flat`` (or, to read the bytes once,
    ``_decode_data(dataset, data, length)``, given the dataset's content already
    read and checksum-verified) and may override ``_set_options`` /
    ``_load_options`` (backend options stored as root attributes) and
    ``_extra_nbytes`` (mask data kept in attributes).  Extra attributes are covered
    by the task's checksum automatically.

    Parameters
    ----------
    path : path-like
        The bank file.  A symlink is followed (its target is written).
    mode : str
        ``"r"`` (read-only), ``"a"`` (append in place, journaled) or ``"w"`` (create or replace).
    overwrite : bool
        ``mode="w"`` only: whether an existing file may be replaced (checked under the lock).
    lock_timeout : float, optional
        Seconds to wait for the bank's lock (default ``HOPFIELD_MASKS_LOCK_TIMEOUT`` or 60).
    **options
        Backend options, accepted with ``mode="w"`` only (they are fixed when a bank is created).
    """

    persistent = True
    #: The ``format_version`` this backend writes into a new bank (appends keep the bank's own version).
    write_version: int = 2

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, overwrite: bool = True,
                 lock_timeout: float | None = None, **options: Any) -> None:
        super().__init__(mode)
        if path is None or not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError("path", f"a file path for backend {self.backend_id!r}", repr(path))
        self.path = Path(path).expanduser()
        if options and mode != "w":
            raise InvalidArgumentError("options", "no backend options unless mode='w'", sorted(options))
        self._lock: BankLock | None = None  # the writers' sidecar lock
        self._flock: FileLock | None = None  # the flock on the bank file itself (readers, in-place writers)
        self._reader = None  # open_shared() context of a read-only bank
        self._atomic = None
        self._tmp: Path | None = None
        self._fh: PlainFile | None = None  # the file object h5py writes through (writable modes)
        self._target: Path | None = None  # the real file written (symlinks resolved)
        self._dirty = False  # something was deleted: repack before publishing
        self._version = self.write_version
        self._h5: h5py.File | None = None
        self._scratch: h5py.File | None = None  # in-memory file where task datasets are built (writable modes)
        self._tasks_group: h5py.Group | None = None  # /tasks of the open file, looked up once
        self._shared: Any = _UNREAD  # cached root shared layout: a MaskLayout, None (absent) or _UNREAD
        try:
            self._open(mode, overwrite, lock_timeout, options)
        except BaseException as exc:
            self._closed = True
            with contextlib.suppress(Exception):
                self._teardown(commit=False)
            if isinstance(exc, _H5_ERRORS) and not isinstance(exc, HopfieldMasksError):
                raise self._translate(exc) from None
            raise

    # ------------------------------------------------------------------ file set-up
    def _open(self, mode: str, overwrite: bool, lock_timeout: float | None, options: dict[str, Any]) -> None:
        if mode == "r":
            self._open_reader(lock_timeout)
            return
        self._lock = BankLock(self.path, exclusive=True, timeout=lock_timeout)
        self._recover(lock_timeout)
        self._target = target = write_target(self.path)  # symlinks followed; folders and special files refused
        if target.exists() and not os.stat(target).st_mode & 0o222:  # even for root: 0444 means "do not change"
            raise FileWriteError(self.path, "it is read-only (no write permission bits); nothing was changed")
        if mode == "a":
            with open_h5_read(self.path) as f:
                self._open_existing(f)
            try:
                self._fh = JournaledFile(target)
            except PermissionError:
                raise FileWriteError(self.path, "it is read-only (permission denied); nothing was changed") from None
            # readers of this very file must be done before it changes in place
            self._flock = FileLock(self.path, self._fh.fileno(), exclusive=True, timeout=lock_timeout)
            self._h5 = h5py.File(self._fh, "r+", libver=LIBVER)
            return
        if not overwrite and target.exists():
            raise InvalidArgumentError("path", "a file that does not exist yet (or overwrite=True)", str(self.path))
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._fh = PlainFile(self._tmp, "r+b")
        self._h5 = h5py.File(self._fh, "w", libver=LIBVER)
        self._create_layout(self._h5, options)

    def _open_reader(self, lock_timeout: float | None) -> None:
        """Open read-only under a shared flock of the file (after rolling back a killed writer's journal)."""
        self._reader = open_shared(self.path, lock_timeout)
        self._h5, self._flock = self._reader.__enter__()
        self._open_existing(self._h5)

    def _recover(self, lock_timeout: float | None) -> None:
        """Roll back a killed writer's journal and delete its temporaries (the exclusive writer lock is held)."""
        target = Path(os.path.realpath(self.path))
        recover(target)
        clean_temporaries(target)

    def _open_existing(self, f: h5py.File) -> None:
        backend = check_mask_bank(f, self.path)
        if backend != self.backend_id:
            raise StorageFormatError(
                self.path, f"is a {backend!r} bank, not {self.backend_id!r} (open it with open_bank())"
            )
        self._version = int(f.attrs["format_version"])
        self._load_options(f)

    def _create_layout(self, f: h5py.File, options: dict[str, Any]) -> None:
        write_str_attr(f.attrs, "kind", KIND)
        f.attrs["format_version"] = np.int64(self.write_version)
        write_str_attr(f.attrs, "backend", self.backend_id)
        write_str_attr(f.attrs, "metadata", "{}")
        self._set_options(f, options)
        _create_tasks_group(f)
        f.create_group(ATTACHMENTS, track_order=True)

    def _set_options(self, f: h5py.File, options: dict[str, Any]) -> None:
        """Validate backend options and record them as root attributes (none by default)."""
        if options:
            raise InvalidArgumentError("options", f"no options for backend {self.backend_id!r}", sorted(options))

    def _load_options(self, f: h5py.File) -> None:
        """Read the backend options back from the root attributes (none by default)."""

    # ------------------------------------------------------------------ encoding hooks
    def _encode(self, flat: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _decode(self, ds: h5py.Dataset, length: int) -> np.ndarray:
        return self._decode_data(ds, ds[()], length)

    def _decode_data(self, ds: h5py.Dataset, data: np.ndarray, length: int) -> np.ndarray:
        """Decode a task from its dataset's content ``data`` (already read and verified); default: ``_decode``."""
        return self._decode(ds, length)

    def _extra_nbytes(self, ds: h5py.Dataset) -> int:
        return 0

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
        """Writable banks: SIGTERM/SIGINT wait while HDF5 works (see :func:`hopfield_masks.journal.signals_deferred`)."""
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
        data, extra = self._encode(flat)
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
        data = ds[()]  # bounded: check_dataset compared the declared size with the stored bytes and the ceiling
        verify_dataset(ds, self.path, data=np.asarray(data), required=self._checksums_required())
        return layout, self._decode_data(ds, data, layout.length)

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
        self._fh = JournaledFile(self._target)
        self._flock = FileLock(self.path, self._fh.fileno(), exclusive=True)  # from now on changed in place
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
                        fh.fsync()
                        fh.close()
                        assert self._target is not None
                        try:
                            _repack(self._target)  # renamed over the bank: the journal no longer applies
                        except BaseException:
                            recover(self._target)  # nothing was published: roll the in-place changes back
                            raise
                        fh.abandon()
                        recover(self._target)  # deletes the now stale journal
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
                            _repack_into(self._tmp, compact)
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
