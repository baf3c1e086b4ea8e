"""Parsers of option values shared by several commands (turn text into library values, or fail naming the option)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["parse_key_units", "options_named"]

#: Library argument names that a command exposes as an option of another spelling.
_OPTION_NAMES = {"guided": "--guided/--unguided"}


@contextlib.contextmanager
def options_named() -> Iterator[None]:
    """Re-raise a library ``ConfigError`` under the command's option name (``steps`` -> ``--steps``)."""
    from supsup_core.errors import ConfigError

    try:
        yield
    except ConfigError as exc:
        if exc.argument.startswith("-"):
            raise
        option = _OPTION_NAMES.get(exc.argument, "--" + exc.argument.replace("_", "-"))
        raise ConfigError(option, exc.expected, exc.received) from None


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
    if not text.isdigit():
        raise ConfigError(option, "auto or a number of units >= 0", repr(text))
    return int(text)
