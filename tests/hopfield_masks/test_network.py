"""Tests for hopfield_masks.network: construction, storage precisions, energy, recall, sweep and persistence."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.errors import (
    CapacityWarning,
    InvalidArgumentError,
    PatternError,
    PatternShapeError,
    UnknownRuleError,
)
from hopfield_masks.network import HopfieldNetwork
from hopfield_masks.rules import PseudoInverseRule, get_rule
from tests.strategies import rule_ids, spin_batches

SPIN = np.array([-1, 1], np.int8)


def random_patterns(k: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(SPIN, size=(k, n))


def noisy(patterns: np.ndarray, flips: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cues = patterns.copy()
    for row in cues:
        row[rng.choice(cues.shape[-1], size=flips, replace=False)] *= -1
    return cues


class TestConstruction:
    @pytest.mark.parametrize("size", [0, 1, -4, 2.5, True, "8"])
    def test_bad_size(self, size):
        """The size must be an integer >= 2."""
        with pytest.raises(InvalidArgumentError, match="size"):
            HopfieldNetwork(size)

    @pytest.mark.parametrize("dtype", ["float64", "bfloat16", "uint8", 3])
    def test_bad_dtype(self, dtype):
        """Only float32, float16 and int8 storage is accepted."""
        with pytest.raises(InvalidArgumentError, match="dtype"):
            HopfieldNetwork(8, dtype=dtype)

    def test_numpy_dtype_objects_are_accepted(self):
        """A NumPy dtype normalises to its name."""
        assert HopfieldNetwork(8, dtype=np.float16).dtype == "float16"

    def test_unknown_rule(self):
        """An unknown rule id raises UnknownRuleError."""
        with pytest.raises(UnknownRuleError):
            HopfieldNetwork(8, rule="oja")

    @pytest.mark.parametrize("dtype, nbytes", [("float32", 4 * 64 * 64), ("float16", 2 * 64 * 64), ("int8", 64 * 64 + 4)])
    def test_nbytes_follow_the_storage_dtype(self, dtype, nbytes):
        """nbytes is N² times the itemsize, plus the float32 scale for int8; the couplings use that dtype."""
        net = HopfieldNetwork(64, dtype=dtype)
        assert net.nbytes == nbytes and net.couplings.dtype == np.dtype(dtype)

    def test_description(self):
        """size, rule, capacity, load and repr describe the network."""
        net = HopfieldNetwork(100, rule="hebbian")
        net.store(random_patterns(5, 100))
        assert net.size == 100 and net.rule == get_rule("hebbian") and net.n_stored == 5
        assert net.capacity == pytest.approx(get_rule("hebbian").capacity(100))
        assert net.load == pytest.approx(5 / net.capacity)
        assert repr(net) == "HopfieldNetwork(size=100, rule=HebbianRule(), dtype='float32', n_stored=5)"

    def test_couplings_view_is_read_only(self):
        """The couplings property cannot be used to write the matrix."""
        net = HopfieldNetwork(8)
        with pytest.raises(ValueError):
            net.couplings[0, 1] = 1.0


class TestStore:
    @given(rule_ids(), spin_batches(st.integers(1, 4), st.just(24)))
    def test_float32_store_equals_the_rule(self, rule_id, patterns):
        """In float32 the network's couplings are exactly the rule applied to a zero matrix."""
        net = HopfieldNetwork(24, rule_id)
        net.store(patterns)
        w = np.zeros((24, 24), np.float32)
        get_rule(rule_id).store(w, patterns)
        np.testing.assert_array_equal(net.couplings, w)

    def test_bad_patterns_store_nothing(self):
        """Wrong length or non-spin values raise and leave the network unchanged."""
        net = HopfieldNetwork(6)
        with pytest.raises(PatternShapeError, match="patterns"):
            net.store(np.ones(5, np.int8))
        with pytest.raises(PatternError, match="patterns"):
            net.store(np.array([1, -1, 2, 1, 1, 1]))
        assert net.n_stored == 0 and not net.couplings.any()

    def test_capacity_warning_beyond_capacity(self):
        """Storing more patterns than the rule's capacity warns CapacityWarning; below it, nothing."""
        net = HopfieldNetwork(16, rule="hebbian")  # capacity 16 / (2 ln 16) = 2.9
        net.store(random_patterns(2, 16))
        with pytest.warns(CapacityWarning, match="beyond its capacity of 2.9"):
            net.store(random_patterns(1, 16, seed=1))
        assert net.n_stored == 3

    @pytest.mark.parametrize("dtype", ["float16", "int8"])
    def test_low_precision_is_the_quantised_float32_matrix(self, dtype):
        """float16/int8 couplings are the float32 result rounded to the storage precision."""
        patterns = random_patterns(6, 48)
        ref = HopfieldNetwork(48)
        ref.store(patterns)
        net = HopfieldNetwork(48, dtype=dtype)
        net.store(patterns)
        w = ref.weights
        if dtype == "int8":
            assert net.scale == pytest.approx(np.abs(w).max() / 127, rel=1e-6)
            assert np.abs(net.couplings).max() == 127
            np.testing.assert_allclose(net.weights, w, atol=net.scale / 2 * 1.001)
        else:
            assert net.scale == 1.0
            np.testing.assert_array_equal(net.couplings, w.astype(np.float16))
        np.testing.assert_array_equal(net.couplings, net.couplings.T)

    @pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
    @pytest.mark.parametrize("mode", ["async", "sync"])
    def test_every_precision_recalls_at_low_load(self, dtype, mode):
        """At low load, every storage precision recovers stored patterns exactly from 10%-noisy cues."""
        patterns = random_patterns(6, 128, seed=3)
        net = HopfieldNetwork(128, "storkey", dtype)
        net.store(patterns)
        res = net.recall(noisy(patterns, 13, seed=4), mode=mode, seed=1)
        np.testing.assert_array_equal(res.states, patterns)
        assert res.all_converged
        assert net.is_fixed_point(patterns).all()

    def test_int8_recall_does_not_allocate_a_float_matrix(self):
        """Recall, energy and fields on int8 couplings never allocate a float32 N×N copy."""
        n = 512
        patterns = random_patterns(4, n)
        net = HopfieldNetwork(n, "hebbian", "int8")
        net.store(patterns)
        cues = noisy(patterns, 40)
        net.recall(cues[0])  # compile outside the measurement
        tracemalloc.start()
        try:
            net.recall(cues, mode="async")
            net.recall(cues, mode="sync")
            net.energy(cues)
            net.sweep(cues[0])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < n * n * 4 / 2


