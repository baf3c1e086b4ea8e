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

Writes never touch the published file: mode ``"w"`` writes a new temporary file
and ``"a"`` a temporary copy (:func:`hopfield_masks._files.atomic_path`), both
renamed over the destination on a successful close.  HDF5 never reclaims the
space of deleted objects, so a session that deleted or overwrote something
rewrites ("repacks") the temporary file before publishing it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._files import atomic_path, open_h5_read
from ..blocks import MaskLayout
from ..errors import HopfieldMasksError, InvalidArgumentError, StorageFormatError
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
    "FORMAT_VERSION", "KIND", "SHARED_LAYOUT", "HDF5MaskBank", "check_mask_bank", "read_header", "read_str_attr",
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


def _repack(tmp: Path) -> None:
    """Rewrite the HDF5 file ``tmp`` without the space left by deleted objects, keeping all orders."""
    fd, name = tempfile.mkstemp(prefix=f".{tmp.name}.", suffix=".repack", dir=tmp.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "r") as src, h5py.File(name, "w", libver=LIBVER) as dst:
            for key in src.attrs:
                dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
            for group in (TASKS, ATTACHMENTS):
                # an old file's indexed /tasks group becomes the current kind: the order is the same
                out = _create_tasks_group(dst) if group == TASKS else dst.create_group(group, track_order=True)
                for key in src[group].attrs:
                    out.attrs.create(key, src[group].attrs[key], dtype=src[group].attrs.get_id(key).dtype)
                for child in src[group]:  # one by one: the creation order of the copy is ours
                    src.copy(src[group][child], out, name=child)  # copies get exact object headers
        os.replace(name, tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
class _Discard(Exception):
    """Thrown into :func:`atomic_path` to make it delete the temporary file."""


class HDF5MaskBank(MaskBank):
    """Shared implementation of the HDF5 backends; subclasses define the per-task encoding.

    Subclasses implement ``_encode(flat) -> (data, extra_attrs)`` and
    ``_decode(dataset, length) -> flat`` and may override ``_set_options`` /
    ``_load_options`` (backend options stored as root attributes) and
    ``_extra_nbytes`` (mask data kept in attributes).

    Parameters
    ----------
    path : path-like
        The bank file.
    mode : str
        ``"r"`` (read-only), ``"a"`` (append to an existing bank) or ``"w"`` (create or replace).
    **options
        Backend options, accepted with ``mode="w"`` only (they are fixed when a bank is created).
    """

    persistent = True

    def __init__(self, path: str | os.PathLike, mode: str = "r", **options: Any) -> None:
        super().__init__(mode)
        if path is None or not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError("path", f"a file path for backend {self.backend_id!r}", repr(path))
        self.path = Path(path).expanduser()
        if options and mode != "w":
            raise InvalidArgumentError("options", "no backend options unless mode='w'", sorted(options))
        self._atomic = None
        self._tmp: Path | None = None
        self._dirty = False  # something was deleted: repack before publishing
        self._h5: h5py.File | None = None
        self._scratch: h5py.File | None = None  # in-memory file where task datasets are built (writable modes)
        self._tasks_group: h5py.Group | None = None  # /tasks of the open file, looked up once
        self._shared: Any = _UNREAD  # cached root shared layout: a MaskLayout, None (absent) or _UNREAD
        if mode == "r":
            self._h5 = open_h5_read(self.path)
            try:
                self._open_existing(self._h5)
            except BaseException:
                self._h5.close()
                raise
            return
        if mode == "a":
            with open_h5_read(self.path) as f:
                self._open_existing(f)
        self._atomic = atomic_path(self.path, copy_existing=(mode == "a"))
        self._tmp = tmp = self._atomic.__enter__()
        try:
            self._h5 = h5py.File(tmp, "r+" if mode == "a" else "w", libver=LIBVER)
            if mode == "w":
                self._create_layout(self._h5, options)
        except BaseException as exc:
            if self._h5 is not None:
                self._h5.close()
            self._atomic.__exit__(_Discard, _Discard(), None)
            self._closed = True
            if isinstance(exc, OSError):
                raise StorageFormatError(self.path, f"cannot be written ({exc})") from None
            raise

    # ------------------------------------------------------------------ file set-up
    def _open_existing(self, f: h5py.File) -> None:
        backend = check_mask_bank(f, self.path)
        if backend != self.backend_id:
            raise StorageFormatError(
                self.path, f"is a {backend!r} bank, not {self.backend_id!r} (open it with open_bank())"
            )
        self._load_options(f)

    def _create_layout(self, f: h5py.File, options: dict[str, Any]) -> None:
        write_str_attr(f.attrs, "kind", KIND)
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
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
        raise NotImplementedError

    def _extra_nbytes(self, ds: h5py.Dataset) -> int:
        return 0

    def _corrupt(self, ds: h5py.Dataset, reason: str) -> StorageFormatError:
        """The error for a task dataset whose content is inconsistent."""
        return StorageFormatError(self.path, f"task dataset {ds.name} is damaged: {reason}")

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

    def _get_metadata_json(self) -> str:
        return read_str_attr(self._file, "metadata", self.path)

    def _put_metadata_json(self, text: str) -> None:
        write_str_attr(self._file.attrs, "metadata", text)

    def _task_names(self) -> list[str]:
        return list(self._tasks)

    def _shared_layout(self) -> MaskLayout | None:
        """The root ``shared_layout`` (None when absent), read once per session."""
        if self._shared is _UNREAD:
            self._shared = None
            if SHARED_LAYOUT in self._file.attrs:
                value = read_json_attr(self._file, SHARED_LAYOUT, self.path)  # raises naming the path
                try:
                    self._shared = MaskLayout.from_dict(value)
                except (KeyError, TypeError, ValueError, HopfieldMasksError) as exc:
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
            scratch.copy(ds, self._tasks, name=task)
        finally:
            del scratch["task"]

    def _dataset(self, task: str) -> h5py.Dataset:
        obj = self._tasks[task]
        if not isinstance(obj, h5py.Dataset):
            raise StorageFormatError(self.path, f"{obj.name} is not a dataset (damaged file)")
        return obj

    def _has_task(self, task: str) -> bool:
        return task in self._tasks  # one link lookup, not a listing of every task

    def _get_task(self, task: str) -> tuple[MaskLayout, np.ndarray]:
        ds = self._dataset(task)
        layout = self._layout(ds)
        try:
            return layout, self._decode(ds, layout.length)
        except OSError as exc:  # HDF5 could not read the bytes (truncated, corrupt)
            raise StorageFormatError(self.path, f"task {task!r} cannot be read ({exc})") from None

    def _task_record(self, task: str) -> tuple[MaskLayout, str]:
        ds = self._dataset(task)
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
            layout = MaskLayout.from_dict(read_json_attr(ds, "layout", self.path))
        except (KeyError, TypeError, ValueError, HopfieldMasksError) as exc:
            if isinstance(exc, StorageFormatError):
                raise
            raise self._corrupt(ds, f"bad 'layout' attribute ({exc})") from None
        return layout

    def _task_nbytes(self, task: str) -> int:
        ds = self._dataset(task)
        return int(ds.id.get_storage_size()) + self._extra_nbytes(ds)

    def _drop_task(self, task: str) -> None:
        del self._tasks[task]
        self._dirty = True

    def _attachments_root(self) -> h5py.Group:
        return self._file[ATTACHMENTS]

    def _delete_attachment_group(self, name: str) -> None:
        super()._delete_attachment_group(name)
        self._dirty = True

    def _close(self, commit: bool) -> None:
        if self._scratch is not None:
            scratch, self._scratch = self._scratch, None
            scratch.close()
        self._tasks_group = None
        if self._h5 is not None:
            h5, self._h5 = self._h5, None
            h5.close()
        if self._atomic is None:
            return
        atomic, self._atomic = self._atomic, None
        if not commit:
            atomic.__exit__(_Discard, _Discard(), None)
            return
        try:
            if self._dirty:
                _repack(self._tmp)
        except BaseException as exc:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        atomic.__exit__(None, None, None)  # fsync, then rename over the destination

    def __del__(self) -> None:
        # A bank dropped without close() publishes nothing: half-finished work must not replace a good file.
        with contextlib.suppress(Exception):
            if not self._closed:
                self._closed = True
                self._close(commit=False)
