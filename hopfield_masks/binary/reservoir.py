"""A reservoir of learned ±1 couplings: every stored bit is a coupling into a mask unit.

The flat ±1 mask state of ``P`` entries is cut into ``B`` blocks of ``M`` mask units (the last block
padded with copies of the first entries, as in :mod:`hopfield_masks.blocks`).  Every task has a key
of ``K`` ±1 units, regenerated from ``SeedSequence(key_seed, spawn_key=(t,))`` and shared by the
blocks.  Each mask unit of each block has one row of ``K + M`` couplings (from the key units and from
its block's mask units; its own is unused): ``B * M * (K + M)`` bits in all, every one counted in the
budget.  Key units are clamped during recall, so they have no rows of their own.

Recall of task ``t`` (:meth:`BinaryReservoir.recall_keyed`) clamps its key, starts every mask unit at
the sign of the key's field and lets the mask units settle under the fields of the key and of each
other (asynchronous sweeps).  The couplings are learnt by :mod:`hopfield_masks.binary.learning` so
that every stored mask is reached by the first step and is a fixed point.

>>> import numpy as np
>>> from hopfield_masks import MaskLayout
>>> layout = MaskLayout(("w",), ((256,),))
>>> res = BinaryReservoir(layout, key_units=128, block_size=64)
>>> masks = np.random.default_rng(0).random((20, 256)) < 0.5
>>> res.fit(np.where(masks, 1, -1).astype(np.int8)).rows_unconverged
0
>>> bool((res.recall_keyed().states == np.where(masks, 1, -1)).all()), res.nbytes
(True, 6144)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from ..blocks import BlockLayout, MaskLayout, join_blocks, split_blocks
from ..budget import parse_budget
from ..errors import BudgetError, InvalidArgumentError
from ..recall.dynamics import RecallResult
from ..reservoir_landscape import make_cue, seeded_keys
from ..reservoir_sizing import MAX_KEY_UNITS
from ..safety.files import atomic_path, open_h5_read
from ..safety.integrity import h5_errors, max_array_bytes, verify_tree
from ..validate import check_int
from .learning import WORD_BITS, FitResult, PerceptronRule, fit_chunk_rows, fit_couplings, recall_couplings

__all__ = ["BinaryReservoir", "binary_size_for_budget", "KIND"]

#: The ``kind`` attribute of a stored binary reservoir.
KIND = "binary-reservoir"
#: Block size used with keys: the smallest, so the budget goes to key couplings.
KEYED_BLOCK = WORD_BITS
#: Share of the key-limited capacity used when sizing for a number of tasks (headroom for correlated masks).
_SIZING_LOAD = 0.9
#: Key units added to the count the load asks for, when the budget holds them: small rows fall short of
#: the asymptotic load (at 64 + 64 inputs one row in ~700 stayed unlearnt with 26 real masks).
_SIZING_EXTRA_KEYS = WORD_BITS


def _words(n: int) -> int:
    return -(-n // WORD_BITS) * WORD_BITS


def binary_size_for_budget(budget: int, length: int, n_tasks: int | None = None,
                           rule: PerceptronRule | None = None) -> tuple[int, int]:
    """``(key_units, block_size)`` of the binary reservoir for ``budget`` bytes and ``length`` mask entries.

    Keyed: blocks of 64 units and the longest key the budget holds, or, when ``n_tasks`` is given, the
    shortest that stores them at 90% of the rule's capacity plus one 64-unit word (within the budget).

    Raises
    ------
    BudgetError
        Not even a 64-unit key fits.
    """
    rule = PerceptronRule() if rule is None else rule
    m = KEYED_BLOCK
    rows = -(-length // m) * m
    most = (budget * 8 // rows) // WORD_BITS * WORD_BITS - m  # key units the budget holds
    if most < WORD_BITS:
        smallest = rows * (WORD_BITS + m) // 8
        raise BudgetError("budget", f"at least {smallest:,} bytes for a keyed ±1 reservoir of {length:,} mask "
                                    f"entries (64 key units)", f"{budget:,} bytes", minimum=smallest)
    keys = min(most, MAX_KEY_UNITS // WORD_BITS * WORD_BITS)
    if n_tasks:
        wanted = _words(math.ceil(n_tasks / (rule.KEYED_LOAD * _SIZING_LOAD)))
        keys = min(keys, max(WORD_BITS, wanted) + _SIZING_EXTRA_KEYS)
    return keys, m


class BinaryReservoir:
    """Masks of many tasks in ``B`` blocks of learned ±1 couplings, recalled by key.

    Parameters
    ----------
    layout : MaskLayout
        Names and shapes of one task's masks.
    key_units : int
        Key units per task (a multiple of 64, at least 64).
    block_size : int
        Mask units per block (a multiple of 64).
    rule : PerceptronRule, optional
    key_seed : int
        Seeds the task keys.
    """

    kind = KIND
    dtype = "bit"

    def __init__(self, layout: MaskLayout, key_units: int, block_size: int = KEYED_BLOCK,
                 rule: PerceptronRule | None = None, key_seed: int = 0, *, budget: int | None = None) -> None:
        if not isinstance(layout, MaskLayout):
            raise InvalidArgumentError("layout", "a MaskLayout", type(layout).__name__)
        self.layout = layout
        self.key_units = check_int("key_units", key_units, low=WORD_BITS, high=MAX_KEY_UNITS)
        self.mask_units = check_int("block_size", block_size, low=WORD_BITS, high=MAX_KEY_UNITS)
        for name, value in (("key_units", self.key_units), ("block_size", self.mask_units)):
            if value % WORD_BITS:
                raise InvalidArgumentError(name, f"a multiple of {WORD_BITS}", value)
        self.rule = PerceptronRule() if rule is None else rule
        if not isinstance(self.rule, PerceptronRule):
            raise InvalidArgumentError("rule", "a PerceptronRule", type(self.rule).__name__)
        self.key_seed = check_int("key_seed", key_seed, low=0, high=2**63 - 1)
        self.budget = budget
        self.block_layout = BlockLayout(layout.length, self.mask_units)
        words = (self.key_units + self.mask_units) // WORD_BITS
        nbytes = self.n_blocks * self.mask_units * words * 8
        if nbytes > max_array_bytes():
            raise InvalidArgumentError("key_units", f"couplings within the per-array ceiling of "
                                                    f"{max_array_bytes():,} B", f"{nbytes:,} B")
        self.couplings = np.zeros((self.n_blocks, self.mask_units, words), np.uint64)
        self._spin_sums = np.zeros(layout.length, np.int32)
        self._n_tasks = 0
        self.last_fit: FitResult | None = None

    @classmethod
    def from_budget(cls, budget: str | int | float, layout: MaskLayout, *, n_tasks: int | None = None,
                    rule: PerceptronRule | None = None, key_seed: int = 0) -> BinaryReservoir:
        """The reservoir that ``budget`` holds (see :func:`binary_size_for_budget`)."""
        nbytes = parse_budget(budget)
        if n_tasks is not None:
            n_tasks = check_int("n_tasks", n_tasks, low=1)
        keys, block = binary_size_for_budget(nbytes, layout.length, n_tasks, rule)
        return cls(layout, keys, block, rule, key_seed, budget=nbytes)

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Mask entries ``P`` of one task."""
        return self.layout.length

    @property
    def n_blocks(self) -> int:
        """Blocks ``B``."""
        return self.block_layout.n_blocks

    @property
    def network_size(self) -> int:
        """Inputs per row, ``K + M``."""
        return self.key_units + self.mask_units

    @property
    def n_tasks(self) -> int:
        """Tasks stored."""
        return self._n_tasks

    @property
    def nbytes(self) -> int:
        """Bytes of the couplings: ``B * M * (K + M) / 8``."""
        return int(self.couplings.nbytes)

    @property
    def capacity(self) -> float:
        """Tasks the rule stores exactly at this key length."""
        return float(self.rule.capacity(self.key_units, self.mask_units))

    @property
    def load(self) -> float:
        """``n_tasks / capacity``."""
        return self.n_tasks / self.capacity

    @property
    def spin_sums(self) -> np.ndarray:
        """Sum of the stored tasks' ±1 states, int32 ``(P,)``."""
        return self._spin_sums

    @property
    def write_nbytes(self) -> int:
        """Bytes a write needs beyond the couplings and the patterns: the int16 hidden states and a visiting order
        of one chunk of rows (:func:`~hopfield_masks.binary.learning.fit_chunk_rows`), the only ones that exist
        at once."""
        rows = fit_chunk_rows(self.n_blocks, self.mask_units)
        return rows * self.network_size * 2 + rows * max(self._n_tasks, 1) * 4

    def __repr__(self) -> str:
        return (f"BinaryReservoir(P={self.length}, blocks={self.n_blocks}x{self.mask_units}, "
                f"key_units={self.key_units}, n_tasks={self.n_tasks}, nbytes={self.nbytes:,})")

    # -- keys, cues ----------------------------------------------------------------------------------
    def task_keys(self, tasks: object) -> np.ndarray:
        """The keys of the given task indices, int8 ``(T, K)``, from ``SeedSequence(key_seed, spawn_key=(t,))``."""
        return seeded_keys(self.key_seed, tasks, (self.key_units,))

    def mean_cue(self) -> np.ndarray:
        """The mean ±1 state of the stored tasks, float64 ``(P,)``."""
        if self._n_tasks == 0:
            raise InvalidArgumentError("cue", "a reservoir with at least one stored task", "0 stored tasks")
        return self._spin_sums / float(self._n_tasks)

    def cue(self, kind: str = "mean", seed: int = 0, reference: object = None) -> np.ndarray:
        """A starting point, float64 ``(P,)``: ``"mean"``, ``"random"`` or ``"noisy:<p>"`` of ``reference``."""
        def ref() -> np.ndarray:
            if isinstance(reference, Mapping):
                return self.layout.flatten_spins(reference)
            raise InvalidArgumentError("reference", "the task's masks for a noisy cue", repr(reference)[:100])

        return make_cue(kind, self.length, seed, self.mean_cue, ref)

    # -- writing -------------------------------------------------------------------------------------
    def _states(self, masks: object) -> np.ndarray:
        if isinstance(masks, Mapping):
            masks = self.layout.flatten_spins(masks)[None, :]
        states = np.asarray(masks)
        if states.ndim != 2 or states.shape[1] != self.length or states.dtype != np.int8:
            raise InvalidArgumentError("masks", f"int8 ±1 states (T, {self.length}) or one task's masks",
                                       f"{states.dtype} of shape {states.shape}")
        return states

    def fit(self, states: object) -> FitResult:
        """Store exactly these tasks (int8 ±1 ``(T, P)``; row ``t`` is task ``t``), replacing what was stored."""
        states = self._states(states)
        if len(states) == 0:
            raise InvalidArgumentError("states", "at least one task", "0 rows")
        return self._learn(states, start=None)

    def add(self, masks: object) -> FitResult:
        """Store one more task (its masks, or one ±1 row) without the earlier masks.

        The stored tasks are recalled from their keys and learnt again together with the new one,
        starting from the present couplings.
        """
        new = self._states(masks)
        if self._n_tasks == 0:
            return self._learn(new, start=None)
        stored = self.recall_keyed().states
        return self._learn(np.concatenate([stored, new]), start=self.couplings)

    def _learn(self, states: np.ndarray, start: np.ndarray | None) -> FitResult:
        spin_sums = states.sum(0, dtype=np.int64).astype(np.int32)
        return self._learn_blocks(split_blocks(states, self.block_layout), spin_sums, start)  # (T, B, M), wrap-padded

    def _learn_blocks(self, blocks: np.ndarray, spin_sums: np.ndarray, start: np.ndarray | None = None) -> FitResult:
        """Store exactly the tasks whose wrap-padded ±1 blocks are ``blocks`` (int8 ``(T, B, M)``), replacing what
        was stored; ``spin_sums`` is the sum of their ±1 states (``(P,)``).  What :meth:`fit` does after cutting
        the states into blocks (:func:`~hopfield_masks.encoding.encode_bank` writes each task's blocks as it
        reads it, so the flat states never exist)."""
        t = len(blocks)
        keys = self.task_keys(np.arange(t))
        rule = self.rule
        if start is not None:  # a fresh generator for every growth step, from the rule's seed
            seed = int(np.random.SeedSequence(rule.seed, spawn_key=(t,)).generate_state(1, np.uint64)[0] >> 1)
            rule = replace(rule, seed=seed)
        result = fit_couplings(keys, blocks, rule, start=start)
        self.couplings = result.couplings
        self._spin_sums = np.asarray(spin_sums, np.int32)
        self._n_tasks = t
        self.last_fit = result
        return result

    # -- recall --------------------------------------------------------------------------------------
    def recall_keyed(self, cue: object = None, *, tasks: object = None, max_steps: int = 100,
                     seed: int = 0) -> RecallResult:
        """Recall each task with its key clamped: int8 ``states`` ``(T, P)``, ``steps`` and ``converged`` ``(T,)``.

        ``cue``: ``None`` (start from the key's field) or a cue of :meth:`cue` for every task.
        """
        if self._n_tasks == 0:
            raise InvalidArgumentError("reservoir", "at least one stored task", "0 stored tasks")
        index = np.arange(self._n_tasks) if tasks is None else np.asarray(tasks)
        if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu" or index.min() < 0 \
                or index.max() >= self._n_tasks:
            raise InvalidArgumentError("tasks", f"task indices in [0, {self._n_tasks})", repr(tasks)[:200])
        per_task = self.n_blocks * self.mask_units + self.key_units
        if index.size * per_task > max_array_bytes():
            raise InvalidArgumentError("tasks", f"at most {max_array_bytes() // per_task:,} tasks per call",
                                       f"{index.size:,} tasks")
        start = None
        if cue is not None:
            scores = self.cue(cue, seed=check_int("seed", seed, low=0)) if isinstance(cue, str) else np.asarray(cue)
            one = split_blocks(np.where(scores >= 0, 1, -1).astype(np.int8), self.block_layout)
            start = np.broadcast_to(one, (index.size,) + one.shape)
        states, sweeps, converged = recall_couplings(self.couplings, self.task_keys(index), start=start,
                                                     max_sweeps=max_steps)
        return RecallResult(states=join_blocks(states, self.block_layout), steps=sweeps, converged=converged)

    # -- files ---------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> BinaryReservoir:
        """Read a reservoir saved by :meth:`save`; the file is untrusted (checked before anything is read)."""
        from .format import read_binary_reservoir

        with open_h5_read(path) as fh, h5_errors(path):
            verify_tree(fh, path, file_bytes=int(fh.id.get_filesize()), required=False)
            return read_binary_reservoir(fh)

    def save(self, path: str | Path) -> None:
        """Write the reservoir into the root group of a new HDF5 file at ``path``, atomically."""
        from .format import write_binary_reservoir

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
            write_binary_reservoir(fh, self)

    def _restore(self, couplings: np.ndarray, spin_sums: np.ndarray, n_tasks: int) -> None:
        self.couplings = couplings
        self._spin_sums = spin_sums
        self._n_tasks = n_tasks

