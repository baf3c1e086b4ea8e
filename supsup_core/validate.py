"""Argument checks shared by :mod:`supsup_core`: each returns the clean value or raises :class:`ConfigError`.

Every check names the argument as the caller's signature spells it (the CLI maps
those names to its options in one place), says what was expected and shows what
was received.

Examples
--------
>>> check_int("batch_size", 128, low=1)
128
>>> check_choice("mask_mode", "topk", ("threshold", "topk"))
'topk'
>>> check_int("batch_size", True, low=1)
Traceback (most recent call last):
...
supsup_core.errors.ConfigError: batch_size: expected an integer >= 1, received True
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import ConfigError

__all__ = ["check_int", "check_float", "check_choice", "check_bool", "check_optional", "is_int"]


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, never for bools.

    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _range_text(kind: str, low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int within ``[low, high]`` (either bound optional)."""
    expected = _range_text("an integer", low, high)
    if not is_int(value):
        raise ConfigError(name, expected, repr(value))
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(name, expected, value)
    return value


def check_float(
    name: str, value: object, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a finite Python float within its bounds (``low_open``: strictly above ``low``)."""
    expected = _range_text("a finite number", low, high, low_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(name, expected, repr(value))
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        raise ConfigError(name, expected, value)
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(name, f"one of {', '.join(choices)}", repr(value))
    return value


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(name, "True or False", repr(value))
    return value


def check_optional(check, name: str, value: object, **bounds):
    """``None``, or ``check(name, value, **bounds)``.

    >>> check_optional(check_int, "n", None), check_optional(check_int, "n", 2, low=1)
    (None, 2)
    """
    return None if value is None else check(name, value, **bounds)
