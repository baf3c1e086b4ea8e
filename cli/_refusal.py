"""Library errors as the user reads them: the option they typed, not the library's argument, and a value that works.

The libraries raise errors naming their Python arguments (``budget: expected ...``,
``n_tasks: expected ...``).  A command shows the option instead (``--budget``, ``--tasks``):
an argument whose option has the same name is found in the command's signature, and
:data:`LIBRARY_TO_OPTION` -- the one mapping -- names the others.  A file the message
names is never shown as an option.  When the error knows a value that works, the message
ends with it: a budget too small for the bank's masks ends ``(try --budget 1.5MB)``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import typer

__all__ = ["LIBRARY_TO_OPTION", "refusal", "as_cli_message"]

#: Library arguments that a command exposes under another option name (library name -> command parameter).
#: ``"function:argument"`` names the argument of one library function (and whatever it calls): the stream's
#: ``seed`` of :func:`supsup_core.data.benchmark_stream` is ``--stream-seed``, not the model's ``--seed``.
LIBRARY_TO_OPTION = {
    "er_sigma": "sparsity", "classes_per_task": "split", "n_tasks": "tasks", "factory": "model",
    "data_dir": "data", "benchmark_stream:seed": "stream_seed", "make_stream:seed": "stream_seed",
    "make_stream:name": "benchmark",
}


def _library_calls(exc: BaseException) -> list[str]:
    """Names of the functions the exception went through, innermost first."""
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names[::-1]


def _parameter_for(argument: str, exc: BaseException) -> str:
    for name in _library_calls(exc):
        qualified = LIBRARY_TO_OPTION.get(f"{name}:{argument}")
        if qualified is not None:
            return qualified
    return LIBRARY_TO_OPTION.get(argument, argument)


def _is_path_argument(argument: str, values: dict[str, Any]) -> bool:
    """True when ``argument`` is a file the user named (a path), not a library argument."""
    if not argument.isidentifier():
        return True  # a path ("conc/x.h5", "masks.h5"), or a description ("mask 'fc1.weight'")
    return any(isinstance(v, PurePath) and str(v) == argument for v in values.values())


def _option_of(func: Callable[..., Any], argument: str, exc: BaseException, values: dict[str, Any]) -> str | None:
    """The option (``--budget``) of ``func`` that the library argument ``argument`` is, or None."""
    if _is_path_argument(argument, values):
        return None
    parameter = _parameter_for(argument, exc)
    try:
        hint = typing.get_type_hints(func, include_extras=True).get(parameter)
    except Exception:  # pragma: no cover - unresolvable annotations: keep the library's wording
        return None
    options = [info for info in getattr(hint, "__metadata__", ()) if isinstance(info, typer.models.OptionInfo)]
    if not options:
        return None
    declared = [d for d in (options[0].param_decls or ()) if isinstance(d, str) and d.startswith("--")]
    return declared[0].split("/")[0] if declared else "--" + parameter.replace("_", "-")  # --guided/--unguided


def as_cli_message(func: Callable[..., Any], exc: BaseException, values: dict[str, Any] | None = None) -> str:
    """``str(exc)``, with a leading library argument name replaced by the command's option (``budget`` -> ``--budget``).

    The libraries name their Python arguments; the user typed an option.  Only
    arguments that are options of this command are renamed (:data:`LIBRARY_TO_OPTION`
    maps the ones whose option has another name); a file the message names (``values``:
    the command's arguments, some of them paths) is never shown as an option.
    """
    return refusal(func, exc, values or {})["message"]


def _suggestion(exc: BaseException, option: str | None) -> str | None:
    """A value of ``option`` that works, when the error knows one: the smallest budget that fits (``--budget 1.5MB``).
    (Refusals of an unknown choice already list the valid ones.)"""
    minimum = getattr(exc, "minimum", None)
    if isinstance(option, str) and option.startswith("--") and isinstance(minimum, int) and minimum > 0:
        from ._parsing import budget_at_least

        return f"{option} {budget_at_least(minimum)}"
    return None


def refusal(func: Callable[..., Any], exc: BaseException, values: dict[str, Any],
            exit_code: int = 2) -> dict[str, Any]:
    """The fields of the refusal of ``func`` (a command) by ``exc``, called with ``values``: message, argument,
    expected, received, type and exit code (the ``--json`` error object of :mod:`supsup_store_cli._app`)."""
    message, argument = str(exc), getattr(exc, "argument", None)
    expected, received = getattr(exc, "expected", None), getattr(exc, "received", None)
    shown = argument if isinstance(argument, str) else getattr(exc, "path", None)
    if isinstance(argument, str) and message.startswith(f"{argument}:"):
        option = _option_of(func, argument, exc, values)
        if option is not None:
            message, shown = option + message[len(argument):], option
    hint = _suggestion(exc, shown)
    if hint is not None:
        message += f" (try {hint})"
    return {"message": message, "argument": shown, "expected": None if expected is None else str(expected),
            "received": None if received is None else str(received), "type": type(exc).__name__,
            "exit_code": exit_code}
