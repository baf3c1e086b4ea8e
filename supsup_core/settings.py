"""What every settings object of :mod:`supsup_core` shares: a frozen dataclass that round-trips through JSON.

Subclass :class:`Settings` with a ``@dataclass(frozen=True)`` whose ``__post_init__``
validates, and set ``_argument``, the name its ``from_dict`` errors carry (the
argument or metadata key the settings travel under).

Examples
--------
>>> from supsup_core.training import TrainConfig
>>> TrainConfig.from_dict(TrainConfig(lr=0.5).to_dict()).replace(seed=2).lr
0.5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

__all__ = ["Settings"]

S = TypeVar("S", bound="Settings")


class Settings:
    """Mixin of frozen, validated settings dataclasses: :meth:`replace`, :meth:`to_dict`, :meth:`from_dict`."""

    _argument: ClassVar[str] = "settings"

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """Inverse of :meth:`to_dict` (validated); unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(cls._argument, f"a mapping of {cls.__name__} fields", type(data).__name__)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(cls._argument, f"only {cls.__name__} fields {sorted(names)}", unknown)
        return cls(**dict(data))
