"""The ``"memory"`` backend: a mask bank held in Python objects, the oracle of the conformance suite.

It keeps each task's flat pattern as a plain ``bool`` array, so its behaviour
is obviously right and the file backends are tested against it.  Attachments
live in an HDF5 file that exists only in memory (h5py's ``core`` driver
without a backing store), so writers and readers of attachments see the same
h5py objects as with a file backend.

Examples
--------
>>> import numpy as np
>>> bank = MemoryMaskBank()
>>> bank.write_task("0", {"fc": np.eye(2, dtype=bool)}, attrs={"accuracy": 0.9})
>>> bank.read_task("0")["fc"].tolist(), bank.task_attrs("0")
([[True, False], [False, True]], {'accuracy': 0.9})
>>> bank.close()
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import h5py
import numpy as np

from ..blocks import MaskLayout
from ..errors import InvalidArgumentError
from ..patterns import packed_nbytes
from .base import MODES, MaskBank

__all__ = ["MemoryMaskBank"]

# The core driver refuses two open files of the same name, so every bank gets its own.
_FILE_NAMES = itertools.count()


@dataclass(frozen=True)
class _Task:
    layout: MaskLayout
    flat: np.ndarray  # (P,) bool, owned by the bank (never handed out)
    attrs_json: str


class MemoryMaskBank(MaskBank):
    """A mask bank in memory (not persistent; gone when closed).

    Parameters
    ----------
    path : None
        Must be ``None`` (the argument exists so that every backend has the same signature).
    mode : str
        ``"w"`` or ``"a"`` (writable; the same thing here) or ``"r"`` (read-only, see :meth:`from_bank`).
    """

    backend_id = "memory"
    persistent = False

    def __init__(self, path: None = None, mode: str = "w") -> None:
        super().__init__(mode)
        if path is not None:
            raise InvalidArgumentError("path", "None (the memory backend has no file)", repr(path))
        self.path = None
        self._metadata_json = "{}"
        self._tasks: dict[str, _Task] = {}
        self._h5 = h5py.File(
            f"memory-bank-{next(_FILE_NAMES)}.h5", "w", driver="core", backing_store=False, track_order=True
        )

    @classmethod
    def from_bank(cls, bank: MaskBank, mode: str = "r") -> MemoryMaskBank:
        """An in-memory copy of ``bank`` (any backend), opened in ``mode``.

        Examples
        --------
        >>> import numpy as np
        >>> src = MemoryMaskBank()
        >>> src.write_task("t", {"fc": np.ones(3, bool)})
        >>> copy = MemoryMaskBank.from_bank(src)
        >>> copy.mode, copy.tasks()
        ('r', ['t'])
        """
        if mode not in MODES:
            raise InvalidArgumentError("mode", f"one of {list(MODES)}", repr(mode))
        new = cls(None, "w")
        bank.copy_to(new)
        new.mode = mode  # switch to read-only only after the copy has been written
        return new

    def _get_metadata_json(self) -> str:
        return self._metadata_json

    def _put_metadata_json(self, text: str) -> None:
        self._metadata_json = text

    def _task_names(self) -> list[str]:
        return list(self._tasks)  # dicts keep insertion order

    def _put_task(self, task: str, layout: MaskLayout, flat: np.ndarray, attrs_json: str) -> None:
        self._tasks[task] = _Task(layout, flat.copy(), attrs_json)

    def _has_task(self, task: str) -> bool:
        return task in self._tasks

    def _get_task(self, task: str) -> tuple[MaskLayout, np.ndarray]:
        record = self._tasks[task]
        return record.layout, record.flat.copy()

    def _task_record(self, task: str) -> tuple[MaskLayout, str]:
        record = self._tasks[task]
        return record.layout, record.attrs_json

    def _task_nbytes(self, task: str) -> int:
        # what the packed backend would store: one bit per entry
        return packed_nbytes(self._tasks[task].layout.length)

    def _drop_task(self, task: str) -> None:
        del self._tasks[task]

    def _attachments_root(self) -> h5py.Group:
        return self._h5

    def _close(self, commit: bool) -> None:
        self._h5.close()
        self._tasks.clear()
