"""Tests for supsup_core.config and supsup_core.models (SupSupNet life cycle, determinism, persistence API)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from supsup_core.config import ModelConfig
from supsup_core.errors import ConfigError
from supsup_core.models import SupSupNet, build_model

TINY = {"hidden": (6, 5), "output_size": 4, "in_features": 16, "image": 4}


def _tiny(**kw) -> SupSupNet:
    return build_model(ModelConfig(**{**TINY, **kw}))


def _with_tasks(model: SupSupNet, n: int) -> SupSupNet:
    for _ in range(n):
        model.add_task()
        model.finish_task()
    return model


class TestModelConfig:
    def test_json_round_trip_and_repr(self):
        """to_dict survives JSON and from_dict rebuilds an equal config; eval(repr) too."""
        cfg = ModelConfig(arch="conv", hidden=(2, 3, 4), mask_mode="topk", er_sigma=4.0, seed=7)
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        assert eval(repr(cfg), {"ModelConfig": ModelConfig}) == cfg

    @pytest.mark.parametrize(
        "kwargs, argument",
        [
            ({"arch": "resnet"}, "arch"),
            ({"output_size": 0}, "output_size"),
            ({"seed": -1}, "seed"),
            ({"init": "xavier"}, "init"),
            ({"mask_mode": "soft"}, "mask_mode"),
            ({"arch": "bnnet", "mask_mode": "topk"}, "mask_mode"),
            ({"density": 1.5}, "density"),
            ({"er_sigma": -2.0}, "er_sigma"),
            ({"in_features": 100}, "in_features"),
            ({"hidden": ()}, "hidden"),
            ({"arch": "conv", "hidden": (3, 4)}, "hidden"),
        ],
    )
    def test_bad_values_name_the_argument(self, kwargs, argument):
        """Each invalid field raises ConfigError whose message starts with the field name."""
        with pytest.raises(ConfigError, match=f"^{argument}: expected"):
            ModelConfig(**kwargs)

    def test_unknown_keys_are_refused(self):
        """from_dict refuses keys that are not fields."""
        with pytest.raises(ConfigError, match="unknown keys"):
            ModelConfig.from_dict({"arch": "lenet", "width": 3})


class TestBaseNetwork:
    def test_same_seed_same_weights_and_scores(self):
        """Two models from the same config have identical base weights and identical new-task scores."""
        a, b = _tiny(seed=3), _tiny(seed=3)
        for wa, wb in zip(a.base_weights().values(), b.base_weights().values()):
            assert torch.equal(wa, wb)
        a.add_task(), b.add_task()
        assert all(torch.equal(sa, sb) for sa, sb in zip(a.score_parameters(), b.score_parameters()))
        assert a.base_fingerprint() == b.base_fingerprint() == a.base_fingerprint()

    def test_different_seed_differs(self):
        """A different seed gives different base weights (fingerprint) and different scores."""
        a, b = _tiny(seed=0), _tiny(seed=1)
        assert a.base_fingerprint() != b.base_fingerprint()
        a.add_task(), b.add_task()
        assert not torch.equal(a.score_parameters()[0], b.score_parameters()[0])

    def test_signed_constant_values(self):
        """Signed-constant weights are +-sqrt(2 / fan_in) with both signs present; no parameters, no biases."""
        model = _tiny()
        for w in model.base_weights().values():
            c = math.sqrt(2 / w.shape[1])
            assert torch.allclose(w.abs(), torch.full_like(w, c))
            assert (w > 0).any() and (w < 0).any()
        assert list(model.parameters()) == []

    def test_kaiming_uniform_scores_bound(self):
        """Scores lie in (-1/sqrt(fan_in), 1/sqrt(fan_in)) and tasks get different scores."""
        model = _tiny()
        model.add_task()
        first = [p.detach().clone() for p in model.score_parameters()]
        for p, layer in zip(first, model.masked_layers().values()):
            assert p.abs().max() <= 1 / math.sqrt(layer.fan_in)
        model.finish_task()
        model.add_task()
        assert not torch.equal(first[0], model.score_parameters()[0])

    def test_golden_fingerprint(self):
        """The base weights of a fixed tiny config never change (masks saved earlier stay valid)."""
        assert _tiny(seed=0).base_fingerprint() == GOLDEN_FINGERPRINT

    def test_bnnet_unit_masks(self):
        """BNNet masks two hidden layers of 2048 units; its linear weights are frozen buffers."""
        model = build_model(ModelConfig(arch="bnnet"))
        _with_tasks(model, 1)
        shapes = {name: layer.mask_shape for name, layer in model.masked_layers().items()}
        assert shapes == {"unit1": (2048,), "unit2": (2048,)}
        assert all(m.all() for m in model.export_masks(0).values())  # zero scores = all on
        assert set(model.base_weights()) == {"fc1", "fc2", "fc3"}

    @pytest.mark.parametrize("arch, hidden", [("lenet", (6, 5)), ("fc1024", (7,)), ("bnnet", (5, 6)), ("conv", (2, 3, 5))])
    def test_forward_shapes_both_input_layouts(self, arch, hidden):
        """(B, 1, H, W) and (B, in_features) inputs give the same (B, output_size) logits."""
        model = _with_tasks(_tiny(arch=arch, hidden=hidden), 1)
        x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        out = model(x)
        assert out.shape == (3, 4)
        assert torch.allclose(out, model(x.reshape(3, 16)))

    def test_unknown_mask_names_are_refused(self):
        """Explicit masks for a layer that does not exist raise ConfigError naming masks."""
        model = _with_tasks(_tiny(), 1)
        with pytest.raises(ConfigError, match="^masks:"):
            model(torch.zeros(2, 16), masks={"fc9": torch.ones(3)})

    def test_bad_input_shape(self):
        """An input of the wrong geometry raises ConfigError naming x."""
        model = _with_tasks(_tiny(), 1)
        with pytest.raises(ConfigError, match="^x:"):
            model(torch.zeros(2, 15))


class TestLifeCycle:
    def test_add_finish_set_task(self):
        """add_task/finish_task return indices; set_task selects finished or training masks."""
        model = _tiny()
        assert model.add_task() == 0 and model.training_task == 0
        assert len(model.score_parameters()) == 3
        assert model.finish_task() == 0 and model.num_tasks == 1 and model.training_task is None
        assert model.add_task() == 1
        model.set_task(0)
        model.set_task(1)  # the training task
        with pytest.raises(ConfigError, match="task"):
            model.set_task(2)

    def test_no_float_scores_after_finish(self):
        """After finish_task the model holds no parameters and no float scores."""
        model = _with_tasks(_tiny(), 2)
        assert model.score_parameters() == [] and list(model.parameters()) == []
        assert all(layer.scores is None for layer in model.masked_layers().values())

    def test_one_task_in_training_at_a_time(self):
        """add_task twice, or finish_task with none in training, raises ConfigError."""
        model = _tiny()
        model.add_task()
        with pytest.raises(ConfigError, match="add_task"):
            model.add_task()
        model.finish_task()
        with pytest.raises(ConfigError, match="finish_task"):
            model.finish_task()

    def test_finished_mask_is_thresholded_scores(self):
        """The packed mask of a finished task is 1[scores >= 0] of its training scores."""
        model = _tiny()
        model.add_task()
        expected = {n: (layer.scores.detach() >= 0).numpy() for n, layer in model.masked_layers().items()}
        model.finish_task()
        got = model.export_masks(0)
        assert all(np.array_equal(got[n], expected[n]) for n in expected)

    def test_set_alphas_none_is_mean_mask(self):
        """set_alphas(None) runs the network with the mean of the finished masks."""
        model = _with_tasks(_tiny(), 3)
        x = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
        masks = [model.export_masks(t) for t in range(3)]
        mean = {n: torch.from_numpy(np.mean([m[n] for m in masks], axis=0).astype(np.float32)) for n in masks[0]}
        model.set_alphas(None)
        assert torch.allclose(model(x), model(x, masks=mean), atol=1e-6)
        with pytest.raises(ConfigError, match="alphas"):
            model.set_alphas(torch.ones(2))

    def test_memory_grows_by_packed_bits(self):
        """mask_nbytes grows by about P/8 bytes per task, not 4P."""
        model = _with_tasks(_tiny(hidden=(64, 64), output_size=16), 1)
        p = sum(layer.mask_numel for layer in model.masked_layers().values())
        per_column = sum(layer.packed.shape[0] for layer in model.masked_layers().values())
        assert per_column == sum(math.ceil(layer.mask_numel / 8) for layer in model.masked_layers().values())
        assert model.mask_nbytes() <= per_column * 8 + 4 * p  # capacity 8 + int32 sum


class TestImportExport:
    def test_round_trip(self):
        """Masks exported from one model import into a fresh one and export identically."""
        src = _with_tasks(_tiny(), 3)
        exported = [src.export_masks(t) for t in range(3)]
        dst = _tiny()
        assert dst.import_masks(exported) == [0, 1, 2]
        for t in range(3):
            again = dst.export_masks(t)
            assert all(np.array_equal(again[n], exported[t][n]) and again[n].dtype == bool for n in again)
        x = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
        src.set_task(1), dst.set_task(1)
        assert torch.equal(src(x), dst(x))

    def test_bad_shape_names_the_layer(self):
        """A mask of the wrong shape raises ConfigError naming the task and the layer."""
        model = _tiny()
        masks = _with_tasks(_tiny(), 1).export_masks(0)
        masks["fc2"] = np.ones((3, 3), dtype=bool)
        with pytest.raises(ConfigError, match=r"masks\[0\]\['fc2'\]"):
            model.import_masks([masks])
        assert model.num_tasks == 0

    def test_missing_layer_and_bad_values(self):
        """Missing layers or non-binary values are refused before anything is appended."""
        good = _with_tasks(_tiny(), 1).export_masks(0)
        model = _tiny()
        with pytest.raises(ConfigError, match="fc1"):
            model.import_masks([{"fc1": good["fc1"]}])
        bad = dict(good, fc3=good["fc3"].astype(np.float32) * 2)
        with pytest.raises(ConfigError, match="values in"):
            model.import_masks([good, bad])
        assert model.num_tasks == 0

    def test_refused_while_training(self):
        """import_masks refuses while a task is in training (its index would shift)."""
        model = _tiny()
        model.add_task()
        with pytest.raises(ConfigError, match="import_masks"):
            model.import_masks([])


# sha256 of ModelConfig(hidden=(6, 5), output_size=4, in_features=16, image=4, seed=0) base weights
GOLDEN_FINGERPRINT = "ee4de858e2112622d987f7830251baa073190a8559ccd77c3396b2af4051cdcc"
