"""The HDF5 layout shared by the ``hdf5-*`` backends (``docs/FORMAT.md`` describes it for h5py users).

File layout (format version 1)::

    /                     attrs: kind="mask-bank", format_version=1, backend, metadata (JSON)
                                 (+ backend options, e.g. csc_rows for hdf5-sparse)
    /tasks/               group, links in insertion order
    /tasks/<task>         ONE dataset per task holding the encoded flat pattern
                          attrs: layout (JSON MaskLayout), attrs (JSON) (+ encoding attrs, e.g. indptr)
    /attachments/<name>   groups written by attachment writers (the reservoir...)

Why one dataset per task and not one per layer: every HDF5 dataset costs about
300 bytes of object header, so three layer datasets would cost about 3.5 % of a
LeNet 300-100 mask (33 kB packed), above the 2 % the packed format allows.
Layer names and shapes live in the task's ``layout`` attribute, which fits in
the header space HDF5 reserves anyway.  Strings are fixed-length UTF-8 (h5py
reads them as ``bytes``): variable-length strings would need a 4 kB global heap.

Writes never touch the published file: mode ``"w"`` writes a new temporary file
and ``"a"`` a temporary copy (:func:`hopfield_masks._files.atomic_path`), both
renamed over the destination on a successful close.  HDF5 never reclaims the
space of deleted objects, so a session that deleted or overwrote something
rewrites ("repacks") the temporary file before publishing it.
"""

from __future__ import annotations

import contextlib
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
from .base import MaskBank

__all__ = ["FORMAT_VERSION", "KIND", "HDF5MaskBank", "read_header", "read_str_attr", "write_str_attr", "json_safe"]

FORMAT_VERSION = 1
KIND = "mask-bank"
TASKS = "tasks"
ATTACHMENTS = "attachments"
# Object formats of HDF5 1.8 (readable by any h5py of the last decade), never newer than 1.10's.
LIBVER = ("v108", "v110")


def write_str_attr(attrs: h5py.AttributeManager, name: str, text: str) -> None:
    """Store ``text`` as a fixed-length UTF-8 string attribute (no global heap)."""
    raw = text.encode("utf-8")
    attrs.create(name, np.array(raw, dtype=h5py.string_dtype("utf-8", max(len(raw), 1))))


def read_str_attr(obj: h5py.HLObject, name: str, path: object) -> str:
    """Read a string attribute (fixed or variable length), raising a format error naming ``path``."""
    try:
        value = obj.attrs[name]
    except KeyError:
        raise StorageFormatError(path, f"attribute {name!r} is missing on {obj.name}") from None
    except OSError as exc:
        raise StorageFormatError(path, f"attribute {name!r} of {obj.name} cannot be read ({exc})") from None
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not a string (found {type(value).__name__})")


def read_json_attr(obj: h5py.HLObject, name: str, path: object) -> Any:
    """Read a JSON string attribute."""
    text = read_str_attr(obj, name, path)
    try:
        return json.loads(text)
    except ValueError:
        raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not valid JSON") from None


