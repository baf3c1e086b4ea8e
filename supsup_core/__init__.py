"""supsup_core: Supermasks in Superposition in PyTorch (CPU or CUDA), on any ``nn.Module`` and any data.

The names a user needs are importable from here (loaded on first use, so importing
``supsup_core`` alone stays cheap)::

    from supsup_core import wrap, train_task, predict, save_masks, load_masks_into

- :func:`wrap` turns a module into a :class:`SupSupNet` (one supermask per task over a frozen base);
  :func:`build_model` builds the paper's networks from a :class:`ModelConfig`;
- :func:`train_task` / :func:`train_stream` learn masks from a task stream (:mod:`supsup_core.data`);
  :class:`TrainConfig` holds the optimiser settings;
- :func:`predict` infers the task of a batch, with its confidence, outputs and an "unknown" flag
  (:func:`calibrate_unknown`); :func:`infer_task`, :func:`evaluate_gg`, :func:`evaluate_inferred`;
- :func:`save_masks`, :func:`load_masks_into`, :func:`load_model` move masks to and from mask banks.

May import :mod:`hopfield_masks`; never imports the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "wrap": "supsup_core.wrapping",
    "SupSupNet": "supsup_core.wrapping",
    "WrapConfig": "supsup_core.wrapping",
    "build_model": "supsup_core.models",
    "ModelConfig": "supsup_core.config",
    "TrainConfig": "supsup_core.training",
    "train_task": "supsup_core.training",
    "train_stream": "supsup_core.training",
    "evaluate_gg": "supsup_core.training",
    "evaluate_inferred": "supsup_core.training",
    "predict": "supsup_core.inference",
    "calibrate_unknown": "supsup_core.inference",
    "infer_task": "supsup_core.inference",
    "save_masks": "supsup_core.persistence",
    "load_masks_into": "supsup_core.persistence",
    "load_model": "supsup_core.persistence",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'supsup_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
