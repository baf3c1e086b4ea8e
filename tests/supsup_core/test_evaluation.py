"""Tests of supsup_core/training/evaluation.py: GG, GNu and GNs accuracy, protocols, task-inference accuracy."""

from __future__ import annotations

import pytest
import torch

from supsup_core.config import ModelConfig
from supsup_core.data import ImageData, load_mnist, make_stream
from supsup_core.errors import ConfigError
from supsup_core.models import build_model
from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred, train_stream
from supsup_core.training import evaluation as evaluation_module


def _small_stream(n_tasks: int = 3):
    """Permuted MNIST over a quarter of the embedded training images and 200 test images."""
    d = load_mnist()
    small = ImageData(d.train_images[::4], d.train_labels[::4], d.test_images[::5], d.test_labels[::5], "test-subset")
    return make_stream("permuted-mnist", n_tasks, small)


@pytest.fixture(scope="module")
def trained():
    """A tiny LeNet with 3 trained tasks on the small stream."""
    stream = _small_stream()
    model = build_model(ModelConfig(arch="lenet", hidden=(48, 24), output_size=20))
    train_stream(model, stream, TrainConfig(lr=1e-2, batches_per_task=40, batch_size=64), evaluate=False)
    return model, stream


def _manual_accuracy(model, stream, task: int, mask: int) -> float:
    model.set_task(mask)
    right = n = 0
    with torch.no_grad():
        for x, y, _ in stream.test_batches(task):
            right += int((model(x).argmax(1) == y).sum())
            n += y.shape[0]
    return right / n


class TestGG:
    def test_gg_scores_each_task_with_its_own_mask(self, trained):
        """GG accuracy of task t equals a hand-written loop over its test set with mask t."""
        model, stream = trained
        result = evaluate_gg(model, stream)
        assert set(result.accuracy) == {0, 1, 2} and result.n_images == {0: 200, 1: 200, 2: 200}
        for t in range(3):
            assert result.accuracy[t] == _manual_accuracy(model, stream, t, t)
        assert result.mean_accuracy > 0.5  # well above chance: the masks learned something

    def test_batch_size_does_not_change_gg(self, trained):
        """GG accuracy is the same for test batches of 7 and of 128."""
        model, stream = trained
        assert evaluate_gg(model, stream, batch_size=7).accuracy == evaluate_gg(model, stream).accuracy

    def test_task_to_mask_redirects_masks(self, trained):
        """With task_to_mask {0: 1}, task 0 is scored with mask 1."""
        model, stream = trained
        result = evaluate_gg(model, stream, [0], task_to_mask={0: 1})
        assert result.accuracy[0] == _manual_accuracy(model, stream, 0, 1)

    def test_evaluation_restores_training_mode(self, trained):
        """A model in train mode is back in train mode after evaluation (eval mode inside)."""
        model, stream = trained
        model.train()
        evaluate_gg(model, stream, [0])
        assert model.training

    @pytest.mark.parametrize("tasks", [[3], [-1], [True]])
    def test_tasks_outside_the_learned_range_are_refused(self, trained, tasks):
        """A task the model has no mask for raises ConfigError naming tasks."""
        model, stream = trained
        with pytest.raises(ConfigError, match="tasks"):
            evaluate_gg(model, stream, tasks)


