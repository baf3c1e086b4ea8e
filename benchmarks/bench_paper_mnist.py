"""The paper's MNIST experiments on the full 70,000-image MNIST, offline, at the paper's settings.

Experiments (``../`` REFERENCE settings of the paper's §3.3; the paper's numbers where its text gives them):

``permuted-fc``      PermutedMNIST, FC 1024-1024, s = 500, 250 tasks; evaluated after 10, 50, 100, 150, 200, 250.
``permuted-lenet``   PermutedMNIST, LeNet 300-100, s = 100, 250 tasks; the same checkpoints.
``permuted-lenet-2500``  LeNet 300-100, s = 500, up to 2,500 tasks (the paper's Figure 4); checkpoints 10, 500, ...
``rotated-fc``       RotatedMNIST, 36 tasks of 10 degrees, FC 1024-1024, s = 200; binary search on full batches.

Training: RMSprop lr 1e-4, batch 128, ``--batches`` per task (the paper: 1,000), one supermask per task
over a seeded signed-constant base, ``--workers`` processes; each finished task is committed to the bank in
``--work``, so a run stopped by ``--train-for SECONDS`` (or killed) continues where it stopped when started
again.  Evaluation at every checkpoint the bank has reached: GG (the true task's mask); GNu with the task
inferred from the **first image of each 128-image test batch** deciding that batch (the paper's protocol):
one-shot with H (entropy) and with G (superfluous-neuron objective), rerank (this toolkit's default), and
binary search; and one-shot with **every image deciding its own task** (``--per-image-every K``: every K-th
task).  RotatedMNIST: binary search with H on full test batches of 128.

Writes ``paper_mnist_<experiment>.json``, ``.md`` (a table beside the paper's figures) and ``.png`` (accuracy
against the number of tasks) into ``--out``; the JSON is rewritten after every checkpoint.

Usage::

    python benchmarks/bench_paper_mnist.py permuted-fc --work DIR [--workers 2] [--batches 1000]
        [--tasks 250] [--train-for SECONDS] [--eval-only] [--methods oneshot-H,oneshot-G,rerank-H]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plotting import pyplot  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Experiment:
    """One of the paper's MNIST experiments."""

    stream: str
    arch: str
    output_size: int
    tasks: int
    checkpoints: tuple[int, ...]
    methods: tuple[str, ...]
    protocol: str
    #: The paper's figures given in its text: {(method, T): accuracy in %}.
    paper: tuple[tuple[str, int, float], ...] = ()
    paper_source: str = ""


EXPERIMENTS = {
    "permuted-fc": Experiment(
        "permuted-mnist", "fc1024", 500, 250, (10, 50, 100, 150, 200, 250),
        ("oneshot-H", "oneshot-G", "rerank-H", "binary-H"), "first-image",
        (("oneshot-H", 250, 94.91),), "appendix Table 7: GNu, One-Shot, FC 1024-1024, s = 500"),
    "permuted-lenet": Experiment(
        "permuted-mnist", "lenet", 100, 250, (10, 50, 100, 150, 200, 250),
        ("oneshot-H", "oneshot-G", "rerank-H", "binary-H"), "first-image"),
    "permuted-lenet-2500": Experiment(
        "permuted-mnist", "lenet", 500, 2500, (10, 500, 1000, 1500, 2000, 2500),
        ("oneshot-H", "rerank-H"), "first-image"),
    "rotated-fc": Experiment(
        "rotated-mnist", "fc1024", 200, 36, (2, 5, 10, 15, 20, 25, 30, 35, 36),
        ("binary-H", "oneshot-H", "rerank-H"), "batch"),
}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _setup(exp: Experiment, batches: int, data_source: str):
    from supsup_core.config import ModelConfig
    from supsup_core.data import load_mnist, make_stream
    from supsup_core.persistence import benchmark_metadata
    from supsup_core.training import TrainConfig, TrainingSetup

    stream = make_stream(exp.stream, exp.tasks, load_mnist(data_source), seed=1)
    config = TrainConfig.for_scenario("gnu", batches_per_task=batches)
    setup = TrainingSetup.from_objects(ModelConfig(arch=exp.arch, output_size=exp.output_size, seed=0),
                                       stream.describe(), config)
    return setup, benchmark_metadata(stream, 0)


