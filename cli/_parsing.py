"""Parsers of option values shared by several commands (turn text into library values, or fail naming the option)."""

from __future__ import annotations

__all__ = ["parse_key_units"]


def parse_key_units(text: str, option: str = "--key-units") -> int | str:
    """``"auto"`` or a non-negative unit count.

    Examples
    --------
    >>> parse_key_units("auto"), parse_key_units("64")
    ('auto', 64)
    """
    from supsup_core.errors import ConfigError

    if text == "auto":
        return "auto"
    if not (text.isascii() and text.isdecimal()):
        raise ConfigError(option, "auto or a number of units >= 0", repr(text))
    return int(text)
