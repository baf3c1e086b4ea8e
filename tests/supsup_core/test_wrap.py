"""Supermasks on any nn.Module: wrap a user's MLP, a CNN with BatchNorm and a residual block, and GEMResNet18.

Each is trained on two tasks of real data (scikit-learn's digits), infers tasks, is saved to a bank and
loaded onto a freshly wrapped module with bit-identical outputs; another architecture is refused with the
differing layer named.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from supsup_core.data import SplitStream, load_data
from supsup_core.errors import BaseNetworkMismatchError, ConfigError
from supsup_core.inference import coefficient_gradients, infer_task
from supsup_core.layers import MaskedConv, MaskedLinear, TaskBatchNorm
from supsup_core.models import GEMResNet18
from supsup_core.persistence import load_masks_into, read_bank_metadata, save_masks
from supsup_core.training import TrainConfig, evaluate_gg, train_task
from supsup_core.wrapping import wrap


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class SmallResNet(nn.Module):
    """A user's CNN: conv-BN-ReLU, one residual block, global pooling, a linear head (with biases)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.block(h))  # the residual connection
        return self.head(h.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _train(model, stream, batches: int = 60, lr: float = 1e-2) -> None:
    config = TrainConfig(optimizer="adam", lr=lr, batch_size=32, batches_per_task=batches)
    for task in range(2):
        train_task(model, stream, task, config)


def _outputs(model, x: torch.Tensor) -> list[torch.Tensor]:
    model.eval()
    out = []
    with torch.no_grad():
        for task in range(model.num_tasks):
            model.set_task(task)
            out.append(model(x).clone())
    return out


CASES = {
    "sequential-mlp": (mlp, "digits", {}),
    "cnn-bn-residual": (SmallResNet, "digits", {}),
    "gemresnet18": (lambda: GEMResNet18(output_size=10), "digits@3x32x32", {"mask_mode": "topk", "er_sigma": 8.0}),
}


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, tmp_path_factory):
    """(name, factory, wrap options, stream, trained model, bank path)."""
    factory, spec, options = CASES[request.param]
    stream = SplitStream(load_data(spec), 2, 2, relabel=False)
    model = wrap(factory(), seed=3, **options)
    _train(model, stream, batches=30 if request.param == "gemresnet18" else 60)
    path = tmp_path_factory.mktemp(request.param) / "bank.h5"
    save_masks(model, path, benchmark=stream.describe())
    return request.param, factory, options, stream, model, path


