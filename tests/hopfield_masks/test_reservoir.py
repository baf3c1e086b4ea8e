"""Tests of hopfield_masks/reservoir.py (and its private parts module): sizing, storing, recall, files."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.blocks import MaskLayout, split_blocks
from hopfield_masks.errors import (
    BankFileNotFoundError,
    BudgetError,
    CapacityWarning,
    InvalidArgumentError,
    PatternError,
    PatternShapeError,
    StorageFormatError,
)
from hopfield_masks.network import HopfieldNetwork
from hopfield_masks.recall.guidance import HammingGuidance
from hopfield_masks.recall.guided import EnergyLandscape
from hopfield_masks.reservoir import Reservoir, read_reservoir, write_reservoir
from hopfield_masks.reservoir_sizing import ITEMSIZE, reservoir_nbytes, size_for_budget
from tests.strategies import byte_budgets, mask_layouts

LAYOUT = MaskLayout(("fc1", "fc2"), ((5, 7), (13,)))  # P = 48: two blocks of 32, 16 padded units


def _random_tasks(layout: MaskLayout, k: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{n: rng.random(s) < 0.5 for n, s in zip(layout.names, layout.shapes)} for _ in range(k)]


def _same_masks(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module", params=["float32", "float16", "int8"])
def filled(request):
    """A storkey reservoir (2 networks of 32 units, given dtype) holding 3 random tasks, and those tasks."""
    res = Reservoir(LAYOUT, 32, "storkey", request.param)
    tasks = _random_tasks(LAYOUT, 3, seed=1)
    for t in tasks:
        res.store(t)
    return res, tasks


class TestSizing:
    def test_examples(self):
        """100 kB for 1000 entries buys 93-unit int8 networks (auto) or 23-unit float32 ones."""
        assert size_for_budget("100kB", 1000) == (93, "int8")
        assert size_for_budget("100kB", 1000, dtype="float32") == (23, "float32")
        assert reservoir_nbytes(1000, 23, "float32") <= 100_000 < reservoir_nbytes(1000, 24, "float32")

    @given(mask_layouts(max_side=40), st.one_of(byte_budgets(), st.floats(0.5, 80.0)),
           st.sampled_from(["auto", "float32", "float16", "int8"]))
    def test_from_budget_respects_the_budget(self, layout, budget, dtype):
        """The reservoir fits the budget, its bytes are its arrays' bytes, and no larger network would fit."""
        if isinstance(budget, float):  # a budget relative to the layout: about `budget` int8 networks of 16 per entry
            budget = int(budget * 16 * layout.length) + 1
        try:
            res = Reservoir.from_budget(budget, layout, rule="hebbian", dtype=dtype)
        except BudgetError as err:
            assert err.minimum > budget
            return
        actual = sum(net.couplings.nbytes for net in res.networks) + 4 * res.n_blocks + res.spin_sums.nbytes
        assert res.nbytes == actual <= budget and res.budget == budget
        assert res.spin_sums.dtype == np.int32 and res.n_blocks * res.network_size >= layout.length
        top = max(layout.length, 16)
        for name in ITEMSIZE if dtype == "auto" else (dtype,):  # brute force: nothing larger fits, in any dtype
            sizes = range(res.network_size + 1, top + 1)
            larger = [n for n in sizes if reservoir_nbytes(layout.length, n, name) <= budget]
            assert not larger, (name, larger)
        if dtype == "auto":  # at equal size the higher precision wins
            better = [d for d in ITEMSIZE if ITEMSIZE[d] > ITEMSIZE[res.dtype]]
            assert all(reservoir_nbytes(layout.length, res.network_size, d) > budget for d in better)

    @given(st.integers(1, 3000), st.integers(2, 40), st.sampled_from(["auto", "float32", "int8"]))
    def test_minimum_is_the_smallest_budget_that_works(self, length, min_size, dtype):
        """The BudgetError for a 1-byte budget names a minimum that fits, while one byte less does not."""
        with pytest.raises(BudgetError) as info:
            size_for_budget(1, length, dtype=dtype, min_network_size=min_size)
        minimum = info.value.minimum
        assert str(minimum) in str(info.value) and info.value.argument == "budget"
        size, _ = size_for_budget(minimum, length, dtype=dtype, min_network_size=min_size)
        assert size >= min_size
        with pytest.raises(BudgetError):
            size_for_budget(minimum - 1, length, dtype=dtype, min_network_size=min_size)

    def test_too_small_budget_message(self):
        """A too-small budget says how many bytes are needed (17 units beat 16: 6 blocks instead of 7) as `minimum`."""
        layout = MaskLayout(("w",), ((100,),))
        with pytest.raises(BudgetError, match=r"budget: expected at least 7360 bytes") as info:
            Reservoir.from_budget("1kB", layout, dtype="float32")
        assert info.value.minimum == 7360 == reservoir_nbytes(100, 17, "float32") < reservoir_nbytes(100, 16, "float32")
        assert Reservoir.from_budget(7360, layout, dtype="float32").network_size == 17

    @pytest.mark.parametrize(("text", "size"), [("1MB", 3), ("512KiB", 2), ("2e6", 4), (40_000, 1)])
    def test_parses_budget_text(self, text, size):
        """Budgets are read as text with units ('1MB', '512KiB', '2e6') or as a byte count."""
        res = Reservoir.from_budget(text, MaskLayout(("w",), ((200,),)), rule="hebbian", dtype="float32")
        assert res.budget == {"1MB": 10**6, "512KiB": 524288, "2e6": 2 * 10**6, 40_000: 40_000}[text]
        assert res.network_size >= 16 and res.nbytes <= res.budget

    @pytest.mark.parametrize("budget", ["abc", "1XB", 0, -5, True, None])
    def test_rejects_unparseable_budgets(self, budget):
        """Unreadable or non-positive budgets raise BudgetError."""
        with pytest.raises(BudgetError, match="budget"):
            Reservoir.from_budget(budget, LAYOUT)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"dtype": "float64"}, "dtype"), ({"min_network_size": 1}, "min_network_size"), ({"layout": "x"}, "layout")],
    )
    def test_rejects_bad_arguments(self, kwargs, match):
        """A bad dtype, minimum network size or layout is named in the error."""
        args = {"budget": "1MB", "layout": LAYOUT, **kwargs}
        with pytest.raises(InvalidArgumentError, match=match):
            Reservoir.from_budget(**args)


