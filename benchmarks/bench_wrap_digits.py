"""A user's own nn.Sequential on scikit-learn's digits through the Python API: accuracy, task inference, "unknown".

    python benchmarks/bench_wrap_digits.py [--seeds 0,1,2] [--batches 300] [--out benchmarks/results]

Five tasks of two digits each ((0, 1), (2, 3), ...; labels kept, 10 real classes), a plain
``nn.Sequential`` MLP 64-256-256-50 (50 outputs: 40 superfluous neurons) wrapped with
:func:`supsup_core.wrapping.wrap` over a seeded base, one threshold mask per task trained with
RMSprop (lr 1e-3, batch 64).  Measured per seed:

- **GG**: test accuracy with the task given;
- **task inference**: the fraction of test images whose own single-image inference picks their task
  (one-shot and rerank, entropy H), and of test batches of 16 images decided as a whole;
- **unknown**: a fifth of each digit's training images is held out (the masks never see it);
  :func:`~supsup_core.inference.calibrate_unknown` sets the threshold halfway (log scale) between the 99th
  percentile of the chosen mask's mean entropy over held-out batches of 16 and the 1st percentile over 50
  reference batches of Gaussian noise; then the rate of the test batches that
  :func:`~supsup_core.inference.predict` accepts, and the rate of 200 other batches of Gaussian noise and of
  200 batches of uniform noise over the pixel range that it flags unknown.

Writes ``wrap_digits.json`` and ``wrap_digits.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
GROUP = 16  # images per batch for batch-level decisions and the unknown test


def _hold_out(data, fraction: float, seed: int):
    """``data`` without ``fraction`` of each class's training images, and those images as the test split of a second
    ImageData (its training split is the same few images: only its test split is used)."""
    import numpy as np

    from supsup_core.data import ImageData

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    held = np.zeros(data.n_train, dtype=bool)
    for label in range(data.n_classes):
        members = np.flatnonzero(data.train_labels == label)
        held[rng.choice(members, size=int(round(fraction * members.size)), replace=False)] = True
    keep = ~held

    def make(train_idx, test_images, test_labels):
        return ImageData(data.train_images[train_idx], data.train_labels[train_idx], test_images, test_labels,
                         source=data.source, mean=data.mean, std=data.std, max_value=data.max_value)

    return (make(keep, data.test_images, data.test_labels),
            make(held, data.train_images[held], data.train_labels[held]))


def run(seed: int, batches: int) -> dict:
    from supsup_core.data import SplitStream, load_data
    from supsup_core.inference import calibrate_unknown, predict
    from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred, train_task
    from supsup_core.wrapping import wrap

    torch.manual_seed(seed)
    data, held_out = _hold_out(load_data("digits"), 0.2, seed)
    stream = SplitStream(data, classes_per_task=2, relabel=False)
    calibration = SplitStream(held_out, classes_per_task=2, relabel=False)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 50))
    model = wrap(net, seed=seed)
    config = TrainConfig(optimizer="rmsprop", lr=1e-3, batch_size=64, batches_per_task=batches, seed=seed)
    start = time.perf_counter()
    for task in range(stream.n_tasks):
        train_task(model, stream, task, config)
    train_s = time.perf_counter() - start
    row: dict = {"seed": seed, "train_s": train_s, "gg": evaluate_gg(model, stream).mean_accuracy}
    for method in ("oneshot", "rerank"):
        single = evaluate_inferred(model, stream, method=method, scenario="gnu", batch_size=GROUP)
        batch = evaluate_inferred(model, stream, method=method, protocol="batch", scenario="gnu", batch_size=GROUP,
                                  measure_task_inference=False)
        row[f"{method}_image"] = single.mean_task_inference_accuracy
        row[f"{method}_batch"] = statistics.fmean(batch.decision_accuracy.values())
        row[f"{method}_gnu_batch"] = batch.mean_accuracy
    shape = (GROUP, *data.image_shape)
    reference = torch.Generator().manual_seed(10_000 + seed)  # the calibration's own noise, not the noise measured below
    rule = calibrate_unknown(model, [x for t in range(stream.n_tasks) for x, _, _ in calibration.test_batches(t, GROUP)],
                             unknown_batches=[torch.randn(shape, generator=reference) for _ in range(50)], quantile=0.99)
    real = [predict(model, x).unknown for t in range(stream.n_tasks) for x, _, _ in stream.test_batches(t, GROUP)]
    generator = torch.Generator().manual_seed(seed)
    gaussian = [predict(model, torch.randn(shape, generator=generator)).unknown for _ in range(200)]
    low = [(0 - m) / s for m, s in zip(data.mean, data.std)][0]
    high = [(1 - m) / s for m, s in zip(data.mean, data.std)][0]
    uniform = [predict(model, low + (high - low) * torch.rand(shape, generator=generator)).unknown for _ in range(200)]
    row.update(threshold=rule.value, real_accepted=1 - sum(real) / len(real), n_real=len(real),
               gaussian_flagged=sum(gaussian) / len(gaussian), uniform_flagged=sum(uniform) / len(uniform))
    return row


def render(result: dict) -> str:
    rows = result["rows"]
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    lines = [
        "# A user's nn.Sequential on scikit-learn's digits (Python API)",
        "",
        f"`python benchmarks/bench_wrap_digits.py --seeds {','.join(str(r['seed']) for r in rows)} --batches "
        f"{result['batches']}`: 5 tasks x 2 digits (labels kept), MLP 64-256-256-50 wrapped over a seeded base, "
        f"RMSprop lr 1e-3, batch 64, {result['batches']} batches per task. Task inference uses entropy H; batches "
        f"hold {GROUP} test images.",
        "",
        "| seed | GG | one-shot, per image | rerank, per image | one-shot, per batch | rerank, per batch | "
        "real batches accepted | Gaussian noise flagged | uniform noise flagged |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {pct(r['gg'])} | {pct(r['oneshot_image'])} | {pct(r['rerank_image'])} | "
                     f"{pct(r['oneshot_batch'])} | {pct(r['rerank_batch'])} | {pct(r['real_accepted'])} "
                     f"({r['n_real']}) | {pct(r['gaussian_flagged'])} | {pct(r['uniform_flagged'])} |")
    mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0] if k != "seed"}
    lines.append(f"| mean | {pct(mean['gg'])} | {pct(mean['oneshot_image'])} | {pct(mean['rerank_image'])} | "
                 f"{pct(mean['oneshot_batch'])} | {pct(mean['rerank_batch'])} | {pct(mean['real_accepted'])} | "
                 f"{pct(mean['gaussian_flagged'])} | {pct(mean['uniform_flagged'])} |")
    lines += ["", "The masks train on 80 % of each digit's training images; the unknown-task threshold lies halfway (log "
              "scale) between the 99th percentile of the chosen mask's mean entropy over batches of the other 20 % and "
              "the 1st percentile over 50 reference batches of Gaussian noise; acceptance (number of test batches in "
              "brackets) and the noise rates use rerank, the default of `predict`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(run(seed, args.batches))
        print(json.dumps(rows[-1]), flush=True)
    result = {"batches": args.batches, "torch": torch.__version__, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wrap_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "wrap_digits.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
