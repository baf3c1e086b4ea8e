"""Tests for supsup_core.layers (and the Numba kernels behind their packed contractions)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from supsup_core import _kernels, contraction
from supsup_core.errors import ConfigError
from supsup_core.layers import MaskedConv2d, MaskedLinear, UnitMask, init_base_weight
from supsup_core.contraction import fixed_point_shifts, row_abs_sums, scale_factors, uint64_words, use_row_vector_kernel
from supsup_core.subnet import threshold_mask
from tests.strategies import packed_mask_stacks


def _random_masks(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) < 0.5  # (n, *shape)


def _linear(out_f: int = 5, in_f: int = 7, seed: int = 0) -> MaskedLinear:
    return MaskedLinear(init_base_weight((out_f, in_f), in_f, "signed_constant", torch.Generator().manual_seed(seed)))


class TestKernels:
    @given(packed_mask_stacks(max_bytes=20, max_tasks=20), st.integers(-8, 40), st.booleans(), st.integers(1, 3))
    def test_contract_matches_numpy_reference(self, case, shift, use_words, nblocks):
        """contract_kernel equals the int64 product q @ unpackbits(packed) exactly, q = floor(g 2**s + 1/2).

        Read through 64-bit words (capacity rounded up to whole words) or bytes only.
        """
        packed, ntasks, grads, _ = case
        if use_words:
            capacity = -(-packed.shape[1] // 8) * 8
            packed = np.concatenate([packed, np.full((packed.shape[0], capacity - packed.shape[1]), 0xA5, np.uint8)], axis=1)
        words = uint64_words(packed) if use_words else np.zeros((packed.shape[0], 0), np.uint64)
        scales = scale_factors(np.full(grads.shape[0], shift))
        acc = np.zeros((nblocks, grads.shape[0], ntasks), dtype=np.int64)
        _kernels.contract_kernel(packed, words, ntasks, grads, scales, acc)
        q = np.floor(grads * 2.0**shift + 0.5).astype(np.int64).reshape(grads.shape[0], -1)  # (R, 8 nbytes)
        bits = np.unpackbits(packed[:, :ntasks], axis=0).astype(np.int64)  # (8 nbytes, ntasks)
        np.testing.assert_array_equal(acc.sum(axis=0), q @ bits)

    @given(packed_mask_stacks(max_bytes=20, max_tasks=20), st.integers(-8, 40), st.booleans(), st.integers(1, 3))
    def test_contract_rows_matches_numpy_reference(self, case, shift, single, nblocks):
        """contract_rows_kernel (float64 or float32 gradients) equals the exact int64 product, tasks first."""
        packed, ntasks, grads, _ = case
        if single:
            grads = grads.astype(np.float32)
        scales = scale_factors(np.full(grads.shape[0], shift))
        acc = np.zeros((nblocks, ntasks, grads.shape[0]), dtype=np.int64)
        _kernels.contract_rows_kernel(packed, ntasks, grads, scales, acc)
        q = np.floor(grads.astype(np.float64) * 2.0**shift + 0.5).astype(np.int64).reshape(grads.shape[0], -1)
        bits = np.unpackbits(packed[:, :ntasks], axis=0).astype(np.int64)  # (8 nbytes, ntasks)
        np.testing.assert_array_equal(acc.sum(axis=0).T, q @ bits)

    @given(st.lists(st.floats(0, 1e308, allow_nan=False, allow_subnormal=True), min_size=1, max_size=4))
    def test_fixed_point_shifts_keep_sums_in_range(self, sums):
        """Every row's sum of |g|, tiny, subnormal or huge, scales into [2**60, 2**61) through scale_factors."""
        sums = np.array(sums)
        factors = scale_factors(fixed_point_shifts(sums))  # (R, 2)
        assert np.isfinite(factors).all() and (factors > 0).all()
        for s, (f0, f1) in zip(sums, factors):
            v = s * f0 * f1
            assert v == 0.0 if s == 0.0 else 2.0**60 <= v < 2.0**61

    @given(st.integers(1, 3), st.integers(0, 40), st.booleans(), st.integers(0, 2**32 - 1))
    def test_abs_sums_kernel_matches_numpy(self, n_rhs, n, single, seed):
        """abs_sums_kernel's blocks add up to numpy's float64 sum of |g| per row."""
        g = np.random.default_rng(seed).standard_normal((n_rhs, n)) * 1e3
        g = g.astype(np.float32) if single else g
        blocks = max(1, min(5, n))
        partial = np.full((n_rhs, blocks), np.nan)
        _kernels.abs_sums_kernel(g, partial)
        np.testing.assert_allclose(partial.sum(axis=1), np.abs(g.astype(np.float64)).sum(axis=1), rtol=1e-12)

    def test_row_abs_sums_do_not_saturate_in_float32(self):
        """2**25 float32 ones sum to exactly 2**25 (a float32 accumulator stalls at 2**24)."""
        assert row_abs_sums(np.ones((1, 2**25), dtype=np.float32)).tolist() == [2.0**25]

    def test_uint64_words_only_for_whole_words(self):
        """The word view exists for a capacity that is a multiple of 8 and reads task 8 w + k from byte k."""
        packed = np.arange(32, dtype=np.uint8).reshape(2, 16)
        words = uint64_words(packed)
        assert words.shape == (2, 2)
        if sys.byteorder == "little":
            assert int(words[1, 1]) & 0xFF == packed[1, 8]
        assert uint64_words(packed[:, :12].copy()).shape == (2, 0)
        assert uint64_words(packed[:, ::2]).shape == (2, 0)

    @given(packed_mask_stacks())
    def test_superpose_matches_numpy_reference(self, case):
        """superpose_kernel equals unpackbits(packed) @ alphas, bit b of byte j at entry 8 j + b."""
        packed, ntasks, _, alphas = case
        out = np.full((packed.shape[0], 8), np.nan)
        _kernels.superpose_kernel(packed, ntasks, alphas, out, 3)
        bits = np.unpackbits(packed[:, :ntasks], axis=0).astype(np.float64)  # (8 nbytes, ntasks)
        np.testing.assert_allclose(out.reshape(-1), bits @ alphas, rtol=1e-12, atol=1e-9)


