"""Tests for supsup_core.packing: round trips on the tensor's device and the project bit order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from hopfield_masks.patterns import pack_bits
from supsup_core.errors import ConfigError
from supsup_core.packing import pack_bool, pack_rows, pack_rows_torch, packed_nbytes, unpack_bool
from tests.strategies import masks


class TestPackBool:
    @given(masks())
    def test_round_trip(self, mask):
        """Unpacking what was packed gives back the mask, shape included."""
        t = torch.from_numpy(mask)
        packed = pack_bool(t)
        assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(mask.size)
        assert torch.equal(unpack_bool(packed, mask.shape), t)

    @given(masks())
    def test_same_bytes_as_hopfield_masks(self, mask):
        """The bytes equal hopfield_masks.patterns.pack_bits (MSB first, C order), so banks and models agree."""
        assert np.array_equal(pack_bool(torch.from_numpy(mask)).numpy(), pack_bits(mask))

    def test_msb_first_example(self):
        """The first entry is the most significant bit of the first byte."""
        assert pack_bool(torch.tensor([True] + [False] * 8)).tolist() == [128, 0]

    def test_zero_one_floats_accepted_other_values_refused(self):
        """0/1 float masks pack like bool masks; other values raise ConfigError naming mask."""
        assert pack_bool(torch.tensor([1.0, 0.0, 1.0])).tolist() == [160]
        with pytest.raises(ConfigError, match="mask"):
            pack_bool(torch.tensor([0.5, 1.0]))


class TestPackRows:
    @given(masks((5, 11)))
    def test_rows_equal_individual_packing(self, mask):
        """Each packed row equals packing that row alone."""
        t = torch.from_numpy(mask)
        rows = pack_rows(t)
        for i in range(5):
            assert torch.equal(rows[i], pack_bool(t[i]))
        assert torch.equal(unpack_bool(rows, 11), t)

    @given(masks((4, 19)))
    def test_numpy_path_equals_the_torch_reference(self, mask):
        """CPU rows are packed with numpy's packbits; the torch path (used on CUDA) gives the same bytes."""
        t = torch.from_numpy(mask)
        assert torch.equal(pack_rows(t), pack_rows_torch(t))

    def test_wrong_byte_count_is_refused(self):
        """Unpacking with a byte count that does not match the entry count raises ConfigError."""
        with pytest.raises(ConfigError, match="packed"):
            unpack_bool(torch.zeros(3, dtype=torch.uint8), (4, 2))
