"""Exceptions and warnings raised by :mod:`hopfield_masks`.

One base class, :class:`HopfieldMasksError`, and specific leaves that also
subclass the builtin exception a caller would naturally catch (``ValueError``,
``KeyError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.

Every leaf that reports bad input keeps the argument name, what was expected
and what was received as attributes, and builds its message from them::

    >>> err = PatternError("mask", "values in {0, 1}", "value 2 at index 3")
    >>> str(err)
    'mask: expected values in {0, 1}, received value 2 at index 3'
    >>> err.argument, err.expected, err.received
    ('mask', 'values in {0, 1}', 'value 2 at index 3')

Soft problems (a reservoir loaded beyond its capacity, recall that did not
converge) are warnings of class :class:`HopfieldMasksWarning`, never errors.
"""

from __future__ import annotations

__all__ = [
    "HopfieldMasksError",
    "InvalidArgumentError",
    "PatternError",
    "PatternShapeError",
    "BudgetError",
    "RegistryError",
    "UnknownRuleError",
    "UnknownBackendError",
    "TaskNotFoundError",
    "StorageFormatError",
    "BankFileNotFoundError",
    "FileWriteError",
    "BankLockedError",
    "HopfieldMasksWarning",
    "CapacityWarning",
    "ConvergenceWarning",
]


class HopfieldMasksError(Exception):
    """Base class of every error raised on purpose by :mod:`hopfield_masks`."""


class InvalidArgumentError(HopfieldMasksError, ValueError):
    """An argument has the wrong value, type or shape.

    Parameters
    ----------
    argument : str
        Name of the offending argument, as the caller typed it.
    expected : str
        What would have been accepted.
    received : str
        What was received (a value, a dtype, a shape...).
    """

    def __init__(self, argument: str, expected: str, received: object) -> None:
        self.argument = argument
        self.expected = expected
        self.received = received
        super().__init__(f"{argument}: expected {expected}, received {received}")

    def __reduce__(self):  # keep the three fields through pickling
        return (type(self), (self.argument, self.expected, self.received))


class PatternError(InvalidArgumentError):
    """A mask, pattern or state holds values that are not binary (or is NaN, or of a bad dtype)."""


class PatternShapeError(PatternError):
    """A mask, pattern or state has the wrong shape or length."""


class BudgetError(InvalidArgumentError):
    """A byte budget cannot be parsed, or is too small for even one network.

    ``minimum`` holds the smallest budget (in bytes) that works, when known.
    """

    def __init__(
        self, argument: str, expected: str, received: object, minimum: int | None = None
    ) -> None:
        self.minimum = minimum
        super().__init__(argument, expected, received)

    def __reduce__(self):
        return (type(self), (self.argument, self.expected, self.received, self.minimum))


class RegistryError(HopfieldMasksError, ValueError):
    """A registration was refused (duplicate or malformed id)."""


class UnknownRuleError(HopfieldMasksError, KeyError):
    """No learning rule is registered under the requested id."""

    def __init__(self, rule_id: str, available: list[str]) -> None:
        self.rule_id = rule_id
        self.available = list(available)
        # the fields of InvalidArgumentError: the CLI names its option (--rule) and fills its --json error object
        self.argument, self.expected, self.received = "rule", f"one of {self.available}", repr(rule_id)
        super().__init__(f"rule: expected one of {self.available}, received {rule_id!r}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])

    def __reduce__(self):  # pickled by training workers: rebuilt from its own arguments, not from the message
        return (type(self), (self.rule_id, self.available))


class UnknownBackendError(HopfieldMasksError, KeyError):
    """No storage backend is registered under the requested id."""

    def __init__(self, backend_id: str, available: list[str]) -> None:
        self.backend_id = backend_id
        self.available = list(available)
        self.argument, self.expected, self.received = "backend", f"one of {self.available}", repr(backend_id)
        super().__init__(f"backend: expected one of {self.available}, received {backend_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return (type(self), (self.backend_id, self.available))


class TaskNotFoundError(HopfieldMasksError, KeyError):
    """A mask bank or reservoir has no task with the requested id."""

    def __init__(self, task: object, available: list[object]) -> None:
        self.task = task
        self.available = list(available)
        shown = self.available if len(self.available) <= 20 else self.available[:20] + ["..."]
        super().__init__(f"task: expected one of {shown}, received {task!r}")

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self):
        return (type(self), (self.task, self.available))


class StorageFormatError(HopfieldMasksError, ValueError):
    """A file exists but is not a readable mask bank or reservoir (not HDF5, truncated, wrong layout).

    ``path`` names the file; ``reason`` says what is wrong with it.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class BankFileNotFoundError(HopfieldMasksError, FileNotFoundError):
    """A mask bank or reservoir file (or the folder it should be written in) does not exist.

    ``path`` names the file; ``reason`` says what is missing (default ``"no such file"``).
    """

    def __init__(self, path: object, reason: str = "no such file") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class FileWriteError(HopfieldMasksError, OSError):
    """A file could not be written (permissions, full disk...); the existing file, if any, is untouched.

    ``path`` names the destination; ``reason`` is the operating system's message.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot be written ({reason})")

    def __str__(self) -> str:
        return f"{self.path}: cannot be written ({self.reason})"

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class BankLockedError(HopfieldMasksError, TimeoutError):
    """Another process holds a bank's lock for longer than the timeout (or the file system cannot lock).

    ``path`` names the bank; ``reason`` says who holds it and how long this process waited.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class HopfieldMasksWarning(UserWarning):
    """Base class of the warnings issued by :mod:`hopfield_masks`."""


class CapacityWarning(HopfieldMasksWarning):
    """More patterns are stored than the learning rule's theoretical capacity."""


class ConvergenceWarning(HopfieldMasksWarning):
    """Recall stopped at ``max_steps`` before reaching a fixed point."""
