"""Tests for hopfield_masks.recall.{energy, dynamics, _kernels}: kernels against NumPy loops, recall semantics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.errors import ConvergenceWarning, InvalidArgumentError, PatternError, PatternShapeError
from hopfield_masks.recall import RecallResult, _kernels, async_sweep, energy_gradient, local_field, recall
from hopfield_masks.recall import energy as energy_mod
from hopfield_masks.recall.energy import energy
from hopfield_masks.recall.dynamics import recall_async, recall_sync
from hopfield_masks.rules import get_rule
from tests.strategies import integer_couplings, spin_batches, spins

SPIN = np.array([-1, 1], np.int8)


# -- NumPy references --------------------------------------------------------------------------------------


def sweep_reference(w, scale, state, ext, order):
    """Plain asynchronous sweep: recompute each unit's field from scratch (O(N²) per sweep)."""
    s = state.astype(np.int64).copy()
    wf = w.astype(np.float64)
    flips = 0
    for i in order:
        total = scale * float(wf[i] @ s) + ext[i]
        new = 1 if total > 0 else (-1 if total < 0 else s[i])  # a zero field keeps the spin
        if new != s[i]:
            s[i] = new
            flips += 1
    return s.astype(np.int8), flips


def sync_reference(w, scale, states, ext):
    """Plain synchronous update of every row: sign of the total field, ties keep the spin."""
    total = scale * (states.astype(np.float64) @ w.astype(np.float64).T) + ext
    new = np.where(total > 0, 1, np.where(total < 0, -1, states)).astype(np.int8)
    return new, (new != states).sum(axis=1)


def recall_reference(w, cues, mode, max_steps, seed, ext):
    """Reference recall loop with the documented per-cue seeding (seed, cue index)."""
    states, steps, conv = cues.copy(), np.zeros(len(cues), np.int64), np.zeros(len(cues), bool)
    for c in range(len(cues)):
        rng = np.random.default_rng([seed, c])
        for _ in range(max_steps):
            if mode == "async":
                states[c], flips = sweep_reference(w, 1.0, states[c], ext, rng.permutation(w.shape[0]))
            else:
                new, changed = sync_reference(w, 1.0, states[c : c + 1], ext)
                states[c], flips = new[0], int(changed[0])
            steps[c] += 1
            if flips == 0:
                conv[c] = True
                break
    return states, steps, conv


def as_dtype(w: np.ndarray, dtype: str) -> np.ndarray:
    """Integer-valued couplings stored exactly at each precision."""
    return w.astype(dtype)


@st.composite
def landscapes(draw, min_n=2, max_n=14):
    """(integer couplings, a state, an external field of integers or zeros, a sweep order)."""
    n = draw(st.integers(min_n, max_n))
    w = draw(integer_couplings(n))
    s = draw(spins(n))
    ext = np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), np.float64)
    if draw(st.booleans()):
        ext[:] = 0.0
    order = np.array(draw(st.permutations(range(n))), np.int64)
    return w, s, ext, order


DTYPES = ["float64", "float32", "float16", "int8"]


# -- kernels -----------------------------------------------------------------------------------------------


