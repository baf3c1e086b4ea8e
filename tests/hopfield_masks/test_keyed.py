"""Tests of task-key units and 1-bit (sign) couplings: sizing, packing, keyed recall, files."""

from __future__ import annotations

import functools

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopfield_masks.blocks import MaskLayout, split_blocks
from hopfield_masks.errors import BudgetError, InvalidArgumentError, StorageFormatError
from hopfield_masks.network import HopfieldNetwork, coupling_nbytes, pack_sign_couplings, unpack_sign_couplings
from hopfield_masks.reservoir import Reservoir, keyed_size_for_budget, reservoir_nbytes

LAYOUT = MaskLayout(("a", "b"), ((150,), (90,)))  # P = 240
WIDE = MaskLayout(("a", "b"), ((700,), (500,)))  # P = 1,200: in 100 kB, two sign networks of 873 units


def _states(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, length)) < 0.45, 1, -1).astype(np.int8)


@functools.lru_cache(maxsize=None)  # recall does not change a reservoir: tests share the ones they build
def _keyed(n_tasks: int, budget="100kB", seed: int = 0, layout: MaskLayout = WIDE) -> tuple[Reservoir, np.ndarray]:
    res = Reservoir.from_budget(budget, layout, "pseudo-inverse", key_units="auto")
    states = _states(n_tasks, layout.length, seed)
    for s in states:
        res.store(layout.unflatten(s))
    return res, states


class TestSignCouplings:
    @settings(max_examples=40, deadline=None)
    @given(n=st.integers(2, 40), seed=st.integers(0, 2**16))
    def test_pack_unpack_round_trip(self, n, seed):
        """Any symmetric ±1 matrix with a zero diagonal survives packing of its upper triangle, in N(N-1)/16 bytes."""
        rng = np.random.default_rng(seed)
        upper = np.triu(rng.choice(np.array([-1, 1], np.int8), size=(n, n)), 1)
        q = (upper + upper.T).astype(np.int8)
        bits = pack_sign_couplings(q)
        assert bits.dtype == np.uint8 and bits.size == coupling_nbytes(n, "sign") - 4
        assert np.array_equal(unpack_sign_couplings(bits, n), q)

    def test_quantisation_takes_signs_and_the_mean_magnitude(self):
        """The bits are the signs of the accumulator off the diagonal; the scale is its mean |W_ij|, i != j."""
        net = HopfieldNetwork(32, "pseudo-inverse", "sign")
        net.store(_states(3, 32, 1))
        acc = net._accumulator.astype(np.float64)
        off = ~np.eye(32, dtype=bool)
        assert np.array_equal(net.couplings[off], np.where(acc[off] >= 0, 1, -1))
        assert (np.diagonal(net.couplings) == 0).all()
        assert net.scale == pytest.approx(np.abs(acc[off]).mean(), rel=1e-5)
        assert net.nbytes == coupling_nbytes(32, "sign") and net.accumulator_nbytes == 4 * 32 * 32

    def test_rebuilt_network_is_frozen(self):
        """A sign network rebuilt from its arrays recalls like the original but refuses to store more."""
        net = HopfieldNetwork(40, "pseudo-inverse", "sign")
        patterns = _states(4, 40, 2)
        net.store(patterns)
        arrays, attrs = net.to_arrays()
        again = HopfieldNetwork.from_arrays(arrays, attrs)
        assert again.frozen and not net.frozen
        assert np.array_equal(again.recall(patterns).states, net.recall(patterns).states)
        with pytest.raises(InvalidArgumentError, match="frozen"):
            again.store(patterns[0])

    @pytest.mark.parametrize("bad", ["two", "diagonal"])
    def test_from_arrays_refuses_values_that_are_not_signs(self, bad):
        """Couplings with a 2, or a non-zero diagonal, are not a sign network."""
        q = np.ones((4, 4), np.int8)
        np.fill_diagonal(q, 0)
        if bad == "two":
            q[0, 1] = q[1, 0] = 2
        else:
            q[2, 2] = 1
        attrs = {"rule": {"id": "pseudo-inverse", "tol": 1e-4}, "dtype": "sign", "size": 4, "n_stored": 1, "scale": 1.0}
        with pytest.raises(InvalidArgumentError, match="sign couplings"):
            HopfieldNetwork.from_arrays({"couplings": q}, attrs)


