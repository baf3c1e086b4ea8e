"""Tests for hopfield_masks.rules: the registry, each rule's kernel against a NumPy reference, and the theory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hopfield_masks import rules as rules_pkg
from hopfield_masks.errors import InvalidArgumentError, PatternError, PatternShapeError, RegistryError, UnknownRuleError
from hopfield_masks.rules import (
    HebbianRule, LearningRule, PseudoInverseRule, StorkeyReferenceRule, StorkeyRule, _kernels, available_rules,
    get_rule, register_rule,
)
from tests.strategies import rule_ids, spin_batches

SPIN = np.array([-1, 1], np.int8)


# -- NumPy references (literal transcriptions of the formulas) ---------------------------------------------


def hebbian_reference(w: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    w = w.astype(np.float64).copy()
    n = w.shape[0]
    for x in patterns.astype(np.float64):
        w += np.outer(x, x) / n
    np.fill_diagonal(w, 0.0)
    return w


def storkey_reference_1997(w: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Storkey 1997 with h_ij summed explicitly over k != i, j (O(N³) per pattern)."""
    w = w.astype(np.float64).copy()
    n = w.shape[0]
    for x in patterns.astype(np.float64):
        terms = w * x[None, :]  # (i, k) -> w_ik x_k
        h = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                keep = np.ones(n, bool)
                keep[[i, j]] = False
                h[i, j] = terms[i, keep].sum()
        w = w + (np.outer(x, x) - x[:, None] * h.T - h * x[None, :]) / n
        np.fill_diagonal(w, 0.0)
    return w


