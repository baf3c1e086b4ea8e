"""The root Typer app, the consoles and the single error boundary shared by every command module.

Command modules import :data:`app` from here and decorate their command
functions with :func:`guarded`, which turns the libraries' expected errors into
a one-line message on stderr and exit code 2 (no traceback). Unexpected
exceptions still propagate with their traceback.

**Refusals.** Every refused command -- a library error caught by :func:`guarded`, or a
usage error Click finds while parsing (an unknown option, a missing argument, a value
that is not an integer or out of its range) -- prints one line ``Error: ...`` on
stderr and exits with code 2.  With ``--json``, the command also prints on stdout
the JSON object :data:`JSON_ERROR_SHAPE` describes::

    {"error": {"message": "--budget: expected ..., received ...", "argument": "--budget",
               "expected": "...", "received": "...", "type": "BudgetError", "exit_code": 2}}

``argument`` is the option or file the message names (``null`` when it names
neither); ``expected`` and ``received`` are ``null`` for errors that are not about
one value (a damaged file, a locked bank).  A library error names the library's
argument (``budget``, ``n_tasks``); the message shows the option the user typed
instead (``--budget``, ``--tasks``: :mod:`supsup_store_cli._refusal`, one mapping), and
ends with a value that works when the error knows one: a budget too small for the
bank's masks ends ``(try --budget 1.5MB)``, the smallest budget that fits to two
significant digits.  A refused choice lists the valid ones.

**Signals.** While a command runs, SIGINT ends it like Ctrl-C (``KeyboardInterrupt``,
exit code 130) and SIGTERM like ``SystemExit(143)``, both raised where the command
is, so that open banks roll back and temporary files are removed -- never inside a
bank's HDF5 work (:func:`hopfield_masks.safety.journal.defer_signal`) nor inside
Numba's compiler, whose ctypes callbacks would swallow the exception (it is raised
as soon as the compiler returns).  A command that ends after a signal was raised in
it -- because some code caught the exception -- still exits 130 or 143.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from hopfield_masks import HopfieldMasksError

from ._help import HelpCommand, render_help
from ._refusal import LIBRARY_TO_OPTION, refusal

console = Console()
err_console = Console(stderr=True)

#: Exit code for a user error (bad input, missing file, budget too small).
USER_ERROR = 2

#: The keys of the ``"error"`` object a refused command prints on stdout with ``--json``.
JSON_ERROR_SHAPE = ("message", "argument", "expected", "received", "type", "exit_code")

#: Help of every command's ``--json`` option ending: what a refusal prints (module docstring).
JSON_ERROR_HELP = 'a refusal: {"error": ...}'

F = TypeVar("F", bound=Callable[..., Any])


# -- usage errors: one line, not a box ---------------------------------------------------------------------------
def _typer_click() -> Any:
    """The Click that Typer runs on (vendored as ``typer._click`` by recent Typer releases, else ``click``)."""
    try:
        from typer import _click
    except ImportError:  # pragma: no cover - older Typer on the real click
        import click as _click
    return _click


def _option_name(param: Any) -> str:
    """How the user names ``param``: its first long option, or the argument's name in capitals."""
    opts = [o for o in getattr(param, "opts", ()) or () if isinstance(o, str)]
    longs = [o for o in opts if o.startswith("--")]
    if longs or opts:
        return (longs or opts)[0]
    return str(getattr(param, "human_readable_name", None) or getattr(param, "name", "") or "value").upper()


_PYDANTIC_KINDS = {"int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
                   "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false"}
_PYDANTIC_BOUNDS = {"greater_than_equal": ("ge", ">="), "less_than_equal": ("le", "<="), "greater_than": ("gt", ">"),
                    "less_than": ("lt", "<")}


def _expected_of(error: dict[str, Any], param: Any) -> str:
    """What a parameter accepts, from the first validation error of its value (``an integer in 1..64``)."""
    kind = error.get("type")
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    number = "an integer" if annotation is int or int in typing.get_args(annotation) else "a number"
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if kind in _PYDANTIC_BOUNDS and low is not None and high is not None:
        return f"{number} in {low}..{high}"
    if kind in _PYDANTIC_BOUNDS:
        key, sign = _PYDANTIC_BOUNDS[kind]
        return f"{number} {sign} {(error.get('ctx') or {}).get(key, '?')}"
    if kind in _PYDANTIC_KINDS:
        return _PYDANTIC_KINDS[kind]
    return str(error.get("msg", "a valid value")).removeprefix("Input should be ").rstrip(".")


