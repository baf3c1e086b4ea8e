"""The :class:`MaskBank` contract: a store of exact task masks behind one interface.

A **mask bank** holds many *tasks*; a task is a dict of named layer masks
(boolean arrays of any shape, 0-d and empty included) plus a JSON dict of task
attributes.  The bank also holds one JSON dict of *producer metadata* (the base
network's seed and architecture, a benchmark description...) and
*attachments*: named h5py groups for other stored objects (the reservoir).

What every backend guarantees (``tests/hopfield_masks/test_backend_conformance.py``
checks all of it, for every registered backend, against the ``"memory"`` oracle):

- **exact round trip**: :meth:`MaskBank.read_task` returns the masks given to
  :meth:`MaskBank.write_task` bit for bit, as ``bool`` arrays of the original
  shapes, in the original layer order;
- **order**: :meth:`MaskBank.tasks` and :meth:`MaskBank.attachments` list names in
  insertion order; an overwritten task moves to the end;
- **JSON**: metadata and task attributes come back as ``json.loads(json.dumps(x))``
  (tuples become lists); values that strict JSON cannot hold (NaN, objects)
  are refused when written, not when read;
- **names**: task and attachment names are non-empty strings without ``"/"``,
  other than ``"."`` and ``".."``; layer names are non-empty strings;
- **modes**: ``"r"`` refuses every write; ``"w"`` starts an empty bank; ``"a"``
  appends to an existing one.  Changes are *committed* when the bank is closed
  without an exception (``close()`` or a ``with`` block ending normally) or by
  :meth:`MaskBank.commit`; an exception inside the ``with`` block discards every
  change since the last commit and leaves the file as it was.  File backends
  make this crash-safe: ``"w"`` writes a temporary file renamed over the
  destination, ``"a"`` appends in place under a rollback journal
  (:mod:`hopfield_masks.safety.journal`), so a ``kill -9`` at any instant leaves the last
  committed bank, and an append costs about the bytes it adds;
- **locking** (file backends, :mod:`hopfield_masks.safety.locking`): a writable bank holds
  the bank's exclusive lock from open to close, a read-only one a shared lock; a
  second writer waits (``HOPFIELD_MASKS_LOCK_TIMEOUT``, default 60 s) and then
  raises :class:`~hopfield_masks.errors.BankLockedError`;
- **integrity**: every task dataset and every dataset of an attachment carries a
  CRC-32 (:mod:`hopfield_masks.safety.integrity`) recorded when written and verified by
  every read (:meth:`MaskBank.read_task`, :meth:`MaskBank.read_attachment`,
  :meth:`MaskBank.copy_to`); links, external storage and sizes the file cannot
  back are refused before anything is read;
- **errors**: an unknown task or attachment raises
  :class:`~hopfield_masks.errors.TaskNotFoundError`; a bad mask raises
  :class:`~hopfield_masks.errors.PatternError`; a bad name, mode or JSON value
  raises :class:`~hopfield_masks.errors.InvalidArgumentError`; a damaged file
  raises :class:`~hopfield_masks.errors.StorageFormatError` naming its path.

**Appending one task at a time** (what resumable training does after each
finished task; cheap and crash-safe)::

    with open_bank("bank.h5", "a") as bank:      # waits for the exclusive lock
        bank.write_task(str(len(bank)), masks, attrs={"accuracy": {"gg": 0.97}})
    # closed: committed (fsync + journal deleted); a kill -9 before this line leaves
    # the bank exactly as it was before open_bank(), every earlier task intact

A long session may call :meth:`MaskBank.commit` after each task instead of
reopening; everything written before a ``commit()`` survives a crash.

Implementations subclass :class:`MaskBank`, set ``backend_id`` and implement the
protected primitives (the ``_``-prefixed abstract methods).  The public
methods here validate arguments, check the mode and translate missing names
into errors, so a primitive only ever sees valid input: validated names,
a :class:`~hopfield_masks.blocks.MaskLayout` and the task's flat ``bool``
pattern (the layers raveled in C order and concatenated in layout order).
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import h5py
import numpy as np

from ..blocks import MaskLayout
from ..errors import FileWriteError, HopfieldMasksError, InvalidArgumentError, StorageFormatError, TaskNotFoundError
from ..safety.integrity import check_link, max_array_bytes, seal_tree, verify_tree

__all__ = ["MaskBank", "MODES", "check_name", "to_json"]

#: Open modes: read-only, append to an existing bank, create (or replace) a bank.
MODES = ("r", "a", "w")

T = TypeVar("T")


def _is_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


def check_name(name: object, argument: str) -> str:
    """Return ``name`` if it can name a task or attachment, else raise.

    HDF5 uses ``"/"`` as its path separator and gives ``"."``/``".."`` special
    meanings, so those cannot be names in any backend (all backends accept the
    same names, so a bank can always be copied from one backend to another).

    Examples
    --------
    >>> check_name("task-0", "task")
    'task-0'
    >>> check_name("a/b", "task")
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: task: expected a non-empty string without '/' ...
    """
    if not _is_name(name):
        raise InvalidArgumentError(
            argument, "a non-empty string without '/' (and not '.' or '..')", repr(name)
        )
    return name


def to_json(value: object, argument: str) -> str:
    """Serialise a mapping as strict JSON text, raising a named error when it cannot be.

    Examples
    --------
    >>> to_json({"seed": 0, "shape": (3, 4)}, "metadata")
    '{"seed":0,"shape":[3,4]}'
    >>> to_json({"x": float("nan")}, "attrs")
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: attrs: expected a JSON-serialisable mapping ...
    """
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(argument, "a mapping (dict) of JSON values", type(value).__name__)
    try:
        # allow_nan=False: NaN/Infinity are not JSON, and other readers of the file would choke on them
        return json.dumps(dict(value), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            argument, "a JSON-serialisable mapping (str keys; finite numbers, str, bool, None, lists, dicts)", str(exc)
        ) from None


def _flatten_task(masks: object) -> tuple[MaskLayout, np.ndarray]:
    """Validate one task's masks; return its layout and flat bool pattern ``(P,)``."""
    if not isinstance(masks, Mapping):
        raise InvalidArgumentError("masks", "a mapping of layer name -> mask array", type(masks).__name__)
    for layer in masks:
        if not isinstance(layer, str) or not layer:
            raise InvalidArgumentError("masks", "non-empty string layer names", repr(layer))
    layout = MaskLayout.from_masks(masks)
    flat = layout.flatten(masks)  # (P,) bool; raises PatternError naming the layer
    return layout, flat


