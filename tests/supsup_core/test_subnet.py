"""Tests for supsup_core.subnet: straight-through masks, top-k density, ER density."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from supsup_core.config import ModelConfig
from supsup_core.errors import ConfigError
from supsup_core.models import build_model
from supsup_core.subnet import (
    bucket_counts_reference,
    er_density,
    kept_count,
    select_smallest,
    threshold_mask,
    topk_keep,
    topk_mask,
)


class TestThresholdMask:
    def test_forward_is_score_at_least_zero(self):
        """The mask is 1 where the score is >= 0 (zero counts as on) and 0 elsewhere."""
        s = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 2.0])
        assert threshold_mask(s).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]

    def test_gradient_is_straight_through(self):
        """The gradient with respect to the scores equals the gradient with respect to the mask."""
        g = torch.Generator().manual_seed(0)
        s = torch.randn(4, 5, generator=g, requires_grad=True)
        upstream = torch.randn(4, 5, generator=g)
        (threshold_mask(s) * upstream).sum().backward()
        assert torch.equal(s.grad, upstream)


def sorted_topk(scores: torch.Tensor, density: float) -> torch.Tensor:
    """The reference's top-k: a stable ascending sort of |scores|, the n - keep first entries dropped."""
    flat = scores.abs().reshape(-1)
    out = torch.ones_like(flat)
    out[torch.argsort(flat, stable=True)[: flat.numel() - kept_count(flat.numel(), density)]] = 0
    return out.view_as(scores)


#: Entries in a tensor that takes the Numba selection path (above supsup_core.subnet._KERNEL_FROM).
LARGE = 70_000


@st.composite
def score_tensors(draw, large: bool):
    """Scores with or without ties (coarse rounding), zeros and negative zeros, small or past the kernel threshold."""
    n = draw(st.integers(LARGE, LARGE + 5000)) if large else draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2**31 - 1))
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    rounding = draw(st.sampled_from([None, 2.0, 64.0, 4096.0]))
    if rounding is not None:
        v = torch.round(v * rounding) / rounding
    zeros = draw(st.integers(0, n))
    v[:zeros:3] = 0.0
    v[1:zeros:5] = -0.0
    return v


