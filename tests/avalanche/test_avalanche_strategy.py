"""SupSup as an Avalanche strategy (supsup_core.interop.avalanche), run on benchmarks built from the embedded MNIST data.

Needs the avalanche extra; the whole module is skipped where Avalanche is not installed (the main
virtual environment), and CI runs it in its own environment (.ci/run, last step).

The acceptance runs (5 SplitMNIST and 10 PermutedMNIST experiences at ``supsup-store train``'s default
settings) take a few minutes on a 2-core CPU; they run once per module and every check below reads them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # Avalanche's optional solvers (jaxopt) announce their deprecation
    pytest.importorskip("avalanche")

import torch
from avalanche.benchmarks import benchmark_from_datasets, task_incremental_benchmark, with_classes_timeline
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.logging import TextLogger
from avalanche.training.plugins import EvaluationPlugin
from supsup_store_cli.app import app
from typer.testing import CliRunner

from hopfield_masks.backends import describe_file
from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import ConfigError, SupSupError
from supsup_core.inference import DEFAULT_METHOD, infer_task
from supsup_core.interop import avalanche as sa
from supsup_core.models import build_model, default_output_size
from supsup_core.persistence import (
    benchmark_metadata,
    load_model,
    read_bank_metadata,
    stored_accuracies,
    stream_from_metadata,
)
from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred

runner = CliRunner()

# (benchmark, experiences, outputs): supsup-store train's defaults for each benchmark (LeNet, GNu preset, seed 0):
# outputs as the command chooses them, the stream's classes raised to 100 so task inference has superfluous neurons
ACCEPTANCE = [(name, n, default_output_size("lenet", classes, "gnu"))
              for name, n, classes in (("split-mnist", 5, 10), ("permuted-mnist", 10, 10))]


def make_strategy(stream, output_size, train, bank=None, seed=0):
    """A SupSupStrategy over a fresh LeNet, evaluating accuracy, forgetting and the bank's bytes."""
    model = sa.SupSupModel(build_model(ModelConfig(arch="lenet", output_size=output_size, seed=seed)))
    metrics = [accuracy_metrics(experience=True, stream=True), forgetting_metrics(experience=True, stream=True)]
    if bank is not None:
        metrics.append(sa.MaskBankBytes(bank))
    options = sa.AvalancheOptions(train, bank=bank, benchmark=benchmark_metadata(stream, seed))
    evaluator = EvaluationPlugin(*metrics, loggers=[TextLogger(io.StringIO())])
    return sa.SupSupStrategy(model=model, options=options, evaluator=evaluator)


def run_stream(strategy, benchmark):
    """Train every experience, evaluating those seen so far after each; return the rows and the last metrics."""
    rows, metrics = {}, {}
    for experience in benchmark.train_stream:
        i = experience.current_experience
        strategy.train(experience)
        metrics = strategy.eval(benchmark.test_stream[: i + 1])
        rows[i] = sa.experience_metric(metrics, "Top1_Acc_Exp")
    return rows, metrics