class TestForward:
    def test_linear_equals_dense_reference(self):
        """A finished task's forward equals F.linear with W * M."""
        layer = _linear()
        masks = _random_masks(2, layer.mask_shape, 1)
        layer.append_masks(masks)
        x = torch.randn(4, 7, generator=torch.Generator().manual_seed(2))
        layer.select_task(1)
        assert torch.allclose(layer(x), F.linear(x, layer.weight * masks[1]))

    def test_linear_training_uses_thresholded_scores(self):
        """While training, the forward uses W * 1[scores >= 0] and gradients reach the scores."""
        layer = _linear()
        layer.start_task(torch.Generator().manual_seed(3))
        x = torch.randn(3, 7, generator=torch.Generator().manual_seed(4))
        y = layer(x)
        assert torch.allclose(y, F.linear(x, layer.weight * (layer.scores.detach() >= 0)))
        y.sum().backward()
        assert layer.scores.grad is not None and layer.scores.grad.abs().sum() > 0

    def test_conv_equals_dense_reference(self):
        """A finished task's conv forward equals F.conv2d with W * M."""
        w = init_base_weight((4, 2, 3, 3), 18, "signed_constant", torch.Generator().manual_seed(5))
        layer = MaskedConv2d(w, padding=1)
        masks = _random_masks(3, layer.mask_shape, 6)
        layer.append_masks(masks)
        layer.select_task(2)
        x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(7))
        assert torch.allclose(layer(x), F.conv2d(x, w * masks[2], padding=1))

    def test_unit_mask_equals_non_affine_batchnorm_times_mask(self):
        """UnitMask is BatchNorm1d(affine=False, no running stats) scaled by the binary unit mask."""
        layer = UnitMask(6)
        mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
        layer.append_masks(mask.unsqueeze(0))
        layer.select_task(0)
        x = torch.randn(5, 6, generator=torch.Generator().manual_seed(8))
        bn = nn.BatchNorm1d(6, affine=False, track_running_stats=False)
        assert torch.allclose(layer(x), bn(x) * mask, atol=1e-6)

    def test_unit_scores_start_all_on(self):
        """A new unit-mask task starts from zero scores, i.e. every unit on."""
        layer = UnitMask(4)
        layer.start_task(torch.Generator().manual_seed(0))
        assert torch.equal(layer.scores.detach(), torch.zeros(4))
        assert torch.equal(layer.effective_mask(), torch.ones(4))

    def test_unit_mask_refuses_single_image(self):
        """Batch statistics need two rows: a batch of one raises ConfigError naming x."""
        layer = UnitMask(3)
        with pytest.raises(ConfigError, match="x"):
            layer(torch.ones(1, 3), mask=torch.ones(3))

    def test_no_selection_is_an_error(self):
        """A forward before any task exists raises ConfigError."""
        with pytest.raises(ConfigError, match="task"):
            _linear()(torch.ones(1, 7))


