"""Accuracy benchmark: SupSup GNu on PermutedMNIST with LeNet 300-100, on the embedded MNIST subset.

Trains 10 permutation tasks with the paper's GNu recipe (RMSprop 1e-4, batch 128,
1000 batches per task, s = 100 outputs), saves the masks to a bank, reloads them
into a fresh model, and measures:

- GG accuracy (task given);
- GNu accuracy with one-shot task inference from the first image of each test batch
  (the paper's protocol), objectives H and G;
- single-image task-inference accuracy: the fraction of test images whose own
  one-shot inference picks the right task;
- binary-search inference on full test batches (the RotatedMNIST protocol), objective H.

Writes ``benchmarks/results/accuracy.json`` and ``accuracy.md``.

Usage::

    python benchmarks/bench_accuracy.py [--tasks 10] [--batches-per-task 1000] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from supsup_core.config import ModelConfig
from supsup_core.data import load_mnist, make_stream
from supsup_core.models import build_model
from supsup_core.persistence import load_model, save_masks
from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred, train_stream

HERE = Path(__file__).resolve().parent


def run(tasks: int = 10, batches_per_task: int = 1000, seed: int = 0, device: str = "cpu") -> dict:
    """Train, save, reload and evaluate; return a JSON-safe dict of every figure."""
    started = time.perf_counter()
    stream = make_stream("permuted-mnist", tasks, load_mnist("embedded"), seed=1)
    model = build_model(ModelConfig(arch="lenet", output_size=100, seed=seed), device=device)
    config = TrainConfig.for_scenario("gnu", seed=seed, batches_per_task=batches_per_task)
    matrix = train_stream(model, stream, config, device=device)
    train_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        bank = Path(tmp) / "pmnist.h5"
        save_masks(model, bank, benchmark=stream.describe(), accuracies={t: {"gg": a} for t, a in matrix.final_accuracies().items()})
        reloaded, _ = load_model(bank, device=device)  # everything below uses masks read back from the file
        bank_bytes = bank.stat().st_size

    t0 = time.perf_counter()
    gg = evaluate_gg(reloaded, stream)
    gnu = {obj: evaluate_inferred(reloaded, stream, method="oneshot", objective=obj, protocol="first-image",
                                  scenario="gnu", real_classes=10, measure_task_inference=True)
           for obj in ("H", "G")}
    binary = evaluate_inferred(reloaded, stream, method="binary", objective="H", protocol="batch", scenario="gnu",
                               measure_task_inference=False)
    eval_s = time.perf_counter() - t0
    return {
        "benchmark": "accuracy",
        "setting": {"stream": "permuted-mnist", "tasks": tasks, "model": "lenet (784-300-100-100)",
                    "output_size": 100, "train": config.to_dict(), "data": "embedded MNIST subset (4000 train / 1000 test)",
                    "device": device, "torch": torch.__version__, "platform": platform.platform()},
        "gg_mean_accuracy": gg.mean_accuracy,
        "gg_accuracy": gg.to_dict()["accuracy"],
        "reload_matches_training": {str(t): gg.accuracy[t] == a for t, a in matrix.final_accuracies().items()},
        "forgetting": matrix.forgetting(),
        "gnu_oneshot_first_image": {obj: r.to_dict() for obj, r in gnu.items()},
        "gnu_binary_full_batch_H": binary.to_dict(),
        "bank_bytes": bank_bytes,
        "timings_s": {"train": round(train_s, 1), "evaluate": round(eval_s, 1)},
    }


def markdown(result: dict) -> list[str]:
    """A short table of the headline numbers."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    rows = [
        "| measure | value |", "|---|---|",
        f"| GG accuracy (mean over tasks) | {pct(result['gg_mean_accuracy'])} % |",
    ]
    for obj, r in result["gnu_oneshot_first_image"].items():
        rows.append(f"| GNu accuracy, one-shot {obj}, first image decides the batch | {pct(r['mean_accuracy'])} % |")
        rows.append(f"| single-image task inference, one-shot {obj} | {pct(r['mean_task_inference_accuracy'])} % of test images |")
    b = result["gnu_binary_full_batch_H"]
    rows.append(f"| GNu accuracy, binary search H on full batches | {pct(b['mean_accuracy'])} % |")
    rows.append(f"| forgetting | {result['forgetting']:.4f} |")
    rows.append(f"| reloaded bank reproduces every task's accuracy exactly | {all(result['reload_matches_training'].values())} |")
    rows.append(f"| time: train / evaluate | {result['timings_s']['train']} s / {result['timings_s']['evaluate']} s |")
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run, write the results files and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--batches-per-task", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    result = run(args.tasks, args.batches_per_task, args.seed, args.device)
    result["command"] = (f"python benchmarks/bench_accuracy.py --tasks {args.tasks} "
                         f"--batches-per-task {args.batches_per_task} --seed {args.seed} --device {args.device}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Accuracy benchmark: PermutedMNIST, LeNet 300-100, GNu", "", f"`{result['command']}`", ""] + markdown(result)
    (args.out / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
