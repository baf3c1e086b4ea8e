"""The ``"hdf5-entropy"`` backend: each task range-coded with ``constriction``, exact, near ``n * H(p)``.

A task's flat pattern of ``n`` entries with ``k`` ones (density ``p = k / n``)
is stored as the ``uint32`` words of a range coder (``constriction.stream.queue``,
a maintained entropy coder from PyPI; nothing here codes bits by hand) under
the probability model that gives the shortest code, among:

- **static**: every entry is Bernoulli(``p``), so the code is ``n * H(p)`` bits
  plus at most a few words of coder flush (under 0.2 % of ``n * H(p)`` for a
  LeNet 300-100 mask at 2 % density, see ``benchmarks/results/entropy_storage.md``);
- **layers**: the entries of layer ``l`` are Bernoulli(``p_l = k_l / n_l``), its own
  density; never longer than static and shorter when layers differ (BNNet's two
  unit masks at 35 % and 53 %); layers with no ones or only ones cost nothing;
- **adaptive**: entry ``j`` of layer ``l`` is Bernoulli(``(c_j + a * p_l) / (N + a)``),
  where ``c_j`` counts the ones at entry ``j`` among the ``N`` tasks of the bank's
  *chain* stored before this one, and ``a`` is one of :data:`PRIOR_WEIGHTS`.
  When masks repeat what earlier masks did (checkpoints of one pruning run,
  tasks that share structure), this costs less than ``n * H(p)``.

The model is picked from the ideal code lengths (``-sum log2 P(x_j)``, computed
with NumPy); the counts ``k_l`` are stored whatever the model, so the shortest
ideal code wins.

**The chain.**  The tasks without their own ``layout`` attribute (those with the
bank's ``shared_layout``, :mod:`hopfield_masks.backends._hdf5`) form the chain, in
insertion order; the counts ``c_j`` are never written to the file (they would
cost ``log2(N)`` bits per entry), they are rebuilt by decoding the chain.  So
reading task ``i`` of the chain decodes the chain tasks before it once per open
bank; they are kept, packed (``n / 8`` bytes each), for later reads.  Deleting or
overwriting a chain task re-encodes every task stored after it (their contexts
changed), keeping their order.  Tasks of other layouts are always coded static.

Dataset ``/tasks/<task>``: ``uint32`` words, possibly none (all-zero, all-one and
empty masks need no code).  Attribute ``coding``: ``[model, k_1, ..., k_L]``
(``uint32``, or ``uint64`` when a count needs it); ``model`` is 0 for static, 1 for
layers, ``2 + i`` for the adaptive model with ``PRIOR_WEIGHTS[i]``.  Decoding checks
that the code yields exactly ``k_l`` ones in every layer and consumes every word,
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
_STATIC, _LAYERS, _ADAPTIVE = 0, 1, 2  # model codes; adaptive i is _ADAPTIVE + i
_WORD = np.dtype(np.uint32)


def _layer_bounds(layout: MaskLayout) -> np.ndarray:
    """Flat start of every layer and the end: int64 ``(L + 1,)``."""
    return np.array([0, *(part.stop for part in layout.slices().values())], dtype=np.int64)


def _layer_probabilities(layers: np.ndarray, ones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the entries of non-constant layers ``(m,)`` and their layer's density ``(m,)``.

    Entries of a layer with no ones or only ones are certain, so no model codes them.
    """
    sizes = np.diff(layers)
    coded_layer = (ones > 0) & (ones < sizes)  # (L,)
    where = np.concatenate([np.arange(a, b) for a, b, c in zip(layers[:-1], layers[1:], coded_layer) if c]
                           or [np.zeros(0, np.int64)])
    density = np.repeat(np.where(coded_layer, ones / np.maximum(sizes, 1), 0.0)[coded_layer], sizes[coded_layer])
    return where, density


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
        self._pending_layers: np.ndarray | None = None  # set by _put_task for _encode: the layer bounds
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
        self._pending_chain, self._pending_layers = joins, _layer_bounds(layout)
        try:
            super()._put_task(task, layout, flat, attrs_json)
        finally:
            self._pending_chain, self._pending_layers = False, None
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
        layers = self._pending_layers
        ones = np.array([flat[a:b].sum() for a, b in zip(layers[:-1], layers[1:])], dtype=np.int64)
        n_before = len(self._chain_bits) if self._pending_chain else 0
        model, words = self._best_code(flat, layers, ones, n_before)
        dtype = np.uint32 if ones.size == 0 or int(ones.max()) < 2**32 else np.uint64
        return words, {"coding": np.array([model, *ones.tolist()], dtype=dtype)}

    def _best_code(self, flat: np.ndarray, layers: np.ndarray, ones: np.ndarray, n_before: int):
        """The model (code) with the shortest ideal code for ``flat``, and the range coder's words for it."""
        total, length = int(ones.sum()), flat.shape[0]
        if total in (0, length):
            return _STATIC, np.zeros(0, dtype=_WORD)  # constant masks: the counts say everything
        options = {_STATIC: (slice(None), total / length)}
        coded, layer_prob = _layer_probabilities(layers, ones)
        options[_LAYERS] = (coded, layer_prob)
        for i, weight in enumerate(PRIOR_WEIGHTS if n_before else ()):
            options[_ADAPTIVE + i] = (coded, adaptive_probabilities(self._chain_counts[coded], n_before, layer_prob, weight))
        bits = {model: ideal_bits(flat[where], prob) for model, (where, prob) in options.items()}
        # the per-layer counts cost 32 bits each whatever the model, so the smallest ideal code wins
        model = min(bits, key=lambda m: (bits[m], m))
        where, prob = options[model]
        return model, self._code(flat[where], prob)

    @staticmethod
    def _code(flat: np.ndarray, prob: np.ndarray | float) -> np.ndarray:
        constriction = _constriction()
        encoder = constriction.stream.queue.RangeEncoder()
        if flat.size:
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
        layers = _layer_bounds(self._layout(ds))
        model, ones = self._coding(ds, layers)
        if ds.ndim != 1 or ds.dtype != _WORD:
            raise self._corrupt(ds, f"expected 1-D uint32 code words, found {ds.dtype} {ds.shape}")
        words = ds[()]
        total = int(ones.sum())
        if total in (0, length):
            if words.size:
                raise self._corrupt(ds, f"a constant mask has no code words, found {words.size}")
            return np.full(length, total == length, dtype=bool)
        flat = np.zeros(length, dtype=bool)
        coded, layer_prob = _layer_probabilities(layers, ones)
        if model == _STATIC:
            coded, prob = slice(None), total / length
        elif model == _LAYERS:
            prob = layer_prob
        elif not position:
            raise self._corrupt(ds, "the adaptive model needs earlier tasks of the chain, and there are none")
        else:
            prob = adaptive_probabilities(
                self._chain_counts[coded], position, layer_prob, PRIOR_WEIGHTS[model - _ADAPTIVE]
            )
        n_coded = length if isinstance(coded, slice) else coded.shape[0]
        flat[coded] = self._uncode(ds, words, n_coded, prob)
        if model != _STATIC:
            for (a, b), k in zip(zip(layers[:-1], layers[1:]), ones):
                if k == b - a:  # a full layer is not coded under these models (its entries are certain)
                    flat[a:b] = True
        got = np.array([flat[a:b].sum() for a, b in zip(layers[:-1], layers[1:])], dtype=np.int64)
        if not np.array_equal(got, ones):
            raise self._corrupt(ds, f"the code decodes to {got.tolist()} ones per layer, expected {ones.tolist()}")
        return flat

    def _uncode(self, ds: h5py.Dataset, words: np.ndarray, n: int, prob: np.ndarray | float) -> np.ndarray:
        constriction = _constriction()
        if n == 0:
            if words.size:
                raise self._corrupt(ds, f"nothing is coded, found {words.size} code words")
            return np.zeros(0, dtype=bool)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            if isinstance(prob, float):
                symbols = decoder.decode(constriction.stream.model.Bernoulli(prob, perfect=False), n)
            else:
                symbols = decoder.decode(constriction.stream.model.Bernoulli(perfect=False), prob)
        except (ValueError, RuntimeError, AssertionError) as exc:  # the coder refuses an invalid stream
            raise self._corrupt(ds, f"the range coder cannot decode it ({exc})") from None
        if not decoder.maybe_exhausted():
            raise self._corrupt(ds, "code words are left over after the last entry")
        return np.asarray(symbols) != 0

    def _coding(self, ds: h5py.Dataset, layers: np.ndarray) -> tuple[int, np.ndarray]:
        """The ``coding`` attribute ``[model, k_1, ..., k_L]``, checked against the task's layers."""
        coding = ds.attrs.get("coding")
        n_layers = len(layers) - 1
        if (not isinstance(coding, np.ndarray) or coding.shape != (n_layers + 1,)
                or coding.dtype not in (np.uint32, np.uint64)):
            found = "none" if coding is None else f"{getattr(coding, 'dtype', type(coding).__name__)} {np.shape(coding)}"
            raise self._corrupt(
                ds, f"expected a uint32/uint64 [model, ones per layer] 'coding' attribute of {n_layers + 1} "
                f"entries, found {found}"
            )
        model, ones = int(coding[0]), coding[1:].astype(np.int64)
        sizes = np.diff(layers)
        if model >= _ADAPTIVE + len(PRIOR_WEIGHTS) or np.any(ones > sizes):
            raise self._corrupt(
                ds, f"'coding' {coding.tolist()} does not fit layers of {sizes.tolist()} entries "
                f"and {_ADAPTIVE + len(PRIOR_WEIGHTS)} models"
            )
        return model, ones

    def _extra_nbytes(self, ds: h5py.Dataset) -> int:
        # the counts and the model choice are mask data too, even though they live in an attribute
        return int(ds.attrs.get_id("coding").get_storage_size()) if "coding" in ds.attrs else 0

    # ------------------------------------------------------------------ public extras
    def task_model(self, task: str) -> str:
        """``"static"``, ``"layers"`` or ``"adaptive"``: the probability model the task was coded with."""
        ds = self._dataset(self._check_task(task))
        model, _ = self._coding(ds, _layer_bounds(self._layout(ds)))
        return {_STATIC: "static", _LAYERS: "layers"}.get(model, "adaptive")

    def _close(self, commit: bool) -> None:
        self._reset_chain()
        super()._close(commit)
