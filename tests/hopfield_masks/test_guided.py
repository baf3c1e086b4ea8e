"""Tests of hopfield_masks/recall/guided.py: score descent, guided dynamics and the landscape adapter."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from hopfield_masks.errors import InvalidArgumentError, PatternError, PatternShapeError
from hopfield_masks.network import HopfieldNetwork
from hopfield_masks.recall.guidance import FieldGuidance, HammingGuidance
from hopfield_masks.recall.guided import (
    BIAS_PER_RMS,
    EnergyLandscape,
    GuidedRecallResult,
    NetworkLandscape,
    as_landscape,
    guided_dynamics,
    score_descent,
)

N, K = 64, 4
#: Guidance scale comparable to the energy gradient under the reference's knobs (see score_descent's Notes).
SCALE = 2e-3


@pytest.fixture(scope="module")
def memory():
    """A Storkey network of 64 units holding 4 random patterns, and a cue 8 flips away from pattern 0."""
    rng = np.random.default_rng(7)
    patterns = rng.choice(np.array([-1, 1], np.int8), size=(K, N))
    net = HopfieldNetwork(N, "storkey")
    net.store(patterns)
    cue = patterns[0].copy()
    cue[rng.choice(N, 8, replace=False)] *= -1
    return net, patterns, cue


class _Counting:
    """Wraps a guidance and counts the calls to ``gradient``."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def gradient(self, state):
        self.calls += 1
        return self.inner.gradient(state)


class _NanGuidance:
    """A broken guidance whose gradient is all NaN."""

    def gradient(self, state):
        return np.full(state.size, np.nan)


def _torch_reference(weights, cue, field, *, n_steps=30, lr=500.0, momentum=0.9, weight_decay=1e-4, gamma=1.5e-3):
    """The reference code's recovery loop written with torch autograd and torch.optim.SGD; states per step."""
    torch = pytest.importorskip("torch")
    w = torch.tensor(np.asarray(weights, np.float64))
    u = torch.nn.Parameter(torch.tensor(np.asarray(cue, np.float64)))
    opt = torch.optim.SGD([u], lr=lr, momentum=momentum, weight_decay=weight_decay)
    g = None if field is None else torch.tensor(np.asarray(field, np.float64))
    states = []
    for b in range(1, n_steps + 1):
        hard = (u >= 0).to(torch.float64)
        m = u + (hard - u).detach()  # straight-through threshold: forward 1[u >= 0], backward identity
        s = 2 * m - 1
        loss = gamma * (b / n_steps) * (-0.5 * s @ w @ s)
        if g is not None:
            loss = loss + (1 - b / n_steps) * (g @ s)  # a linear objective whose gradient is g
        opt.zero_grad()
        loss.backward()
        opt.step()
        states.append(np.where(u.detach().numpy() >= 0, 1, -1))
    return np.array(states)


def _recorder():
    seen = []
    return seen, lambda step, state: seen.append((step, state))


