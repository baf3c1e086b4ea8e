"""A constant-size reservoir of Hopfield networks that stores every task's mask as blocks.

A task's mask (several named layers, any shapes) is flattened by a
:class:`~hopfield_masks.blocks.MaskLayout` into one ±1 state of length ``P``
and cut into ``B = ceil(P / N)`` blocks of ``N`` spins; block ``b`` of every
task goes into network ``b``.  The reservoir never grows (``nbytes = B*N**2*itemsize
+ 4*B + 4*P``, fixed when it is built) and storing a mask needs only that mask.
Besides the couplings it keeps the running sum of the stored ±1 states (int32
per entry): divided by the task count it is the reference code's recovery
start, the mean ±1 mask (REFERENCE.md §2.8, §7).

**Memory.**  :meth:`Reservoir.store_packed` (what :func:`~hopfield_masks.encoding.encode_bank`
uses) builds the networks one at a time from every task's packed bits, so a write holds one
network's float32 work matrix at a time, not one per network; sign couplings are then kept
*packed* (one bit per coupling of each upper triangle, what :attr:`Reservoir.nbytes` counts), and
each network's int8 matrix is unpacked only while that network is used (a recall sweep, an energy)
and dropped after.  Such a reservoir is read-only, like one read from a file.  Networks are
allocated on first use, so a reservoir sized by :meth:`Reservoir.from_budget` holds nothing yet.

The last block is padded with copies of the pattern's first spins
(``"wrap"``).  During recall the copies are kept consistent with their sources:
:meth:`Reservoir.sweep` refreshes them from the current state right before the
padded block is swept and drops them afterwards, and
:meth:`Reservoir.energy_gradient` adds each copy's gradient to its source
(the chain rule for ``E(s) = sum_b E_b(pad(s)_b)``).

Examples
--------
>>> import numpy as np
>>> from hopfield_masks.blocks import MaskLayout
>>> layout = MaskLayout(("fc1", "fc2"), ((6,), (4,)))
>>> res = Reservoir(layout, network_size=8, rule="hebbian")
>>> res.n_blocks, res.nbytes
(2, 560)
>>> res.store({"fc1": np.array([1, 0, 1, 1, 0, 0], bool), "fc2": np.array([1, 1, 0, 0], bool)})
0
>>> res.mean_cue()[:4]
array([ 1., -1.,  1.,  1.])
>>> res.exact_storage_bytes_per_task
2
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from .blocks import BlockLayout, MaskLayout, join_blocks, split_blocks
from .budget import parse_budget
from .errors import BudgetError, CapacityWarning, InvalidArgumentError
from .network import HopfieldNetwork, coupling_nbytes, pack_sign_couplings
from .patterns import packed_nbytes
from .recall.dynamics import RecallResult
from .recall.guidance import Guidance
from .recall.guided import GuidedRecallResult, guided_dynamics, score_descent
from .reservoir_format import FORMAT_VERSION, read_parts, write_group
from .reservoir_landscape import blocks_energy_gradient, blocks_recall, blocks_sweep, flat_state, make_cue, score_array, seeded_keys
from .reservoir_sizing import ITEMSIZE, MAX_KEY_UNITS, check_reservoir_memory, keyed_size_for_budget, reservoir_nbytes, size_for_budget
from .rules import get_rule
from .rules.base import LearningRule
from .safety.files import atomic_path, open_h5_read
from .safety.integrity import h5_errors, max_array_bytes, verify_tree
from .validate import check_int, check_optional

__all__ = [
    "Reservoir",
    "reservoir_nbytes",
    "size_for_budget",
    "keyed_size_for_budget",
    "write_reservoir",
    "read_reservoir",
    "FORMAT_VERSION",
    "ITEMSIZE",
]

_METHODS = {"score-descent": score_descent, "dynamics": guided_dynamics}


def _check_layout(layout: object) -> MaskLayout:
    if not isinstance(layout, MaskLayout) or layout.length < 1:
        raise InvalidArgumentError("layout", "a MaskLayout with at least one mask entry", repr(layout))
    return layout


class Reservoir:
    """Blocks of a :class:`~hopfield_masks.blocks.MaskLayout` over equal-size Hopfield networks.

    Parameters
    ----------
    layout : MaskLayout
        Names and shapes of one task's layer masks (``P = layout.length >= 1``).
    network_size : int
        Units per network ``N`` (>= 2).
    rule : str or LearningRule
        Learning rule of every network.
    dtype : str
        Coupling precision: ``"float32"``, ``"float16"`` or ``"int8"``.

    Reservoirs are written with :meth:`save` and read back with :meth:`from_file`.
    """

    def __init__(
        self, layout: MaskLayout, network_size: int, rule: str | LearningRule = "storkey", dtype: str = "float32",
        *, key_units: int = 0, key_seed: int = 0,
    ) -> None:
        _check_layout(layout)
        size = check_int("network_size", network_size, low=2)
        key_units = check_int("key_units", key_units, low=0, high=MAX_KEY_UNITS)
        if key_units > size - 2:  # at least two mask units per network
            raise InvalidArgumentError("key_units", f"an integer in [0, {size - 2}] (network_size - 2 at most)",
                                       repr(key_units))
        if dtype not in ITEMSIZE:
            raise InvalidArgumentError("dtype", f"one of {list(ITEMSIZE)}", repr(dtype))
        rule = get_rule(rule)
        check_reservoir_memory(layout.length, size, dtype, key_units)  # before any network is allocated
        self._setup(layout, size, rule, dtype, key_units=key_units, key_seed=check_int("key_seed", key_seed, low=0))
        self._nets: Sequence[HopfieldNetwork] | None = None  # allocated on first use (see _networks)
        self._spin_sums = np.zeros(layout.length, dtype=np.int32)  # running sum of stored ±1 states, (P,)
        self._n_tasks = 0

    def _setup(self, layout: MaskLayout, size: int, rule: LearningRule, dtype: str, budget: int | None = None,
               *, key_units: int = 0, key_seed: int = 0) -> None:
        self.layout = layout
        self.key_units = key_units  # K: units per network that hold the task's key, not its mask
        self.key_seed = key_seed
        self._network_size = size
        self.block_layout = BlockLayout(layout.length, size - key_units)  # mask entries per network: N - K
        self.rule = rule
        self.dtype = dtype
        self.budget = budget  # the byte budget it was sized from, if any
        # padded unit k (flat index P + k) copies the pattern's spin _pad_src[k]; see the module docstring
        self._pad_src = np.arange(self.block_layout.padding) % layout.length
        self._mask_nets: tuple[HopfieldNetwork, ...] | None = None  # mask-unit sub-networks, built on demand

    @classmethod
    def from_budget(cls, budget: str | int | float, layout: MaskLayout, rule: str | LearningRule = "storkey",
                    dtype: str = "auto", min_network_size: int = 16, *, key_units: int | str = 0,
                    key_seed: int = 0) -> Reservoir:
        """The reservoir with the largest networks whose :attr:`nbytes` fit ``budget``.

        ``key_units=0`` (no keys): see :func:`size_for_budget` for the choice of
        ``N`` and of the precision (``"auto"``: float32, float16 or int8).
        ``key_units="auto"``: a keyed reservoir sized by
        :func:`keyed_size_for_budget` (``"auto"`` precision: ``"sign"``, one bit per
        coupling, which recalls best per byte in ``benchmarks/results/hopsupsup.md``).
        An explicit ``key_units`` count sizes the networks around it.

        Examples
        --------
        >>> res = Reservoir.from_budget("100kB", MaskLayout(("w",), ((1000,),)), rule="hebbian")
        >>> res.network_size, res.dtype, res.nbytes <= 100_000
        (93, 'int8', True)
        >>> res = Reservoir.from_budget("1MB", MaskLayout(("a", "b"), ((2048,), (2048,))), "pseudo-inverse",
        ...                             key_units="auto")
        >>> res.n_blocks, res.network_size, res.key_units, res.dtype, res.nbytes
        (2, 2805, 757, 'sign', 999546)
        """
        length = _check_layout(layout).length
        if key_units == "auto":
            chosen = "sign" if dtype == "auto" else dtype
            size, key_units = keyed_size_for_budget(budget, length, dtype=chosen)
        else:
            if dtype == "auto" and key_units:
                dtype = "sign"
            size, chosen = size_for_budget(budget, length, dtype=dtype, min_network_size=min_network_size,
                                           key_units=key_units)
        # the reservoir a large budget buys may not fit while it is built (sign accumulators: 4 N**2 B each)
        check_reservoir_memory(length, size, chosen, key_units, argument="budget", error=BudgetError,
                               received=f"{budget!r} ({size:,}-unit networks, {chosen} couplings)")
        res = cls(layout, size, rule, chosen, key_units=key_units, key_seed=key_seed)
        res.budget = parse_budget(budget)
        return res

    @property
    def length(self) -> int:
        """Pattern length ``P`` (mask entries per task)."""
        return self.layout.length

    @property
    def network_size(self) -> int:
        """Units per network ``N`` (mask units plus key units)."""
        return self._network_size

    @property
    def mask_units(self) -> int:
        """Mask entries per network, ``N - key_units``."""
        return self.block_layout.block_size

    @property
    def n_blocks(self) -> int:
        """Number of networks ``B = ceil(P / N)``."""
        return self.block_layout.n_blocks

    @property
    def _networks(self) -> Sequence[HopfieldNetwork]:
        """The networks: allocated (empty) on first use, or packed sign networks unpacked one per access."""
        if self._nets is None:
            self._nets = tuple(HopfieldNetwork(self.network_size, self.rule, self.dtype) for _ in range(self.n_blocks))
        return self._nets

    @property
    def networks(self) -> Sequence[HopfieldNetwork]:
        """The networks, block order (do not store into them directly).

        A tuple, or for sign couplings kept packed (:meth:`store_packed`) a sequence that unpacks each
        network when it is taken (frozen: it cannot store).
        """
        return self._networks

    @property
    def n_tasks(self) -> int:
        """Tasks stored so far."""
        return self._n_tasks

    @property
    def spin_sums(self) -> np.ndarray:
        """Running int32 sum of the stored ±1 states, ``(P,)`` (a copy)."""
        return self._spin_sums.copy()

    @property
    def nbytes(self) -> int:
        """Bytes held: couplings, one float32 scale per network, int32 spin sums (see :func:`reservoir_nbytes`)."""
        return reservoir_nbytes(self.length, self.network_size, self.dtype, self.key_units)

    @property
    def capacity(self) -> float:
        """Tasks storable in theory: a network's capacity (every network holds every task; see
        :attr:`HopfieldNetwork.capacity`, which caps sign couplings at ``0.1 N``)."""
        theory = float(self.rule.capacity(self.network_size))  # as HopfieldNetwork.capacity, without a network
        return min(theory, 0.1 * self.network_size) if self.dtype == "sign" else theory

    @property
    def exact_storage_bytes_per_task(self) -> int:
        """Bytes one task's mask takes stored exactly as packed bits, ``ceil(P / 8)``."""
        return packed_nbytes(self.length)

    def __repr__(self) -> str:
        return (
            f"Reservoir(P={self.length}, networks={self.n_blocks}x{self.network_size}, rule={self.rule!r}, "
            f"dtype={self.dtype!r}, key_units={self.key_units}, n_tasks={self.n_tasks}, nbytes={self.nbytes})"
        )

    def store(self, masks: Mapping[str, object]) -> int:
        """Write one task's masks into the networks and return its task index (0, 1, ...).

        Only this mask is needed: each block goes through the rule's
        incremental update, and the running ±1 sums are updated.  Warns
        :class:`~hopfield_masks.errors.CapacityWarning` (once, not per network)
        when the task count goes above :attr:`capacity`.

        Raises
        ------
        PatternShapeError, PatternError
            The layer names, shapes or values do not match the layout.
        """
        state = self.layout.flatten_spins(masks)  # validates every layer; (P,) int8
        blocks = split_blocks(state, self.block_layout)  # (B, N - K)
        if self.key_units:
            blocks = np.concatenate([blocks, self.task_keys([self._n_tasks])[0]], axis=1)  # (B, N): mask | key
        self._mask_nets = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CapacityWarning)  # the reservoir warns once below
            for net, block in zip(self._networks, blocks):
                net.store(block)
        self._spin_sums += state
        self._n_tasks += 1
        if self._n_tasks > self.capacity:
            warnings.warn(
                CapacityWarning(
                    f"the reservoir holds {self._n_tasks} tasks, above the {self.rule.rule_id} capacity of "
                    f"{self.capacity:.1f} for networks of {self.network_size} units; recall may return wrong masks"
                ),
                stacklevel=2,
            )
        return self._n_tasks - 1

    def store_packed(self, bits: object, progress=None) -> None:
        """Store ``T`` tasks given as packed bits, network after network: what :meth:`store` of each task in
        turn gives, bit for bit, holding one network's work matrix at a time.

        Parameters
        ----------
        bits : uint8 array (T, ceil(P / 8))
            Row ``t``: task ``t``'s flat mask (``layout.flatten``) packed most significant bit first
            (:func:`~hopfield_masks.patterns.pack_bits`, the bank's packed format).
        progress : callable, optional
            ``progress(done, total)`` after each network.

        Memory: the bits, the tasks' keys (``T * B * K`` bytes), and one network at a time: its block of
        every task (``T * N`` bytes) and, for sign, float16 and int8 couplings, its float32 matrix (``4 N**2``
        bytes).  Sign couplings are then kept packed (:attr:`nbytes`) and the reservoir is read-only;
        float couplings and int8 keep their networks.

        Raises
        ------
        InvalidArgumentError
            Tasks are already stored, or ``bits`` is not ``(T, ceil(P / 8))`` uint8 with ``T >= 1``.
        """
        if self._n_tasks:
            raise InvalidArgumentError("reservoir", "an empty reservoir (store_packed writes every task at once)",
                                       f"{self._n_tasks} stored tasks")
        bits = np.asarray(bits)
        width = packed_nbytes(self.length)
        if bits.ndim != 2 or bits.dtype != np.uint8 or bits.shape[0] < 1 or bits.shape[1] != width:
            raise InvalidArgumentError("bits", f"uint8 packed masks (T, {width}) with T >= 1",
                                       f"{bits.dtype} of shape {bits.shape}")
        bits = np.ascontiguousarray(bits)
        t, n, m, blocks = bits.shape[0], self.network_size, self.mask_units, self.n_blocks
        sums = np.zeros(self.length, np.int32)
        for row in bits:
            spins = np.unpackbits(row, count=self.length).view(np.int8)  # 0/1, then ±1 in place
            spins *= 2
            spins -= 1
            sums += spins
        del spins
        keys = self.task_keys(np.arange(t)) if self.key_units else None  # (T, B, K)
        flat = np.arange(blocks * m)  # padded flat index of every mask unit, block after block
        flat[self.length:] = self._pad_src
        sign = self.dtype == "sign"
        one_by_one = self.dtype in ("float16", "int8")  # requantised after every store, as store() does
        packed = np.empty((blocks, _sign_nbytes(n)), np.uint8) if sign else None
        scales = np.empty(blocks, np.float32) if sign else None
        nets: list[HopfieldNetwork] = []
        self._nets, self._mask_nets = None, None
        patterns = np.empty((t, n), np.int8)  # one network's block of every task: mask units, then key units
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CapacityWarning)  # the load is the caller's to report
            for b in range(blocks):
                cols = flat[b * m:(b + 1) * m]
                np.right_shift(bits[:, cols >> 3], (7 - (cols & 7)).astype(np.uint8), out=patterns[:, :m].view(np.uint8))
                patterns[:, :m] &= 1
                patterns[:, :m] *= 2
                patterns[:, :m] -= 1
                if keys is not None:
                    patterns[:, m:] = keys[:, b]
                net = HopfieldNetwork(n, self.rule, self.dtype)
                for p in (patterns if one_by_one else (patterns,)):
                    net.store(p)
                if sign:
                    packed[b], scales[b] = _pack_sign(net.couplings), net.scale
                else:
                    nets.append(net)
                del net
                if progress is not None:
                    progress(b + 1, blocks)
        self._nets = _SignBlocks(packed, scales, n, self.rule, t) if sign else tuple(nets)
        self._spin_sums = sums
        self._n_tasks = t

    def packed_sign_couplings(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The sign couplings as kept after :meth:`store_packed`: uint8 ``(B, ceil(N(N-1)/16))`` (each network's
        strict upper triangle, the file's layout) and float32 scales ``(B,)``, read-only views; None when the
        couplings are not kept packed."""
        nets = self._nets
        return nets.arrays() if isinstance(nets, _SignBlocks) else None

    def mean_cue(self) -> np.ndarray:
        """The mean ±1 state of the stored tasks, float64 ``(P,)``: the reference's recovery start.

        Raises
        ------
        InvalidArgumentError
            No task is stored yet.
        """
        if self._n_tasks == 0:
            raise InvalidArgumentError("cue", "a reservoir with at least one stored task", "0 stored tasks")
        return self._spin_sums / float(self._n_tasks)

    def cue(self, kind: str = "mean", seed: int = 0, reference: object = None) -> np.ndarray:
        """A starting point for recall, float64 ``(P,)``.

        Parameters
        ----------
        kind : str
            ``"mean"`` (:meth:`mean_cue`), ``"random"`` (uniform ±1) or
            ``"noisy:<p>"``: ``reference`` with exactly ``round(p * P)`` spins,
            chosen at random, flipped.
        seed : int
            Seeds ``"random"`` and ``"noisy"``.
        reference : Mapping of masks or array_like, optional
            For ``"noisy"``: the task's masks, or its flat ±1 state.

        Examples
        --------
        >>> res = Reservoir(MaskLayout(("w",), ((4,),)), 4, "hebbian")
        >>> res.cue("noisy:0.25", reference={"w": np.ones(4, bool)}, seed=1)
        array([ 1., -1.,  1.,  1.])
        """
        return make_cue(kind, self.length, seed, self.mean_cue, lambda: self._reference_state(reference))

    def _reference_state(self, reference: object) -> np.ndarray:
        if reference is None:
            raise InvalidArgumentError("reference", "the task's masks or flat ±1 state for a noisy cue", "None")
        if isinstance(reference, Mapping):
            return self.layout.flatten_spins(reference)
        return flat_state(reference, self.length, "reference")

    def _cue_scores(self, cue: object, seed: int) -> np.ndarray:
        """Resolve a cue given as a kind string, a masks mapping or an array into float64 scores ``(P,)``."""
        if isinstance(cue, str):
            return self.cue(cue, seed=seed)
        if isinstance(cue, Mapping):
            return self.layout.flatten_spins(cue).astype(np.float64)
        return score_array(cue, self.length, "cue")

    def _blocks(self, state: object) -> np.ndarray:
        return split_blocks(flat_state(state, self.length, "state"), self.block_layout)  # (B, N), wrap-padded

    def _mask_networks(self) -> tuple[HopfieldNetwork, ...]:
        """The networks restricted to their mask units (the key units held at 0, i.e. absent).

        Without key units these are the networks themselves.  With them, the
        landscape of a flat mask state (energy, gradient, sweeps, unguided and
        guided recall) ignores the keys: nothing says which task to expect.
        """
        if not self.key_units:
            return self._networks
        if isinstance(self._nets, _SignBlocks):  # unpacked one per access, never all at once
            return self._nets.restricted(self.mask_units)
        if self._mask_nets is None:
            m = self.mask_units
            nets = []
            for net in self._networks:
                arrays, attrs = net.to_arrays()
                sub = np.ascontiguousarray(arrays["couplings"][:m, :m])  # (M, M), still symmetric
                nets.append(HopfieldNetwork.from_arrays({"couplings": sub}, {**attrs, "size": m}))
            self._mask_nets = tuple(nets)
        return self._mask_nets

    def task_keys(self, tasks: object) -> np.ndarray:
        """The key spins of the given task indices, int8 ``(T, B, K)`` (empty when ``key_units == 0``).

        Task ``t``'s key in every network comes from
        ``SeedSequence(key_seed, spawn_key=(t,))``: keys are regenerated, never stored.

        Examples
        --------
        >>> res = Reservoir(MaskLayout(("w",), ((6,),)), 5, "hebbian", key_units=2, key_seed=7)
        >>> res.task_keys([0, 1]).shape, bool((res.task_keys([1]) == res.task_keys([0, 1])[1:]).all())
        ((2, 2, 2), True)
        """
        return seeded_keys(self.key_seed, tasks, (self.n_blocks, self.key_units))

    def energy(self, state: object) -> float:
        """Total energy ``sum_b -1/2 s_b^T W_b s_b`` of a flat state (padding included; key units absent)."""
        return float(sum(net.energy(block) for net, block in zip(self._mask_networks(), self._blocks(state))))

    def energy_gradient(self, state: object) -> np.ndarray:
        """``dE/ds`` float64 ``(P,)``: the blocks' gradients, each padded copy's added to its source."""
        return blocks_energy_gradient(self._mask_networks(), self._blocks(state), self._pad_src)

    def sweep(
        self, state: object, external_field: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """One asynchronous sweep of every network, in block order; returns ``(state, flips)``.

        Padded units get their source's external field; right before the padded
        (last) block is swept its copies are refreshed from the current state,
        and they are dropped afterwards, so they always agree with their sources.
        """
        return blocks_sweep(self._mask_networks(), self._blocks(state), self._pad_src, external_field, rng)

    def recall(self, cue: object = "mean", guidance: Guidance | None = None, *, method: str = "score-descent",
               seed: int = 0, steps: int | None = None) -> tuple[dict[str, np.ndarray], GuidedRecallResult]:
        """Recall one task's masks, guided or not.

        Parameters
        ----------
        cue : str, Mapping or array_like
            A :meth:`cue` kind (drawn with ``seed``), a task's masks, or scores ``(P,)``.
        guidance : Guidance, optional
            Objective gradient on the whole flat state; ``None``: unguided.
        method : str
            ``"score-descent"`` (:func:`~hopfield_masks.recall.guided.score_descent`,
            starting from the cue as scores) or ``"dynamics"``
            (:func:`~hopfield_masks.recall.guided.guided_dynamics`, starting
            from ``sign(cue)`` with 0 -> +1, seeded with ``seed``).
        steps : int, optional
            Steps of score descent (``n_steps``) or sweeps of the dynamics (``max_sweeps``); ``None``: the
            procedure's default.  The other settings of either procedure are its own function's keywords: call
            :func:`~hopfield_masks.recall.guided.score_descent` or
            :func:`~hopfield_masks.recall.guided.guided_dynamics` with this reservoir as the landscape.

        Returns
        -------
        masks : dict[str, ndarray]
            Boolean masks in the layout's names and shapes.
        result : GuidedRecallResult
        """
        if method not in _METHODS:
            raise InvalidArgumentError("method", f"one of {sorted(_METHODS)}", repr(method))
        steps = check_optional(check_int, "steps", steps, low=1)
        scores = self._cue_scores(cue, seed)
        if method == "score-descent":
            result = score_descent(self, scores, guidance, **({} if steps is None else {"n_steps": steps}))
        else:
            start = np.where(scores >= 0, 1, -1).astype(np.int8)  # the mask 1[u >= 0] as spins
            sweeps = {} if steps is None else {"max_sweeps": steps}
            result = guided_dynamics(self, start, guidance, seed=seed, **sweeps)
        return self.layout.unflatten(result.state), result

    def recall_blocks(
        self, cue: object = "mean", *, mode: str = "async", max_steps: int = 100, seed: int = 0
    ) -> tuple[dict[str, np.ndarray], RecallResult]:
        """Unguided recall of every block independently with each network's own ``recall``.

        Network ``b`` uses seed ``seed + b``.  Returns the masks and a
        :class:`~hopfield_masks.recall.dynamics.RecallResult` whose rows are
        the blocks: ``states`` ``(B, N)``, ``steps`` and ``converged`` ``(B,)``.
        """
        start = np.where(self._cue_scores(cue, seed) >= 0, 1, -1).astype(np.int8)  # (P,)
        result = blocks_recall(self._mask_networks(), split_blocks(start, self.block_layout), mode, max_steps, seed)
        return self.layout.unflatten(join_blocks(result.states, self.block_layout)), result

    def recall_keyed(
        self, cue: object = None, *, tasks: object = None, mode: str = "async", max_steps: int = 100, seed: int = 0
    ) -> RecallResult:
        """Recall the mask of each task with that task's key clamped in every network: one candidate per task.

        Every network starts with the task's key on its key units and, on its
        mask units, the sign of the field the key alone makes (``cue=None``,
        the default) or the cue's block; the key units are held fixed (an
        external field larger than any field the couplings can make) while
        the mask units follow the dynamics.  The keys tie the blocks of one task
        together, so all ``B`` networks settle into the *same* task's
        attractor; deciding which task a query needs is left to the caller
        (in ``supsup_core``: the model's output entropy over the candidates).

        Parameters
        ----------
        cue : None, str, Mapping or array_like
            ``None``: start each task from its key's field; otherwise as in :meth:`recall`.
        tasks : sequence of int, optional
            Task indices to recall (default: every stored task, in order).
        mode, max_steps, seed
            As in :meth:`HopfieldNetwork.recall`; network ``b`` runs with
            seed ``SeedSequence([seed, b])``.

        Returns
        -------
        RecallResult
            ``states`` int8 ``(T, P)`` (row ``i``: task ``tasks[i]``), ``steps``
            (the most any network took) and ``converged`` (every network) ``(T,)``.

        Raises
        ------
        InvalidArgumentError
            The reservoir has no key units, no task is stored, or a task index is out of range.
        """
        if not self.key_units:
            raise InvalidArgumentError("reservoir", "a reservoir with key units (key_units > 0) for keyed recall",
                                       "key_units=0")
        if self._n_tasks == 0:
            raise InvalidArgumentError("reservoir", "at least one stored task", "0 stored tasks")
        per_task = self.n_blocks * self.network_size  # int8 bytes of one task's keys and states
        if tasks is None and self._n_tasks * per_task > max_array_bytes():  # n_tasks may come from a file
            raise InvalidArgumentError("tasks", f"the tasks to recall (the states of all {self._n_tasks:,} stored "
                                                f"tasks, {self._n_tasks * per_task:,} B, exceed the per-array ceiling)",
                                       "None (every task)")
        index = np.arange(self._n_tasks) if tasks is None else np.asarray(tasks)
        if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu" or index.min() < 0 \
                or index.max() >= self._n_tasks:
            raise InvalidArgumentError("tasks", f"task indices in [0, {self._n_tasks})", repr(tasks))
        if index.size * per_task > max_array_bytes():
            raise InvalidArgumentError("tasks", f"at most {max_array_bytes() // per_task:,} tasks per call (the "
                                                "per-array ceiling on their states)", f"{index.size:,} tasks")
        seed = check_int("seed", seed, low=0)
        start = None
        if cue is not None:
            start = split_blocks(np.where(self._cue_scores(cue, seed) >= 0, 1, -1).astype(np.int8),
                                 self.block_layout)  # (B, M)
        keys = self.task_keys(index)  # (T, B, K)
        m, t = self.mask_units, index.size
        out = np.empty((t, self.n_blocks, m), np.int8)
        steps = np.zeros(t, np.int64)
        converged = np.ones(t, bool)
        for b, net in enumerate(self._networks):
            if start is None:  # the field of the key units on the mask units, (T, M); a zero field gives +1
                key_field = keys[:, b].astype(np.float32) @ net.couplings[:m, m:].T.astype(np.float32)
                mask_start = np.where(key_field >= 0, 1, -1).astype(np.int8)
            else:
                mask_start = np.broadcast_to(start[b], (t, m))
            cues = np.concatenate([mask_start, keys[:, b]], axis=1)  # (T, N)
            clamp = 1.0 + net.scale * _max_row_abs_sum(net.couplings)
            field = np.zeros((t, self.network_size))
            field[:, m:] = clamp * keys[:, b]  # no coupling field can flip a key unit
            block_seed = int(np.random.SeedSequence([seed, b]).generate_state(1)[0])
            result = net.recall(cues, mode=mode, max_steps=max_steps, seed=block_seed, external_field=field)
            out[:, b] = result.states[:, :m]
            steps = np.maximum(steps, result.steps)
            converged &= result.converged
        states = join_blocks(out, self.block_layout)  # (T, P): padded copies dropped
        return RecallResult(states=states, steps=steps, converged=converged)

    @property
    def load(self) -> float:
        """``n_tasks / capacity`` (> 1 means over the rule's theoretical capacity)."""
        return self.n_tasks / self.capacity

    @classmethod
    def from_file(cls, path: str | Path) -> Reservoir:
        """Read a reservoir saved by :meth:`save` (errors name the path).

        The file is untrusted input: its whole tree is checked before anything is read (only hard links,
        no external or virtual storage, declared sizes the file stores and the per-array ceiling allows,
        checksums where present; :func:`~hopfield_masks.safety.integrity.verify_tree`), then the reservoir
        itself (:func:`read_reservoir`).

        Raises
        ------
        BankFileNotFoundError, StorageFormatError
        """
        with open_h5_read(path) as fh, h5_errors(path):
            verify_tree(fh, path, file_bytes=int(fh.id.get_filesize()), required=False)
            return read_reservoir(fh)

    def save(self, path: str | Path) -> None:
        """Write the reservoir into the root group of a new HDF5 file at ``path``, atomically."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
            write_reservoir(fh, self)


#: Largest cached gather index (int32, ``4 m**2`` bytes) of :func:`_unpack_sign` and triangle mask
#: (bool, ``N**2`` bytes) of :func:`_pack_sign`; larger networks unpack and pack row by row instead.
_GATHER_BYTES = 1 << 22


def _sign_nbytes(n: int) -> int:
    """Bytes of one network's packed sign couplings (the strict upper triangle, 1 bit each)."""
    return coupling_nbytes(n, "sign") - 4


@functools.lru_cache(maxsize=4)
def _upper(n: int) -> np.ndarray:
    """bool ``(N, N)``: the strict upper triangle, whose row-major order is the packed bits' order."""
    mask = np.triu(np.ones((n, n), bool), 1)
    mask.flags.writeable = False
    return mask


def _pack_sign(q: np.ndarray) -> np.ndarray:
    """The packed strict upper triangle of a ±1 matrix: :func:`~hopfield_masks.network.pack_sign_couplings`,
    in one vectorised pass for networks whose triangle mask is cached (``N**2 <= _GATHER_BYTES``)."""
    n = q.shape[0]
    return np.packbits(q[_upper(n)] > 0) if n * n <= _GATHER_BYTES else pack_sign_couplings(q)


@functools.lru_cache(maxsize=4)
def _gather(n: int, m: int) -> np.ndarray | None:
    """int32 ``(m, m)``: where entry ``(i, j)`` of the first ``m`` units' matrix is in the packed order of an
    ``n``-unit network (the diagonal points one past the end, at a zero); None when larger than ``_GATHER_BYTES``."""
    if 4 * m * m > _GATHER_BYTES:
        return None
    i, j = np.ogrid[:m, :m]
    a, b = np.minimum(i, j), np.maximum(i, j)
    index = (a * (2 * n - a - 1) // 2 + (b - a - 1)).astype(np.int32)
    np.fill_diagonal(index, n * (n - 1) // 2)
    index.flags.writeable = False
    return index


def _unpack_sign(bits: np.ndarray, n: int, m: int | None = None) -> np.ndarray:
    """The symmetric int8 ±1 matrix with a zero diagonal of packed sign couplings (inverse of :func:`_pack_sign`);
    with ``m``, of the first ``m`` units only (``(m, m)``)."""
    m = n if m is None else m
    count = n * (n - 1) // 2
    upper = np.empty(count + 1, np.int8)  # ±1 in packed order, then the diagonal's 0
    upper[:count] = np.unpackbits(bits, count=count).view(np.int8)
    upper *= 2
    upper -= 1
    upper[count] = 0
    index = _gather(n, m)
    if index is not None:  # one gather
        return np.take(upper, index)
    # large networks, as network.unpack_sign_couplings: row by row, then mirrored a block of rows at a time
    # (no index arrays, no temporary the size of the matrix)
    q = np.zeros((m, m), np.int8)
    start = 0
    for i in range(m - 1):
        q[i, i + 1:] = upper[start:start + m - 1 - i]
        start += n - 1 - i
    del upper
    step = max(1, _GATHER_BYTES // m)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        q[r0:r1, :r0] = q[:r0, r0:r1].T
        diag = q[r0:r1, r0:r1]
        diag += np.tril(diag.T, -1)
    return q


class _SignBlocks(Sequence):
    """Sign networks kept as their packed bits (``(B, ceil(N(N-1)/16))`` uint8) and scales, each unpacked into a
    frozen :class:`HopfieldNetwork` when it is taken; ``mask_units``: the networks restricted to their first
    ``mask_units`` units (the key units absent)."""

    def __init__(self, bits: np.ndarray, scales: np.ndarray, size: int, rule: LearningRule, n_stored: int,
                 mask_units: int | None = None) -> None:
        self._bits, self._scales, self._size, self._rule = bits, scales, size, rule
        self._n_stored, self._mask_units = n_stored, mask_units

    def __len__(self) -> int:
        return len(self._bits)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only views of the packed bits and the scales."""
        views = self._bits.view(), self._scales.view()
        for view in views:
            view.flags.writeable = False
        return views

    def restricted(self, mask_units: int) -> _SignBlocks:
        """The same networks restricted to their first ``mask_units`` units."""
        return _SignBlocks(self._bits, self._scales, self._size, self._rule, self._n_stored, mask_units)

    def _network(self, index: int) -> HopfieldNetwork:
        q = _unpack_sign(self._bits[index], self._size, self._mask_units)
        net = HopfieldNetwork.__new__(HopfieldNetwork)
        net._assign(len(q), self._rule, "sign", q, float(self._scales[index]), self._n_stored, None)  # frozen
        return net

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self._network(i) for i in range(*index.indices(len(self))))
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"network {i} of {len(self)}")
        return self._network(i % len(self))

    def __iter__(self) -> Iterator[HopfieldNetwork]:
        return (self._network(i) for i in range(len(self)))


def _max_row_abs_sum(couplings: np.ndarray) -> float:
    """``max_i sum_j |W_ij|`` of the stored couplings, a block of rows at a time (no float64 copy of the matrix)."""
    n = couplings.shape[0]
    step = max(1, (1 << 20) // max(n, 1))
    return max(float(np.abs(couplings[r:r + step].astype(np.float64)).sum(1).max()) for r in range(0, n, step))


def write_reservoir(group: h5py.Group, reservoir: Reservoir) -> None:
    """Write ``reservoir`` into ``group``; reservoir datasets already there are replaced.

    The layout (attributes ``kind="reservoir"``, ``format_version``, ``rule``,
    ``dtype``, ``network_size``, ``mask_layout``, ``block_layout``, ``n_tasks``,
    ``budget``; datasets ``couplings`` ``(B, N, N)``, ``scales`` ``(B,)``
    float32, ``spin_sums`` ``(P,)`` int32) is described in
    :mod:`hopfield_masks.reservoir_format`.
    """
    if not isinstance(reservoir, Reservoir):
        raise InvalidArgumentError("reservoir", "a Reservoir", type(reservoir).__name__)
    write_group(group, reservoir)


def read_reservoir(group: h5py.Group) -> Reservoir:
    """Rebuild a reservoir written by :func:`write_reservoir`.

    The group is untrusted input: its links, storage and declared sizes are checked before anything is
    read, and what the couplings become in memory before they are unpacked
    (:func:`~hopfield_masks.reservoir_format.read_parts`).

    Raises
    ------
    StorageFormatError
        The group is not a reservoir of a supported format version, an
        attribute or dataset is missing, malformed or inconsistent, or it
        links or declares what a reservoir may not; the message names the
        file (and group).
    """
    parts = read_parts(group)
    res = Reservoir.__new__(Reservoir)
    res._setup(parts.layout, parts.block_layout.block_size + parts.key_units, parts.rule, parts.dtype, parts.budget,
               key_units=parts.key_units, key_seed=parts.key_seed)
    res._nets = parts.networks
    res._spin_sums = parts.spin_sums.astype(np.int32)
    res._n_tasks = parts.n_tasks
    return res
