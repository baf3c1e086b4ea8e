"""The ``"hdf5-entropy"`` backend: each task range-coded with ``constriction``, exact, near ``n * H(p)``.

A task's flat pattern of ``n`` entries with ``k`` ones (density ``p = k / n``)
is stored as the ``uint32`` words of a range coder (``constriction.stream.queue``,
a maintained entropy coder from PyPI; nothing here codes bits by hand) under
one of two probability models, whichever gives the shorter code:

- **static**: every entry is Bernoulli(``p``), so the code is ``n * H(p)`` bits
  plus at most a few words of coder flush (under 0.2 % of ``n * H(p)`` for a
  LeNet 300-100 mask at 2 % density, see ``benchmarks/results/entropy_storage.md``);
- **adaptive**: entry ``j`` is Bernoulli(``(c_j + a * p) / (N + a)``), where
  ``c_j`` counts the ones at entry ``j`` among the ``N`` tasks of the bank's
  *chain* stored before this one, and ``a`` is one of :data:`PRIOR_WEIGHTS`.
  When masks repeat what earlier masks did (checkpoints of one pruning run,
  tasks that share structure), this costs less than ``n * H(p)``.

The model is picked from the ideal code lengths (``-sum log2 P(x_j)``, computed
with NumPy), so a task never costs more than the static model plus the
choice itself.

**The chain.**  The tasks without their own ``layout`` attribute (those with the
bank's ``shared_layout``, :mod:`hopfield_masks.backends._hdf5`) form the chain, in
insertion order; the counts ``c_j`` are never written to the file (they would
cost ``log2(N)`` bits per entry), they are rebuilt by decoding the chain.  So
reading task ``i`` of the chain decodes the chain tasks before it once per open
bank; they are kept, packed (``n / 8`` bytes each), for later reads.  Deleting or
overwriting a chain task re-encodes every task stored after it (their contexts
changed), keeping their order.  Tasks of other layouts are always coded static.

Dataset ``/tasks/<task>``: ``uint32`` words, possibly none (all-zero, all-one and
empty masks need no code).  Attribute ``coding``: ``uint64`` ``[k, model]``,
``model`` 0 for static, ``i + 1`` for the adaptive model with ``PRIOR_WEIGHTS[i]``.
Decoding checks that the code yields exactly ``k`` ones and consumes every word,
so a truncated or altered stream is reported as damaged.

Examples
--------
>>> import os, tempfile, numpy as np
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "bank.h5")
>>> rng = np.random.default_rng(0)
>>> first = rng.random(4000) < 0.3
>>> with HDF5EntropyBank(path, "w") as bank:
...     bank.write_task("0", {"fc": first})
...     bank.write_task("1", {"fc": first})           # a checkpoint that did not change
>>> with HDF5EntropyBank(path) as bank:
...     bool((bank.read_task("1")["fc"] == first).all()), bank.task_model("0"), bank.task_model("1")
(True, 'static', 'adaptive')
>>> with HDF5EntropyBank(path) as bank:
...     bank.task_nbytes("0") < 4000 // 8, bank.task_nbytes("1") < 100
(True, True)
>>> tmp.cleanup()
"""

from __future__ import annotations

import h5py
import numpy as np

from ..blocks import MaskLayout
from ..errors import HopfieldMasksError
from ..patterns import pack_bits, unpack_bits
from ._hdf5 import HDF5MaskBank

__all__ = ["HDF5EntropyBank", "MissingExtraError", "PRIOR_WEIGHTS", "ideal_bits", "adaptive_probabilities"]

#: Weights ``a`` of the task's own density in the adaptive model (pseudo-counts); part of the format.
PRIOR_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
_STATIC = 0
_WORD = np.dtype(np.uint32)


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
    p = np.broadcast_to(np.asarray(prob_one, dtype=np.float64), flat.shape)
    return float(-(np.log2(p[flat]).sum() + np.log2(1.0 - p[~flat]).sum()))


def adaptive_probabilities(counts: np.ndarray, n_before: int, density: float, weight: float) -> np.ndarray:
    """Per-entry ``P(1) = (c_j + a * p) / (N + a)``: float64 ``(n,)``, bit-identical for encoder and decoder.

    Examples
    --------
    >>> adaptive_probabilities(np.array([0, 2]), 2, 0.5, 2.0).tolist()
    [0.25, 0.75]
    """
    return (counts.astype(np.float64) + weight * density) / (n_before + weight)


