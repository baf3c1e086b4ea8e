"""HopSupSup capacity sweep: how many stored masks a fixed-size reservoir gives back, guided versus unguided.

The toolkit's central claim is that output-entropy guidance lets recall find the
*right* attractor of a Hopfield reservoir from a task-agnostic start (the mean
±1 mask).  This benchmark measures where that works and where it stops:

1. **Tasks**: the 5 SplitMNIST digit pairs × 8 pixel permutations = 40 tasks
   (permutation 0 is the identity, so tasks 0-4 are plain SplitMNIST); labels
   are the original digits (10-way).
2. **Masks**: one BNNet (``ModelConfig(arch="bnnet", output_size=10, seed)``)
   learns one unit mask per task (``hopsupsup`` preset), saved to a mask bank.
3. **Reservoirs**: for each T in (5, 10, 20, 40) a bank of the first T tasks
   (copied, same metadata) is encoded with the Storkey rule at the fixed
   ``--budget`` (1MB) and at the ``--small-budget`` ones (256KiB, 128KiB),
   whose theoretical capacities lie inside the sweep.
4. **Recall** of all T tasks per mode: ``guided`` (entropy-guided dynamics from
   the mean cue), ``unguided`` (plain dynamics from the mean cue),
   ``unguided-noisy`` (plain dynamics from the true mask with 10 % of its spins
   flipped: classic Hopfield capacity), ``guided-score-descent`` (the
   reference's recovery) and, at the main budget only, ``guided-restarts``
   (guided dynamics plus 7 noisy restarts, the lowest-entropy ending kept).  Guidance sees half of each task's test images without
   labels; the other half scores the true and the recalled masks.
5. **Control**: noisy-cue recall of the masks with their units shuffled (same
   density, no shared structure), i.e. the rule's random-pattern capacity.

Writes ``hopsupsup.json`` (all metrics, per-task rows, configuration, reservoir
sizes and capacities, timings, machine), ``hopsupsup.md`` and ``hopsupsup.png``
into ``--out`` (``--quick``: ``hopsupsup_quick.*``, about a minute).

Usage::

    python benchmarks/bench_hopsupsup.py [--quick] [--batches-per-task 50] [--budget 1MB]
        [--small-budget 256KiB,128KiB] [--no-score-descent] [--seed 0] [--device cpu] [--threads 1]
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.budget import format_bytes, parse_budget
from hopfield_masks.encoding import encode_bank
from hopfield_masks.errors import CapacityWarning
from hopfield_masks.reservoir import Reservoir
from supsup_core.config import ModelConfig
from supsup_core.data import SplitMNIST, TaskStream, load_mnist, permutation_for_task, permute_pixels
from supsup_core.hopsupsup import recall_all
from supsup_core.models import build_model
from supsup_core.persistence import save_masks
from supsup_core.training import TrainConfig, train_stream

HERE = Path(__file__).resolve().parent
TASK_COUNTS = (5, 10, 20, 40)
N_PERMUTATIONS = 8
PERMUTATION_SEED = 1000  # any fixed offset; p >= 1 draws RandomState(p + 1000), never the identity
RULE = "storkey"
#: Recall modes: (guided, method, cue, restarts).  The noisy cue starts from the true mask with 10 % of its
#: spins flipped.  ``guided-restarts`` adds 7 noisy restarts ranked by entropy (8x the cost, so it runs at the
#: main budget only).
MODES = {
    "guided": (True, "dynamics", "mean", 0),
    "unguided": (False, "dynamics", "mean", 0),
    "unguided-noisy": (False, "dynamics", "noisy:0.1", 0),
    "guided-score-descent": (True, "score-descent", "mean", 0),
    "guided-restarts": (True, "dynamics", "mean", 7),
}


class PermutedSplitMNIST(TaskStream):
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


def train_bank(path: Path, n_tasks: int, batches: int, seed: int, device: str, progress) -> tuple:
    """Train one BNNet unit mask per stream task ``0 .. n_tasks-1`` and save them all to the bank at ``path``."""
    stream = PermutedSplitMNIST(load_mnist(), n_permutations=-(-n_tasks // len(SplitMNIST.TASK_DIGITS)))
    model = build_model(ModelConfig(arch="bnnet", output_size=10, seed=seed), device=device)
    config = TrainConfig.for_scenario("hopsupsup", seed=seed, batches_per_task=batches)
    bar = progress.add_task("train", total=n_tasks * batches)
    # no GG evaluation after each task: recall scores every true mask on its evaluation half anyway
    train_stream(model, stream, config, n_tasks, evaluate=False, drop_last=True, device=device,
                 progress=lambda n: progress.advance(bar, n))
    save_masks(model, path, benchmark={**stream.describe(), "train_seed": seed}, overwrite=True,
               training={"scenario": "hopsupsup", "config": config.to_dict(), "device": device})
    return model, stream


def subset_bank(full: Path, path: Path, n_tasks: int) -> None:
    """Copy tasks ``"0" .. n_tasks-1`` (masks and attrs) and the metadata of ``full`` into a new bank at ``path``."""
    with open_bank(full, "r") as src:
        # n_tasks must describe the copy; everything else (model, fingerprint, benchmark) is the full bank's
        metadata = {**src.metadata, "n_tasks": n_tasks, "subset_of_n_tasks": len(src)}
        with create_bank(path, metadata=metadata, overwrite=True) as dst:
            for task in map(str, range(n_tasks)):  # by name: recall maps bank task "i" to stream task i
                dst.write_task(task, src.read_task(task), attrs=src.task_attrs(task))


class RecordingReservoir:
    """Delegates to a :class:`Reservoir` and keeps every recall's final state (``recall_task`` returns no masks)."""

    def __init__(self, reservoir) -> None:
        self._reservoir = reservoir
        self.states: list[np.ndarray] = []

    def __getattr__(self, name: str):
        return getattr(self._reservoir, name)

    def recall(self, *args, **kwargs):
        """Delegate to ``Reservoir.recall`` and record the final state ``(P,)``."""
        masks, result = self._reservoir.recall(*args, **kwargs)
        self.states.append(np.asarray(result.state, dtype=np.int8).copy())
        return masks, result


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