class MaskBank(ABC):
    """A store of exact task masks (see the module docstring for the contract).

    Use as a context manager so that a file backend publishes its changes
    atomically::

        with create_bank("bank.h5", metadata={"seed": 0}) as bank:
            bank.write_task("0", {"fc1": mask1, "fc2": mask2}, attrs={"accuracy": 0.97})

    Attributes
    ----------
    backend_id : str
        The registry id of the class (``"memory"``, ``"hdf5-packed"``...).
    persistent : bool
        Whether the bank lives in a file (``path`` is then required).
    mode : str
        ``"r"``, ``"a"`` or ``"w"``.
    """

    backend_id: ClassVar[str] = ""
    persistent: ClassVar[bool] = True

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise InvalidArgumentError("mode", f"one of {list(MODES)}", repr(mode))
        self.mode = mode
        self._closed = False

    # ------------------------------------------------------------------ primitives (implemented per backend)
    @abstractmethod
    def _get_metadata_json(self) -> str:
        """The stored producer metadata as JSON text."""

    @abstractmethod
    def _put_metadata_json(self, text: str) -> None:
        """Replace the stored producer metadata by ``text`` (valid JSON of a dict)."""

    @abstractmethod
    def _task_names(self) -> list[str]:
        """Names of the stored tasks, in insertion order."""

    @abstractmethod
    def _put_task(self, task: str, layout: MaskLayout, flat: np.ndarray, attrs_json: str) -> None:
        """Store a new task (``task`` is absent); ``flat`` is bool ``(layout.length,)``."""

    @abstractmethod
    def _get_task(self, task: str) -> tuple[MaskLayout, np.ndarray]:
        """The layout and flat bool pattern ``(P,)`` of an existing task."""

    @abstractmethod
    def _task_record(self, task: str) -> tuple[MaskLayout, str]:
        """The layout and attribute JSON text of an existing task, without reading its masks."""

    @abstractmethod
    def _task_nbytes(self, task: str) -> int:
        """Bytes of an existing task's stored mask data."""

    @abstractmethod
    def _drop_task(self, task: str) -> None:
        """Remove an existing task."""

    @abstractmethod
    def _attachments_root(self) -> h5py.Group:
        """The h5py group whose child groups are the attachments."""

    @abstractmethod
    def _close(self, commit: bool) -> None:
        """Release resources; publish the changes when ``commit`` (file backends), else discard them."""

    def _has_task(self, task: str) -> bool:
        """Whether ``task`` is stored (override when a lookup is cheaper than listing every name)."""
        return task in self._task_names()

    def _commit(self) -> None:
        """Make the changes so far durable (file backends); the bank stays open."""

    def _check_write_errors(self) -> None:
        """Raise if a write of this session already failed (file backends: a full disk)."""

    def _critical(self) -> contextlib.AbstractContextManager:
        """A context in which storage code runs undisturbed by signals (file backends defer SIGTERM/SIGINT)."""
        return contextlib.nullcontext()

    @property
    def _where(self) -> str:
        """What error messages name: the file, or the kind of bank."""
        path = getattr(self, "path", None)
        return str(path) if path is not None else f"<{self.backend_id} bank>"

    def _file_bytes(self) -> int:
        """An upper bound on what the bank's storage can hold (attribute sizes are checked against it)."""
        return max_array_bytes()

    def _checksums_required(self) -> bool:
        """Whether a missing checksum is damage (format-2 files) rather than an older file."""
        return False

    def _json_object(self, text: str, what: str) -> dict[str, Any]:
        """``text`` parsed as a JSON object; a stored value that is not one is a damaged file."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise StorageFormatError(self._where, f"{what} is not valid JSON (damaged file)") from None
        if not isinstance(value, dict):
            raise StorageFormatError(self._where, f"{what} is JSON {type(value).__name__}, expected an object")
        return value

    def _verified_attachment(self, name: str) -> h5py.Group:
        """The attachment group, after its links, storage, sizes and checksums were checked."""
        group = self._check_attachment(name)
        verify_tree(group, self._where, file_bytes=self._file_bytes(), required=self._checksums_required())
        return group

    # ------------------------------------------------------------------ state checks
    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("bank", "an open mask bank", f"a closed {type(self).__name__}")

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode == "r":
            raise InvalidArgumentError("mode", "'a' or 'w' to modify the bank (it was opened read-only)", "'r'")

    def _check_task(self, task: object) -> str:
        self._check_open()
        if not _is_name(task) or not self._has_task(task):
            raise TaskNotFoundError(task, self._task_names())
        return task

    def _check_attachment(self, name: object) -> h5py.Group:
        self._check_open()
        root = self._attachments_root()
        if not _is_name(name) or name not in root:
            raise TaskNotFoundError(name, list(root))
        check_link(root, name, self._where)  # an external or soft link is never followed
        group = root[name]
        if not isinstance(group, h5py.Group):
            raise StorageFormatError(self._where, f"attachment {name!r} is not a group (damaged file)")
        return group

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """The producer metadata (a fresh copy: editing it does not change the bank)."""
        self._check_open()
        return self._json_object(self._get_metadata_json(), "the root 'metadata' attribute")

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the producer metadata by ``metadata`` (a JSON-serialisable mapping)."""
        self._check_writable()
        self._put_metadata_json(to_json(metadata, "metadata"))

    # ------------------------------------------------------------------ tasks
    def tasks(self) -> list[str]:
        """Names of the stored tasks, in insertion order."""
        self._check_open()
        return list(self._task_names())

    def __len__(self) -> int:
        return len(self.tasks())

    def __contains__(self, task: object) -> bool:
        self._check_open()
        return _is_name(task) and self._has_task(task)

    def write_task(
        self,
        task: str,
        masks: Mapping[str, object],
        *,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Store one task's layer masks (any shapes, 0/1 values) and its JSON attributes.

        Raises
        ------
        InvalidArgumentError
            Read-only bank, bad task name, ``task`` exists and ``overwrite`` is false,
            or ``attrs`` is not JSON-serialisable.
        PatternError
            A mask holds a value other than 0/1 (or is not numeric).
        """
        self._check_writable()
        check_name(task, "task")
        layout, flat = _flatten_task(masks)
        attrs_json = to_json({} if attrs is None else attrs, "attrs")
        if self._has_task(task):
            if not overwrite:
                raise InvalidArgumentError("task", "a name not in the bank (or overwrite=True)", repr(task))
            self._drop_task(task)
        self._put_task(task, layout, flat, attrs_json)

    def read_task(self, task: str) -> dict[str, np.ndarray]:
        """The task's masks: ``bool`` arrays of the original shapes, in the original layer order."""
        layout, flat = self._get_task(self._check_task(task))
        # split by hand: MaskLayout.unflatten re-tests every entry (> 0), which doubles the cost of a read
        return {
            name: flat[part].reshape(shape).copy()
            for (name, part), shape in zip(layout.slices().items(), layout.shapes)
        }

    def task_attrs(self, task: str) -> dict[str, Any]:
        """The task's JSON attributes (a fresh copy)."""
        task = self._check_task(task)
        return self._json_object(self._task_record(task)[1], f"the 'attrs' of task {task!r}")

    def task_layout(self, task: str) -> MaskLayout:
        """The task's layer names and shapes, read without reading its masks."""
        task = self._check_task(task)
        return self._task_record(task)[0]

    def task_nbytes(self, task: str) -> int:
        """Bytes of the task's stored mask data (the memory backend reports the packed size)."""
        return int(self._task_nbytes(self._check_task(task)))

    def delete_task(self, task: str) -> None:
        """Remove a task."""
        self._check_writable()
        self._drop_task(self._check_task(task))

    # ------------------------------------------------------------------ attachments
    def attachments(self) -> list[str]:
        """Names of the attachments (stored objects other than masks), in insertion order."""
        self._check_open()
        return list(self._attachments_root())

    def write_attachment(
        self, name: str, writer: Callable[[h5py.Group], None], *, overwrite: bool = False
    ) -> None:
        """Create attachment ``name`` as an empty h5py group and let ``writer(group)`` fill it.

        If ``writer`` raises, the partly written group is removed and the exception propagates.
        """
        self._check_writable()
        check_name(name, "name")
        if not callable(writer):
            raise InvalidArgumentError("writer", "a callable taking an h5py.Group", type(writer).__name__)
        with self._critical():  # HDF5 writes throughout: signals wait for the attachment to be complete
            self._write_attachment(name, writer, overwrite)

    def _write_attachment(self, name: str, writer: Callable[[h5py.Group], None], overwrite: bool) -> None:
        root = self._attachments_root()
        if name in root:
            if not overwrite:
                raise InvalidArgumentError("name", "an attachment name not in the bank (or overwrite=True)", repr(name))
            self._delete_attachment_group(name)
        group = root.create_group(name, track_order=True)
        try:
            writer(group)
            seal_tree(group)  # a CRC-32 on every dataset and group the writer made
            self._check_write_errors()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the session is rolled back anyway when the disk is full
                self._delete_attachment_group(name)
            if isinstance(exc, OSError) and not isinstance(exc, HopfieldMasksError):
                raise FileWriteError(self._where, f"{exc.strerror or exc}; nothing was committed") from None
            raise

    def read_attachment(self, name: str, reader: Callable[[h5py.Group], T]) -> T:
        """Return ``reader(group)`` for attachment ``name`` (the group is only valid during the call).

        Before ``reader`` runs, the group is checked as untrusted input: no soft or
        external links, no external or virtual storage, no dataset declaring more
        bytes than it stores or than the per-array ceiling, and every checksum
        matches (:func:`hopfield_masks.safety.integrity.verify_tree`).
        """
        if not callable(reader):
            raise InvalidArgumentError("reader", "a callable taking an h5py.Group", type(reader).__name__)
        group = self._verified_attachment(name)
        try:
            return reader(group)
        except (OSError, RuntimeError) as exc:  # HDF5 could not read what the checks let through
            raise StorageFormatError(self._where, f"attachment {name!r} cannot be read ({exc})") from None

    def delete_attachment(self, name: str) -> None:
        """Remove attachment ``name``."""
        self._check_writable()
        self._check_attachment(name)
        self._delete_attachment_group(name)

    def _delete_attachment_group(self, name: str) -> None:
        del self._attachments_root()[name]

    # ------------------------------------------------------------------ copying, closing
    def copy_to(self, other: MaskBank, *, overwrite: bool = False) -> None:
        """Copy metadata, every task (masks and attrs) and every attachment into ``other``.

        Use it to convert between backends, e.g. from a packed bank into a sparse one.
        """
        if not isinstance(other, MaskBank):
            raise InvalidArgumentError("other", "a MaskBank", type(other).__name__)
        other._check_writable()
        other.set_metadata(self.metadata)
        for task in self.tasks():
            other.write_task(task, self.read_task(task), attrs=self.task_attrs(task), overwrite=overwrite)
        for name in self.attachments():
            other.write_attachment(
                name, lambda dst, src=self._verified_attachment(name): _copy_group(src, dst), overwrite=overwrite
            )

    def commit(self) -> None:
        """Make every change so far durable without closing (a crash later keeps them). No-op in memory."""
        self._check_writable()
        self._commit()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the bank, publishing its changes (file backends, modes ``"a"``/``"w"``). Idempotent."""
        if not self._closed:
            self._closed = True
            self._close(commit=True)

    def __enter__(self) -> MaskBank:
        self._check_open()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._closed:
            self._closed = True
            # an exception inside the with block must never publish half-written work
            self._close(commit=exc_type is None)
        return False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._task_names())} tasks"
        where = getattr(self, "path", None)
        return f"<{type(self).__name__} {str(where)!r} mode={self.mode!r} {state}>"


def _copy_group(src: h5py.Group, dst: h5py.Group) -> None:
    """Copy the attributes and children of ``src`` into the existing group ``dst``, keeping order."""
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
    for key in src:
        src.file.copy(src[key], dst, name=key)

