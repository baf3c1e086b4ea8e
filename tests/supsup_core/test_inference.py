"""Tests for supsup_core.inference: objectives, the packed one-shot identity, binary search, infer_task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supsup_core.config import ModelConfig
from supsup_core.errors import ConfigError
from supsup_core.inference import (
    binary_search,
    build_float_stacks,
    coefficient_gradients,
    entropy,
    float_stack_coefficient_gradients,
    infer_task,
    objective_values,
    per_image_coefficient_gradients,
    superfluous_logsumexp,
)
from supsup_core.models import SupSupNet, build_model

GEOMETRY = {"in_features": 16, "image": 4}


def _model(arch: str = "lenet", hidden=(12, 10), output_size: int = 12, n_tasks: int = 6, seed: int = 0) -> SupSupNet:
    model = build_model(ModelConfig(arch=arch, hidden=hidden, output_size=output_size, seed=seed, **GEOMETRY))
    for _ in range(n_tasks):
        model.add_task()
        if arch == "bnnet":  # unit scores start at zero (all on): randomise so tasks differ
            with torch.no_grad():
                for p in model.score_parameters():
                    p.normal_(generator=torch.Generator().manual_seed(model.training_task))
        model.finish_task()
    return model


def _x(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed))


def _planted(k: int, planted: int) -> SupSupNet:
    """All tasks share all-on hidden masks; only ``planted`` keeps its output layer (the others zero it)."""
    model = _model(hidden=(6, 5), output_size=4, n_tasks=0)
    shapes = {n: layer.mask_shape for n, layer in model.masked_layers().items()}
    tasks = []
    for t in range(k):
        masks = {n: np.ones(s, dtype=bool) for n, s in shapes.items()}
        masks["fc3"] = np.full(shapes["fc3"], t == planted)
        tasks.append(masks)
    model.import_masks(tasks)
    return model


class TestObjectives:
    def test_entropy_matches_definition(self):
        """H is -sum p log p over all outputs."""
        z = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
        p = torch.softmax(z, dim=1)
        assert torch.allclose(entropy(z), -(p * p.log()).sum(dim=1))

    def test_g_value_and_gradient(self):
        """G equals logsumexp; its gradient is 0 on real logits and softmax on superfluous ones."""
        z = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
        g = superfluous_logsumexp(z, real_classes=4)
        assert torch.allclose(g, torch.logsumexp(z, dim=1))
        g.sum().backward()
        p = torch.softmax(z.detach(), dim=1)
        assert torch.equal(z.grad[:, :4], torch.zeros(2, 4))
        assert torch.allclose(z.grad[:, 4:], p[:, 4:])

    def test_g_needs_superfluous_outputs(self):
        """G with as many real classes as outputs, or an unknown objective, raises ConfigError."""
        with pytest.raises(ConfigError, match="real_classes"):
            objective_values(torch.zeros(1, 10), "G", real_classes=10)
        with pytest.raises(ConfigError, match="objective"):
            objective_values(torch.zeros(1, 10), "entropy")


class TestCoefficientGradients:
    @pytest.mark.parametrize("arch, hidden", [("lenet", (12, 10)), ("conv", (2, 3, 8)), ("bnnet", (9, 7))])
    @pytest.mark.parametrize("objective", ["H", "G"])
    def test_equal_float_stack_autograd(self, arch, hidden, objective):
        """The packed mean-mask identity equals autograd through dense float stacks (uniform and random alphas)."""
        model = _model(arch, hidden)
        x = _x(5, 2)
        kw = {"real_classes": 10}
        ours = coefficient_gradients(model, x, objective, **kw)
        ref = float_stack_coefficient_gradients(model, x, objective, **kw)
        assert ours.shape == (6,) and ours.dtype == torch.float64
        assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)
        alphas = torch.rand(6, generator=torch.Generator().manual_seed(3))
        ours_a = coefficient_gradients(model, x, objective, alphas, **kw)
        assert torch.allclose(ours_a, float_stack_coefficient_gradients(model, x, objective, alphas, **kw), rtol=1e-4, atol=1e-7)

    def test_set_alphas_autograd_agrees(self):
        """Backpropagating through set_alphas(leaf) gives the same gradient as coefficient_gradients."""
        model = _model()
        x = _x(3, 4)
        alphas = torch.full((6,), 1 / 6, requires_grad=True)
        model.set_alphas(alphas)
        entropy(model(x)).mean().backward()
        assert torch.allclose(alphas.grad.double(), coefficient_gradients(model, x, "H"), atol=1e-7)

    def test_per_image_equals_single_images(self):
        """Per-image gradients (vmap) equal the batch gradient of each image alone."""
        model = _model()
        x = _x(4, 5)
        per = per_image_coefficient_gradients(model, x, "G")
        single = torch.stack([coefficient_gradients(model, x[i : i + 1], "G") for i in range(4)])
        assert per.shape == (4, 6) and torch.allclose(per, single, rtol=1e-5, atol=1e-8)

    def test_does_not_change_the_selection(self):
        """Inference leaves the model's selected task untouched."""
        model = _model()
        model.set_task(2)
        x = _x(2, 6)
        before = model(x)
        infer_task(model, x)
        assert torch.equal(model(x), before)


