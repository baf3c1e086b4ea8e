"""One-shot task-inference benchmark: packed masks + mean-mask identity versus the reference's float stack.

For T = 10, 100, 1000 synthetic random masks (about half on) on LeNet 300-100
with 100 outputs, in the same run and on the same inputs, measures:

- **mask memory**: ``SupSupNet.mask_nbytes()`` (packed bytes with their spare
  capacity, the int32 sum and the float mean cache) versus the reference's dense
  ``T x P`` float32 stack;
- **time per test batch** (median of repeats after warm-up, so Numba compilation
  is excluded): one one-shot inference (entropy objective) plus classifying the
  128-image batch with the chosen mask, for the paper's two protocols: the
  *first image* of the batch decides (its single-image setting) and the *full
  batch* decides (its "Full Batch" setting).  Ours: one forward/backward through
  the mean-mask network and a packed contraction.  Reference: alphas as an
  autograd leaf over the float stacks.

Targets: memory at T = 1000 at most 1/25 of the float stack; our time at
T = 1000 at most 3x our time at T = 10.  Writes
``benchmarks/results/inference.json`` and ``inference.md``.

Usage::

    python benchmarks/bench_inference.py [--quick] [--device cpu|cuda|auto] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from supsup_core.config import ModelConfig
from supsup_core.inference import build_float_stacks, float_stack_coefficient_gradients, infer_task
from supsup_core.models import build_model

HERE = Path(__file__).resolve().parent
BATCH = 128
MEMORY_TARGET = 1 / 25
TIME_TARGET = 3.0


def synthetic_model(n_tasks: int, device: torch.device, seed: int):
    """LeNet 300-100 (s = 100) holding ``n_tasks`` random masks drawn from ``seed`` (about 50 % on)."""
    model = build_model(ModelConfig(arch="lenet", output_size=100, seed=seed), device)
    rng = np.random.default_rng(seed)
    layers = model.masked_layers()
    for start in range(0, n_tasks, 50):  # bounded temporaries
        n = min(50, n_tasks - start)
        batch = [{} for _ in range(n)]
        for name, layer in layers.items():
            raw = rng.integers(0, 256, size=(n, (layer.mask_numel + 7) // 8), dtype=np.uint8)
            bits = np.unpackbits(raw, axis=1)[:, : layer.mask_numel].astype(bool)  # (n, P)
            for i in range(n):
                batch[i][name] = bits[i].reshape(layer.mask_shape)
        model.import_masks(batch)
    return model


def _clock(fn, device: torch.device) -> tuple[float, object]:
    """Wall time in ms of one call of ``fn`` (synchronising CUDA around it) and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3, result


#: Inference protocols: how many of the batch's images decide its task.
PROTOCOLS = {"first-image": 1, "full-batch": BATCH}


def ours_step(model, x: torch.Tensor, n_infer: int):
    """One test batch, our way: one-shot (H) on the first ``n_infer`` images, then classify the batch with that mask."""

    def step() -> int:
        task = infer_task(model, x[:n_infer], method="oneshot", objective="H", per="batch")
        model.set_task(task)
        with torch.no_grad():
            model(x)
        return task

    return step


def reference_step(model, x: torch.Tensor, stacks: dict[str, torch.Tensor], n_infer: int):
    """One test batch, the reference's way: alphas leaf over float stacks, then classify with stack[t]."""

    def step() -> int:
        g = float_stack_coefficient_gradients(model, x[:n_infer], "H", stacks=stacks)
        task = int(torch.argmin(g))
        with torch.no_grad():
            model(x, masks={name: stack[task] for name, stack in stacks.items()})
        return task

    return step


