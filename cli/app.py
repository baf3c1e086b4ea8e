"""Entry point of the ``supsup-store`` command: imports every command module so each registers itself."""

from __future__ import annotations

import importlib

from ._app import app

# Each module registers its commands on ``app`` when imported.  The order is the
# order of ``supsup-store --help``.
_COMMAND_MODULES = ("info", "verify", "capacity", "train", "evaluate", "encode", "recall", "demo")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}")


def main() -> None:
    """Run the ``supsup-store`` command line."""
    app()


__all__ = ["app", "main"]