class TestKernelsMatchReference:
    @pytest.mark.parametrize("dtype", DTYPES)
    @given(landscapes(), st.sampled_from([1.0, 0.5, 3.0]))
    def test_async_sweep_with_incremental_fields(self, dtype, landscape, scale):
        """The O(N)-per-flip sweep equals a plain loop recomputing every field, for every coupling dtype."""
        w, s, ext, order = landscape
        wd = as_dtype(w, dtype)
        state = s.copy()
        field = wd.astype(np.float64) @ state  # (N,)
        wk, table = _kernels.kernel_couplings(wd)
        flips = _kernels.async_sweep(wk, table, scale, state, field, ext, order)
        expected, expected_flips = sweep_reference(w, scale, s, ext, order)
        np.testing.assert_array_equal(state, expected)
        assert flips == expected_flips
        np.testing.assert_array_equal(field, w @ state.astype(np.float64))  # fields kept exact

    @given(integer_couplings(st.integers(2, 12)).flatmap(
        lambda w: st.tuples(st.just(w), spin_batches(st.integers(1, 4), st.just(w.shape[0])))),
        st.booleans())
    def test_sync_update(self, w_states, shared_ext):
        """The sign-with-ties kernel equals np.where(sign) on the same fields, with a shared or per-row field."""
        w, states = w_states
        k, n = states.shape
        ext = np.linspace(-2, 2, n)[None, :] if shared_ext else np.zeros((k, n))
        fields = states.astype(np.float64) @ w.T
        new = states.copy()
        changed = np.empty(k, np.int64)
        _kernels.sync_update(fields, 1.0, ext, new, changed)
        expected, expected_changed = sync_reference(w, 1.0, states, ext)
        np.testing.assert_array_equal(new, expected)
        np.testing.assert_array_equal(changed, expected_changed)

    def test_zero_field_keeps_every_spin(self):
        """With zero couplings and no external field no unit flips (ties keep the spin)."""
        state = np.array([1, -1, 1], np.int8)
        res = recall(np.zeros((3, 3), np.float32), state)
        np.testing.assert_array_equal(res.states, state)
        assert res.converged and res.steps == 1


