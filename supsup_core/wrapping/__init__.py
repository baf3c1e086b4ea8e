"""Wrap any ``nn.Module`` into a SupSup model: one supermask per task over a frozen base.

:func:`wrap` is the one path into :class:`SupSupNet`: the built-in networks of
:mod:`supsup_core.models` are plain modules passed through it too.  The module is
converted **in place** (its layers replaced, as PEFT's ``get_peft_model`` or
Avalanche's ``PackNetModel.wrap`` do) and held by the returned model.

Examples
--------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
>>> model = wrap(net, seed=0)
>>> sorted(model.masked_layers()), model.output_size
(['1', '3'], 10)
>>> model.add_task(), model.finish_task(), model.num_tasks
(0, 0, 1)
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> wrap(nn.Sequential(nn.Embedding(10, 4)))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
supsup_core.errors.ConfigError: model: expected layers of the supported types (...) or without parameters, received layer '0' ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..layers import FixedConv, FixedLinear, MaskedConv, MaskedLinear
from .config import BASES, BATCHNORM_MODES, MASK_TARGETS, WrapConfig
from .convert import SUPPORTED_LAYERS, convert_module, supported_names
from .model import SupSupNet, TaskState, task_seed

__all__ = [
    "wrap",
    "SupSupNet",
    "WrapConfig",
    "TaskState",
    "task_seed",
    "BASES",
    "MASK_TARGETS",
    "BATCHNORM_MODES",
    "SUPPORTED_LAYERS",
    "supported_names",
]


def _output_size(module: nn.Module) -> int | None:
    """Outputs of the last Linear/Conv layer in registration order (the head of almost every network)."""
    last = None
    for layer in module.modules():
        if isinstance(layer, (MaskedLinear, FixedLinear)):
            last = layer.weight.shape[0]
        elif isinstance(layer, (MaskedConv, FixedConv)):
            last = layer.weight.shape[0]
    return last


def wrap(module: nn.Module, config: WrapConfig | None = None, *, spec: Mapping[str, Any] | None = None, **options: Any) -> SupSupNet:
    """Turn ``module`` into a :class:`SupSupNet` (converted in place; the module docstring of :mod:`.convert`).

    Parameters
    ----------
    module : nn.Module
        Any module whose layers with parameters are ``nn.Linear``, ``nn.Conv1d/2d/3d``,
        BatchNorm, LayerNorm or GroupNorm (a single such layer is wrapped in an ``nn.Sequential``).
    config : WrapConfig, optional
        The options; ``**options`` are :class:`WrapConfig` fields applied on top
        (``wrap(net, seed=1, mask_mode="topk", er_sigma=8)``).
    spec : mapping, optional
        How to rebuild ``module`` (recorded in banks); default its class name, which
        nobody will import: load masks onto a module you wrap again yourself.

    Returns
    -------
    SupSupNet
        With no tasks yet; ``model.module`` is the converted module.

    Raises
    ------
    ConfigError
        A layer type that cannot be masked (named), nothing to mask, or a bad option;
        ``module`` is then left as it was.
    """
    if config is None:
        config = WrapConfig(**options)
    elif not isinstance(config, WrapConfig):
        raise ConfigError("config", "a WrapConfig or None", type(config).__name__)
    elif options:
        config = config.replace(**options)
    if isinstance(module, SUPPORTED_LAYERS):
        module = nn.Sequential(module)
    convert_module(module, config)
    output_size = config.output_size if config.output_size is not None else _output_size(module)
    if output_size is None:
        raise ConfigError("output_size", "the number of outputs (the module has no Linear/Conv layer to read it from)", None)
    if spec is None:
        spec = {"module": f"{type(module).__module__}.{type(module).__qualname__}", "wrap": config.to_dict()}
    model = SupSupNet(module, config, spec=spec, output_size=output_size)
    return model.train(module.training)
