"""Sizing a reservoir: its bytes for a network size, and the network size (and precision) for a byte budget.

A reservoir of ``B = ceil(P / (N - K))`` networks of ``N`` units (``K`` of them
task-key units) holds

    ``nbytes = B * N**2 * itemsize + 4 * B (float32 scales) + 4 * P (int32 spin sums)``

(sign couplings: the packed upper triangle, ``ceil(N(N-1)/16)`` bytes per
network).  :func:`size_for_budget` picks ``N`` and the coupling precision for a
byte budget, :func:`keyed_size_for_budget` ``N`` and ``K`` for a keyed
reservoir.  A budget is memory (:mod:`hopfield_masks.budget`), and what a
reservoir holds while it is built is more than its kept bytes (a sign network
keeps a float32 accumulator, ``4 N**2`` bytes, until it is saved), so
:func:`check_reservoir_memory` refuses, before anything is allocated, a
reservoir this process cannot hold or whose couplings dataset its readers
would refuse (the per-array ceiling).
"""

from __future__ import annotations

import math

import numpy as np

from .budget import check_memory, format_bytes, parse_budget
from .errors import BudgetError, InvalidArgumentError
from .network import coupling_nbytes, memory_nbytes
from .validate import check_int

__all__ = [
    "MAX_KEY_UNITS",
    "ITEMSIZE", "KEY_FRACTION", "reservoir_nbytes", "size_for_budget", "keyed_size_for_budget",
    "check_reservoir_memory",
]

#: Most task-key units per network (keys of a million units are far past any useful reservoir).
MAX_KEY_UNITS = 1 << 20

#: ``dtype="auto"`` without keys: the precisions tried, highest first (sign couplings are chosen explicitly or keyed).
_AUTO_DTYPES = ("float32", "float16", "int8")
#: Bytes per coupling (sign: one bit of the upper triangle); ``dtype="auto"`` tries them in this order.
ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "sign": 0.125}


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
    length = check_int("length", length, low=1)
    min_size = check_int("min_network_size", min_network_size, low=2)
    key_units = check_int("key_units", key_units, low=0, high=MAX_KEY_UNITS)
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
    length = check_int("length", length, low=1)
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



def check_reservoir_memory(length: int, network_size: int, dtype: str, key_units: int = 0, *,
                           argument: str = "network_size", received: object = None,
                           error: type[InvalidArgumentError] = InvalidArgumentError) -> None:
    """Refuse, before anything is allocated, a reservoir this process cannot build or its readers cannot read.

    Its couplings dataset (``B`` networks at their stored precision) and each network's float32 work matrix
    must fit the per-array ceiling; what it holds while being built (every network's couplings in memory,
    the accumulators of sign networks, one float32 work copy for float16 and int8, the spin sums) must fit
    this process's memory.  The error names ``argument`` (and ``received``, default the network size).

    Examples
    --------
    >>> check_reservoir_memory(1000, 64, "sign", 16)
    >>> check_reservoir_memory(10**6, 10**6, "float32")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: network_size: expected a value whose largest array fits ...
    """
    n, blocks = int(network_size), -(-int(length) // (int(network_size) - int(key_units)))
    stored = blocks * (coupling_nbytes(n, dtype) - (4 if dtype in ("int8", "sign") else 0))
    work = 4 * n * n if dtype in ("float16", "int8") else 0  # the float32 copy a store works in
    held = blocks * memory_nbytes(n, dtype, building=True) + work + 4 * blocks + 4 * int(length)
    check_memory(argument, f"{n:,} units" if received is None else received,
                 largest_array=max(stored, 4 * n * n), working_set=held,
                 what=f"{blocks:,} {dtype} network{'s' if blocks != 1 else ''} of {n:,} units", error=error)
