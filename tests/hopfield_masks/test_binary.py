"""Tests for hopfield_masks.binary: kernels against their NumPy references, capacity and basins, the reservoir."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopfield_masks import MaskLayout
from hopfield_masks.binary import BinaryReservoir, PerceptronRule, binary_size_for_budget, fit_couplings, recall_couplings
from hopfield_masks.binary import _kernels
from hopfield_masks.binary.learning import REINFORCE_BITS, pack_spins, unpack_spins
from hopfield_masks.binary.reference import fit_rows_reference, recall_rows_reference, xorshift_reference
from hopfield_masks.errors import BudgetError, InvalidArgumentError, StorageFormatError


def spins(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (2 * rng.integers(0, 2, size=shape) - 1).astype(np.int8)


def kernel_inputs(rule: PerceptronRule, keys: np.ndarray, masks: np.ndarray):
    """The arrays fit_couplings hands the kernel, built the same way (for the reference)."""
    t, k = keys.shape
    _, b, m = masks.shape
    rng = np.random.default_rng(np.random.SeedSequence(rule.seed))
    hidden = (2 * rng.integers(0, 2, size=(b, m, k + m), dtype=np.int16) - 1).astype(np.int16)
    states = rng.integers(1, 2**63, size=b * m, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    reinforce = np.uint64(round(rule.reinforcement(k) * 2**REINFORCE_BITS))
    return hidden, pack_spins(hidden.astype(np.int8)), states, reinforce


# -- kernels against references ----------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), t=st.integers(1, 8), keyed=st.booleans(), blocks=st.integers(1, 2),
       kappa=st.integers(0, 3), theta=st.integers(0, 3), reinforce=st.floats(0, 1), bound=st.integers(0, 15),
       epochs=st.integers(1, 6))
def test_fit_kernel_agrees_with_reference(seed, t, keyed, blocks, kappa, theta, reinforce, bound, epochs):
    rng = np.random.default_rng(seed)
    k = 64 if keyed else 0
    keys, masks = spins(rng, t, k), spins(rng, t, blocks, 64)
    rule = PerceptronRule(kappa_key=kappa, kappa_full=kappa + 1, theta=theta, reinforce=reinforce,
                          bound=2 * bound + 1, max_epochs=epochs, seed=seed)
    got = fit_couplings(keys, masks, rule, keep_hidden=True, chunk_rows=64)  # one block per kernel call
    hidden, couplings, states, p = kernel_inputs(rule, keys, masks)
    ran = np.zeros(blocks * 64, np.int64)
    fit_rows_reference(None, keys, None, masks, hidden, couplings, states, kappa, kappa + 1, theta, p,
                       2 * bound + 1, epochs, None, ran)
    assert np.array_equal(got.hidden, hidden)
    assert np.array_equal(got.couplings, couplings)
    assert np.array_equal(got.epochs.ravel(), ran)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), q=st.integers(1, 5), key_words=st.integers(0, 2), blocks=st.integers(1, 3),
       from_key=st.booleans(), sweeps=st.integers(1, 4))
def test_recall_kernel_agrees_with_reference(seed, q, key_words, blocks, from_key, sweeps):
    rng = np.random.default_rng(seed)
    k = 64 * key_words
    from_key = from_key and k > 0
    couplings = pack_spins(spins(rng, blocks, 64, k + 64))
    keys, start = spins(rng, q, k), spins(rng, q, blocks, 64)
    got, got_sweeps, got_converged = recall_couplings(couplings, keys, start=None if from_key else start,
                                                      max_sweeps=sweeps)
    out = np.zeros((q, blocks, 1), np.uint64)
    ran, converged = np.zeros((q, blocks), np.int64), np.zeros((q, blocks), bool)
    key_bits = pack_spins(keys) if k else np.zeros((q, 0), np.uint64)
    recall_rows_reference(couplings, key_bits, pack_spins(start), from_key, sweeps, out, ran, converged)
    assert np.array_equal(got, unpack_spins(out))
    assert np.array_equal(got_sweeps, ran.max(1)) and np.array_equal(got_converged, converged.all(1))


def test_xorshift_matches_the_reference():
    s = np.uint64(88172645463325252)
    r = int(s)
    for _ in range(5):
        s, r = np.uint64(_kernels.xorshift(s)), xorshift_reference(r)
        assert int(s) == r


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), t=st.integers(1, 12), key_words=st.integers(0, 2), blocks=st.integers(1, 5),
       chunk=st.integers(1, 5), grow=st.booleans())
def test_learning_in_chunks_of_rows_gives_what_learning_every_row_at_once_gives(seed, t, key_words, blocks, chunk, grow):
    """Only a chunk's hidden states exist at once; couplings, hidden states and epochs do not depend on the chunks."""
    rng = np.random.default_rng(seed)
    k = 64 * key_words
    keys, masks = spins(rng, t, k), spins(rng, t, blocks, 64)
    start = pack_spins(spins(rng, blocks, 64, k + 64)) if grow else None
    rule = PerceptronRule(max_epochs=5, seed=seed)
    whole = fit_couplings(keys, masks, rule, start=start, keep_hidden=True, chunk_rows=blocks * 64)
    parts = fit_couplings(keys, masks, rule, start=start, keep_hidden=True, chunk_rows=64 * chunk)
    default = fit_couplings(keys, masks, rule, start=start)
    assert np.array_equal(whole.couplings, parts.couplings) and np.array_equal(whole.couplings, default.couplings)
    assert np.array_equal(whole.hidden, parts.hidden) and default.hidden is None
    assert np.array_equal(whole.epochs, parts.epochs) and np.array_equal(whole.epochs, default.epochs)


