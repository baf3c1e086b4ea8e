"""Tests of supsup_core/guidance.py: the output-objective gradient handed to hopfield_masks' guided recall."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from hopfield_masks.blocks import MaskLayout
from hopfield_masks.errors import PatternError, PatternShapeError
from hopfield_masks.recall.guidance import validate_guidance
from supsup_core.config import ModelConfig
from supsup_core.errors import BaseNetworkMismatchError, ConfigError
from supsup_core.guidance import OutputGuidance, model_layout
from supsup_core.inference.objectives import entropy
from supsup_core.models import SupSupNet, build_model
from tests.strategies import spins

GEOMETRY = {"in_features": 16, "image": 4}  # 4x4 images keep every pattern small
CONFIGS = {
    "lenet": ModelConfig(arch="lenet", hidden=(5, 4), output_size=6, **GEOMETRY),  # weight masks, P = 124
    "bnnet": ModelConfig(arch="bnnet", hidden=(6, 5), output_size=10, **GEOMETRY),  # unit masks, P = 11
}


def _batches(n: int, size: int = 8, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 1, 4, 4, generator=generator) for _ in range(n)]


def _state(layout: MaskLayout, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.array([-1, 1], dtype=np.int8), size=layout.length)  # (P,)


def _dense_state(layout: MaskLayout, seed: int) -> np.ndarray:
    """All-on but for 10% of the entries, at random: ``(P,)`` int8 ±1."""
    return np.where(np.random.default_rng(seed).random(layout.length) < 0.1, -1, 1).astype(np.int8)


def _smallest_relu_input(config: ModelConfig, x: torch.Tensor, layout: MaskLayout, state: np.ndarray) -> float:
    """Smallest |pre-activation| entering a LeNet ReLU (fc1 and fc2 outputs) with the mask of ``state``."""
    model = build_model(config).double()
    flat = _unflatten_float(layout, state.astype(np.float64))
    masks = {n: torch.from_numpy((m + 1.0) / 2.0) for n, m in flat.items()}
    z1 = x.double().flatten(1) @ (model.module.fc1.weight * masks["fc1"]).T  # (B, h1)
    z2 = torch.relu(z1) @ (model.module.fc2.weight * masks["fc2"]).T  # (B, h2)
    return float(min(z1.abs().min(), z2.abs().min()))


def _unflatten_float(layout: MaskLayout, values: np.ndarray) -> dict[str, np.ndarray]:
    """Split a flat float vector by the layout (MaskLayout.unflatten makes bool masks; here values are real)."""
    return {name: values[part].reshape(shape) for (name, part), shape in zip(layout.slices().items(), layout.shapes)}


def _finite_differences(config: ModelConfig, x: torch.Tensor, layout: MaskLayout, state: np.ndarray,
                        eps: float = 1e-7) -> np.ndarray:
    """Central differences, along every coordinate of the state, of the mean entropy of a float64 copy
    of the model with the continuous mask ``m = (s + 1) / 2``, ``(P,)``.

    float64 and a tiny step keep both the truncation error and the chance of stepping over a ReLU kink negligible.
    """
    model = build_model(config).double()
    x64 = x.double()

    def objective(s: np.ndarray) -> float:
        masks = {name: torch.from_numpy((m + 1.0) / 2.0) for name, m in _unflatten_float(layout, s).items()}
        with torch.no_grad():
            return float(entropy(model(x64, masks=masks)).mean())

    s = state.astype(np.float64)
    grad = np.empty(s.size)
    for i in range(s.size):
        step = np.zeros_like(s)
        step[i] = eps
        grad[i] = (objective(s + step) - objective(s - step)) / (2 * eps)
    return grad


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def arch(request) -> str:
    """Both kinds of masks: LeNet weight masks and BNNet unit masks."""
    return request.param


class TestModelLayout:
    def test_layout_follows_export_masks(self):
        """model_layout lists the masked layers in export order with their mask shapes."""
        model = build_model(CONFIGS["lenet"])
        model.add_task()
        model.finish_task()
        masks = model.export_masks(0)
        layout = model_layout(model)
        assert layout.names == tuple(masks) == ("fc1", "fc2", "fc3")
        assert layout.shapes == tuple(m.shape for m in masks.values()) and layout.length == 124

    def test_unit_mask_layout(self):
        """BNNet's layout is one entry per hidden unit."""
        assert model_layout(build_model(CONFIGS["bnnet"])) == MaskLayout(("unit1", "unit2"), ((6,), (5,)))


