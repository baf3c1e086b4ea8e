"""Codecs: how a mask bank stores one task (:class:`MaskCodec`, two methods: ``encode`` and ``decode``).

- ``"hdf5-packed"`` (:class:`PackedCodec`) -- 1 bit per entry, the default;
- ``"hdf5-sparse"`` (:class:`SparseCodec`) -- CSC of the kept entries, 16-bit row indices;
- ``"hdf5-entropy"`` (:class:`EntropyCodec`) -- range-coded, near ``n * H(p)`` bits (below it
  for predictable masks).

The id is recorded in the bank as its ``backend`` attribute, so
:func:`hopfield_masks.backends.open_bank` finds the codec of any bank.
:func:`register_codec` adds a codec of your own.
"""

from __future__ import annotations

from ..errors import RegistryError, UnknownBackendError
from .base import CodecError, CodingContext, Encoded, MaskCodec, Stored
from .entropy import EntropyCodec
from .packed import PackedCodec
from .sparse import SparseCodec

__all__ = [
    "MaskCodec", "Encoded", "Stored", "CodingContext", "CodecError", "PackedCodec", "SparseCodec", "EntropyCodec",
    "register_codec", "get_codec", "available_codecs",
]

_CODECS: dict[str, type[MaskCodec]] = {}


def register_codec(cls: type[MaskCodec]) -> type[MaskCodec]:
    """Register a :class:`MaskCodec` subclass under its ``codec_id`` (usable as a class decorator).

    Raises
    ------
    RegistryError
        ``cls`` is not a MaskCodec subclass, has no ``codec_id``, or the id is taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, MaskCodec)):
        raise RegistryError(f"codec: expected a MaskCodec subclass, received {cls!r}")
    codec_id = getattr(cls, "codec_id", "")
    if not isinstance(codec_id, str) or not codec_id or codec_id == "memory":
        raise RegistryError(f"codec: expected a non-empty string codec_id other than 'memory' on {cls.__name__}, "
                            f"received {codec_id!r}")
    if codec_id in _CODECS:
        raise RegistryError(f"codec: expected a new codec id, received {codec_id!r} (already registered by "
                            f"{_CODECS[codec_id].__name__})")
    _CODECS[codec_id] = cls
    return cls


def get_codec(codec_id: str) -> type[MaskCodec]:
    """The codec class registered under ``codec_id``; :class:`UnknownBackendError` lists the known ids."""
    try:
        return _CODECS[codec_id]
    except (KeyError, TypeError):
        raise UnknownBackendError(codec_id, available_codecs()) from None


def available_codecs() -> list[str]:
    """Registered codec ids, in registration order."""
    return list(_CODECS)


for _cls in (PackedCodec, SparseCodec, EntropyCodec):
    register_codec(_cls)
del _cls
