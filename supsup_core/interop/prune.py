"""``torch.nn.utils.prune`` masks in and out of mask banks (and from there into reservoirs).

A model pruned with ``torch.nn.utils.prune`` keeps, for every pruned parameter
``<module>.<param>``, a buffer ``<module>.<param>_mask`` (0/1, the parameter's
dtype and shape) and the dense original in ``<module>.<param>_orig``.  Here a
pruned layer is named ``"<module>.<param>"`` (``"fc1.weight"``), which is also
the layer name in the bank, so a bank task is exactly one model's prune masks:

- :func:`prune_masks` reads those buffers from a model or from a checkpoint
  ``state_dict`` into ``{"fc1.weight": bool ndarray, ...}``;
- :func:`write_prune_task` stores them as one bank task (a checkpoint, a task of a
  continual-learning method, ...); :func:`hopfield_masks.encode_bank` then puts
  every task into a reservoir, and :meth:`hopfield_masks.Reservoir.recall`
  brings them back;
- :func:`apply_prune_masks` / :func:`export_prune_task` put masks back onto a model
  with ``prune.custom_from_mask`` (or into its existing ``*_mask`` buffers), after
  checking every layer name, shape and value first, so a bad input changes nothing.

Examples
--------
>>> import os, tempfile, torch
>>> from torch.nn.utils import prune
>>> import hopfield_masks as hm
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> prune.l1_unstructured(model[0], "weight", amount=0.5) and None
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "prune.h5")
>>> with hm.create_bank(path, "hdf5-packed") as bank:
...     write_prune_task(bank, "step-0", model)
>>> fresh = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> with hm.open_bank(path) as bank:
...     export_prune_task(bank, "step-0", fresh)
['0.weight']
>>> bool(torch.equal(fresh[0].weight_mask, model[0].weight_mask))
True
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from hopfield_masks.backends import MaskBank

from ..errors import ConfigError

__all__ = ["MASK_SUFFIX", "prune_masks", "write_prune_task", "apply_prune_masks", "export_prune_task"]

#: Suffix ``torch.nn.utils.prune`` gives the mask buffer of a pruned parameter.
MASK_SUFFIX = "_mask"


def _unusable(tensor: torch.Tensor) -> str | None:
    """Why the values of ``tensor`` cannot be read as they are (None when they can)."""
    if getattr(tensor, "is_nested", False):
        return "a nested tensor"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    if tensor.is_quantized:
        return f"a quantized tensor ({str(tensor.dtype).removeprefix('torch.')})"
    if tensor.device.type == "meta":
        return "a tensor on the meta device (no data)"
    return None


def _binary(name: str, value: object) -> np.ndarray:
    """The 0/1 values of ``value`` (a tensor or an array) as a bool ndarray; a one-line error naming ``name`` otherwise.

    A tensor must be dense, not quantized and hold data (not on the meta device); any real or bool dtype is read
    (bfloat16 and float8 through float32, which holds 0 and 1 exactly).
    """
    expected = "only 0 and 1 (a torch.nn.utils.prune mask)"
    if isinstance(value, torch.Tensor):
        why = _unusable(value)
        if why is not None:
            raise ConfigError(f"mask {name!r}", "a dense tensor with data of 0s and 1s (not sparse, nested, quantized "
                              "or on the meta device)", why)
        values = value.detach().cpu()
        if values.is_floating_point() and values.dtype not in (torch.float16, torch.float32, torch.float64):
            values = values.float()  # bfloat16, float8: NumPy has no such dtype; 0 and 1 are exact in float32
        try:
            array = values.resolve_conj().resolve_neg().numpy()
        except (TypeError, RuntimeError) as exc:
            raise ConfigError(f"mask {name!r}", expected, f"a tensor of dtype {values.dtype} ({exc})") from None
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"mask {name!r}", expected, f"{type(value).__name__} ({exc})") from None
    if array.dtype.kind not in "biufc":
        raise ConfigError(f"mask {name!r}", expected, f"an array of dtype {array.dtype}")
    if array.dtype != np.bool_:
        bad = ~((array == 0) | (array == 1))
        if bool(bad.any()):
            first = array[bad].flatten()[0].item()
            raise ConfigError(f"mask {name!r}", expected,
                              f"{int(bad.sum())} other values of {array.size}, e.g. {first!r}")
    return array.astype(bool)


def prune_masks(source: nn.Module | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The prune masks of a model or a ``state_dict``: ``{"<module>.<param>": bool ndarray}``, in module order.

    From a module: every ``*_mask`` buffer whose parameter ``*_orig`` exists (what
    ``torch.nn.utils.prune`` creates).  From a mapping: every key ending in ``_mask``.

    Raises
    ------
    ConfigError
        ``source`` is neither a module nor a mapping, holds no prune mask, or a
        mask holds a value other than 0 and 1 or is a tensor whose values cannot
        be read (sparse, nested, quantized, on the meta device).  Every mask is
        checked before any is converted.
    """
    found: dict[str, torch.Tensor] = {}
    if isinstance(source, nn.Module):
        for module_name, module in source.named_modules():
            for buffer_name, buffer in module.named_buffers(recurse=False):
                param = buffer_name[: -len(MASK_SUFFIX)]
                if buffer_name.endswith(MASK_SUFFIX) and hasattr(module, param + "_orig"):
                    found[f"{module_name}.{param}" if module_name else param] = buffer
    elif isinstance(source, Mapping):
        for key, value in source.items():
            if isinstance(key, str) and key.endswith(MASK_SUFFIX) and isinstance(value, torch.Tensor):
                found[key[: -len(MASK_SUFFIX)]] = value
    else:
        raise ConfigError("source", "a torch.nn.Module or a state_dict mapping", type(source).__name__)
    if not found:
        raise ConfigError("source", "a model pruned with torch.nn.utils.prune (some '*_mask' buffers)", "no prune masks")
    return {name: _binary(name, tensor) for name, tensor in found.items()}


