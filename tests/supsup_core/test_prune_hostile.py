"""supsup_core.interop.prune on tensors that are not plain dense arrays, and all-or-nothing application: every
tensor is read exactly or refused with one line, and a model is changed entirely or not at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from supsup_core.errors import ConfigError
from supsup_core.interop import prune as prune_module
from supsup_core.interop.prune import apply_prune_masks, prune_masks

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning",
                                        "ignore:torch.quantize_per_tensor:UserWarning")

MASK = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _copy(value: torch.Tensor | None) -> object:
    if value is None or value.device.type == "meta":
        return None if value is None else ("meta", tuple(value.shape), value.dtype)
    value = value.detach()
    return ("sparse", value.to_dense()) if value.layout != torch.strided else value.clone()


def _state(model: nn.Module) -> dict:
    """Everything pruning can change: parameters, buffers, plain tensor attributes and forward pre-hooks."""
    out = {}
    for name, module in model.named_modules():
        for key, value in list(module._parameters.items()) + list(module._buffers.items()):
            out[f"{name}.{key}"] = (type(value).__name__, _copy(value))
        for key in ("weight", "bias"):
            if key in module.__dict__:
                out[f"{name}.{key} (attribute)"] = _copy(module.__dict__[key])
        out[f"{name} hooks"] = len(module._forward_pre_hooks)
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn, torch.float16, torch.int8, torch.bool],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_masks_of_any_real_dtype_are_read_exactly(dtype):
    masks = prune_masks({"fc.weight_mask": MASK.to(dtype)})
    np.testing.assert_array_equal(masks["fc.weight"], MASK.numpy().astype(bool))
    model = _net()
    assert apply_prune_masks(model, {"0.weight": MASK.to(dtype)}) == ["0.weight"]
    torch.testing.assert_close(model[0].weight_mask, MASK)


UNREADABLE = {
    "sparse": (lambda shape: torch.ones(shape).to_sparse(), "sparse_coo"),
    "sparse-csr": (lambda shape: torch.ones(shape).to_sparse_csr(), "sparse_csr"),
    "meta": (lambda shape: torch.empty(shape, device="meta"), "meta device"),
    "quantized": (lambda shape: torch.quantize_per_tensor(torch.ones(shape), 1.0, 0, torch.quint8), "quantized"),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_masks_whose_values_cannot_be_read_are_refused_in_one_line(kind):
    make, why = UNREADABLE[kind]
    with pytest.raises(ConfigError, match=f"mask 'fc.weight': expected a dense tensor .*received .*{why}") as exc:
        prune_masks({"fc.weight_mask": make((3, 4))})
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="mask '0.weight': expected only 0 and 1 .* received an array of dtype <U1"):
        apply_prune_masks(_net(), {"0.weight": np.array([["a"] * 4] * 3)})


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_applying_an_unreadable_mask_changes_nothing(kind):
    make, why = UNREADABLE[kind]
    model = _net()
    before = _state(model)
    with pytest.raises(ConfigError, match=f"mask '2.weight': .*{why}"):
        apply_prune_masks(model, {"0.weight": MASK, "2.weight": make((2, 3))})
    assert _same(_state(model), before)


@pytest.mark.parametrize("where", ["meta", "sparse"])
def test_a_layer_that_cannot_be_pruned_is_refused_before_any_layer_changes(where):
    model = _net()
    if where == "meta":
        model[2] = nn.Linear(3, 2, device="meta")
    else:
        model[2].weight = nn.Parameter(model[2].weight.detach().to_sparse())
    before = _state(model)
    with pytest.raises(ConfigError, match=r"model: expected dense parameters with data .* layer '2.weight'"):
        apply_prune_masks(model, {"0.weight": MASK, "2.weight": np.ones((2, 3), bool)})
    assert _same(_state(model), before)


def test_a_buffer_is_not_a_layer_to_prune():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    before = _state(model)
    with pytest.raises(ConfigError, match="received layer '1.running_mean'"):
        apply_prune_masks(model, {"0.weight": MASK, "1.running_mean": np.ones(3, bool)})
    assert _same(_state(model), before)


def test_a_failure_while_applying_puts_every_changed_layer_back(monkeypatch):
    """All or nothing: should pruning still fail at a later layer, the layers changed before it are restored --
    a new reparametrisation taken away, an existing mask buffer given its former values."""
    model = _net()
    prune.custom_from_mask(model[2], "weight", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    before = _state(model)
    calls = []
    original = prune.custom_from_mask

    def fails_second(module, name, mask):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("pruning failed half-way")
        return original(module, name, mask)

    monkeypatch.setattr(prune_module.prune, "custom_from_mask", fails_second)
    masks = {"2.weight": np.ones((2, 3), bool), "0.weight": MASK, "0.bias": np.array([1, 0, 1])}
    with pytest.raises(RuntimeError, match="half-way"):
        apply_prune_masks(model, masks)
    assert calls == ["weight", "bias"]
    assert _same(_state(model), before)
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), _reference(x))
    monkeypatch.setattr(prune_module.prune, "custom_from_mask", original)
    assert apply_prune_masks(model, masks) == list(masks)  # and the model still takes the masks afterwards


def _reference(x: torch.Tensor) -> torch.Tensor:
    model = _net()
    prune.custom_from_mask(model[2], "weight", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    return model(x)
