"""supsup-store command line (import name ``supsup_store_cli``; source folder ``cli/``)."""
