"""HopSupSup: how many real masks a fixed-size reservoir gives back, and at what cost.

Two sweeps over real BNNet unit masks (2 x 2048 units, 4,096 bits per task), recall starting
with no task identity:

``--sweep capacity`` (the acceptance sweep of the default reservoir, learned ±1 couplings)
    For each budget and task count ``T`` (the ``--tasks`` counts at 1MB, scaled by ``budget / 1MB``
    at the other budgets):

    1. **Encode** the first ``T`` tasks with ``encode_bank`` (the perceptron rule; key length from
       the budget and ``T``): seconds, and the peak of Python-tracked memory during the write
       (tracemalloc: NumPy arrays, hidden states included) beside the reservoir's own size.
    2. **Keyed recall of every task** (one candidate per task, recalled once): exact, bits wrong,
       and the accuracy of the task's own candidate against its true mask on half of the task's
       test images (within 1 point?), so the losses past capacity are measured per task.
    3. **Selection** on a seeded sample of tasks (``--sample``): the candidate the output entropy
       picks on the other half of the task's test images, without labels or task identity
       (:func:`supsup_core.recall.select_candidate`, as ``Recaller`` runs it); correct fraction and
       seconds per recalled task.
    4. **Recalled bits per byte** (exact masks' bits over the reservoir's bytes) beside the
       bit-packed bank's (all mask bits over the bank file's bytes, header included).

    ``--growth 900:1000`` also grows a reservoir sized for the larger count one task at a time,
    without its bank (each stored task recalled from its key and learnt again with the new one),
    and reports the seconds per added task and every task's recall afterwards.
    Writes ``hopsupsup_capacity[_<name>].json``, ``.md`` and ``.png``.

``--sweep variants`` (every reservoir variant the toolkit ships, side by side)
    For each T and budget, one reservoir per variant: ``keyed/perceptron/bit`` (the default),
    ``keyed/pseudo-inverse/sign`` (clipped projection couplings) and ``blocks/storkey/int8``
    (entropy-guided dynamics per block, T <= ``--blocks-max-tasks``).  Recall of all T tasks per
    mode: ``guided`` (the variant's method) and ``unguided`` (keyed: the candidate nearest to the
    mean cue; blocks: plain dynamics from the mean cue).  Reported per (variant, budget, T, mode):
    exact fraction, nearest-is-true fraction, accuracy retained, largest drop, steps, wall time,
    time per task and recalled bits per byte.  Writes ``hopsupsup[_<stream>].json``, ``.md``, ``.png``
    (``--quick``: ``hopsupsup_quick.*``, a minute or two).

Streams: ``permuted-split-mnist`` (the 5 SplitMNIST digit pairs under ``ceil(T/5)`` pixel
permutations; permutation 0 is the identity, labels keep the digits, 10 outputs),
``permuted-mnist`` (10 classes per task) or ``rotated-mnist`` (10 degrees per task).  One BNNet
learns one unit mask per task (``hopsupsup`` preset, ``--batches-per-task``); ``--bank`` reuses a
bank this script (or ``supsup-store train --model bnnet --preset hopsupsup``) wrote.  Guidance sees
half of each task's test images without labels; the other half scores the true and recalled masks.

Usage::

    python benchmarks/bench_hopsupsup.py --sweep capacity [--bank PATH] [--stream ...]
        [--tasks 100,200,500,1000,1200,1500,2000,3000] [--budgets 1MB,256KiB,128KiB] [--sample 100]
        [--growth 900:1000] [--name SUFFIX]
    python benchmarks/bench_hopsupsup.py [--sweep variants] [--stream ...] [--bank PATH]
        [--tasks 5,10,20,40,100,200] [--budgets 1MB,256KiB,128KiB] [--quick] [--blocks-max-tasks 40]
        [--seed 0] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.binary import BinaryReservoir
from hopfield_masks.budget import format_bytes, parse_budget
from hopfield_masks.errors import CapacityWarning
from supsup_core.config import ModelConfig
from supsup_core.data import PermutedMNIST, RotatedMNIST, SplitMNIST, load_mnist, permutation_for_task, permute_pixels
from supsup_core.data.streams import ImageStream
from supsup_core.models import build_model
from supsup_core.persistence import load_model, save_masks, stream_from_metadata
from hopfield_masks.encoding import EncodeSettings, encode_bank
from supsup_core.recall import RecallConfig, Recaller, masks_accuracy, select_candidate, task_data
from supsup_core.training import TrainConfig, train_stream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plotting import pyplot  # noqa: E402

HERE = Path(__file__).resolve().parent
TASK_COUNTS = (5, 10, 20, 40, 100, 200)
#: Task counts of the capacity sweep at 1MB (other budgets: scaled by budget / 1MB).
CAPACITY_TASK_COUNTS = (100, 200, 500, 1000, 1200, 1500, 2000, 3000)
ONE_MB = 1_000_000
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
    plt = pyplot()
    if plt is None:
        return
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


def tasks_for(budget: int, counts_at_1mb: list[int]) -> list[int]:
    """Task counts in proportion to the budget (the 1MB counts scaled by ``budget / 1MB``)."""
    return sorted({max(5, round(t * budget / ONE_MB)) for t in counts_at_1mb})


def own_candidates(recaller: Recaller, states: np.ndarray, model, progress, bar) -> dict:
    """Every task's own keyed candidate against its true mask: exact, bits wrong, accuracy drop (points)."""
    t0 = time.perf_counter()
    cand = recaller.candidates()  # (T, P), recalled once
    recall_s = time.perf_counter() - t0
    wrong = (cand != states).sum(1)
    drops = np.zeros(len(states))
    true_acc = np.zeros(len(states))
    for i in range(len(states)):
        data = recaller.task_data(i)
        true = recaller.layout.unflatten(states[i])
        true_acc[i] = masks_accuracy(model, true, data.eval_x, data.eval_y)
        if wrong[i]:
            drops[i] = 100.0 * (true_acc[i] - masks_accuracy(model, recaller.layout.unflatten(cand[i]), data.eval_x,
                                                             data.eval_y))
        progress.advance(bar)
    return {"candidates_s": round(recall_s, 4), "exact": int(np.sum(wrong == 0)),
            "fraction_exact": float(np.mean(wrong == 0)), "mean_bits_wrong": float(wrong.mean()),
            "max_bits_wrong": int(wrong.max()), "tasks_within_1_point": int(np.sum(drops <= 1.0 + 1e-9)),
            "mean_drop_points": float(drops.mean()), "max_drop_points": float(drops.max()),
            "mean_true_accuracy": float(true_acc.mean()),
            "mean_retained": float(np.mean((true_acc - drops / 100.0) / np.maximum(true_acc, 1e-12)))}


