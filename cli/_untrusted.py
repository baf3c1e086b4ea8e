"""Strings from files (task names, attributes, error details) and from the command line, made safe to print.

Rich reads ``[bold]`` and ``[/]`` in a ``str`` as markup -- a closing tag with
nothing to close is a :class:`rich.errors.MarkupError` -- and passes the escape
character through to the terminal, so a task name could restyle, hide or
clear what the user sees.  :func:`plain` turns such a value into a
:class:`rich.text.Text` shown as written: no markup, and control characters
(C0, DEL, C1) as their backslash escapes; :func:`printable` is the same for a
``str`` that goes on to a markup-escaping printer (``fail``).
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["plain", "printable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    r"""``str(value)`` with control characters (C0, DEL, C1) as their backslash escapes.

    >>> printable("t\tx\x1b[2J")
    't\\tx\\x1b[2J'
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def plain(value: object, style: str = "") -> Text:
    r"""``str(value)`` as Rich :class:`~rich.text.Text`: never markup, control characters escaped.

    >>> plain("[bold]t\x1b[2J").plain
    '[bold]t\\x1b[2J'
    """
    return Text(printable(value), style=style)
