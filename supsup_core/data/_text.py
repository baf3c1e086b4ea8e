"""Small text helpers shared by the data loaders."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (tarfile, PIL and zlib messages may span several).

    >>> one_line(ValueError("first\\n  - second"))
    'first - second'
    """
    return " ".join(str(exc).split()) or type(exc).__name__