def bank_tasks(bank: Path) -> int:
    """Tasks already committed to the bank (0 when it does not exist)."""
    if not bank.exists():
        return 0
    from hopfield_masks.backends import open_bank

    with open_bank(bank, "r") as b:
        return len(b)


def train(exp: Experiment, bank: Path, state: dict, workers: int, batches: int, seconds: float | None,
          data_source: str, limit: int, save) -> None:
    """Train tasks ``0 .. limit-1`` of the experiment's stream into ``bank``, about 5 minutes at a time, until
    done or ``seconds`` pass (the stream always has the experiment's task count, so any run continues the bank)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.training import BankTrainingConfig, train_to_bank

    setup, bench = _setup(exp, batches, data_source)
    start = time.perf_counter()
    done = bank_tasks(bank)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task("train", total=limit, completed=done)
        while done < limit:
            per_task = statistics.median(state["train_s_per_task"]) / workers if state["train_s_per_task"] else 0.0
            # Each chunk starts the workers afresh (data, setup): a few tasks per child at first, then about
            # five minutes of tasks between commits of the state.
            chunk = min(limit - done, max(6 * workers, int(300 / per_task) if per_task else 0))
            if seconds is not None and per_task:
                chunk = min(chunk, int((seconds - (time.perf_counter() - start)) / per_task))
            if chunk <= 0 or (seconds is not None and time.perf_counter() - start >= seconds):
                break
            t0 = time.perf_counter()
            try:
                result = train_to_bank(bank, setup, BankTrainingConfig(n_tasks=done + chunk, workers=workers,
                                                                       resume=done > 0, eval_at=()),
                                       benchmark=bench, scenario="gnu")
            except KeyboardInterrupt:  # the tasks committed before ctrl-c count, with the wall time they took
                state["train_wall_s"] += time.perf_counter() - t0
                state["trained"] = bank_tasks(bank)
                save(state)
                raise
            state["train_wall_s"] += time.perf_counter() - t0
            state["train_s_per_task"] += [result.train_seconds[t] for t in sorted(result.train_seconds)]
            state["gg_at_training"].update({str(t): a for t, a in result.gg.items()})
            done = state["trained"] = bank_tasks(bank)
            save(state)  # after every chunk: a run that is killed keeps its times
            progress.update(bar, completed=done)


def sampled(t: int, n: int) -> list[int]:
    """``n`` tasks of ``0 .. t-1`` evenly spaced, first and last included (all of them when ``n`` is 0 or >= t)."""
    if n <= 0 or n >= t:
        return list(range(t))
    return sorted({round(i * (t - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]


def evaluate(exp: Experiment, bank: Path, methods: tuple[str, ...], per_image_every: int, sample: int,
             sample_all: bool, checkpoints: set[int], write) -> dict:
    """Every checkpoint the bank has reached, largest first (the model drops tasks as it goes).

    GG and the first method (the paper's figure) cover every task; the other methods ``sample`` tasks evenly
    spaced over the checkpoint's (0: every task), so a table of many methods costs a few of them.  With
    ``sample_all`` the first method is sampled too (thousands of tasks); GG still covers every task."""
    from supsup_core.persistence import load_model, stream_from_metadata
    from supsup_core.training import evaluate_gg, evaluate_inferred

    model, meta = load_model(bank)
    stream = stream_from_metadata(meta)
    rows, gg = {}, {}
    for t in sorted((c for c in exp.checkpoints if c <= model.num_tasks and c in checkpoints), reverse=True):
        model.drop_tasks(t)
        tasks = range(t)
        row = {"T": t, "load_before": _load()}
        t0 = time.perf_counter()
        if not gg:  # a task's own mask does not change as tasks are added: measured once, at the largest T
            gg = evaluate_gg(model, stream, tasks).accuracy
        row["gg"] = statistics.fmean(gg[i] for i in tasks)
        row["gg_s"] = round(time.perf_counter() - t0, 1)
        for i, name in enumerate(methods):
            method, objective = name.split("-")
            chosen = tasks if i == 0 and not sample_all else sampled(t, sample)
            t0 = time.perf_counter()
            r = evaluate_inferred(model, stream, chosen, method=method, objective=objective, protocol=exp.protocol,
                                  measure_task_inference=False)
            row[name] = {"gnu": r.mean_accuracy, "task_inference": sum(r.decision_accuracy.values()) /
                         len(r.decision_accuracy), "tasks_evaluated": len(chosen),
                         "s": round(time.perf_counter() - t0, 1)}
        if per_image_every:
            t0 = time.perf_counter()
            r = evaluate_inferred(model, stream, range(0, t, per_image_every), method="oneshot", objective="H",
                                  protocol="per-image", measure_task_inference=False)
            row["per-image-oneshot-H"] = {"gnu": r.mean_accuracy, "tasks_evaluated": len(r.n_images),
                                          "task_inference": sum(r.decision_accuracy.values()) / len(r.decision_accuracy),
                                          "s": round(time.perf_counter() - t0, 1)}
        rows[t] = row
        write(rows)
    return rows


def markdown(result: dict) -> str:
    """The table of accuracies per checkpoint beside the paper's figures."""
    exp = result["experiment"]
    methods = list(exp["methods"]) + (["per-image-oneshot-H"] if result["config"]["per_image_every"] else [])
    paper = {(m, t): v for m, t, v in exp["paper"]}
    lines = [f"# {result['name']}: {exp['stream']}, {exp['arch']} (s = {exp['output_size']}), full MNIST", "",
             f"`{result['command']}`", "",
             f"Trained {result['trained']:,} of {exp['tasks']:,} tasks, {result['config']['batches']} batches of 128 "
             f"per task (RMSprop 1e-4), {result['config']['workers']} worker(s): "
             f"{result['train_wall_s'] / 3600:.2f} h of training wall time in total"
             + (f", median {result['train_s_per_task_median']:.1f} s per task in a worker" if result["trained"] else "")
             + f". Task inference protocol: {exp['protocol']} (a decision covers a test batch of 128).", "",
             "GNu accuracy (%) with the task inferred; in brackets the fraction of decisions that chose the right task.",
             "", "| T | GG | " + " | ".join(methods) + " | paper |", "|---:|---:|" + "---:|" * (len(methods) + 1)]
    for row in sorted(result["rows"].values(), key=lambda r: r["T"]):
        cells = [f"{100 * row[m]['gnu']:.2f} ({100 * row[m]['task_inference']:.1f})"
                 + (f" [{row[m]['tasks_evaluated']}]" if row[m].get("tasks_evaluated", row["T"]) < row["T"] else "")
                 if m in row else "–" for m in methods]
        ref = "; ".join(f"{m} {v:.2f}" for (m, t), v in paper.items() if t == row["T"]) or "–"
        lines.append(f"| {row['T']} | {100 * row['gg']:.2f} | " + " | ".join(cells) + f" | {ref} |")
    if any(row[m].get("tasks_evaluated", row["T"]) < row["T"] for row in result["rows"].values() for m in methods
           if m in row):
        lines += ["", "[n]: the method was evaluated on n tasks evenly spaced over the T learned (`--sample`); "
                  "cells without [n] and GG cover every task."]
    if exp["paper_source"]:
        lines += ["", f"Paper: {exp['paper_source']}."]
    m = result["machine"]
    lines += ["", f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """GG and GNu accuracy against the number of tasks, with the paper's points."""
    plt = pyplot()
    if plt is None:
        return

    rows = sorted(result["rows"].values(), key=lambda r: r["T"])
    if not rows:
        return
    exp = result["experiment"]
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    t = [r["T"] for r in rows]
    ax.plot(t, [100 * r["gg"] for r in rows], "-o", color="black", label="GG (task given)")
    methods = list(exp["methods"]) + (["per-image-oneshot-H"] if result["config"]["per_image_every"] else [])
    for i, m in enumerate(methods):
        pts = [(r["T"], 100 * r[m]["gnu"]) for r in rows if m in r]
        if pts:
            ax.plot(*zip(*pts), "-o", color=f"C{i}", label=f"GNu, {m}")
    for m, tt, v in exp["paper"]:
        ax.plot([tt], [v], "*", markersize=12, color="red", label=f"paper: {m} at {tt}")
    ax.set(xlabel="tasks learned", ylabel="accuracy (%)", title=f"{result['name']} (full MNIST)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train (resuming), evaluate the checkpoints reached, write json, md and png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--work", type=Path, required=True, help="folder of the bank (kept: runs continue it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=1000, help="batches of 128 per task (the paper: 1,000)")
    parser.add_argument("--tasks", type=int, help="train this many tasks (default: the experiment's)")
    parser.add_argument("--train-for", type=float, help="stop training after about this many seconds")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the bank as it is")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    parser.add_argument("--methods", help="comma-separated METHOD-OBJECTIVE (default: the experiment's)")
    parser.add_argument("--per-image-every", type=int, default=0, help="per-image one-shot on every K-th task (0: off)")
    parser.add_argument("--checkpoints", help="comma-separated: evaluate only these checkpoints (default: all "
                        "reached); rows of others already in the results file are kept")
    parser.add_argument("--sample", type=int, default=0,
                        help="methods after the first: this many evenly spaced tasks per checkpoint (0: all)")
    parser.add_argument("--sample-all", action="store_true", help="sample the first method too (GG covers every task)")
    parser.add_argument("--data", default="mnist-full", help="mnist-full (default) or another MNIST source")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    exp = EXPERIMENTS[args.experiment]
    if args.tasks is not None:
        if not 1 <= args.tasks <= exp.tasks:
            parser.error(f"--tasks: expected 1..{exp.tasks}, got {args.tasks}")
        exp = Experiment(**{**asdict(exp), "checkpoints": tuple(
            c for c in exp.checkpoints if c <= args.tasks) or (args.tasks,)})
    methods = tuple(args.methods.split(",")) if args.methods else exp.methods
    exp = Experiment(**{**asdict(exp), "methods": methods})
    if args.checkpoints:
        wanted = {int(c) for c in args.checkpoints.split(",")}
        if not wanted <= set(exp.checkpoints):
            parser.error(f"--checkpoints: expected some of {list(exp.checkpoints)}, got {sorted(wanted)}")
    else:
        wanted = set(exp.checkpoints)
    args.work.mkdir(parents=True, exist_ok=True)
    bank = args.work / f"{args.experiment}.h5"
    state_path = args.work / f"{args.experiment}.state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {
        "train_wall_s": 0.0, "train_s_per_task": [], "gg_at_training": {}, "trained": 0}
    if not args.eval_only:
        train(exp, bank, state, args.workers, args.batches, args.train_for, args.data,
              exp.tasks if args.tasks is None else args.tasks,
              lambda s: state_path.write_text(json.dumps(s) + "\n"))
    import torch

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch": torch.__version__}
    result = {"name": args.experiment, "experiment": asdict(exp), "machine": machine,
              "command": " ".join(["python benchmarks/bench_paper_mnist.py", *(sys.argv[1:] if argv is None else argv)]),
              "config": {"workers": args.workers, "batches": args.batches, "data": args.data,
                         "per_image_every": args.per_image_every, "sample": args.sample,
                         "sample_all": args.sample_all},
              "trained": bank_tasks(bank), "train_wall_s": round(state["train_wall_s"], 1),
              "train_s_per_task_median": statistics.median(state["train_s_per_task"]) if state["train_s_per_task"] else None,
              "rows": {}}
    out = args.out / f"paper_mnist_{args.experiment}"
    args.out.mkdir(parents=True, exist_ok=True)

    def write(rows: dict) -> None:
        """Write the rows measured so far, beside the rows of other checkpoints that an earlier or a concurrent
        run (``--checkpoints``) of the same bank and methods wrote (under a lock)."""
        import fcntl

        with open(args.work / f"{args.experiment}.results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kept = {}
            if out.with_suffix(".json").exists():
                old = json.loads(out.with_suffix(".json").read_text())
                measured = ("batches", "data")  # what the rows depend on; sampling is recorded in each row
                if (all(old["config"].get(k) == result["config"][k] for k in measured)
                        and old["experiment"]["methods"] == list(methods)):
                    kept = old["rows"]
            result["rows"] = {**kept, **{str(k): v for k, v in rows.items()}}
            out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
            out.with_suffix(".md").write_text(markdown(result))

    if not args.no_eval and result["trained"]:
        evaluate(exp, bank, methods, args.per_image_every, args.sample, args.sample_all, wanted, write)
        plot(result, out.with_suffix(".png"))
        print(markdown(result))
    return result


if __name__ == "__main__":
    main()
