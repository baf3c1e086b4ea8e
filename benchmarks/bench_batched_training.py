"""K tasks trained in one batched step vs K tasks trained one after another: PermutedMNIST, LeNet 300-100.

    python benchmarks/bench_batched_training.py [--ks 1,4,16,64] [--batches 96] [--device cuda|cpu]
                                                [--arch lenet] [--kernels batched] [--out benchmarks/results]

The settings are ``bench_scale.py``'s: PermutedMNIST (seed 1) on the embedded MNIST subset (or ``--data-dir``),
``ModelConfig(arch, output_size=100, seed=0)``, the GNu preset (RMSprop, lr 1e-4, batch 128) with ``--batches``
batches per task.  For every K, each in a fresh child process (its own peak memory):

``sequential``  :meth:`TaskWorker.run <supsup_core.training.jobs.TaskWorker.run>` on tasks 0..K-1, one after another;
``batched``     :class:`~supsup_core.training.batched.BatchedTaskTrainer` with ``k = K`` on the same tasks.

Both first pay their one-off costs on a throw-away run of 2 batches per task (imports, CUDA context,
cuBLAS/cuDNN handles and kernel choices for these shapes), reported as ``warm_up_s`` and not counted.  Measured:
training seconds per task (a stack's time divided by its tasks), GG-evaluation seconds per task, wall seconds per
task (training + evaluation), peak memory (RSS of the child on CPU; ``torch.cuda.max_memory_allocated`` after the
warm-up on CUDA, with the RSS as well), and the batched masks' agreement with the sequential masks (fraction of
equal mask entries, tasks bit-identical, largest GG difference).

Writes ``batched_training.json`` and ``batched_training.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BATCHES = 96
KS = (1, 4, 16, 64)


def _setup(tasks: int, arch: str, batches: int, data_dir: str | None):
    """bench_scale's settings for ``tasks`` PermutedMNIST tasks and ``batches`` batches per task."""
    from supsup_core.config import ModelConfig
    from supsup_core.data import load_mnist, make_stream
    from supsup_core.training import TrainConfig, TrainingSetup

    stream = make_stream("permuted-mnist", tasks, load_mnist(data_dir), seed=1)
    config = TrainConfig.for_scenario("gnu", batches_per_task=batches)
    return TrainingSetup.from_objects(ModelConfig(arch=arch, output_size=100, seed=0), stream.describe(), config,
                                      data_dir=data_dir)