def selection_sample(recaller: Recaller, sample: np.ndarray, progress, bar) -> dict:
    """Which candidate the output entropy picks for each sampled task, and the seconds that choice takes.

    The candidates are recalled once per reservoir (``candidates_s``, shared by every query); a task's recall is
    then :func:`~supsup_core.recall.select_candidate` on its unlabeled adaptation images.
    """
    cand = recaller.candidates()
    cfg = recaller.config
    correct, seconds = 0, []
    for i in sample.tolist():
        data = recaller.task_data(i)
        t0 = time.perf_counter()
        chosen, _ = select_candidate(recaller.model, cand, data.adapt, objective=cfg.objective,
                                     real_classes=int(recaller.stream.output_classes), shortlist=cfg.shortlist,
                                     selection=cfg.selection, screen_images=cfg.screen_images,
                                     score_images=cfg.score_images)
        seconds.append(time.perf_counter() - t0)
        correct += chosen == i
        progress.advance(bar)
    return {"sampled": len(sample), "selection_correct": int(correct),
            "fraction_selection_correct": correct / len(sample), "s_per_task": float(np.mean(seconds)),
            "s_per_task_max": float(np.max(seconds))}


def encode_timed(bank: Path, budget: str) -> tuple[dict, float]:
    """encode_bank with the perceptron rule: its report, seconds and tracemalloc peak."""
    tracemalloc.start()
    t0 = time.perf_counter()
    _, report = encode_bank(bank, budget, EncodeSettings(rule="perceptron"))
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {k: v for k, v in report.to_dict().items() if k != "path"}
    return {**out, "encode_s": round(seconds, 2), "write_peak_bytes": int(peak)}, seconds