class TestGradient:
    def test_entropy_gradient_matches_finite_differences(self, arch):
        """d(mean entropy)/d(state) equals central finite differences of a float64 copy, for every coordinate."""
        config = CONFIGS[arch]
        model = build_model(config)
        x = _batches(1)[0]
        guidance = OutputGuidance(model, [x])
        # BNNet's Swish is smooth anywhere; LeNet's ReLUs are not, so its state keeps every ReLU input off 0
        state = _state(guidance.layout, seed=3) if arch == "bnnet" else _dense_state(guidance.layout, seed=0)
        if arch == "lenet":
            assert _smallest_relu_input(config, x, guidance.layout, state) > 1e-4  # precondition of the check
        grad = guidance.gradient(state)
        reference = _finite_differences(config, x, guidance.layout, state)
        assert grad.dtype == np.float64 and grad.shape == (guidance.layout.length,)
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())

    @settings(max_examples=10)
    @given(state=spins(124))
    def test_entropy_gradient_matches_autograd_for_any_state(self, state):
        """For any ±1 state the gradient is half the autograd gradient with respect to the float mask m = (s+1)/2."""
        config = CONFIGS["lenet"]
        model = build_model(config)
        x = _batches(1, seed=1)[0]
        layout = model_layout(model)
        grad = OutputGuidance(model, [x]).gradient(state)
        masks = {n: torch.tensor((m + 1.0) / 2.0, requires_grad=True)
                 for n, m in _unflatten_float(layout, state.astype(np.float64)).items()}
        value = entropy(build_model(config).double()(x.double(), masks=masks)).mean()
        reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, list(masks.values()))]).numpy() / 2
        np.testing.assert_allclose(grad, reference, rtol=1e-3, atol=1e-5 * (np.abs(reference).max() + 1e-12))

    def test_g_gradient_flows_only_through_superfluous_outputs(self):
        """With objective G the gradient is that of sum_j>=r softmax_j * z_j (softmax held fixed), halved."""
        config = CONFIGS["lenet"]  # 6 outputs, 4 of them real
        model = build_model(config)
        x = _batches(1, seed=2)[0]
        layout = model_layout(model)
        state = _state(layout, seed=4)
        grad = OutputGuidance(model, [x], objective="G", real_classes=4).gradient(state)
        masks = {n: torch.tensor((m + 1.0) / 2.0, requires_grad=True)
                 for n, m in _unflatten_float(layout, state.astype(np.float64)).items()}
        z = build_model(config).double()(x.double(), masks=masks)  # (B, 6)
        surrogate = (torch.softmax(z, dim=1).detach()[:, 4:] * z[:, 4:]).sum(dim=1).mean()
        reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(surrogate, list(masks.values()))]) / 2
        np.testing.assert_allclose(grad, reference.numpy(), rtol=1e-3, atol=1e-7)
        assert np.abs(grad).max() > 0

    def test_batches_are_cycled_one_per_call(self, arch):
        """Call k uses batch k mod n: the third of two batches repeats the first, and calls are counted."""
        model = build_model(CONFIGS[arch])
        guidance = OutputGuidance(model, _batches(2, seed=5))
        state = _state(guidance.layout, seed=6)
        g1, g2, g3 = (guidance.gradient(state) for _ in range(3))
        np.testing.assert_array_equal(g1, g3)
        assert not np.array_equal(g1, g2) and guidance.calls == 3

    def test_gradient_leaves_the_model_alone(self):
        """A gradient call accumulates no .grad anywhere and keeps the model's training flag."""
        model = build_model(CONFIGS["lenet"]).eval()
        guidance = OutputGuidance(model, _batches(1))
        guidance.gradient(_state(guidance.layout, seed=0))
        assert not model.training
        assert all(t.grad is None for t in [*model.parameters(), *model.buffers()])

    def test_satisfies_the_storage_layers_guidance_protocol(self):
        """hopfield_masks accepts an OutputGuidance as a Guidance object."""
        guidance = OutputGuidance(build_model(CONFIGS["bnnet"]), _batches(1))
        assert validate_guidance(guidance) is guidance

    def test_objective_value_of_a_task_state_is_the_task_entropy(self, arch):
        """objective_value of a finished task's state equals the mean entropy of the model set to that task."""
        model: SupSupNet = build_model(CONFIGS[arch])
        rng = np.random.default_rng(0)
        layout = model_layout(model)
        model.import_masks([{n: rng.random(s) < 0.5 for n, s in zip(layout.names, layout.shapes)}])
        x = _batches(1, seed=7)[0]
        guidance = OutputGuidance(model, [x])
        state = guidance.layout.flatten_spins(model.export_masks(0))
        model.set_task(0)
        with torch.no_grad():
            expected = float(entropy(model(x)).mean())
        assert guidance.objective_value(state) == pytest.approx(expected, rel=1e-5)
        other = _batches(1, seed=8)[0]
        with torch.no_grad():
            expected_other = float(entropy(model(other)).mean())
        assert guidance.objective_value(state, other) == pytest.approx(expected_other, rel=1e-5)