class TestRecall:
    @pytest.mark.parametrize("mode", ["async", "sync"])
    @given(integer_couplings(st.integers(2, 10)).flatmap(
        lambda w: st.tuples(st.just(w), spin_batches(st.integers(1, 3), st.just(w.shape[0])))),
        st.integers(0, 100))
    def test_recall_loop_matches_reference(self, mode, w_cues, seed):
        """The batch loop equals the reference loop: same states, steps and convergence per cue."""
        w, cues = w_cues
        res = recall(w, cues, mode=mode, max_steps=6, seed=seed)
        states, steps, conv = recall_reference(w, cues, mode, 6, seed, np.zeros(w.shape[0]))
        np.testing.assert_array_equal(res.states, states)
        np.testing.assert_array_equal(res.steps, steps)
        np.testing.assert_array_equal(res.converged, conv)

    @given(st.sampled_from(["hebbian", "storkey", "pseudo-inverse"]),
           spin_batches(st.integers(1, 4), st.integers(6, 20)), st.integers(0, 2**16))
    def test_async_updates_never_increase_energy(self, rule_id, patterns, seed):
        """Sweep after sweep, asynchronous updates never raise E = -1/2 sᵀWs (rules with a diagonal >= 0)."""
        n = patterns.shape[1]
        w = np.zeros((n, n))
        get_rule(rule_id).store(w, patterns)
        rng = np.random.default_rng(seed)
        state = rng.choice(SPIN, size=n)
        e = energy(w, state)
        for _ in range(5):
            state, _ = async_sweep(w, state, rng_or_seed=rng)
            e_new = energy(w, state)
            assert e_new <= e + 1e-12
            e = e_new

    def test_stored_pattern_converges_in_one_step(self):
        """A stored pattern is a fixed point: one step, no change, converged."""
        x = np.random.default_rng(0).choice(SPIN, size=32)
        w = np.zeros((32, 32))
        get_rule("storkey").store(w, x)
        for mode in ("async", "sync"):
            res = recall(w, x, mode=mode)
            np.testing.assert_array_equal(res.states, x)
            assert int(res.steps) == 1 and bool(res.converged)

    def test_result_shapes_follow_the_cues(self):
        """One cue gives (N,) states and 0-d steps/converged; a batch gives (k,) arrays."""
        w = np.zeros((4, 4), np.float32)
        one = recall(w, np.ones(4, np.int8))
        assert isinstance(one, RecallResult)
        assert one.states.shape == (4,) and one.steps.shape == () and one.converged.shape == ()
        batch = recall(w, np.ones((3, 4), np.int8))
        assert batch.states.shape == (3, 4) and batch.steps.shape == (3,) and batch.steps.dtype == np.int64
        assert batch.converged.dtype == bool and batch.all_converged

    def test_sync_two_cycle_does_not_converge_and_warns_only_on_request(self):
        """A synchronous 2-cycle runs max_steps without converging; ConvergenceWarning only with warn=True."""
        w = np.array([[0.0, 1.0], [1.0, 0.0]])
        cue = np.array([1, -1], np.int8)
        res = recall(w, cue, mode="sync", max_steps=7)
        assert not res.converged and res.steps == 7
        with pytest.warns(ConvergenceWarning, match="1 of 1 cues"):
            recall(w, cue, mode="sync", max_steps=7, warn=True)

    def test_async_unconverged_at_max_steps(self):
        """An async recall stopped after one sweep that flipped units reports converged = False."""
        x = np.random.default_rng(1).choice(SPIN, size=40)
        w = (np.outer(x, x) - np.eye(40)) / 40
        cue = x.copy()
        cue[:8] *= -1
        res = recall_async(w, cue, max_steps=1)
        np.testing.assert_array_equal(res.states, x)
        assert not res.converged and res.steps == 1

    def test_cue_results_do_not_depend_on_the_rest_of_the_batch(self):
        """Cue i is recalled with the generator seeded by (seed, i), whatever the other cues are."""
        rng = np.random.default_rng(2)
        patterns = rng.choice(SPIN, size=(3, 30))
        w = np.zeros((30, 30))
        get_rule("hebbian").store(w, patterns)
        cues = rng.choice(SPIN, size=(2, 30))
        both = recall(w, cues, seed=5)
        alone = recall(w, cues[:1], seed=5)
        np.testing.assert_array_equal(both.states[0], alone.states[0])
        again = recall(w, cues, seed=5)
        np.testing.assert_array_equal(both.states, again.states)

    def test_strong_external_field_wins(self):
        """An external field much larger than the couplings sets each spin to its sign."""
        w = np.zeros((5, 5))
        b = np.array([3.0, -2.0, 1.0, -1.0, 4.0])
        for mode in ("async", "sync"):
            res = recall(w, np.ones(5, np.int8), mode=mode, external_field=b)
            np.testing.assert_array_equal(res.states, np.sign(b).astype(np.int8))

    def test_recall_sync_alias(self):
        """recall_sync equals recall(mode='sync')."""
        w = np.array([[0.0, 1.0], [1.0, 0.0]])
        a = recall_sync(w, np.array([1, 1], np.int8))
        b = recall(w, np.array([1, 1], np.int8), mode="sync")
        np.testing.assert_array_equal(a.states, b.states)

    def test_public_sweep_does_not_modify_its_input(self):
        """async_sweep returns a new state and the number of flips, leaving its argument alone."""
        w = np.array([[0.0, 1.0], [1.0, 0.0]])
        state = np.array([1, -1], np.int8)
        new, flips = async_sweep(w, state, rng_or_seed=np.random.default_rng(0))
        np.testing.assert_array_equal(state, [1, -1])
        assert flips == 1 and abs(int(new.sum())) == 2