class TestOneShot:
    @pytest.mark.parametrize("objective", ["H", "G"])
    def test_same_choice_as_float_stack(self, objective):
        """On random inputs (single images and batches) one-shot picks the float-stack method's task."""
        model = _model(hidden=(16, 12), n_tasks=7)
        stacks = build_float_stacks(model)
        for seed in range(12):
            x = _x(1 + seed % 3, 100 + seed)
            ref = int(torch.argmin(float_stack_coefficient_gradients(model, x, objective, stacks=stacks)))
            assert infer_task(model, x, "oneshot", objective=objective, per="batch") == ref

    def test_per_image_returns_one_task_per_image(self):
        """per='image' returns a LongTensor whose entries equal single-image inference."""
        model = _model()
        x = _x(5, 7)
        tasks = infer_task(model, x, per="image")
        assert tasks.dtype == torch.long and tasks.shape == (5,)
        assert tasks.tolist() == [infer_task(model, x[i : i + 1]) for i in range(5)]

    def test_per_image_refused_for_batch_statistics(self):
        """BNNet couples a batch through its statistics, so per-image inference raises ConfigError."""
        with pytest.raises(ConfigError, match="per"):
            infer_task(_model("bnnet", (5, 5), n_tasks=2), _x(3, 8), per="image")

    def test_only_learned_tasks_are_candidates(self):
        """With spare packed capacity, a task in training and every learned gradient > 0, the choice is a learned task."""
        model = _model(hidden=(16, 16), output_size=4, n_tasks=0)
        x = _x(1, 9)
        layers = model.masked_layers()
        w1, w2, w3 = (layers[n].weight for n in ("fc1", "fc2", "fc3"))
        h = F.relu(F.relu(x @ w1.T) @ w2.T)[0]  # hidden activations with all-on masks
        keep = (h[None, :] * w3) > 0  # (4, 16): output weights that push a logit up
        keep[0] = True  # the real class keeps everything
        assert keep[1:].any(dim=1).all()
        masks = {"fc1": np.ones(w1.shape, bool), "fc2": np.ones(w2.shape, bool), "fc3": keep.numpy()}
        for _ in range(3):
            model.import_masks([masks])  # one at a time: the packed buffers get spare columns
        model.add_task()  # a task in training is never a candidate
        assert all(layer.packed.shape[1] > 3 for layer in layers.values())
        g = coefficient_gradients(model, x, "G", real_classes=1)
        assert g.shape == (3,) and (g > 0).all()
        assert infer_task(model, x, objective="G", real_classes=1) in (0, 1, 2)


class TestBinarySearch:
    @pytest.mark.parametrize("k, planted", [(2, 1), (5, 3), (8, 0), (9, 8), (13, 6)])
    def test_finds_planted_task_in_log_rounds(self, k, planted):
        """The only mask with a live output layer wins, after exactly ceil(log2 k) halving rounds."""
        result = binary_search(_planted(k, planted), _x(3, 10))
        assert result.task == planted
        assert result.rounds == math.ceil(math.log2(k))
        assert infer_task(_planted(k, planted), _x(3, 10), method="binary", per="image").tolist() == [planted] * 3

    @pytest.mark.parametrize("k", [1, 2, 3, 6, 7])
    def test_always_halves(self, k):
        """Active sets shrink to ceil(|A| / 2) each round, even with tied gradients."""
        result = binary_search(_model(n_tasks=k), _x(2, 11))
        sizes = [k]
        while sizes[-1] > 1:
            sizes.append(math.ceil(sizes[-1] / 2))
        assert result.active_sizes == tuple(sizes[:-1]) and 0 <= result.task < k

    def test_identical_masks_tie_to_lowest_index(self):
        """When every task has the same mask, ties keep the lowest index."""
        model = _model(n_tasks=0)
        model.import_masks([_model(n_tasks=1).export_masks(0)] * 5)
        assert binary_search(model, _x(2, 12)).task == 0