class TestWrappedModels:
    def test_layers_are_converted_and_nothing_else_trains(self, trained):
        """Every Linear/Conv became a masked layer, every BatchNorm per-task statistics; only scores are parameters."""
        name, factory, options, _, model, _ = trained
        plain = factory()
        n_weight = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in plain.modules())
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        assert len(model.masked_layers()) == n_weight
        assert all(isinstance(m, (MaskedLinear, MaskedConv)) for m in model.masked_layers().values())
        assert len(model.norm_layers()) == n_bn and all(isinstance(m, TaskBatchNorm) for m in model.norm_layers().values())
        assert list(model.parameters()) == []  # finished tasks: no float scores left

    def test_learns_both_tasks(self, trained):
        """GG accuracy well above chance (0.5) on both real tasks (GEMResNet18: 30 steps of top-k masks, sigma = 8)."""
        name, _, _, stream, model, _ = trained
        accuracy = evaluate_gg(model, stream).accuracy
        assert min(accuracy.values()) > 0.9, accuracy

    def test_task_inference_runs_and_picks_a_learned_task(self, trained):
        """One-shot (with the per-task BN statistics' term), rerank and binary return learned tasks; the MLP's are right."""
        name, _, _, stream, model, _ = trained
        model.eval()
        for task in range(2):
            x, _, _ = next(stream.test_batches(task, 64))
            for method in ("oneshot", "rerank", "binary"):
                inferred = infer_task(model, x, method=method)
                assert inferred in (0, 1)
                if name == "sequential-mlp":
                    assert inferred == task

    def test_save_then_load_onto_a_fresh_wrap_gives_bit_identical_outputs(self, trained):
        name, factory, options, stream, model, path = trained
        fresh = wrap(factory(), seed=3, **options)
        load_masks_into(fresh, path)
        x, _, _ = next(stream.test_batches(1, 32))
        for a, b in zip(_outputs(model, x), _outputs(fresh, x)):
            assert torch.equal(a, b)
        metadata = read_bank_metadata(path)
        assert metadata["model"]["wrap"]["seed"] == 3 and metadata["architecture"][0]["name"]

    def test_another_architecture_is_refused_naming_the_first_differing_layer(self, trained):
        name, factory, options, _, _, path = trained
        other = factory()
        first = next(n for n, m in other.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        layer = other.get_submodule(first)
        if isinstance(layer, nn.Linear):
            other._modules[first.rpartition(".")[2]] = nn.Linear(layer.in_features, layer.out_features + 1)
            if isinstance(other, nn.Sequential):
                other[3] = nn.Linear(65, 10)
        else:
            parent = other.get_submodule(first.rpartition(".")[0]) if "." in first else other
            parent._modules[first.rpartition(".")[2]] = nn.Conv2d(layer.in_channels, layer.out_channels, 5, padding=2)
        model = wrap(other, seed=3, **options)
        with pytest.raises(BaseNetworkMismatchError, match=rf"layer 0 '{first}'"):
            load_masks_into(model, path)
        assert model.num_tasks == 0

    def test_another_seed_is_refused(self, trained):
        name, factory, options, _, _, path = trained
        with pytest.raises(BaseNetworkMismatchError, match="seed"):
            load_masks_into(wrap(factory(), seed=4, **options), path)


class TestTaskBatchNormSuperposition:
    def test_oneshot_gradient_includes_the_statistics_and_matches_finite_differences(self, digits):
        """g . d equals the central difference of the mean entropy along d, masks and statistics mixed by alphas."""
        torch.manual_seed(0)
        stream = SplitStream(digits, 2, 2, relabel=False)
        model = wrap(SmallResNet(), seed=0)
        _train(model, stream, batches=20)
        model.eval()
        x, _, _ = next(stream.test_batches(0, 32))
        alphas = torch.full((2,), 0.5)
        g = coefficient_gradients(model, x, alphas=alphas)

        def value(a: torch.Tensor) -> float:
            model.set_alphas(a)
            with torch.no_grad():
                logits = model(x)
            p = torch.softmax(logits.double(), dim=1)
            return float(-(p * p.clamp_min(1e-300).log()).sum(dim=1).mean())

        d = torch.tensor([1.0, -1.0])
        eps = 1e-2
        numeric = (value(alphas + eps * d) - value(alphas - eps * d)) / (2 * eps)
        assert float((g * d.double()).sum()) == pytest.approx(numeric, rel=0.05, abs=1e-4)


class TestWrapOptions:
    def test_pretrained_base_keeps_the_module_and_starts_all_on(self, digits):
        """base='pretrained': the module's own weights and biases are the frozen base, and a new task's
        threshold mask starts all-on, so the wrapped model first computes exactly what the module did."""
        torch.manual_seed(0)
        net = mlp()
        reference = copy.deepcopy(net)
        x = torch.randn(4, 1, 8, 8)
        model = wrap(net, base="pretrained")
        model.add_task()
        with torch.no_grad():
            assert torch.allclose(model(x), reference(x), atol=1e-6)
        other = wrap(copy.deepcopy(reference), base="pretrained")
        assert other.base_fingerprint() == model.base_fingerprint()
        with torch.no_grad():
            reference[1].weight[0, 0] += 1.0
        assert wrap(reference, base="pretrained").base_fingerprint() != model.base_fingerprint()

    def test_seeded_base_is_the_same_whatever_the_module_held(self):
        a, b = mlp(), mlp()
        with torch.no_grad():
            b[1].weight.fill_(7.0)
        assert wrap(a, seed=5).base_fingerprint() == wrap(b, seed=5).base_fingerprint()

    def test_transfer_starts_a_task_from_the_earlier_tasks_mean_scores(self, digits):
        stream = SplitStream(digits, 2, 3, relabel=False)
        model = wrap(mlp(), seed=0, mask_mode="topk", density=0.3, transfer=True)
        config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, batches_per_task=5)
        finals = []
        for task in range(2):
            model.add_task()
            train = model.score_parameters()
            from supsup_core.training import Trainer

            Trainer(model, train, config).run(stream.train_batches(task, 32, n_batches=5))
            finals.append([p.detach().clone() for p in train])
            model.finish_task()
        start = model.begin_task(2)
        for i, p in enumerate(start):
            assert torch.allclose(p.detach(), (finals[0][i] + finals[1][i]) / 2)

    def test_topk_layers_keep_their_er_density(self):
        model = wrap(SmallResNet(), mask_mode="topk", er_sigma=2.0)
        model.add_task()
        model.finish_task()
        for name, layer in model.masked_layers().items():
            kept = model.export_masks(0)[name].mean()
            assert kept == pytest.approx(layer.density, abs=1.0 / layer.mask_numel + 1e-9)

    def test_batchnorm_modes(self):
        model = wrap(SmallResNet(), batchnorm="batch")
        assert model.has_batch_statistics and not model.norm_layers()
        units = wrap(SmallResNet(), masks="units")
        assert sorted(units.masked_layers()) == ["block.1", "block.4", "bn"]
        with pytest.raises(ConfigError, match="batchnorm"):
            wrap(SmallResNet(), batchnorm="frozen")

    def test_layer_norm_and_conv1d_are_supported(self):
        net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                            nn.LayerNorm(4 * 6), nn.Linear(4 * 6, 3))
        model = wrap(net)
        model.add_task()
        assert model(torch.randn(5, 2, 6)).shape == (5, 3)


