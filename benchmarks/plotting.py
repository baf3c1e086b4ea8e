"""Matplotlib for the benchmark scripts: the Agg backend, or None (with one line on stderr) without the [plot] extra."""

from __future__ import annotations

import sys
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed (json/md still written)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed (pip install 'supsup-store[plot]'): no plot written", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
