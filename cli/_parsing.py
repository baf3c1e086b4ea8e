"""Parsers of option values shared by several commands (turn text into library values, or fail naming the option),
and the ceilings of the integer options that size work or memory (refused before any work, in ``--help`` as ranges).
"""

from __future__ import annotations

__all__ = ["parse_key_units", "MAX_KEY_UNITS", "MAX_TASKS", "MAX_BATCHES_PER_TASK", "MAX_OUTPUT_SIZE"]

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
