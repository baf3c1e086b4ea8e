"""supsup_core.layers."""