class TestRefused:
    def test_a_model_with_no_maskable_layer(self):
        with pytest.raises(ConfigError, match=r"model: expected a module with nn.Linear or nn.Conv1d/2d/3d layers to mask"):
            wrap(nn.Sequential(nn.ReLU(), nn.Flatten()))

    @pytest.mark.parametrize("layer, kind", [(nn.Embedding(10, 4), "Embedding"), (nn.LSTM(4, 4), "LSTM"),
                                             (nn.ConvTranspose2d(2, 2, 3), "ConvTranspose2d")])
    def test_a_layer_that_cannot_be_masked_is_named_and_nothing_changes(self, layer, kind):
        net = nn.Sequential(nn.Linear(4, 4), layer)
        before = copy.deepcopy(net.state_dict())
        with pytest.raises(ConfigError, match=rf"layer '1' \({kind}, parameters"):
            wrap(net)
        assert isinstance(net[0], nn.Linear)  # untouched
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    def test_wrapping_twice(self):
        model = wrap(mlp())
        with pytest.raises(ConfigError, match="not wrapped yet"):
            wrap(model.module)

    def test_labels_that_do_not_fit_the_head(self, digits):
        """Ten digit labels through a 4-output head: one line naming the labels and the range."""
        stream = SplitStream(digits, 2, 5, relabel=False)
        model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)))
        with pytest.raises(ConfigError, match=r"labels: expected class indices in 0..3"):
            train_task(model, stream, 4, TrainConfig(batches_per_task=1, batch_size=8))

    @pytest.mark.parametrize("make, words", [
        (lambda: mlp().double(), "model: expected a float32 module (call module.float() first), received '1.weight' of "
                                 "dtype torch.float64"),
        (lambda: mlp().to(torch.bfloat16), "of dtype torch.bfloat16"),
        (lambda: nn.Sequential(nn.Linear(0, 4)), "layers with at least one weight, received layer '0' of shape (4, 0)"),
    ])
    @pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
    def test_modules_it_could_not_run_are_refused_at_wrap(self, make, words):
        with pytest.raises(ConfigError) as info:
            wrap(make())
        assert words in str(info.value)

    def test_tied_weights_are_refused_naming_both_layers(self):
        net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        net[2].weight = net[0].weight
        with pytest.raises(ConfigError, match="received layers '0' and '2' share one weight"):
            wrap(net)

    def test_pretrained_weights_on_the_meta_device_are_refused(self):
        with torch.device("meta"):
            net = mlp()
        with pytest.raises(ConfigError, match="base: expected 'seed' for a module on the meta device"):
            wrap(net, base="pretrained")

    def test_bad_options(self):
        with pytest.raises(ConfigError, match="mask_mode"):
            wrap(mlp(), mask_mode="random")
        with pytest.raises(ConfigError, match="er_sigma"):
            wrap(mlp(), er_sigma=-1.0)
        with pytest.raises(ConfigError, match="config"):
            wrap(mlp(), config={"seed": 1})


