"""Entry point of the ``supsup-store`` command: imports every command module so each registers itself."""

from __future__ import annotations

import importlib
import sys

from ._app import app

# Each module registers its commands on ``app`` when imported.  The order is the
# order of ``supsup-store --help``.
_COMMAND_MODULES = ("info", "verify", "capacity", "train", "evaluate", "encode", "recall", "demo")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}")


#: Exit code of a command line ended by Ctrl-C (SIGINT), as shells report it (128 + 2).
INTERRUPTED = 130


def main() -> None:
    """Run the ``supsup-store`` command line.

    Ctrl-C (SIGINT) before a command has installed its signal handlers (while Typer builds the command or Click
    parses the arguments) ends it like one during the command: one line on stderr and exit code 130, no traceback.
    """
    try:
        app()
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C): nothing more was done.", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None


__all__ = ["app", "main"]
