"""Ready-made callbacks for :class:`~supsup_core.training.trainer.Trainer`, and how they are attached.

A *callback spec* is either an ``(event, fn)`` pair or an object with an
``attach(trainer)`` method (the classes below), so a caller can hand
``train_task(..., callbacks=[LossHistory(), ("on_task_end", fn)])`` a mix of both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..validate import check_int

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .trainer import Trainer

__all__ = ["Attachable", "LossHistory", "ProgressCallback", "StopAfter", "attach_callbacks"]


@runtime_checkable
class Attachable(Protocol):
    """A callback object that registers its own methods on a trainer."""

    def attach(self, trainer: Trainer) -> None:
        """Register on ``trainer`` (via ``trainer.add_callback``)."""


class LossHistory:
    """Record ``(iteration, loss)`` every ``every`` batches (one host sync per record).

    Examples
    --------
    >>> h = LossHistory(every=2)
    >>> h.losses
    []
    """

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError("every", "an integer >= 1", every)
        self.every = every
        self.losses: list[tuple[int, float]] = []

    def attach(self, trainer: Trainer) -> None:
        """Record on ``on_batch_end``."""
        trainer.add_callback("on_batch_end", self._record)

    def _record(self, trainer: Trainer) -> None:
        if trainer.iter_num % self.every == 0 and trainer.loss is not None:
            self.losses.append((trainer.iter_num, float(trainer.loss)))


class ProgressCallback:
    """Call ``advance(1)`` after every batch (e.g. ``lambda n: progress.advance(task_id, n)`` for rich).

    Examples
    --------
    >>> counts = []
    >>> cb = ProgressCallback(counts.append)
    >>> cb._advance(None); counts
    [1]
    """

    def __init__(self, advance: Callable[[int], Any]) -> None:
        if not callable(advance):
            raise ConfigError("advance", "a callable taking a step count", type(advance).__name__)
        self.advance = advance

    def attach(self, trainer: Trainer) -> None:
        """Advance on ``on_batch_end``."""
        trainer.add_callback("on_batch_end", self._advance)

    def _advance(self, trainer: Trainer | None) -> None:
        self.advance(1)


class StopAfter:
    """Stop a run after ``n`` batches of that run (a guard for smoke runs and debugging)."""

    def __init__(self, n: int) -> None:
        n = check_int("n", n, low=1)
        self.n = n
        self._start = 0

    def attach(self, trainer: Trainer) -> None:
        """Note the start iteration on ``on_task_start``, stop on ``on_batch_end``."""
        trainer.add_callback("on_task_start", self._begin)
        trainer.add_callback("on_batch_end", self._check)

    def _begin(self, trainer: Trainer) -> None:
        self._start = trainer.iter_num

    def _check(self, trainer: Trainer) -> None:
        if trainer.iter_num - self._start >= self.n:
            trainer.stop()


def attach_callbacks(trainer: Trainer, callbacks: Iterable[Any]) -> None:
    """Attach every callback spec (``(event, fn)`` pair or :class:`Attachable`) to ``trainer``."""
    for i, spec in enumerate(callbacks):
        if isinstance(spec, Attachable):
            spec.attach(trainer)
        elif isinstance(spec, tuple) and len(spec) == 2:
            trainer.add_callback(spec[0], spec[1])
        else:
            raise ConfigError(f"callbacks[{i}]", "an (event, fn) pair or an object with attach(trainer)", repr(spec))