class TestInferTaskArguments:
    @pytest.mark.parametrize(
        "kwargs, argument", [({"method": "gradient"}, "method"), ({"per": "pixel"}, "per"), ({"objective": "K"}, "objective")]
    )
    def test_bad_arguments(self, kwargs, argument):
        """Unknown method, per or objective raise ConfigError naming the argument."""
        with pytest.raises(ConfigError, match=f"^{argument}:"):
            infer_task(_model(n_tasks=2), _x(1, 13), **kwargs)

    def test_needs_a_learned_task(self):
        """A model without finished tasks cannot infer one."""
        model = _model(n_tasks=0)
        model.add_task()
        with pytest.raises(ConfigError, match="model"):
            infer_task(model, _x(1, 14))


class TestRankOne:
    @pytest.mark.parametrize("objective", ["H", "G"])
    @pytest.mark.parametrize("hidden", [(12, 10), (9,)])
    def test_equals_the_vmap_contraction(self, objective, hidden):
        """The batched rank-one path gives the vmap + packed contraction values (float32 products) for any alphas."""
        model = _model(hidden=hidden, n_tasks=21)
        x = _x(7, 3)
        for alphas in (None, torch.linspace(0.1, 1.0, 21, dtype=torch.float64)):
            fast = per_image_coefficient_gradients(model, x, objective, alphas, real_classes=4, backend="rank-one")
            ref = per_image_coefficient_gradients(model, x, objective, alphas, real_classes=4, backend="vmap")
            assert fast.shape == (7, 21) and fast.dtype == torch.float64
            torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-7 * float(ref.abs().max()))

    def test_image_chunks_do_not_change_the_result(self, monkeypatch):
        """Passes of 4 images and one mask per chunk give the values of one pass (up to BLAS blocking, float32)."""
        from supsup_core.inference import rank_one

        model, x = _model(n_tasks=5), _x(9, 4)
        whole = rank_one.rank_one_coefficient_gradients(model, x)
        features = sum(layer.in_features + layer.out_features for layer in model.masked_layers().values())
        monkeypatch.setattr(rank_one, "FEATURE_BYTES_PER_PASS", 4 * features * 4)  # passes of 4 images
        monkeypatch.setattr(rank_one, "ENTRIES_PER_CHUNK", 1)  # one mask at a time
        assert rank_one.images_per_pass(model) == 4
        torch.testing.assert_close(rank_one.rank_one_coefficient_gradients(model, x), whole, rtol=1e-5, atol=1e-8)

    def test_unpack_tasks_matches_task_mask(self):
        """The chunked unpacking returns each task's mask."""
        from supsup_core.inference.rank_one import unpack_tasks

        model = _model(n_tasks=4)
        for layer in model.masked_layers().values():
            stack = unpack_tasks(layer, 1, 4)
            assert all(torch.equal(stack[i].bool(), layer.task_mask(1 + i)) for i in range(3))

    def test_rank_one_refused_for_conv_models(self):
        """backend='rank-one' needs an MLP; conv models use vmap under 'auto'."""
        model = _model(arch="conv", hidden=(2, 3, 5), n_tasks=2)
        with pytest.raises(ConfigError, match="backend"):
            per_image_coefficient_gradients(model, _x(2, 0), backend="rank-one")
        assert per_image_coefficient_gradients(model, _x(2, 0)).shape == (2, 2)


