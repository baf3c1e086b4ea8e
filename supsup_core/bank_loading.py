"""Rebuild a model from a large mask bank a few tasks at a time (bounded memory).

:func:`supsup_core.persistence.load_model` reads every task of the bank into
boolean arrays and stacks them before packing: at 250 FC 1024-1024 tasks that is
two copies of 490 MB of booleans for 61 MB of packed masks.  :func:`load_model_chunked`
gives the same model (same checks: producer metadata, task names ``0..k-1`` in
order, base-weight fingerprint) while holding at most ``chunk`` tasks unpacked.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from hopfield_masks.backends import open_bank

from .config import ModelConfig
from .errors import BaseNetworkMismatchError, ConfigError
from .models import SupSupNet, build_model

__all__ = ["load_model_chunked", "import_bank_masks"]

TASKS_PER_CHUNK = 16


def import_bank_masks(model: SupSupNet, path: str | os.PathLike, metadata: dict[str, Any], chunk: int = TASKS_PER_CHUNK) -> int:
    """Append the bank's tasks to ``model`` ``chunk`` at a time after checking the fingerprint; return the count."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError("chunk", "an integer >= 1", chunk)
    fingerprint = model.base_fingerprint()
    if fingerprint != metadata.get("base_fingerprint"):
        raise BaseNetworkMismatchError(
            f"{path}: base weights differ from the ones the masks were trained on (fingerprint: file has "
            f"{str(metadata.get('base_fingerprint'))[:16]}..., model has {fingerprint[:16]}...)"
        )
    with open_bank(path, "r") as bank:
        names = list(bank.tasks())
        expected = [str(i) for i in range(len(names))]
        if names != expected:
            raise ConfigError(str(path), f"tasks named {expected[:3]}... in order", names[:5])
        for start in range(0, len(names), chunk):
            model.import_masks([bank.read_task(n) for n in names[start : start + chunk]])
    return len(names)


def load_model_chunked(
    path: str | os.PathLike, device: str | torch.device = "cpu", chunk: int = TASKS_PER_CHUNK
) -> tuple[SupSupNet, dict[str, Any]]:
    """Like :func:`supsup_core.persistence.load_model`, importing ``chunk`` tasks at a time.

    Returns
    -------
    (SupSupNet, dict)
        The model on ``device`` in eval mode, and the bank's metadata.
    """
    from .persistence import read_bank_metadata

    metadata = read_bank_metadata(path)
    model = build_model(ModelConfig.from_dict(dict(metadata["model"]))).to(device)
    import_bank_masks(model, path, metadata, chunk)
    model.eval()
    return model, metadata