def test_chunks_are_whole_blocks_of_about_a_sixty_fourth_of_the_rows():
    from hopfield_masks.binary.learning import MIN_CHUNK_ROWS, fit_chunk_rows

    assert fit_chunk_rows(4144, 64) == 65 * 64  # the README's LeNet masks: 4,144 blocks, 65 per chunk
    assert fit_chunk_rows(10, 64) == 640  # fewer rows than a chunk: all of them
    assert fit_chunk_rows(100, 64) == MIN_CHUNK_ROWS  # 32 blocks
    assert fit_chunk_rows(1000, 4096) == 16 * 4096


def test_the_same_seed_gives_the_same_couplings_for_any_number_of_threads():
    import numba

    rng = np.random.default_rng(3)
    keys, masks = spins(rng, 30, 64), spins(rng, 30, 4, 64)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fit_couplings(keys, masks, PerceptronRule(seed=9))
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS))
        many = fit_couplings(keys, masks, PerceptronRule(seed=9))
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.couplings, many.couplings)


# -- capacity and basins (the properties) ------------------------------------------------------------


@pytest.mark.parametrize("n", [256, 1024])
def test_stores_six_tenths_n_random_patterns_exactly(n):
    rng = np.random.default_rng(n)
    t = int(0.6 * n)
    patterns = spins(rng, t, 1, n)
    fit = fit_couplings(np.zeros((t, 0), np.int8), patterns, PerceptronRule(max_epochs=3000))
    assert fit.rows_unconverged == 0
    states, _, converged = recall_couplings(fit.couplings, np.zeros((t, 0), np.int8), start=patterns, max_sweeps=2)
    assert np.array_equal(states, patterns) and converged.all()  # every pattern a fixed point


