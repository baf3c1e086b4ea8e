"""Argument checks: each returns the clean value or raises :class:`~hopfield_masks.errors.InvalidArgumentError`.

Every check names the argument as the caller's signature spells it, says what was expected
and shows what was received.  ``error`` picks the subclass to raise, so a package built on
this one raises its own (``supsup_core.validate`` raises ``ConfigError``, itself an
``InvalidArgumentError``).

Examples
--------
>>> check_int("size", 128, low=1)
128
>>> check_choice("mode", "async", ("async", "sync"))
'async'
>>> check_int("size", True, low=1)
Traceback (most recent call last):
...
hopfield_masks.errors.InvalidArgumentError: size: expected an integer >= 1, received True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["check_int", "check_float", "check_choice", "check_bool", "check_optional", "is_int"]

ErrorType = type[InvalidArgumentError]


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, never for bools.

    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _range_text(kind: str, low: float | None, high: float | None, low_open: bool = False,
                high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return kind


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None,
              error: ErrorType = InvalidArgumentError) -> int:
    """``value`` as a Python int within ``[low, high]`` (either bound optional)."""
    expected = _range_text("an integer", low, high)
    if not is_int(value):
        raise error(name, expected, repr(value))
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise error(name, expected, value)
    return value


def check_float(name: str, value: object, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, error: ErrorType = InvalidArgumentError) -> float:
    """``value`` as a finite Python float within its bounds (``low_open``/``high_open``: the bound excluded)."""
    expected = _range_text("a finite number", low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error(name, expected, repr(value))
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        raise error(name, expected, value)
    return value


def check_choice(name: str, value: object, choices: Iterable[str], *, error: ErrorType = InvalidArgumentError) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise error(name, f"one of {', '.join(choices)}", repr(value))
    return value


def check_bool(name: str, value: object, *, error: ErrorType = InvalidArgumentError) -> bool:
    """``value`` if it is a bool (NumPy bools included, returned as ``bool``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(name, "True or False", repr(value))
    return bool(value)


def check_optional(check: Callable[..., Any], name: str, value: object, **bounds: Any) -> Any:
    """``None``, or ``check(name, value, **bounds)``.

    >>> check_optional(check_int, "n", None), check_optional(check_int, "n", 2, low=1)
    (None, 2)
    """
    return None if value is None else check(name, value, **bounds)