def grow_without_bank(full: Path, budget: str, start: int, end: int, model, stream, progress) -> dict:
    """Grow a reservoir sized for ``end`` tasks from ``start`` tasks to ``end``, one task at a time."""
    states = stored_states(full)[:end]
    with open_bank(full, "r") as b:
        layout = b.task_layout("0")
    res = BinaryReservoir.from_budget(budget, layout, n_tasks=end)
    t0 = time.perf_counter()
    res.fit(states[:start])
    first_s = time.perf_counter() - t0
    bar = progress.add_task(f"grow {start}->{end}", total=end - start)
    per_task = []
    for t in range(start, end):
        t0 = time.perf_counter()
        res.add(states[t][None, :])
        per_task.append(time.perf_counter() - t0)
        progress.advance(bar)
    cand = res.recall_keyed().states
    wrong = (cand != states).sum(1)
    drops = []
    for i in np.flatnonzero(wrong).tolist():
        data = task_data(stream, i, batch_size=64, seed=0)
        true = masks_accuracy(model, layout.unflatten(states[i]), data.eval_x, data.eval_y)
        drops.append(100.0 * (true - masks_accuracy(model, layout.unflatten(cand[i]), data.eval_x, data.eval_y)))
    return {"budget": budget, "start": start, "end": end, "key_units": res.key_units, "reservoir_bytes": res.nbytes,
            "fit_start_s": round(first_s, 2), "s_per_added_task": float(np.mean(per_task)),
            "s_per_added_task_max": float(np.max(per_task)), "exact": int(np.sum(wrong == 0)),
            "tasks_within_1_point": int(end - sum(d > 1.0 + 1e-9 for d in drops)),
            "max_drop_points": float(max(drops, default=0.0))}


