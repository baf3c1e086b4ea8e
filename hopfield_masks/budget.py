"""Byte budgets given as text: ``"1MB"``, ``"512KiB"``, ``"2e6"``, ``1048576``.

Decimal units (kB, MB, GB) are powers of 1000 and binary units (KiB, MiB, GiB)
powers of 1024, as in the SI/IEC convention; a bare number is bytes.  Case of
the unit is ignored (``"1mb"`` is 10**6 bytes).

A budget is memory: a reservoir is held whole in memory, so a budget above what
this process can hold (:func:`memory_limit`: the machine's physical memory, or
the address-space limit when lower) is refused when it is parsed, before any
work.  :func:`check_memory` is the same bound for a structure about to be
allocated: its largest array within the per-array ceiling
(:func:`~hopfield_masks.safety.integrity.max_array_bytes`, what every reader
also accepts) and its whole working set within :func:`memory_limit`.

Examples
--------
>>> parse_budget("1MB"), parse_budget("512KiB"), parse_budget("2e6"), parse_budget(4096)
(1000000, 524288, 2000000, 4096)
>>> format_bytes(1_000_000)
'1.00 MB'
"""

from __future__ import annotations

import math
import os
import re

from .errors import BudgetError, InvalidArgumentError
from .safety.integrity import max_array_bytes

__all__ = ["parse_budget", "format_bytes", "memory_limit", "check_memory"]

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}
#: Largest budget recorded in a file (an int64 attribute), whatever the machine.
_MAX_BUDGET = 2**63 - 1
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_budget(budget: str | int | float, *, name: str = "budget") -> int:
    """Parse a byte budget into a positive whole number of bytes.

    Raises
    ------
    BudgetError
        The text is not a number with an optional unit, the unit is unknown,
        or the result is not a positive number of bytes.
    """
    expected = "a positive byte count such as '1MB', '512KiB', '2e6' or 4096"
    shown = repr(budget) if len(repr(budget)) <= 40 else repr(budget)[:39] + "…"
    if isinstance(budget, bool):
        raise BudgetError(name, expected, shown)
    if isinstance(budget, (int, float)):
        value: int | float = budget
    elif isinstance(budget, str):
        match = _PATTERN.match(budget)
        if not match or match.group(2).lower() not in _UNITS:
            raise BudgetError(name, expected, shown)
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]  # inf when beyond float
    else:
        raise BudgetError(name, expected, f"{type(budget).__name__} {shown}")
    if (isinstance(value, float) and math.isnan(value)) or value < 1:
        raise BudgetError(name, expected, shown)
    limit = memory_limit()
    limit = _MAX_BUDGET if limit is None else min(limit, _MAX_BUDGET)
    if value > limit:  # int and float compare exactly: no OverflowError for 10**400
        size = f" = {value:,.0f} B" if value < 1e30 else ""
        raise BudgetError(name, f"a byte budget this process can hold in memory: at most {limit:,} B "
                                f"({format_bytes(limit)})", f"{shown}{size}")
    return int(value)


def memory_limit() -> int | None:
    """Bytes this process can hold at most: the machine's physical memory, or the address-space limit
    (``RLIMIT_AS``) when it is lower; None where neither is known.

    >>> memory_limit() is None or memory_limit() > 0
    True
    """
    limits = []
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page > 0:
            limits.append(int(pages) * int(page))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no sysconf (Windows)
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(int(soft))
    except (ImportError, AttributeError, ValueError, OSError):  # pragma: no cover - no resource module
        pass
    return min(limits) if limits else None


def check_memory(argument: str, received: object, *, largest_array: int, working_set: int,
                 what: str, error: type[InvalidArgumentError] = InvalidArgumentError) -> None:
    """Refuse (before allocating) a structure whose largest array exceeds the per-array ceiling or whose
    working set exceeds :func:`memory_limit`; the error names ``argument`` and ``received``.

    ``what`` says what would be allocated ("the couplings of 1 network of 100,000 units").  Sizes are
    Python integers, so no product overflows.

    >>> check_memory("size", 8, largest_array=256, working_set=1024, what="the couplings")
    >>> check_memory("size", 10**10, largest_array=4 * 10**20, working_set=4 * 10**20,
    ...              what="the couplings")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: size: expected a value whose largest array fits the per-array ceiling ...
    """
    ceiling = max_array_bytes()
    if largest_array > ceiling:
        raise error(argument, f"a value whose largest array fits the per-array ceiling ({ceiling:,} B; "
                              "HOPFIELD_MASKS_MAX_ARRAY_BYTES raises it)",
                    f"{received} ({what}: an array of {largest_array:,} B)")
    limit = memory_limit()
    if limit is not None and working_set > limit:
        raise error(argument, f"a value whose working memory fits this process ({limit:,} B, "
                              f"{format_bytes(limit)})", f"{received} ({what}: {working_set:,} B)")


def format_bytes(n: int | float) -> str:
    """Human-readable size with decimal units (the units :func:`parse_budget` reads back)."""
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
