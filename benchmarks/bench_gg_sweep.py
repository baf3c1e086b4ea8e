"""GG with an image model: accuracy against bytes per task for Erdős–Rényi sparsity sigma = 1 ... 32, with and without Transfer.

The SplitCIFAR100 recipe (GEMResNet18, top-k masks of ER sparsity sigma, a non-affine BatchNorm per
task, Adam lr 1e-3 with weight decay 1e-4 and a cosine schedule; :mod:`supsup_core.training.recipes`)
run on a real class split that is available offline: full MNIST (``--data mnist-full``, 5 tasks of 2
digits) or the 8x8 digits, padded to 3 x 32 x 32.  ``--epochs`` (or ``--batches``) per task replaces the
recipe's 250 epochs of CIFAR-100.  For each sigma, without and with Transfer (scores start at the running
mean of the earlier tasks'): GG accuracy (each task's test images with its own mask), and the masks'
bytes per task in every backend beside the paper's CSC accounting (2 bytes per kept weight, 4 per
column pointer).  The paper's Figure 2 plots the same two axes for SplitCIFAR100.

Writes ``gg_sweep[_<name>].json``, ``.md`` and ``.png`` (accuracy against total bytes for the tasks).  Each
finished (sigma, transfer) row is kept in ``gg_sweep[_<name>].partial.json`` until the sweep ends, so a run that
is stopped is continued by the next one with the same settings.

Usage::

    python benchmarks/bench_gg_sweep.py [--data mnist-full] [--sigmas 1,2,4,8,16,32] [--batches 100]
        [--tasks 5] [--transfer both|on|off] [--jobs 2 --threads 1] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plotting import pyplot  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKENDS = ("hdf5-packed", "hdf5-sparse", "hdf5-entropy")


def run_one(data, sigma: int, transfer: bool, tasks: int, batches: int | None, epochs: int | None, seed: int,
            progress) -> dict:
    import numpy as np

    from hopfield_masks.backends import create_bank, open_bank
    from supsup_core.data import benchmark_stream
    from supsup_core.models import build_model
    from supsup_core.persistence import save_masks
    from supsup_core.training import evaluate_gg, recipe, train_task

    r = recipe("splitcifar100", sparsity=sigma, seed=seed, transfer=transfer)
    stream = benchmark_stream(data, "split", classes_per_task=2, n_tasks=tasks)
    model = build_model(r.model)
    config = r.train.replace(epochs=epochs, batches_per_task=batches)
    t0 = time.perf_counter()
    for task in range(tasks):
        train_task(model, stream, task, config, progress=progress)
    train_s = time.perf_counter() - t0
    gg = evaluate_gg(model, stream, range(tasks))
    layers = model.masked_layers()
    weights = sum(layer.mask_numel for layer in layers.values())
    columns = sum(int(np.prod(tuple(layer.mask_shape)[1:])) + 1 for layer in layers.values())
    out = {"sigma": sigma, "transfer": transfer, "tasks": tasks, "gg_accuracy": gg.mean_accuracy,
           "gg_per_task": [float(gg.accuracy[t]) for t in sorted(gg.accuracy)],
           "train_s": round(train_s, 1), "weights": weights, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in BACKENDS:
            empty, path = Path(tmp) / f"empty-{backend}.h5", Path(tmp) / f"{backend}.h5"
            with create_bank(empty, backend):
                pass
            save_masks(model, path, backend=backend)
            out["backends"][backend] = (path.stat().st_size - empty.stat().st_size) / tasks
        with open_bank(Path(tmp) / "hdf5-packed.h5", "r") as bank:
            kept = np.mean([sum(int(m.sum()) for m in bank.read_task(t).values()) for t in bank.tasks()])
    out["kept_fraction"] = float(kept) / weights
    out["backends"]["csc16 (paper)"] = 2 * float(kept) + 4 * columns
    return out


def _row_in_process(data_source: str, sigma: int, transfer: bool, tasks: int, batches: int | None,
                    epochs: int | None, seed: int, threads: int, ticks) -> dict:
    """One row in a worker process (spawned: its own data and torch threads); batches are reported on ``ticks``."""
    import torch

    from supsup_core.data import load_data

    torch.set_num_threads(threads)
    data = load_data(data_source).fitted_to((3, 32, 32))
    return run_one(data, sigma, transfer, tasks, batches, epochs, seed,
                   lambda n: ticks.put(((sigma, transfer), n)))


def run_parallel(pending: list, args, batches: int | None, progress, keep) -> None:
    """Train the ``pending`` (sigma, transfer) rows in ``args.jobs`` spawned processes; ``keep`` each as it ends."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    ticks = ctx.Manager().Queue()
    bars = {key: progress.add_task(f"σ={key[0]}{' transfer' if key[1] else ''}",
                                   total=args.tasks * batches if batches else None) for key in pending}
    with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        running = {pool.submit(_row_in_process, args.data, sigma, transfer, args.tasks, batches, args.epochs,
                               args.seed, args.threads, ticks) for sigma, transfer in pending}
        while running:
            done, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            while True:
                try:
                    key, n = ticks.get_nowait()
                except queue.Empty:
                    break
                progress.advance(bars[key], n)
            for future in done:
                keep(future.result())


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# GG sigma sweep, GEMResNet18 on {cfg['data']} ({cfg['tasks']} tasks of 2 classes, padded to 3x32x32)",
             "", f"`{result['command']}`", "",
             f"Per task: {cfg['batches'] or ''}{' batches' if cfg['batches'] else str(cfg['epochs']) + ' epochs'} of "
             "Adam (lr 1e-3, weight decay 1e-4, cosine), batch 128. Bytes: masks per task in each backend.", "",
             "| σ | transfer | kept | GG accuracy (%) | " + " | ".join(f"{b} B/task" for b in result["backends"]) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(result["backends"])]
    for row in result["rows"]:
        lines.append(f"| {row['sigma']} | {'yes' if row['transfer'] else 'no'} | {100 * row['kept_fraction']:.2f}% | "
                     f"{100 * row['gg_accuracy']:.2f} | " + " | ".join(f"{row['backends'][b]:,.0f}"
                                                                        for b in result["backends"]) + " |")
    lines += ["", f"Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} CPUs; wall "
                  f"{result['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    tasks = result["config"]["tasks"]
    for i, backend in enumerate(result["backends"]):
        for transfer, style in ((False, "-o"), (True, "--s")):
            rows = sorted((r for r in result["rows"] if r["transfer"] == transfer), key=lambda r: r["sigma"])
            if rows:
                ax.plot([tasks * r["backends"][backend] / 1e6 for r in rows], [100 * r["gg_accuracy"] for r in rows],
                        style, color=f"C{i}", label=f"{backend}{', transfer' if transfer else ''}")
    ax.set_xscale("log")
    ax.set(xlabel=f"total mask bytes for {tasks} tasks (MB)", ylabel="GG accuracy (%)",
           title="GEMResNet18, top-k masks of ER sparsity σ = 1 ... 32")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-full", help="mnist-full, mnist or digits")
    parser.add_argument("--sigmas", default="1,2,4,8,16,32")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100, help="batches per task (0: use --epochs)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--transfer", default="both", choices=["both", "on", "off"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="rows trained side by side in this many processes")
    parser.add_argument("--name", default="")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected at least 1, got {args.jobs}")
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.data import load_data

    torch.set_num_threads(args.threads)
    batches = args.batches or None
    if (batches is None) == (args.epochs is None):
        parser.error("give --batches N or --batches 0 with --epochs E")
    sigmas = [int(s) for s in args.sigmas.split(",") if s]
    transfers = {"both": (False, True), "on": (True,), "off": (False,)}[args.transfer]
    started = time.perf_counter()
    stem = "gg_sweep" + (f"_{args.name}" if args.name else "")
    config = {"data": args.data, "tasks": args.tasks, "batches": batches, "epochs": args.epochs, "seed": args.seed}
    partial = args.out / f"{stem}.partial.json"  # rows finished so far: a run that stops is continued by the next
    rows = []
    if partial.exists():
        saved = json.loads(partial.read_text())
        if saved.get("config") == config:
            rows, started = saved["rows"], started - saved["wall_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    pending = [(sigma, transfer) for sigma in sigmas for transfer in transfers
               if not any(r["sigma"] == sigma and r["transfer"] == transfer for r in rows)]

    def keep(row: dict) -> None:
        rows.append(row)
        partial.write_text(json.dumps({"config": config, "rows": rows,
                                       "wall_s": round(time.perf_counter() - started, 1)}) + "\n")

    with Progress(*columns) as progress:
        if args.jobs == 1:
            data = load_data(args.data).fitted_to((3, 32, 32))
            for sigma, transfer in pending:
                bar = progress.add_task(f"σ={sigma}{' transfer' if transfer else ''}",
                                        total=args.tasks * batches if batches else None)
                keep(run_one(data, sigma, transfer, args.tasks, batches, args.epochs, args.seed,
                             lambda n, bar=bar: progress.advance(bar, n)))
        else:
            run_parallel(pending, args, batches, progress, keep)
    rows = sorted((r for r in rows if r["sigma"] in sigmas and r["transfer"] in transfers),
                  key=lambda r: (r["sigma"], r["transfer"]))
    result = {"benchmark": "gg_sweep",
              "command": " ".join(["python benchmarks/bench_gg_sweep.py", *(sys.argv[1:] if argv is None else argv)]),
              "config": config,
              "backends": [*BACKENDS, "csc16 (paper)"],
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__},
              "rows": rows, "wall_s": round(time.perf_counter() - started, 1)}
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    partial.unlink(missing_ok=True)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
