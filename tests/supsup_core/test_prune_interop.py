"""torch.nn.utils.prune masks -> mask bank -> model, and into a reservoir and back (supsup_core.interop.prune)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import hopfield_masks as hm
from supsup_core.errors import ConfigError
from supsup_core.interop.prune import apply_prune_masks, export_prune_task, prune_masks, write_prune_task

BACKENDS = ["hdf5-packed", "hdf5-sparse", "hdf5-entropy"]


def small_net(seed: int) -> nn.Module:
    """A small conv + MLP net with seeded weights (pruning reads the weights, so the seed fixes the masks)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def pruned(seed: int, method: str, amount: float) -> nn.Module:
    model = small_net(seed)
    for index in (0, 3, 5):
        if method == "l1":
            prune.l1_unstructured(model[index], "weight", amount=amount)
        else:
            prune.random_unstructured(model[index], "weight", amount=amount)
    prune.l1_unstructured(model[3], "bias", amount=amount)  # a second parameter of one module
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method, amount", [("l1", 0.2), ("l1", 0.5), ("l1", 0.9), ("random", 0.3), ("random", 0.7)])
def test_round_trip_model_bank_model_is_bit_exact(tmp_path, backend, method, amount):
    torch.manual_seed(1)  # random_unstructured draws from torch's global generator
    source = pruned(0, method, amount)
    expected = prune_masks(source)
    assert list(expected) == ["0.weight", "3.weight", "3.bias", "5.weight"]
    for mask in expected.values():  # the pruning took what it was asked to take
        assert int((~mask).sum()) == round(amount * mask.size)
    path = tmp_path / "prune.h5"
    with hm.create_bank(path, backend) as bank:
        write_prune_task(bank, "t", source, attrs={"method": method, "amount": amount})
    target = small_net(0)  # the same dense weights, not pruned yet
    with hm.open_bank(path) as bank:
        assert export_prune_task(bank, "t", target) == list(expected)
    for name, mask in prune_masks(target).items():
        np.testing.assert_array_equal(mask, expected[name])
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)  # same masked weights, same outputs


def test_iterative_pruning_checkpoints_switch_on_one_model(tmp_path):
    """Iterative L1 pruning (a PruningContainer per weight): every checkpoint stored, each put back in turn."""
    model = small_net(3)
    checkpoints = []
    path = tmp_path / "checkpoints.h5"
    with hm.create_bank(path, "hdf5-entropy") as bank:
        for step in range(4):
            for index in (0, 3, 5):
                prune.l1_unstructured(model[index], "weight", amount=0.3)  # 30 % of what is left
            checkpoints.append(prune_masks(model))
            write_prune_task(bank, f"step-{step}", model, attrs={"step": step})
    with hm.open_bank(path) as bank:
        assert bank.tasks() == [f"step-{i}" for i in range(4)]
        later_costs_less = bank.task_nbytes("step-3") < bank.task_nbytes("step-0")
    assert later_costs_less  # nested masks: each checkpoint is predictable from the ones before
    target = small_net(3)
    with hm.open_bank(path) as bank:
        for step in (2, 0, 3, 1):  # the first export prunes, the next ones overwrite the mask buffers
            export_prune_task(bank, f"step-{step}", target)
            for name, mask in prune_masks(target).items():
                np.testing.assert_array_equal(mask, checkpoints[step][name])
            module = target[3]
            torch.testing.assert_close(module.weight, module.weight_orig * module.weight_mask, rtol=0, atol=0)


def test_state_dict_checkpoints_import(tmp_path):
    source = pruned(4, "l1", 0.6)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    from_state = prune_masks(state)
    from_model = prune_masks(source)
    assert list(from_state) == list(from_model)
    for name in from_model:
        np.testing.assert_array_equal(from_state[name], from_model[name])


def test_masks_recalled_from_a_reservoir(tmp_path):
    """Prune masks of three models -> bank -> reservoir; the existing recall API returns each one exactly."""
    tasks = []
    path = tmp_path / "bank.h5"
    with hm.create_bank(path, "hdf5-packed") as bank:
        for seed in range(3):
            torch.manual_seed(10 + seed)
            model = pruned(seed, "random" if seed % 2 else "l1", 0.5)
            tasks.append(prune_masks(model))
            write_prune_task(bank, str(seed), model)
    reservoir, _ = hm.encode_bank(path, "1MB", hm.EncodeSettings(rule="pseudo-inverse"))  # block-wise dynamics
    assert reservoir.n_tasks == 3 and list(reservoir.layout.names) == list(tasks[0])
    for i, masks in enumerate(tasks):
        cue = reservoir.cue("noisy:0.05", seed=i, reference=masks)
        recalled, result = reservoir.recall(cue=cue, method="dynamics")
        blocks, _ = reservoir.recall_blocks(cue=cue)
        for name, mask in masks.items():
            np.testing.assert_array_equal(recalled[name], mask)
            np.testing.assert_array_equal(blocks[name], mask)
        apply_prune_masks(small_net(i), recalled)  # recalled masks go straight back onto a model


# ---------------------------------------------------------------------- bad input
def test_non_binary_masks_are_refused():
    model = small_net(0)
    prune.custom_from_mask(model[3], "weight", torch.full((32, 144), 0.5))
    with pytest.raises(ConfigError, match=r"mask '3.weight': expected only 0 and 1 .* received 4608 other values") as e:
        prune_masks(model)
    assert "\n" not in str(e.value)
    bad = {"3.weight": np.full((32, 144), 2)}
    with pytest.raises(ConfigError, match="only 0 and 1"):
        apply_prune_masks(small_net(0), bad)


def test_layers_that_do_not_match_are_refused_and_nothing_changes():
    model = pruned(0, "l1", 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = np.ones((4, 1, 3, 3), bool)
    with pytest.raises(ConfigError, match=r"expected layers of the model \(.*0\.weight.*\), received layer 'fc9.weight'"):
        apply_prune_masks(model, {"0.weight": good, "fc9.weight": np.ones(3, bool)})
    with pytest.raises(ConfigError, match=r"mask '5.weight': expected shape \(10, 32\) .* received shape \(32, 10\)"):
        apply_prune_masks(model, {"0.weight": good, "5.weight": np.ones((32, 10), bool)})
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_unpruned_model_and_wrong_types():
    with pytest.raises(ConfigError, match="some '\\*_mask' buffers"):
        prune_masks(small_net(0))
    with pytest.raises(ConfigError, match="received list"):
        prune_masks([1, 2])
    with pytest.raises(ConfigError, match="MaskBank"):
        write_prune_task("bank.h5", "t", pruned(0, "l1", 0.5))
    with pytest.raises(ConfigError, match="a non-empty mapping"):
        apply_prune_masks(small_net(0), {})
