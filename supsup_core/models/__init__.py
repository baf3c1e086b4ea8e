"""The built-in networks, and every way to get a SupSup model: built-in, a user's factory, or a bank's description.

The built-ins are plain PyTorch modules (:mod:`.mnist`, :mod:`.resnet`) passed through
:func:`~supsup_core.wrapping.wrap` like any user's module; :func:`build_model` does both
from a :class:`~supsup_core.config.ModelConfig`.

Base weights are drawn on CPU from ``torch.Generator().manual_seed(seed)`` in layer
order and only then moved to the device, so every machine and device gets
bit-identical weights; they are buffers, never parameters.  Task ``t``'s scores
come from a generator seeded with ``(seed, t)``.

Examples
--------
>>> import torch
>>> model = build_model(ModelConfig(arch="lenet", hidden=(8, 4), output_size=5))
>>> model.add_task(), model.finish_task(), model.num_tasks
(0, 0, 1)
>>> model(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 5])
>>> sorted(model.export_masks(0))
['fc1', 'fc2', 'fc3']
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..config import ARCHITECTURES, ModelConfig
from ..errors import ConfigError
from ..wrapping import SupSupNet, WrapConfig, task_seed, wrap
from .mnist import MLP, BNNet, ConvNet
from .resnet import GEMResNet18, ResNet, resnet18, resnet50

__all__ = [
    "SupSupNet",
    "build_model",
    "plain_model",
    "skeleton_model",
    "model_entries",
    "check_model_size",
    "MAX_MODEL_ENTRIES",
    "task_seed",
    "load_factory",
    "factory_model",
    "model_from_spec",
    "spec_kind",
    "default_output_size",
    "default_scenario",
    "BUILTIN_MODELS",
    "MLP",
    "BNNet",
    "ConvNet",
    "GEMResNet18",
    "ResNet",
    "resnet18",
    "resnet50",
]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: The built-in networks by name (``ModelConfig.arch``).
BUILTIN_MODELS = ARCHITECTURES
_IMAGE_MODELS = ("gemresnet18", "resnet18", "resnet50")


def default_scenario(arch: str | None, stream_name: str, relabelled: bool) -> str:
    """The scenario a model and stream train in by default: HopSupSup for BNNet, GG for the image networks and for
    relabelled class splits (the paper's GG experiments), GNu otherwise (superfluous outputs, task inferred).

    >>> default_scenario("bnnet", "split-mnist", False), default_scenario("lenet", "permuted", False)
    ('hopsupsup', 'gnu')
    """
    if arch == "bnnet":
        return "hopsupsup"
    if arch in _IMAGE_MODELS or (stream_name == "split" and relabelled):
        return "gg"
    return "gnu"


def default_output_size(arch: str | None, output_classes: int, scenario: str) -> int:
    """Outputs ``s`` of a built-in network: the stream's classes for GG and HopSupSup (unshared labels), else
    at least 100 so task inference has superfluous neurons (REFERENCE §3.3).

    >>> default_output_size("lenet", 10, "gnu"), default_output_size("gemresnet18", 5, "gg")
    (100, 5)
    """
    if scenario in ("gg", "hopsupsup") or arch == "bnnet":
        return output_classes
    return max(100, output_classes)


def plain_model(config: ModelConfig) -> nn.Module:
    """The unwrapped built-in network of ``config`` (PyTorch's default init; :func:`build_model` replaces it)."""
    if not isinstance(config, ModelConfig):
        raise ConfigError("config", "a ModelConfig", type(config).__name__)
    shape = (config.in_channels, config.image, config.image)
    widths, s = config.widths, config.output_size
    if config.arch in ("lenet", "fc1024"):
        return MLP(widths, s, shape)
    if config.arch == "bnnet":
        return BNNet(widths, s, shape)
    if config.arch == "conv":
        return ConvNet(widths, s, shape)
    if config.arch == "gemresnet18":
        return GEMResNet18(s, widths[0], shape)
    return (resnet18 if config.arch == "resnet18" else resnet50)(s, shape)


def build_model(config: ModelConfig, device: str | torch.device | None = None) -> SupSupNet:
    """Build the built-in network of ``config`` wrapped over its seeded base (weights drawn on CPU), on ``device``."""
    model = wrap(plain_model(config), config.wrap_config(), spec=config.to_dict())
    return model if device is None else model.to(device)


#: Largest built-in network (weight and buffer entries) built from a declared configuration: a bank's, or the CLI's.
MAX_MODEL_ENTRIES = 200_000_000


def skeleton_model(config: ModelConfig) -> SupSupNet:
    """The built-in network of ``config`` on PyTorch's ``meta`` device: its shapes, no memory."""
    with torch.device("meta"):
        return build_model(config)


def model_entries(model: nn.Module) -> int:
    """Weight and buffer entries of ``model`` (a skeleton's too)."""
    return sum(int(p.numel()) for p in model.parameters()) + sum(int(b.numel()) for b in model.buffers())


def check_model_size(config: ModelConfig, argument: str) -> None:
    """Refuse a built-in configuration above :data:`MAX_MODEL_ENTRIES` before any memory is allocated for it."""
    entries = model_entries(skeleton_model(config))
    if entries > MAX_MODEL_ENTRIES:
        raise ConfigError(argument, f"a model of at most {MAX_MODEL_ENTRIES:,} entries "
                          "(supsup_core.models.MAX_MODEL_ENTRIES)", f"{entries:,} entries")


def load_factory(text: str) -> Callable[[], nn.Module]:
    """The callable named by ``"package.module:function"`` (imported: only ever from what the user typed).

    The module is looked for in the current folder first, then on ``sys.path`` (as ``python -m`` does).

    Raises
    ------
    ConfigError
        Not of that form, the module cannot be imported, or the name is not callable.
    """
    if not isinstance(text, str) or not _FACTORY.match(text):
        raise ConfigError("model", "a built-in name or MODULE:FACTORY such as mypackage.nets:make_net", repr(text))
    module_name, _, attr = text.partition(":")
    here = os.getcwd()
    added = here not in sys.path
    if added:  # the current folder first, as `python -m` has it: a user's module next to their data
        sys.path.insert(0, here)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("model", f"an importable module for {text!r}", f"{type(exc).__name__}: {exc}") from None
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError("model", f"a callable {attr!r} in module {module_name!r}", type(target).__name__)
    return target


def factory_model(factory: str, config: WrapConfig) -> SupSupNet:
    """Call the user's ``MODULE:FACTORY`` with no arguments and wrap the module it returns with ``config``."""
    make = load_factory(factory)
    try:
        module = make()
    except (Exception, SystemExit) as exc:  # a factory that fails, needs arguments, or exits: one line, not a traceback
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError("model", f"{factory} to return an nn.Module when called with no arguments",
                          f"{type(exc).__name__}{': ' + text if text else ''}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError("model", f"{factory} returning a torch.nn.Module", type(module).__name__)
    return wrap(module, config, spec={"factory": factory, "wrap": config.to_dict()})


def spec_kind(spec: Mapping[str, Any]) -> str:
    """``"builtin"``, ``"factory"`` or ``"module"``: how a bank's model description can be rebuilt."""
    if not isinstance(spec, Mapping):
        raise ConfigError("model", "a JSON object describing the model", type(spec).__name__)
    if "arch" in spec:
        return "builtin"
    return "factory" if "factory" in spec else "module"


def model_from_spec(spec: Mapping[str, Any], factory: str | None = None) -> SupSupNet:
    """Rebuild the model a bank describes: built-ins from their config; a user's model only through ``factory``.

    A bank never makes this toolkit import or run code: for a model made by a factory
    the caller passes the factory (``--model MODULE:FACTORY`` again), and the bank's
    fingerprints then decide whether it is the same model.

    Raises
    ------
    ConfigError
        The description is not rebuildable without a factory, or names another factory.
    """
    kind = spec_kind(spec)
    if kind == "builtin":
        if factory is not None:
            raise ConfigError("model", f"no MODULE:FACTORY for a bank of the built-in {spec.get('arch')!r}", repr(factory))
        return build_model(ModelConfig.from_dict(dict(spec)))
    wrap_config = WrapConfig.from_dict(spec.get("wrap") or {})
    if factory is None:  # what the bank says is shown, never run: repr() keeps its characters from the terminal
        if kind == "factory":
            raise ConfigError("model", "the MODULE:FACTORY that built the bank's model, named again (a bank never makes "
                              "this toolkit import code)", f"a bank whose model was made by {str(spec.get('factory'))!r}")
        raise ConfigError("model", "the module the bank's model was wrapped from, wrapped again, with the masks loaded "
                          "onto it (load_masks_into)", f"a bank of a {str(spec.get('module', 'Python'))!r} module")
    if ":" not in factory:
        raise ConfigError("model", "the MODULE:FACTORY that built this bank's model (it is not a built-in network)",
                          repr(factory))
    return factory_model(factory, wrap_config)
