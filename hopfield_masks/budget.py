"""Byte budgets given as text: ``"1MB"``, ``"512KiB"``, ``"2e6"``, ``1048576``.

Decimal units (kB, MB, GB) are powers of 1000 and binary units (KiB, MiB, GiB)
powers of 1024, as in the SI/IEC convention; a bare number is bytes.  Case of
the unit is ignored (``"1mb"`` is 10**6 bytes).

Examples
--------
>>> parse_budget("1MB"), parse_budget("512KiB"), parse_budget("2e6"), parse_budget(4096)
(1000000, 524288, 2000000, 4096)
>>> format_bytes(1_000_000)
'1.00 MB'
"""

from __future__ import annotations

import math
import re

from .errors import BudgetError

__all__ = ["parse_budget", "format_bytes"]

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}
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
    if isinstance(budget, bool):
        raise BudgetError(name, expected, repr(budget))
    if isinstance(budget, (int, float)):
        value = float(budget)
    elif isinstance(budget, str):
        match = _PATTERN.match(budget)
        if not match or match.group(2).lower() not in _UNITS:
            raise BudgetError(name, expected, repr(budget))
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise BudgetError(name, expected, f"{type(budget).__name__} {budget!r}")
    if not math.isfinite(value) or value < 1:
        raise BudgetError(name, expected, repr(budget))
    return int(value)


def format_bytes(n: int | float) -> str:
    """Human-readable size with decimal units (the units :func:`parse_budget` reads back)."""
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
