"""HopSupSup capacity sweep: how many stored masks a fixed-size reservoir gives back, and at what cost.

Measures every reservoir variant the toolkit ships on real BNNet unit masks
(2 x 2048 units, 4,096 bits per task), recall starting with no task identity:

1. **Streams**: ``permuted-split-mnist`` (the 5 SplitMNIST digit pairs under
   ``ceil(T/5)`` pixel permutations; permutation 0 is the identity, labels keep
   the digits, 10 outputs) or ``rotated-mnist`` (10-class MNIST rotated by 10
   degrees per task, so tasks 36 apart see the same images).
2. **Masks**: one BNNet learns one unit mask per task (``hopsupsup`` preset,
   ``--batches-per-task``), saved to a mask bank; ``--bank`` reuses a bank this
   script (or ``supsup-store train``) wrote.
3. **Reservoirs**, for each stored-task count T and each budget (1MB, 256KiB,
   128KiB), one per variant:

   - ``keyed/pseudo-inverse/sign`` (the default of ``encode`` and ``recall``):
     networks with task-key units, 1-bit couplings of the projection rule,
     recall = one keyed candidate per task, chosen by the output entropy;
   - ``blocks/storkey/int8`` (the previous default): int8 Storkey networks,
     recall = entropy-guided dynamics per block (T <= ``--blocks-max-tasks``:
     its cost grows with the sweeps, and it has failed well before).
4. **Recall** of all T tasks per mode: ``guided`` (the variant's method) and
   ``unguided`` (keyed: the candidate nearest to the mean cue; blocks: plain
   dynamics from the mean cue).  Guidance sees half of each task's test images
   without labels; the other half scores the true and the recalled masks.

Reported per (variant, budget, T, mode): exact fraction, nearest-is-true
fraction, accuracy retained, largest accuracy drop, steps, wall time and time per
task, and *recalled bits per stored byte* (exactly recalled mask bits divided by
the reservoir's bytes) next to the bit-packed bank's (its mask bits divided by
its file bytes, header included).

Writes ``hopsupsup[_<stream>].json``, ``.md`` and ``.png`` into ``--out``
(``--quick``: ``hopsupsup_quick.*``, a minute or two).

Usage::

    python benchmarks/bench_hopsupsup.py [--stream permuted-split-mnist|rotated-mnist] [--bank PATH]
        [--tasks 5,10,20,40,100,200] [--budgets 1MB,256KiB,128KiB] [--batches-per-task 50] [--quick]
        [--blocks-max-tasks 40] [--seed 0] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.budget import format_bytes, parse_budget
from hopfield_masks.errors import CapacityWarning
from supsup_core.config import ModelConfig
from supsup_core.data import PermutedMNIST, RotatedMNIST, SplitMNIST, load_mnist, permutation_for_task, permute_pixels
from supsup_core.data.streams import ImageStream
from supsup_core.models import build_model
from supsup_core.persistence import load_model, save_masks, stream_from_metadata
from hopfield_masks.encoding import EncodeSettings, encode_bank
from supsup_core.recall import RecallConfig, Recaller
from supsup_core.training import TrainConfig, train_stream

HERE = Path(__file__).resolve().parent
TASK_COUNTS = (5, 10, 20, 40, 100, 200)
BUDGETS = ("1MB", "256KiB", "128KiB")
N_PERMUTATIONS = 8
PERMUTATION_SEED = 1000  # any fixed offset; p >= 1 draws RandomState(p + 1000), never the identity
#: Variants: (encode settings, guided recall config, unguided recall config).
VARIANTS = {
    "keyed/perceptron/bit": (
        EncodeSettings(rule="perceptron", dtype="auto", key_units="auto"),
        dict(method="keyed", selection="one-shot"), dict(method="keyed", guided=False)),
    "keyed/pseudo-inverse/sign": (
        EncodeSettings(rule="pseudo-inverse", dtype="auto", key_units="auto"),
        dict(method="keyed"), dict(method="keyed", guided=False)),
    "blocks/storkey/int8": (
        EncodeSettings(rule="storkey", dtype="auto", key_units=0),
        dict(method="dynamics"), dict(method="dynamics", guided=False, cue="mean")),
}


class PermutedSplitMNIST(ImageStream):
    """SplitMNIST's 5 digit pairs under ``n_permutations`` pixel permutations (task ``5p + k``: pair ``k``, perm ``p``).

    Permutation 0 is the identity, so the first five tasks are exactly
    SplitMNIST; permutation ``p >= 1`` is ``permutation_for_task(p, seed)``.
    Labels keep the original digits (10 outputs).

    Examples
    --------
    >>> stream = PermutedSplitMNIST(load_mnist(), n_permutations=2)
    >>> stream.n_tasks, stream.digits(7), stream.permutation_index(7)
    (10, (4, 5), 1)
    """

    name = "permuted-split-mnist"
    classes_per_task = 2

    def __init__(self, data, n_permutations: int = N_PERMUTATIONS, seed: int = PERMUTATION_SEED) -> None:
        pairs = len(SplitMNIST.TASK_DIGITS)
        super().__init__(data, pairs * int(n_permutations), seed=int(seed))
        self._perms = [np.arange(784)] + [permutation_for_task(p, self.seed) for p in range(1, int(n_permutations))]

    def digits(self, task: int) -> tuple[int, int]:
        """The two digits of ``task``."""
        return SplitMNIST.TASK_DIGITS[self._check_task(task) % len(SplitMNIST.TASK_DIGITS)]

    def permutation_index(self, task: int) -> int:
        """Which permutation ``task`` applies (0 = identity)."""
        return self._check_task(task) // len(SplitMNIST.TASK_DIGITS)

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._normalized(split)
        keep = torch.isin(y, torch.tensor(self.digits(task)))  # (n,) bool
        x, y = x[keep], y[keep]  # (n_task, 1, 28, 28), (n_task,)
        p = self.permutation_index(task)
        return (permute_pixels(x, self._perms[p]) if p else x), y




def train_bank(path: Path, stream_name: str, n_tasks: int, batches: int, seed: int, device: str, progress) -> None:
    """Train one BNNet unit mask per stream task ``0 .. n_tasks-1`` and save them all to the bank at ``path``."""
    data = load_mnist()
    if stream_name == "rotated-mnist":
        stream = RotatedMNIST(data, n_tasks)
    elif stream_name == "permuted-mnist":
        stream = PermutedMNIST(data, n_tasks)
    else:
        stream = PermutedSplitMNIST(data, n_permutations=-(-n_tasks // len(SplitMNIST.TASK_DIGITS)))
    model = build_model(ModelConfig(arch="bnnet", output_size=10, seed=seed), device=device)
    config = TrainConfig.for_scenario("hopsupsup", seed=seed, batches_per_task=batches)
    bar = progress.add_task("train", total=n_tasks * batches)
    # no GG evaluation after each task: recall scores every true mask on its evaluation half anyway
    train_stream(model, stream, config, n_tasks, evaluate=False, drop_last=True, device=device,
                 progress=lambda n: progress.advance(bar, n))
    save_masks(model, path, benchmark={**stream.describe(), "train_seed": seed}, overwrite=True,
               training={"scenario": "hopsupsup", "config": config.to_dict(), "device": device})


def open_stream(metadata: dict):
    """The stream a bank's metadata describes (this script's permuted SplitMNIST included)."""
    bench = metadata["benchmark"]
    if bench.get("stream") == PermutedSplitMNIST.name:
        return PermutedSplitMNIST(load_mnist(), n_permutations=-(-int(bench["n_tasks"]) // len(SplitMNIST.TASK_DIGITS)),
                                  seed=int(bench.get("seed", PERMUTATION_SEED)))
    return stream_from_metadata(metadata)


def subset_bank(full: Path, path: Path, n_tasks: int) -> None:
    """Copy tasks ``"0" .. n_tasks-1`` (masks and attrs) and the metadata of ``full`` into a new bank at ``path``."""
    with open_bank(full, "r") as src:
        # n_tasks must describe the copy; everything else (model, fingerprint, benchmark) is the full bank's
        metadata = {**src.metadata, "n_tasks": n_tasks, "subset_of_n_tasks": len(src)}
        with create_bank(path, metadata=metadata, overwrite=True) as dst:
            for task in map(str, range(n_tasks)):  # by name: recall maps bank task "i" to stream task i
                dst.write_task(task, src.read_task(task), attrs=src.task_attrs(task))


def stored_states(path: Path) -> np.ndarray:
    """Tasks ``"0" .. "T-1"`` of the bank as flat ±1 states, int8 ``(T, P)``."""
    with open_bank(path, "r") as bank:
        layout = bank.task_layout("0")
        return np.stack([layout.flatten_spins(bank.read_task(str(i))) for i in range(len(bank))])  # (T, P)


def mask_statistics(states: np.ndarray, pairs: int) -> dict:
    """Density and pairwise Hamming distances of the stored masks: how far they are from random patterns."""
    dist = (states[:, None, :] != states[None, :, :]).sum(-1)  # (T, T)
    i, j = np.triu_indices(len(states), 1)
    same = (i % pairs) == (j % pairs)  # the same digit pair under two permutations
    density = float((states > 0).mean())
    return {"density": density, "random_pattern_distance": 2.0 * density * (1 - density) * states.shape[1],
            "hamming_min": int(dist[i, j].min()), "hamming_mean": float(dist[i, j].mean()),
            "hamming_mean_same_digits": float(dist[i, j][same].mean()) if same.any() else None,
            "hamming_mean_other_digits": float(dist[i, j][~same].mean()) if (~same).any() else None}


def run_summary(rows, stored: np.ndarray, reservoir_bytes: int, bank_bytes: int, keyed: bool) -> dict:
    """Metrics of one (variant, budget, T, mode) from its rows (``stored``: true states, row ``i`` = task ``"i"``)."""
    own = np.array([int(r.task) for r in rows])
    # keyed: the candidate chosen is the task's own; block-wise rows carry no recalled state to compare (None)
    nearest = np.array([r.chosen_task for r in rows]) if keyed else None
    true = np.array([r.true_accuracy for r in rows])
    acc = np.array([r.recalled_accuracy for r in rows])
    exact = int(sum(r.exact for r in rows))
    bits = stored.shape[1]
    return {
        "tasks": len(rows), "exact": exact, "fraction_exact": exact / len(rows),
        "mean_bits_wrong": float(np.mean([r.total_bits_wrong for r in rows])),
        "fraction_nearest_true": float(np.mean(nearest == own)) if keyed else None,
        "mean_true_accuracy": float(true.mean()), "mean_recalled_accuracy": float(acc.mean()),
        "mean_accuracy_retained": float(np.mean(acc / np.maximum(true, 1e-12))),
        "mean_drop_points": float(100.0 * np.mean(true - acc)), "max_drop_points": float(100.0 * np.max(true - acc)),
        "tasks_within_1_point": int(np.sum(true - acc <= 0.01 + 1e-9)),
        "mean_steps_to_final": float(np.mean([r.steps_to_final for r in rows])),
        "recalled_bits_per_byte": exact * bits / reservoir_bytes,
        "bank_bits_per_byte": len(rows) * bits / bank_bytes,
    }


def sweep(full: Path, work: Path, model, stream, budgets, task_counts, variants, blocks_max: int, seed: int,
          progress) -> tuple[list, list]:
    """Encode one reservoir per (variant, budget, T) and recall all T tasks guided and unguided."""
    states = stored_states(full)  # (T_max, P)
    plan = [(v, b, t) for t in task_counts for v in variants for b in budgets
            if not (v.startswith("blocks") and t > blocks_max)]
    bar = progress.add_task("recall", total=sum(2 * t for _, _, t in plan))
    reservoirs, runs = [], []
    for n_tasks in task_counts:
        bank = work / f"bank-{n_tasks}.h5"
        subset_bank(full, bank, n_tasks)
        bank_bytes = bank.stat().st_size  # the exact bank holding these masks, header included
        for variant, budget, t in plan:
            if t != n_tasks:
                continue
            settings, guided_cfg, unguided_cfg = VARIANTS[variant]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CapacityWarning)
                reservoir, report = encode_bank(bank, budget, settings)
            reservoirs.append({"variant": variant, "budget": budget, "T": n_tasks,
                               "encode_s": round(time.perf_counter() - t0, 3),
                               **{k: v for k, v in report.to_dict().items() if k != "path"}})
            for mode, cfg in (("guided", guided_cfg), ("unguided", unguided_cfg)):
                progress.update(bar, description=f"{variant} {budget} T={n_tasks} {mode}")
                t0 = time.perf_counter()
                recaller = Recaller(bank, budget, RecallConfig(seed=seed, **cfg), model=model, stream=stream,
                                    encode_missing=None)
                rows = recaller.recall_all(progress=lambda d, n: progress.advance(bar))
                wall = time.perf_counter() - t0
                summary = run_summary(rows, states[:n_tasks], report.reservoir_bytes, bank_bytes,
                                      keyed=cfg["method"] == "keyed")
                runs.append({"variant": variant, "budget": budget, "T": n_tasks, "mode": mode,
                             "wall_s": round(wall, 2), "s_per_task": round(wall / n_tasks, 4), **summary,
                             "rows": [{"task": r.task, "exact": r.exact, "bits_wrong": r.total_bits_wrong,
                                       "chosen_task": r.chosen_task, "true_accuracy": r.true_accuracy,
                                       "recalled_accuracy": r.recalled_accuracy, "steps_to_final": r.steps_to_final,
                                       "guidance_calls": r.guidance_calls} for r in rows]})
    return reservoirs, runs


def machine(device: str) -> dict:
    """Platform, thread and version information recorded with the results."""
    import numba

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numba": numba.__version__, "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(), "device": device,
            "load_average_at_end": os.getloadavg()}


def _fraction(run: dict) -> str:
    """nearest = true for keyed rows; block-wise rows have none (results written before this fix are re-read as such)."""
    return "n/a" if not run["variant"].startswith("keyed") or run["fraction_nearest_true"] is None \
        else f"{run['fraction_nearest_true']:.2f}"


def markdown(result: dict) -> str:
    """The results table, reservoir sizes and mask statistics as Markdown."""
    ms, m = result["mask_statistics"], result["machine"]
    lines = [f"# HopSupSup capacity sweep (BNNet unit masks, {result['config']['stream']['stream']})", "",
             f"`{result['command']}` on {m['processor']} ({m['device']}, {m['torch_threads']} torch thread(s), "
             f"{m['cpu_count']} cores; load average {m['load_average_at_end'][0]:.1f} at the end: timings are "
             f"only comparable within one run), torch {m['torch']}; {result['config']['batches_per_task']} "
             f"batches per task; pattern length {result['reservoirs'][0]['pattern_length']} bits; total "
             f"{result['wall_s']:.0f} s (training {result['timings_s']['train']:.0f} s, sweep "
             f"{result['timings_s']['sweep']:.0f} s)", "", "Reservoirs:", ""]
    seen = set()
    for r in result["reservoirs"]:
        if (r["variant"], r["budget"]) in seen:
            continue
        seen.add((r["variant"], r["budget"]))
        keys = f", {r['key_units']} key units each" if r["key_units"] else ""
        held = "int16 hidden states and visiting orders" if r["dtype"] == "bit" else "a float32 accumulator"
        acc = (f"; writing needs {format_bytes(r['write_accumulator_bytes'])} ({held}), not kept"
               if r["write_accumulator_bytes"] else "")
        if r["dtype"] == "bit":
            shape = (f"{r['n_networks']} blocks of {r['network_size'] - r['key_units']} mask units, "
                     f"{r['key_units']} key units (learned 1-bit couplings)")
        else:
            shape = f"{r['n_networks']} networks × {r['network_size']} units{keys} ({r['dtype']} couplings)"
        lines.append(f"- **{r['variant']} at {r['budget']}**: {shape}, {r['reservoir_bytes']:,} B{acc}")
    lines += ["", f"Masks: {ms['density']:.1%} of units on; two tasks' masks differ in {ms['hamming_mean']:.0f} "
              f"bits on average (random patterns of that density: {ms['random_pattern_distance']:.0f}), minimum "
              f"{ms['hamming_min']}.", "",
              "| variant | budget | T | mode | exact | nearest = true | within 1 pt | acc. retained | max drop (pts) "
              "| steps | wall (s) | s / task | recalled bits / byte | bank bits / byte |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        lines.append(f"| {run['variant']} | {run['budget']} | {run['T']} | {run['mode']} | {run['exact']}/{run['tasks']} "
                     f"| {_fraction(run)} | {run['tasks_within_1_point']}/{run['tasks']} "
                     f"| {run['mean_accuracy_retained']:.3f} | {run['max_drop_points']:.1f} "
                     f"| {run['mean_steps_to_final']:.1f} | {run['wall_s']:.1f} | {run['s_per_task']:.3f} "
                     f"| {run['recalled_bits_per_byte']:.3f} | {run['bank_bits_per_byte']:.2f} |")
    lines += ["", "Accuracies are on the evaluation half of each task's test images; guidance saw only the other "
              "half, without labels. *nearest = true*: keyed, the candidate chosen is the task's own (n/a for block-wise "
              "recall). *recalled bits / byte*: "
              "exactly recalled mask bits per reservoir byte; *bank bits / byte*: the same masks in an hdf5-packed "
              "bank file, header included (at most 8)."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Fraction exact (left) and accuracy retained (right) versus T, guided recall: colour = variant, style = budget."""
    try:
        import matplotlib
    except ImportError:  # the [plot] extra is not installed: the json and md results are still written
        print("matplotlib not installed (pip install 'supsup-store[plot]'): no plot written", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    styles = ["-", "--", ":", "-."]
    variants = list(dict.fromkeys(r["variant"] for r in result["runs"]))
    budgets = result["config"]["budgets"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), layout="constrained")
    for ax, key, label in zip(axes, ("fraction_exact", "mean_accuracy_retained"),
                              ("fraction of masks recalled exactly", "accuracy retained (recalled / true mask)")):
        for v, variant in enumerate(variants):
            for b, budget in enumerate(budgets):
                pts = [(r["T"], r[key]) for r in result["runs"]
                       if r["variant"] == variant and r["budget"] == budget and r["mode"] == "guided"]
                if pts:
                    ax.plot(*zip(*pts), styles[b % 4], marker="o", markersize=4, color=f"C{v}")
        ax.set_xscale("log")
        ticks = result["config"]["task_counts"]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set(ylim=(-0.03, 1.05), xlabel="stored tasks T", ylabel=label)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=f"C{v}", marker="o", label=variant) for v, variant in enumerate(variants)]
    handles += [Line2D([], [], color="grey", linestyle=styles[b % 4], label=budget) for b, budget in enumerate(budgets)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               title="colour: variant (guided recall); line style: budget", title_fontsize=8)
    fig.suptitle(f"HopSupSup: guided recall from a fixed-size reservoir (BNNet, {result['config']['stream']['stream']})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _csv(text: str, parse) -> list:
    return [parse(x.strip()) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict:
    """Train (or reuse a bank), encode, recall, and write the json, md and png results; return the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 batches per task, T = 5 and 10, 1MB")
    parser.add_argument("--stream", default="permuted-split-mnist", choices=["permuted-split-mnist", "rotated-mnist", "permuted-mnist"])
    parser.add_argument("--bank", type=Path, help="reuse this bank (BNNet masks of the stream) instead of training")
    parser.add_argument("--tasks", default=",".join(map(str, TASK_COUNTS)))
    parser.add_argument("--budgets", default=",".join(BUDGETS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--blocks-max-tasks", type=int, default=40)
    parser.add_argument("--batches-per-task", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", help="results file stem (default: hopsupsup, hopsupsup_rotated or hopsupsup_quick)")
    parser.add_argument("--render", type=Path, help="only write the Markdown of an existing results JSON")
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(result))
        return result
    task_counts = (5, 10) if args.quick else tuple(_csv(args.tasks, int))
    budgets = ["1MB"] if args.quick else _csv(args.budgets, str)
    variants = _csv(args.variants, str)
    for budget in budgets:
        parse_budget(budget)  # fail before training on a malformed budget
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not task_counts or min(task_counts) < 1 or args.batches_per_task < 1 or args.threads < 1:
        parser.error(f"bad --variants {unknown}, --tasks, --batches-per-task or --threads")
    batches = 5 if args.quick else args.batches_per_task
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # nothing should draw from the global RNG, but pin it anyway

    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=Console(stderr=True)) as progress:
        work = Path(tmp)
        full = args.bank
        if full is None:
            full = work / "full.h5"
            train_bank(full, args.stream, max(task_counts), batches, args.seed, args.device, progress)
        train_s = time.perf_counter() - started
        model, metadata = load_model(full, device=args.device)
        stream = open_stream(metadata)
        if len(stored_states(full)) < max(task_counts):
            parser.error(f"--bank {full} holds fewer than {max(task_counts)} tasks")
        masks = mask_statistics(stored_states(full)[: max(task_counts)], len(SplitMNIST.TASK_DIGITS))
        reservoirs, runs = sweep(full, work, model, stream, budgets, task_counts, variants, args.blocks_max_tasks,
                                 args.seed, progress)
    config = {"seed": args.seed, "batches_per_task": batches if args.bank is None else "from --bank",
              "budgets": budgets, "task_counts": list(task_counts), "variants": variants,
              "variant_definitions": {v: {"encode": VARIANTS[v][0].__dict__, "guided": VARIANTS[v][1],
                                          "unguided": VARIANTS[v][2]} for v in variants},
              "stream": stream.describe(), "transductive": False,
              "model": {"arch": "bnnet", "output_size": 10, "seed": args.seed}}
    result = {"benchmark": "hopsupsup", "machine": machine(args.device), "config": config,
              "command": " ".join(["python benchmarks/bench_hopsupsup.py", *(sys.argv[1:] if argv is None else argv)]),
              "mask_statistics": masks, "reservoirs": reservoirs, "runs": runs,
              "timings_s": {"train": round(train_s, 1), "sweep": round(time.perf_counter() - started - train_s, 1)},
              "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("hopsupsup_quick" if args.quick else {"permuted-split-mnist": "hopsupsup",
                                                                "rotated-mnist": "hopsupsup_rotated"}.get(
                                                                    args.stream, "hopsupsup_permuted"))
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
