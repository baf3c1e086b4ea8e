"""The ``"hdf5-packed"`` backend: one bit per mask entry.

Each task is one ``uint8`` dataset ``/tasks/<task>`` of ``ceil(P / 8)`` bytes:
the task's flat pattern (its layers raveled in C order and concatenated in
layout order, :meth:`hopfield_masks.blocks.MaskLayout.flatten`) packed most
significant bit first (:func:`hopfield_masks.patterns.pack_bits`, the
``numpy.packbits`` default), the last byte padded with zero bits.  Layers are
not byte-aligned: padding every layer would cost up to a byte per layer for
nothing, and unpacking the whole task then slicing is as simple.

This is the dense format: its size does not depend on the mask's density,
``n / 8`` bytes plus about 170 bytes of HDF5 metadata per task (object header
and link; :mod:`hopfield_masks.backends._hdf5` explains how it is kept small).

Examples
--------
>>> import os, tempfile, numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "bank.h5")
>>> with HDF5PackedBank(path, "w") as bank:
...     bank.write_task("0", {"fc": np.eye(3, dtype=bool)})
>>> with HDF5PackedBank(path) as bank:
...     bank.read_task("0")["fc"].sum(), bank.task_nbytes("0")
(np.int64(3), 2)
>>> tmp.cleanup()
"""

from __future__ import annotations

import h5py
import numpy as np

from ..errors import PatternError
from ..patterns import pack_bits, packed_nbytes, unpack_bits
from ._hdf5 import HDF5MaskBank

__all__ = ["HDF5PackedBank"]


class HDF5PackedBank(HDF5MaskBank):
    """Mask bank storing each task as packed bits (1 bit per entry) in an HDF5 file.

    See :class:`hopfield_masks.backends._hdf5.HDF5MaskBank` for the parameters and
    ``docs/FORMAT.md`` for the layout.
    """

    backend_id = "hdf5-packed"

    def _encode(self, flat: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return pack_bits(flat), {}  # (ceil(P/8),) uint8

    def _decode_data(self, ds: h5py.Dataset, data: np.ndarray, length: int) -> np.ndarray:
        if ds.dtype != np.uint8 or ds.shape != (packed_nbytes(length),):
            raise self._corrupt(
                ds, f"expected {packed_nbytes(length)} uint8 bytes for {length} entries, found {ds.dtype} {ds.shape}"
            )
        try:
            return unpack_bits(data, length)  # (P,) bool
        except PatternError as exc:  # pragma: no cover - the shape check above makes this unreachable
            raise self._corrupt(ds, str(exc)) from None