def capacity_markdown(result: dict) -> str:
    """The capacity sweep as Markdown tables."""
    lines = [f"# HopSupSup capacity: learned ±1 couplings at a fixed budget — `{result['command']}`", "",
             f"Bank: {result['config']['bank_tasks']} real BNNet unit masks of {result['config']['mask_bits']:,} bits "
             f"({result['config']['stream']}). Selection on a seeded sample of tasks; every task's own candidate "
             "checked.", "",
             "| budget | T | key units | reservoir B | encode s | write peak MB | rows unconverged | exact | "
             "within 1 pt | mean / max drop (pts) | bits wrong (mean) | candidates s | selection | s/task | bits/B "
             "| bank bits/B |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(
            f"| {r['budget']} | {r['T']:,} | {r['key_units']:,} | {r['reservoir_bytes']:,} | {r['encode_s']:.1f} | "
            f"{r['write_peak_bytes'] / 1e6:.1f} | {r['rows_unconverged']:,} | {r['exact']:,} ({100 * r['fraction_exact']:.1f}%) "
            f"| {r['tasks_within_1_point']:,} | {r['mean_drop_points']:.2f} / {r['max_drop_points']:.2f} | "
            f"{r['mean_bits_wrong']:.1f} | {r['candidates_s']:.3f} | {r['selection_correct']}/{r['sampled']} | {r['s_per_task']:.3f} | "
            f"{r['recalled_bits_per_byte']:.2f} | {r['bank_bits_per_byte']:.2f} |")
    if result.get("growth"):
        g = result["growth"]
        lines += ["", f"Growth without the bank at {g['budget']} ({g['key_units']:,} key units, "
                      f"{g['reservoir_bytes']:,} B): {g['start']:,} tasks learnt in {g['fit_start_s']:.1f} s, then "
                      f"{g['end'] - g['start']} added one at a time: {g['s_per_added_task']:.2f} s per added task "
                      f"(max {g['s_per_added_task_max']:.2f}); afterwards {g['exact']:,}/{g['end']:,} exact, "
                      f"{g['tasks_within_1_point']:,}/{g['end']:,} within 1 point (largest drop "
                      f"{g['max_drop_points']:.2f})."]
    lines += ["", f"Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} CPUs, "
                  f"numba threads {result['machine']['numba_threads']}, torch threads "
                  f"{result['machine']['torch_threads']}; load average {result['machine']['load_average_at_end'][0]:.1f} "
                  f"at the end (seconds are comparable only on a quiet machine); wall {result['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def capacity_plot(result: dict, path: Path) -> None:
    """Exact fraction and tasks within 1 point against T (per budget), and bits per byte against T."""
    plt = pyplot()
    if plt is None:
        return

    budgets = list(dict.fromkeys(r["budget"] for r in result["runs"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    for b, budget in enumerate(budgets):
        runs = [r for r in result["runs"] if r["budget"] == budget]
        t = [r["T"] for r in runs]
        axes[0].plot(t, [r["fraction_exact"] for r in runs], "-o", color=f"C{b}", label=f"{budget}: exact")
        axes[0].plot(t, [r["tasks_within_1_point"] / r["T"] for r in runs], "--s", color=f"C{b}",
                     label=f"{budget}: within 1 point")
        axes[1].plot(t, [r["recalled_bits_per_byte"] for r in runs], "-o", color=f"C{b}", label=budget)
    axes[1].axhline(result["runs"][0]["bank_bits_per_byte"], color="grey", linestyle=":", label="bit-packed bank")
    for ax, label in zip(axes, ("fraction of tasks", "exactly recalled mask bits per reservoir byte")):
        ax.set_xscale("log")
        ax.set(xlabel="stored tasks T", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylim(-0.03, 1.05)
    fig.suptitle(f"Learned ±1 reservoir: recall against stored tasks ({result['config']['stream']['stream']})")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_capacity(args, parser) -> dict:
    """The capacity sweep (``--sweep capacity``): encode, recall every task, sample selection, grow."""
    budgets = _csv(args.budgets, str)
    counts = _csv(args.tasks, int) if args.tasks else list(CAPACITY_TASK_COUNTS)
    growth = tuple(int(x) for x in args.growth.split(":")) if args.growth else ()
    if not counts or min(counts) < 1 or args.sample < 1 or (growth and (len(growth) != 2 or not 0 < growth[0] < growth[1])):
        parser.error("bad --tasks, --sample or --growth (START:END with 0 < START < END)")
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=Console(stderr=True)) as progress:
        full = args.bank
        if full is None:
            full = Path(tmp) / "full.h5"
            train_bank(full, args.stream, max(counts + list(growth)), args.batches_per_task, args.seed, args.device,
                       progress)
        train_s = time.perf_counter() - started
        states_all = stored_states(full)
        model, metadata = load_model(full, device=args.device)
        stream = open_stream(metadata)
        plan = [(b, t) for b in budgets
                for t in (counts if parse_budget(b) == ONE_MB else tasks_for(parse_budget(b), counts))
                if t <= len(states_all)]
        runs = []
        for budget, t in plan:
            bank = Path(tmp) / f"bank-{t}.h5"
            subset_bank(full, bank, t)
            bank_bytes = bank.stat().st_size
            progress.console.print(f"{budget} T={t}: encoding")
            report, _ = encode_timed(bank, budget)
            recaller = Recaller(bank, budget, RecallConfig(method="keyed", seed=args.seed), model=model, stream=stream,
                                encode_missing=None)
            sample = np.sort(np.random.default_rng(np.random.SeedSequence([args.seed, t])).choice(
                t, size=min(t, args.sample), replace=False))
            bar = progress.add_task(f"{budget} T={t}", total=t + len(sample))
            own = own_candidates(recaller, states_all[:t], model, progress, bar)
            chosen = selection_sample(recaller, sample, progress, bar)
            bits = states_all.shape[1]
            runs.append({"budget": budget, "T": t, **report, **own, **chosen,
                         "recalled_bits_per_byte": own["exact"] * bits / report["reservoir_bytes"],
                         "bank_bits_per_byte": t * bits / bank_bytes, "bank_bytes": bank_bytes})
            bank.unlink()
        grown = None
        if growth and growth[1] <= len(states_all):
            grown = grow_without_bank(full, budgets[0], growth[0], growth[1], model, stream, progress)
    return {"benchmark": "hopsupsup_capacity", "machine": machine(args.device),
            "config": {"bank_tasks": len(states_all), "mask_bits": int(states_all.shape[1]),
                       "stream": stream.describe(), "seed": args.seed, "sample": args.sample,
                       "batches_per_task": args.batches_per_task if args.bank is None else "from --bank"},
            "runs": runs, "growth": grown, "timings_s": {"train": round(train_s, 1)},
            "wall_s": round(time.perf_counter() - started, 1)}


def _csv(text: str, parse) -> list:
    return [parse(x.strip()) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict:
    """Train (or reuse a bank), run the chosen sweep, write the json, md and png results; return the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="variants", choices=["variants", "capacity"],
                        help="capacity: the default reservoir against T and budget; variants: every variant")
    parser.add_argument("--quick", action="store_true", help="variants smoke run: 5 batches per task, T = 5 and 10, 1MB")
    parser.add_argument("--stream", default="permuted-split-mnist", choices=["permuted-split-mnist", "rotated-mnist", "permuted-mnist"])
    parser.add_argument("--bank", type=Path, help="reuse this bank (BNNet masks of the stream) instead of training")
    parser.add_argument("--tasks", help="task counts (capacity: at 1MB, scaled at other budgets; default "
                        f"{','.join(map(str, CAPACITY_TASK_COUNTS))}; variants: default {','.join(map(str, TASK_COUNTS))})")
    parser.add_argument("--budgets", default=",".join(BUDGETS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--blocks-max-tasks", type=int, default=40)
    parser.add_argument("--sample", type=int, default=100, help="capacity: tasks whose selection is measured per run")
    parser.add_argument("--growth", default="900:1000", help="capacity: START:END grown at the first budget ('' to skip)")
    parser.add_argument("--batches-per-task", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: 2 for capacity, 1 for variants)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", help="results file stem suffix (capacity) or stem (variants; default: hopsupsup, "
                        "hopsupsup_rotated, hopsupsup_permuted or hopsupsup_quick)")
    parser.add_argument("--render", type=Path, help="only write the Markdown of an existing results JSON")
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        render = capacity_markdown if result.get("benchmark") == "hopsupsup_capacity" else markdown
        args.render.with_suffix(".md").write_text(render(result))
        return result
    for budget in _csv(args.budgets, str):
        parse_budget(budget)  # fail before training on a malformed budget
    threads = args.threads if args.threads is not None else (2 if args.sweep == "capacity" else 1)
    if args.batches_per_task < 1 or threads < 1:
        parser.error("bad --batches-per-task or --threads")
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)  # nothing should draw from the global RNG, but pin it anyway
    command = " ".join(["python benchmarks/bench_hopsupsup.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sweep == "capacity":
        result = {**run_capacity(args, parser), "command": command}
        stem = "hopsupsup_capacity" + (f"_{args.name}" if args.name else "")
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        (args.out / f"{stem}.md").write_text(capacity_markdown(result))
        capacity_plot(result, args.out / f"{stem}.png")
        print(capacity_markdown(result))
        return result
    result = {**run_variants(args, parser), "command": command}
    stem = args.name or ("hopsupsup_quick" if args.quick else {"permuted-split-mnist": "hopsupsup",
                                                                "rotated-mnist": "hopsupsup_rotated"}.get(
                                                                    args.stream, "hopsupsup_permuted"))
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result))
    return result


def run_variants(args, parser) -> dict:
    """The variants sweep (``--sweep variants``): every reservoir variant, guided and unguided recall."""
    task_counts = (5, 10) if args.quick else tuple(_csv(args.tasks, int) if args.tasks else TASK_COUNTS)
    budgets = ["1MB"] if args.quick else _csv(args.budgets, str)
    variants = _csv(args.variants, str)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not task_counts or min(task_counts) < 1:
        parser.error(f"bad --variants {unknown} or --tasks")
    batches = 5 if args.quick else args.batches_per_task
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
    return {"benchmark": "hopsupsup", "machine": machine(args.device), "config": config,
            "mask_statistics": masks, "reservoirs": reservoirs, "runs": runs,
            "timings_s": {"train": round(train_s, 1), "sweep": round(time.perf_counter() - started - train_s, 1)},
            "wall_s": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    main()