class TestScoreDescent:
    def test_guidance_overrides_the_cue_attractor(self, memory):
        """From a cue in pattern 0's basin, unguided descent returns pattern 0; Hamming guidance returns the target."""
        net, patterns, cue = memory
        assert np.array_equal(score_descent(net, cue).state, patterns[0])
        for target in patterns[1:]:
            result = score_descent(net, cue, HammingGuidance(target, scale=SCALE))
            np.testing.assert_array_equal(result.state, target)

    def test_guided_from_mean_cue(self, memory):
        """From the reference's start (the mean ±1 pattern) guidance selects each stored pattern exactly."""
        net, patterns, _ = memory
        mean = patterns.mean(axis=0)
        for target in patterns:
            np.testing.assert_array_equal(score_descent(net, mean, HammingGuidance(target, scale=SCALE)).state, target)

    @pytest.mark.parametrize("guided", [False, True])
    def test_matches_torch_sgd_reference(self, memory, guided):
        """Every step's state equals the reference loop written with torch autograd and torch.optim.SGD."""
        net, patterns, cue = memory
        guidance = HammingGuidance(patterns[2], scale=SCALE) if guided else None
        seen, callback = _recorder()
        score_descent(net, cue, guidance, callback=callback)
        expected = _torch_reference(net.weights, cue, None if guidance is None else guidance.gradient(cue))
        np.testing.assert_array_equal(np.array([s for _, s in seen]), expected)

    def test_unguided_is_plain_energy_descent(self, memory):
        """Without guidance the result equals a zero guidance's, reaches the stored pattern and lowers the energy."""
        net, patterns, cue = memory
        plain = score_descent(net, cue)
        zero = score_descent(net, cue, FieldGuidance(np.zeros(N)))
        np.testing.assert_array_equal(plain.state, zero.state)
        np.testing.assert_array_equal(plain.history["flips"], zero.history["flips"])
        np.testing.assert_array_equal(plain.state, patterns[0])
        assert plain.history["energy"][-1] < net.energy(cue)

    def test_oversized_guidance_overshoots_to_the_negated_target(self, memory):
        """With the reference's knobs a guidance far larger than the energy makes the scores swing to -target."""
        net, patterns, cue = memory
        np.testing.assert_array_equal(score_descent(net, cue, HammingGuidance(patterns[1])).state, -patterns[1])
        np.testing.assert_array_equal(
            score_descent(net, cue, HammingGuidance(patterns[1]), weight_decay=0.0).state, patterns[1]
        )

    def test_defaults_are_the_reference_values(self):
        """The knobs default to REFERENCE.md §2.8: 30 steps, lr 500, momentum 0.9, wd 1e-4, gamma 1.5e-3, linear."""
        params = inspect.signature(score_descent).parameters
        got = {k: params[k].default for k in ("n_steps", "lr", "momentum", "weight_decay", "gamma", "ramp")}
        assert got == {"n_steps": 30, "lr": 500.0, "momentum": 0.9, "weight_decay": 1e-4, "gamma": 1.5e-3,
                       "ramp": "linear"}

    def test_history_and_result_fields(self, memory):
        """History has one entry per step, weights ramp linearly, and steps_to_final is the last step that changed."""
        net, patterns, cue = memory
        seen, callback = _recorder()
        result = score_descent(net, cue, HammingGuidance(patterns[1], scale=SCALE), n_steps=12, callback=callback)
        assert isinstance(result, GuidedRecallResult)
        assert result.state.dtype == np.int8 and result.state.shape == (N,) and result.steps_run == 12
        assert [step for step, _ in seen] == list(range(1, 13))
        np.testing.assert_allclose(result.history["objective_weight"], 1 - np.arange(1, 13) / 12)
        np.testing.assert_allclose(result.history["energy_weight"], 1.5e-3 * np.arange(1, 13) / 12)
        states = [cue] + [s for _, s in seen]
        flips = [int(np.count_nonzero(a != b)) for a, b in zip(states[:-1], states[1:])]
        assert result.history["flips"].tolist() == flips
        last = result.steps_to_final
        assert flips[last - 1] > 0 and not any(flips[last:])
        assert result.converged == (flips[-1] == 0)

    def test_guidance_called_while_its_weight_is_positive(self, memory):
        """The guidance is asked once per step, except on the last step of a linear ramp where its weight is 0."""
        net, patterns, cue = memory
        counting = _Counting(HammingGuidance(patterns[1], scale=SCALE))
        score_descent(net, cue, counting, n_steps=10)
        assert counting.calls == 9

    def test_cosine_ramp_also_reaches_the_target(self, memory):
        """The cosine ramp is accepted and guided descent still returns the target."""
        net, patterns, cue = memory
        result = score_descent(net, cue, HammingGuidance(patterns[3], scale=SCALE), ramp="cosine")
        np.testing.assert_array_equal(result.state, patterns[3])
        assert result.history["objective_weight"][-1] == pytest.approx(0.0)

    def test_zero_score_reads_as_kept(self):
        """A unit whose score is exactly 0 reads out as +1 (mask 1[u >= 0]) when nothing moves it."""
        net = HopfieldNetwork(4, "hebbian")  # empty: zero energy gradient
        result = score_descent(net, np.zeros(4), weight_decay=0.0, n_steps=2)
        np.testing.assert_array_equal(result.state, [1, 1, 1, 1])

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"cue_scores": np.zeros(3)}, PatternShapeError, "cue_scores"),
            ({"cue_scores": np.full(N, np.nan)}, InvalidArgumentError, "cue_scores"),
            ({"cue_scores": np.array(["a"] * N)}, InvalidArgumentError, "cue_scores"),
            ({"n_steps": 0}, InvalidArgumentError, "n_steps"),
            ({"lr": float("inf")}, InvalidArgumentError, "lr"),
            ({"momentum": 1.0}, InvalidArgumentError, "momentum"),
            ({"weight_decay": -1.0}, InvalidArgumentError, "weight_decay"),
            ({"gamma": "big"}, InvalidArgumentError, "gamma"),
            ({"ramp": "exp"}, InvalidArgumentError, "ramp"),
            ({"ramp": ["linear"]}, InvalidArgumentError, "ramp"),
            ({"guidance": 5}, InvalidArgumentError, "guidance"),
            ({"guidance": FieldGuidance(np.zeros(3))}, PatternShapeError, "state"),
            ({"landscape": "net"}, InvalidArgumentError, "landscape"),
        ],
    )
    def test_rejects_bad_input(self, memory, kwargs, error, match):
        """Bad cues, knobs, guidances and landscapes raise the package's errors naming the argument."""
        net, _, cue = memory
        args = {"landscape": net, "cue_scores": cue.astype(float), **kwargs}
        with pytest.raises(error, match=match):
            score_descent(args.pop("landscape"), args.pop("cue_scores"), args.pop("guidance", None), **args)