@pytest.mark.parametrize("n", [256, 1024])
def test_recall_from_five_percent_noise_at_three_tenths_n(n):
    rng = np.random.default_rng(n + 1)
    t = int(0.3 * n)
    patterns = spins(rng, t, 1, n)
    rule = PerceptronRule(kappa_full=int(np.sqrt(n)) // 2, max_epochs=2000)  # a margin of sqrt(N)/2
    fit = fit_couplings(np.zeros((t, 0), np.int8), patterns, rule)
    noisy = patterns.copy()
    for row in noisy:
        row[0, rng.choice(n, round(0.05 * n), replace=False)] *= -1
    states, _, _ = recall_couplings(fit.couplings, np.zeros((t, 0), np.int8), start=noisy)
    assert (states == patterns).all(axis=(1, 2)).mean() >= 0.95


def test_keyed_rows_use_every_coupling_bit_for_tasks():
    # K = 256 key units store 120 random masks (0.47 per key unit), each recalled exactly from its key alone
    rng = np.random.default_rng(0)
    keys, masks = spins(rng, 120, 256), spins(rng, 120, 2, 64)
    fit = fit_couplings(keys, masks, PerceptronRule())
    states, sweeps, _ = recall_couplings(fit.couplings, keys)
    assert fit.rows_unconverged == 0 and np.array_equal(states, masks) and sweeps.max() == 1


# -- the rule's settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, argument", [
    ({"bound": 400}, "bound"), ({"bound": 0}, "bound"), ({"theta": -1}, "theta"), ({"reinforce": 1.5}, "reinforce"),
    ({"max_epochs": 0}, "max_epochs"), ({"kappa_key": True}, "kappa_key"), ({"seed": -1}, "seed"),
])
def test_rule_settings_are_checked(kwargs, argument):
    with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
        PerceptronRule(**kwargs)


def test_rule_round_trips_through_its_dict():
    rule = PerceptronRule(kappa_full=3, reinforce=0.4, seed=5)
    assert PerceptronRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(InvalidArgumentError, match="^rule:"):
        PerceptronRule.from_dict({**rule.to_dict(), "surprise": 1})


@pytest.mark.parametrize("keys, masks, argument", [
    (np.ones((3, 60), np.int8), np.ones((3, 1, 64), np.int8), "keys"),  # not a multiple of 64
    (np.ones((3, 64), np.int8), np.zeros((3, 1, 64), np.int8), "masks"),  # not spins
    (np.ones((3, 64), np.int8), np.ones((2, 1, 64), np.int8), "masks"),  # rows disagree
    (np.ones((3, 64), np.int16), np.ones((3, 1, 64), np.int8), "keys"),  # dtype
])
def test_fit_refuses_bad_arrays(keys, masks, argument):
    with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
        fit_couplings(keys, masks)


# -- the reservoir -------------------------------------------------------------------------------------------


LAYOUT = MaskLayout(("a", "b"), ((100,), (156,)))  # 256 entries: 4 blocks of 64


def random_states(t: int, seed: int = 0, length: int = LAYOUT.length) -> np.ndarray:
    return spins(np.random.default_rng(seed), t, length)


def test_sizing_uses_the_budget_for_key_couplings():
    keys, block = binary_size_for_budget(1_000_000, 4096)
    assert block == 64 and (keys + block) * 4096 // 8 <= 1_000_000 < (keys + block + 64) * 4096 // 8
    assert binary_size_for_budget(1_000_000, 4096, n_tasks=100)[0] < keys  # fewer tasks, shorter key
    with pytest.raises(BudgetError, match="^budget: expected at least 65,536 bytes"):
        binary_size_for_budget(60_000, 4096)


def test_sizing_for_a_task_count_adds_one_word_of_key_when_the_budget_holds_it():
    assert binary_size_for_budget(256 * 1024, 4096, n_tasks=26)[0] == 128  # 26 / 0.495 -> 64, plus 64
    assert binary_size_for_budget(256 * 1024, 4096, n_tasks=60)[0] == 192  # 60 / 0.495 -> 128, plus 64
    assert binary_size_for_budget(100_000, 4096, n_tasks=5)[0] == 128
    assert binary_size_for_budget(65_536, 4096, n_tasks=5)[0] == 64  # only one word fits


