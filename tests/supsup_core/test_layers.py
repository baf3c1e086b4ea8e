"""Tests for supsup_core.layers (and the Numba kernels behind their packed contractions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from torch import nn

from supsup_core import _kernels
from supsup_core.errors import ConfigError
from supsup_core.layers import MaskedConv2d, MaskedLinear, UnitMask, init_base_weight
from supsup_core.subnet import threshold_mask
from tests.strategies import packed_mask_stacks


def _random_masks(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) < 0.5  # (n, *shape)


def _linear(out_f: int = 5, in_f: int = 7, seed: int = 0) -> MaskedLinear:
    return MaskedLinear(init_base_weight((out_f, in_f), in_f, "signed_constant", torch.Generator().manual_seed(seed)))


class TestKernels:
    @given(packed_mask_stacks())
    def test_contract_matches_numpy_reference(self, case):
        """contract_kernel equals grads @ unpackbits(packed) over the used task columns."""
        packed, ntasks, grads, _ = case
        acc = np.zeros((3, grads.shape[0], ntasks))
        _kernels.contract_kernel(packed, ntasks, grads, acc)
        bits = np.unpackbits(packed[:, :ntasks], axis=0).astype(np.float64)  # (8 nbytes, ntasks)
        expected = grads.reshape(grads.shape[0], -1) @ bits  # (R, ntasks)
        np.testing.assert_allclose(acc.sum(axis=0), expected, rtol=1e-12, atol=1e-9)

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