class TestLandscape:
    @given(rule_ids(), st.sampled_from(["float32", "float16", "int8"]), st.integers(0, 2**16))
    def test_energy_field_and_gradient_agree_with_dequantised_weights(self, rule_id, dtype, seed):
        """energy, local_field and energy_gradient equal the NumPy formulas on the dequantised weights."""
        net = HopfieldNetwork(20, rule_id, dtype)
        net.store(random_patterns(3, 20, seed))
        s = random_patterns(2, 20, seed + 1)
        w = net.weights.astype(np.float64)
        np.testing.assert_allclose(net.local_field(s), s @ w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.energy(s), -0.5 * np.einsum("ki,ij,kj->k", s, w, s), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.energy_gradient(s[0]), -0.5 * (w + w.T) @ s[0], rtol=1e-5, atol=1e-6)
        assert isinstance(net.energy(s[0]), float)

    def test_is_fixed_point(self):
        """Stored patterns are fixed points at low load; a random state usually is not."""
        patterns = random_patterns(3, 64)
        net = HopfieldNetwork(64)
        net.store(patterns)
        assert net.is_fixed_point(patterns[0]) is True
        assert net.is_fixed_point(random_patterns(1, 64, seed=9))[0] == False  # noqa: E712

    def test_sweep_returns_new_state_and_flip_count(self):
        """sweep flips units of a noisy cue towards the pattern, returns the count and leaves its input alone."""
        patterns = random_patterns(2, 64)
        net = HopfieldNetwork(64)
        net.store(patterns)
        cue = noisy(patterns[:1], 6)[0]
        original = cue.copy()
        new, flips = net.sweep(cue, rng_or_seed=0)
        np.testing.assert_array_equal(cue, original)
        np.testing.assert_array_equal(new, patterns[0])
        assert flips == 6
        assert net.sweep(new, None, np.random.default_rng(1)) == (pytest.approx(new), 0)

    def test_sweep_is_reproducible_and_uses_the_external_field(self):
        """Same seed, same sweep; a dominating external field sets every spin to its sign."""
        net = HopfieldNetwork(32)
        net.store(random_patterns(2, 32))
        state = random_patterns(1, 32, seed=5)[0]
        a, _ = net.sweep(state, rng_or_seed=3)
        b, _ = net.sweep(state, rng_or_seed=3)
        np.testing.assert_array_equal(a, b)
        field = np.where(np.arange(32) % 2 == 0, 100.0, -100.0)
        forced, _ = net.sweep(state, field, 0)
        np.testing.assert_array_equal(forced, np.sign(field).astype(np.int8))


