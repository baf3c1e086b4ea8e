"""Learning ±1 couplings as ±1: clipped perceptron learning with stochastic reinforcement (SBPI).

Each mask unit's row of couplings is a binary perceptron: its inputs are the task's key units and
the other mask units of its block, its target the unit's own bit of the task's mask.  Rows are
independent, so they are learnt in parallel and the couplings need not be symmetric.  A row keeps a
*hidden state* per coupling, a small odd integer ``h`` with ``|h| <= bound``; the coupling is
``sign(h)``.  For every stored task, in a shuffled order each epoch (Baldassi, Braunstein, Brunel and
Zecchina, PNAS 2007):

- a pattern whose field has the wrong sign, or a margin at most ``kappa``, moves every hidden state
  of its inputs by ``2 y x_j`` (the perceptron step, applied to the hidden states);
- a pattern that is right by at most ``theta`` more than its margin ("barely right") moves, with
  probability ``reinforce``, only the hidden states that already agree with it (which changes no
  coupling, but makes the agreeing ones harder to flip later).

With keys, every row meets two constraints per task: the field of the key alone has the target's
sign (so the first step of keyed recall already lands on the mask), and so does the whole field of
key and mask units (so the mask is a fixed point of the dynamics).  Without keys only the second
applies: an auto-associative memory whose margin ``kappa_full`` buys basins of attraction.

What a write needs beyond the kept bits: the stored patterns as int8 spins (and packed), and the
hidden states, 2 bytes per coupling (int16), of one *chunk* of rows at a time (:func:`fit_chunk_rows`):
rows are independent, so they are learnt chunk after chunk and only the chunk's hidden states exist
at once (about a 64th of the rows, never fewer than 2,048), which keeps the write's memory a small
fraction of the couplings' instead of 16 times them.  A reservoir can grow without its bank: its
stored masks are recalled from their keys, and learning starts again from the present couplings
(hidden states ``±1``), so rows that already meet every constraint stop after one epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidArgumentError
from ..safety.integrity import max_array_bytes
from ..validate import check_float, check_int

__all__ = ["PerceptronRule", "FitResult", "fit_couplings", "recall_couplings", "pack_spins", "unpack_spins",
           "fit_chunk_rows", "WORD_BITS"]

#: Spins per packed word: key and block lengths are multiples of it.
WORD_BITS = 64
#: The reinforcement probability is compared with the top 53 bits of each row's generator state.
REINFORCE_BITS = 53
#: The largest hidden-state bound (hidden states are int16).
MAX_BOUND = 2**15 - 1
#: Rows are learnt in chunks of about 1/CHUNKS of them (their hidden states exist one chunk at a time) ...
CHUNKS = 64
#: ... of at least this many rows (enough to keep every thread busy between chunks).
MIN_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class PerceptronRule:
    """Settings of the ±1 learning rule, validated at construction.

    Parameters
    ----------
    kappa_key : int
        Margin of the key's field: ``y * field_key > kappa_key`` for every stored task.
    kappa_full : int
        Margin of the whole field (key and mask units).  A positive margin buys basins of attraction.
    theta : int
        Width of the "barely right" window above each margin.
    reinforce : float or None
        Probability of a reinforcement step in that window; ``None``: 0.5 with keys, 0.3 without.
    bound : int
        Largest ``|h|`` of a hidden state (odd; at most 32,767).
    max_epochs : int
        Epochs a row runs before it gives up (a row over its capacity keeps its last couplings).
    seed : int
        Seeds the first hidden states and every row's generator.

    Examples
    --------
    >>> PerceptronRule().reinforcement(key_units=64), PerceptronRule().reinforcement(key_units=0)
    (0.5, 0.3)
    >>> PerceptronRule(bound=400)
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: bound: expected an odd integer in 1..32,767, received 400
    """

    rule_id: ClassVar[str] = "perceptron"
    #: Tasks per key unit that the rule stores exactly within ``max_epochs`` (measured on random keys and masks).
    KEYED_LOAD: ClassVar[float] = 0.55
    #: Patterns per unit without keys (measured the same way).
    AUTO_LOAD: ClassVar[float] = 0.6

    kappa_key: int = 0
    kappa_full: int = 0
    theta: int = 2
    reinforce: float | None = None
    bound: int = 401
    max_epochs: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("kappa_key", self.kappa_key, low=0, high=MAX_BOUND)
        check_int("kappa_full", self.kappa_full, low=0, high=MAX_BOUND)
        check_int("theta", self.theta, low=0, high=MAX_BOUND)
        if self.reinforce is not None:
            check_float("reinforce", self.reinforce, low=0.0, high=1.0)
        bound = check_int("bound", self.bound, low=1, high=MAX_BOUND)
        if bound % 2 == 0:
            raise InvalidArgumentError("bound", f"an odd integer in 1..{MAX_BOUND:,}", bound)
        check_int("max_epochs", self.max_epochs, low=1, high=1_000_000)
        check_int("seed", self.seed, low=0, high=2**63 - 1)

    def reinforcement(self, key_units: int) -> float:
        """The reinforcement probability used for a network with ``key_units`` key units."""
        if self.reinforce is not None:
            return float(self.reinforce)
        return 0.5 if key_units else 0.3

    def capacity(self, key_units: int, mask_units: int) -> float:
        """Tasks the rule stores exactly: ``KEYED_LOAD * K`` with keys, ``AUTO_LOAD * M`` without."""
        return self.KEYED_LOAD * key_units if key_units else self.AUTO_LOAD * mask_units

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields and ``"id"``."""
        return {"id": self.rule_id, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> PerceptronRule:
        """Rebuild from :meth:`to_dict` (unknown keys or another id are refused)."""
        if not isinstance(data, dict) or data.get("id") != cls.rule_id:
            raise InvalidArgumentError("rule", f"a mapping with id {cls.rule_id!r}", repr(data)[:200])
        fields = {k: v for k, v in data.items() if k != "id"}
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidArgumentError("rule", f"fields among {sorted(cls.__dataclass_fields__)}", unknown)
        return cls(**fields)


@dataclass
class FitResult:
    """What :func:`fit_couplings` learnt.

    ``couplings`` (B, M, (K+M)/64) uint64 packed rows; ``epochs`` (B, M) int64 epochs each row ran;
    ``converged`` (B, M) bool: the row met every constraint; ``hidden`` (B, M, K+M) int16 final hidden
    states, only when asked for (``keep_hidden=True``: 16 times the couplings' bytes), else None.
    """

    couplings: np.ndarray
    hidden: np.ndarray | None
    epochs: np.ndarray
    converged: np.ndarray

    @property
    def rows_unconverged(self) -> int:
        """Rows that did not meet every constraint within ``max_epochs``."""
        return int(self.converged.size - np.count_nonzero(self.converged))


def pack_spins(spins: np.ndarray) -> np.ndarray:
    """uint64 words of int8 ±1 spins (last axis, a multiple of 64 long; +1 is bit 1, little-endian)."""
    return np.packbits(np.ascontiguousarray(spins) > 0, axis=-1, bitorder="little").view(np.uint64)


def unpack_spins(words: np.ndarray, n: int | None = None) -> np.ndarray:
    """int8 ±1 spins of packed words (last axis), the first ``n`` of them (default: all); one byte per spin,
    no temporaries."""
    spins = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1, bitorder="little", count=n)
    spins = spins.view(np.int8)  # 0/1, the array unpackbits made
    spins *= 2
    spins -= 1
    return spins