class TestStorage:
    def test_masks_round_trip_and_capacity(self):
        """Appended masks unpack unchanged; the packed buffer never holds more than 64 spare columns."""
        layer = _linear()
        masks = _random_masks(70, layer.mask_shape, 9)
        for i in range(70):
            layer.append_masks(masks[i : i + 1])
            assert 0 <= layer.packed.shape[1] - layer.num_tasks <= 64
        assert all(torch.equal(layer.task_mask(i), masks[i]) for i in range(70))

    def test_mean_mask_is_incremental_average(self):
        """After each appended task the mean mask equals the average of all masks so far."""
        layer = _linear()
        masks = _random_masks(5, layer.mask_shape, 10)
        for k in range(1, 6):
            layer.append_masks(masks[k - 1 : k])
            assert torch.allclose(layer.mean_mask(), masks[:k].float().mean(dim=0))
            assert torch.equal(layer.mask_sum, masks[:k].sum(dim=0, dtype=torch.int32))

    def test_finish_task_frees_scores_and_packs_the_mask(self):
        """finish_task stores 1[scores >= 0] and drops the float scores."""
        layer = _linear()
        layer.start_task(torch.Generator().manual_seed(11))
        expected = layer.scores.detach() >= 0
        assert layer.finish_task() == 0
        assert layer.scores is None and list(layer.parameters()) == []
        assert torch.equal(layer.task_mask(0), expected)

    def test_mask_nbytes_counts_packed_sum_and_mean(self):
        """mask_nbytes = packed buffer bytes + int32 sum + float32 mean cache once built."""
        layer = _linear(16, 16)
        layer.append_masks(_random_masks(8, layer.mask_shape, 12))
        assert layer.packed.shape == (32, 8)
        assert layer.mask_nbytes() == 32 * 8 + 256 * 4
        layer.mean_mask()
        assert layer.mask_nbytes() == 32 * 8 + 256 * 4 + 256 * 4


