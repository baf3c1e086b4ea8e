"""Exceptions raised by :mod:`supsup_core`.

Same shape as :mod:`hopfield_masks.errors`: one base, leaves that also subclass
the builtin a caller would catch, and messages that name the argument, what
was expected and what was received.
"""

from __future__ import annotations

from hopfield_masks.errors import InvalidArgumentError

__all__ = ["SupSupError", "ConfigError", "DataError", "BaseNetworkMismatchError", "SupSupWarning"]


class SupSupError(Exception):
    """Base class of every error raised on purpose by :mod:`supsup_core`."""


class ConfigError(SupSupError, InvalidArgumentError):
    """A configuration value or function argument is invalid.

    One family with :class:`hopfield_masks.errors.InvalidArgumentError` (it is one): a caller
    catches bad arguments of either package with ``except InvalidArgumentError``.  Keeps
    ``argument``, ``expected`` and ``received`` as attributes.

    >>> str(ConfigError("sparsity", "a value in (0, 1]", 1.5))
    'sparsity: expected a value in (0, 1], received 1.5'
    """


class DataError(SupSupError, ValueError):
    """A dataset could not be found or read (missing IDX file, bad magic number, embedded data absent)."""


class BaseNetworkMismatchError(SupSupError, ValueError):
    """Masks were made for a different base network than the one they are loaded into."""


class SupSupWarning(UserWarning):
    """Base class of the warnings issued by :mod:`supsup_core`."""
