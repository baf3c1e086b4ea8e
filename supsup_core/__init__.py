"""supsup_core: Supermasks in Superposition in PyTorch (CPU or CUDA).

May import :mod:`hopfield_masks`; never imports the CLI.
"""

__version__ = "0.1.0"