def _runner(mode: str, setup, k: int, device: str, kernels: str):
    """A callable training a list of tasks with ``mode``, returning their outcomes."""
    from supsup_core.training.batched import BatchedTaskTrainer
    from supsup_core.training.jobs import TaskWorker

    if mode == "sequential":
        worker = TaskWorker(setup, device)
        return lambda tasks: [worker.run(t) for t in tasks]
    trainer = BatchedTaskTrainer(setup, k, device, kernels=kernels)
    return lambda tasks: list(trainer.outcomes(tasks))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _child(args: argparse.Namespace) -> dict:
    import torch

    tasks = list(range(args.k))
    setup = _setup(args.k, args.arch, args.batches, args.data_dir)
    warm = _setup(args.k, args.arch, 2, args.data_dir)  # the same shapes, 2 batches per task, results discarded
    t0 = time.perf_counter()
    _runner(args.mode, warm, args.k, args.device, args.kernels)(tasks)
    _sync(args.device)
    warm_s = time.perf_counter() - t0
    run = _runner(args.mode, setup, args.k, args.device, args.kernels)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    outcomes = run(tasks)
    _sync(args.device)
    wall = time.perf_counter() - t0
    out = {
        "mode": args.mode, "k": args.k, "warm_up_s": round(warm_s, 2), "wall_s": round(wall, 3),
        "wall_s_per_task": round(wall / args.k, 4),
        "train_s_per_task": round(sum(o.train_seconds for o in outcomes) / args.k, 4),
        "eval_s_per_task": round(sum(o.eval_seconds for o in outcomes) / args.k, 4),
        "gg_mean": sum(o.gg_accuracy for o in outcomes) / args.k,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if cuda:
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    masks_file = Path(args.masks)
    if args.mode == "sequential":
        np.savez(masks_file, gg=np.array([o.gg_accuracy for o in outcomes]),
                 **{f"{o.task}/{name}": np.packbits(m) for o in outcomes for name, m in o.masks.items()})
    else:
        out.update(_agreement(outcomes, np.load(masks_file)))
    return out


def _agreement(outcomes, reference) -> dict:
    """Batched masks vs the sequential run's (packed in ``reference``)."""
    fractions, identical, gg_diff = [], 0, 0.0
    for o in outcomes:
        equal = total = 0
        for name, mask in o.masks.items():
            ref = np.unpackbits(reference[f"{o.task}/{name}"], count=mask.size).astype(bool).reshape(mask.shape)
            equal += int((ref == mask).sum())
            total += mask.size
        fractions.append(equal / total)
        identical += equal == total
        gg_diff = max(gg_diff, abs(o.gg_accuracy - float(reference["gg"][o.task])))
    return {"mask_agreement_min": min(fractions), "mask_agreement_mean": sum(fractions) / len(fractions),
            "tasks_bit_identical": int(identical), "gg_max_abs_diff_points": round(100 * gg_diff, 3)}


def _run_child(mode: str, k: int, args: argparse.Namespace, masks: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--k", str(k), "--batches", str(args.batches), "--device", args.device,
           "--arch", args.arch, "--kernels", args.kernels, "--masks", str(masks)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} K={k} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"  {mode:10s} K={k:3d}: {result['wall_s_per_task']:.4f} s/task", flush=True)
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    cuda = result["device"].startswith("cuda")
    memory = "peak CUDA memory (max_memory_allocated)" if cuda else "peak RSS"
    lines = [
        f"# Batched training: K tasks in one step vs K sequential tasks ({result['arch']}, PermutedMNIST)", "",
        f"`{result['command']}` on {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, device "
        f"{result['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}. GNu preset (RMSprop, lr 1e-4, batch 128), "
        f"{result['batches']} batches per task, kernels `{result['kernels']}`. Each row is a fresh process per mode; "
        "one-off costs are paid on a throw-away 2-batch run first and not counted.", "",
        f"| K | sequential s/task | batched s/task | speed-up | train s/task seq → batched | GG s/task seq → batched | "
        f"sequential {memory} | batched {memory} | mask entries equal (min) | tasks bit-identical | max GG diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    key = "peak_cuda_mb" if cuda else "peak_rss_mb"
    for row in result["rows"]:
        s, b = row["sequential"], row["batched"]
        lines.append(
            f"| {row['k']} | {s['wall_s_per_task']:.4f} | {b['wall_s_per_task']:.4f} | "
            f"{s['wall_s_per_task'] / b['wall_s_per_task']:.2f}× | {s['train_s_per_task']:.4f} → {b['train_s_per_task']:.4f} | "
            f"{s['eval_s_per_task']:.4f} → {b['eval_s_per_task']:.4f} | {s[key]:.0f} MB | "
            f"{b[key]:.0f} MB | {100 * b['mask_agreement_min']:.4f} % | {b['tasks_bit_identical']} / {row['k']} | "
            f"{b['gg_max_abs_diff_points']:.2f} pt |")
    lines += ["", "s/task = the run's wall time / K, each task's GG evaluation included (measured once, on its own test "
              "set). Train and GG s/task are the outcomes' own timings (batched: the stack's time / K). Mask agreement "
              "compares every mask entry of every task with the sequential run's; max GG diff is in accuracy points."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated K values")
    parser.add_argument("--batches", type=int, default=BATCHES, help="batches per task")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="lenet", choices=("lenet", "fc1024", "conv"))
    parser.add_argument("--kernels", default="batched", choices=("batched", "per-task"))
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder (default: the embedded subset)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", choices=("sequential", "batched"), help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--masks", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.mode = args.child
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return None

    ks = [int(v) for v in args.ks.split(",")]
    started = time.time()
    result = {
        "benchmark": "batched_training",
        "command": "python benchmarks/bench_batched_training.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "device": args.device, "arch": args.arch, "batches": args.batches, "kernels": args.kernels, "rows": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_batched_") as folder:
        for k in ks:
            masks = Path(folder) / f"sequential_{k}.npz"
            row = {"k": k, "sequential": _run_child("sequential", k, args, masks)}
            row["batched"] = _run_child("batched", k, args, masks)
            result["rows"].append(row)
            result["wall_s"] = round(time.time() - started, 1)
            # rewritten after every K: an interrupted run keeps what it measured
            (args.out / "batched_training.json").write_text(json.dumps(result, indent=2) + "\n")
            (args.out / "batched_training.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