def test_every_layer_name_in_the_bank_is_the_module_path(tmp_path, digits):
    stream = SplitStream(digits, 2, 1, relabel=False)
    model = wrap(SmallResNet(), seed=1)
    train_task(model, stream, 0, TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, batches_per_task=2))
    save_masks(model, tmp_path / "b.h5")
    from hopfield_masks import open_bank

    with open_bank(tmp_path / "b.h5") as bank:
        assert list(bank.read_task("0")) == ["stem", "block.0", "block.3", "head"]
        assert bank.attachments() == ["statistics-0"]
    stats = model.export_statistics(0)
    assert sorted(stats) == ["block.1", "block.4", "bn"] and all(s.shape == (2, 8) for s in stats.values())
    assert np.isfinite(np.stack(list(stats.values()))).all()


class TestEnginesWithWrappedModels:
    """A module wrapped in Python and a stream of the user's data train on every engine that can have them."""

    CONFIG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, batches_per_task=6)

    def _bank(self, tmp_path, digits, name: str, **run) -> dict:
        from hopfield_masks import open_bank
        from supsup_core.training import BankTrainingConfig, TrainingSetup, train_to_bank

        stream = SplitStream(digits, 2, 4, relabel=False)
        model = wrap(SmallResNet(), seed=1)
        setup = TrainingSetup.from_objects(model, stream.describe(), self.CONFIG)
        path = tmp_path / f"{name}.h5"
        train_to_bank(path, setup, BankTrainingConfig(n_tasks=4, eval_at=(), **run), benchmark=stream.describe(),
                      scenario="gg", model=model, stream=stream)
        from supsup_core.persistence import read_bank_statistics

        norms = {n: m.num_features for n, m in model.norm_layers().items()}
        with open_bank(path) as bank:
            return {t: (bank.read_task(t), read_bank_statistics(bank, t, norms, str(path))) for t in bank.tasks()}

    def test_forked_workers_give_the_inline_bank(self, tmp_path, digits):
        inline = self._bank(tmp_path, digits, "inline")
        forked = self._bank(tmp_path, digits, "forked", workers=2)
        assert list(inline) == ["0", "1", "2", "3"]
        for task, (masks, stats) in inline.items():
            assert all(np.array_equal(masks[k], forked[task][0][k]) for k in masks)
            assert all(np.array_equal(stats[k], forked[task][1][k]) for k in stats)

    def test_spawned_workers_and_ray_refuse_a_module_wrapped_in_python(self, tmp_path, digits):
        from supsup_core.training import ProcessEngine, TrainingSetup

        stream = SplitStream(digits, 2, 2, relabel=False)
        model = wrap(SmallResNet(), seed=1)
        setup = TrainingSetup.from_objects(model, stream.describe(), self.CONFIG)
        engine = ProcessEngine(2, model=model, stream=stream, start_method="spawn")
        with pytest.raises(ConfigError, match="MODULE:FACTORY"):
            next(engine.outcomes(setup, [0, 1]))

    def test_batched_steps_train_a_cnn_with_per_task_batchnorm_like_one_task_at_a_time(self, digits):
        """K tasks in one stacked step (grouped convolutions, per-task BN statistics) against the sequential job."""
        from supsup_core.training import BatchedTaskTrainer, TaskWorker, TrainingSetup

        stream = SplitStream(digits, 2, 2, relabel=False)
        config = TrainConfig.for_scenario("gnu", batch_size=32, batches_per_task=4)
        setup = TrainingSetup.from_objects(wrap(SmallResNet(), seed=2), stream.describe(), config)
        batched = BatchedTaskTrainer(setup, k=2, model=wrap(SmallResNet(), seed=2), stream=stream).run([0, 1])
        worker = TaskWorker(setup, model=wrap(SmallResNet(), seed=2), stream=stream)
        for outcome in batched:
            single = worker.run(outcome.task)
            equal = np.mean([np.mean(outcome.masks[k] == single.masks[k]) for k in single.masks])
            assert equal >= 0.999
            for k in single.statistics:
                assert np.allclose(outcome.statistics[k], single.statistics[k], rtol=1e-4, atol=1e-5)
            assert abs(outcome.gg_accuracy - single.gg_accuracy) <= 0.02