def summarise(rows, recalled: list[np.ndarray], stored: np.ndarray) -> tuple[dict, list[dict]]:
    """Metrics of one (budget, T, mode) and its per-task rows (``stored``: true states, row ``i`` = task ``"i"``)."""
    true = np.array([r.true_accuracy for r in rows])
    acc = np.array([r.recalled_accuracy for r in rows])
    dist = np.stack([(stored != s).sum(1) for s in recalled])  # (recalls, stored tasks): bits apart
    nearest = dist.argmin(1)  # (recalls,)
    own = np.array([int(r.task) for r in rows])  # (recalls,) each recall's own task
    summary = {
        "tasks": len(rows),
        "exact": int(sum(r.exact for r in rows)),
        "fraction_exact": float(np.mean([r.exact for r in rows])),
        "mean_bits_wrong": float(np.mean([r.total_bits_wrong for r in rows])),
        "fraction_nearest_true": float(np.mean(nearest == own)),
        "mean_bits_to_nearest": float(dist.min(1).mean()),
        "mean_true_accuracy": float(true.mean()),
        "mean_recalled_accuracy": float(acc.mean()),
        "mean_accuracy_retained": float(np.mean(acc / np.maximum(true, 1e-12))),
        "mean_drop_points": float(100.0 * np.mean(true - acc)),
        "mean_steps_to_final": float(np.mean([r.steps_to_final for r in rows])),
    }
    # per task: no step histories, but where the recall ended (nearest stored task and how far)
    per_task = [{"task": r.task, "exact": r.exact, "bits_wrong": r.total_bits_wrong, "nearest_task": int(nearest[k]),
                 "bits_to_nearest": int(dist[k, nearest[k]]), "true_accuracy": r.true_accuracy,
                 "recalled_accuracy": r.recalled_accuracy, "steps_run": r.steps_run,
                 "steps_to_final": r.steps_to_final, "guidance_calls": r.guidance_calls} for k, r in enumerate(rows)]
    return summary, per_task