class TestInferred:
    def test_gnu_counts_wrong_task_batches_wrong(self, trained, monkeypatch):
        """When inference always answers the wrong task, GNu accuracy is 0 while GNs scores with that wrong mask."""
        model, stream = trained

        def wrong(model, x, sizes, method, objective, real_classes):
            return torch.ones(x.shape[0] if sizes is None else len(sizes), dtype=torch.long)

        monkeypatch.setattr(evaluation_module, "infer_groups", wrong)
        gnu = evaluate_inferred(model, stream, [0], scenario="gnu")
        gns = evaluate_inferred(model, stream, [0], scenario="gns")
        assert gnu.accuracy[0] == 0.0 and gnu.decision_accuracy[0] == 0.0 and gnu.task_inference_accuracy[0] == 0.0
        assert gns.accuracy[0] == _manual_accuracy(model, stream, 0, 1) > 0.0

    def test_right_task_gives_gg_accuracy(self, trained, monkeypatch):
        """When inference always answers the true task, GNu accuracy equals GG accuracy."""
        model, stream = trained
        monkeypatch.setattr(
            evaluation_module,
            "infer_groups",
            lambda model, x, sizes, method, objective, real_classes: torch.full((x.shape[0] if sizes is None else len(sizes),), 2),
        )
        assert evaluate_inferred(model, stream, [2]).accuracy[2] == evaluate_gg(model, stream, [2]).accuracy[2]

    def test_first_image_protocol_decides_from_the_first_image_only(self, trained, monkeypatch):
        """The first-image protocol infers from each test batch's first image alone, one decision per batch."""
        model, stream = trained
        calls: list[tuple[object, torch.Tensor]] = []

        def spy(model, x, sizes, method, objective, real_classes):
            calls.append((sizes, x.clone()))
            return torch.zeros(x.shape[0] if sizes is None else len(sizes), dtype=torch.long)

        monkeypatch.setattr(evaluation_module, "infer_groups", spy)
        result = evaluate_inferred(model, stream, [0], measure_task_inference=False, batch_size=64)
        firsts = torch.cat([x[:1] for x, _, _ in stream.test_batches(0, 64)])  # 200 images in batches of 64
        assert len(calls) == 1 and calls[0][0] is None and torch.equal(calls[0][1], firsts)
        assert result.decision_accuracy[0] == 1.0 and result.task_inference_accuracy == {}

    def test_per_image_protocol_scores_each_image_with_its_own_mask(self, trained, monkeypatch):
        """Per-image GNu with half the images on the wrong task scores only the right half."""
        model, stream = trained

        def alternate(model, x, sizes, method, objective, real_classes):
            assert sizes is None  # every image decides for itself
            return (torch.arange(x.shape[0]) % 2).long()  # even images -> task 0 (right), odd -> task 1

        monkeypatch.setattr(evaluation_module, "infer_groups", alternate)
        result = evaluate_inferred(model, stream, [0], protocol="per-image")
        model.set_task(0)
        right = 0
        with torch.no_grad():
            for x, y, _ in stream.test_batches(0):
                keep = (torch.arange(x.shape[0]) % 2) == 0
                right += int((model(x[keep]).argmax(1) == y[keep]).sum())
        assert result.accuracy[0] == right / 200 and result.decision_accuracy[0] == 0.5

    def test_real_one_shot_inference_finds_the_tasks(self, trained):
        """Real one-shot single-image inference picks the right task for most images of trained permutations."""
        model, stream = trained
        result = evaluate_inferred(model, stream, method="oneshot", objective="H")
        assert result.mean_task_inference_accuracy > 0.8
        assert result.mean_accuracy <= evaluate_gg(model, stream).mean_accuracy + 1e-12
        assert set(result.to_dict()) >= {"accuracy", "task_inference_accuracy", "mean_accuracy"}

    def test_gns_tasks_without_a_mask_report_nan_decisions(self, trained, monkeypatch):
        """GNs over a task mapped to no mask still scores it, with NaN decision accuracy."""
        model, _ = trained
        stream = _small_stream(4)
        monkeypatch.setattr(
            evaluation_module,
            "infer_groups",
            lambda m, x, sizes, method, objective, real_classes: torch.zeros(x.shape[0] if sizes is None else len(sizes), dtype=torch.long),
        )
        result = evaluate_inferred(
            model, stream, [3], scenario="gns", measure_task_inference=False, task_to_mask={0: 0, 1: 1, 2: 2}
        )
        assert 0.0 <= result.accuracy[3] <= 1.0 and result.decision_accuracy[3] != result.decision_accuracy[3]
        with pytest.raises(ConfigError, match="tasks"):
            evaluate_inferred(model, stream, [3], scenario="gnu", measure_task_inference=False)

    @pytest.mark.parametrize(
        "kwargs, argument",
        [
            ({"method": "twoshot"}, "method"),
            ({"objective": "K"}, "objective"),
            ({"protocol": "every-image"}, "protocol"),
            ({"scenario": "gg"}, "scenario"),
        ],
    )
    def test_bad_options_raise_config_error(self, trained, kwargs, argument):
        """Unknown method, objective, protocol or scenario raise ConfigError naming the option."""
        model, stream = trained
        with pytest.raises(ConfigError) as info:
            evaluate_inferred(model, stream, **kwargs)
        assert info.value.argument == argument

    def test_batch_statistics_models_need_the_batch_protocol(self):
        """A BNNet (batch-statistics unit masks) refuses single-image protocols."""
        model = build_model(ModelConfig(arch="bnnet", hidden=(8, 8), output_size=10))
        model.add_task()
        model.finish_task()
        with pytest.raises(ConfigError, match="protocol"):
            evaluate_inferred(model, _small_stream(1), protocol="first-image")


class TestWindows:
    def test_window_size_does_not_change_the_result(self, trained, monkeypatch):
        """One task per window or all tasks in one window: the same accuracies and decisions, for every protocol."""
        model, stream = trained
        for protocol in ("first-image", "per-image", "batch"):
            for method in ("oneshot", "rerank"):
                monkeypatch.setattr(evaluation_module, "DECISION_IMAGES_PER_WINDOW", 1)
                small = evaluate_inferred(model, stream, method=method, protocol=protocol, batch_size=64)
                monkeypatch.setattr(evaluation_module, "DECISION_IMAGES_PER_WINDOW", 10**6)
                whole = evaluate_inferred(model, stream, method=method, protocol=protocol, batch_size=64)
                assert small.to_dict() == whole.to_dict(), (protocol, method)

    def test_first_image_decision_is_the_first_images_own(self, trained):
        """With single-image inference measured, each batch's decision is its first image's single-image decision."""
        model, stream = trained
        with_singles = evaluate_inferred(model, stream, batch_size=32)
        without = evaluate_inferred(model, stream, batch_size=32, measure_task_inference=False)
        assert with_singles.decision_accuracy == without.decision_accuracy
        assert with_singles.accuracy == without.accuracy

    def test_a_task_asked_twice_is_evaluated_once(self, trained):
        """tasks=[0, 0] gives task 0's result (results are keyed by task)."""
        model, stream = trained
        assert evaluate_inferred(model, stream, [0, 0]).to_dict() == evaluate_inferred(model, stream, [0]).to_dict()