def storkey_reference_code(w: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """The reference repository's update: Ψ += (x xᵀ − I − x hᵀ − h xᵀ)/d with h = Ψ x."""
    w = w.astype(np.float64).copy()
    d = w.shape[0]
    for x in patterns.astype(np.float64):
        h = w @ x
        w = w + (np.outer(x, x) - np.eye(d) - np.outer(x, h) - np.outer(h, x)) / d
    return w


def projector_reference(patterns: np.ndarray) -> np.ndarray:
    """Orthogonal projector onto the span of the patterns, via the pseudo-inverse."""
    x = patterns.astype(np.float64).T  # (N, k)
    return x @ np.linalg.pinv(x)


def symmetric_start(rng: np.random.Generator, n: int, zero_diagonal: bool) -> np.ndarray:
    a = rng.standard_normal((n, n)) / n
    return (a + a.T) / 2 * (1 - np.eye(n) if zero_diagonal else 1)


# -- registry ----------------------------------------------------------------------------------------------


class TestRegistry:
    def test_builtin_rules_are_registered(self):
        """The four built-in rule ids are available, sorted."""
        assert available_rules() == ["hebbian", "pseudo-inverse", "storkey", "storkey-reference"]

    @pytest.mark.parametrize("rule_id, cls", [("hebbian", HebbianRule), ("storkey", StorkeyRule),
                                              ("storkey-reference", StorkeyReferenceRule),
                                              ("pseudo-inverse", PseudoInverseRule)])
    def test_get_rule_by_id_returns_an_instance(self, rule_id, cls):
        """get_rule turns each id into an instance of its class."""
        rule = get_rule(rule_id)
        assert type(rule) is cls and rule.rule_id == rule_id

    def test_get_rule_passes_instances_through(self):
        """An instance is returned unchanged."""
        rule = PseudoInverseRule(tol=1e-3)
        assert get_rule(rule) is rule

    def test_unknown_id_lists_available(self):
        """An unknown id raises UnknownRuleError (a KeyError) naming the id and listing the available ones."""
        with pytest.raises(UnknownRuleError) as info:
            get_rule("oja")
        assert isinstance(info.value, KeyError)
        assert "'oja'" in str(info.value) and "storkey-reference" in str(info.value)

    def test_wrong_type_is_rejected(self):
        """A number is neither an id, a dict nor a rule."""
        with pytest.raises(InvalidArgumentError, match="rule: expected"):
            get_rule(3)

    def test_duplicate_id_is_refused(self):
        """Registering a second class under a taken id raises RegistryError."""

        class Other(HebbianRule):
            rule_id = "hebbian"

        with pytest.raises(RegistryError, match="already"):
            register_rule(Other)

    @pytest.mark.parametrize("bad_id", ["", "Hebb", "my_rule", "-x", "a--b", 7])
    def test_malformed_id_is_refused(self, bad_id):
        """Ids must be lower-case words joined by single hyphens."""
        cls = type("Bad", (HebbianRule,), {"rule_id": bad_id})
        with pytest.raises(RegistryError, match="rule_id"):
            register_rule(cls)

    def test_non_rule_is_refused(self):
        """Only concrete LearningRule subclasses can be registered."""
        with pytest.raises(RegistryError):
            register_rule(dict)  # type: ignore[arg-type]
        with pytest.raises(RegistryError):
            register_rule(LearningRule)

    def test_custom_rule_can_be_registered_and_found(self, monkeypatch):
        """A new rule registered under a fresh id is returned by get_rule and listed."""
        monkeypatch.setattr(rules_pkg, "_REGISTRY", dict(rules_pkg._REGISTRY))

        @register_rule
        class Scaled(HebbianRule):
            rule_id = "scaled-hebbian"

        assert isinstance(get_rule("scaled-hebbian"), Scaled)
        assert "scaled-hebbian" in available_rules()


class TestSerialisation:
    @given(rule_ids())
    def test_dict_round_trip_through_json(self, rule_id):
        """to_dict is JSON-safe and LearningRule.from_dict rebuilds an equal rule."""
        rule = get_rule(rule_id)
        d = json.loads(json.dumps(rule.to_dict()))
        assert d["id"] == rule_id
        assert LearningRule.from_dict(d) == rule
        assert get_rule(d) == rule

    def test_parameters_survive_round_trip(self):
        """The pseudo-inverse tolerance is part of the dict and of equality."""
        rule = PseudoInverseRule(tol=1e-3)
        assert rule.to_dict() == {"id": "pseudo-inverse", "tol": 1e-3}
        assert LearningRule.from_dict(rule.to_dict()) == rule
        assert rule != PseudoInverseRule()

    @pytest.mark.parametrize("rule", [HebbianRule(), StorkeyRule(), StorkeyReferenceRule(), PseudoInverseRule(0.01)])
    def test_repr_evaluates_to_equal_rule(self, rule):
        """eval(repr(rule)) == rule."""
        assert eval(repr(rule)) == rule

    def test_subclass_from_dict_checks_id(self):
        """StorkeyRule.from_dict refuses another rule's dict."""
        with pytest.raises(InvalidArgumentError, match="id"):
            StorkeyRule.from_dict({"id": "hebbian"})

    def test_unknown_parameter_is_rejected(self):
        """A dict with arguments the rule does not take raises InvalidArgumentError."""
        with pytest.raises(InvalidArgumentError, match="HebbianRule"):
            LearningRule.from_dict({"id": "hebbian", "eta": 0.1})

    def test_dict_without_id_is_rejected(self):
        """from_dict needs a string id."""
        with pytest.raises(InvalidArgumentError):
            LearningRule.from_dict({"tol": 0.1})

    @pytest.mark.parametrize("tol", [0.0, 1.0, -1e-3, "small", True])
    def test_bad_tolerance_is_rejected(self, tol):
        """The pseudo-inverse tolerance must be a float in (0, 1)."""
        with pytest.raises(InvalidArgumentError, match="tol"):
            PseudoInverseRule(tol=tol)


# -- validation --------------------------------------------------------------------------------------------


class TestValidation:
    @pytest.mark.parametrize("weights, match", [
        (np.zeros((4, 4), np.int32), "dtype float32 or float64"), (np.zeros((4, 3)), "square"),
        (np.zeros((2, 4, 4)), "square"), (np.arange(16.0).reshape(4, 4).T, "C-contiguous"),
        ([[0.0, 0.0], [0.0, 0.0]], "NumPy array"),
    ])
    def test_bad_weights_are_rejected(self, weights, match):
        """Weights must be a C-contiguous square float32/float64 ndarray."""
        with pytest.raises(InvalidArgumentError, match=match):
            HebbianRule().store(weights, np.ones(4, np.int8))

    def test_read_only_weights_are_rejected(self):
        """The update is in place, so a read-only matrix is refused."""
        w = np.zeros((4, 4))
        w.flags.writeable = False
        with pytest.raises(InvalidArgumentError, match="writeable"):
            StorkeyRule().store(w, np.ones(4, np.int8))

    @given(rule_ids())
    def test_wrong_pattern_length_leaves_weights_untouched(self, rule_id):
        """A pattern of the wrong length raises PatternShapeError before any update."""
        w = np.zeros((5, 5))
        with pytest.raises(PatternShapeError, match="patterns"):
            get_rule(rule_id).store(w, np.ones((2, 4), np.int8))
        assert not w.any()

    def test_non_spin_values_are_rejected(self):
        """Values other than ±1 raise PatternError and nothing is stored."""
        w = np.zeros((3, 3))
        with pytest.raises(PatternError, match="spins"):
            StorkeyRule().store(w, np.array([[1, -1, 1], [1, 0, 1]]))
        assert not w.any()

    def test_empty_batch_is_a_no_op(self):
        """Storing zero patterns changes nothing."""
        w = np.zeros((3, 3))
        StorkeyRule().store(w, np.zeros((0, 3), np.int8))
        assert not w.any()

    @pytest.mark.parametrize("n", [1, 0, 2.5, True])
    def test_capacity_needs_two_units(self, n):
        """capacity(n) needs an integer n >= 2."""
        with pytest.raises(InvalidArgumentError, match="n: expected"):
            HebbianRule().capacity(n)

    def test_capacity_formulas(self):
        """Capacities: Hebbian n/(2 ln n), Storkey (both) n/sqrt(2 ln n), pseudo-inverse n-1."""
        n = 2048
        assert get_rule("hebbian").capacity(n) == pytest.approx(n / (2 * math.log(n)))
        assert get_rule("storkey").capacity(n) == pytest.approx(n / math.sqrt(2 * math.log(n)))
        assert get_rule("storkey-reference").capacity(n) == get_rule("storkey").capacity(n)
        assert get_rule("pseudo-inverse").capacity(n) == n - 1


# -- kernels versus NumPy references -----------------------------------------------------------------------


class TestKernelsMatchReference:
    @pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
    @given(spin_batches(st.integers(1, 4), st.integers(2, 12)))
    def test_hebbian(self, dtype, tol, patterns):
        """The Hebbian kernel equals W += x xᵀ / N per pattern with a zero diagonal."""
        w = np.zeros((patterns.shape[1],) * 2, dtype)
        HebbianRule().store(w, patterns)
        np.testing.assert_allclose(w, hebbian_reference(np.zeros_like(w), patterns), atol=tol)

    @pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
    @given(spin_batches(st.integers(1, 4), st.integers(2, 10)), st.integers(0, 2**16), st.booleans())
    def test_storkey_exact_local_fields(self, dtype, tol, patterns, seed, zero_diagonal):
        """The O(N²) Storkey kernel equals the literal sum over k != i, j, from any symmetric start."""
        n = patterns.shape[1]
        start = symmetric_start(np.random.default_rng(seed), n, zero_diagonal)
        w = start.astype(dtype)
        StorkeyRule().store(w, patterns)
        np.testing.assert_allclose(w, storkey_reference_1997(start.astype(dtype), patterns), atol=tol)

    @pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
    @given(spin_batches(st.integers(1, 4), st.integers(2, 12)), st.integers(0, 2**16))
    def test_storkey_reference_variant(self, dtype, tol, patterns, seed):
        """The storkey-reference kernel equals the reference code's matrix formula, diagonal included."""
        start = symmetric_start(np.random.default_rng(seed), patterns.shape[1], zero_diagonal=False)
        w = start.astype(dtype)
        StorkeyReferenceRule().store(w, patterns)
        np.testing.assert_allclose(w, storkey_reference_code(start.astype(dtype), patterns), atol=tol)

    @given(st.integers(2, 12), st.integers(0, 2**16))
    def test_rank_one_update(self, n, seed):
        """The rank-one kernel equals W + r rᵀ / ||r||²."""
        rng = np.random.default_rng(seed)
        w = symmetric_start(rng, n, zero_diagonal=False)
        r = rng.standard_normal(n)
        expected = w + np.outer(r, r) / (r @ r)
        _kernels.rank_one_update(w, r, 1.0 / (r @ r))
        np.testing.assert_allclose(w, expected, atol=1e-12)

    @given(spin_batches(st.integers(1, 6), st.integers(8, 14)))
    def test_pseudo_inverse_is_the_projector(self, patterns):
        """After storing patterns, the pseudo-inverse weights equal the projector X X⁺ onto their span."""
        w = np.zeros((patterns.shape[1],) * 2)
        PseudoInverseRule().store(w, patterns)
        np.testing.assert_allclose(w, projector_reference(patterns), atol=1e-9)


# -- theory ------------------------------------------------------------------------------------------------


class TestTheory:
    @given(spin_batches(st.integers(1, 6), st.integers(2, 16)), st.randoms(use_true_random=False))
    def test_hebbian_symmetric_zero_diagonal_order_independent(self, patterns, random):
        """Hebbian weights are symmetric with a zero diagonal and do not depend on the storage order."""
        order = list(range(patterns.shape[0]))
        random.shuffle(order)
        a = np.zeros((patterns.shape[1],) * 2)
        b = np.zeros_like(a)
        HebbianRule().store(a, patterns)
        HebbianRule().store(b, patterns[order])
        np.testing.assert_array_equal(a, a.T)
        assert not np.diag(a).any()
        np.testing.assert_allclose(a, b, atol=1e-12)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @given(rule_ids(), spin_batches(st.integers(1, 6), st.integers(2, 24)))
    def test_every_rule_keeps_weights_exactly_symmetric(self, dtype, rule_id, patterns):
        """Starting from zeros, every rule leaves a bitwise symmetric matrix."""
        w = np.zeros((patterns.shape[1],) * 2, dtype)
        get_rule(rule_id).store(w, patterns)
        np.testing.assert_array_equal(w, w.T)

    @given(rule_ids(), spin_batches(st.integers(2, 5), st.integers(2, 12)))
    def test_storing_in_one_call_equals_one_at_a_time(self, rule_id, patterns):
        """Rules are incremental: storing a batch equals storing its rows one call at a time."""
        rule = get_rule(rule_id)
        a = np.zeros((patterns.shape[1],) * 2)
        b = np.zeros_like(a)
        rule.store(a, patterns)
        for x in patterns:
            rule.store(b, x)
        np.testing.assert_array_equal(a, b)

    @given(st.integers(3, 16), st.integers(0, 2**16))
    def test_pseudo_inverse_stores_n_minus_one_independent_patterns(self, n, seed):
        """Any N-1 linearly independent patterns are fixed points (W x = x) of the pseudo-inverse weights."""
        patterns = np.random.default_rng(seed).choice(SPIN, size=(n - 1, n))
        assume(np.linalg.matrix_rank(patterns.astype(np.float64)) == n - 1)
        w = np.zeros((n, n))
        PseudoInverseRule().store(w, patterns)
        fields = patterns @ w  # (k, N); W is symmetric
        np.testing.assert_allclose(fields, patterns, atol=1e-8)
        assert (np.sign(fields) == patterns).all()

    def test_pseudo_inverse_skips_dependent_patterns(self):
        """A pattern in the span of the stored ones leaves the weights unchanged (it is already a fixed point)."""
        a = np.array([1, 1, 1, 1, 1, 1], np.int8)
        b = np.array([1, -1, 1, -1, 1, -1], np.int8)
        c = np.array([1, 1, -1, -1, 1, 1], np.int8)
        w = np.zeros((6, 6))
        PseudoInverseRule().store(w, np.stack([a, b, c]))
        before = w.copy()
        PseudoInverseRule().store(w, -c)
        np.testing.assert_array_equal(w, before)

    def test_hebbian_and_storkey_zero_diagonal_reference_does_not(self):
        """storkey keeps a zero diagonal; the reference variant leaves -(1 + 2 x_i h_i)/d on it."""
        patterns = np.random.default_rng(3).choice(SPIN, size=(3, 8))
        w_exact = np.zeros((8, 8))
        w_ref = np.zeros((8, 8))
        StorkeyRule().store(w_exact, patterns)
        StorkeyReferenceRule().store(w_ref, patterns)
        assert not np.diag(w_exact).any()
        assert np.diag(w_ref).any()


def fixed_point_fraction(rule_id: str, n: int, k: int, seed: int) -> float:
    """Fraction of k random patterns that are fixed points (sign(W x) == x) after storing them."""
    patterns = np.random.default_rng(seed).choice(SPIN, size=(k, n))
    w = np.zeros((n, n))
    get_rule(rule_id).store(w, patterns)
    return float((np.sign(patterns @ w) == patterns).all(axis=1).mean())


class TestStatisticalCapacity:
    """Seeded statistical bands; sync fixed-point checks keep them fast at N = 1000."""

    def test_hebbian_low_load_is_almost_all_fixed_points(self):
        """Hebbian at load 0.05 (N=1000): at least 98% of the stored patterns are fixed points."""
        assert fixed_point_fraction("hebbian", 1000, 50, seed=0) >= 0.98

    def test_hebbian_load_one_tenth_loses_many(self):
        """Hebbian at load 0.10 (N=1000): between 30% and 65% of the patterns are fixed points."""
        assert 0.30 <= fixed_point_fraction("hebbian", 1000, 100, seed=0) <= 0.65

    def test_storkey_half_capacity(self):
        """Storkey at 0.5 N / sqrt(2 ln N) (N=1000, 134 patterns): at least 95% are fixed points."""
        k = int(0.5 * 1000 / math.sqrt(2 * math.log(1000)))
        assert fixed_point_fraction("storkey", 1000, k, seed=0) >= 0.95

    def test_storkey_stores_more_than_hebbian(self):
        """At equal N=500 and 70 patterns (load 0.14), Storkey keeps far more fixed points than Hebbian."""
        hebb = fixed_point_fraction("hebbian", 500, 70, seed=1)
        stork = fixed_point_fraction("storkey", 500, 70, seed=1)
        assert stork >= 0.9 and stork >= hebb + 0.5