class TestRerank:
    def test_one_candidate_is_the_one_shot_answer(self):
        """candidates=1 returns exactly the one-shot choice, per batch and per image."""
        from supsup_core.inference import rerank_task

        model, x = _model(n_tasks=7), _x(6, 1)
        assert rerank_task(model, x, candidates=1) == infer_task(model, x, "oneshot")
        assert torch.equal(rerank_task(model, x, per="image", candidates=1), infer_task(model, x, "oneshot", per="image"))

    def test_all_candidates_is_the_lowest_objective_mask(self):
        """candidates >= k scores every mask: the answer is the mask with the lowest mean entropy."""
        from supsup_core.inference import rerank_task

        model, x = _model(n_tasks=7), _x(5, 2)
        with torch.no_grad():
            values = []
            for t in range(7):
                model.set_task(t)
                values.append(float(entropy(model(x)).mean()))
        assert rerank_task(model, x, candidates=50) == int(np.argmin(values))

    def test_per_image_equals_single_images(self):
        """Per-image re-ranking agrees with re-ranking each image alone."""
        from supsup_core.inference import rerank_task

        model, x = _model(n_tasks=9), _x(6, 5)
        batch = rerank_task(model, x, per="image", candidates=3)
        assert [int(v) for v in batch] == [rerank_task(model, x[i : i + 1], candidates=3) for i in range(6)]

    def test_finds_the_planted_task(self):
        """The planted task (the only one with a working output layer) wins through infer_task."""
        model = _planted(9, 4)
        assert infer_task(model, _x(3, 0), method="rerank") == 4

    def test_bad_candidates(self):
        """candidates must be a positive integer."""
        from supsup_core.inference import rerank_task

        with pytest.raises(ConfigError, match="candidates"):
            rerank_task(_model(n_tasks=2), _x(1, 0), candidates=0)


