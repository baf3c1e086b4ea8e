"""What a supermask costs: one training step and one inference pass of a wrapped model against the same dense model.

    python benchmarks/bench_wrap_overhead.py [--models gemresnet18,resnet18] [--batch 128] [--steps 6]
                                             [--device cpu|cuda] [--out benchmarks/results]

For each model (GEMResNet18 with 5 outputs, ResNet-18 with 100 outputs; 3 x 32 x 32 inputs):

``dense step``        the plain module in training mode, every parameter trained by Adam (lr 1e-3):
                      forward, cross-entropy, backward, optimiser step;
``masked step``       the same architecture wrapped (:func:`supsup_core.wrapping.wrap`, seeded base, per-task
                      BatchNorm), one task in training, its scores trained by the same Adam: forward through
                      ``W * M``, backward to the scores, step.  Both mask modes: ``threshold`` (GNu) and
                      ``topk`` with the paper's ER sparsity sigma = 8 (GG);
``dense inference``   the plain module in evaluation mode, no gradients;
``masked inference``  the wrapped model with a finished task selected (its ``W * M`` cached), evaluation mode.

Steps alternate between the variants so that a busy machine slows them alike; each figure is the median of
``--steps`` timed repetitions after two warm-up ones.  Writes ``wrap_overhead.json`` and ``wrap_overhead.md``
into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
OUTPUTS = {"gemresnet18": 5, "resnet18": 100}


def _plain(name: str):
    from supsup_core.models import GEMResNet18, resnet18

    if name == "gemresnet18":
        return GEMResNet18(output_size=OUTPUTS[name])
    return resnet18(output_size=OUTPUTS[name], image_shape=(3, 32, 32))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(name: str, batch: int, steps: int, device: str) -> dict:
    """Median seconds of each variant's training step and inference pass for model ``name``."""
    from supsup_core.wrapping import wrap

    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, OUTPUTS[name], (batch,), device=device)
    dense = _plain(name).to(device)
    dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3)
    variants = {"dense": (dense, dense_opt)}
    for mode, options in (("threshold", {}), ("topk", {"mask_mode": "topk", "er_sigma": 8.0})):
        model = wrap(copy.deepcopy(_plain(name)), seed=0, **options).to(device)
        model.add_task()
        variants[mode] = (model, torch.optim.Adam(model.score_parameters(), lr=1e-3))

    def step(model, opt) -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {k: [] for k in variants}
    for i in range(steps + 2):
        for key, (model, opt) in variants.items():
            seconds = _timed(lambda m=model, o=opt: step(m, o), device)
            if i >= 2:
                times[key].append(seconds)
    # inference: finish the task (its W * M is cached once selected)
    for key in ("threshold", "topk"):
        model = variants[key][0]
        model.finish_task()
        model.set_task(0)
    infer = {k: [] for k in variants}
    with torch.no_grad():
        for i in range(steps + 2):
            for key, (model, _) in variants.items():
                model.eval()
                seconds = _timed(lambda m=model: m(x), device)
                if i >= 2:
                    infer[key].append(seconds)
    row = {"model": name, "batch": batch, "weights": sum(p.numel() for p in dense.parameters())}
    for key in variants:
        row[f"{key}_step_s"] = statistics.median(times[key])
        row[f"{key}_infer_s"] = statistics.median(infer[key])
    for key in ("threshold", "topk"):
        row[f"{key}_step_ratio"] = row[f"{key}_step_s"] / row["dense_step_s"]
        row[f"{key}_infer_ratio"] = row[f"{key}_infer_s"] / row["dense_infer_s"]
    return row


def render(result: dict) -> str:
    lines = [
        "# Supermask overhead: wrapped model vs the same dense model",
        "",
        f"`python benchmarks/bench_wrap_overhead.py` on {result['device']} ({result['machine']}, torch "
        f"{result['torch']}, {result['threads']} threads); batch {result['batch']}, 3 x 32 x 32 inputs, median of "
        f"{result['steps']} repetitions.",
        "",
        "| model | weights | dense step | threshold step | ratio | top-k (σ = 8) step | ratio | dense inference | "
        "masked inference (threshold) | ratio | masked inference (top-k) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['weights']:,} | {r['dense_step_s'] * 1e3:.0f} ms | {r['threshold_step_s'] * 1e3:.0f} ms | "
            f"{r['threshold_step_ratio']:.2f} | {r['topk_step_s'] * 1e3:.0f} ms | {r['topk_step_ratio']:.2f} | "
            f"{r['dense_infer_s'] * 1e3:.1f} ms | {r['threshold_infer_s'] * 1e3:.1f} ms | {r['threshold_infer_ratio']:.2f} | "
            f"{r['topk_infer_s'] * 1e3:.1f} ms | {r['topk_infer_ratio']:.2f} |")
    lines += ["", "A step trains every weight of the dense model and only the current task's scores of the wrapped one; "
              "inference uses a finished task's cached `W * M`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemresnet18,resnet18")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = [measure(name, args.batch, args.steps, args.device) for name in args.models.split(",")]
    for r in rows:
        print(json.dumps(r))
    result = {"device": args.device, "machine": platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (args.out / f"wrap_overhead{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"wrap_overhead{suffix}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
