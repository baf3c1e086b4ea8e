"""The root Typer app, the consoles and the single error boundary shared by every command module.

Command modules import :data:`app` from here and decorate their command
functions with :func:`guarded`, which turns the libraries' expected errors into
a one-line message on stderr and exit code 2 (no traceback). Unexpected
exceptions still propagate with their traceback.
"""

from __future__ import annotations

import functools
import signal
import threading
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hopfield_masks import HopfieldMasksError, __version__

app = typer.Typer(
    name="supsup-store",
    help="Supermasks in Superposition: train supermasks, store them in mask banks and Hopfield reservoirs, recall them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

#: Exit code for a user error (bad input, missing file, budget too small).
USER_ERROR = 2

F = TypeVar("F", bound=Callable[..., Any])


def _expected_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [HopfieldMasksError]
    try:  # supsup_core is imported lazily: storage-only commands must not pay for torch
        from supsup_core.errors import SupSupError

        errors.append(SupSupError)
    except ImportError:  # pragma: no cover - torch missing
        pass
    return tuple(errors)


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise (``raise fail(...)``)."""
    # escaped: a message may hold square brackets ("pip install 'supsup-store[plot]'") that are not markup
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=USER_ERROR)


def guarded(func: F) -> F:
    """Run a command so that expected library errors end it with a message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _catch_sigterm()
        try:
            return func(*args, **kwargs)
        except _expected_errors() as exc:
            raise fail(_as_cli_message(func, exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])

    return wrapper  # type: ignore[return-value]


def _terminated(signum: int, frame: Any) -> None:
    from hopfield_masks.safety.journal import defer_signal

    if defer_signal(signum):  # a bank is inside HDF5 work: raised again the moment it is done
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)  # unwinds: open banks roll back, temporary files are removed


def _catch_sigterm() -> Any:
    """Make SIGTERM (and SIGINT) unwind the command like an exception, never inside a bank write; return the
    previous (SIGTERM, SIGINT) handlers."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _terminated), signal.signal(signal.SIGINT, _terminated)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return None


#: Library arguments that a command exposes under another option name (library name -> command parameter).
LIBRARY_TO_OPTION = {"er_sigma": "sparsity", "classes_per_task": "split", "n_tasks": "tasks", "factory": "model"}


def _as_cli_message(func: Callable[..., Any], exc: BaseException) -> str:
    """``str(exc)``, with a leading library argument name replaced by the command's option (``budget`` -> ``--budget``).

    The libraries name their Python arguments; the user typed an option.  Only
    arguments that are options of this command are renamed (:data:`LIBRARY_TO_OPTION`
    maps the ones whose option has another name).
    """
    message, argument = str(exc), getattr(exc, "argument", None)
    if not isinstance(argument, str) or not message.startswith(f"{argument}:"):
        return message
    parameter = LIBRARY_TO_OPTION.get(argument, argument)
    try:
        hint = typing.get_type_hints(func, include_extras=True).get(parameter)
    except Exception:  # pragma: no cover - unresolvable annotations: keep the library's wording
        return message
    options = [info for info in getattr(hint, "__metadata__", ()) if isinstance(info, typer.models.OptionInfo)]
    if not options:
        return message
    declared = [d for d in (options[0].param_decls or ()) if isinstance(d, str) and d.startswith("--")]
    return (declared[0] if declared else "--" + parameter.replace("_", "-")) + message[len(argument) :]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"supsup-store {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Supermasks in Superposition: train supermasks, store them in mask banks and Hopfield reservoirs, recall them."""


__all__ = ["app", "console", "err_console", "fail", "guarded", "USER_ERROR"]