def json_safe(value: Any) -> Any:
    """Turn an HDF5 attribute value into plain JSON-safe Python (JSON text is parsed).

    Examples
    --------
    >>> json_safe(np.bytes_(b'{"a": 1}')), json_safe(np.arange(3)), json_safe(np.float32(0.5))
    ({'a': 1}, [0, 1, 2], 0.5)
    """
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        if value[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value
    if isinstance(value, np.ndarray):
        value = value.tolist()  # nested lists of Python scalars (bytes for fixed-length strings)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def read_header(f: h5py.File, path: object) -> dict[str, Any]:
    """The root identification attributes: ``kind`` and ``format_version`` (both required).

    Raises
    ------
    StorageFormatError
        The file has no ``kind`` attribute (not written by this toolkit) or a bad version.
    """
    if "kind" not in f.attrs:
        raise StorageFormatError(
            path, "is an HDF5 file but not a supsup-store file (no 'kind' attribute on the root group)"
        )
    kind = read_str_attr(f, "kind", path)
    try:
        version = f.attrs["format_version"]
        if isinstance(version, np.ndarray) or not isinstance(version, (int, np.integer)):
            raise TypeError
    except (KeyError, TypeError):
        raise StorageFormatError(path, f"is a {kind!r} file without an integer 'format_version' attribute") from None
    return {"kind": kind, "format_version": int(version)}


def check_mask_bank(f: h5py.File, path: object) -> str:
    """Check the file is a mask bank this library reads; return its backend id."""
    header = read_header(f, path)
    if header["kind"] != KIND:
        raise StorageFormatError(path, f"is a {header['kind']} file, not a mask bank")
    if not 1 <= header["format_version"] <= FORMAT_VERSION:
        raise StorageFormatError(
            path,
            f"has mask-bank format_version {header['format_version']}; this hopfield_masks reads versions "
            f"1 to {FORMAT_VERSION} (upgrade the package)",
        )
    for group in (TASKS, ATTACHMENTS):
        if not isinstance(f.get(group), h5py.Group):
            raise StorageFormatError(path, f"is a mask bank without its '/{group}' group (damaged file)")
    return read_str_attr(f, "backend", path)


def _repack(tmp: Path) -> None:
    """Rewrite the HDF5 file ``tmp`` without the space left by deleted objects, keeping all orders."""
    fd, name = tempfile.mkstemp(prefix=f".{tmp.name}.", suffix=".repack", dir=tmp.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "r") as src, h5py.File(name, "w", libver=LIBVER) as dst:
            for key in src.attrs:
                dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
            for group in (TASKS, ATTACHMENTS):
                out = dst.create_group(group, track_order=True)
                for key in src[group].attrs:
                    out.attrs.create(key, src[group].attrs[key], dtype=src[group].attrs.get_id(key).dtype)
                for child in src[group]:  # one by one: the creation order of the copy is ours
                    src.copy(src[group][child], out, name=child)
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
        f.create_group(TASKS, track_order=True)  # track_order: iteration in insertion order
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

    def _get_metadata_json(self) -> str:
        return read_str_attr(self._file, "metadata", self.path)

    def _put_metadata_json(self, text: str) -> None:
        write_str_attr(self._file.attrs, "metadata", text)

    def _task_names(self) -> list[str]:
        return list(self._file[TASKS])

    def _put_task(self, task: str, layout: MaskLayout, flat: np.ndarray, attrs_json: str) -> None:
        data, extra = self._encode(flat)
        # contiguous layout, no chunking or filters: the format measures the raw encoding
        ds = self._file[TASKS].create_dataset(task, data=data, track_times=False)
        write_str_attr(ds.attrs, "layout", json.dumps(layout.to_dict(), separators=(",", ":")))
        write_str_attr(ds.attrs, "attrs", attrs_json)
        for key, value in extra.items():
            ds.attrs.create(key, value)

    def _dataset(self, task: str) -> h5py.Dataset:
        obj = self._file[TASKS][task]
        if not isinstance(obj, h5py.Dataset):
            raise StorageFormatError(self.path, f"{obj.name} is not a dataset (damaged file)")
        return obj

    def _has_task(self, task: str) -> bool:
        return task in self._file[TASKS]  # one link lookup, not a listing of every task

    def _get_task(self, task: str) -> tuple[MaskLayout, np.ndarray]:
        ds = self._dataset(task)
        layout = self._layout(ds)
        try:
            return layout, self._decode(ds, layout.length)
        except OSError as exc:  # HDF5 could not read the bytes (truncated, corrupt)
            raise StorageFormatError(self.path, f"task {task!r} cannot be read ({exc})") from None

    def _task_record(self, task: str) -> tuple[MaskLayout, str]:
        ds = self._dataset(task)
        return self._layout(ds), read_str_attr(ds, "attrs", self.path)

    def _layout(self, ds: h5py.Dataset) -> MaskLayout:
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
        del self._file[TASKS][task]
        self._dirty = True

    def _attachments_root(self) -> h5py.Group:
        return self._file[ATTACHMENTS]

    def _delete_attachment_group(self, name: str) -> None:
        super()._delete_attachment_group(name)
        self._dirty = True

    def _close(self, commit: bool) -> None:
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