def test_reservoir_recalls_every_task_from_its_key_and_counts_every_bit():
    res = BinaryReservoir.from_budget("20kB", LAYOUT, n_tasks=60)
    fit = res.fit(random_states(60))
    assert fit.rows_unconverged == 0 and res.n_tasks == 60
    assert res.nbytes == res.n_blocks * 64 * (res.key_units + 64) // 8 <= 20_000
    result = res.recall_keyed()
    assert np.array_equal(result.states, random_states(60)) and result.converged.all()
    assert np.array_equal(res.recall_keyed(tasks=[7, 3]).states, random_states(60)[[7, 3]])


def test_padded_last_block_recalls_the_masks():
    layout = MaskLayout(("w",), ((200,),))  # 4 blocks, the last padded with 56 copies
    res = BinaryReservoir(layout, key_units=128)
    states = random_states(30, 2, 200)
    res.fit(states)
    assert np.array_equal(res.recall_keyed().states, states)


def test_growth_without_the_bank_keeps_every_task():
    res = BinaryReservoir(LAYOUT, key_units=128)
    states = random_states(50, 4)
    res.fit(states[:40])
    for row in states[40:]:
        fit = res.add(row[None, :])
        assert fit.rows_unconverged == 0
    assert res.n_tasks == 50 and np.array_equal(res.recall_keyed().states, states)


def test_save_and_read_back(tmp_path):
    res = BinaryReservoir(LAYOUT, key_units=64, key_seed=3)
    res.fit(random_states(20))
    res.save(tmp_path / "r.h5")
    back = BinaryReservoir.from_file(tmp_path / "r.h5")
    assert back.key_units == 64 and back.key_seed == 3 and back.n_tasks == 20 and back.layout == LAYOUT
    assert np.array_equal(back.couplings, res.couplings)
    assert np.array_equal(back.recall_keyed().states, random_states(20))


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.attrs.__setitem__("key_units", 2**40), "malformed binary reservoir attributes"),
    (lambda f: f.attrs.__setitem__("format_version", 9), "format_version 9 is not supported"),
    (lambda f: f.attrs.__setitem__("n_tasks", -1), "must not be negative"),
    (lambda f: f.attrs.__setitem__("rule", "{\"id\": \"hebbian\"}"), "malformed binary reservoir attributes"),
    (lambda f: (f.__delitem__("couplings"), f.create_dataset("couplings", data=np.zeros((1, 64, 2), np.uint64))),
     "inconsistent binary reservoir"),
    (lambda f: f.__delitem__("spin_sums"), "missing spin_sums"),
    (lambda f: f.attrs.__setitem__("n_tasks", 0), "spin sums above n_tasks"),
    (lambda f: (f.__delitem__("spin_sums"), f.__setitem__("spin_sums", h5py.SoftLink("/couplings"))), "link"),
])
def test_hostile_reservoir_files_are_refused_in_one_line(tmp_path, damage, message):
    path = tmp_path / "r.h5"
    res = BinaryReservoir(LAYOUT, key_units=64)
    res.fit(random_states(5))
    res.save(path)
    with h5py.File(path, "a") as fh:
        damage(fh)
    before = path.read_bytes()
    with pytest.raises(StorageFormatError) as info:
        BinaryReservoir.from_file(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before


def test_reservoir_refuses_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="^key_units:"):
        BinaryReservoir(LAYOUT, key_units=100)
    with pytest.raises(InvalidArgumentError, match="^block_size:"):
        BinaryReservoir(LAYOUT, key_units=64, block_size=32)
    res = BinaryReservoir(LAYOUT, key_units=64)
    with pytest.raises(InvalidArgumentError, match="^reservoir:"):
        res.recall_keyed()
    res.fit(random_states(3))
    with pytest.raises(InvalidArgumentError, match="^tasks:"):
        res.recall_keyed(tasks=[3])
    with pytest.raises(InvalidArgumentError, match="^masks:"):
        res.fit(np.ones((2, 10), np.int8))