class TestValidation:
    W = np.zeros((4, 4), np.float32)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"mode": "batch"}, "mode"),
            ({"max_steps": 0}, "max_steps"),
            ({"max_steps": 2.5}, "max_steps"),
            ({"max_steps": True}, "max_steps"),
            ({"seed": -1}, "seed"),
            ({"external_field": np.zeros(3)}, "external_field"),
            ({"external_field": np.array([0.0, np.nan, 0.0, 0.0])}, "finite"),
            ({"external_field": np.array(["a"] * 4)}, "real-valued"),
            ({"scale": 0.0}, "scale"),
            ({"scale": float("inf")}, "scale"),
        ],
    )
    def test_bad_arguments_name_themselves(self, kwargs, match):
        """Each bad keyword raises InvalidArgumentError naming the argument."""
        with pytest.raises(InvalidArgumentError, match=match):
            recall(self.W, np.ones(4, np.int8), **kwargs)

    def test_bad_cues(self):
        """Cues of the wrong length or with non-spin values are rejected."""
        with pytest.raises(PatternShapeError, match="cues"):
            recall(self.W, np.ones(5, np.int8))
        with pytest.raises(PatternError, match="cues"):
            recall(self.W, np.array([1, 0, 1, 1]))

    @pytest.mark.parametrize(
        "weights, match",
        [
            (np.zeros((4, 4), np.int32), "dtype"),
            (np.zeros((4, 3)), "square"),
            (np.triu(np.ones((4, 4))), "symmetric"),
            (np.full((4, 4), np.nan), "finite"),
            ([[0.0]], "NumPy array"),
        ],
    )
    def test_bad_weights(self, weights, match):
        """Couplings must be a finite symmetric square matrix of an accepted dtype."""
        with pytest.raises(InvalidArgumentError, match=match):
            recall(weights, np.ones(len(weights), np.int8))

    def test_sweep_needs_one_state(self):
        """async_sweep takes one (N,) state, not a batch."""
        with pytest.raises(InvalidArgumentError, match="state"):
            async_sweep(self.W, np.ones((2, 4), np.int8))

    def test_batch_external_field_needs_a_batch_of_cues(self):
        """A (k, N) external field is only accepted with k cues."""
        with pytest.raises(InvalidArgumentError, match="external_field"):
            recall(self.W, np.ones(4, np.int8), external_field=np.zeros((1, 4)))


class TestEnergy:
    @pytest.mark.parametrize("dtype", DTYPES)
    @given(integer_couplings(st.integers(2, 12)).flatmap(
        lambda w: st.tuples(st.just(w), spin_batches(st.integers(1, 3), st.just(w.shape[0])))))
    def test_fields_and_energy_match_numpy(self, dtype, w_states):
        """local_field and energy equal scale * W s and -1/2 sᵀ(scale W)s for every coupling dtype."""
        w, s = w_states
        sf = s.astype(np.float64)
        h = local_field(w.astype(dtype), s, scale=0.5)
        np.testing.assert_array_equal(h, 0.5 * sf @ w.T)
        np.testing.assert_allclose(energy(w.astype(dtype), s, scale=0.5), -0.25 * np.einsum("ki,ij,kj->k", sf, w, sf))
        assert isinstance(energy(w.astype(dtype), s[0]), float)

    @given(st.integers(2, 9), st.integers(0, 2**16), st.sampled_from(["float64", "int8"]))
    def test_gradient_of_asymmetric_matrix(self, n, seed, dtype):
        """energy_gradient is -1/2 (W + Wᵀ) s, also for an asymmetric matrix."""
        rng = np.random.default_rng(seed)
        w = rng.integers(-5, 6, size=(n, n)).astype(dtype)
        s = rng.choice(SPIN, size=n)
        expected = -0.5 * (w.astype(np.float64) + w.astype(np.float64).T) @ s
        np.testing.assert_allclose(energy_gradient(w, s), expected)

    @pytest.mark.parametrize("dtype", ["float16", "int8"])
    def test_low_precision_products_are_chunked(self, dtype, monkeypatch):
        """With a small chunk, low-precision fields are computed block by block and still exact."""
        monkeypatch.setattr(energy_mod, "_CHUNK_ENTRIES", 20)
        rng = np.random.default_rng(4)
        w = rng.integers(-9, 10, size=(11, 11))
        w = np.triu(w, 1) + np.triu(w, 1).T
        s = rng.choice(SPIN, size=(3, 11))
        np.testing.assert_array_equal(local_field(w.astype(dtype), s), s @ w.T)
        np.testing.assert_array_equal(energy_gradient(w.astype(dtype), s), -(s @ w.T))