class TestConstruction:
    def test_sizes_and_exact_storage(self):
        """Blocks, bytes, capacity and the packed-bit alternative follow from P, N and the rule."""
        res = Reservoir(LAYOUT, 32, "hebbian", "float16")
        assert (res.length, res.n_blocks, res.network_size) == (48, 2, 32)
        assert res.nbytes == 2 * 32 * 32 * 2 + 2 * 4 + 48 * 4
        assert res.capacity == pytest.approx(32 / (2 * np.log(32)))
        assert res.exact_storage_bytes_per_task == 6 and res.n_tasks == 0 and res.load == 0.0
        assert isinstance(res, EnergyLandscape)  # guided recall runs on it directly

    @pytest.mark.parametrize(
        ("args", "match"),
        [((MaskLayout(("w",), ((0,),)), 8), "layout"), ((LAYOUT, 1), "network_size"),
         ((LAYOUT, 8.0), "network_size"), ((LAYOUT, 8, "storkey", "float64"), "dtype")],
    )
    def test_rejects_bad_arguments(self, args, match):
        """Empty layouts, sizes below 2, non-integer sizes and unknown dtypes are refused."""
        with pytest.raises(InvalidArgumentError, match=match):
            Reservoir(*args)


class TestStore:
    def test_blocks_go_to_their_networks_incrementally(self):
        """Storing tasks one by one gives each network the couplings of storing its blocks, without earlier masks."""
        tasks = _random_tasks(LAYOUT, 3, seed=2)
        res = Reservoir(LAYOUT, 32, "storkey")
        assert [res.store(t) for t in tasks] == [0, 1, 2]
        states = np.stack([LAYOUT.flatten_spins(t) for t in tasks])  # (3, P)
        for b, net in enumerate(res.networks):
            alone = HopfieldNetwork(32, "storkey")
            for s in states:
                alone.store(split_blocks(s, res.block_layout)[b])
            np.testing.assert_array_equal(net.couplings, alone.couplings)
        np.testing.assert_array_equal(res.spin_sums, states.sum(axis=0))
        np.testing.assert_allclose(res.mean_cue(), states.mean(axis=0))

    @pytest.mark.parametrize(
        ("masks", "error"),
        [({"fc1": np.ones((5, 7))}, PatternShapeError),
         ({"fc1": np.ones((7, 5)), "fc2": np.ones(13)}, PatternShapeError),
         ({"fc1": np.full((5, 7), 2), "fc2": np.ones(13)}, PatternError)],
    )
    def test_bad_masks_change_nothing(self, masks, error):
        """Masks with missing layers, wrong shapes or non-binary values raise and leave the reservoir unchanged."""
        res = Reservoir(LAYOUT, 32, "hebbian")
        with pytest.raises(error):
            res.store(masks)
        assert res.n_tasks == 0 and not res.spin_sums.any()
        assert all(not net.couplings.any() for net in res.networks)

    def test_capacity_warning_once_when_over(self):
        """Below capacity storing is silent; each store beyond it warns exactly once (not once per network)."""
        layout = MaskLayout(("w",), ((40,),))  # 3 networks of 16: hebbian capacity 2.9 tasks
        res = Reservoir(layout, 16, "hebbian")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for t in _random_tasks(layout, 2, seed=3):
                res.store(t)
        assert caught == []
        with pytest.warns(CapacityWarning, match="3 tasks, above the hebbian capacity of 2.9") as record:
            res.store(_random_tasks(layout, 1, seed=4)[0])
        assert len(record) == 1 and res.load == pytest.approx(3 / res.capacity) and res.load > 1