class TestContraction:
    @pytest.mark.parametrize("backend", ["numba", "torch"])
    def test_contract_equals_dense(self, backend):
        """contract gives <grads[r], M_t> for every task with either backend."""
        layer = _linear(9, 5)  # 45 entries: the last byte is padded
        masks = _random_masks(6, layer.mask_shape, 13)
        layer.append_masks(masks)
        grads = torch.randn(2, 9, 5, generator=torch.Generator().manual_seed(14))
        expected = torch.einsum("rij,tij->rt", grads.double(), masks.double())
        assert torch.allclose(layer.contract(grads, backend=backend), expected)

    def test_contract_through_words_equals_dense_float64(self):
        """A layer big enough for whole 8-row passes and 64-bit words (21 tasks: 2 words + 5) matches to 1e-12."""
        layer = _linear(64, 40)  # 320 bytes: 20 rows per block
        masks = _random_masks(21, layer.mask_shape, 16)
        layer.append_masks(masks)
        assert layer.packed.shape[1] % 8 == 0
        grads = torch.randn(3, 64, 40, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
        grads[2] *= 1e-30  # a tiny row keeps its relative precision (its own scale)
        expected = torch.einsum("rij,tij->rt", grads, masks.double())
        got = layer.contract(grads, backend="numba")
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0.0)

    @pytest.mark.parametrize(("n_tasks", "n_rhs"), [(3, 1), (40, 1), (40, 4)])
    def test_both_kernels_give_identical_results(self, n_tasks, n_rhs, monkeypatch):
        """The table and the row-vector kernels sum the same integers: bit-identical outputs, float32 or float64."""
        layer = _linear(64, 40)
        layer.append_masks(_random_masks(n_tasks, layer.mask_shape, 18))
        for dtype in (torch.float32, torch.float64):
            grads = torch.randn(n_rhs, 64, 40, generator=torch.Generator().manual_seed(19), dtype=dtype)
            monkeypatch.setattr(contraction, "TASKS_PER_ROW_FOR_ROW_KERNEL", 10**9)  # always the row kernel
            by_rows = layer.contract(grads, backend="numba")
            monkeypatch.setattr(contraction, "TASKS_PER_ROW_FOR_ROW_KERNEL", 0)  # always the table kernel
            by_tables = layer.contract(grads, backend="numba")
            assert torch.equal(by_rows, by_tables)
            masks = torch.stack([layer.task_mask(i) for i in range(n_tasks)]).double()  # (T, 64, 40)
            expected = torch.einsum("rij,tij->rt", grads.double(), masks)
            torch.testing.assert_close(by_tables, expected, rtol=1e-12, atol=1e-12)

    def test_row_kernel_is_chosen_for_few_tasks_per_row(self):
        """Few tasks per gradient row pick the row-vector kernel, many the table kernel."""
        assert use_row_vector_kernel(10, 1) and use_row_vector_kernel(30, 4) and use_row_vector_kernel(100, 32)
        assert not use_row_vector_kernel(30, 1) and not use_row_vector_kernel(100, 4) and not use_row_vector_kernel(1000, 32)

    @pytest.mark.parametrize("magnitude", [1e-300, 1e-310, 1e300])
    def test_contract_keeps_precision_for_tiny_and_huge_rows(self, magnitude):
        """Rows far from 1 in magnitude (down to subnormal) keep float64-like relative precision."""
        layer = _linear(8, 8)
        masks = _random_masks(3, layer.mask_shape, 20)
        layer.append_masks(masks)
        grads = torch.linspace(0.5, 1.5, 64, dtype=torch.float64).reshape(1, 8, 8) * magnitude
        expected = torch.einsum("rij,tij->rt", grads, masks.double())
        torch.testing.assert_close(layer.contract(grads, backend="numba"), expected, rtol=1e-12, atol=0.0)

    def test_contract_does_not_depend_on_the_thread_count(self):
        """One Numba thread or two, and one torch thread or two, give bit-identical coefficients."""
        import numba

        layer = _linear(64, 40)
        layer.append_masks(_random_masks(12, layer.mask_shape, 21))
        grads = torch.randn(2, 64, 40, generator=torch.Generator().manual_seed(22))
        results = []
        before = (numba.get_num_threads(), torch.get_num_threads())
        try:
            for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
                numba.set_num_threads(threads)
                torch.set_num_threads(threads)
                results.append(layer.contract(grads, backend="numba"))
        finally:
            numba.set_num_threads(before[0])
            torch.set_num_threads(before[1])
        assert torch.equal(results[0], results[1])

    def test_contract_of_no_rows_is_empty(self):
        """R = 0 gradient rows give a (0, num_tasks) result."""
        layer = _linear(9, 5)
        layer.append_masks(_random_masks(2, layer.mask_shape, 23))
        assert layer.contract(torch.zeros(0, 9, 5)).shape == (0, 2)

    def test_contract_propagates_non_finite_gradients(self):
        """inf or nan in a gradient row gives non-finite coefficients, as the float reference does."""
        layer = _linear(9, 5)
        layer.append_masks(torch.ones(2, 9, 5, dtype=torch.bool))
        grads = torch.zeros(1, 9, 5)
        grads[0, 0, 0] = float("inf")
        assert not torch.isfinite(layer.contract(grads, backend="numba")).any()

    @pytest.mark.parametrize("backend", ["numba", "torch"])
    def test_superposed_mask_equals_dense(self, backend):
        """superposed_mask gives sum_t alphas[t] M_t with either backend."""
        layer = _linear(9, 5)
        masks = _random_masks(6, layer.mask_shape, 15)
        layer.append_masks(masks)
        alphas = torch.tensor([0.5, 0.0, 0.25, 0.0, 0.25, 0.0])
        expected = torch.einsum("t,tij->ij", alphas, masks.float())
        assert torch.allclose(layer.superposed_mask(alphas, backend=backend), expected)

    def test_differentiable_alphas_give_contraction_gradients(self):
        """With alphas requiring grad, d(sum(G * mask))/d alphas = <G, M_t> without a float stack."""
        layer = _linear(4, 6)
        masks = _random_masks(3, layer.mask_shape, 16)
        layer.append_masks(masks)
        alphas = torch.full((3,), 1 / 3, requires_grad=True)
        layer.select_alphas(alphas)
        g = torch.randn(4, 6, generator=torch.Generator().manual_seed(17))
        (layer.effective_mask() * g).sum().backward()
        assert torch.allclose(alphas.grad, torch.einsum("ij,tij->t", g, masks.float()), atol=1e-6)

    def test_bad_arguments_are_refused(self):
        """A wrong gradient shape or an unknown backend raises ConfigError naming the argument."""
        layer = _linear()
        layer.append_masks(_random_masks(1, layer.mask_shape, 18))
        with pytest.raises(ConfigError, match="grads"):
            layer.contract(torch.zeros(1, 3, 3))
        with pytest.raises(ConfigError, match="backend"):
            layer.contract(torch.zeros(1, 5, 7), backend="cuda")


def test_threshold_reference_used_by_layers():
    """The layer's training mask is exactly subnet.threshold_mask of its scores."""
    layer = _linear()
    layer.start_task(torch.Generator().manual_seed(19))
    assert torch.equal(layer.score_mask(), threshold_mask(layer.scores))