def write_prune_task(
    bank: MaskBank, task: str, source: nn.Module | Mapping[str, Any], *,
    attrs: Mapping[str, Any] | None = None, overwrite: bool = False,
) -> None:
    """Store the prune masks of ``source`` (model or ``state_dict``) as task ``task`` of ``bank``."""
    if not isinstance(bank, MaskBank):
        raise ConfigError("bank", "an open hopfield_masks MaskBank", type(bank).__name__)
    bank.write_task(task, prune_masks(source), attrs=attrs, overwrite=overwrite)


def _targets(model: nn.Module, masks: Mapping[str, object]) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """Check every layer of ``masks`` against ``model``; return (module, param, mask tensor) for each.

    Nothing is changed here; everything :func:`apply_prune_masks` needs is checked: the layer is a parameter of
    the model (or a pruned one), dense and with data, and the mask has its shape and only 0s and 1s.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    if not isinstance(masks, Mapping) or not masks:
        raise ConfigError("masks", "a non-empty mapping '<module>.<param>' -> 0/1 array", type(masks).__name__)
    modules = dict(model.named_modules())
    pruneable = [  # parameter names as prune sees them: a pruned "weight_orig" is the layer "weight"
        ".".join(filter(None, (m, p.removesuffix("_orig"))))
        for m, module in modules.items() for p, _ in module.named_parameters(recurse=False)
    ]
    targets = []
    for name, mask in masks.items():
        module_name, _, param = name.rpartition(".") if isinstance(name, str) else ("", "", "")
        module = modules.get(module_name)
        current = getattr(module, param, None) if module is not None and param else None
        parameters = getattr(module, "_parameters", {}) if module is not None else {}
        pruned = param + "_orig" in parameters and param + MASK_SUFFIX in getattr(module, "_buffers", {})
        if not isinstance(current, torch.Tensor) or not (param in parameters or pruned):
            shown = ", ".join(pruneable[:8]) + (" ..." if len(pruneable) > 8 else "")
            raise ConfigError("masks", f"layers of the model ({shown})", f"layer {name!r}")
        for tensor in (current, parameters.get(param + "_orig"), getattr(module, param + MASK_SUFFIX, None)):
            why = _unusable(tensor) if isinstance(tensor, torch.Tensor) else None
            if why is not None:
                raise ConfigError("model", "dense parameters with data to prune (not sparse, nested, quantized or on "
                                  "the meta device)", f"layer {name!r}: {why}")
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else tuple(np.shape(mask)) if not isinstance(
            mask, (str, bytes)) else ()
        if shape != tuple(current.shape):
            raise ConfigError(f"mask {name!r}", f"shape {tuple(current.shape)} (the model's)", f"shape {shape}")
        flat = _binary(name, mask)  # raises on values other than 0/1, and on tensors without readable values
        targets.append((module, param, torch.as_tensor(flat, dtype=current.dtype, device=current.device)))
    return targets


def _undo(module: nn.Module, param: str, saved: torch.Tensor | None) -> None:
    """Put ``module.param`` back as it was before :func:`apply_prune_masks` touched it.

    ``saved``: the mask buffer's former values (the parameter was pruned already), or None (it was not: the
    reparametrisation ``prune.custom_from_mask`` added is taken away again).
    """
    with torch.no_grad():
        if saved is not None:
            getattr(module, param + MASK_SUFFIX).copy_(saved)
            setattr(module, param, getattr(module, param + "_orig") * getattr(module, param + MASK_SUFFIX))
            return
        if param + "_orig" not in module._parameters:
            return  # custom_from_mask failed before changing anything
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, prune.BasePruningMethod) and getattr(hook, "_tensor_name", None) == param:
                del module._forward_pre_hooks[key]
        original = module._parameters.pop(param + "_orig")
        module._buffers.pop(param + MASK_SUFFIX, None)
        if param in module.__dict__:
            del module.__dict__[param]
        module.register_parameter(param, original)


def apply_prune_masks(model: nn.Module, masks: Mapping[str, object]) -> list[str]:
    """Put ``masks`` onto ``model`` as prune masks; return the layer names, in order.

    A parameter that is not pruned yet gets ``prune.custom_from_mask``; one that
    is already pruned gets its ``*_mask`` buffer overwritten in place (its
    ``*_orig`` weights are kept, so the model can switch between tasks), and the
    pruned weight is recomputed at once.  Everything is checked before anything
    is changed, and should a layer still fail, the ones changed before it are put
    back: the model is changed entirely or not at all.

    Raises
    ------
    ConfigError
        A layer the model does not have (or a buffer, not a parameter), a parameter
        that cannot be pruned (sparse, quantized, on the meta device), a shape different
        from the model's, a mask that is not a dense array of 0s and 1s.
    """
    targets = _targets(model, masks)
    names = list(masks)
    done: list[tuple[nn.Module, str, torch.Tensor | None]] = []
    try:
        with torch.no_grad():
            for module, param, mask in targets:
                if hasattr(module, param + MASK_SUFFIX) and hasattr(module, param + "_orig"):
                    buffer = getattr(module, param + MASK_SUFFIX)
                    done.append((module, param, buffer.detach().clone()))
                    buffer.copy_(mask)
                    setattr(module, param, getattr(module, param + "_orig") * buffer)
                else:
                    done.append((module, param, None))
                    prune.custom_from_mask(module, param, mask)
    except BaseException:  # all or nothing: the layers changed so far are put back
        for module, param, saved in reversed(done):
            _undo(module, param, saved)
        raise
    return names


def export_prune_task(bank: MaskBank, task: str, model: nn.Module) -> list[str]:
    """Put task ``task`` of ``bank`` onto ``model`` as prune masks (:func:`apply_prune_masks`)."""
    if not isinstance(bank, MaskBank):
        raise ConfigError("bank", "an open hopfield_masks MaskBank", type(bank).__name__)
    return apply_prune_masks(model, bank.read_task(task))
