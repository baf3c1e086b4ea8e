"""``hdf5-entropy``: each task entropy-coded (rANS, in Numba), exact, near ``n * H(p)`` or below it.

A task's flat pattern of ``n`` entries (layers raveled in C order, in layout order), with ``k_l``
ones among the ``n_l`` entries of layer ``l`` and ``k`` in all, is coded under the probability model
that gives the shortest code, among:

- **static** (model 0): every entry is 1 with probability ``p = k / n``;
- **layers** (model 1): the entries of layer ``l`` with ``p_l = k_l / n_l``, its own density (BNNet's
  two unit masks at 35 % and 53 %); layers with no ones or only ones cost nothing;
- **rows** (model ``2 + i``): a layer as a matrix of ``R`` rows (its first axis, a weight's output
  units; 1 for a 0-d layer) and ``C = n_l / R`` columns, coded 8 rows at a time: the entries of column
  ``j`` in rows ``8b .. 8b + 7`` have probability ``(c + a p_l) / (8b + a)``, ``c`` the ones of column
  ``j`` in the rows above.  Top-k masks keep the weights of informative inputs, so their columns differ
  in density: this finds it with no side information (2-3 % below ``n * H(p)``);
- **chain** (model ``6 + i``): entry ``j`` of layer ``l`` has probability ``(c_j + a p_l) / (N + a)``, where
  ``c_j`` counts the ones at entry ``j`` among the ``N`` tasks of the bank's *chain* stored before this one.
  When masks repeat what earlier masks did (checkpoints of one pruning run, tasks that share
  structure), this costs far less than ``n * H(p)`` (the padding of its batches, below, keeps it from
  paying off on layers of a few hundred entries).

``a = PRIOR_WEIGHTS[i]`` = (0.5, 2, 8, 32).  The model is picked per task from estimated code lengths
(:func:`~._rans_kernels.model_costs`); the counts ``k_l`` are stored whatever the model.

**The chain.**  The tasks without their own ``layout`` attribute (those with the bank's
``shared_layout``, :mod:`hopfield_masks.backends.hdf5`) form the chain, in insertion order; the counts
``c_j`` are never written to the file, they are rebuilt by decoding the chain.  So reading task ``i``
of the chain decodes the chain tasks before it once per open bank; they are kept, packed (``n / 8``
bytes each), for later reads.  Deleting or overwriting a chain task re-encodes every task stored
after it (their contexts changed), keeping their order.  Tasks of other layouts never use the chain.

**Format version 4** (banks created now; no optional package needed).  Attribute ``coding``: ``uint8``,
``[model, k_1, ..., k_L]`` as one little-endian mixed-radix number of
:func:`~.entropy_format.coding_nbytes` bytes (:func:`~.entropy_format.pack_coding`, as in version 3:
4 bytes for BNNet's unit masks, 6 for LeNet 300-100).  Dataset ``/tasks/<task>``: ``uint8``, the code.

*Probabilities.*  Each is an IEEE float64 computed from exact integers with the operations in the order
written: ``p = k / n``, ``p_l = k_l / n_l``, ``t = a * p_l``; rows ``(c + t) / (8b + a)``, chain
``(c + t) / (N + a)``.  A probability ``q`` is coded through its *level*: with ``u = min(q, 1 - q)``,
level 0 if ``u = 1/2``; otherwise ``u = f * 2**e`` with ``f`` in ``[1/2, 1)`` (C's ``frexp``) and the level is
``1 + 32 * (-1 - e) + 31 - floor(64 * (f - 1/2))`` for ``e >= -24``, 768 below (769 levels).  When
``q > 1/2`` the entries are *inverted*: coded as ``1 - x``.  Level ``l >= 1`` stands for
``r = (65 + 2 m) * 2**(e - 7)`` (``e`` and ``m = floor(64 * (f - 1/2))`` of its bucket: the bucket's middle),
level 0 for ``r = 1/2``; the loss from coding ``q`` as ``r`` is below 0.02 % of ``n * H(p)``.

*Tables* (fixed, the same for every task).  For level ``l`` and byte symbol ``s`` (0..255) with ``j``
one bits: ``P = 1.0`` multiplied ``j`` times by ``r``, then ``8 - j`` times by ``1 - r`` (float64, in that
order); frequency ``f_s = max(1, floor(P * 2**24))``; then ``f_0`` gets ``2**24 - sum(f)`` added, and
``cum_s = f_0 + ... + f_(s-1)``.  Bit symbol: ``f_1 = max(1, floor(r * 2**24))``, ``f_0 = 2**24 - f_1``,
``cum = [0, f_0]``.

*Symbols*, in decoding order.  A byte symbol is 8 entries, the first in its most significant bit; a
bit symbol is one entry; inverted entries are complemented first.

- static (if ``0 < k < n``): the ``n`` entries in order, ``n // 8`` bytes then ``n % 8`` bits, at the level of ``p``;
- layers: each layer with ``0 < k_l < n_l``, in order: ``n_l // 8`` bytes then ``n_l % 8`` bits, level of ``p_l``;
- rows: each such layer; if ``R < 2`` as for layers; otherwise for ``b = 0 .. R // 8 - 1`` and each column
  ``j``: the byte of rows ``8b .. 8b + 7`` of column ``j`` (row ``8b`` first), level of ``(c + t) / (8b + a)``,
  ``c`` the ones of column ``j`` in rows ``< 8b``; then for each remaining row ``r`` (``R % 8`` of them) and
  each column ``j``: a bit, level of ``(c + t) / (r + a)``, ``c`` the ones of column ``j`` in rows ``< r``;
- chain: each such layer, its entries ``j = 0 .. n_l - 1`` in order, each in the *class* of its count ``c_j``
  (and, in layers of ``2**14`` entries or more, of its parity ``j % 2`` too: two classes per count, so a
  decoder follows two independent streams).  A class's entries form *batches* of ``B`` entries in order,
  ``B = 32`` (4 byte symbols) in layers of ``2**14`` entries or more, ``B = 8`` (1 byte symbol) in smaller
  ones; where an entry is the first of a new batch of its class, the batch's symbols come, at the level
  of ``(c + t) / (N + a)``.  A class's last batch is padded with coded zeros (the decoder checks them).

*rANS decoding.*  The state ``x`` is an integer below ``2**63``.  The code's first
``h = (len - 1) % 3 + 1`` bytes are a big-endian number (its first byte is not 0), the rest big-endian
24-bit words.  Start with ``x`` = that number, then twice: if ``x < 2**39`` and a word is left,
``x = x * 2**24 + word``.  Each symbol: ``slot = x % 2**24``; ``s`` is the symbol with
``cum_s <= slot < cum_s + f_s``; ``x = f_s * (x // 2**24) + slot - cum_s``; then if ``x < 2**39`` and a word
is left, ``x = x * 2**24 + word``.  After the last symbol ``x`` must be 1, with every byte read.  (The
encoder runs backwards from ``x = 1``: for each symbol, last first, if ``x >= f_s * 2**39`` it emits
``x % 2**24`` as a word and sets ``x = x // 2**24``; then ``x = (x // f_s) * 2**24 + x % f_s + cum_s``.  At the
end it emits words of ``x`` while ``x >= 2**24``, then ``x`` in 1 to 3 bytes; the code is all of that in
reverse.)  Starting at 1 rather than at ``2**39`` (39 bits the code would carry) costs about 2 bytes
while the state is small: codes are 2 to 4 bytes longer than the ideal ``-sum log2 (f_s / 2**24)``.

*Checks.*  A task with no symbols has an empty code; otherwise the code decodes to exactly ``k_l`` ones
in every layer, the chain's padding to zeros, and ends in state 1 with every byte read, so a truncated
or altered code is reported as damaged (CRC-32 checksums, :mod:`hopfield_masks.safety.integrity`, catch
the rest).  Decoding runs in compiled code in time linear in the layout's entries, with memory of the
output (1 byte per entry) plus, for the rows model, 4 bytes per column of its widest layer (at most 2
bytes per entry) and, for the chain, 24 bytes per count; the code itself is read once.  The kernels
compile at their first use after installation (about 5 s for decoding, 5 s for encoding; Numba
caches them next to the module, about 4 MB with the tables compiled in).

**Format version 3** (read, and written when appending to such a bank, so a bank keeps one encoding).
The same models (rows updated at every row) coded entry by entry with ``constriction``'s range coder
(``constriction.stream.queue``, ``Bernoulli(p, perfect=False)``, 24-bit, 32-bit words, 64-bit state);
the dataset is the shortest byte string that, followed by zero bytes, decodes to exactly the task's
mask (:func:`~.entropy_format._shortest_code`: the coder's words as big-endian bytes, cut and rounded
up in their last byte), never ending in a zero byte; ``coding`` as in version 4.
**Versions 1 and 2**: the coder's ``uint32`` words as ``get_compressed()`` returns them, every word
consumed; ``coding`` is ``[model, k_1, ..., k_L]`` as ``uint16``, ``uint32`` or ``uint64`` (the narrowest
that holds them).  :mod:`._range_kernels` does that coder's arithmetic bit for bit, so these banks are
read and appended to without ``constriction``.

Examples
--------
>>> import os, tempfile, numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "bank.h5")
>>> rng = np.random.default_rng(0)
>>> first = rng.random(4000) < 0.3
>>> from hopfield_masks.backends import create_bank, open_bank
>>> with create_bank(path, "hdf5-entropy") as bank:
...     bank.write_task("0", {"fc": first})
...     bank.write_task("1", {"fc": first})           # a checkpoint that did not change
>>> with open_bank(path) as bank:
...     encoding = [bank.task_encoding(t)["model"] for t in ("0", "1")]
...     bool((bank.read_task("1")["fc"] == first).all()), encoding
(True, ['static', 'adaptive'])
>>> with open_bank(path) as bank:
...     bank.task_nbytes("0") < 4000 // 8, bank.task_nbytes("1") < bank.task_nbytes("0") // 2
(True, True)
>>> tmp.cleanup()
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..blocks import MaskLayout
from .base import CodecError, CodingContext, Encoded, MaskCodec, Stored
from .entropy_format import (
    _BYTE,
    _BYTES_VERSION,
    _CHAIN,
    _COUNT_DTYPES,
    _LAYERS,
    _N_MODELS,
    _RANS_VERSION,
    _ROWS,
    _STATIC,
    _WORD,
    PRIOR_WEIGHTS,
    _shortest_code,
    _words_of,
    coding_nbytes,
)

__all__ = ["EntropyCodec", "PRIOR_WEIGHTS", "ideal_bits", "adaptive_probabilities"]

_WEIGHTS = np.array(PRIOR_WEIGHTS, dtype=np.float64)
_KINDS = (0, 1, *([2] * len(PRIOR_WEIGHTS)), *([3] * len(PRIOR_WEIGHTS)))  # model code -> kind of model
_KIND_ARRAY = np.array(_KINDS, dtype=np.int64)
_NO_HISTORY = np.zeros(0, dtype=np.int64)
_NO_INT32 = np.zeros(0, dtype=np.int32)
_NO_INT64 = np.zeros(0, dtype=np.int64)
_KERNELS = None


def _rans():
    """The version-4 kernels (Numba loads here, at the first coding, not when the package is imported)."""
    global _KERNELS
    if _KERNELS is None:
        from . import _rans_kernels

        _KERNELS = _rans_kernels
    return _KERNELS


def _range():
    """The kernels of the range coder of versions 1 to 3."""
    from . import _range_kernels

    return _range_kernels


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """The coder's frequency tables of every level (``CUM``, ``BIT0``), built when the kernels are imported."""
    kernels = _rans()
    return kernels.CUM, kernels.BIT0


