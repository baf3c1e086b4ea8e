"""``python -m supsup_store_cli`` runs the ``supsup-store`` command."""

from .app import main

main()