def _usage_error(exc: Any) -> dict[str, Any]:
    """A Click usage error as the refusal fields: one-line message, argument, expected, received."""
    click = _typer_click()
    argument = expected = received = None
    param = getattr(exc, "param", None)
    if isinstance(exc, click.exceptions.BadParameter) and not isinstance(exc, click.exceptions.MissingParameter) \
            and param is not None:
        argument = _option_name(param)
        expected, received = str(exc.message), None
        cause = exc.__cause__
        errors = cause.errors() if cause is not None and hasattr(cause, "errors") else []
        if errors:
            expected = _expected_of(errors[0], param)
            if "input" in errors[0]:
                received = repr(errors[0]["input"])
        message = f"{argument}: expected {expected}" + ("" if received is None else f", received {received}")
    else:
        message = exc.format_message()
        if isinstance(exc, click.exceptions.NoSuchOption):
            argument = exc.option_name
        elif isinstance(exc, click.exceptions.MissingParameter) and param is not None:
            argument = _option_name(param)
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return {"message": message, "argument": argument, "expected": expected, "received": received,
            "type": "UsageError", "exit_code": getattr(exc, "exit_code", USER_ERROR)}


def _has_json(command: Any) -> bool:
    return any("--json" in (getattr(p, "opts", None) or ()) for p in getattr(command, "params", ()))


def _takes_json(ctx: Any, args: Sequence[str]) -> bool:
    """True when the command line asked for ``--json`` (before any ``--``) of a command that has that option."""
    args = list(args)
    if "--json" not in (args[: args.index("--")] if "--" in args else args):
        return False
    command = getattr(ctx, "command", None)
    if command is not None and not _has_json(command):  # the error came from the root: find the command named
        commands = getattr(command, "commands", {})
        command = next((commands[a] for a in args if a in commands), None)
    return command is not None and _has_json(command)


def _print_json_error(fields: dict[str, Any]) -> None:
    typer.echo(json.dumps({"error": fields}, indent=2))


class _OneLineErrorsGroup(TyperGroup):
    """The root command: Click's usage errors become one ``Error: ...`` line on stderr (exit 2), not a box; its help
    is rendered like every command's (:func:`~supsup_store_cli._help.render_help`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render_help(self, ctx, formatter)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        click = _typer_click()
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # no arguments: the help, as Typer shows it
            if not standalone_mode:
                raise
            _show_help_error(exc)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            if not standalone_mode:
                raise
            fields = _usage_error(exc)
            err_console.print(f"[bold red]Error:[/] {escape(fields['message'])}", highlight=False, soft_wrap=True)
            if _takes_json(getattr(exc, "ctx", None), argv):
                _print_json_error(fields)
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            err_console.print("Aborted!", highlight=False)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


def _show_help_error(exc: Any) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    except Exception:  # pragma: no cover - Typer without rich: Click's own
        exc.show()


app = typer.Typer(
    name="supsup-store",
    help="Supermasks in Superposition: train supermasks, store them in mask banks and Hopfield reservoirs, recall them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineErrorsGroup,
)


# -- help that reads at 80 columns -----------------------------------------------------------------------------------
#: Panels of ``--help`` (``rich_help_panel=`` on an option).  Options without one (a command's main inputs,
#: ``--json``, ``--help``) show in the "Options" panel, first.
DATA_PANEL = "Data"
MODEL_PANEL = "Model"
TRAINING_PANEL = "Training"
INFERENCE_PANEL = "Task inference"
RECALL_PANEL = "Recall"
RESERVOIR_PANEL = "Reservoir (if recall encodes it first)"
OUTPUT_PANEL = "Output"
COMPUTE_PANEL = "Compute"


def command(name: str) -> Callable[[F], F]:
    """``@command("train")``: register a command on :data:`app`, its ``--help`` rendered by
    :class:`~supsup_store_cli._help.HelpCommand` (one screen at 80 columns)."""
    return app.command(name, cls=HelpCommand)


# -- library errors --------------------------------------------------------------------------------------------------
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
    """Run a command so that expected library errors end it with a message and exit code 2.

    With ``--json`` (a command parameter ``as_json``), a refusal also prints the JSON error object on stdout (module
    docstring).  A signal raised during the command ends it with 130 (SIGINT) or 143 (SIGTERM) even when some code
    caught the exception it raised.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        watch = _SignalWatch.start()
        try:
            result = func(*args, **kwargs)
        except _expected_errors() as exc:
            watch.raise_if_signalled()  # an error a signal caused: the signal decides the exit code
            fields = refusal(func, exc, kwargs, exit_code=USER_ERROR)
            err_console.print(f"[bold red]Error:[/] {escape(fields['message'])}", highlight=False, soft_wrap=True)
            if kwargs.get("as_json") is True:
                _print_json_error(fields)
            raise typer.Exit(code=USER_ERROR) from None
        except BaseException as exc:
            watch.raise_if_signalled(unless=exc)  # Ray, for one, turns the handler's exception into SystemExit(1)
            raise
        else:
            watch.raise_if_signalled()  # a signal whose exception something swallowed
            return result
        finally:
            watch.stop()

    return wrapper  # type: ignore[return-value]