class TestPredict:
    def test_noise_is_unknown_real_batches_are_accepted_and_the_threshold_is_kept(self, tmp_path, digits):
        from supsup_core.inference import calibrate_unknown, predict

        torch.manual_seed(0)
        stream = SplitStream(digits, 2, 3, relabel=False)
        model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 30)), seed=0)
        for task in range(3):
            train_task(model, stream, task, TrainConfig(optimizer="rmsprop", lr=1e-3, batch_size=64, batches_per_task=150))
        real = [x for t in range(3) for x, _, _ in stream.test_batches(t, 16)]
        noise = torch.Generator().manual_seed(1)
        rule = calibrate_unknown(model, real[::2], unknown_batches=[torch.randn(16, 1, 8, 8, generator=noise) for _ in range(20)])
        assert model.unknown_threshold is rule
        p = predict(model, torch.randn(16, 1, 8, 8, generator=noise))
        assert p.unknown and p.outputs.shape == (16, 30) and 1.0 <= p.confidence <= 3.0
        accepted = [not predict(model, x).unknown for x in real[1::2]]
        assert np.mean(accepted) >= 0.8
        per_image = predict(model, real[1], per="image", threshold=False)
        assert per_image.task.shape == (real[1].shape[0],) and per_image.unknown.dtype == torch.bool
        with pytest.raises(ConfigError, match="objective: expected 'H', the objective the unknown-task threshold"):
            predict(model, real[1], objective="G", real_classes=10)  # another signal than the calibrated one
        nan = torch.full((4, 1, 8, 8), float("nan"))
        assert predict(model, nan, threshold=False).unknown  # no finite answer: from no known task
        save_masks(model, tmp_path / "p.h5")
        fresh = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 30)), seed=0)
        load_masks_into(fresh, tmp_path / "p.h5")
        assert fresh.unknown_threshold == rule

    def test_predict_leaves_the_selection_and_mode_as_they_were(self, digits):
        from supsup_core.inference import predict

        stream = SplitStream(digits, 2, 3, relabel=False)
        model = wrap(mlp(), seed=0)
        for task in range(3):
            train_task(model, stream, task, TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, batches_per_task=5))
        x, _, _ = next(stream.test_batches(0, 16))
        model.set_task(2)
        model.train()
        before = model(x)
        predict(model, x)
        assert model.training and torch.equal(model(x), before)

    def test_a_hostile_threshold_in_a_bank_is_refused_before_loading(self, tmp_path, digits):
        from hopfield_masks import open_bank

        model = wrap(mlp(), seed=0)
        model.add_task()
        model.finish_task()
        save_masks(model, tmp_path / "h.h5")
        with open_bank(tmp_path / "h.h5", "a") as bank:
            metadata = dict(bank.metadata)
            metadata["unknown_threshold"] = {"signal": "objective", "value": "rm -rf"}
            bank.set_metadata(metadata)
        fresh = wrap(mlp(), seed=0)
        with pytest.raises(ConfigError, match="value"):
            load_masks_into(fresh, tmp_path / "h.h5")
        assert fresh.num_tasks == 0
        for partial in ({}, {"signal": "objective"}, [1.0]):
            with open_bank(tmp_path / "h.h5", "a") as bank:
                metadata = dict(bank.metadata)
                metadata["unknown_threshold"] = partial
                bank.set_metadata(metadata)
            with pytest.raises(ConfigError, match="h.h5"):
                load_masks_into(fresh, tmp_path / "h.h5")
            assert fresh.num_tasks == 0

    def test_the_modules_own_buffers_are_part_of_the_base(self, tmp_path):
        """A fixed random projection held in a buffer is part of the network the masks were made for."""

        class Projected(nn.Module):
            def __init__(self, seed: int) -> None:
                super().__init__()
                self.register_buffer("projection", torch.randn(64, 32, generator=torch.Generator().manual_seed(seed)))
                self.head = nn.Linear(32, 10)

            def forward(self, x):
                return self.head(x.flatten(1) @ self.projection)

        model = wrap(Projected(0), seed=0)
        model.add_task()
        model.finish_task()
        save_masks(model, tmp_path / "p.h5")
        load_masks_into(wrap(Projected(0), seed=0), tmp_path / "p.h5")
        with pytest.raises(BaseNetworkMismatchError):
            load_masks_into(wrap(Projected(1), seed=0), tmp_path / "p.h5")