class TestStorePacked:
    """store_packed: every task at once, network after network, equal bit for bit to store() of each task."""

    @staticmethod
    def _packed(layout: MaskLayout, tasks: list[dict]) -> np.ndarray:
        from hopfield_masks.patterns import pack_bits

        return np.stack([pack_bits(layout.flatten(t)) for t in tasks])

    @given(layout=mask_layouts(max_side=30), seed=st.integers(0, 2**16), k=st.integers(1, 5),
           rule=st.sampled_from(["hebbian", "storkey", "storkey-reference", "pseudo-inverse"]),
           dtype=st.sampled_from(["float32", "float16", "int8", "sign"]), keys=st.integers(0, 3),
           size=st.integers(4, 24))
    def test_equals_storing_each_task_in_turn(self, layout, seed, k, rule, dtype, keys, size):
        size = max(size, keys + 2)  # two mask units per network at least
        tasks = _random_tasks(layout, k, seed)
        one = Reservoir(layout, size, rule, dtype, key_units=keys, key_seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CapacityWarning)
            for t in tasks:
                one.store(t)
            all_at_once = Reservoir(layout, size, rule, dtype, key_units=keys, key_seed=seed)
            all_at_once.store_packed(self._packed(layout, tasks))
        assert all_at_once.n_tasks == k and all_at_once.capacity == pytest.approx(one.capacity)
        np.testing.assert_array_equal(all_at_once.spin_sums, one.spin_sums)
        assert len(all_at_once.networks) == len(one.networks) == one.n_blocks
        for a, b in zip(all_at_once.networks, one.networks):
            np.testing.assert_array_equal(a.couplings, b.couplings)
            assert a.scale == b.scale and a.n_stored == b.n_stored == k and a.dtype == dtype
        state = layout.flatten_spins(tasks[0])
        assert all_at_once.energy(state) == one.energy(state)
        np.testing.assert_array_equal(all_at_once.energy_gradient(state), one.energy_gradient(state))

    def test_sign_couplings_are_kept_packed_and_unpacked_per_network(self, tmp_path):
        """Kept: the bits the file holds (nbytes), each network unpacked when taken, frozen; the file is the same."""
        tasks = _random_tasks(LAYOUT, 3, seed=5)
        res = Reservoir(LAYOUT, 40, "pseudo-inverse", "sign", key_units=8)
        res.store_packed(self._packed(LAYOUT, tasks))
        bits, scales = res.packed_sign_couplings()
        assert bits.shape == (res.n_blocks, (40 * 39 + 15) // 16) and scales.shape == (res.n_blocks,)
        assert not bits.flags.writeable and bits.nbytes + scales.nbytes + res.spin_sums.nbytes == res.nbytes
        assert res.networks[0].frozen and res.networks[-1].size == 40 and len(res.networks[:2]) == 2
        with pytest.raises(InvalidArgumentError, match="frozen"):
            res.store(tasks[0])
        res.save(tmp_path / "packed.h5")
        back = Reservoir.from_file(tmp_path / "packed.h5")
        assert back.packed_sign_couplings() is None  # read back as int8 matrices
        for a, b in zip(back.networks, res.networks):
            np.testing.assert_array_equal(a.couplings, b.couplings)
        keyed = res.recall_keyed()
        np.testing.assert_array_equal(keyed.states, back.recall_keyed().states)
        np.testing.assert_array_equal(keyed.states, np.stack([LAYOUT.flatten_spins(t) for t in tasks]))

    def test_refuses_bad_bits_and_a_reservoir_that_holds_tasks(self):
        res = Reservoir(LAYOUT, 32, "hebbian")
        for bits in (np.zeros((2, 5), np.uint8), np.zeros((0, 6), np.uint8), np.zeros((2, 6), np.int8)):
            with pytest.raises(InvalidArgumentError, match="^bits:"):
                res.store_packed(bits)
        res.store(_random_tasks(LAYOUT, 1, seed=1)[0])
        with pytest.raises(InvalidArgumentError, match="^reservoir:"):
            res.store_packed(np.zeros((1, 6), np.uint8))

    @given(n=st.integers(2, 70), seed=st.integers(0, 2**16), data=st.data())
    def test_unpacking_agrees_with_the_network_modules_packing(self, n, seed, data):
        """The vectorised pack/unpack (gather or, for large networks, scatter) against network.py's row-by-row ones."""
        import hopfield_masks.reservoir as module
        from hopfield_masks.network import pack_sign_couplings, unpack_sign_couplings

        rng = np.random.default_rng(seed)
        q = np.triu(rng.choice(np.array([-1, 1], np.int8), size=(n, n)), 1)
        q = q + q.T
        m = data.draw(st.integers(1, n))
        bits = pack_sign_couplings(q)
        for gather_bytes in (module._GATHER_BYTES, 0):
            try:
                module._GATHER_BYTES = gather_bytes
                module._gather.cache_clear()
                np.testing.assert_array_equal(module._pack_sign(q), bits)
                np.testing.assert_array_equal(module._unpack_sign(bits, n), unpack_sign_couplings(bits, n))
                np.testing.assert_array_equal(module._unpack_sign(bits, n, m), q[:m, :m])
            finally:
                module._GATHER_BYTES = 1 << 22
                module._gather.cache_clear()


class TestCues:
    def test_mean_needs_a_task(self):
        """The mean cue of an empty reservoir raises instead of dividing by zero."""
        with pytest.raises(InvalidArgumentError, match="0 stored tasks"):
            Reservoir(LAYOUT, 32).cue("mean")

    def test_noisy_flips_exactly_the_asked_fraction(self):
        """'noisy:<p>' flips exactly round(p * P) spins of the reference, the same ones for the same seed."""
        res = Reservoir(LAYOUT, 32)
        task = _random_tasks(LAYOUT, 1, seed=5)[0]
        clean = LAYOUT.flatten_spins(task)
        noisy = res.cue("noisy:0.25", seed=3, reference=task)
        assert noisy.dtype == np.float64 and np.count_nonzero(noisy != clean) == 12
        np.testing.assert_array_equal(noisy, res.cue("noisy:0.25", seed=3, reference=clean))

    def test_random_is_seeded(self):
        """'random' cues are ±1, equal for equal seeds and different for different ones."""
        res = Reservoir(LAYOUT, 32)
        a, b, c = res.cue("random", seed=1), res.cue("random", seed=1), res.cue("random", seed=2)
        assert set(np.unique(a)) <= {-1.0, 1.0} and np.array_equal(a, b) and not np.array_equal(a, c)

    @pytest.mark.parametrize(
        ("kind", "reference", "match"),
        [("noisy:2", np.ones(48), "kind"), ("noisy:x", np.ones(48), "kind"), ("median", None, "kind"),
         (3, None, "kind"), ("noisy:0.1", None, "reference"), ("noisy:0.1", np.ones(47), "reference")],
    )
    def test_rejects_bad_cues(self, kind, reference, match):
        """Unknown kinds, bad noise levels and missing or misshapen references are refused."""
        with pytest.raises((InvalidArgumentError, PatternShapeError), match=match):
            Reservoir(LAYOUT, 32).cue(kind, reference=reference)


class TestLandscape:
    @given(mask_layouts(max_side=6), st.integers(2, 12), st.integers(0, 2**32 - 1))
    def test_energy_and_gradient_match_the_padded_quadratic_form(self, layout, size, seed):
        """Energy and gradient equal those of E(s) = -1/2 (Ps)^T W (Ps), P the wrap-padding copy matrix."""
        res = Reservoir(layout, size, "hebbian")
        for t in _random_tasks(layout, 2, seed):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CapacityWarning)  # tiny networks: load is irrelevant here
                res.store(t)
        p, n, b = layout.length, size, res.n_blocks
        copy = np.zeros((b * n, p))  # (B*N, P): row j picks the spin that unit j holds
        copy[np.arange(b * n), np.arange(b * n) % p] = 1.0
        big = np.zeros((b * n, b * n))  # block-diagonal couplings
        for i, net in enumerate(res.networks):
            big[i * n:(i + 1) * n, i * n:(i + 1) * n] = net.weights
        a = copy.T @ big @ copy  # (P, P)
        s = np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), p)
        assert res.energy(s) == pytest.approx(-0.5 * s @ a @ s, abs=1e-4)
        np.testing.assert_allclose(res.energy_gradient(s), -0.5 * (a + a.T) @ s, atol=1e-4)

    def test_sweep_refreshes_padding_before_the_last_block(self, monkeypatch):
        """The padded block is swept with copies equal to the already-updated sources, and flips are counted on P."""
        res = Reservoir(MaskLayout(("w",), ((20,),)), 16, "hebbian")  # blocks: 16 + (4 real, 12 copies)
        res.store({"w": np.arange(20) % 3 == 0})
        seen = {}
        for b, net in enumerate(res.networks):
            original = net.sweep

            def spy(state, field, rng, _b=b, _orig=original):
                seen[_b] = (state.copy(), field)
                out = _orig(state, field, rng)
                seen[(_b, "out")] = out[0].copy()
                return out

            monkeypatch.setattr(net, "sweep", spy)
        cue = -np.ones(20, np.int8)
        state, flips = res.sweep(cue, np.linspace(-1, 1, 20), np.random.default_rng(0))
        np.testing.assert_array_equal(seen[1][0][4:], seen[(0, "out")][:12])  # copies of the updated sources
        np.testing.assert_allclose(seen[1][1][4:], np.linspace(-1, 1, 20)[:12])  # copies feel the sources' field
        assert flips == np.count_nonzero(state != cue) and state.shape == (20,)

    def test_unpadded_sweeps_never_raise_the_energy(self):
        """Without padding, asynchronous sweeps over all blocks never increase the total energy."""
        layout = MaskLayout(("w",), ((64,),))
        res = Reservoir(layout, 32, "hebbian")
        for t in _random_tasks(layout, 3, seed=6):
            res.store(t)
        rng, s = np.random.default_rng(0), res.cue("random", seed=9).astype(np.int8)
        energies = [res.energy(s)]
        for _ in range(5):
            s, _ = res.sweep(s, None, rng)
            energies.append(res.energy(s))
        assert np.all(np.diff(energies) <= 1e-9)


