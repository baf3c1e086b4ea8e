"""Parts of :class:`~hopfield_masks.reservoir.Reservoir`: sizing, cues, the blocked energy landscape, file layout.

Sizing: a reservoir of ``B = ceil(P / N)`` networks of ``N`` units holds

    ``nbytes = B * N**2 * itemsize + 4 * B (float32 scales) + 4 * P (int32 spin sums)``

and :func:`size_for_budget` picks ``N`` (and the coupling precision) for a byte budget.

Layout of an HDF5 group holding a reservoir (format version 2; version 1 has no key attributes):

- attributes ``kind="reservoir"``, ``format_version=2``, ``rule`` (JSON of
  ``LearningRule.to_dict()``), ``dtype``, ``network_size``, ``mask_layout``
  (JSON), ``block_layout`` (JSON: the mask entries per network,
  ``network_size - key_units``), ``n_tasks``, ``budget`` (bytes, 0 when the
  reservoir was built from an explicit network size), ``key_units`` and
  ``key_seed`` (task keys, regenerated from the seed);
- datasets ``couplings`` ``(B, N, N)`` of the stored dtype (``"sign"``: uint8
  ``(B, ceil(N(N-1)/16))``, each network's strict upper triangle packed row by
  row, most significant bit first, 1 = +1; the diagonal is 0), ``scales``
  ``(B,)`` float32 (the int8 / sign dequantisation scale, 1 for float
  couplings) and ``spin_sums`` ``(P,)`` int32.

This module writes, reads and checks that layout; the class only assembles
the parts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .blocks import BlockLayout, MaskLayout
from .budget import format_bytes, parse_budget
from .errors import BudgetError, InvalidArgumentError, PatternShapeError, StorageFormatError
from .network import HopfieldNetwork, coupling_nbytes, pack_sign_couplings, unpack_sign_couplings
from .patterns import validate_states
from .recall.dynamics import RecallResult
from .rules.base import LearningRule

__all__ = [
    "FORMAT_VERSION", "ITEMSIZE", "DATASETS", "KEY_FRACTION", "check_int", "reservoir_nbytes", "size_for_budget",
    "keyed_size_for_budget", "make_cue",
    "flat_state", "score_array", "blocks_energy_gradient", "blocks_sweep", "blocks_recall",
    "ReservoirParts", "read_parts", "write_group",
]

#: Version of the on-disk layout (2 adds ``key_units`` and ``key_seed``; version 1 files read as ``key_units=0``).
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: ``dtype="auto"`` without keys: the precisions tried, highest first (sign couplings are chosen explicitly or keyed).
_AUTO_DTYPES = ("float32", "float16", "int8")
#: Bytes per coupling (sign: one bit of the upper triangle); ``dtype="auto"`` tries them in this order.
ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "sign": 0.125}
_ATTRS = ("kind", "format_version", "rule", "dtype", "network_size", "mask_layout", "block_layout", "n_tasks", "budget")
DATASETS = ("couplings", "scales", "spin_sums")


def check_int(value: object, name: str, low: int) -> int:
    """``value`` as an int after checking it is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidArgumentError(name, f"an integer >= {low}", repr(value))
    return int(value)


def reservoir_nbytes(length: int, network_size: int, dtype: str, key_units: int = 0) -> int:
    """Bytes of a reservoir: couplings ``B*N*N*itemsize``, scales ``4*B``, spin sums ``4*P``.

    With ``key_units = K`` each network of ``N`` units holds ``N - K`` mask
    entries, so ``B = ceil(P / (N - K))``; the keys themselves are regenerated
    from the key seed, not stored.

    Examples
    --------
    >>> reservoir_nbytes(10, 8, "float32")   # 2 blocks: 2*64*4 + 2*4 + 10*4
    560
    >>> reservoir_nbytes(10, 8, "float32", key_units=3)   # 5 mask units per block: still 2 blocks
    560
    """
    n_blocks = math.ceil(length / (network_size - key_units))
    return n_blocks * (coupling_nbytes(network_size, dtype) - (4 if dtype in ("int8", "sign") else 0)) \
        + 4 * n_blocks + 4 * length


