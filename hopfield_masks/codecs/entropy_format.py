"""The parts of the ``hdf5-entropy`` format that are numbers and bytes: model codes, counts, byte codes.

:mod:`hopfield_masks.codecs.entropy` describes the format and does the coding (the coder's own
constants are in :mod:`hopfield_masks.codecs._rans_kernels`); this module holds what a reader of
the file has to agree on bit for bit:

- the model codes (``coding[0]``) and :data:`PRIOR_WEIGHTS`;
- the ``coding`` attribute of versions 3 and 4, one mixed-radix number (:func:`pack_coding`);
- the version-3 byte code of a task (:func:`_shortest_code`), given to the range
  decoder as whole big-endian words (:func:`_words_of`).

Examples
--------
>>> layout = MaskLayout(("unit1", "unit2"), ((2048,), (2048,)))
>>> coding = pack_coding(layout, _LAYERS, [930, 1026])
>>> coding.tolist(), unpack_coding(layout, coding)
([105, 236, 64, 1], (1, [930, 1026]))
"""

from __future__ import annotations

import math

import numpy as np

from ..blocks import MaskLayout

__all__ = ["PRIOR_WEIGHTS", "coding_nbytes", "pack_coding", "unpack_coding"]

#: Pseudo-count weights ``a`` of the layer density in the adaptive models; part of the format.
PRIOR_WEIGHTS = (0.5, 2.0, 8.0, 32.0)
# model codes: static, layers, rows + i (adaptive over the rows of each layer), chain + i (over the chain)
_STATIC, _LAYERS, _ROWS = 0, 1, 2
_CHAIN = _ROWS + len(PRIOR_WEIGHTS)
_N_MODELS = _CHAIN + len(PRIOR_WEIGHTS)
_WORD = np.dtype(np.uint32)  # format versions 1 and 2: the coder's words as stored
_BYTE = np.dtype(np.uint8)  # format version 3: the shortest byte string that decodes exactly
_BYTES_VERSION = 3  # first mask-bank format_version whose task datasets are byte strings
_RANS_VERSION = 4  # first mask-bank format_version whose tasks are rANS codes (no constriction)
_COUNT_DTYPES = (np.uint16, np.uint32, np.uint64)


def _coding_radices(layout: MaskLayout) -> list[int]:
    """Radices of the ``coding`` number (versions 3 and 4): the model, then ``n_l + 1`` per layer."""
    return [_N_MODELS, *(math.prod(shape) + 1 for shape in layout.shapes)]


def coding_nbytes(layout: MaskLayout) -> int:
    """Bytes of the ``coding`` attribute (versions 3 and 4) for ``layout``: enough for every model and every count.

    Examples
    --------
    >>> coding_nbytes(MaskLayout(("unit1", "unit2"), ((2048,), (2048,))))    # 10 * 2049 ** 2 < 2 ** 32
    4
    """
    return max(1, -(-(math.prod(_coding_radices(layout)) - 1).bit_length() // 8))


def pack_coding(layout: MaskLayout, model: int, ones: list[int]) -> np.ndarray:
    """The ``coding`` attribute (versions 3 and 4): ``[model, k_1, ..., k_L]`` as one mixed-radix number,
    little-endian bytes.

    ``value = model + M * (k_1 + (n_1 + 1) * (k_2 + (n_2 + 1) * ...))`` with ``M`` the number of models, so
    the attribute costs ``log2(M * prod(n_l + 1))`` bits rounded up to a byte (4 bytes for BNNet's
    ``2 x 2048`` unit masks, 6 for LeNet 300-100, where one unsigned integer per count took 6 and 8 or 16).

    Examples
    --------
    >>> layout = MaskLayout(("a", "b"), ((3,), (2, 2)))
    >>> pack_coding(layout, 1, [2, 4]).tolist(), unpack_coding(layout, pack_coding(layout, 1, [2, 4]))
    ([181], (1, [2, 4]))
    """
    value = 0
    for digit, radix in zip(reversed([model, *ones]), reversed(_coding_radices(layout))):
        value = value * radix + int(digit)
    return np.frombuffer(value.to_bytes(coding_nbytes(layout), "little"), dtype=_BYTE).copy()


def unpack_coding(layout: MaskLayout, coding: np.ndarray) -> tuple[int, list[int]]:
    """``(model, [k_1, ..., k_L])`` of a ``coding`` attribute (versions 3 and 4); ValueError if it is out of range."""
    value = int.from_bytes(np.asarray(coding, dtype=_BYTE).tobytes(), "little")
    radices = _coding_radices(layout)
    if value >= math.prod(radices):
        raise ValueError(f"holds {value}, beyond {_N_MODELS} models and layers of "
                         f"{[r - 1 for r in radices[1:]]} entries")
    digits = []
    for radix in radices:
        value, digit = divmod(value, radix)
        digits.append(digit)
    return digits[0], digits[1:]


def _words_of(code: bytes) -> np.ndarray:
    """The decoder's ``uint32`` words of a byte code: zero bytes appended to a whole word, big-endian.

    Examples
    --------
    >>> _words_of(bytes([1, 2, 3, 4, 5])).tolist() == [0x01020304, 0x05000000]
    True
    """
    padded = code + bytes(-len(code) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(_WORD)


def _shortest_code(words: np.ndarray, decodes_exactly, ideal: float) -> np.ndarray:
    """The shortest byte string that, followed by zero bytes, decodes like the coder's ``words`` (format version 3).

    The range coder ends its output with a whole word; the decoder reads zeros after the end of its
    input.  ``words`` as big-endian bytes, with their trailing zero bytes dropped, is ``S``.  A byte
    string of ``L < len(S)`` bytes that decodes to the same mask must be ``S[:L]`` rounded *up* in its
    last byte (``int(S[:L]) + 1``: rounding down falls below the coder's final interval, since
    ``S`` is the lowest word-aligned point in it), and if ``L`` bytes work, ``L + 1`` do.  So the
    search tries ``L`` from the ideal length ``ceil(ideal / 8)`` down (or up) and stops at the first
    change; each candidate is checked by decoding it (``decodes_exactly``), and so is ``S`` when
    nothing shorter decodes.  Typically 2 or 3 decodes; the code is then within about a byte of
    ``ideal`` bits.
    """
    full = words.astype(">u4").tobytes().rstrip(b"\0")

    def candidate(size: int) -> bytes | None:
        value = int.from_bytes(full[:size], "big") + 1
        if value >> (8 * size):  # the prefix is all 0xff bytes (or empty): no rounding up
            return None
        code = value.to_bytes(size, "big").rstrip(b"\0")
        return code if decodes_exactly(code) else None

    best = None
    size = min(max(math.ceil(ideal / 8), 0), len(full) - 1)
    if size >= 0:
        found = candidate(size)
        if found is not None:  # shorten while it decodes
            best = found
            while size > 0 and (found := candidate(size - 1)) is not None:
                best, size = found, size - 1
        else:  # lengthen until it decodes (the first success is the shortest)
            while best is None and size + 1 < len(full):
                size += 1
                best = candidate(size)
    if best is None:
        if not decodes_exactly(full):  # an internal invariant: the range coder decodes its own output
            raise RuntimeError("hdf5-entropy: the range coder's output does not decode to the mask it encoded")
        best = full
    return np.frombuffer(best, dtype=_BYTE).copy()
