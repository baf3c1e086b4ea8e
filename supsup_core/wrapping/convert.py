"""Replace the layers of a user's module by masked layers over a frozen base (what :func:`wrap` does to the module).

Which layer becomes what (``masks="weights"`` / ``masks="units"``):

==========================  ===================================  ==================================
module                      weight masks                         unit masks
==========================  ===================================  ==================================
``nn.Linear``               :class:`MaskedLinear`                :class:`FixedLinear` (frozen)
``nn.Conv1d/2d/3d``         :class:`MaskedConv`                  :class:`FixedConv` (frozen)
``nn.BatchNorm1d/2d/3d``    ``batchnorm``: :class:`TaskBatchNorm`,  :class:`UnitMask`
                            :class:`BatchStatNorm` or :class:`FrozenNorm`
``nn.LayerNorm``,           non-affine copy (seeded base) or      the same
``nn.GroupNorm``            :class:`FrozenNorm` (pretrained)
modules without parameters  unchanged (activations, pooling, dropout, flatten, containers)
anything else with          refused, naming the layer and its type
parameters
==========================  ===================================  ==================================

Layers are visited in ``named_modules()`` order (registration order); seeded base
weights are drawn in that order from one ``torch.Generator`` seeded with the
config's seed, on CPU, then moved to the module's device.  Nothing is changed
until every layer has been checked: a refused module is left as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import FixedConv, FixedLinear, MaskedConv, MaskedLayer, MaskedLinear, UnitMask, init_base_weight
from ..layers.norm import BatchStatNorm, FrozenNorm, TaskBatchNorm
from .config import WrapConfig

__all__ = ["convert_module", "WEIGHT_LAYERS", "NORM_LAYERS", "SUPPORTED_LAYERS", "supported_names"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Layers whose weights a task can mask.
WEIGHT_LAYERS = (nn.Linear, *_CONVS)
#: Normalisation layers a wrap keeps (see the module table for what each becomes).
NORM_LAYERS = (*_BATCHNORMS, nn.LayerNorm, nn.GroupNorm)
#: Every layer type with parameters that :func:`convert_module` accepts.
SUPPORTED_LAYERS = (*WEIGHT_LAYERS, *NORM_LAYERS)
_CONVERTED = (MaskedLayer, FixedLinear, FixedConv, TaskBatchNorm, BatchStatNorm, FrozenNorm)


def supported_names() -> str:
    """The supported layer types, for messages."""
    return ", ".join(f"nn.{cls.__name__}" for cls in SUPPORTED_LAYERS)


@dataclass
class _Site:
    """One layer to replace: its parents' attribute slots (a layer may sit in several places) and its name."""

    name: str
    module: nn.Module
    slots: list[tuple[nn.Module, str]]


def _sites(module: nn.Module) -> list[_Site]:
    """Every supported layer of ``module`` in registration order, after refusing what cannot be wrapped."""
    if not isinstance(module, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(module).__name__)
    sites: dict[int, _Site] = {}
    skip: list[str] = []
    for name, sub in module.named_modules(remove_duplicate=False):
        if any(name.startswith(prefix + ".") for prefix in skip):
            continue  # inside a supported layer (weight-norm or pruning parametrisations): the layer is taken whole
        if isinstance(sub, _CONVERTED):
            raise ConfigError("model", "a module that is not wrapped yet", f"layer {name or '(root)'!r} is a {type(sub).__name__}")
        if isinstance(sub, SUPPORTED_LAYERS):
            skip.append(name)
            if not name:
                raise ConfigError("model", "a module that contains layers (not a single layer)", type(sub).__name__)
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            site = sites.setdefault(id(sub), _Site(name, sub, []))
            site.slots.append((parent, attr))
            continue
        own = [p for p, _ in sub.named_parameters(recurse=False)]
        if own:
            raise ConfigError(
                "model", f"layers of the supported types ({supported_names()}) or without parameters",
                f"layer {name or '(root)'!r} ({type(sub).__name__}, parameters {own}), which cannot be masked",
            )
    return list(sites.values())


def _weight(site: _Site, config: WrapConfig, generator: torch.Generator) -> torch.Tensor:
    """The frozen base weight of a Linear/Conv: drawn from the seed, or the module's own (float32, CPU)."""
    layer = site.module
    shape = tuple(layer.weight.shape)
    if config.base == "pretrained":
        return layer.weight.detach().to("cpu", torch.float32).clone()
    fan_in = shape[1] * math.prod(shape[2:])
    return init_base_weight(shape, fan_in, config.init, generator)


def _bias(layer: nn.Module, config: WrapConfig) -> torch.Tensor | None:
    """A pretrained base keeps its bias (frozen); a seeded base has none (REFERENCE §2.1)."""
    if config.base != "pretrained" or getattr(layer, "bias", None) is None:
        return None
    return layer.bias.detach().to("cpu", torch.float32).clone()


