"""Tests for hopfield_masks.patterns: mask/state/packed-bit conversions and validation."""

from __future__ import annotations

import numpy as np
import pytest
from bitarray import bitarray
from hypothesis import given

from hopfield_masks.errors import PatternError, PatternShapeError
from hopfield_masks.patterns import (
    from_spins,
    pack_bits,
    packed_nbytes,
    to_spins,
    unpack_bits,
    validate_mask,
    validate_states,
)
from tests.strategies import masks, spins


class TestPackBits:
    @given(masks())
    def test_pack_unpack_is_identity(self, m):
        """Unpacking packed bits returns the flattened mask for any shape, including lengths not a multiple of 8."""
        packed = pack_bits(m)
        assert packed.dtype == np.uint8 and packed.size == packed_nbytes(m.size)
        np.testing.assert_array_equal(unpack_bits(packed, m.size), m.ravel())

    @given(masks())
    def test_bit_order_matches_bitarray_big_endian(self, m):
        """Packed bytes equal bitarray's big-endian bytes, so files read the same with either tool."""
        ba = bitarray(m.ravel().tolist(), endian="big")
        assert pack_bits(m).tobytes() == ba.tobytes()

    def test_wrong_byte_count_is_rejected(self):
        """Unpacking with a byte count that does not match n names the argument and the expected size."""
        with pytest.raises(PatternShapeError, match=r"packed: expected 2 bytes for 9 entries"):
            unpack_bits(np.zeros(1, np.uint8), 9)

    def test_non_uint8_is_rejected(self):
        """Packed data must be uint8."""
        with pytest.raises(PatternError, match="uint8"):
            unpack_bits(np.zeros(2, np.int16), 9)


class TestValidation:
    def test_non_binary_value_names_argument_and_position(self):
        """A value outside {0, 1} is reported with the argument name, the value and its index."""
        with pytest.raises(PatternError) as info:
            validate_mask(np.array([[0, 1], [2, 0]]), name="fc1")
        assert info.value.argument == "fc1"
        assert "value 2 at index (1, 0)" in str(info.value)

    def test_nan_is_rejected(self):
        """NaN in a float mask is an error, not silently False."""
        with pytest.raises(PatternError, match="NaN"):
            validate_mask(np.array([0.0, np.nan]))

    def test_object_dtype_is_rejected(self):
        """Non-numeric dtypes are refused with the dtype in the message."""
        with pytest.raises(PatternError, match="dtype object"):
            validate_mask(np.array(["a", None], dtype=object))

    def test_states_must_be_plus_minus_one(self):
        """A 0 in a state is reported (states are ±1, masks are 0/1)."""
        with pytest.raises(PatternError, match=r"spins in \{-1, \+1\}"):
            validate_states([1, 0, -1])

    def test_states_length_checked(self):
        """A state of the wrong length names the expected length."""
        with pytest.raises(PatternShapeError, match="last axis of length 4"):
            validate_states([1, -1, 1], size=4)

    def test_states_rank_checked(self):
        """3-D arrays are not states or batches of states."""
        with pytest.raises(PatternShapeError):
            validate_states(np.ones((2, 2, 2)))


class TestSpins:
    @given(spins(17))
    def test_spins_mask_round_trip(self, s):
        """from_spins then to_spins returns the original state."""
        np.testing.assert_array_equal(to_spins(from_spins(s)), s)

    def test_convention(self):
        """Kept entries are +1 and dropped entries -1."""
        np.testing.assert_array_equal(to_spins([[True, False]]), np.array([1, -1], np.int8))
