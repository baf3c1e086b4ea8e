"""Mask banks: exact task masks in HDF5 files (or in memory) behind one interface.

One bank class, :class:`HDF5MaskBank`, holds the file: the layout, checksums, the rollback
journal and the locks.  How it stores each task is its *codec* (:mod:`hopfield_masks.codecs`):

- ``"hdf5-packed"`` -- 1 bit per mask entry (the default);
- ``"hdf5-sparse"`` -- CSC of the kept entries, 16-bit row indices (small for sparse masks);
- ``"hdf5-entropy"`` -- range-coded, near ``n * H(p)`` bits (below it for predictable masks).

``"memory"`` (:class:`MemoryMaskBank`) keeps a bank in Python objects: not persistent, the
test oracle.  :func:`create_bank` and :func:`open_bank` are the usual entry points; an opened
file says which codec wrote it, so :func:`open_bank` needs no backend id.
:func:`describe_file` summarises a mask bank or a reservoir file (what ``supsup-store info``
prints), :func:`verify_file` checks every object of one.  ``docs/FORMAT.md`` documents the
file layout.

Examples
--------
>>> import os, tempfile, numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "bank.h5")
>>> with create_bank(path, "hdf5-sparse", metadata={"seed": 0}) as bank:
...     bank.write_task("0", {"fc1": np.eye(4, dtype=bool), "fc2": np.ones(4, bool)})
>>> with open_bank(path) as bank:
...     bank.backend_id, bank.metadata, bank.tasks(), bank.read_task("0")["fc1"].sum()
('hdf5-sparse', {'seed': 0}, ['0'], np.int64(4))
>>> describe_file(path)["tasks"][0]["density"]
0.4
>>> tmp.cleanup()
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from ..codecs import available_codecs, get_codec
from ..errors import InvalidArgumentError, StorageFormatError, UnknownBackendError
from ..safety.integrity import h5_errors
from .base import MODES, MaskBank, to_json
from .fileformat import check_mask_bank
from .hdf5 import HDF5MaskBank, open_shared
from .inspection import VerifyReport, describe_file, verify_file
from .memory import MemoryMaskBank

__all__ = [
    "MODES",
    "MaskBank",
    "MemoryMaskBank",
    "HDF5MaskBank",
    "available_backends",
    "create_bank",
    "open_bank",
    "describe_file",
    "verify_file",
    "VerifyReport",
]

#: The id of the in-memory bank.
MEMORY = "memory"


def available_backends() -> list[str]:
    """Backend ids: ``"memory"``, then every registered codec (:func:`hopfield_masks.codecs.register_codec`)."""
    return [MEMORY, *available_codecs()]


def create_bank(
    path: str | os.PathLike | None,
    backend: str = "hdf5-packed",
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> MaskBank:
    """Create an empty, writable mask bank (mode ``"w"``).

    Parameters
    ----------
    path : path-like or None
        The file to create; ``None`` gives an in-memory bank (the ``"memory"`` backend,
        whatever ``backend`` says).
    backend : str
        A codec id (:func:`available_backends`), or ``"memory"`` with ``path=None``.
    metadata : dict, optional
        Producer metadata (JSON-serialisable), e.g. the base network's seed and architecture.
    overwrite : bool
        Replace an existing file (atomically, when the bank is closed).
    **options
        Codec options, e.g. ``csc_rows`` for ``"hdf5-sparse"``.

    Raises
    ------
    InvalidArgumentError
        The file exists and ``overwrite`` is false, the backend needs no path / a path, or an
        option the codec does not take.
    UnknownBackendError
        ``backend`` is not registered.
    """
    if metadata is not None:
        to_json(metadata, "metadata")  # refuse bad metadata before any file is created
    if path is None:
        if options:
            raise InvalidArgumentError("options", "no options for the in-memory bank", sorted(options))
        return _with_metadata(MemoryMaskBank(None, "w"), metadata)
    if backend == MEMORY:
        raise InvalidArgumentError("path", f"None for the non-persistent backend {backend!r}", repr(str(path)))
    if backend not in available_codecs():
        raise UnknownBackendError(backend, available_backends())
    cls = get_codec(backend)
    accepted = sorted(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = f"only {accepted}" if accepted else "no options"
        raise InvalidArgumentError("options", f"{allowed} for backend {backend!r}", unknown)
    codec = cls(**options)
    if Path(path).expanduser().exists() and not overwrite:
        raise InvalidArgumentError("path", "a file that does not exist yet (or overwrite=True)", str(path))
    # overwrite is checked again under the bank's writer lock: two creators racing never both win
    return _with_metadata(HDF5MaskBank(path, "w", codec=codec, overwrite=overwrite), metadata)


def _with_metadata(bank: MaskBank, metadata: dict[str, Any] | None) -> MaskBank:
    if metadata is not None:
        bank.set_metadata(metadata)
    return bank


def open_bank(path: str | os.PathLike, mode: str = "r") -> MaskBank:
    """Open an existing mask bank file with the codec that wrote it.

    ``mode`` is ``"r"`` (read-only) or ``"a"`` (append; changes are published on close).

    Raises
    ------
    BankFileNotFoundError
        ``path`` does not exist.
    StorageFormatError
        ``path`` is not HDF5, is truncated, is not a mask bank (e.g. a reservoir file), or was written
        by a codec not registered here.
    """
    if mode not in ("r", "a"):
        raise InvalidArgumentError("mode", "'r' or 'a' (create_bank() makes new banks)", repr(mode))
    with open_shared(path) as (f, _lock), h5_errors(path):
        backend = check_mask_bank(f, path)
    if backend not in available_codecs():
        raise StorageFormatError(path, f"was written by backend {backend!r}, which is not registered here")
    return HDF5MaskBank(path, mode)
