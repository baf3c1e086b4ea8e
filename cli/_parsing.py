"""Parsers of option values shared by several commands (turn text into library values, or fail naming the option),
and the ceilings of the integer options that size work or memory (refused before any work, in ``--help`` as ranges).
"""

from __future__ import annotations

__all__ = ["parse_key_units", "budget_at_least", "MAX_KEY_UNITS", "MAX_TASKS", "MAX_BATCHES_PER_TASK",
           "MAX_OUTPUT_SIZE"]

import math

from hopfield_masks.reservoir_sizing import MAX_KEY_UNITS

#: Most tasks of a stream: permuted tasks are seeded ``task + stream seed``, a 32-bit seed.
MAX_TASKS = 2**32 - 1
#: Most optimiser steps per task (``--batches-per-task``).
MAX_BATCHES_PER_TASK = 10_000_000
#: Most outputs of a model (``--output-size``): the last layer alone would exceed
#: ``supsup_core.models.MAX_MODEL_ENTRIES`` (200,000,000 entries) above it.
MAX_OUTPUT_SIZE = 200_000_000


def parse_key_units(text: str, option: str = "--key-units") -> int | str:
    """``"auto"`` or a unit count in ``0..MAX_KEY_UNITS``.

    Examples
    --------
    >>> parse_key_units("auto"), parse_key_units("64")
    ('auto', 64)
    >>> parse_key_units(str(2**64))
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: --key-units: expected auto or a number of units in 0..1048576, received '18446744073709551616'
    """
    from supsup_core.errors import ConfigError

    expected = f"auto or a number of units in 0..{MAX_KEY_UNITS}"
    if text == "auto":
        return "auto"
    # length first: int() of a very long digit string is refused by Python itself, or slow
    if not (text.isascii() and text.isdecimal()) or len(text.lstrip("0")) > 8 or int(text) > MAX_KEY_UNITS:
        raise ConfigError(option, expected, repr(text if len(text) <= 40 else text[:37] + "..."))
    return int(text)


def budget_at_least(minimum: int) -> str:
    """The shortest budget text (two significant digits, decimal units) that :func:`~hopfield_masks.parse_budget`
    reads as at least ``minimum`` bytes: what a refusal suggests.

    Examples
    --------
    >>> budget_at_least(1_467_736), budget_at_least(20_480), budget_at_least(146_700), budget_at_least(512)
    ('1.5MB', '21kB', '150kB', '520B')
    """
    from hopfield_masks.budget import parse_budget

    unit, scale = next(((u, s) for u, s in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)) if minimum >= s), ("B", 1))
    value = minimum / scale
    step = 10.0 ** (math.floor(math.log10(value)) - 1) if value > 0 else 1.0  # two significant digits
    while True:
        rounded = math.ceil(value / step - 1e-9) * step
        digits = f"{rounded:.{max(0, -math.floor(math.log10(step)))}f}"
        text = (digits.rstrip("0").rstrip(".") if "." in digits else digits) + unit
        if parse_budget(text) >= minimum:
            return text
        value += step / 2  # float rounding left it a byte short: the next step up