class TestKeyedSizing:
    @settings(max_examples=30, deadline=None)
    @given(length=st.integers(1, 5000), budget=st.integers(30_000, 3_000_000))
    def test_fits_the_budget_and_the_key_takes_a_quarter(self, length, budget):
        """The chosen size fits, its key holds >= 25% of the units and at most as many as the mask part."""
        try:
            size, keys = keyed_size_for_budget(budget, length)
        except BudgetError as exc:
            assert exc.minimum > budget
            return
        mask_units = size - keys
        assert reservoir_nbytes(length, size, "sign", keys) <= budget
        assert keys >= 0.25 * size and keys <= mask_units
        blocks = -(-length // mask_units)
        assert reservoir_nbytes(length, size + 1, "sign", size + 1 - -(-length // blocks)) > budget or \
            size == 2 * -(-length // blocks)  # one more unit does not fit, unless the key cap stopped it

    def test_the_minimum_works_and_one_byte_less_does_not(self):
        """The BudgetError's minimum is a budget that works."""
        with pytest.raises(BudgetError) as info:
            keyed_size_for_budget(100, 4096)
        size, keys = keyed_size_for_budget(info.value.minimum, 4096)
        assert reservoir_nbytes(4096, size, "sign", keys) <= info.value.minimum
        with pytest.raises(BudgetError):
            keyed_size_for_budget(info.value.minimum - 1, 4096)

    def test_one_megabyte_for_bnnet_is_one_network_per_layer(self):
        """4,096 unit-mask bits in 1 MB: two networks of 2,805 units, 757 of them key units."""
        res = Reservoir.from_budget("1MB", MaskLayout(("u1", "u2"), ((2048,), (2048,))), "pseudo-inverse",
                                    key_units="auto")
        assert (res.n_blocks, res.network_size, res.key_units, res.mask_units) == (2, 2805, 757, 2048)
        assert res.nbytes <= 1_000_000 and res.dtype == "sign"


class TestKeyedRecall:
    def test_keys_are_seeded_per_task(self):
        """Task t's key depends on the key seed and t only, not on which other tasks are asked for."""
        res = Reservoir(LAYOUT, 64, "pseudo-inverse", "sign", key_units=16, key_seed=9)
        keys = res.task_keys([0, 1, 2])
        assert keys.shape == (3, res.n_blocks, 16) and set(np.unique(keys)) == {-1, 1}
        assert np.array_equal(res.task_keys([2])[0], keys[2])
        other = Reservoir(LAYOUT, 64, "pseudo-inverse", "sign", key_units=16, key_seed=10)
        assert not np.array_equal(other.task_keys([0]), keys[:1])

    def test_every_task_comes_back_with_its_key(self):
        """Clamping each task's key recalls every task's mask exactly, all blocks of the same task."""
        res, states = _keyed(8)
        assert res.n_blocks > 1 and res.key_units > 0
        result = res.recall_keyed()
        assert np.array_equal(result.states, states) and result.converged.all()

    def test_the_blocks_alone_do_not(self):
        """Without the keys (plain dynamics of the mask units from the mean cue) the masks are not recalled."""
        res, states = _keyed(8)
        _, result = res.recall_blocks("mean")
        recalled = np.concatenate([r for r in result.states])[: WIDE.length]
        assert not any(np.array_equal(recalled, s) for s in states)

    def test_a_subset_of_tasks_and_a_cue(self):
        """tasks= picks rows; a cue string starts the mask units from that cue instead of the key's field."""
        res, states = _keyed(6)
        result = res.recall_keyed(tasks=[4, 1])
        assert np.array_equal(result.states, states[[4, 1]])
        assert res.recall_keyed("mean", tasks=[2]).states.shape == (1, WIDE.length)

    @pytest.mark.parametrize("tasks", [[6], [-1], [], [[0]], ["a"]])
    def test_bad_task_indices(self, tasks):
        """Out-of-range, negative, empty, nested or non-integer task lists are refused."""
        res, _ = _keyed(6)
        with pytest.raises(InvalidArgumentError, match="tasks"):
            res.recall_keyed(tasks=tasks)

    def test_no_keys_or_no_tasks(self):
        """A reservoir without key units, or with nothing stored, cannot do keyed recall."""
        plain = Reservoir.from_budget("20kB", LAYOUT, "storkey")
        plain.store(LAYOUT.unflatten(_states(1, LAYOUT.length, 0)[0]))
        with pytest.raises(InvalidArgumentError, match="key units"):
            plain.recall_keyed()
        with pytest.raises(InvalidArgumentError, match="stored"):
            Reservoir.from_budget("20kB", LAYOUT, "pseudo-inverse", key_units="auto").recall_keyed()

    @pytest.mark.parametrize("keys", [15, 16])
    def test_key_units_must_leave_two_mask_units(self, keys):
        """A network needs two mask units to couple: key_units > network_size - 2 is refused, 14 of 16 is not."""
        with pytest.raises(InvalidArgumentError, match=r"^key_units: expected an integer in \[0, 14\]"):
            Reservoir(LAYOUT, 16, key_units=keys)
        assert Reservoir(LAYOUT, 16, key_units=14).mask_units == 2

    def test_stored_patterns_are_fixed_points_with_their_keys(self):
        """Each stored (mask block, key) pair is a fixed point of its sign network at low load."""
        res, states = _keyed(5)
        keys = res.task_keys(np.arange(5))
        blocks = split_blocks(states, res.block_layout)  # (T, B, M)
        for b, net in enumerate(res.networks):
            assert net.is_fixed_point(np.concatenate([blocks[:, b], keys[:, b]], axis=1)).all()


class TestKeyedFiles:
    def test_round_trip_recalls_the_same(self, tmp_path):
        """A keyed sign reservoir saved and read back recalls the same candidates; the file is the budget's size."""
        res, states = _keyed(6, budget="20kB", layout=LAYOUT)
        res.save(tmp_path / "r.h5")
        again = Reservoir.from_file(tmp_path / "r.h5")
        assert (again.key_units, again.key_seed, again.dtype, again.n_tasks) == (res.key_units, 0, "sign", 6)
        assert np.array_equal(again.recall_keyed().states, states)
        with h5py.File(tmp_path / "r.h5", "r") as fh:
            assert fh["couplings"].dtype == np.uint8
            assert fh["couplings"].shape == (res.n_blocks, coupling_nbytes(res.network_size, "sign") - 4)

    def test_version_1_files_read_without_keys(self, tmp_path):
        """A format-1 file (no key attributes) reads as an unkeyed reservoir."""
        res = Reservoir.from_budget("20kB", LAYOUT, "storkey", dtype="int8")
        res.store(LAYOUT.unflatten(_states(1, LAYOUT.length, 3)[0]))
        res.save(tmp_path / "v1.h5")
        with h5py.File(tmp_path / "v1.h5", "a") as fh:
            fh.attrs["format_version"] = 1
            del fh.attrs["key_units"], fh.attrs["key_seed"]
        again = Reservoir.from_file(tmp_path / "v1.h5")
        assert again.key_units == 0 and again.network_size == res.network_size

    @pytest.mark.parametrize("attr, value", [("key_units", 10_000), ("key_units", -1), ("key_seed", -5)])
    def test_hostile_key_attributes(self, tmp_path, attr, value):
        """Key attributes that do not fit the networks are refused naming the file, before any allocation."""
        res, _ = _keyed(2)
        res.save(tmp_path / "r.h5")
        with h5py.File(tmp_path / "r.h5", "a") as fh:
            fh.attrs[attr] = value
        with pytest.raises(StorageFormatError, match="r.h5"):
            Reservoir.from_file(tmp_path / "r.h5")

    def test_sign_couplings_of_the_wrong_length(self, tmp_path):
        """Packed couplings whose length is not N(N-1)/16 bytes are refused."""
        res, _ = _keyed(2)
        res.save(tmp_path / "r.h5")
        with h5py.File(tmp_path / "r.h5", "a") as fh:
            bits = fh["couplings"][()]
            del fh["couplings"]
            fh["couplings"] = bits[:, :-1]
        with pytest.raises(StorageFormatError, match="couplings"):
            Reservoir.from_file(tmp_path / "r.h5")