class TestRecall:
    @pytest.mark.parametrize("method", ["score-descent", "dynamics", "blocks"])
    def test_noisy_cue_returns_the_exact_masks(self, filled, method):
        """At low load, unguided recall from a 5%-noisy cue returns each task's masks exactly."""
        res, tasks = filled
        for i, task in enumerate(tasks):
            cue = res.cue("noisy:0.05", seed=i, reference=task)
            masks, result = res.recall_blocks(cue) if method == "blocks" else res.recall(cue, method=method)
            assert _same_masks(masks, task)
            if method == "blocks":
                assert result.states.shape == (2, 32) and result.converged.all()

    @pytest.mark.parametrize(("method", "scale"), [("score-descent", 2e-3), ("dynamics", 1.0)])
    def test_guidance_picks_the_task_from_the_mean_cue(self, filled, method, scale):
        """From the reference's start (the mean mask), Hamming guidance towards a task recalls it exactly."""
        res, tasks = filled
        for task in tasks:
            guidance = HammingGuidance(LAYOUT.flatten_spins(task), scale=scale)
            masks, result = res.recall("mean", guidance, method=method)
            assert _same_masks(masks, task) and result.state.shape == (48,)

    def test_steps_reach_the_procedure(self, filled):
        """steps sets the number of score-descent steps run."""
        res, tasks = filled
        _, result = res.recall(tasks[0], steps=7)
        assert result.steps_run == 7

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"method": "annealing"}, "method"), ({"steps": 0}, "steps"), ({"method": "dynamics", "steps": True}, "steps"),
         ({"cue": np.zeros(5)}, "cue"), ({"cue": np.full(48, np.nan)}, "cue")],
    )
    def test_rejects_bad_arguments(self, filled, kwargs, match):
        """Unknown methods, bad step counts and bad cue arrays are named in the error."""
        with pytest.raises((InvalidArgumentError, PatternShapeError), match=match):
            filled[0].recall(**kwargs)


