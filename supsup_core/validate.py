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

import functools

from hopfield_masks import validate as _base
from hopfield_masks.validate import check_optional, is_int

from .errors import ConfigError

__all__ = ["check_int", "check_float", "check_choice", "check_bool", "check_optional", "is_int"]

#: ``value`` as a Python int within ``[low, high]`` (either bound optional).
check_int = functools.partial(_base.check_int, error=ConfigError)
#: ``value`` as a finite Python float within its bounds (``low_open``: strictly above ``low``).
check_float = functools.partial(_base.check_float, error=ConfigError)
#: ``value`` if it is one of ``choices``.
check_choice = functools.partial(_base.check_choice, error=ConfigError)
#: ``value`` if it is a bool.
check_bool = functools.partial(_base.check_bool, error=ConfigError)