class HDF5EntropyBank(HDF5MaskBank):
    """Mask bank storing each task range-coded (static or adaptive Bernoulli model) in an HDF5 file.

    See the module docstring for the models and the layout, and
    :class:`hopfield_masks.backends._hdf5.HDF5MaskBank` for the parameters.
    """

    backend_id = "hdf5-entropy"

    def __init__(self, *args, **kwargs) -> None:
        # chain state, valid for one open bank: decoded chain tasks (packed) and their summed ones
        self._chain_names: list[str] | None = None
        self._chain_bits: list[np.ndarray] = []  # packed masks of chain[0 : len(...)]
        self._chain_counts: np.ndarray | None = None  # (n,) int64, ones per entry over _chain_bits
        self._pending_chain = False  # set by _put_task for _encode: the task joins the chain
        _constriction()  # fail before any file is touched when the coder is missing
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ chain bookkeeping
    def _reset_chain(self) -> None:
        self._chain_names, self._chain_bits, self._chain_counts = None, [], None

    def _chain(self) -> list[str]:
        """Names of the chain tasks (no own ``layout`` attribute), in insertion order."""
        if self._chain_names is None:
            self._chain_names = [name for name in self._tasks if "layout" not in self._tasks[name].attrs]
        return self._chain_names

    def _decode_chain_until(self, position: int) -> None:
        """Decode chain tasks until the first ``position`` are known (their counts summed)."""
        chain = self._chain()
        while len(self._chain_bits) < position:
            name = chain[len(self._chain_bits)]
            ds = self._dataset(name)
            length = self._layout(ds).length
            flat = self._decode_with(ds, length, len(self._chain_bits))
            self._remember(flat)

    def _remember(self, flat: np.ndarray) -> None:
        """Append a decoded (or just written) chain task to the known prefix."""
        if self._chain_counts is None:
            self._chain_counts = np.zeros(flat.shape[0], dtype=np.int64)
        self._chain_counts += flat
        self._chain_bits.append(pack_bits(flat))

    # ------------------------------------------------------------------ primitives with chain effects
    def _put_task(self, task: str, layout: MaskLayout, flat: np.ndarray, attrs_json: str) -> None:
        if len(self._tasks) == 0:
            self._reset_chain()  # an empty bank may take a new shared layout: a new chain
        shared = self._shared_layout()
        joins = shared is None or len(self._tasks) == 0 or layout == shared  # what _share_layout will decide
        if joins:
            self._decode_chain_until(len(self._chain()))
        self._pending_chain = joins
        try:
            super()._put_task(task, layout, flat, attrs_json)
        finally:
            self._pending_chain = False
        if joins:
            self._chain().append(task)
            self._remember(flat)

    def _drop_task(self, task: str) -> None:
        names = self._task_names()
        chain = self._chain()
        later = names[names.index(task) + 1:]
        if task in chain and any(name in chain for name in later):
            # later chain tasks were coded against counts that included this task: decode, drop, re-code in order
            records = [(name, *self._get_task(name), self._task_record(name)[1]) for name in later]
            for name in (task, *later):
                super()._drop_task(name)
            self._reset_chain()
            for name, layout, flat, attrs_json in records:
                self._put_task(name, layout, flat, attrs_json)
            return
        super()._drop_task(task)
        if task in chain:  # the last chain task: the prefix before it is unchanged
            position = chain.index(task)
            del chain[position]
            if len(self._chain_bits) > position:
                self._chain_counts -= unpack_bits(self._chain_bits[position], self._chain_counts.shape[0])
                del self._chain_bits[position]

    # ------------------------------------------------------------------ encoding hooks
    def _encode(self, flat: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        length = flat.shape[0]
        ones = int(np.count_nonzero(flat))
        model, prob = _STATIC, None
        if 0 < ones < length:
            density = ones / length
            best = ideal_bits(flat, density)
            n_before = len(self._chain_bits) if self._pending_chain else 0
            if n_before:
                for i, weight in enumerate(PRIOR_WEIGHTS):
                    candidate = adaptive_probabilities(self._chain_counts, n_before, density, weight)
                    bits = ideal_bits(flat, candidate)
                    if bits < best:
                        model, prob, best = i + 1, candidate, bits
            words = self._code(flat, density if prob is None else prob)
        else:
            words = np.zeros(0, dtype=_WORD)  # constant masks: k says everything
        return words, {"coding": np.array([ones, model], dtype=np.uint64)}

    @staticmethod
    def _code(flat: np.ndarray, prob: np.ndarray | float) -> np.ndarray:
        constriction = _constriction()
        encoder = constriction.stream.queue.RangeEncoder()
        symbols = flat.astype(np.int32)  # (n,) 0/1
        if isinstance(prob, float):
            encoder.encode(symbols, constriction.stream.model.Bernoulli(prob, perfect=False))
        else:
            encoder.encode(symbols, constriction.stream.model.Bernoulli(perfect=False), prob)
        return np.asarray(encoder.get_compressed(), dtype=_WORD)

    def _decode(self, ds: h5py.Dataset, length: int) -> np.ndarray:
        name = ds.name.rsplit("/", 1)[-1]
        chain = self._chain()
        if name not in chain:
            return self._decode_with(ds, length, None)
        position = chain.index(name)
        if position < len(self._chain_bits):  # decoded (or written) earlier in this session
            return unpack_bits(self._chain_bits[position], length)
        self._decode_chain_until(position)
        flat = self._decode_with(ds, length, position)
        self._remember(flat)
        return flat

    def _decode_with(self, ds: h5py.Dataset, length: int, position: int | None) -> np.ndarray:
        """Decode one task dataset; ``position`` is its chain position (None: not in the chain)."""
        ones, model = self._coding(ds, length)
        if ds.ndim != 1 or ds.dtype != _WORD:
            raise self._corrupt(ds, f"expected 1-D uint32 code words, found {ds.dtype} {ds.shape}")
        words = ds[()]
        if ones in (0, length):
            if words.size:
                raise self._corrupt(ds, f"a constant mask has no code words, found {words.size}")
            return np.full(length, ones == length, dtype=bool)
        density = ones / length
        if model == _STATIC:
            prob: np.ndarray | float = density
        elif not position:
            raise self._corrupt(ds, "the adaptive model needs earlier tasks of the chain, and there are none")
        else:
            prob = adaptive_probabilities(self._chain_counts, position, density, PRIOR_WEIGHTS[model - 1])
        flat = self._uncode(ds, words, length, prob)
        if int(np.count_nonzero(flat)) != ones:
            raise self._corrupt(ds, f"the code decodes to {int(np.count_nonzero(flat))} ones, expected {ones}")
        return flat

    def _uncode(self, ds: h5py.Dataset, words: np.ndarray, length: int, prob: np.ndarray | float) -> np.ndarray:
        constriction = _constriction()
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            if isinstance(prob, float):
                symbols = decoder.decode(constriction.stream.model.Bernoulli(prob, perfect=False), length)
            else:
                symbols = decoder.decode(constriction.stream.model.Bernoulli(perfect=False), prob)
        except (ValueError, RuntimeError, AssertionError) as exc:  # the coder refuses an invalid stream
            raise self._corrupt(ds, f"the range coder cannot decode it ({exc})") from None
        if not decoder.maybe_exhausted():
            raise self._corrupt(ds, "code words are left over after the last entry")
        return np.asarray(symbols) != 0

    def _coding(self, ds: h5py.Dataset, length: int) -> tuple[int, int]:
        """The ``coding`` attribute ``[k, model]``, checked against the task's length."""
        coding = ds.attrs.get("coding")
        if not isinstance(coding, np.ndarray) or coding.shape != (2,) or coding.dtype != np.uint64:
            raise self._corrupt(ds, f"expected a uint64 [ones, model] 'coding' attribute, found {coding!r}")
        ones, model = int(coding[0]), int(coding[1])
        if ones > length or model > len(PRIOR_WEIGHTS):
            raise self._corrupt(
                ds, f"'coding' [{ones}, {model}] does not fit {length} entries and {len(PRIOR_WEIGHTS)} models"
            )
        return ones, model

    def _extra_nbytes(self, ds: h5py.Dataset) -> int:
        # k and the model choice are mask data too, even though they live in an attribute
        return int(ds.attrs.get_id("coding").get_storage_size()) if "coding" in ds.attrs else 0

    # ------------------------------------------------------------------ public extras
    def task_model(self, task: str) -> str:
        """``"static"`` or ``"adaptive"``: the probability model the task was coded with."""
        ds = self._dataset(self._check_task(task))
        _, model = self._coding(ds, self._layout(ds).length)
        return "static" if model == _STATIC else "adaptive"

    def _close(self, commit: bool) -> None:
        self._reset_chain()
        super()._close(commit)