def shuffled_control(states: np.ndarray, layout, budget: str, seed: int) -> dict:
    """Classic capacity on the same masks with their units shuffled (density kept, structure destroyed).

    Each task's state gets its own seeded permutation; recall is plain dynamics from a noisy:0.1 cue.
    """
    reservoir = Reservoir.from_budget(budget, layout, rule=RULE)
    rng = np.random.default_rng([seed, len(states)])
    shuffled = np.stack([s[rng.permutation(s.size)] for s in states])  # (T, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)  # over capacity is the point of the sweep
        for s in shuffled:
            reservoir.store(layout.unflatten(s))
    wrong = []
    for i, s in enumerate(shuffled):
        cue = reservoir.cue("noisy:0.1", seed=seed + i, reference=s)
        _, result = reservoir.recall(cue, None, method="dynamics", seed=seed + i)
        wrong.append(int((result.state != s).sum()))
    return {"fraction_exact": float(np.mean(np.array(wrong) == 0)), "mean_bits_wrong": float(np.mean(wrong))}


def sweep(full: Path, work: Path, model, stream, budgets, task_counts, modes, seed: int, progress) -> tuple:
    """Encode a T-task reservoir per (budget, T) and recall all T tasks in every mode; returns (reservoirs, runs)."""
    reservoirs, runs = [], []
    states = stored_states(full)  # (T_max, P)
    bar = progress.add_task("recall", total=len(budgets) * sum(task_counts) * len(modes))
    for n_tasks in task_counts:
        bank = work / f"bank-{n_tasks}.h5"
        subset_bank(full, bank, n_tasks)
        for budget in budgets:
            t0 = time.perf_counter()
            reservoir, report = encode_bank(bank, budget, rule=RULE)
            reservoirs.append({"budget": budget, "T": n_tasks, "encode_s": round(time.perf_counter() - t0, 3),
                               **{k: v for k, v in report.to_dict().items() if k != "path"},
                               "shuffled_control": shuffled_control(states[:n_tasks], reservoir.layout, budget, seed)})
            for mode in modes:
                guided, method, cue, restarts = MODES[mode]
                if restarts and budget != budgets[0]:
                    progress.advance(bar, n_tasks)
                    continue
                progress.update(bar, description=f"recall {budget} T={n_tasks} {mode}")
                recorder = RecordingReservoir(reservoir)
                t0 = time.perf_counter()
                rows = recall_all(bank, recorder, model=model, stream=stream, guided=guided, method=method,
                                  cue=cue, seed=seed, restarts=restarts, progress=lambda d, n: progress.advance(bar))
                wall = round(time.perf_counter() - t0, 2)
                # every start is recorded; keep the one recall chose for each task
                kept = [recorder.states[i * (restarts + 1) + row.chosen_start] for i, row in enumerate(rows)]
                summary, per_task = summarise(rows, kept, states[:n_tasks])
                runs.append({"budget": budget, "T": n_tasks, "mode": mode, "wall_s": wall, **summary, "rows": per_task})
    return reservoirs, runs


def machine(device: str) -> dict:
    """Platform, thread and version information recorded with the results."""
    import numba

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numba": numba.__version__, "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.get_num_threads(), "device": device}