class TestPersistence:
    @pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
    def test_round_trip(self, dtype):
        """to_arrays -> JSON attrs -> from_arrays gives identical couplings, scale, count, rule and recall."""
        net = HopfieldNetwork(32, PseudoInverseRule(tol=1e-3), dtype)
        net.store(random_patterns(4, 32))
        arrays, attrs = net.to_arrays()
        attrs = json.loads(json.dumps(attrs))
        back = HopfieldNetwork.from_arrays(arrays, attrs)
        np.testing.assert_array_equal(back.couplings, net.couplings)
        assert back.couplings.dtype == net.couplings.dtype
        assert (back.scale, back.n_stored, back.rule, back.dtype) == (net.scale, net.n_stored, net.rule, net.dtype)
        cue = random_patterns(1, 32, seed=2)[0]
        np.testing.assert_array_equal(back.recall(cue).states, net.recall(cue).states)

    def test_rule_as_json_string(self):
        """attrs['rule'] may be the JSON text of the rule dict (as HDF5 attributes store it)."""
        arrays, attrs = HopfieldNetwork(8, "hebbian").to_arrays()
        attrs["rule"] = json.dumps(attrs["rule"])
        assert HopfieldNetwork.from_arrays(arrays, attrs).rule == get_rule("hebbian")

    def test_to_arrays_copies(self):
        """The returned couplings are a copy, not a view of the live matrix."""
        net = HopfieldNetwork(8)
        arrays, _ = net.to_arrays()
        net.store(random_patterns(1, 8))
        assert not arrays["couplings"].any()

    @pytest.mark.parametrize(
        "change, match",
        [
            (lambda a, t: a.pop("couplings"), "arrays"),
            (lambda a, t: t.pop("scale"), "attrs"),
            (lambda a, t: a.update(couplings=np.zeros((8, 8), np.float16)), "couplings"),
            (lambda a, t: a.update(couplings=np.zeros((7, 7), np.float32)), "couplings"),
            (lambda a, t: a.update(couplings=np.triu(np.ones((8, 8), np.float32))), "symmetric"),
            (lambda a, t: t.update(n_stored=-1), "n_stored"),
            (lambda a, t: t.update(scale=0.0), "scale"),
            (lambda a, t: t.update(rule="{not json"), "rule"),
        ],
    )
    def test_bad_inputs_are_named(self, change, match):
        """Missing keys and values that do not fit raise InvalidArgumentError naming the key."""
        arrays, attrs = HopfieldNetwork(8).to_arrays()
        change(arrays, attrs)
        with pytest.raises(InvalidArgumentError, match=match):
            HopfieldNetwork.from_arrays(arrays, attrs)