@pytest.fixture(scope="module", params=ACCEPTANCE, ids=[case[0] for case in ACCEPTANCE])
def acceptance(request, tmp_path_factory):
    """The same benchmark trained by `supsup-store train` and by the Avalanche strategy, default settings."""
    name, n_tasks, outputs = request.param
    folder = tmp_path_factory.mktemp(name)
    native = folder / "native.h5"
    result = runner.invoke(app, ["train", "--benchmark", name, "--out", str(native), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    recorded = read_bank_metadata(native)  # the settings the command used, so both runs train alike
    assert recorded["model"] == ModelConfig(arch="lenet", output_size=outputs, seed=0).to_dict()
    train = TrainConfig.from_dict(recorded["training"]["config"])
    assert train == TrainConfig.for_scenario("gnu", seed=0)  # the command's defaults: the paper's GNu preset
    stream = make_stream(name, n_tasks)
    benchmark = sa.avalanche_benchmark(stream)
    bank = folder / "avalanche.h5"
    strategy = make_strategy(stream, outputs, train, bank)
    rows, metrics = run_stream(strategy, benchmark)
    native_acc = {t: acc["gg"] for t, acc in stored_accuracies(native).items()}
    return {"name": name, "n": n_tasks, "native": native_acc, "rows": rows, "metrics": metrics, "bank": bank,
            "strategy": strategy, "benchmark": benchmark}


class TestAcceptance:
    def test_accuracy_matches_supsup_store_train_within_one_point(self, acceptance):
        """Mean final accuracy with task labels: Avalanche strategy vs `supsup-store train`, same settings, <= 1 point."""
        final = acceptance["rows"][acceptance["n"] - 1]
        assert sorted(final) == sorted(acceptance["native"]) == list(range(acceptance["n"]))
        ours = float(np.mean(list(final.values())))
        theirs = float(np.mean(list(acceptance["native"].values())))
        print(f"{acceptance['name']}: avalanche {100 * ours:.2f} %, supsup-store train {100 * theirs:.2f} %")
        assert abs(ours - theirs) <= 0.01

    def test_no_forgetting_reported_by_avalanche(self, acceptance):
        """Packed masks never change, so Avalanche's forgetting metric is exactly 0 and rows repeat."""
        assert acceptance["metrics"]["StreamForgetting/eval_phase/test_stream"] == 0.0
        rows = acceptance["rows"]
        for i in range(1, acceptance["n"]):
            assert {j: rows[i][j] for j in rows[i - 1]} == rows[i - 1]

    def test_bank_is_valid_and_reproduces_the_accuracies(self, acceptance):
        """The bank rebuilds the model (same base network, every mask) and its GG accuracy is Avalanche's, exactly."""
        bank, strategy = acceptance["bank"], acceptance["strategy"]
        model, metadata = load_model(bank)
        net = strategy.model.net
        assert model.num_tasks == net.num_tasks == acceptance["n"]
        assert model.base_fingerprint() == metadata["base_fingerprint"] == net.base_fingerprint()
        for t in range(net.num_tasks):
            ours, stored = net.export_masks(t), model.export_masks(t)
            assert all(np.array_equal(ours[k], stored[k]) for k in ours)
        assert metadata["training"]["framework"] == "avalanche"
        assert metadata["training"]["task_labels"] == {str(t): t for t in range(acceptance["n"])}
        gg = evaluate_gg(model, stream_from_metadata(metadata)).accuracy
        assert gg == pytest.approx(acceptance["rows"][acceptance["n"] - 1], abs=1e-12)
        info = runner.invoke(app, ["info", str(bank)])
        assert info.exit_code == 0, info.output

    def test_bank_bytes_are_reported_next_to_accuracy(self, acceptance):
        """MaskBankBytes reports the bank's size on disk in the same metrics dict as accuracy and forgetting."""
        metrics, bank = acceptance["metrics"], acceptance["bank"]
        assert metrics["MaskBank_Bytes/eval_phase/test_stream"] == bank.stat().st_size == describe_file(bank)["file_bytes"]


class _Probe(SupervisedPlugin):
    """Records each experience's optimiser parameters and steps, and the last finished mask when the next opens."""

    def __init__(self):
        super().__init__()
        self.optimised, self.steps, self.finished = [], [], []

    def before_training_exp(self, strategy, *args, **kwargs):
        net = strategy.model.net
        if net.num_tasks:
            self.finished.append(net.export_masks(net.num_tasks - 1))

    def before_training_epoch(self, strategy, *args, **kwargs):
        if strategy.clock.train_exp_epochs == 0:
            self.optimised.append([p for group in strategy.optimizer.param_groups for p in group["params"]])
            self.steps.append(0)

    def after_training_iteration(self, strategy, *args, **kwargs):
        self.steps[-1] += 1


@pytest.fixture(scope="module")
def small():
    """Two PermutedMNIST experiences, 60 steps each, no bank."""
    stream = make_stream("permuted-mnist", 2)
    benchmark = sa.avalanche_benchmark(stream)
    strategy = make_strategy(stream, 100, TrainConfig.for_scenario("gnu", batches_per_task=60, lr=1e-3))
    probe = _Probe()
    strategy.plugins.insert(0, probe)  # runs before SupSupPlugin's hooks
    rows, _ = run_stream(strategy, benchmark)
    free = sa.experience_metric(strategy.eval(benchmark.test_task_free_stream), "Top1_Acc_Exp", sa.TASK_FREE_STREAM)
    return {"strategy": strategy, "benchmark": benchmark, "rows": rows, "probe": probe, "free": free, "stream": stream}


class TestLifeCycle:
    def test_only_the_new_masks_scores_are_trained_for_the_set_steps(self, small):
        """Each experience's optimiser holds exactly that mask's scores; it takes batches_per_task steps."""
        probe = small["probe"]
        assert probe.steps == [60, 60]
        assert [len(params) for params in probe.optimised] == [3, 3]  # fc1, fc2, fc3 scores; no base weight
        assert not set(map(id, probe.optimised[0])) & set(map(id, probe.optimised[1]))
        assert list(small["strategy"].model.net.parameters()) == []  # finished: scores freed, base weights are buffers

    def test_finished_masks_stay_fixed(self, small):
        """Mask 0 at the end is the mask packed at the end of the first experience; its accuracy row repeats."""
        net, first = small["strategy"].model.net, small["probe"].finished[0]
        assert net.num_tasks == 2
        assert all(np.array_equal(first[k], net.export_masks(0)[k]) for k in first)
        assert small["rows"][1][0] == small["rows"][0][0]

    def test_forward_without_task_labels_infers_the_task(self, small):
        """forward(x, None) in eval mode = the net with the mask the default method (rerank) infers for every image."""
        model = small["strategy"].model
        model.eval()
        assert model.method == DEFAULT_METHOD == "rerank"
        x = _test_images(small, 1)
        chosen = infer_task(model.net, x, method="rerank", objective="H", real_classes=10, per="image")
        with torch.no_grad():
            got = model(x, None)
        for mask in torch.unique(chosen).tolist():
            model.net.set_task(mask)
            with torch.no_grad():
                expected = model.net(x[chosen == mask])
            assert torch.equal(got[chosen == mask], expected)
        assert (chosen == 1).float().mean() > 0.5

    def test_task_free_stream_is_supsups_one_shot_gns(self, small):
        """Avalanche's accuracy on the stream without task labels = supsup_core's GNs per image with the same (default)
        method, exactly."""
        net = small["strategy"].model.net
        gns = evaluate_inferred(net, small["stream"], protocol="per-image", scenario="gns", measure_task_inference=False)
        assert small["free"] == pytest.approx(gns.accuracy, abs=1e-12)
        assert min(small["free"].values()) > 0.5  # most images find their own mask (a random pick finds it half the time)

    def test_task_labels_select_their_masks(self, small):
        """A batch mixing task labels is split by label, each part through its own mask."""
        model = small["strategy"].model
        model.eval()
        x = _test_images(small, 0)[:8]
        labels = torch.tensor([0, 1] * 4)
        with torch.no_grad():
            got = model(x, labels)
            for t in (0, 1):
                model.net.set_task(t)
                assert torch.equal(got[labels == t], model.net(x[labels == t]))

    def test_unknown_task_label_is_one_clear_line(self, small):
        """A task label without a mask names the known labels."""
        model = small["strategy"].model
        with pytest.raises(ConfigError) as info:
            model(_test_images(small, 0)[:2], torch.tensor([7, 7]))
        assert str(info.value).startswith("task_labels: expected labels of tasks with a mask [0, 1]")
        assert "received 7" in str(info.value) and "\n" not in str(info.value)


def _test_images(small, task):
    """The first 64 test images of ``task`` (normalised, permuted) as one batch."""
    dataset = small["benchmark"].test_stream[task].dataset.eval()
    return torch.stack([dataset[i][0] for i in range(64)])


def _labelled_benchmark(labels_per_exp, task_labels):
    """A task-incremental Avalanche benchmark whose experience i has classes labels_per_exp[i] and task label task_labels[i]."""
    generator = torch.Generator().manual_seed(0)
    datasets = []
    for labels in labels_per_exp:
        y = torch.tensor(labels * 16)
        datasets.append(sa._classification_dataset(torch.randn(len(y), 1, 28, 28, generator=generator), y))
    base = benchmark_from_datasets(train=datasets, test=datasets)
    bm = with_classes_timeline(task_incremental_benchmark(base))
    for exp, label in zip(bm.train_stream, task_labels):
        exp.task_labels = [label]
    return bm


class TestBadInput:
    def test_labels_that_do_not_fit_the_head(self, tmp_path):
        """Labels 0..11 into a 10-output head: one line naming expected vs received; no mask, no bank."""
        bm = _labelled_benchmark([list(range(12))], [0])
        stream = make_stream("split-mnist", 1)
        bank = tmp_path / "masks.h5"
        strategy = make_strategy(stream, 10, TrainConfig.for_scenario("gnu", batches_per_task=2), bank)
        with pytest.raises(SupSupError) as info:
            strategy.train(bm.train_stream[0])
        expected = "experience 0: expected class labels in 0..9 (the head has 10 outputs), received labels 0..11"
        assert str(info.value) == expected
        assert strategy.model.net.num_tasks == 0 and strategy.model.net.training_task is None
        assert not bank.exists()

    def test_a_task_label_seen_twice(self, tmp_path):
        """A second experience with task label 0 is refused before anything changes (mask count and bank kept)."""
        bm = _labelled_benchmark([[0, 1], [2, 3]], [0, 0])
        bank = tmp_path / "masks.h5"
        train = TrainConfig.for_scenario("gnu", batches_per_task=2)
        strategy = make_strategy(make_stream("split-mnist", 2), 10, train, bank)
        strategy.train(bm.train_stream[0])
        before = bank.read_bytes()
        with pytest.raises(SupSupError) as info:
            strategy.train(bm.train_stream[1])
        assert str(info.value).startswith("experience 1: expected a task label without a mask (known: [0]")
        assert str(info.value).endswith("received task label 0")
        assert strategy.model.net.num_tasks == 1 and bank.read_bytes() == before

    def test_existing_bank_without_overwrite(self, tmp_path):
        """An existing bank file is refused when the options are built, naming the file."""
        bank = tmp_path / "masks.h5"
        bank.write_bytes(b"keep")
        with pytest.raises(ConfigError, match="bank: expected a new file"):
            sa.AvalancheOptions(TrainConfig(), bank=bank)
        assert bank.read_bytes() == b"keep"

    def test_model_must_wrap_a_supsup_net(self):
        """SupSupModel names what it wants."""
        with pytest.raises(ConfigError, match="net: expected a SupSupNet"):
            sa.SupSupModel(torch.nn.Linear(2, 2))

    def test_the_papers_methods_are_one_argument_away(self):
        """method="oneshot" or "binary" is kept; an unknown method names the known ones."""
        net = build_model(ModelConfig(hidden=(4,), output_size=3))
        assert sa.SupSupModel(net, method="oneshot").method == "oneshot"
        with pytest.raises(ConfigError, match="method: expected one of"):
            sa.SupSupModel(net, method="guess")
