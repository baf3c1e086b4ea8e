"""``hdf5-entropy``: each task range-coded with ``constriction``, exact, near ``n * H(p)``.

A task's flat pattern of ``n`` entries with ``k`` ones (density ``p = k / n``)
is range-coded (``constriction.stream.queue``, a maintained entropy coder from
PyPI; nothing here codes bits by hand) under the probability model that gives
the shortest code, among:

- **static**: every entry is Bernoulli(``p``), so the code is ``n * H(p)`` bits
  plus about a byte (and the counts, below): within 1 % of ``n * H(p)`` for
  every task of ``benchmarks/results/entropy_storage.md``, BNNet's 4,096-entry
  unit masks included;
- **layers**: the entries of layer ``l`` are Bernoulli(``p_l = k_l / n_l``), its own
  density; never longer than static and shorter when layers differ (BNNet's two
  unit masks at 35 % and 53 %); layers with no ones or only ones cost nothing;
- **rows**: a layer is viewed as a matrix (rows = its first axis, a weight's output
  units) and coded row by row; entry ``(r, j)`` is Bernoulli(``(c_rj + a * p_l) / (r + a)``),
  ``c_rj`` the ones of column ``j`` in the rows above.  Top-k masks keep the weights of
  informative inputs, so their columns differ in density: this finds it with no side
  information (zstd finds some of it too, see the benchmark);
- **adaptive**: entry ``j`` of layer ``l`` is Bernoulli(``(c_j + a * p_l) / (N + a)``),
  where ``c_j`` counts the ones at entry ``j`` among the ``N`` tasks of the bank's
  *chain* stored before this one.  When masks repeat what earlier masks did
  (checkpoints of one pruning run, tasks that share structure), this costs less
  than ``n * H(p)``.

``a`` is one of :data:`PRIOR_WEIGHTS`.  The model (and ``a``) is picked per task
from the ideal code lengths (``-sum log2 P(x_j)``, computed with NumPy); the
counts ``k_l`` are stored whatever the model, so the shortest ideal code wins.

**The chain.**  The tasks without their own ``layout`` attribute (those with the
bank's ``shared_layout``, :mod:`hopfield_masks.backends.hdf5`) form the chain, in
insertion order; the counts ``c_j`` are never written to the file (they would
cost ``log2(N)`` bits per entry), they are rebuilt by decoding the chain.  So
reading task ``i`` of the chain decodes the chain tasks before it once per open
bank; they are kept, packed (``n / 8`` bytes each), for later reads.  Deleting or
overwriting a chain task re-encodes every task stored after it (their contexts
changed), keeping their order.  Tasks of other layouts never use the adaptive model.

**Format version 3** (banks created now).  Dataset ``/tasks/<task>``: ``uint8``, the
shortest byte string that, followed by zero bytes, decodes to exactly the task's
mask (:func:`~.entropy_format._shortest_code`: the coder's ``uint32`` words as big-endian bytes, cut
and rounded up in their last byte, each candidate checked by decoding it); possibly
empty, never ending in a zero byte.  The decoder is given it padded with zero bytes
to whole words.  Attribute ``coding``: :func:`~.entropy_format.pack_coding` -- ``[model, k_1, ..., k_L]``
as one mixed-radix number, little-endian ``uint8`` of :func:`~.entropy_format.coding_nbytes` bytes
(4 for BNNet's unit masks, 6 for LeNet 300-100).  (Versions 1 and 2 kept whole
words and one unsigned integer per count: up to 1.3 % beyond ``n * H(p)`` on BNNet's
508-byte masks.)

**Format versions 1 and 2** (read, and written when appending to such a bank, so a
bank keeps one encoding).  Dataset: the coder's ``uint32`` words as
``get_compressed()`` returns them; ``coding``: ``[model, k_1, ..., k_L]`` as an array of
``uint16``, ``uint32`` or ``uint64`` (the narrowest that holds them).

Both: ``model`` is 0 for static, 1 for layers, ``2 + i`` for rows and
``2 + len(PRIOR_WEIGHTS) + i`` for adaptive, with ``a = PRIOR_WEIGHTS[i]``; a constant
mask (and an empty one) has no code.  Decoding checks that the code yields exactly
``k_l`` ones in every layer (and, for words, consumes every word; for bytes, that
no zero byte ends it), so a truncated or altered stream is reported as damaged
(CRC-32 checksums, :mod:`hopfield_masks.safety.integrity`, catch the rest).

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

import math

import numpy as np

from ..blocks import MaskLayout
from ..errors import HopfieldMasksError
from .entropy_format import (
    _BYTE,
    _BYTES_VERSION,
    _CHAIN,
    _COUNT_DTYPES,
    _LAYERS,
    _N_MODELS,
    _ROWS,
    _STATIC,
    _WORD,
    PRIOR_WEIGHTS,
    _shortest_code,
    _words_of,
    coding_nbytes,
    pack_coding,
    unpack_coding,
)
from .base import CodecError, CodingContext, Encoded, MaskCodec, Stored

__all__ = ["EntropyCodec", "MissingExtraError", "PRIOR_WEIGHTS", "ideal_bits", "adaptive_probabilities"]

_CODER_ERRORS = (ValueError, RuntimeError, AssertionError, OverflowError)  # what constriction raises on bad input


class MissingExtraError(HopfieldMasksError, ImportError):
    """A backend needs an optional package that is not installed."""


def _constriction():
    """The ``constriction`` module, or a one-line error naming the package and the install command."""
    try:
        import constriction
    except ImportError:
        raise MissingExtraError(
            "backend 'hdf5-entropy': expected the 'constriction' package (pip install 'constriction>=0.4,<0.6'), "
            "received an import error (it is not installed)"
        ) from None
    return constriction


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
    """``P(1) = (c + a * p) / (N + a)``: float64, bit-identical for encoder and decoder.

    Examples
    --------
    >>> adaptive_probabilities(np.array([0, 2]), 2, 0.5, 2.0).tolist()
    [0.25, 0.75]
    """
    return (counts.astype(np.float64) + weight * density) / (np.asarray(n_before, dtype=np.float64) + weight)


def _rows_bits(column_ones: np.ndarray, layer: _Layer, weight: float) -> float:
    """Ideal length of a layer under the rows model, in closed form (the order of a column's entries is irrelevant).

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
    """Ideal length of a layer under the chain model, from histograms of the counts (no per-entry logarithm)."""
    ones = np.bincount(counts[x], minlength=n_before + 1)  # (N + 1,) entries with c_j = c that are 1
    zeros = np.bincount(counts[~x], minlength=n_before + 1)
    q = adaptive_probabilities(np.arange(n_before + 1), n_before, density, weight)  # P(1) for each count
    with np.errstate(divide="ignore"):
        log_one, log_zero = np.log2(q), np.log2(1.0 - q)
    return float(-(ones[ones > 0] * log_one[ones > 0]).sum() - (zeros[zeros > 0] * log_zero[zeros > 0]).sum())


class _Layer:
    """One layer of a task as the coder sees it: flat bounds, matrix view, ones, density."""

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


def _layers(layout: MaskLayout, ones: np.ndarray) -> list[_Layer]:
    starts = [part.start for part in layout.slices().values()]
    return [_Layer(start, shape, int(k)) for start, shape, k in zip(starts, layout.shapes, ones)]


def _row_probabilities(x: np.ndarray, layer: _Layer, weight: float) -> np.ndarray:
    """Per-entry ``P(1)`` of the rows model for a layer's matrix ``x`` ``(rows, cols)``, flattened.

    Row ``r`` of column ``j``: ``(c_rj + a * p) / (r + a)``, ``c_rj`` the ones in rows above.
    """
    above = np.cumsum(x, axis=0, dtype=np.int64) - x  # (rows, cols)
    r = np.arange(layer.rows, dtype=np.int64)[:, None]  # (rows, 1)
    return adaptive_probabilities(above, r, layer.density, weight).ravel()


class EntropyCodec(MaskCodec):
    """Each task range-coded under the model with the shortest code (module docstring)."""

    codec_id = "hdf5-entropy"
    write_version = _BYTES_VERSION
    uses_history = True

    def __init__(self) -> None:
        _constriction()  # fail before any file is touched when the coder is missing

    # ------------------------------------------------------------------ encoding
    def encode(self, flat: np.ndarray, layout: MaskLayout, context: CodingContext) -> Encoded:
        ones = np.array([int(np.count_nonzero(flat[part])) for part in layout.slices().values()], dtype=np.int64)
        layers = _layers(layout, ones)
        model, code = self._best_code(flat, layers, context)
        if context.version >= _BYTES_VERSION:
            return Encoded(code, {"coding": pack_coding(layout, model, ones.tolist())})
        top = max([model, *ones.tolist()])
        dtype = next(d for d in _COUNT_DTYPES if top <= np.iinfo(d).max)  # the narrowest that holds the counts
        return Encoded(code, {"coding": np.array([model, *ones.tolist()], dtype=dtype)})

    def _best_code(self, flat: np.ndarray, layers: list[_Layer], context: CodingContext) -> tuple[int, np.ndarray]:
        """The model with the shortest ideal code for ``flat`` and its code: bytes (version 3) or the coder's words."""
        length, total = flat.shape[0], sum(layer.ones for layer in layers)
        by_bytes = context.version >= _BYTES_VERSION
        n_before, counts = context.n_before, context.history
        if total in (0, length):  # constant masks: the counts say everything
            return _STATIC, np.zeros(0, dtype=_BYTE if by_bytes else _WORD)
        coded = [layer for layer in layers if layer.coded]
        p = np.float64(total) / np.float64(length)
        bits = {_STATIC: ideal_bits(flat, p),
                _LAYERS: sum(ideal_bits(flat[q.start:q.stop], q.density) for q in coded)}
        matrices = [flat[q.start:q.stop].reshape(q.rows, q.cols) for q in coded]
        column_ones = [x.sum(axis=0) for x in matrices]  # (cols,) per coded layer
        for i, weight in enumerate(PRIOR_WEIGHTS):
            bits[_ROWS + i] = sum(_rows_bits(k, q, weight) for q, k in zip(coded, column_ones))
        if n_before:
            for i, weight in enumerate(PRIOR_WEIGHTS):
                bits[_CHAIN + i] = sum(
                    _chain_bits(flat[q.start:q.stop], counts[q.start:q.stop], n_before, q.density, weight)
                    for q in coded
                )
        # the counts are stored whatever the model, so the shortest ideal code wins (ties: the simpler model)
        model = min(bits, key=lambda m: (bits[m], m))
        constriction = _constriction()
        encoder = constriction.stream.queue.RangeEncoder()
        family = constriction.stream.model.Bernoulli(perfect=False)
        if model == _STATIC:
            encoder.encode(flat.astype(np.int32), constriction.stream.model.Bernoulli(float(p), perfect=False))
        for q, x in zip(coded, matrices):
            symbols = x.ravel().astype(np.int32)
            if model == _LAYERS:
                encoder.encode(symbols, constriction.stream.model.Bernoulli(float(q.density), perfect=False))
            elif _ROWS <= model < _CHAIN:
                encoder.encode(symbols, family, _row_probabilities(x, q, PRIOR_WEIGHTS[model - _ROWS]))
            elif model >= _CHAIN:
                prob = adaptive_probabilities(counts[q.start:q.stop], n_before, q.density,
                                              PRIOR_WEIGHTS[model - _CHAIN])
                encoder.encode(symbols, family, prob)
        words = np.asarray(encoder.get_compressed(), dtype=_WORD)
        if not by_bytes:
            return model, words

        def decodes_exactly(code: bytes) -> bool:
            try:
                got = _uncode(_words_of(code), layers, model, length, context, exhaustive=False)
            except _CODER_ERRORS:
                return False
            return got is not None and np.array_equal(got, flat)

        return model, _shortest_code(words, decodes_exactly, bits[model])

    # ------------------------------------------------------------------ decoding
    def decode(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> np.ndarray:
        length = layout.length
        model, ones = _coding(stored, layout, context.version)
        by_bytes = context.version >= _BYTES_VERSION
        unit, what = (_BYTE, "code bytes") if by_bytes else (_WORD, "code words")
        if len(stored.shape) != 1 or stored.dtype != unit:
            raise CodecError(f"expected 1-D {unit} {what} (format_version {context.version}), "
                             f"found {stored.dtype} {stored.shape}")
        code = stored.data
        layers = _layers(layout, ones)
        total = int(ones.sum())
        if total in (0, length):
            if code.size:
                raise CodecError(f"a constant mask has no {what}, found {code.size}")
            return np.full(length, total == length, dtype=bool)
        if model >= _CHAIN and not context.n_before:
            raise CodecError("the adaptive chain model needs earlier tasks of the chain, and there are none")
        if by_bytes and code.size and code[-1] == 0:
            raise CodecError("the code ends in a zero byte (zero bytes after the code are implied, a writer never "
                             "stores them)")
        try:
            words = _words_of(code.tobytes()) if by_bytes else code
            flat = _uncode(words, layers, model, length, context, exhaustive=not by_bytes)
        except _CODER_ERRORS as exc:  # the coder refuses the stream
            raise CodecError(f"the range coder cannot decode it ({exc})") from None
        if flat is None:
            raise CodecError("code words are left over after the last entry")
        got = [int(np.count_nonzero(flat[q.start:q.stop])) for q in layers]
        if got != ones.tolist():
            raise CodecError(f"the code decodes to {got} ones per layer, expected {ones.tolist()}")
        return flat

    def describe(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> dict[str, str]:
        """``{"model": "static" | "layers" | "rows" | "adaptive"}``: the model the task was coded with."""
        model, _ = _coding(stored, layout, context.version)
        return {"model": {_STATIC: "static", _LAYERS: "layers"}.get(model, "rows" if model < _CHAIN else "adaptive")}


def _uncode(words: np.ndarray, layers: list[_Layer], model: int, length: int, context: CodingContext, *,
            exhaustive: bool) -> np.ndarray | None:
    """Run the range decoder over every coded layer, in the encoder's order.

    ``exhaustive`` (the coder's own words, versions 1 and 2): None if words are left over.  A byte code
    (version 3) ends inside the coder's last interval but not where the coder would end, so constriction
    cannot tell whether it was consumed; there the counts, the canonical end and the CRC-32 check it.
    """
    constriction = _constriction()
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Bernoulli(perfect=False)
    flat = np.zeros(length, dtype=bool)
    if model == _STATIC:
        p = np.float64(sum(q.ones for q in layers)) / np.float64(length)
        flat[:] = decoder.decode(constriction.stream.model.Bernoulli(float(p), perfect=False), length) != 0
    for q in layers:
        if not q.coded:
            if model != _STATIC:
                flat[q.start:q.stop] = q.ones > 0  # certain entries: all zeros or all ones
            continue
        if model == _LAYERS:
            bernoulli = constriction.stream.model.Bernoulli(float(q.density), perfect=False)
            flat[q.start:q.stop] = decoder.decode(bernoulli, q.stop - q.start) != 0
        elif _ROWS <= model < _CHAIN:
            weight = PRIOR_WEIGHTS[model - _ROWS]
            above = np.zeros(q.cols, dtype=np.int64)  # ones per column in the rows decoded so far
            for r in range(q.rows):
                row = decoder.decode(family, adaptive_probabilities(above, r, q.density, weight)) != 0
                flat[q.start + r * q.cols:q.start + (r + 1) * q.cols] = row
                above += row
        elif model >= _CHAIN:
            prob = adaptive_probabilities(context.history[q.start:q.stop], context.n_before, q.density,
                                          PRIOR_WEIGHTS[model - _CHAIN])
            flat[q.start:q.stop] = decoder.decode(family, prob) != 0
    return flat if not exhaustive or decoder.maybe_exhausted() else None


def _coding(stored: Stored, layout: MaskLayout, version: int) -> tuple[int, np.ndarray]:
    """The model and the ones per layer from the ``coding`` attribute, checked against the task's layers."""
    if version >= _BYTES_VERSION:
        coding = stored.attr("coding", (coding_nbytes(layout),), "u")
        if coding.dtype != _BYTE:
            raise CodecError(f"expected a uint8 'coding' attribute (model and ones per layer), found {coding.dtype}")
        try:
            model, ones = unpack_coding(layout, coding)
        except ValueError as exc:
            raise CodecError(f"'coding' {exc}") from None
        return model, np.array(ones, dtype=np.int64)
    n_layers = len(layout.shapes)
    coding = stored.attr("coding", (n_layers + 1,), "u")
    if coding.dtype not in _COUNT_DTYPES:
        raise CodecError(f"expected an unsigned [model, ones per layer] 'coding' attribute, found {coding.dtype}")
    model, ones = int(coding[0]), coding[1:].astype(np.int64)
    sizes = np.array([math.prod(shape) for shape in layout.shapes], dtype=np.int64)
    if model >= _N_MODELS or np.any(ones > sizes):
        raise CodecError(f"'coding' {coding.tolist()} does not fit layers of {sizes.tolist()} entries and "
                         f"{_N_MODELS} models")
    return model, ones