class TestErrors:
    def test_layout_of_another_model_is_refused(self):
        """A layout that is not the model's raises BaseNetworkMismatchError naming 'layout'."""
        other = model_layout(build_model(CONFIGS["bnnet"]))
        with pytest.raises(BaseNetworkMismatchError, match="layout"):
            OutputGuidance(build_model(CONFIGS["lenet"]), _batches(1), other)

    def test_the_models_own_layout_is_accepted(self):
        """Passing the model's own layout is the same as passing none."""
        model = build_model(CONFIGS["lenet"])
        assert OutputGuidance(model, _batches(1), model_layout(model)).layout == model_layout(model)

    @pytest.mark.parametrize(
        "batches, match", [([], "batches"), ([np.zeros((8, 16), np.float32)], "batches")]
    )
    def test_bad_batches_are_refused(self, batches, match):
        """No batches, or batches that are not tensors, raise ConfigError naming 'batches'."""
        with pytest.raises(ConfigError, match=match):
            OutputGuidance(build_model(CONFIGS["lenet"]), batches)

    @pytest.mark.parametrize("kwargs", [{"objective": "KL"}, {"objective": "G", "real_classes": 6},
                                        {"real_classes": 0}])
    def test_bad_objectives_are_refused(self, kwargs):
        """An unknown objective, G without superfluous outputs, or a non-positive class count raise ConfigError."""
        with pytest.raises(ConfigError):
            OutputGuidance(build_model(CONFIGS["lenet"]), _batches(1), **kwargs)

    def test_state_of_the_wrong_length(self):
        """A state whose length is not the layout's raises PatternShapeError naming 'state'."""
        guidance = OutputGuidance(build_model(CONFIGS["lenet"]), _batches(1))
        with pytest.raises(PatternShapeError, match="state"):
            guidance.gradient(np.ones(123, np.int8))

    def test_batch_of_states_is_refused(self):
        """Several states at once raise ConfigError: guidance takes one flat state."""
        guidance = OutputGuidance(build_model(CONFIGS["bnnet"]), _batches(1))
        with pytest.raises(ConfigError, match="state"):
            guidance.gradient(np.ones((2, 11), np.int8))

    def test_state_values_must_be_spins(self):
        """A 0/1 mask given as a state raises PatternError (states are ±1)."""
        guidance = OutputGuidance(build_model(CONFIGS["bnnet"]), _batches(1))
        with pytest.raises(PatternError, match="state"):
            guidance.gradient(np.ones(11, np.int8) - np.eye(1, 11, dtype=np.int8)[0])

    def test_inputs_of_the_wrong_geometry_fail_with_a_config_error(self):
        """Batches of 28x28 images for a 4x4 model raise ConfigError naming the input when the gradient is taken."""
        guidance = OutputGuidance(build_model(CONFIGS["lenet"]), [torch.zeros(4, 1, 28, 28)])
        with pytest.raises(ConfigError, match="x"):
            guidance.gradient(np.ones(124, np.int8))
