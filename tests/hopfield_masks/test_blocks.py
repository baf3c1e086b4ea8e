"""Tests for hopfield_masks.blocks: layer layouts and block splitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.blocks import BlockLayout, MaskLayout, join_blocks, split_blocks
from hopfield_masks.errors import InvalidArgumentError, PatternShapeError
from tests.strategies import layer_masks, spin_batches, spins


class TestBlocks:
    @given(st.integers(1, 70).flatmap(lambda n: st.tuples(spins(n), st.integers(1, 80))))
    def test_split_join_identity(self, args):
        """Joining split blocks returns the original state for any length and block size."""
        s, n = args
        layout = BlockLayout(s.size, n)
        blocks = split_blocks(s, layout)
        assert blocks.shape == (layout.n_blocks, n)
        np.testing.assert_array_equal(join_blocks(blocks, layout), s)

    @given(spin_batches(3, 11))
    def test_batch_split_join_identity(self, batch):
        """Batches of states split and join along the last axis."""
        layout = BlockLayout(11, 4)
        np.testing.assert_array_equal(join_blocks(split_blocks(batch, layout), layout), batch)

    def test_padding_wraps_the_pattern(self):
        """Padding repeats the state's first spins, cyclically when the padding is longer than the state."""
        layout = BlockLayout(2, 5)
        np.testing.assert_array_equal(split_blocks(np.array([1, -1], np.int8), layout), [[1, -1, 1, -1, 1]])

    def test_layout_round_trips_through_json(self):
        """A block layout survives to_dict -> JSON -> from_dict."""
        layout = BlockLayout(1000, 64)
        assert BlockLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout

    def test_bad_block_size(self):
        """A zero block size is refused naming the argument."""
        with pytest.raises(InvalidArgumentError, match="block_size"):
            BlockLayout(10, 0)

    def test_wrong_length(self):
        """A state whose length is not the layout's is refused."""
        with pytest.raises(PatternShapeError):
            split_blocks(np.ones(9, np.int8), BlockLayout(10, 4))


class TestMaskLayout:
    @given(layer_masks())
    def test_flatten_unflatten_identity(self, masks):
        """Named layer masks of any shapes survive flatten -> unflatten."""
        layout = MaskLayout.from_masks(masks)
        back = layout.unflatten(layout.flatten(masks))
        assert list(back) == list(masks)
        for name, m in masks.items():
            np.testing.assert_array_equal(back[name], m)

    def test_json_round_trip(self):
        """A mask layout survives to_dict -> JSON -> from_dict."""
        layout = MaskLayout(("a", "b"), ((3, 4), (5,)))
        assert MaskLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout

    def test_missing_layer_is_named(self):
        """Flattening masks with a missing layer names the expected layers."""
        layout = MaskLayout(("a", "b"), ((2,), (2,)))
        with pytest.raises(PatternShapeError, match=r"layers \['a', 'b'\]"):
            layout.flatten({"a": np.ones(2)})

    def test_wrong_layer_shape_is_named(self):
        """A layer with the wrong shape is reported with its name and both shapes."""
        layout = MaskLayout(("a",), ((2, 3),))
        with pytest.raises(PatternShapeError, match=r"masks\['a'\]: expected shape \(2, 3\)"):
            layout.flatten({"a": np.ones((3, 2))})

    def test_duplicate_names_refused(self):
        """Layer names must be unique."""
        with pytest.raises(InvalidArgumentError):
            MaskLayout(("a", "a"), ((1,), (1,)))