class TestSelection:
    @given(score_tensors(large=True), st.data())
    def test_select_smallest_equals_kthvalue(self, v, data):
        """The bucketed selection returns kthvalue's value for any rank, ties and zeros included."""
        a = v.abs()
        rank = data.draw(st.integers(1, a.numel()))
        assert select_smallest(a, rank) == torch.kthvalue(a, rank).values

    @given(score_tensors(large=True))
    def test_bucket_kernel_matches_numpy(self, v):
        """The Numba counting kernel agrees with np.bincount over the same buckets (any number of blocks)."""
        from supsup_core import _kernels

        values = v.abs().numpy()
        for blocks in (1, 3, 8):
            counts = np.zeros((blocks, 4096), dtype=np.int64)
            _kernels.bucket_counts_kernel(values.view(np.int32), counts)
            assert np.array_equal(counts.sum(axis=0), bucket_counts_reference(values))

    @given(score_tensors(large=True))
    def test_gather_kernel_matches_numpy(self, v):
        """The gathering kernel copies exactly one bucket's values, in index order."""
        from supsup_core import _kernels

        values = v.abs().numpy()
        bits = values.view(np.int32)
        bucket = int((bits[len(bits) // 2] >> 19) & 4095)
        members = values[((bits >> 19) & 4095) == bucket]
        counts = np.zeros((4, 4096), dtype=np.int64)
        _kernels.bucket_counts_kernel(bits, counts)
        offsets = np.concatenate([[0], np.cumsum(counts[:, bucket])[:-1]]).astype(np.int64)
        out = np.empty(members.size, dtype=np.float32)
        _kernels.gather_bucket_kernel(values, bits, bucket, offsets, out)
        assert np.array_equal(out, members)

    def test_negative_input_is_refused(self):
        with pytest.raises(ConfigError, match="non-negative"):
            select_smallest(torch.randn(LARGE), 5)


class TestTopKMask:
    @pytest.mark.parametrize("large", [False, True])
    @given(data=st.data())
    def test_equals_the_stable_sort(self, large, data):
        """Selection without sorting gives the stable sort's mask exactly, ties, zeros and -0.0 included."""
        v = data.draw(score_tensors(large))
        density = data.draw(st.sampled_from([0.003, 0.05, 0.5, 0.9, 1.0]))
        assert torch.equal(topk_mask(v, density), sorted_topk(v, density))
        assert torch.equal(topk_keep(v.abs(), density), sorted_topk(v, density).bool())

    def test_keeps_largest_magnitudes(self):
        """Top-k keeps the entries of largest absolute score, whatever their sign."""
        s = torch.tensor([-3.0, 0.1, 2.0, -0.2, 0.05, 1.0])
        assert topk_mask(s, 0.5).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]

    def test_gradient_is_sign_times_upstream(self):
        """The straight-through gradient passes the abs: dL/dS = sign(S) * dL/dM."""
        g = torch.Generator().manual_seed(1)
        s = torch.randn(6, 7, generator=g, requires_grad=True)
        upstream = torch.randn(6, 7, generator=g)
        (topk_mask(s, 0.3) * upstream).sum().backward()
        assert torch.allclose(s.grad, torch.sign(s.detach()) * upstream)

    @pytest.mark.parametrize("n, density", [(10, 0.25), (7, 0.5), (100, 0.013), (33, 1.0)])
    def test_kept_count_is_exact(self, n, density):
        """Exactly n - floor((1 - density) n) entries are kept, as the reference."""
        s = torch.randn(n, generator=torch.Generator().manual_seed(n))
        assert int(topk_mask(s, density).sum()) == kept_count(n, density) == n - math.floor((1 - density) * n)

    def test_ties_are_deterministic(self):
        """Equal magnitudes are broken by index (a stable sort), so the same scores give the same mask."""
        s = torch.ones(8)
        assert topk_mask(s, 0.25).tolist() == [0.0] * 6 + [1.0] * 2

    def test_bad_density_is_refused(self):
        """A density outside (0, 1] raises ConfigError naming density."""
        with pytest.raises(ConfigError, match="density"):
            topk_mask(torch.ones(3), 0.0)

    def test_model_layers_have_exact_per_layer_density(self):
        """Every layer of a top-k model finishes a task with exactly its configured number of kept weights."""
        cfg = ModelConfig(arch="conv", hidden=(3, 4, 6), in_features=64, image=8, output_size=5, mask_mode="topk", er_sigma=2.0)
        model = build_model(cfg)
        model.add_task()
        model.finish_task()
        masks = model.export_masks(0)
        for name, layer in model.masked_layers().items():
            out_c, in_c = layer.mask_shape[:2]
            kh, kw = layer.mask_shape[2:] if len(layer.mask_shape) == 4 else (1, 1)
            expected = kept_count(layer.mask_numel, er_density(in_c, out_c, kh, kw, sigma=2.0))
            assert int(masks[name].sum()) == expected, name


class TestErDensity:
    def test_formula_values(self):
        """rho = min(0.5, sigma (c_in + c_out) / (c_in c_out k_h k_w)) on known values."""
        assert er_density(784, 300, sigma=1.0) == pytest.approx(1084 / 235200)
        assert er_density(20, 40, 3, 3, sigma=4.0) == pytest.approx(4 * 60 / (20 * 40 * 9))
        assert er_density(2, 2, sigma=32.0) == 0.5

    def test_config_uses_er_when_sigma_set(self):
        """ModelConfig.layer_density follows er_sigma when set and density otherwise."""
        assert ModelConfig(mask_mode="topk", er_sigma=8.0).layer_density(300, 100) == pytest.approx(8 * 400 / 30000)
        assert ModelConfig(mask_mode="topk", density=0.3).layer_density(300, 100) == 0.3

    @pytest.mark.parametrize("kwargs", [{"c_in": 0, "c_out": 3}, {"c_in": 3, "c_out": 3, "sigma": 0.0}])
    def test_bad_arguments_are_refused(self, kwargs):
        """Non-positive sizes or sigma raise ConfigError."""
        kwargs.setdefault("sigma", 1.0)
        with pytest.raises(ConfigError):
            er_density(**kwargs)


@pytest.mark.parametrize("mode, shape", [("threshold", (30, 20)), ("topk", (30, 20)), ("topk", (300, 250))])
def test_training_weight_equals_the_mask_composition(mode, shape):
    """A layer's fused training weight gives the values and score gradients of W * mask(S), bit for bit."""
    from supsup_core.layers import MaskedLinear

    g = torch.Generator().manual_seed(7)
    layer = MaskedLinear(torch.randn(*shape, generator=g), mask_mode=mode, density=0.1)
    layer.start_task(g)
    x = torch.randn(5, shape[1], generator=g)
    upstream = torch.randn(5, shape[0], generator=g)
    (layer(x) * upstream).sum().backward()
    fused = layer.scores.grad.clone()
    scores = layer.scores.detach().clone().requires_grad_(True)
    mask = topk_mask(scores, 0.1) if mode == "topk" else threshold_mask(scores)
    (torch.nn.functional.linear(x, layer.weight * mask) * upstream).sum().backward()
    assert torch.equal(fused, scores.grad)
    with torch.no_grad():
        assert torch.equal(layer.masked_weight(), layer.weight * mask)