class TestFiles:
    def test_round_trip(self, filled, tmp_path):
        """store -> save -> load gives identical couplings, scales, sums, layouts, rule, dtype and recall."""
        res, tasks = filled
        path = tmp_path / "res.h5"
        res.save(path)
        back = Reservoir.from_file(path)
        for attr in ("layout", "block_layout", "rule", "dtype"):
            assert getattr(back, attr) == getattr(res, attr)
        assert (back.n_tasks, back.budget, back.nbytes) == (res.n_tasks, res.budget, res.nbytes)
        np.testing.assert_array_equal(back.spin_sums, res.spin_sums)
        for a, b in zip(res.networks, back.networks):
            assert a.couplings.dtype == b.couplings.dtype and a.scale == b.scale and a.n_stored == b.n_stored
            np.testing.assert_array_equal(a.couplings, b.couplings)
        cue = res.cue("noisy:0.05", seed=0, reference=tasks[0])
        assert _same_masks(back.recall(cue)[0], res.recall(cue)[0])

    def test_layout_of_the_file(self, tmp_path):
        """The file carries the documented attributes and datasets (shapes and dtypes)."""
        res = Reservoir.from_budget("40kB", LAYOUT, rule="hebbian", dtype="int8")
        res.store(_random_tasks(LAYOUT, 1, seed=8)[0])
        res.save(tmp_path / "r.h5")
        with h5py.File(tmp_path / "r.h5", "r") as fh:
            attrs = dict(fh.attrs)
            assert attrs["kind"] == "reservoir" and attrs["format_version"] == 2 and attrs["budget"] == 40_000
            assert attrs["key_units"] == 0 and attrs["key_seed"] == 0
            assert json.loads(attrs["rule"]) == {"id": "hebbian"} and attrs["dtype"] == "int8"
            assert json.loads(attrs["mask_layout"]) == LAYOUT.to_dict() and attrs["n_tasks"] == 1
            assert json.loads(attrs["block_layout"])["block_size"] == attrs["network_size"] == res.network_size
            assert fh["couplings"].shape == (res.n_blocks, res.network_size, res.network_size)
            assert fh["couplings"].dtype == np.int8 and fh["scales"].dtype == np.float32
            assert fh["spin_sums"].dtype == np.int32 and fh["spin_sums"].shape == (48,)

    def test_into_a_subgroup(self, filled, tmp_path):
        """write_reservoir/read_reservoir work on any group (e.g. an attachment of a mask bank)."""
        res, _ = filled
        with h5py.File(tmp_path / "bank.h5", "w") as fh:
            write_reservoir(fh.create_group("attachments/reservoir"), res)
            write_reservoir(fh["attachments/reservoir"], res)  # writing again replaces
        with h5py.File(tmp_path / "bank.h5", "r") as fh:
            back = read_reservoir(fh["attachments/reservoir"])
        np.testing.assert_array_equal(back.networks[1].couplings, res.networks[1].couplings)

    def test_failed_save_keeps_the_old_file(self, filled, tmp_path, monkeypatch):
        """A save that fails half-way leaves the previous file intact (atomic replacement)."""
        res, _ = filled
        path = tmp_path / "res.h5"
        res.save(path)
        before = path.read_bytes()
        monkeypatch.setattr("hopfield_masks.reservoir.write_group", lambda g, r: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            res.save(path)
        assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["res.h5"]

    def test_missing_and_non_hdf5_files(self, tmp_path):
        """A missing file raises BankFileNotFoundError; a text file raises StorageFormatError naming it."""
        with pytest.raises(BankFileNotFoundError, match="nope.h5"):
            Reservoir.from_file(tmp_path / "nope.h5")
        (tmp_path / "text.h5").write_text("hello")
        with pytest.raises(StorageFormatError, match="text.h5"):
            Reservoir.from_file(tmp_path / "text.h5")

    @pytest.mark.parametrize(
        ("corrupt", "match"),
        [
            (lambda f: f.attrs.__setitem__("kind", "mask-bank"), "is not a reservoir"),
            (lambda f: f.__delitem__("spin_sums"), "missing spin_sums"),
            (lambda f: f.attrs.__delitem__("rule"), "missing rule"),
            (lambda f: f.attrs.__setitem__("format_version", 7), "format_version 7"),
            (lambda f: f.attrs.__setitem__("rule", "{not json"), "malformed"),
            (lambda f: f.attrs.__setitem__("rule", json.dumps({"id": "no-such-rule"})), "malformed"),
            (lambda f: f.attrs.__setitem__("network_size", 31), "inconsistent"),
            (lambda f: f.attrs.__setitem__("dtype", "float64"), "inconsistent"),
            (lambda f: (f.__delitem__("scales"), f.create_dataset("scales", data=np.ones(3, np.float32))), "scales"),
            (lambda f: f["spin_sums"].__setitem__(0, 99), "spin sums above n_tasks"),
            (lambda f: f["couplings"].__setitem__((0, 0, 1), 5), "do not make a network"),
        ],
    )
    def test_corrupt_files(self, filled, tmp_path, corrupt, match):
        """Each kind of damage raises StorageFormatError naming the file and saying what is wrong."""
        res, _ = filled
        path = tmp_path / "bad.h5"
        res.save(path)
        with h5py.File(path, "r+") as fh:
            corrupt(fh)
        with pytest.raises(StorageFormatError, match=match) as info:
            Reservoir.from_file(path)
        assert info.value.path.endswith("bad.h5")

    def test_write_needs_a_reservoir(self, tmp_path):
        """write_reservoir refuses objects that are not reservoirs."""
        with h5py.File(tmp_path / "x.h5", "w") as fh, pytest.raises(InvalidArgumentError, match="reservoir"):
            write_reservoir(fh, object())
