"""Tests of supsup_core/training/nns.py: mask allocation without task identity, reuse, budget, decision gradients."""

from __future__ import annotations

import pytest
import torch

from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import ConfigError
from supsup_core.inference.objectives import objective_values
from supsup_core.models import build_model
from supsup_core.training import TrainConfig, decision_gradients, nns_batches, train_nns
from supsup_core.training.nns import NNsResult, _initial_masks

CONFIG = TrainConfig.for_scenario("nns", lr=1e-3, batches_per_task=60)


def _model(seed: int = 0):
    return build_model(ModelConfig(arch="lenet", hidden=(64, 32), output_size=20, seed=seed))


@pytest.fixture(scope="module")
def stream():
    """Three permutations of the embedded MNIST subset."""
    return make_stream("permuted-mnist", 3)


@pytest.fixture(scope="module")
def changing_run(stream):
    """NNs over tasks 0, 1, 2 then 0 again (60 batches each, a decision every 20)."""
    model = _model()
    result = train_nns(model, nns_batches(stream, [0, 1, 2, 0], CONFIG), CONFIG, decision_every=20)
    return model, result


class TestAllocation:
    def test_first_decision_allocates_mask_zero(self, changing_run):
        """The run's first decision allocates mask 0 without consulting any candidate."""
        _, result = changing_run
        first = result.decisions[0]
        assert (first.batch, first.action, first.mask, first.n_candidates) == (0, "allocate", 0, 0)

    def test_a_new_mask_is_allocated_exactly_where_the_task_changes(self, changing_run):
        """New masks are allocated at batches 0, 60 and 120 (the task changes) and nowhere else."""
        _, result = changing_run
        assert [d.batch for d in result.allocations()] == [0, 60, 120]
        assert [d.mask for d in result.allocations()] == [0, 1, 2]

    def test_the_open_mask_is_continued_within_a_task(self, changing_run):
        """Decisions inside a task's first occurrence continue training its own mask."""
        _, result = changing_run
        inside = [d for d in result.decisions if d.batch < 180 and d.batch % 60 != 0]
        assert inside and all(d.action == "continue" and d.mask == d.batch // 60 for d in inside)

    def test_a_recurring_task_reuses_its_mask(self, changing_run):
        """When task 0 comes back, every decision reuses mask 0 and no mask is added."""
        model, result = changing_run
        recurring = [d for d in result.decisions if d.batch >= 180]
        assert recurring and all(d.action == "reuse" and d.mask == 0 for d in recurring)
        assert result.n_masks == 3 and model.num_tasks == 3 and model.training_task is None
        assert result.task_to_mask() == {0: 0, 1: 1, 2: 2}

    def test_reused_segments_are_not_trained(self, changing_run):
        """Only the batches of open masks are trained: 3 tasks x 60, not the 60 reused ones."""
        _, result = changing_run
        assert result.n_trained_batches == 180

    def test_default_never_puts_more_than_the_trained_masks_and_one_fresh_comparator(self, changing_run):
        """Candidates are the trained masks, padded to 2 only while fewer than 2 are trained."""
        _, result = changing_run
        for d in result.decisions[1:]:
            trained = sum(1 for a in result.allocations() if a.batch < d.batch)
            assert d.n_candidates == max(trained, 2)

    def test_reference_mode_uses_five_candidates(self, stream):
        """reference_untrained_masks=True superposes max(k, 5) masks, untrained ones included."""
        config = CONFIG.replace(batches_per_task=20)
        result = train_nns(_model(), nns_batches(stream, [0, 1], config), config, decision_every=10,
                           reference_untrained_masks=True)
        assert [d.n_candidates for d in result.decisions[1:]] == [5, 5, 5]
        assert result.decisions[0].action == "allocate"

    def test_budget_skips_allocations_beyond_it(self, stream):
        """With budget 1, the second task's allocation is refused and its batches are skipped."""
        config = CONFIG.replace(batches_per_task=20)
        steps: list[int] = []
        result = train_nns(_model(), nns_batches(stream, [0, 1], config), config, decision_every=10, budget=1,
                           progress=steps.append)
        actions = [d.action for d in result.decisions]
        assert "skip" in actions and result.n_masks == 1 and len(steps) == 40
        assert result.n_trained_batches == 40 - 10 * actions.count("skip")

    def test_result_to_dict_is_json_friendly(self, changing_run):
        """NNsResult.to_dict carries the mask count, the stream-task map and every decision."""
        _, result = changing_run
        d = result.to_dict()
        assert d["n_masks"] == 3 and d["task_to_mask"] == {"0": 0, "1": 1, "2": 2}
        assert len(d["decisions"]) == len(result.decisions)
        assert NNsResult().task_to_mask() == {}


class TestDecisionGradients:
    def test_padding_masks_are_the_masks_add_task_starts_with(self):
        """_initial_masks(model, k) equals the mask of a task added and finished untrained at index k."""
        model = _model(seed=3)
        pads = _initial_masks(model, 0)
        model.add_task()
        model.finish_task()
        for name, mask in model.export_masks(0).items():
            assert torch.equal(pads[name].bool(), torch.from_numpy(mask))

    def test_matches_autograd_on_an_explicit_superposition(self, stream):
        """decision_gradients equals autograd of the objective w.r.t. alphas over finished, open and padding masks."""
        model = _model(seed=1)
        for _ in range(2):
            model.add_task()
            model.finish_task()
        model.add_task()
        with torch.no_grad():  # make the open mask differ from its initialisation
            for p in model.score_parameters():
                p.mul_(-1.0)
        x, _, _ = next(stream.train_batches(0, batch_size=16))
        g = decision_gradients(model, x, n_pads=2, objective="H")

        layers = model.masked_layers()
        candidates = [{n: torch.from_numpy(m).float() for n, m in model.export_masks(i).items()} for i in range(2)]
        candidates.append({n: layer.score_mask().detach().float() for n, layer in layers.items()})
        candidates += [_initial_masks(model, 3), _initial_masks(model, 4)]
        alphas = torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)
        masks = {n: sum(a * c[n].double() for a, c in zip(alphas, candidates)).float() for n in layers}
        expected = torch.autograd.grad(objective_values(model(x, masks=masks), "H").mean(), alphas)[0]
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)

    def test_no_candidate_is_an_error(self):
        """A model with no finished or open mask and no padding raises ConfigError."""
        with pytest.raises(ConfigError, match="candidate"):
            decision_gradients(_model(), torch.zeros(2, 784))


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs, argument",
        [({"decision_every": 0}, "decision_every"), ({"epsilon": -0.1}, "epsilon"), ({"budget": 0}, "budget")],
    )
    def test_bad_arguments_raise_config_error(self, stream, kwargs, argument):
        """Non-positive decision interval, negative epsilon and a budget below the held masks are refused."""
        with pytest.raises(ConfigError) as info:
            train_nns(_model(), [], CONFIG, **kwargs)
        assert info.value.argument == argument

    def test_a_model_with_a_task_in_training_is_refused(self):
        """train_nns refuses a model whose task is still in training."""
        model = _model()
        model.add_task()
        with pytest.raises(ConfigError, match="in training"):
            train_nns(model, [], CONFIG)
