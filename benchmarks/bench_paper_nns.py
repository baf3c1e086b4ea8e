"""NNs on full-MNIST PermutedMNIST: no task identity in training or at test (the paper's §3.4 settings).

LeNet 300-100 with s = 500 over a seeded signed-constant base, RMSprop lr 1e-4, batch 128, ``--batches``
per true task (the paper: 1,000), a decision every 100 batches with epsilon = 2^-3: the model allocates a
new mask when no mask it holds fits the decision batch, otherwise trains (or reuses) the best one.  The
tasks arrive one after another; the model is never told where one ends.

Then the test set of every task, the first image of each 128-image test batch choosing the mask by the
one-shot entropy rule (the paper's test), scored with the chosen mask (labels are shared, so a batch
classified right by another mask counts).  Reported: masks allocated against true tasks, how many tasks
own a mask of their own (the mask trained most on them serves no other task), the accuracy per task and
its mean, and GG of the mask each task trained most (the accuracy NNs would reach with perfect selection).

Writes ``paper_nns[_<name>].json``, ``.md`` and ``.png`` (allocations against batches; accuracy per task).

Usage::

    python benchmarks/bench_paper_nns.py [--tasks 100] [--batches 1000] [--data mnist-full] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plotting import pyplot  # noqa: E402

HERE = Path(__file__).resolve().parent


def run(tasks: int, batches: int, data_source: str, decision_every: int, threads: int) -> dict:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.config import ModelConfig
    from supsup_core.data import load_mnist, make_stream
    from supsup_core.models import build_model
    from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred, train_nns
    from supsup_core.training.nns import nns_batches

    torch.set_num_threads(threads)
    stream = make_stream("permuted-mnist", tasks, load_mnist(data_source), seed=1)
    model = build_model(ModelConfig(arch="lenet", output_size=500, seed=0))
    config = TrainConfig.for_scenario("nns", batches_per_task=batches)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task("NNs training", total=tasks * batches)
        t0 = time.perf_counter()
        result = train_nns(model, nns_batches(stream, range(tasks), config), config, decision_every=decision_every,
                           progress=lambda n: progress.advance(bar, n))
        train_s = time.perf_counter() - t0
    task_to_mask = result.task_to_mask()
    owners = Counter(task_to_mask.values())
    t0 = time.perf_counter()
    inferred = evaluate_inferred(model, stream, range(tasks), method="oneshot", objective="H", protocol="first-image",
                                 scenario="gns", task_to_mask=task_to_mask, measure_task_inference=False)
    eval_s = time.perf_counter() - t0
    gg = evaluate_gg(model, stream, range(tasks), task_to_mask=task_to_mask).accuracy
    decisions = result.decisions
    return {
        "data": data_source, "tasks": tasks, "batches": batches, "decision_every": decision_every,
        "n_masks": result.n_masks, "n_trained_batches": result.n_trained_batches,
        "allocations": len(result.allocations()),
        "tasks_with_own_mask": sum(1 for m in task_to_mask.values() if owners[m] == 1),
        "task_to_mask": {str(t): m for t, m in task_to_mask.items()},
        "gns_accuracy": {str(t): a for t, a in inferred.accuracy.items()},
        "gns_mean": inferred.mean_accuracy,
        "decision_accuracy_mean": statistics.fmean(v for v in inferred.decision_accuracy.values()
                                                   if v == v) if inferred.decision_accuracy else None,
        "gg_own_mask": {str(t): a for t, a in gg.items()},
        "gg_own_mask_mean": statistics.fmean(gg.values()) if gg else None,
        "actions": dict(Counter(d.action for d in decisions)),
        "allocation_batches": [d.batch for d in result.allocations()],
        "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
    }


def markdown(result: dict) -> str:
    r = result["result"]
    lines = [f"# NNs on PermutedMNIST ({r['data']}), LeNet 300-100, s = 500, {r['tasks']} tasks", "",
             f"`{result['command']}`", "",
             f"{r['batches']} batches of 128 per true task, RMSprop 1e-4, a decision every {r['decision_every']} "
             f"batches (epsilon = 2^-3); the task boundaries are never given.  Training {r['train_s']:,.0f} s, "
             f"evaluation {r['eval_s']:,.0f} s.", "",
             "| what | value |", "|---|---:|",
             f"| true tasks | {r['tasks']} |",
             f"| masks allocated | {r['n_masks']} |",
             f"| tasks whose most-trained mask serves no other task | {r['tasks_with_own_mask']} |",
             "| decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(r["actions"].items())) + " | |",
             f"| accuracy, one-shot H from the first image of each test batch (%) | {100 * r['gns_mean']:.2f} |",
             f"| test batches given the task's own mask (%) | {100 * r['decision_accuracy_mean']:.1f} |"
             if r["decision_accuracy_mean"] is not None else "| test batches given the task's own mask | – |",
             f"| accuracy with each task's own mask (GG, %) | {100 * r['gg_own_mask_mean']:.2f} |", "",
             "Paper (Figure 4, 2,500 tasks): NNs comparable to GNu, with a final dip from the 2,500-mask budget; "
             "values only in the figure."]
    m = result["machine"]
    lines += ["", f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    r = result["result"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    batches = r["allocation_batches"]
    a.step([0, *batches, r["tasks"] * r["batches"]], [0, *range(1, len(batches) + 1), len(batches)], where="post",
           label="masks allocated")
    a.step([t * r["batches"] for t in range(r["tasks"])] + [r["tasks"] * r["batches"]],
           [*range(1, r["tasks"] + 1), r["tasks"]], "--", where="post", color="gray", label="true tasks begun")
    a.set(xlabel="training batches", ylabel="masks", title="allocation without task identity")
    a.legend(fontsize=8)
    tasks = sorted(int(t) for t in r["gns_accuracy"])
    b.plot(tasks, [100 * r["gns_accuracy"][str(t)] for t in tasks], ".", label="NNs, one-shot H (first image)")
    b.plot(tasks, [100 * r["gg_own_mask"][str(t)] for t in tasks], ".", alpha=0.5, label="own mask (GG)")
    b.set(xlabel="task", ylabel="accuracy (%)", title="accuracy per task")
    b.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--batches", type=int, default=1000, help="batches of 128 per true task (the paper: 1,000)")
    parser.add_argument("--decision-every", type=int, default=100)
    parser.add_argument("--data", default="mnist-full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error(f"--tasks: expected at least 2, got {args.tasks}")
    import torch

    result = {"command": " ".join(["python benchmarks/bench_paper_nns.py", *(sys.argv[1:] if argv is None else argv)]),
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": args.threads},
              "result": run(args.tasks, args.batches, args.data, args.decision_every, args.threads)}
    out = args.out / ("paper_nns" + (f"_{args.name}" if args.name else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    plot(result, out.with_suffix(".png"))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
