"""Mask storage at the paper's scale: GEMResNet18 and ResNet-50 top-k masks at sigma = 4, 8, 16 in every backend.

For each model (the SplitCIFAR100 and SplitImageNet recipes, :mod:`supsup_core.training.recipes`) and
each Erdős–Rényi sparsity sigma, real top-k masks are trained for ``--tasks`` tasks of ``--steps`` steps
each on real offline images (a class split of the MNIST subset for GEMResNet18, of the 8x8 digits for
ResNet-50, padded to the model's input: CIFAR and ImageNet themselves are not needed to measure bytes).
The masks are saved to a bank in every backend; reported per backend: bytes per task (bank size
minus an empty bank's, over the tasks) and the totals for 20 and 100 tasks (header included), beside
the paper's accounting (scipy CSC with 16-bit indices: 2 bytes per kept weight plus 4 bytes per column
pointer) and, for ResNet-50 at 100 tasks, the paper's totals (65.50 / 100.98 / 195.18 MB for
sigma = 4 / 8 / 16, the σ for each total inferred from the kept fractions: the paper's text does not say).

Writes ``paper_storage.json`` and ``.md`` into ``--out``.

Usage::

    python benchmarks/bench_paper_storage.py [--tasks 3] [--steps 3] [--sigmas 4,8,16] [--batch 8]
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

HERE = Path(__file__).resolve().parent
#: ResNet-50 SplitImageNet totals of the paper (MB, 100 tasks), by the sigma their sizes point to.
PAPER_RESNET50_MB = {4: 65.50, 8: 100.98, 16: 195.18}
MODELS = (("gemresnet18", "splitcifar100", "mnist"), ("resnet50", "splitimagenet", "digits"))


def bank_bytes(model, path: Path, backend: str) -> int:
    from supsup_core.persistence import save_masks

    save_masks(model, path, backend=backend, overwrite=True)
    size = path.stat().st_size
    path.unlink()
    return size


def measure(arch: str, recipe_name: str, data_spec: str, sigma: int, tasks: int, steps: int, batch: int) -> dict:
    import numpy as np

    from hopfield_masks.backends import create_bank, open_bank
    from supsup_core.data import benchmark_stream, load_data
    from supsup_core.persistence import save_masks
    from supsup_core.models import build_model
    from supsup_core.training import recipe, train_task

    r = recipe(recipe_name, sparsity=sigma, seed=0)
    shape = (r.model.in_channels, r.model.image, r.model.image)
    data = load_data(data_spec).fitted_to(shape)
    stream = benchmark_stream(data, "split", classes_per_task=2)
    model = build_model(r.model)
    config = r.train.replace(epochs=None, batches_per_task=steps, batch_size=batch)
    t0 = time.perf_counter()
    for task in range(tasks):
        train_task(model, stream, task, config)
    train_s = time.perf_counter() - t0
    layers = model.masked_layers()
    weights = sum(layer.mask_numel for layer in layers.values())
    # CSC of each weight as a matrix (out, in * k * k): one pointer per column, plus one
    columns = sum(int(np.prod(tuple(layer.mask_shape)[1:])) + 1 for layer in layers.values())
    out = {"arch": arch, "sigma": sigma, "tasks_trained": tasks, "steps": steps, "batch": batch,
           "train_s": round(train_s, 1), "weights": weights}
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "probe.h5"
        save_masks(model, first, backend="hdf5-packed")
        with open_bank(first, "r") as bank:
            masks = [bank.read_task(t) for t in bank.tasks()]
        kept = [sum(int(m.sum()) for m in task.values()) for task in masks]
        out["kept_fraction"] = float(np.mean(kept)) / weights
        out["csc16_bytes_per_task"] = int(2 * np.mean(kept) + 4 * columns)
        rows = {}
        for backend in ("hdf5-packed", "hdf5-sparse", "hdf5-entropy"):
            empty = Path(tmp) / f"empty-{backend}.h5"
            with create_bank(empty, backend):
                pass
            header = empty.stat().st_size
            size = bank_bytes(model, Path(tmp) / f"{backend}.h5", backend)
            per_task = (size - header) / tasks
            rows[backend] = {"bank_bytes": size, "header_bytes": header, "bytes_per_task": per_task,
                             "total_20_tasks_mb": (header + 20 * per_task) / 1e6,
                             "total_100_tasks_mb": (header + 100 * per_task) / 1e6}
        out["backends"] = rows
        out["csc16_total_20_tasks_mb"] = 20 * out["csc16_bytes_per_task"] / 1e6
        out["csc16_total_100_tasks_mb"] = 100 * out["csc16_bytes_per_task"] / 1e6
    return out


def markdown(result: dict) -> str:
    lines = [f"# Mask storage at the paper's scale — `{result['command']}`", "",
             "Real top-k masks (a few training steps per task on offline images padded to the model's input); "
             "bytes per task measured on banks of the trained tasks, totals = header + T x bytes per task. "
             "CSC16: the paper's accounting (2 bytes per kept weight, 4 per column pointer).", "",
             "| model | σ | kept | backend | bytes / task | 20 tasks (MB) | 100 tasks (MB) | paper, 100 tasks (MB) |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        paper = PAPER_RESNET50_MB.get(row["sigma"]) if row["arch"] == "resnet50" else None
        for backend, b in row["backends"].items():
            lines.append(f"| {row['arch']} | {row['sigma']} | {100 * row['kept_fraction']:.2f}% | {backend} | "
                         f"{b['bytes_per_task']:,.0f} | {b['total_20_tasks_mb']:.2f} | {b['total_100_tasks_mb']:.2f} | "
                         f"{'' if paper is None else f'{paper:.2f}'} |")
        lines.append(f"| {row['arch']} | {row['sigma']} | {100 * row['kept_fraction']:.2f}% | CSC16 (paper's format) | "
                     f"{row['csc16_bytes_per_task']:,.0f} | {row['csc16_total_20_tasks_mb']:.2f} | "
                     f"{row['csc16_total_100_tasks_mb']:.2f} | {'' if paper is None else f'{paper:.2f}'} |")
    lines += ["", "The paper's ResNet-50 totals are for 100 SplitImageNet tasks; which σ gives which total is not "
              "stated, the mapping above follows the kept fractions. Its totals may also count more than the masks "
              "(e.g. per-task BatchNorm statistics and heads).", "",
              f"Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} CPUs; wall "
              f"{result['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sigmas", default="4,8,16")
    parser.add_argument("--models", default="gemresnet18,resnet50")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sigmas = [int(s) for s in args.sigmas.split(",") if s]
    wanted = set(args.models.split(","))
    rows = []
    for arch, name, spec in MODELS:
        if arch not in wanted:
            continue
        for sigma in sigmas:
            print(f"{arch} sigma={sigma}", file=sys.stderr, flush=True)
            rows.append(measure(arch, name, spec, sigma, args.tasks, args.steps, args.batch))
    result = {"benchmark": "paper_storage",
              "command": " ".join(["python benchmarks/bench_paper_storage.py", *(sys.argv[1:] if argv is None else argv)]),
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count()},
              "rows": rows, "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_storage.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "paper_storage.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