def _network_bytes(sizes: np.ndarray, itemsize: float) -> np.ndarray:
    """Coupling bytes of one network per size (sign: the packed upper triangle), int64."""
    return -(-sizes * (sizes - 1) // 16) if itemsize < 1 else sizes * sizes * int(itemsize)


def _sizes_bytes(length: int, sizes: np.ndarray, itemsize: float, key_units: int = 0) -> np.ndarray:
    """:func:`reservoir_nbytes` for many network sizes at once (int64, exact)."""
    blocks = -(-length // (sizes - key_units))  # ceil division, (n,)
    return blocks * _network_bytes(sizes, itemsize) + 4 * blocks + 4 * length


def _best_size(length: int, budget: int, itemsize: float, min_size: int, key_units: int = 0) -> tuple[int | None, int]:
    """Largest network size whose reservoir fits ``budget``, and the smallest reservoir possible.

    Bytes are not monotone in ``N`` (``ceil(P/N)`` drops in steps), so every
    candidate is priced.  Candidates stop at ``max(P, min_size)``: a network
    larger than the pattern would hold repeated copies of it, which adds no
    capacity.  ``B*N >= P`` gives ``bytes >= P*N*itemsize + 4*P``, which bounds
    both searches.
    """
    min_size = max(min_size, key_units + 1)  # at least one mask unit per network
    top = max(length + key_units, min_size)
    # larger N cannot fit: B*N >= P gives bytes >= P*N*item (sign, the upper triangle: P*(N-1)/16)
    if itemsize < 1:
        cap = min(top, (budget - 4 * length) * 16 // length + 1)
    else:
        cap = min(top, int((budget - 4 * length) // (length * itemsize)))
    best = None
    if cap >= min_size:
        sizes = np.arange(min_size, cap + 1, dtype=np.int64)
        fits = np.flatnonzero(_sizes_bytes(length, sizes, itemsize, key_units) <= budget)
        best = int(sizes[fits[-1]]) if fits.size else None
    # bytes(N) >= P*N*item exceeds bytes(min_size) <= (P*min + min**2)*item once N > min + min**2 / P;
    hi = min(top, 2 * min_size + min_size * min_size // length + 1)  # with keys the minimum is near N = 2K
    smallest = int(_sizes_bytes(length, np.arange(min_size, hi + 1, dtype=np.int64), itemsize, key_units).min())
    return best, smallest


def size_for_budget(
    budget: str | int | float, length: int, *, dtype: str = "auto", min_network_size: int = 16, key_units: int = 0
) -> tuple[int, str]:
    """Pick the network size and coupling precision for ``length`` mask entries within ``budget``.

    Capacity grows with the network size ``N`` and, in theory, does not depend
    on the coupling precision, so the largest ``N`` that fits wins; with
    ``dtype="auto"`` the precision is the one that admits the largest ``N``,
    the higher precision at equal ``N`` (float32, then float16, then int8).

    Raises
    ------
    BudgetError
        The budget cannot be parsed, or even the cheapest reservoir does not
        fit; ``minimum`` then holds the smallest budget (bytes) that works.

    Examples
    --------
    >>> size_for_budget("100kB", 1000)                   # int8 buys 4x the couplings of float32
    (93, 'int8')
    >>> size_for_budget("100kB", 1000, dtype="float32")
    (23, 'float32')
    """
    n_bytes = parse_budget(budget)
    length = check_int(length, "length", 1)
    min_size = check_int(min_network_size, "min_network_size", 2)
    key_units = check_int(key_units, "key_units", 0)
    if dtype != "auto" and dtype not in ITEMSIZE:
        raise InvalidArgumentError("dtype", f"'auto' or one of {list(ITEMSIZE)}", repr(dtype))
    best: tuple[int, str] | None = None
    minimum = None
    for name in _AUTO_DTYPES if dtype == "auto" else (dtype,):
        size, smallest = _best_size(length, n_bytes, ITEMSIZE[name], min_size, key_units)
        minimum = smallest if minimum is None else min(minimum, smallest)
        if size is not None and (best is None or size > best[0]):  # strict: ties keep the higher precision
            best = (size, name)
    if best is None:
        raise BudgetError(
            "budget",
            f"at least {minimum} bytes ({format_bytes(minimum)}) for {length} mask entries "
            f"in networks of >= {max(min_size, key_units + 1)} units (dtype {dtype}, {key_units} key units)",
            f"{budget!r} = {n_bytes} bytes",
            minimum=minimum,
        )
    return best


#: Default share of each network's units that hold the task key when the key width is chosen from a budget.
KEY_FRACTION = 0.25


def keyed_size_for_budget(
    budget: str | int | float, length: int, *, dtype: str = "sign", key_fraction: float = KEY_FRACTION
) -> tuple[int, int]:
    """Network size ``N`` and key units ``K`` of a keyed reservoir for ``length`` mask entries within ``budget``.

    For ``B = 1, 2, ...`` networks, ``N`` is the largest size whose ``B``
    networks fit the budget and ``K = N - ceil(P / B)`` the units left over
    for the key; the first ``B`` whose key takes at least ``key_fraction`` of
    the units wins (fewer, larger networks: the key then ties fewer blocks
    together, and a larger ``N`` holds more tasks).  The key never gets more
    units than the mask part (``N <= 2 ceil(P / B)``).

    Raises
    ------
    BudgetError
        No split leaves a key of that share.

    Examples
    --------
    >>> keyed_size_for_budget("1MB", 4096)     # two 2,805-unit networks: 2,048 mask units and 757 key units each
    (2805, 757)
    """
    n_bytes = parse_budget(budget)
    length = check_int(length, "length", 1)
    if dtype not in ITEMSIZE:
        raise InvalidArgumentError("dtype", f"one of {list(ITEMSIZE)}", repr(dtype))
    ok = isinstance(key_fraction, (int, float)) and not isinstance(key_fraction, bool)
    if not (ok and 0.0 < float(key_fraction) < 1.0):
        raise InvalidArgumentError("key_fraction", "a share of the units in (0, 1)", repr(key_fraction))
    for blocks in range(1, length + 1):
        mask_units = -(-length // blocks)
        room = (n_bytes - 4 * length - 4 * blocks) // blocks  # bytes per network
        if room <= 0:
            break
        if ITEMSIZE[dtype] < 1:  # N(N-1)/16 <= room
            size = int((1 + math.sqrt(1 + 64 * room)) / 2)
            while size > 1 and -(-size * (size - 1) // 16) > room:
                size -= 1
        else:
            size = int(math.isqrt(int(room // ITEMSIZE[dtype])))
        if size <= mask_units:
            continue
        size = min(size, 2 * mask_units)  # a key wider than the mask part adds cost, not distinction
        if size - mask_units >= key_fraction * size:
            return size, size - mask_units
    # the smallest budget that works: for each B the smallest N whose key takes key_fraction of the units
    blocks = np.arange(1, length + 1, dtype=np.int64)
    mask_units = -(-length // blocks)
    sizes = np.maximum(np.ceil(mask_units / (1.0 - key_fraction)).astype(np.int64), mask_units + 1)
    minimum = int(np.min(blocks * _network_bytes(sizes, ITEMSIZE[dtype]) + 4 * blocks + 4 * length))
    raise BudgetError("budget", f"at least {minimum} bytes ({format_bytes(minimum)}) for {length} mask entries plus "
                                f"a key of {key_fraction:.0%} of each network's units (dtype {dtype})",
                      f"{budget!r} = {n_bytes} bytes", minimum=minimum)


def flat_state(state: object, length: int, name: str) -> np.ndarray:
    """One flat int8 ±1 state of ``length`` spins, or an error naming ``name``."""
    s = validate_states(state, size=length, name=name)
    if s.ndim != 1:
        raise PatternShapeError(name, "one flat state (1-D)", f"shape {s.shape}")
    return s


def blocks_energy_gradient(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, pad_src: np.ndarray) -> np.ndarray:
    """``dE/ds`` of ``E(s) = sum_b E_b(pad(s)_b)``: a padded copy's gradient is added to its source's."""
    length = blocks.size - pad_src.size
    padded = np.concatenate([net.energy_gradient(b) for net, b in zip(networks, blocks)])  # (B*N,)
    grad = padded[:length].copy()  # (P,)
    np.add.at(grad, pad_src, padded[length:])  # chain rule through the copies
    return grad


def blocks_sweep(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, pad_src: np.ndarray,
                 external_field: object, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One asynchronous sweep of every block in order; returns the flat ``(P,)`` state and its flips.

    ``blocks`` ``(B, N)`` is the wrap-padded state; padded unit ``k`` (flat
    index ``P + k``) copies spin ``pad_src[k]``.
    """
    n_blocks, n = blocks.shape
    length = blocks.size - pad_src.size
    work = blocks.reshape(-1).copy()  # flat padded state, (B*N,)
    field = None
    if external_field is not None:
        f = np.asarray(external_field, dtype=np.float64)
        if f.shape != (length,):
            raise PatternShapeError("external_field", f"shape ({length},)", f"shape {f.shape}")
        field = np.concatenate([f, f[pad_src]])  # a copy feels its source's field, (P,) -> (B*N,)
    for b, net in enumerate(networks):
        sl = slice(b * n, (b + 1) * n)
        if b == n_blocks - 1 and pad_src.size:
            work[length:] = work[pad_src]  # sources may have flipped earlier in this sweep
        work[sl] = net.sweep(work[sl].copy(), None if field is None else field[sl], rng)[0]
    out = work[:length].copy()  # the copies are dropped, (P,)
    return out, int(np.count_nonzero(out != blocks.reshape(-1)[:length]))


def score_array(scores: object, length: int, name: str) -> np.ndarray:
    """Finite float64 scores of shape ``(length,)``, or an error naming ``name``."""
    a = np.asarray(scores)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise InvalidArgumentError(name, "a cue kind, masks, or real scores", type(scores).__name__)
    if a.shape != (length,):
        raise PatternShapeError(name, f"shape ({length},)", f"shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InvalidArgumentError(name, "finite values", "NaN or infinity")
    return a


def blocks_recall(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, mode: str, max_steps: int,
                  seed: int) -> RecallResult:
    """Recall every block ``(B, N)`` independently with its network (seed ``seed + b``); one result row per block."""
    results = [net.recall(block, mode=mode, max_steps=max_steps, seed=seed + b)
               for b, (net, block) in enumerate(zip(networks, blocks))]
    states = np.stack([r.states for r in results])  # B x (N,) -> (B, N)
    steps, converged = (np.array([getattr(r, k) for r in results]) for k in ("steps", "converged"))  # (B,)
    return RecallResult(states=states, steps=steps, converged=converged)


def make_cue(kind: object, length: int, seed: int, mean: Callable[[], np.ndarray],
             reference: Callable[[], np.ndarray]) -> np.ndarray:
    """The cue of :meth:`Reservoir.cue <hopfield_masks.reservoir.Reservoir.cue>`, float64 ``(length,)``.

    ``mean`` and ``reference`` are called only when the kind needs them.

    Examples
    --------
    >>> make_cue("noisy:0.5", 4, 0, None, lambda: np.ones(4, np.int8))
    array([ 1.,  1., -1., -1.])
    """
    expected = "'mean', 'random' or 'noisy:<p>' with 0 <= p <= 1"
    if not isinstance(kind, str):
        raise InvalidArgumentError("kind", expected, repr(kind))
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    if kind == "mean":
        return mean()
    if kind == "random":
        return rng.choice(np.array([-1.0, 1.0]), size=length)
    p = math.nan
    if kind.startswith("noisy:"):
        try:
            p = float(kind[len("noisy:"):])
        except ValueError:
            pass
    if not 0.0 <= p <= 1.0:
        raise InvalidArgumentError("kind", expected, repr(kind))
    state = reference().astype(np.float64)  # (P,)
    # exactly round(p * P) flips, not a Bernoulli draw per spin: the noise level is then what was asked for
    state[rng.choice(length, size=round(p * length), replace=False)] *= -1.0
    return state


def write_group(group: h5py.Group, reservoir: Any) -> None:
    """Write a reservoir's datasets and attributes into ``group``, replacing reservoir datasets already there."""
    for key in DATASETS:
        if key in group:
            del group[key]
    n, b = reservoir.network_size, reservoir.n_blocks
    if reservoir.dtype == "sign":  # the packed upper triangle, 1 bit per coupling
        shape, dtype = (b, coupling_nbytes(n, "sign") - 4), np.dtype(np.uint8)
    else:
        shape, dtype = (b, n, n), np.dtype(reservoir.dtype)
    couplings = group.create_dataset("couplings", shape=shape, dtype=dtype)
    scales = np.empty(b, dtype=np.float32)
    for i, net in enumerate(reservoir.networks):
        arrays, attrs = net.to_arrays()
        # one block at a time: no (B, N, N) copy in memory
        couplings[i] = pack_sign_couplings(arrays["couplings"]) if reservoir.dtype == "sign" else arrays["couplings"]
        scales[i] = attrs["scale"]
    group.create_dataset("scales", data=scales)
    group.create_dataset("spin_sums", data=reservoir.spin_sums.astype(np.int32))
    group.attrs.update(
        {
            "kind": "reservoir",
            "format_version": FORMAT_VERSION,
            "rule": json.dumps(reservoir.rule.to_dict()),
            "dtype": reservoir.dtype,
            "network_size": int(n),
            "mask_layout": json.dumps(reservoir.layout.to_dict()),
            "block_layout": json.dumps(reservoir.block_layout.to_dict()),
            "n_tasks": int(reservoir.n_tasks),
            "budget": int(reservoir.budget or 0),
            "key_units": int(reservoir.key_units),
            "key_seed": int(reservoir.key_seed),
        }
    )


@dataclass
class ReservoirParts:
    """Everything :func:`read_parts` read and checked, networks included."""

    rule: LearningRule
    layout: MaskLayout
    block_layout: BlockLayout
    dtype: str
    n_tasks: int
    budget: int | None
    networks: tuple[HopfieldNetwork, ...]  # one per block
    spin_sums: np.ndarray  # (P,) int32
    key_units: int = 0
    key_seed: int = 0


def _where(group: h5py.Group) -> str:
    """The file (and group, when not the root) for error messages."""
    name = group.file.filename
    return name if group.name == "/" else f"{name}:{group.name}"


def read_parts(group: h5py.Group) -> ReservoirParts:
    """Read and check a reservoir group and rebuild its networks.

    Raises
    ------
    StorageFormatError
        Not a reservoir, unsupported format version, missing or malformed
        attributes or datasets, or shapes that disagree; the message names
        the file (and group).
    """
    where = _where(group)
    attrs = group.attrs
    if "kind" in attrs and attrs["kind"] != "reservoir":
        raise StorageFormatError(where, f"is not a reservoir (kind={attrs['kind']!r})")
    missing = [a for a in _ATTRS if a not in attrs]
    missing += [d for d in DATASETS if not isinstance(group.get(d), h5py.Dataset)]
    if missing:
        raise StorageFormatError(where, f"is not a complete reservoir: missing {', '.join(missing)}")
    try:
        version = int(attrs["format_version"])
        rule = LearningRule.from_dict(json.loads(attrs["rule"]))
        layout = MaskLayout.from_dict(json.loads(attrs["mask_layout"]))
        block_layout = BlockLayout.from_dict(json.loads(attrs["block_layout"]))
        dtype, size = str(attrs["dtype"]), int(attrs["network_size"])
        n_tasks, budget = int(attrs["n_tasks"]), int(attrs["budget"])
        key_units = int(attrs.get("key_units", 0)) if version >= 2 else 0
        key_seed = int(attrs.get("key_seed", 0)) if version >= 2 else 0
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # bad JSON, unknown rule id, wrong types
        raise StorageFormatError(where, f"has malformed reservoir attributes ({exc})") from None
    if version not in _READABLE_VERSIONS:
        raise StorageFormatError(where, f"reservoir format_version {version} is not supported "
                                        f"(this version reads {', '.join(map(str, _READABLE_VERSIONS))})")
    b, p = block_layout.n_blocks, layout.length
    problems = []
    if dtype not in ITEMSIZE:
        problems.append(f"dtype {dtype!r} is not one of {list(ITEMSIZE)}")
    if size < 2 or not 0 <= key_units < size or not 0 <= key_seed < 2**63 or block_layout.block_size != size - key_units \
            or block_layout.length != p or p < 1 or n_tasks < 0:
        problems.append(f"network_size {size}, key_units {key_units}, key_seed {key_seed}, block_layout "
                        f"{block_layout.to_dict()}, mask length {p} and n_tasks {n_tasks} disagree")
    couplings_shape = ((b, coupling_nbytes(size, "sign") - 4), "uint8") if dtype == "sign" else ((b, size, size), dtype)
    expected = {"couplings": couplings_shape, "scales": ((b,), "float32"), "spin_sums": ((p,), "int32")}
    for name, (shape, want) in expected.items():
        ds = group[name]
        dtype_ok = str(ds.dtype) == want or name == "couplings" and dtype not in ITEMSIZE  # already reported
        if ds.shape != shape or not dtype_ok:
            problems.append(f"dataset {name} is {ds.shape} {ds.dtype}, expected {shape} {want}")
    if problems:
        raise StorageFormatError(where, "is an inconsistent reservoir: " + "; ".join(problems))
    scales, spin_sums = group["scales"][()], group["spin_sums"][()]
    if not np.isfinite(scales).all() or (spin_sums.size and int(np.abs(spin_sums.astype(np.int64)).max()) > n_tasks):
        raise StorageFormatError(where, "is an inconsistent reservoir: non-finite scales or spin sums above n_tasks")
    try:
        networks = tuple(
            HopfieldNetwork.from_arrays(
                # one block at a time: no (B, N, N) copy in memory
                {"couplings": unpack_sign_couplings(group["couplings"][i], size) if dtype == "sign"
                 else group["couplings"][i]},
                {"rule": rule.to_dict(), "dtype": dtype, "size": size, "n_stored": n_tasks, "scale": float(scales[i])},
            )
            for i in range(b)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageFormatError(where, f"holds couplings that do not make a network ({exc})") from None
    return ReservoirParts(rule, layout, block_layout, dtype, n_tasks, budget or None, networks, spin_sums,
                          key_units, key_seed)