class TestGuidedDynamics:
    def test_guidance_overrides_the_cue_attractor(self, memory):
        """From a cue in pattern 0's basin, plain dynamics return pattern 0; Hamming guidance returns the target."""
        net, patterns, cue = memory
        plain = guided_dynamics(net, cue)
        np.testing.assert_array_equal(plain.state, patterns[0])
        assert plain.converged
        for target in patterns[1:]:
            result = guided_dynamics(net, cue, HammingGuidance(target))
            np.testing.assert_array_equal(result.state, target)
            assert result.converged and result.history["flips"][-1] == 0

    def test_default_strength_is_decisive_across_memories(self):
        """At the default strength Hamming guidance reaches every target in 10 random small memories."""
        for seed in range(10):
            rng = np.random.default_rng(seed)
            patterns = rng.choice(np.array([-1, 1], np.int8), size=(3, 32))
            net = HopfieldNetwork(32, "storkey")
            net.store(patterns)
            cue = patterns[0].copy()
            cue[rng.choice(32, 3, replace=False)] *= -1
            for target in patterns[1:]:
                np.testing.assert_array_equal(guided_dynamics(net, cue, HammingGuidance(target), seed=seed).state, target)

    def test_bias_is_scaled_to_the_local_field(self, memory):
        """The external field is -strength * w * BIAS_PER_RMS * rms(h) / rms(g) * g, computed on the current state."""
        net, patterns, cue = memory
        fields = []

        class Spy(NetworkLandscape):
            def sweep(self, state, external_field, rng):
                fields.append((state.copy(), None if external_field is None else external_field.copy()))
                return super().sweep(state, external_field, rng)

        g = np.linspace(-1.0, 2.0, N)
        guided_dynamics(Spy(net), cue, FieldGuidance(g), strength=0.5, max_sweeps=4, ramp_sweeps=2)
        for (state, field), w in zip(fields, [1.0, 0.5, 0.0]):
            h = net.local_field(state)
            expected = -0.5 * w * BIAS_PER_RMS * np.sqrt(np.mean(h * h)) / np.sqrt(np.mean(g * g)) * g
            if w == 0:
                assert field is None
            else:
                np.testing.assert_allclose(field, expected, rtol=1e-9)

    def test_unguided_energy_never_increases(self, memory):
        """Plain sweeps never raise the energy and stop after the first sweep without a flip."""
        net, patterns, _ = memory
        cue = np.random.default_rng(3).choice(np.array([-1, 1], np.int8), N)
        result = guided_dynamics(net, cue, max_sweeps=50)
        energies = np.concatenate([[net.energy(cue)], result.history["energy"]])
        assert np.all(np.diff(energies) <= 1e-9)
        assert result.converged and result.history["flips"][-1] == 0 and result.history["flips"][:-1].all()
        assert net.is_fixed_point(result.state)

    def test_scale_of_the_gradient_does_not_matter(self, memory):
        """The gradient is normalised to the local-field RMS, so the guidance's scale leaves the result unchanged."""
        net, patterns, cue = memory
        small = guided_dynamics(net, cue, HammingGuidance(patterns[2], scale=1e-6))
        large = guided_dynamics(net, cue, HammingGuidance(patterns[2], scale=1e6))
        np.testing.assert_array_equal(small.state, large.state)
        np.testing.assert_array_equal(small.state, patterns[2])

    def test_guidance_called_once_per_guided_sweep(self, memory):
        """The guidance is asked once per sweep while its weight is positive, and the weights ramp from 1 to 0."""
        net, patterns, cue = memory
        counting = _Counting(HammingGuidance(patterns[1]))
        result = guided_dynamics(net, cue, counting, max_sweeps=20, ramp_sweeps=6)
        assert counting.calls == 6
        np.testing.assert_allclose(result.history["guidance_weight"][:7], 1 - np.arange(7) / 6)

    def test_same_seed_same_result(self, memory):
        """Equal seeds give equal histories; a Generator is accepted as the seed."""
        net, _, _ = memory
        cue = np.random.default_rng(11).choice(np.array([-1, 1], np.int8), N)
        a, b = guided_dynamics(net, cue, seed=5), guided_dynamics(net, cue, seed=5)
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_array_equal(a.history["flips"], b.history["flips"])
        c = guided_dynamics(net, cue, seed=np.random.default_rng(5))
        assert c.converged

    def test_zero_strength_is_unguided(self, memory):
        """At strength 0 the guided run ends in the same state as the unguided one."""
        net, patterns, cue = memory
        np.testing.assert_array_equal(
            guided_dynamics(net, cue, HammingGuidance(patterns[1]), strength=0.0).state, guided_dynamics(net, cue).state
        )

    def test_empty_memory_follows_the_guidance(self):
        """With no stored pattern (zero local field) the guidance alone sets the state, which then stays."""
        target = np.array([1, -1, -1, 1, 1, -1], np.int8)
        result = guided_dynamics(HopfieldNetwork(6, "hebbian"), np.ones(6, np.int8), HammingGuidance(target))
        np.testing.assert_array_equal(result.state, target)
        assert result.converged

    def test_not_converged_within_max_sweeps(self, memory):
        """A run cut short while the guidance is still on reports converged = False and steps_run = max_sweeps."""
        net, patterns, cue = memory
        result = guided_dynamics(net, cue, HammingGuidance(patterns[1]), max_sweeps=3, ramp_sweeps=10)
        assert not result.converged and result.steps_run == 3

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"cue_state": np.zeros(N)}, PatternError, "cue_state"),
            ({"cue_state": np.ones(N - 1)}, PatternShapeError, "cue_state"),
            ({"cue_state": np.ones((2, N))}, PatternShapeError, "cue_state"),
            ({"max_sweeps": 0}, InvalidArgumentError, "max_sweeps"),
            ({"strength": -1.0}, InvalidArgumentError, "strength"),
            ({"ramp_sweeps": 0}, InvalidArgumentError, "ramp_sweeps"),
            ({"seed": -1}, InvalidArgumentError, "seed"),
            ({"ramp": None}, InvalidArgumentError, "ramp"),
            ({"guidance": _NanGuidance()}, InvalidArgumentError, r"guidance\.gradient"),
        ],
    )
    def test_rejects_bad_input(self, memory, kwargs, error, match):
        """Bad cues and knobs raise the package's errors naming the argument."""
        net, _, cue = memory
        args = {"cue_state": cue, **kwargs}
        with pytest.raises(error, match=match):
            guided_dynamics(net, args.pop("cue_state"), args.pop("guidance", None), **args)


class TestLandscape:
    def test_network_adapter(self, memory):
        """NetworkLandscape exposes the network's size, energy, energy gradient (= -local field) and sweep."""
        net, patterns, cue = memory
        land = as_landscape(net)
        assert isinstance(land, NetworkLandscape) and isinstance(land, EnergyLandscape)
        assert land.length == N and land.energy(cue) == pytest.approx(net.energy(cue))
        np.testing.assert_allclose(land.energy_gradient(cue), -net.local_field(cue))
        state, flips = land.sweep(patterns[0], None, np.random.default_rng(0))
        assert flips == 0 and state.dtype == np.int8
        np.testing.assert_array_equal(state, patterns[0])

    def test_landscape_passes_through(self, memory):
        """An object that already follows the protocol is returned unchanged."""
        land = NetworkLandscape(memory[0])
        assert as_landscape(land) is land

    @pytest.mark.parametrize("obj", [None, 3, np.zeros((4, 4))])
    def test_rejects_other_objects(self, obj):
        """Objects that are neither networks nor landscapes raise InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError, match="landscape"):
            as_landscape(obj)
        with pytest.raises(InvalidArgumentError, match="network"):
            NetworkLandscape(obj)