class _Geometry:
    """What the coder needs of a layout: per layer start, size and rows (``geom`` columns 0-2), scratch sizes,
    bounds on the symbols of any model, and the radices of the ``coding`` number."""

    __slots__ = ("geom", "sizes", "max_cols", "max_hist", "symbols", "radices", "limit", "coding_nbytes", "_scratch")

    def __init__(self, layout: MaskLayout) -> None:
        sizes = [math.prod(shape) for shape in layout.shapes]
        rows = [int(shape[0]) if len(shape) else 1 for shape in layout.shapes]
        starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)[:-1]]) if sizes else np.zeros(0)
        self.geom = np.zeros((len(sizes), 4), dtype=np.int64)
        self.geom[:, 0], self.geom[:, 1], self.geom[:, 2] = starts, sizes, rows
        self.sizes = sizes
        wide = [(size // r, r) for size, r in zip(sizes, rows) if r >= 2]  # layers the rows model codes by column
        self.max_cols = max((cols for cols, _ in wide), default=0)
        self.max_hist = max((min(cols, r + 1) for cols, r in wide), default=0)
        n = sum(sizes)
        runs = sum(size // 8 + size % 8 for size in sizes)
        by_rows = sum((r // 8 + r % 8) * (size // r) if r >= 2 else size // 8 + size % 8 for size, r in zip(sizes, rows))
        self.symbols = max(n // 8 + n % 8, runs, by_rows)  # static, layers, rows (the chain depends on its length)
        self.radices = [_N_MODELS, *(size + 1 for size in sizes)]
        self.limit = math.prod(self.radices)
        self.coding_nbytes = coding_nbytes(layout)
        self._scratch = None

    def scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Column counts (int32), a histogram of them (float64), the rows model's memo and the model costs: kept
        with the layout when small (a kernel holds the GIL while it uses them, so calls never share them)."""
        if self._scratch is not None:
            return self._scratch
        kernels = _rans()
        arrays = (np.empty(self.max_cols, np.int32), np.empty(self.max_hist, np.float64),
                  np.empty(2 * kernels.MEMO, np.int64), np.empty(_N_MODELS, np.float64))
        if self.max_cols <= 1 << 16:
            self._scratch = arrays
        return arrays

    def chain_symbols(self, n_before: int) -> int:
        return sum(4 * (size // 32 + min(size, 2 * (n_before + 1))) for size in self.sizes) if n_before else 0

    def pack(self, model: int, ones: list[int]) -> np.ndarray:
        """:func:`~.entropy_format.pack_coding` with this layout's radices."""
        value = 0
        for digit, radix in zip(reversed([model, *ones]), reversed(self.radices)):
            value = value * radix + digit
        return np.frombuffer(value.to_bytes(self.coding_nbytes, "little"), dtype=_BYTE).copy()

    def unpack(self, coding: np.ndarray) -> tuple[int, np.ndarray]:
        """:func:`~.entropy_format.unpack_coding` with this layout's radices: the model and a copy of ``geom`` with
        the ones per layer in column 3; CodecError when out of range."""
        value = int.from_bytes(coding.tobytes(), "little")
        if value >= self.limit:
            raise CodecError(f"'coding' holds {value}, beyond {_N_MODELS} models and layers of "
                             f"{self.sizes} entries")
        value, model = divmod(value, _N_MODELS)
        geom = self.geom.copy()
        for layer, radix in enumerate(self.radices[1:]):
            value, geom[layer, 3] = divmod(value, radix)
        return model, geom


@functools.lru_cache(maxsize=64)
def _geometry(layout: MaskLayout) -> _Geometry:
    return _Geometry(layout)


def _model_name(model: int) -> str:
    return {_STATIC: "static", _LAYERS: "layers"}.get(model, "rows" if model < _CHAIN else "adaptive")


def _weight(model: int) -> float:
    return float(PRIOR_WEIGHTS[(model - _ROWS) % len(PRIOR_WEIGHTS)]) if model >= _ROWS else 0.0


# ---------------------------------------------------------------------------------------------- the codec
class EntropyCodec(MaskCodec):
    """Each task entropy-coded under the model with the shortest code (module docstring)."""

    codec_id = "hdf5-entropy"
    write_version = _RANS_VERSION
    uses_history = True

    # ------------------------------------------------------------------ encoding
    def encode(self, flat: np.ndarray, layout: MaskLayout, context: CodingContext) -> Encoded:
        shape = _geometry(layout)
        x = np.ascontiguousarray(flat, dtype=bool).view(np.uint8)
        geom = shape.geom.copy()
        if context.version < _RANS_VERSION:
            geom[:, 3] = [int(np.count_nonzero(x[a:a + n])) for a, n in zip(geom[:, 0].tolist(), shape.sizes)]
            return _legacy_encode(x, layout, geom, context)
        history, n_before = _history(context, layout.length)
        kernels = _rans()
        bound = max(shape.symbols, shape.chain_symbols(n_before))
        out = np.empty(3 * bound + 9, dtype=np.uint8)
        colcount, hist, memo, costs = shape.scratch()
        model, start = kernels.encode_best(x, geom, history, n_before, _WEIGHTS, _KIND_ARRAY, *_tables(), colcount,
                                           hist, memo, np.empty(8 * (n_before + 1), np.int64), costs,
                                           np.empty(bound, np.uint8), np.empty(bound, np.int16), out)
        if start < 0:
            raise ValueError(f"hdf5-entropy: the chain's counts are outside [0, {n_before}] (a bank bug)")
        return Encoded(out[start:].copy(), {"coding": shape.pack(model, geom[:, 3].tolist())})

    # ------------------------------------------------------------------ decoding
    def decode(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> np.ndarray:
        shape = _geometry(layout)
        model, geom = _coding(stored, layout, context.version, shape)
        if context.version < _RANS_VERSION:
            return _legacy_decode(stored, layout, context, model, geom, shape)
        if len(stored.shape) != 1 or stored.dtype != _BYTE:
            raise CodecError(f"expected 1-D uint8 code bytes (format_version {context.version}), "
                             f"found {stored.dtype} {stored.shape}")
        code = np.ascontiguousarray(stored.data, dtype=np.uint8)
        kind = _KINDS[model]
        history, n_before = _NO_HISTORY, 0
        kernels = _rans()
        colcount, memo, chain = _NO_INT32, _NO_INT64, _NO_INT64
        if kind == kernels.KIND_CHAIN:
            if not context.n_before:
                raise CodecError("the adaptive chain model needs earlier tasks of the chain, and there are none")
            history, n_before = _history(context, layout.length)
            chain = np.empty(3 * (n_before + 1), np.int64)
        elif kind == kernels.KIND_ROWS:
            colcount, _, memo, _ = shape.scratch()
        flat = np.empty(layout.length, dtype=bool)
        status = kernels.decode_task(code, kind, _weight(model), geom, history, n_before, colcount, memo, chain,
                                     np.empty(2, np.int64), flat.view(np.uint8))
        if status != kernels.OK:
            raise CodecError(_rans_failure(status, code, flat, geom))
        return flat

    def describe(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> dict[str, str]:
        """``{"model": "static" | "layers" | "rows" | "adaptive"}``: the model the task was coded with."""
        model, _ = _coding(stored, layout, context.version, _geometry(layout))
        return {"model": _model_name(model)}


def _history(context: CodingContext, length: int) -> tuple[np.ndarray, int]:
    """The chain counts as the kernels take them: int64 ``(length,)``, or an empty array when there are none."""
    if context.history is None or not context.n_before:
        return _NO_HISTORY, 0
    history = np.ascontiguousarray(context.history, dtype=np.int64)
    if history.shape != (length,):
        raise ValueError(f"hdf5-entropy: chain counts of shape {history.shape} for {length} entries (a bank bug)")
    return history, int(context.n_before)


def _rans_failure(status: int, code: np.ndarray, flat: np.ndarray, geom: np.ndarray) -> str:
    """The one-line reason for a version-4 decoding status."""
    kernels = _rans()
    if status == kernels.ERR_START:
        if not code.size:
            return "the code is empty, but the task has entries to decode (a truncated code)"
        if code[0] == 0:
            return "the code starts with a zero byte (a writer never stores one)"
        return f"a constant mask has no code bytes, found {code.size}"
    if status == kernels.ERR_COUNTS:
        got = [int(np.count_nonzero(flat[a:a + n])) for a, n in zip(geom[:, 0].tolist(), geom[:, 1].tolist())]
        return f"the code decodes to {got} ones per layer, expected {geom[:, 3].tolist()} (a damaged code)"
    if status == kernels.ERR_PADDING:
        return "the code decodes to ones in the padding of a chain count's last batch (a damaged code)"
    if status == kernels.ERR_HISTORY:
        return "the chain's counts are outside their range (a bank bug)"
    return "the range coder cannot decode it: it does not end in its initial state with every byte read " \
           "(a truncated or altered code)"


def _coding(stored: Stored, layout: MaskLayout, version: int, shape: _Geometry) -> tuple[int, np.ndarray]:
    """The model, and ``geom`` with the ones per layer from the ``coding`` attribute, checked against the layers."""
    if version >= _BYTES_VERSION:
        coding = stored.attr("coding", (shape.coding_nbytes,), "u")
        if coding.dtype != _BYTE:
            raise CodecError(f"expected a uint8 'coding' attribute (model and ones per layer), found {coding.dtype}")
        return shape.unpack(coding)
    n_layers = len(layout.shapes)
    coding = stored.attr("coding", (n_layers + 1,), "u")
    if coding.dtype not in _COUNT_DTYPES:
        raise CodecError(f"expected an unsigned [model, ones per layer] 'coding' attribute, found {coding.dtype}")
    model, ones = int(coding[0]), [int(k) for k in coding[1:]]
    if model >= _N_MODELS or any(k > size for k, size in zip(ones, shape.sizes)):
        raise CodecError(f"'coding' {coding.tolist()} does not fit layers of {shape.sizes} entries and "
                         f"{_N_MODELS} models")
    geom = shape.geom.copy()
    geom[:, 3] = ones
    return model, geom


# ---------------------------------------------------------------------------------------------- versions 1-3
def ideal_bits(flat: np.ndarray, prob_one: np.ndarray | float) -> float:
    """``-sum_j log2 P(x_j)``: the code length an ideal coder reaches for ``flat`` under ``prob_one``.

    Examples
    --------
    >>> round(ideal_bits(np.array([1, 0, 0, 0], bool), 0.25), 4)   # 4 * H(0.25)
    3.2451
    """
    if np.ndim(prob_one) == 0:  # one probability: closed form from the count of ones
        p, k = float(prob_one), int(np.count_nonzero(flat))
        return -(k * math.log2(p) if k else 0.0) - ((flat.size - k) * math.log2(1.0 - p) if flat.size - k else 0.0)
    p = np.asarray(prob_one, dtype=np.float64)
    return float(-np.log2(np.where(flat, p, 1.0 - p)).sum())


def adaptive_probabilities(counts: np.ndarray, n_before: int | np.ndarray, density, weight: float) -> np.ndarray:
    """``P(1) = (c + a * p) / (N + a)`` as versions 1 to 3 compute it: float64, bit-identical for encoder and decoder.

    Examples
    --------
    >>> adaptive_probabilities(np.array([0, 2]), 2, 0.5, 2.0).tolist()
    [0.25, 0.75]
    """
    return (counts.astype(np.float64) + weight * density) / (np.asarray(n_before, dtype=np.float64) + weight)


def _rows_bits(column_ones: np.ndarray, layer: _Layer, weight: float) -> float:
    """Ideal length of a layer under the rows model (versions 1-3), in closed form (a column's order is irrelevant).

    Coding column ``j`` row by row with ``(c + a p) / (r + a)`` is a Polya urn with pseudo-counts
    ``a p`` and ``a (1 - p)``: the sequence's probability is ``B(k + a p, R - k + a (1 - p)) / B(a p, a (1 - p))``.
    """
    from scipy.special import gammaln

    one, zero = weight * float(layer.density), weight * (1.0 - float(layer.density))
    k = column_ones.astype(np.float64)
    rows = float(layer.rows)
    log_p = (gammaln(k + one) - gammaln(one) + gammaln(rows - k + zero) - gammaln(zero)
             - gammaln(rows + weight) + gammaln(weight))
    return float(-log_p.sum() / math.log(2.0))


def _chain_bits(x: np.ndarray, counts: np.ndarray, n_before: int, density: float, weight: float) -> float:
    """Ideal length of a layer under the chain model (versions 1-3), from histograms of the counts."""
    ones = np.bincount(counts[x], minlength=n_before + 1)  # (N + 1,) entries with c_j = c that are 1
    zeros = np.bincount(counts[~x], minlength=n_before + 1)
    q = adaptive_probabilities(np.arange(n_before + 1), n_before, density, weight)  # P(1) for each count
    with np.errstate(divide="ignore"):
        log_one, log_zero = np.log2(q), np.log2(1.0 - q)
    return float(-(ones[ones > 0] * log_one[ones > 0]).sum() - (zeros[zeros > 0] * log_zero[zeros > 0]).sum())


class _Layer:
    """One layer of a task as the version 1-3 model choice sees it: flat bounds, matrix view, ones, density."""

    __slots__ = ("start", "stop", "rows", "cols", "ones", "density")

    def __init__(self, start: int, shape: tuple[int, ...], ones: int) -> None:
        size = math.prod(shape)
        self.start, self.stop, self.ones = start, start + size, ones
        self.rows = int(shape[0]) if len(shape) else 1  # rows: the first axis (a weight's output units)
        self.cols = size // self.rows if self.rows else 0
        self.density = np.float64(ones) / np.float64(size) if size else np.float64(0.0)

    @property
    def coded(self) -> bool:
        """Whether the layer needs a code (it has both zeros and ones)."""
        return 0 < self.ones < self.stop - self.start


def _row_probabilities(x: np.ndarray, layer: _Layer, weight: float) -> np.ndarray:
    """Per-entry ``P(1)`` of the version 1-3 rows model for a layer's matrix ``x`` ``(rows, cols)``, flattened."""
    above = np.cumsum(x, axis=0, dtype=np.int64) - x  # (rows, cols)
    r = np.arange(layer.rows, dtype=np.int64)[:, None]  # (rows, 1)
    return adaptive_probabilities(above, r, layer.density, weight).ravel()


def _legacy_model(flat: np.ndarray, layout: MaskLayout, geom: np.ndarray, context: CodingContext) -> tuple[int, float]:
    """The version 1-3 model with the shortest ideal code (ties: the simpler model) and its length."""
    layers = [_Layer(int(start), shape, int(k)) for (start, _, _, k), shape in zip(geom.tolist(), layout.shapes)]
    total, length = int(geom[:, 3].sum()), flat.shape[0]
    if total in (0, length):
        return _STATIC, 0.0
    coded = [layer for layer in layers if layer.coded]
    bits = {_STATIC: ideal_bits(flat, np.float64(total) / np.float64(length)),
            _LAYERS: sum(ideal_bits(flat[q.start:q.stop], q.density) for q in coded)}
    column_ones = [flat[q.start:q.stop].reshape(q.rows, q.cols).sum(axis=0) for q in coded]
    for i, weight in enumerate(PRIOR_WEIGHTS):
        bits[_ROWS + i] = sum(_rows_bits(k, q, weight) for q, k in zip(coded, column_ones))
    if context.n_before and context.history is not None:
        for i, weight in enumerate(PRIOR_WEIGHTS):
            bits[_CHAIN + i] = sum(_chain_bits(flat[q.start:q.stop], context.history[q.start:q.stop],
                                               context.n_before, q.density, weight) for q in coded)
    model = min(bits, key=lambda m: (bits[m], m))
    return model, bits[model]


def _legacy_encode(x: np.ndarray, layout: MaskLayout, geom: np.ndarray, context: CodingContext) -> Encoded:
    """A task in the encoding of format versions 1 to 3 (appending to such a bank keeps its encoding)."""
    flat = x.view(bool)
    model, ideal = _legacy_model(flat, layout, geom, context)
    ones = geom[:, 3].tolist()
    history, n_before = _history(context, layout.length)
    kind, weight = _KINDS[model], _weight(model)
    total = sum(ones)
    coded = total not in (0, layout.length)
    words = np.empty(layout.length + 4 if coded else 0, dtype=np.uint32)
    scratch = np.empty(_geometry(layout).max_cols, np.int32)
    used = _range().encode_words(x, kind, weight, geom, history, n_before, scratch, words) if coded else 0
    words = words[:used]
    if context.version >= _BYTES_VERSION:
        code = np.zeros(0, dtype=_BYTE)
        if coded:
            def decodes_exactly(candidate: bytes) -> bool:
                got = _legacy_uncode(_words_of(candidate), kind, weight, geom, history, n_before, scratch)
                return got is not None and np.array_equal(got[0], flat)

            code = _shortest_code(words, decodes_exactly, ideal)
        return Encoded(code, {"coding": _geometry(layout).pack(model, ones)})
    top = max([model, *ones])
    dtype = next(d for d in _COUNT_DTYPES if top <= np.iinfo(d).max)  # the narrowest that holds the counts
    return Encoded(words.astype(_WORD), {"coding": np.array([model, *ones], dtype=dtype)})


def _legacy_uncode(words: np.ndarray, kind: int, weight: float, geom: np.ndarray, history: np.ndarray,
                   n_before: int, scratch: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """Run the version 1-3 range decoder over every coded entry: ``(flat, every word consumed)``, None if invalid."""
    kernels = _range()
    flat = np.empty(int(geom[:, 1].sum()), dtype=bool)
    status, exhausted = kernels.decode_words(np.ascontiguousarray(words, dtype=np.uint32), kind, weight, geom,
                                             history, n_before, scratch, flat.view(np.uint8))
    return None if status != kernels.OK else (flat, bool(exhausted))


def _legacy_decode(stored: Stored, layout: MaskLayout, context: CodingContext, model: int, geom: np.ndarray,
                   shape: _Geometry) -> np.ndarray:
    by_bytes = context.version >= _BYTES_VERSION
    unit, what = (_BYTE, "code bytes") if by_bytes else (_WORD, "code words")
    if len(stored.shape) != 1 or stored.dtype != unit:
        raise CodecError(f"expected 1-D {unit} {what} (format_version {context.version}), "
                         f"found {stored.dtype} {stored.shape}")
    code = stored.data
    ones = geom[:, 3].tolist()
    total = sum(ones)
    if total in (0, layout.length):
        if code.size:
            raise CodecError(f"a constant mask has no {what}, found {code.size}")
        flat = np.empty(layout.length, dtype=bool)
        for start, size, _, k in geom.tolist():
            flat[start:start + size] = k > 0
        return flat
    if model >= _CHAIN and not context.n_before:
        raise CodecError("the adaptive chain model needs earlier tasks of the chain, and there are none")
    if by_bytes and code.size and code[-1] == 0:
        raise CodecError("the code ends in a zero byte (zero bytes after the code are implied, a writer never "
                         "stores them)")
    history, n_before = _history(context, layout.length) if model >= _CHAIN else (_NO_HISTORY, 0)
    words = _words_of(code.tobytes()) if by_bytes else code
    scratch = np.empty(shape.max_cols if _KINDS[model] == 2 else 0, np.int32)
    got = _legacy_uncode(words, _KINDS[model], _weight(model), geom, history, n_before, scratch)
    if got is None:
        raise CodecError("the range coder cannot decode it (not a code of this model)")
    flat, exhausted = got
    if not by_bytes and not exhausted:
        raise CodecError("code words are left over after the last entry")
    counts = [int(np.count_nonzero(flat[a:a + n])) for a, n in zip(geom[:, 0].tolist(), geom[:, 1].tolist())]
    if counts != ones:
        raise CodecError(f"the code decodes to {counts} ones per layer, expected {ones}")
    return flat