def stream_floor_ms(model, repeats: int = 15) -> float:
    """Median ms to read every packed mask byte once (a uint64 sum over each layer's buffer, one thread).

    Every one-shot inference must read all ``T x P / 8`` packed bytes, so this is a lower bound for
    the contraction on this machine's memory system; the benchmark reports it beside the timings.
    """
    buffers = []
    for layer in model.masked_layers().values():
        flat = layer.packed[:, : layer.num_tasks].contiguous().cpu().numpy().reshape(-1)
        buffers.append(flat[: flat.size // 8 * 8].view(np.uint64))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in buffers:
            b.sum()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(task_counts: tuple[int, ...], device: torch.device, seed: int, repeats: int, n_infer: int) -> list[dict]:
    """Memory and median time per batch for each task count, ours and the float stack, on the same inputs.

    Our timings for the different task counts are interleaved round by round, so
    load changes on a shared machine hit every task count alike (the ratio target
    compares them); each method gets two untimed warm-up calls (Numba compilation).
    """
    x = torch.randn(BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    models = {n: synthetic_model(n, device, seed) for n in task_counts}
    steps = {n: ours_step(models[n], x, n_infer) for n in task_counts}
    times: dict[int, list[float]] = {n: [] for n in task_counts}
    chosen = {}
    for n in task_counts:
        steps[n](), steps[n]()
    for _ in range(repeats):
        for n in task_counts:
            ms, chosen[n] = _clock(steps[n], device)
            times[n].append(ms)
    runs = []
    for n in task_counts:
        model = models[n]
        stacks = build_float_stacks(model)
        stack_bytes = sum(s.numel() * s.element_size() for s in stacks.values())
        ref = reference_step(model, x, stacks, n_infer)
        ref(), ref()
        ref_times = []
        for _ in range(max(3, repeats // 2)):
            ms, ref_task = _clock(ref, device)
            ref_times.append(ms)
        del stacks, ref
        ours_ms, stack_ms = statistics.median(times[n]), statistics.median(ref_times)
        runs.append({
            "tasks": n,
            "ours_bytes": model.mask_nbytes(),  # the mean-mask cache exists by now and is counted
            "float_stack_bytes": stack_bytes,
            "memory_ratio": model.mask_nbytes() / stack_bytes,
            "ours_ms": round(ours_ms, 3),
            "float_stack_ms": round(stack_ms, 3),
            "speedup": round(stack_ms / ours_ms, 2),
            "same_choice": chosen[n] == ref_task,
            "read_all_masks_ms": round(stream_floor_ms(model), 3) if device.type == "cpu" else None,
        })
    return runs


def machine(device: torch.device) -> dict:
    """Device, thread and version information recorded with the results."""
    import numba

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(result: dict) -> str:
    """The results tables (one per protocol) and target lines as Markdown."""
    lines = [
        "# One-shot inference benchmark (LeNet 300-100, s = 100)",
        "",
        f"`{result['command']}` on {result['machine']['processor']} ({result['machine']['device']}), "
        f"torch {result['machine']['torch']}, 1-min load average {result['machine']['load_avg_1min']}",
    ]
    for name, part in result["protocols"].items():
        lines += [
            "",
            f"## Protocol: {name} ({part['images_deciding']} image(s) decide the batch's task)",
            "",
            "| tasks | ours (MB) | float stack (MB) | memory ratio | ours (ms/batch) | float stack (ms/batch) | speedup "
            "| same task | reading the packed masks once (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
        ]
        for r in part["runs"]:
            lines.append(
                f"| {r['tasks']} | {r['ours_bytes'] / 1e6:.2f} | {r['float_stack_bytes'] / 1e6:.1f} | 1/{1 / r['memory_ratio']:.1f} "
                f"| {r['ours_ms']:.2f} | {r['float_stack_ms']:.2f} | {r['speedup']:.1f}x | {r['same_choice']} "
                f"| {'–' if r['read_all_masks_ms'] is None else format(r['read_all_masks_ms'], '.2f')} |"
            )
        t = part["targets"]
        lines += [
            "",
            f"- memory at T=1000 <= 1/25 of the float stack: **{t['memory_pass']}** (ratio {t['memory_ratio_T1000']})",
            f"- time at T=1000 <= 3x time at T=10: **{t['time_pass']}** (ratio {t['time_ratio_T1000_over_T10']})",
        ]
    return "\n".join(lines) + "\n"


def _targets(runs: list[dict]) -> dict:
    """Memory and time-scaling targets of one protocol's runs."""
    by_t = {r["tasks"]: r for r in runs}
    big = by_t.get(1000)
    memory_ratio = big["memory_ratio"] if big else None
    time_ratio = big["ours_ms"] / by_t[10]["ours_ms"] if big else None
    return {
        "memory_ratio_T1000": None if memory_ratio is None else round(memory_ratio, 5),
        "memory_pass": None if memory_ratio is None else memory_ratio <= MEMORY_TARGET,
        "time_ratio_T1000_over_T10": None if time_ratio is None else round(time_ratio, 2),
        "time_pass": None if time_ratio is None else time_ratio <= TIME_TARGET,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write ``inference.json`` and ``inference.md``, return the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 10, 100 only and fewer repeats")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    name = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    device = torch.device(name)
    task_counts = (10, 100) if args.quick else (10, 100, 1000)
    repeats = 5 if args.quick else 21

    started = time.time()
    load_before = os.getloadavg()[0]
    protocols = {}
    for name, n_infer in PROTOCOLS.items():
        runs = run(task_counts, device, args.seed, repeats, n_infer)
        protocols[name] = {"images_deciding": n_infer, "runs": runs, "targets": _targets(runs)}
    result = {
        "benchmark": "inference",
        "command": "python benchmarks/bench_inference.py" + (" --quick" if args.quick else "") + f" --device {args.device}",
        "machine": machine(device),
        "batch": BATCH,
        "wall_s": None,
        "protocols": protocols,
    }
    result["wall_s"] = round(time.time() - started, 1)
    # the CPU may be shared: a high load average means the timings are not trustworthy
    result["machine"]["load_avg_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (args.out / f"inference{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"inference{suffix}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