class TestInferGroups:
    """supsup_core.inference.groups.infer_groups: many decisions at once."""

    @staticmethod
    def _groups(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        return list(x.split(sizes))

    @pytest.mark.parametrize("objective", ["H", "G"])
    def test_group_rows_are_the_mean_objective_gradient(self, objective):
        """A group's rank-one row is coefficient_gradients of its images (float32 products), so clear decisions agree."""
        from supsup_core.inference import rank_one
        from supsup_core.inference.groups import infer_groups

        model, x, sizes = _model(n_tasks=11), _x(12, 21), [3, 1, 5, 2, 1]
        rows = rank_one.rank_one_coefficient_gradients(model, x, objective, real_classes=4)
        decided = infer_groups(model, x, sizes, "oneshot", objective=objective, real_classes=4)
        start = 0
        for j, part in enumerate(self._groups(x, sizes)):
            exact = coefficient_gradients(model, part, objective, real_classes=4)
            mean = rows[start : start + part.shape[0]].mean(dim=0)
            torch.testing.assert_close(mean, exact, rtol=1e-5, atol=1e-6 * float(exact.abs().max()))
            top2 = torch.sort(exact).values[:2]
            if float(top2[1] - top2[0]) > 1e-4 * float(exact.abs().max()):  # a clear winner: the same decision
                assert int(decided[j]) == int(torch.argmin(exact))
            start += part.shape[0]

    def test_singleton_groups_are_per_image_inference(self):
        """sizes of ones, sizes=None and infer_task(per='image') give the same tasks, for one-shot and rerank."""
        from supsup_core.inference import rerank_task
        from supsup_core.inference.groups import infer_groups

        model, x = _model(n_tasks=9), _x(7, 22)
        for method in ("oneshot", "rerank"):
            ones = infer_groups(model, x, [1] * 7, method)
            assert torch.equal(ones, infer_groups(model, x, None, method))
            assert torch.equal(ones, infer_task(model, x, method, per="image"))
        assert torch.equal(infer_groups(model, x, None, "rerank"), rerank_task(model, x, per="image"))

    def test_rerank_groups_find_the_planted_task(self):
        """Every group of images finds the planted task through rerank (the candidates of all groups scored at once)."""
        from supsup_core.inference.groups import infer_groups

        model = _planted(9, 4)
        assert infer_groups(model, _x(6, 23), [2, 3, 1], "rerank").tolist() == [4, 4, 4]

    def test_rerank_groups_score_each_group_by_its_mean_objective(self):
        """With every mask a candidate, each group's answer is the mask of lowest mean entropy over its images."""
        from supsup_core.inference.rerank import rerank_groups

        model, x, sizes = _model(n_tasks=6), _x(7, 24), [4, 3]
        g = torch.zeros((2, 6), dtype=torch.float64)  # a flat ranking: all 6 candidates kept, ties by task index
        got = rerank_groups(model, x, g, sizes, "H", 10, candidates=6)
        with torch.no_grad():
            for j, part in enumerate(self._groups(x, sizes)):
                values = []
                for t in range(6):
                    model.set_task(t)
                    values.append(float(entropy(model(part)).double().mean()))
                assert int(got[j]) == int(np.argmin(values))

    @pytest.mark.parametrize(("arch", "hidden", "method"), [("conv", (2, 3, 5), "oneshot"), ("lenet", (12, 10), "binary")])
    def test_other_models_and_binary_decide_group_by_group(self, arch, hidden, method):
        """Conv models and binary search give exactly one infer_task call's answer per group."""
        from supsup_core.inference.groups import infer_groups

        model, x, sizes = _model(arch=arch, hidden=hidden, n_tasks=5), _x(6, 25), [2, 4]
        expected = [infer_task(model, part, method) for part in self._groups(x, sizes)]
        assert infer_groups(model, x, sizes, method).tolist() == expected

    @pytest.mark.parametrize("sizes", [[2, 1], [3, 0, 1], [4.0], [True, 3]])
    def test_bad_sizes(self, sizes):
        """Group sizes must be positive ints summing to the images."""
        from supsup_core.inference.groups import infer_groups

        with pytest.raises(ConfigError, match="^sizes:"):
            infer_groups(_model(n_tasks=2), _x(4, 0), sizes)

    def test_batch_statistics_models_need_groups(self):
        """A BNNet cannot decide image by image (sizes=None), but a whole batch decides like infer_task."""
        from supsup_core.inference.groups import infer_groups

        model, x = _model(arch="bnnet", hidden=(8, 8), n_tasks=3), _x(6, 26)
        with pytest.raises(ConfigError, match="^sizes:"):
            infer_groups(model, x)
        assert infer_groups(model, x, [6]).tolist() == [infer_task(model, x)]


def test_packed_rows_gather_any_tasks():
    """packed_rows + unpack_rows give the masks of any tasks, in the order asked, like task_mask."""
    from supsup_core.inference.rank_one import packed_rows, unpack_rows

    model = _model(n_tasks=7)
    tasks = torch.tensor([5, 0, 3])
    for layer in model.masked_layers().values():
        stack = unpack_rows(layer, packed_rows(layer, tasks))
        assert all(torch.equal(stack[i].bool(), layer.task_mask(int(t))) for i, t in enumerate(tasks))


def test_no_images_no_decisions():
    """An empty x with no groups gives an empty answer, for MLPs and conv models."""
    from supsup_core.inference.groups import infer_groups

    for arch, hidden in (("lenet", (12, 10)), ("conv", (2, 3, 5))):
        model = _model(arch=arch, hidden=hidden, n_tasks=2)
        assert infer_groups(model, _x(0, 0), []).shape == (0,)
        assert infer_groups(model, _x(0, 0)).shape == (0,)


class TestDefaultMethod:
    """supsup_core.inference.DEFAULT_METHOD: the best measured task inference, used wherever none is named."""

    def test_default_is_rerank_and_the_papers_are_known(self):
        """The default is rerank; the paper's one-shot and binary stay available by name."""
        from supsup_core.inference import DEFAULT_METHOD, METHODS, PAPER_METHODS

        assert DEFAULT_METHOD == "rerank" and set(PAPER_METHODS) == {"oneshot", "binary"}
        assert set(METHODS) == {DEFAULT_METHOD, *PAPER_METHODS}

    def test_every_entry_point_defaults_to_it(self):
        """infer_task, infer_groups, predict, evaluate_inferred (and the Avalanche model) name no method of their own."""
        import inspect

        from supsup_core.inference import DEFAULT_METHOD, infer_groups, predict
        from supsup_core.inference.predict import UnknownThreshold
        from supsup_core.interop.avalanche import SupSupModel
        from supsup_core.training import evaluate_inferred

        for function in (infer_task, infer_groups, evaluate_inferred, SupSupModel.__init__):
            assert inspect.signature(function).parameters["method"].default == DEFAULT_METHOD, function
        assert UnknownThreshold("objective", 1.0).method == DEFAULT_METHOD
        model, x = _model(n_tasks=7), _x(3, 2)
        assert infer_task(model, x) == infer_task(model, x, DEFAULT_METHOD)
        assert predict(model, x).task == predict(model, x, method=DEFAULT_METHOD).task
