"""supsup_core.inference."""
