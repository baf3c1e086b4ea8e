"""Tests for supsup_core.subnet: straight-through masks, top-k density, ER density."""

from __future__ import annotations

import math

import pytest
import torch

from supsup_core.config import ModelConfig
from supsup_core.errors import ConfigError
from supsup_core.models import build_model
from supsup_core.subnet import er_density, kept_count, threshold_mask, topk_mask


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


class TestTopKMask:
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