def _check_spins(name: str, value: object, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim or arr.dtype != np.int8:
        raise InvalidArgumentError(name, f"an int8 array of {ndim} dimensions", f"{arr.dtype} of shape {arr.shape}")
    if arr.shape[-1] % WORD_BITS:
        raise InvalidArgumentError(name, f"a last axis that is a multiple of {WORD_BITS}", f"shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    flat = arr.reshape(-1)
    step = 1 << 20  # checked a megabyte at a time: no temporaries the size of the array
    for lo in range(0, flat.size, step):
        part = flat[lo:lo + step]
        if np.count_nonzero(part == 1) + np.count_nonzero(part == -1) != part.size:
            raise InvalidArgumentError(name, "spins in {-1, +1}", "other values")
    return arr


def _check_bytes(name: str, nbytes: int) -> None:
    if nbytes > max_array_bytes():
        raise InvalidArgumentError(name, f"arrays within the per-array ceiling of {max_array_bytes():,} B",
                                   f"{nbytes:,} B")


def fit_chunk_rows(n_blocks: int, m: int) -> int:
    """Rows of ``n_blocks`` blocks of ``m`` units that :func:`fit_couplings` learns per chunk (whole blocks):
    about ``1 / CHUNKS`` of them, at least ``MIN_CHUNK_ROWS`` (or all)."""
    rows = n_blocks * m
    want = max(MIN_CHUNK_ROWS, -(-rows // CHUNKS))
    return min(n_blocks, -(-want // m)) * m


def fit_couplings(keys: object, masks: object, rule: PerceptronRule | None = None, *,
                  start: object = None, keep_hidden: bool = False, chunk_rows: int | None = None) -> FitResult:
    """Learn the ±1 couplings of ``B`` blocks that store every task's mask under its key.

    Rows are learnt a chunk of blocks at a time (:func:`fit_chunk_rows`): only that chunk's int16
    hidden states exist at once.  Rows are independent and each has its own generator, and the first
    hidden states are drawn from one stream in row order whatever the chunks, so the result does not
    depend on the chunk size (nor on the number of threads).

    Parameters
    ----------
    keys : int8 array (T, K)
        Each task's key (``K`` a multiple of 64, possibly 0), shared by every block.
    masks : int8 array (T, B, M)
        Each task's mask spins, cut into ``B`` blocks of ``M`` units (a multiple of 64).
    rule : PerceptronRule, optional
    start : uint64 array (B, M, (K+M)/64), optional
        Couplings to start from (growth: every hidden state starts at ``±1`` with their signs);
        default: random signs drawn from ``rule.seed``.
    keep_hidden : bool
        Return every row's final hidden states in :attr:`FitResult.hidden` (16 times the couplings' bytes;
        for tests and inspection).
    chunk_rows : int, optional
        Rows per chunk (rounded up to whole blocks); default :func:`fit_chunk_rows`.

    Returns
    -------
    FitResult
    """
    rule = PerceptronRule() if rule is None else rule
    if not isinstance(rule, PerceptronRule):
        raise InvalidArgumentError("rule", "a PerceptronRule", type(rule).__name__)
    keys = _check_spins("keys", keys, 2)
    masks = _check_spins("masks", masks, 3)
    t, k_units = keys.shape
    _, n_blocks, m = masks.shape
    if masks.shape[0] != t or t == 0:
        raise InvalidArgumentError("masks", f"one row per task of keys ({t} tasks, at least 1)",
                                   f"{masks.shape[0]} rows")
    if m == 0 or n_blocks == 0:
        raise InvalidArgumentError("masks", "at least one block of at least 64 units", f"shape {masks.shape}")
    n_in = k_units + m
    words = n_in // WORD_BITS
    rows = n_blocks * m
    if chunk_rows is None:
        chunk_rows = fit_chunk_rows(n_blocks, m)
    chunk = max(1, min(n_blocks, -(-check_int("chunk_rows", chunk_rows, low=1) // m)))  # blocks per chunk
    _check_bytes("masks", rows * n_in * 2 if keep_hidden else chunk * m * n_in * 2)  # the hidden states
    _check_bytes("masks", chunk * m * t * 4)  # the chunk's visiting orders
    if start is not None:
        start = np.asarray(start)
        shape = (n_blocks, m, words)
        if start.dtype != np.uint64 or start.shape != shape:
            raise InvalidArgumentError("start", f"uint64 couplings of shape {shape}", f"{start.dtype} {start.shape}")
        start = np.ascontiguousarray(start)
    rng = np.random.default_rng(np.random.SeedSequence(rule.seed))
    signs = None
    if start is None:
        # The stream holds every row's first hidden states, then every row's generator state.  The states are
        # needed before the first chunk is learnt, so the signs are drawn (and dropped) a chunk at a time to
        # reach them, then drawn again, from a second generator on the same seed, as each chunk is learnt.
        # Chunks of whole rows draw an even number of int16 values each, which NumPy takes two per 32-bit
        # word with nothing left over: the same values as one draw of every row at once.
        signs = np.random.default_rng(np.random.SeedSequence(rule.seed))
        for b0 in range(0, n_blocks, chunk):
            rng.integers(0, 2, size=(min(chunk, n_blocks - b0), m, n_in), dtype=np.int16)
    states = rng.integers(1, 2**63, size=rows, dtype=np.int64).view(np.uint64)  # positive: the same bits
    states |= np.uint64(1)
    reinforce = np.uint64(round(rule.reinforcement(k_units) * 2**REINFORCE_BITS))
    couplings = np.empty((n_blocks, m, words), np.uint64)
    hidden_all = np.empty((n_blocks, m, n_in), np.int16) if keep_hidden else None
    epochs = np.zeros(rows, np.int64)
    key_bits = pack_spins(keys) if k_units else np.zeros((t, 0), np.uint64)
    mask_bits = pack_spins(masks)  # (T, B, M/64)
    from . import _kernels  # Numba loads at the first fit, not at import

    for b0 in range(0, n_blocks, chunk):
        b1 = min(n_blocks, b0 + chunk)
        if signs is not None:
            hidden = signs.integers(0, 2, size=(b1 - b0, m, n_in), dtype=np.int16)
            hidden *= 2
            hidden -= 1
        else:
            hidden = unpack_spins(start[b0:b1]).astype(np.int16)
        if hidden_all is not None:
            hidden_all[b0:b1] = hidden
            hidden = hidden_all[b0:b1]
        part = couplings[b0:b1]  # a contiguous view: the kernel writes the chunk's couplings in place
        part[...] = np.packbits(hidden > 0, axis=-1, bitorder="little").view(np.uint64)
        r0, r1 = b0 * m, b1 * m
        _kernels.fit_rows(key_bits, keys, np.ascontiguousarray(mask_bits[:, b0:b1]),
                          np.ascontiguousarray(masks[:, b0:b1]), hidden, part, states[r0:r1],
                          int(rule.kappa_key), int(rule.kappa_full), int(rule.theta), reinforce, int(rule.bound),
                          int(rule.max_epochs), np.empty((r1 - r0, t), np.int32), epochs[r0:r1])
        del hidden
    epochs = epochs.reshape(n_blocks, m)
    return FitResult(couplings=couplings, hidden=hidden_all, epochs=epochs, converged=epochs <= rule.max_epochs)


def recall_couplings(couplings: object, keys: object, *, start: object = None,
                     max_sweeps: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall with keys clamped: the mask units settle under the fields of the key and of each other.

    Parameters
    ----------
    couplings : uint64 array (B, M, (K+M)/64)
    keys : int8 array (Q, K)
        One key per query (``K`` may be 0 only with ``start``).
    start : int8 array (Q, B, M), optional
        Where the mask units start; default: the sign of the key's field.
    max_sweeps : int

    Returns
    -------
    states : int8 (Q, B, M)
    sweeps : int64 (Q,)
        The most sweeps any block ran.
    converged : bool (Q,)
        Every block reached a fixed point.
    """
    couplings = np.asarray(couplings)
    if couplings.ndim != 3 or couplings.dtype != np.uint64 or couplings.shape[1] % WORD_BITS:
        raise InvalidArgumentError("couplings", "uint64 words (B, M, (K+M)/64) with M a multiple of 64",
                                   f"{couplings.dtype} of shape {couplings.shape}")
    couplings = np.ascontiguousarray(couplings)
    n_blocks, m, words = couplings.shape
    keys = _check_spins("keys", keys, 2)
    q, k_units = keys.shape
    if k_units + m != words * WORD_BITS:
        raise InvalidArgumentError("keys", f"{words * WORD_BITS - m} key units per query", f"{k_units}")
    max_sweeps = check_int("max_sweeps", max_sweeps, low=1, high=1_000_000)
    _check_bytes("keys", q * n_blocks * m)
    if start is None:
        if k_units == 0:
            raise InvalidArgumentError("start", "start states for a network without key units", "None")
        start_bits = np.zeros((q, n_blocks, m // WORD_BITS), np.uint64)
    else:
        start = _check_spins("start", start, 3)
        if start.shape != (q, n_blocks, m):
            raise InvalidArgumentError("start", f"shape {(q, n_blocks, m)}", f"shape {start.shape}")
        start_bits = pack_spins(start)
    out = np.zeros((q, n_blocks, m // WORD_BITS), np.uint64)
    sweeps = np.zeros((q, n_blocks), np.int64)
    converged = np.zeros((q, n_blocks), bool)
    key_bits = pack_spins(keys) if k_units else np.zeros((q, 0), np.uint64)
    from . import _kernels

    _kernels.recall_rows(couplings, key_bits, start_bits, start is None, max_sweeps, out, sweeps, converged)
    return unpack_spins(out), sweeps.max(1, initial=0), converged.all(1)