def markdown(result: dict) -> str:
    """The results tables, reservoir sizes, mask statistics and timings as Markdown."""
    res = {(r["budget"], r["T"]): r for r in result["reservoirs"]}
    ms = result["mask_statistics"]
    lines = ["# HopSupSup capacity sweep (BNNet unit masks, permuted SplitMNIST)", "",
             f"`{result['command']}` on {result['machine']['processor']} ({result['machine']['device']}, "
             f"{result['machine']['torch_threads']} torch thread(s)), torch {result['machine']['torch']}; "
             f"{result['config']['batches_per_task']} batches per task, rule {RULE}, pattern length "
             f"{result['reservoirs'][0]['pattern_length']}; total {result['wall_s']:.0f} s "
             f"(training {result['timings_s']['train']:.0f} s, sweep {result['timings_s']['sweep']:.0f} s)", ""]
    for budget in result["config"]["budgets"]:
        r = next(v for (b, _), v in res.items() if b == budget)
        lines.append(f"- **{budget}**: {r['n_networks']} networks × {r['network_size']} units ({r['dtype']}), "
                     f"{format_bytes(r['reservoir_bytes'])}; theoretical capacity {r['capacity_tasks']:.1f} tasks; "
                     f"the same bytes hold {r['exact_tasks_in_budget']} masks stored exactly "
                     f"({r['exact_file_bytes_per_task']} B each in an hdf5-packed file, of which {r['exact_bytes_per_task']} B are mask bits)")
    lines += [f"- masks: {ms['density']:.1%} of units on; two tasks' masks differ in {ms['hamming_mean']:.0f} bits on "
              f"average (random patterns of that density: {ms['random_pattern_distance']:.0f}), "
              f"{ms['hamming_mean_same_digits']:.0f} for the same digit pair under two permutations, "
              f"minimum {ms['hamming_min']}", "",
              "| budget | T | load | mode | exact | nearest = true | bits wrong | acc. retained | drop (pts) "
              "| steps to final | wall (s) |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        lines.append(f"| {run['budget']} | {run['T']} | {res[(run['budget'], run['T'])]['load']:.2f} | {run['mode']} "
                     f"| {run['exact']}/{run['tasks']} "
                     f"| {run['fraction_nearest_true']:.2f} | {run['mean_bits_wrong']:.1f} "
                     f"| {run['mean_accuracy_retained']:.3f} | {run['mean_drop_points']:.1f} "
                     f"| {run['mean_steps_to_final']:.1f} | {run['wall_s']:.1f} |")
    lines += ["", "Control: plain dynamics from a noisy:0.1 cue on the same masks with their units shuffled "
              "(same density, no structure shared between tasks).", "",
              "| budget | T | load | exact fraction | mean bits wrong |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['budget']} | {r['T']} | {r['load']:.2f} | {r['shuffled_control']['fraction_exact']:.2f} "
              f"| {r['shuffled_control']['mean_bits_wrong']:.1f} |" for r in result["reservoirs"]]
    lines += ["", "Accuracies are on the evaluation half of each task's test images; guidance saw only the other "
              "half, without labels. *load* = T / capacity; *nearest = true*: fraction of recalls whose final "
              "state is closer to the task's own mask than to any other stored mask; *bits wrong* out of "
              f"{result['reservoirs'][0]['pattern_length']}."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Fraction exact (left) and accuracy retained (right) versus T: colour = mode, line style = budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    styles = ["-", "--", ":", "-."]
    colours = {m: f"C{i}" for i, m in enumerate(MODES)}
    budgets, ticks = result["config"]["budgets"], result["config"]["task_counts"]
    caps = {r["budget"]: r["capacity_tasks"] for r in result["reservoirs"]}
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), layout="constrained")
    for ax, key, label in zip(axes, ("fraction_exact", "mean_accuracy_retained"),
                              ("fraction of masks recalled exactly", "accuracy retained (recalled / true mask)")):
        for b, budget in enumerate(budgets):
            for mode in result["config"]["modes"]:
                pts = [(r["T"], r[key]) for r in result["runs"] if r["budget"] == budget and r["mode"] == mode]
                if not pts:  # modes run at the main budget only
                    continue
                ax.plot(*zip(*pts), styles[b % 4], marker="o", markersize=4, color=colours[mode])
            if key == "fraction_exact":
                pts = [(r["T"], r["shuffled_control"]["fraction_exact"]) for r in result["reservoirs"]
                       if r["budget"] == budget]
                ax.plot(*zip(*pts), styles[b % 4], marker="x", color="black")
            ax.axvline(caps[budget], color="grey", linestyle=styles[b % 4], linewidth=1)
            ax.text(caps[budget], 0.5, f"capacity {budget} ", rotation=90, va="center", ha="right", fontsize=8,
                    color="grey")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set(xlim=(min(ticks) / 1.25, max(*ticks, *caps.values()) * 1.25), ylim=(-0.03, 1.05),
               xlabel="stored tasks T", ylabel=label)
        ax.grid(alpha=0.3)
    modes = [Line2D([], [], color=colours[m], marker="o", label=m) for m in result["config"]["modes"]]
    modes.append(Line2D([], [], color="black", marker="x", label="noisy cue, shuffled masks (control)"))
    sizes = {r["budget"]: r["network_size"] for r in result["reservoirs"]}
    styles_legend = [Line2D([], [], color="grey", linestyle=styles[b % 4], label=f"{budget} (N={sizes[budget]})")
                     for b, budget in enumerate(budgets)]
    fig.legend(handles=modes + styles_legend, loc="outside lower center", ncol=len(modes), fontsize=8,
               title="colour: recall mode; line style: budget (N = units per network)", title_fontsize=8)
    fig.suptitle("HopSupSup capacity sweep: recall from a fixed-size Storkey reservoir (BNNet, permuted SplitMNIST)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train, encode, recall, and write ``hopsupsup.json``, ``.md`` and ``.png``; return the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 batches per task, T = 5 and 10")
    parser.add_argument("--batches-per-task", type=int, default=50)
    parser.add_argument("--budget", default="1MB", help="the fixed budget of the claim")
    parser.add_argument("--small-budget", default="256KiB,128KiB", help="smaller budgets, comma-separated")
    parser.add_argument("--no-score-descent", action="store_true", help="skip guided score descent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see the comment in main)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    for name in ("batches_per_task", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer, received {getattr(args, name)}")
    budgets = [args.budget, *(b.strip() for b in args.small_budget.split(",") if b.strip())]
    for budget in budgets:
        parse_budget(budget)  # fail before training on a malformed budget
    batches = 5 if args.quick else args.batches_per_task
    task_counts = (5, 10) if args.quick else TASK_COUNTS
    # One thread by default: on a small shared machine torch's intra-op pool competes with the other
    # processes for the cores, and a 64 x 2048 batch norm measured 400x slower with 2 threads than with 1.
    torch.set_num_threads(args.threads)
    modes = [m for m in MODES if not (args.no_score_descent and m == "guided-score-descent")]
    torch.manual_seed(args.seed)  # nothing should draw from the global RNG, but pin it anyway

    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=Console(stderr=True)) as progress:
        work = Path(tmp)
        model, stream = train_bank(work / "full.h5", max(task_counts), batches, args.seed, args.device, progress)
        train_s = time.perf_counter() - started
        masks = mask_statistics(stored_states(work / "full.h5"), len(SplitMNIST.TASK_DIGITS))
        reservoirs, runs = sweep(work / "full.h5", work, model, stream, budgets, task_counts, modes, args.seed,
                                 progress)
    config = {"seed": args.seed, "batches_per_task": batches, "budgets": budgets, "task_counts": list(task_counts),
              "modes": modes, "mode_definitions": {m: dict(zip(("guided", "method", "cue", "restarts"), MODES[m])) for m in modes},
              "rule": RULE, "stream": stream.describe(), "transductive": False,
              "model": {"arch": "bnnet", "output_size": 10, "seed": args.seed}}
    result = {"benchmark": "hopsupsup", "machine": machine(args.device), "config": config,
              "command": " ".join(["python benchmarks/bench_hopsupsup.py", *(sys.argv[1:] if argv is None else argv)]),
              "mask_statistics": masks, "reservoirs": reservoirs, "runs": runs,
              "timings_s": {"train": round(train_s, 1), "sweep": round(time.perf_counter() - started - train_s, 1)},
              "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "hopsupsup_quick" if args.quick else "hopsupsup"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
