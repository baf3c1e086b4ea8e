"""The codec contract: how one task's flat mask becomes stored arrays, and back.

A mask bank file (:class:`~hopfield_masks.backends.hdf5.HDF5MaskBank`) is the same
whatever the encoding: a root, ``/tasks/<task>`` datasets in insertion order, checksums,
the journal and the locks.  What varies is how a task's flat ``bool`` pattern is
turned into the task dataset's content and a few attributes -- a :class:`MaskCodec`,
with two methods:

- :meth:`MaskCodec.encode` ``(flat, layout, context) -> Encoded`` -- the dataset's
  array and the attributes that go with it;
- :meth:`MaskCodec.decode` ``(stored, layout, context) -> flat`` -- the inverse, given
  a :class:`Stored` view whose array was already read (its declared size checked
  against the file and a ceiling, its CRC-32 verified) and whose attributes are read
  only through :meth:`Stored.attr`, which checks their declared shape first.

A decoder treats what it is given as untrusted: anything inconsistent raises
:class:`CodecError` with the reason (the bank adds the file and the dataset), and the
work it does is bounded by the stored bytes and the layout, never by a number read
from the file.

Options (``csc_rows`` for the sparse codec) are fixed when a bank is created and
stored as root attributes: :meth:`MaskCodec.options` gives them, the codec's
constructor takes them back.  A codec with ``uses_history`` codes a task against the
earlier tasks of the bank that share its layout (the bank's *chain*):
:class:`CodingContext` then carries, per entry, how many of those tasks have a one
there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..blocks import MaskLayout

__all__ = ["MaskCodec", "Encoded", "Stored", "CodingContext", "CodecError"]


class CodecError(Exception):
    """Stored data a codec cannot decode; ``reason`` says why (the bank turns it into a StorageFormatError)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Encoded:
    """What :meth:`MaskCodec.encode` returns: the task dataset's 1-D array and its extra attributes."""

    data: np.ndarray
    attrs: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class CodingContext:
    """What a codec may know besides the task itself.

    Attributes
    ----------
    version : int
        The bank's ``format_version`` (a codec may read older encodings).
    history : numpy.ndarray or None
        ``uses_history`` codecs, for a task of the chain: int64 ``(n,)``, the ones per entry over
        the ``n_before`` chain tasks stored before it; ``None`` otherwise.
    n_before : int
        Chain tasks before this one (0 when ``history`` is None).
    """

    version: int
    history: np.ndarray | None = None
    n_before: int = 0


class Stored:
    """A stored task as a decoder sees it: the dataset's content and checked access to its attributes.

    ``data`` was read after the dataset's declared size was checked against the file's bytes and the
    per-array ceiling, and its CRC-32 verified.  ``attrs`` maps attribute names to objects with
    ``shape``/``dtype`` and a ``read()`` method (h5py attribute ids, or arrays in memory).
    """

    def __init__(self, data: np.ndarray, attrs: Mapping[str, Any], dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.data = data
        self._attrs = attrs
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)

    def has(self, name: str) -> bool:
        """Whether attribute ``name`` is stored."""
        return name in self._attrs

    def attr(self, name: str, shape: tuple[int, ...], kinds: str = "u") -> np.ndarray:
        """Attribute ``name``, refused (CodecError) unless it exists with ``shape`` and a dtype of ``kinds``
        (numpy kind letters), both checked before its value is read."""
        if name not in self._attrs:
            raise CodecError(f"the {name!r} attribute is missing")
        spec = self._attrs[name]
        got_shape, got_dtype = tuple(spec.shape), np.dtype(spec.dtype)
        if got_shape != tuple(shape) or got_dtype.kind not in kinds:
            raise CodecError(f"expected a {name!r} attribute of shape {tuple(shape)} ({kinds!r} kind), "
                             f"found {got_dtype} {got_shape}")
        return np.asarray(spec.read())


class MaskCodec(ABC):
    """How a bank stores one task (module docstring).

    Attributes
    ----------
    codec_id : str
        The id recorded as the bank's ``backend`` attribute (``"hdf5-packed"``...).
    write_version : int
        The ``format_version`` a new bank gets (appends keep the bank's own version).
    uses_history : bool
        Whether tasks are coded against the earlier tasks of the chain.
    """

    codec_id: ClassVar[str] = ""
    write_version: ClassVar[int] = 2
    uses_history: ClassVar[bool] = False

    def options(self) -> dict[str, int]:
        """The options recorded as root attributes of a new bank (none by default)."""
        return {}

    @classmethod
    def from_options(cls, stored: Mapping[str, Any], where: str) -> MaskCodec:
        """The codec of a bank whose root attributes are ``stored`` (``where`` names the file in errors)."""
        return cls()

    @abstractmethod
    def encode(self, flat: np.ndarray, layout: MaskLayout, context: CodingContext) -> Encoded:
        """Encode the task's flat bool pattern ``(layout.length,)``."""

    @abstractmethod
    def decode(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> np.ndarray:
        """The flat bool pattern ``(layout.length,)`` of a stored task; :class:`CodecError` when inconsistent."""

    def describe(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> dict[str, Any]:
        """What ``info`` shows about one stored task's encoding (JSON-safe; nothing by default)."""
        return {}
