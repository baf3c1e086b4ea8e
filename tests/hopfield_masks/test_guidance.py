"""Tests of hopfield_masks/recall/guidance.py: the Guidance protocol, the two synthetic guidances, output checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.errors import InvalidArgumentError, PatternError, PatternShapeError
from hopfield_masks.patterns import to_spins
from hopfield_masks.recall.guidance import (
    FieldGuidance,
    Guidance,
    HammingGuidance,
    guidance_gradient,
    validate_guidance,
)
from tests.strategies import spins


def _flip_deltas(objective, state: np.ndarray) -> np.ndarray:
    """Change of ``objective`` when each spin alone is flipped (the discrete derivative)."""
    base = objective(state)
    out = np.empty(state.size)
    for i in range(state.size):
        s = state.copy()
        s[i] = -s[i]
        out[i] = objective(s) - base
    return out


class TestHammingGuidance:
    @given(st.integers(1, 40).flatmap(lambda n: st.tuples(spins(n), spins(n))), st.floats(1e-4, 10.0))
    def test_gradient_is_exact_for_every_flip(self, pair, scale):
        """Flipping spin i changes the objective by exactly gradient_i * (-2 s_i) (the objective is linear)."""
        target, state = pair
        g = HammingGuidance(target, scale=scale)
        np.testing.assert_allclose(_flip_deltas(g.objective, state), g.gradient(state) * (-2.0 * state), rtol=1e-12)

    @given(st.integers(1, 40).flatmap(lambda n: st.tuples(spins(n), spins(n))))
    def test_objective_counts_differences(self, pair):
        """At scale 1 the objective is the Hamming distance to the target."""
        target, state = pair
        assert HammingGuidance(target).objective(state) == np.count_nonzero(target != state)

    def test_gradient_values_and_dtype(self):
        """The gradient is the float64 constant -scale * target / 2, a fresh array each call."""
        g = HammingGuidance(np.array([1, -1, 1], np.int8), scale=0.5)
        first = g.gradient(np.ones(3, np.int8))
        assert first.dtype == np.float64
        np.testing.assert_array_equal(first, [-0.25, 0.25, -0.25])
        first[:] = 99.0
        np.testing.assert_array_equal(g.gradient(np.ones(3, np.int8)), [-0.25, 0.25, -0.25])

    def test_from_mask_matches_spins(self):
        """from_mask flattens a {0,1} mask in C order and uses its spins as the target."""
        mask = np.array([[True, False], [False, True]])
        np.testing.assert_array_equal(HammingGuidance.from_mask(mask).target, to_spins(mask))

    def test_follows_protocol(self):
        """HammingGuidance and FieldGuidance are runtime instances of the Guidance protocol."""
        assert isinstance(HammingGuidance([1, -1]), Guidance)
        assert isinstance(FieldGuidance([0.0, 1.0]), Guidance)

    @pytest.mark.parametrize("target", [[1, 0, -1], [[1, -1], [1, 1]], ["a", "b"]])
    def test_rejects_bad_target(self, target):
        """A target that is not one flat ±1 state raises a PatternError naming it."""
        with pytest.raises(PatternError, match="target"):
            HammingGuidance(target)

    @pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
    def test_rejects_bad_scale(self, scale):
        """The scale must be a finite positive number."""
        with pytest.raises(InvalidArgumentError, match="scale"):
            HammingGuidance([1, -1], scale=scale)

    def test_rejects_state_of_wrong_length(self):
        """Asking for the gradient of a state of another length raises PatternShapeError."""
        with pytest.raises(PatternShapeError, match="state"):
            HammingGuidance([1, -1, 1]).gradient(np.ones(4, np.int8))


class TestFieldGuidance:
    @given(st.integers(1, 30).flatmap(
        lambda n: st.tuples(spins(n), st.lists(st.floats(-5, 5), min_size=n, max_size=n))
    ))
    def test_gradient_is_exact_for_every_flip(self, pair):
        """The objective field·s changes by gradient_i * (-2 s_i) when spin i flips."""
        state, field = pair
        g = FieldGuidance(field)
        np.testing.assert_allclose(
            _flip_deltas(g.objective, state), g.gradient(state) * (-2.0 * state), rtol=1e-9, atol=1e-9
        )

    def test_gradient_is_the_field(self):
        """The gradient returned is the field, as float64."""
        np.testing.assert_array_equal(FieldGuidance([1, 2]).gradient(np.array([1, -1], np.int8)), [1.0, 2.0])

    @pytest.mark.parametrize(
        ("field", "error"),
        [([np.nan, 1.0], InvalidArgumentError), ([[1.0, 2.0]], PatternShapeError), (["x"], InvalidArgumentError)],
    )
    def test_rejects_bad_field(self, field, error):
        """A field with NaN, the wrong dimensionality or a non-numeric dtype is refused, naming 'field'."""
        with pytest.raises(error, match="field"):
            FieldGuidance(field)


class _Returns:
    """A guidance returning a fixed object, to exercise the output checks."""

    def __init__(self, value):
        self.value = value

    def gradient(self, state):
        return self.value


class TestValidateGuidance:
    def test_none_passes(self):
        """None means no guidance and is returned unchanged."""
        assert validate_guidance(None) is None

    def test_object_with_gradient_passes(self):
        """Any object with a gradient method is accepted as is."""
        g = _Returns(np.zeros(2))
        assert validate_guidance(g) is g

    @pytest.mark.parametrize("obj", [3, "hamming", object(), np.zeros(3)])
    def test_rejects_objects_without_gradient(self, obj):
        """Objects without a callable gradient method raise InvalidArgumentError naming the argument."""
        with pytest.raises(InvalidArgumentError, match="^guidance: expected None or an object"):
            validate_guidance(obj)


class TestGuidanceGradient:
    def test_converts_to_float64(self):
        """Integer and float32 gradients come back as float64 of the same values."""
        out = guidance_gradient(_Returns(np.array([1, -2], np.int32)), np.array([1, 1], np.int8))
        assert out.dtype == np.float64 and out.tolist() == [1.0, -2.0]

    @pytest.mark.parametrize("value", [np.zeros(3), np.zeros((2, 1)), np.float64(1.0)])
    def test_rejects_wrong_shape(self, value):
        """A gradient not of shape (P,) raises PatternShapeError naming the guidance call."""
        with pytest.raises(PatternShapeError, match=r"guidance\.gradient\(state\)"):
            guidance_gradient(_Returns(value), np.array([1, -1], np.int8))

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_rejects_non_finite(self, bad):
        """A NaN or infinite entry is refused and its index reported."""
        with pytest.raises(InvalidArgumentError, match="at index 1"):
            guidance_gradient(_Returns(np.array([0.0, bad])), np.array([1, -1], np.int8))

    @pytest.mark.parametrize("value", [np.array(["a", "b"]), np.array([1j, 2j]), [None, None]])
    def test_rejects_non_real(self, value):
        """String, complex and object outputs are refused."""
        with pytest.raises(InvalidArgumentError, match="guidance"):
            guidance_gradient(_Returns(value), np.array([1, -1], np.int8))

    def test_guidance_gets_a_copy(self):
        """A guidance that scribbles on its input does not change the caller's state."""

        class Scribbler:
            def gradient(self, state):
                state[:] = -1
                return np.zeros(state.size)

        state = np.array([1, 1, 1], np.int8)
        guidance_gradient(Scribbler(), state)
        np.testing.assert_array_equal(state, [1, 1, 1])
