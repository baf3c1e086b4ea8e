"""``hdf5-packed``: one bit per mask entry (the default).

The task dataset holds the flat pattern (layers raveled in C order, concatenated in layout
order, :meth:`hopfield_masks.blocks.MaskLayout.flatten`) packed most significant bit first
(:func:`hopfield_masks.patterns.pack_bits`, the ``numpy.packbits`` default): ``uint8``
``(ceil(P / 8),)``, the last byte padded with zero bits.  Layers are not byte-aligned:
padding every layer would cost up to a byte per layer for nothing.

Its size does not depend on the mask's density: ``n / 8`` bytes plus about 170 bytes of
HDF5 metadata per task (:mod:`hopfield_masks.backends.hdf5` explains how that is kept small).

Examples
--------
>>> import numpy as np
>>> from hopfield_masks.blocks import MaskLayout
>>> layout = MaskLayout(("fc",), ((3, 3),))
>>> codec = PackedCodec()
>>> encoded = codec.encode(np.eye(3, dtype=bool).ravel(), layout, CodingContext(2))
>>> encoded.data.tolist()
[136, 128]
"""

from __future__ import annotations

import numpy as np

from ..blocks import MaskLayout
from ..patterns import pack_bits, packed_nbytes, unpack_bits
from .base import CodecError, CodingContext, Encoded, MaskCodec, Stored

__all__ = ["PackedCodec"]


class PackedCodec(MaskCodec):
    """One bit per entry, most significant bit first."""

    codec_id = "hdf5-packed"

    def encode(self, flat: np.ndarray, layout: MaskLayout, context: CodingContext) -> Encoded:
        return Encoded(pack_bits(flat))  # (ceil(P/8),) uint8

    def decode(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> np.ndarray:
        size = packed_nbytes(layout.length)
        if stored.dtype != np.uint8 or stored.shape != (size,):
            raise CodecError(f"expected {size} uint8 bytes for {layout.length} entries, found {stored.dtype} "
                             f"{stored.shape}")
        return unpack_bits(stored.data, layout.length)  # (P,) bool
