"""supsup_core.data."""
