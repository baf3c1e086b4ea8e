"""supsup_core.training."""