def _affine(layer: nn.Module, config: WrapConfig) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    weight = getattr(layer, "weight", None)
    if config.base != "pretrained" or weight is None:
        return None, None
    return weight.detach().to("cpu", torch.float32).clone(), layer.bias.detach().to("cpu", torch.float32).clone()


def _conv_geometry(layer: nn.Module) -> dict:
    return {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups,
            "padding_mode": layer.padding_mode}


def _replacement(site: _Site, config: WrapConfig, generator: torch.Generator) -> nn.Module:
    """The converted layer of ``site`` (base weights drawn from ``generator`` in visiting order)."""
    layer, units = site.module, config.masks == "units"
    mask_options = {"mask_mode": config.mask_mode, "score_init": config.resolved_score_init()}
    if isinstance(layer, nn.Linear):
        weight, bias = _weight(site, config, generator), _bias(layer, config)
        if units:
            return FixedLinear(weight, bias)
        density = config.layer_density(layer.in_features, layer.out_features)
        return MaskedLinear(weight, bias, density=density, **mask_options)
    if isinstance(layer, _CONVS):
        weight, bias = _weight(site, config, generator), _bias(layer, config)
        if units:
            return FixedConv(weight, bias, **_conv_geometry(layer))
        density = config.layer_density(layer.in_channels, layer.out_channels, tuple(layer.kernel_size))
        return MaskedConv(weight, bias, density=density, **_conv_geometry(layer), **mask_options)
    if isinstance(layer, _BATCHNORMS):
        weight, bias = _affine(layer, config)
        if units:
            return UnitMask(layer.num_features, layer.eps, weight=weight, bias=bias)
        if config.batchnorm == "frozen":
            return FrozenNorm(layer)
        if config.batchnorm == "batch":
            return BatchStatNorm(layer.num_features, layer.eps, weight, bias)
        momentum = 0.1 if layer.momentum is None else float(layer.momentum)
        return TaskBatchNorm(layer.num_features, layer.eps, momentum, weight, bias)
    if config.base == "pretrained":
        return FrozenNorm(layer)
    if isinstance(layer, nn.LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps, elementwise_affine=False)
    return nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps, affine=False)


def _check_tensors(module: nn.Module, sites: list[_Site], config: WrapConfig) -> None:
    """Refuse, naming the tensor, what a wrapped module could not run with: other floating dtypes than float32
    (the base is held in float32), empty weights, and pretrained weights that hold no values (the meta device)."""
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise ConfigError("model", "a float32 module (call module.float() first)", f"{name!r} of dtype {tensor.dtype}")
    owners: dict[int, str] = {}
    for site in sites:
        weight = getattr(site.module, "weight", None)
        if isinstance(site.module, WEIGHT_LAYERS) and isinstance(weight, torch.Tensor):
            first = owners.setdefault(id(weight), site.name)
            if first != site.name:  # tied weights would become two bases with independent masks
                raise ConfigError("model", "layers with weights of their own (tied weights cannot be masked apart)",
                                  f"layers {first!r} and {site.name!r} share one weight")
        if isinstance(site.module, WEIGHT_LAYERS) and weight is not None and weight.numel() == 0:
            raise ConfigError("model", "layers with at least one weight", f"layer {site.name!r} of shape {tuple(weight.shape)}")
        if config.base == "pretrained" and weight is not None and weight.device.type == "meta":
            raise ConfigError("base", "'seed' for a module on the meta device (its pretrained weights hold no values)",
                              repr(config.base))


def convert_module(module: nn.Module, config: WrapConfig) -> list[str]:
    """Replace every supported layer of ``module`` in place (module docstring); return the converted layers' names.

    Raises
    ------
    ConfigError
        ``module`` is not a module, holds a layer with parameters of another type (named),
        is already wrapped, or has nothing to mask; ``module`` is then unchanged.
    """
    if not isinstance(config, WrapConfig):
        raise ConfigError("config", "a WrapConfig", type(config).__name__)
    sites = _sites(module)
    _check_tensors(module, sites, config)
    maskable = (_BATCHNORMS if config.masks == "units" else WEIGHT_LAYERS)
    if not any(isinstance(site.module, maskable) for site in sites):
        kinds = "BatchNorm layers" if config.masks == "units" else "nn.Linear or nn.Conv1d/2d/3d layers"
        raise ConfigError("model", f"a module with {kinds} to mask (masks={config.masks!r})",
                          f"a {type(module).__name__} with none")
    device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))
    generator = torch.Generator().manual_seed(config.seed)
    replacements = [_replacement(site, config, generator) for site in sites]  # everything built before anything changes
    for site, new in zip(sites, replacements):
        new = new.to(device)
        for parent, attr in site.slots:
            parent._modules[attr] = new
    return [site.name for site in sites]