# -- signals ---------------------------------------------------------------------------------------------------------
#: Modules inside which a Python signal handler must not raise: Numba's compiler runs Python callbacks from C
#: (llvmlite's object cache, through ctypes), and the garbage collector runs weakref callbacks (``weakref``:
#: WeakValueDictionary's ``remove``, ``weakref.finalize``) and ``__del__`` methods; an exception raised there is
#: printed ("Exception ignored in ...") and swallowed, and the command would run on to its end.
_NO_RAISE_MODULES = ("numba", "llvmlite", "weakref")


def _inside(frame: Any, modules: tuple[str, ...] = _NO_RAISE_MODULES) -> bool:
    """True when ``frame`` or one of its callers runs code of ``modules`` (or their submodules) or a ``__del__``."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "") if frame.f_globals is not None else ""
        if isinstance(name, str) and name.split(".", 1)[0] in modules or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class _SignalWatch:
    """The handlers of one command run: what was raised, what waits for Numba's compiler to return."""

    current: _SignalWatch | None = None

    def __init__(self) -> None:
        self.raised: int | None = None  # the signal whose exception was raised in the command
        self.waiting: int | None = None  # a signal held while the compiler runs
        self.previous: tuple[Any, Any] | None = None
        self.outer: _SignalWatch | None = None  # the watch of an enclosing guarded call
        self.done = threading.Event()

    @classmethod
    def start(cls) -> _SignalWatch:
        watch = cls()
        if threading.current_thread() is threading.main_thread():
            try:
                watch.previous = (signal.signal(signal.SIGTERM, _terminated), signal.signal(signal.SIGINT, _terminated))
            except (ValueError, OSError):  # pragma: no cover - no signals here
                watch.previous = None
        watch.outer, cls.current = cls.current, watch
        return watch

    def stop(self) -> None:
        self.done.set()
        _SignalWatch.current = self.outer
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous[0])
            signal.signal(signal.SIGINT, self.previous[1])

    def raise_if_signalled(self, unless: BaseException | None = None) -> None:
        """Raise the exception of the signal the command got, unless ``unless`` is already that exception."""
        signum = self.raised or self.waiting
        if signum is None:
            return
        self.waiting = None
        if signum == signal.SIGINT and isinstance(unless, KeyboardInterrupt):
            return
        if signum != signal.SIGINT and isinstance(unless, SystemExit) and unless.code == 128 + signum:
            return
        _raise_for(signum)

    def hold(self, signum: int) -> None:
        """Deliver ``signum`` again to the main thread once it has left the compiler."""
        first = self.waiting is None
        self.waiting = self.waiting or signum
        if first:
            threading.Thread(target=self._redeliver, name="supsup-signal-redeliver", daemon=True).start()

    def _redeliver(self) -> None:
        main = threading.main_thread()
        while not self.done.wait(0.01):
            frame = sys._current_frames().get(main.ident)
            if not _inside(frame):
                signum, self.waiting = self.waiting, None
                if signum is not None and not self.done.is_set():
                    signal.pthread_kill(main.ident, signum)
                return


def _raise_for(signum: int) -> typing.NoReturn:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)  # unwinds: open banks roll back, temporary files are removed


def _terminated(signum: int, frame: Any) -> None:
    from hopfield_masks.safety.journal import defer_signal

    if defer_signal(signum):  # a bank is inside HDF5 work: raised again the moment it is done
        return
    watch = _SignalWatch.current
    if watch is not None and _inside(frame):  # Numba's compiler or a GC callback would swallow it: raised after
        watch.hold(signum)
        return
    if watch is not None:
        watch.raised = signum
    _raise_for(signum)


def _catch_sigterm() -> Any:
    """Make SIGTERM (and SIGINT) unwind the command like an exception, never inside a bank write; return the
    previous (SIGTERM, SIGINT) handlers (kept for callers of the earlier interface; :func:`guarded` installs them)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _terminated), signal.signal(signal.SIGINT, _terminated)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return None


def package_version() -> str:
    """The installed supsup-store's version (``importlib.metadata``); the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("supsup-store")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        from hopfield_masks import __version__

        return __version__


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"supsup-store {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Supermasks in Superposition: train supermasks, store them in mask banks and Hopfield reservoirs, recall them."""


__all__ = ["app", "command", "console", "err_console", "fail", "guarded", "USER_ERROR",
           "JSON_ERROR_SHAPE", "JSON_ERROR_HELP", "LIBRARY_TO_OPTION", "package_version", "DATA_PANEL", "MODEL_PANEL",
           "TRAINING_PANEL", "INFERENCE_PANEL", "RECALL_PANEL", "RESERVOIR_PANEL", "OUTPUT_PANEL", "COMPUTE_PANEL"]
