"""Learned ±1 couplings at a fixed budget: how many real masks a binary reservoir gives back, and at what cost.

Reads a bank of real BNNet unit masks (4,096 bits per task; written by ``bench_hopsupsup.py`` or
``supsup-store train --model bnnet --preset hopsupsup``) and, for each budget and task count ``T``:

1. **Encode** the first ``T`` tasks with ``encode_bank`` (the perceptron rule): key length from the budget
   and ``T``; seconds, and the peak of Python-tracked memory during the write (tracemalloc: NumPy
   arrays, hidden states included) beside the reservoir's own size.
2. **Keyed recall of every task** (one candidate per task, recalled once): exact, bits wrong, and the
   accuracy of the task's own candidate against its true mask on half of the task's test images
   (within 1 point?), so the reservoir's losses past its capacity are measured per task.
3. **Selection** on a seeded sample of tasks (``--sample``): the candidate chosen by the output entropy
   on half of the task's test images, without labels and without the task's identity
   (:func:`supsup_core.recall.select_candidate`, as :class:`~supsup_core.recall.Recaller` runs it);
   correct fraction and seconds per recalled task (the candidates, recalled once, timed apart).
4. **Recalled bits per byte** (exact masks' bits over the reservoir's bytes) beside the bit-packed
   bank's (all mask bits over the bank file's bytes).

``--growth 900:1000`` also grows a reservoir sized for the larger count one task at a time, without its
bank (each stored task recalled from its key and learnt again with the new one), and reports the seconds
per added task and every task's recall afterwards.

Writes ``binary_reservoir[_<name>].json`` and ``.md`` into ``--out``.

Usage::

    python benchmarks/bench_binary_reservoir.py --bank BANK [--budgets 1MB,256KiB,128KiB]
        [--tasks 100,200,500,1000,1200,1500,2000] [--sample 100] [--growth 900:1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hopfield_masks.backends import open_bank
from hopfield_masks.binary import BinaryReservoir
from hopfield_masks.budget import parse_budget
from hopfield_masks.encoding import EncodeSettings, encode_bank
from supsup_core.recall import masks_accuracy, task_data
from supsup_core.persistence import load_model
from supsup_core.recall import RecallConfig, Recaller, select_candidate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hopsupsup import machine, open_stream, stored_states, subset_bank  # noqa: E402

HERE = Path(__file__).resolve().parent
ONE_MB = 1_000_000


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


def selection(recaller: Recaller, sample: np.ndarray, progress, bar) -> dict:
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


def encode(bank: Path, budget: str) -> tuple[dict, float]:
    """encode_bank with the perceptron rule: its report, seconds and tracemalloc peak."""
    tracemalloc.start()
    t0 = time.perf_counter()
    _, report = encode_bank(bank, budget, EncodeSettings(rule="perceptron"))
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {k: v for k, v in report.to_dict().items() if k != "path"}
    return {**out, "encode_s": round(seconds, 2), "write_peak_bytes": int(peak)}, seconds


def growth(full: Path, budget: str, start: int, end: int, model, stream, progress) -> dict:
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


def markdown(result: dict) -> str:
    """The results as Markdown tables."""
    lines = [f"# Binary reservoir (learned ±1 couplings) — `{result['command']}`", "",
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
                  f"{result['machine']['torch_threads']}; wall {result['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep and write the json and md results; return the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, required=True, help="a bank of BNNet unit masks (tasks '0'..'T-1')")
    parser.add_argument("--budgets", default="1MB,256KiB,128KiB")
    parser.add_argument("--tasks", default="100,200,500,1000,1200,1500,2000", help="task counts at 1MB "
                        "(other budgets: scaled by budget / 1MB)")
    parser.add_argument("--sample", type=int, default=100, help="tasks whose selection is measured per run")
    parser.add_argument("--growth", default="900:1000", help="START:END at the first budget ('' to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="", help="results file suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = [b for b in args.budgets.split(",") if b]
    counts = [int(t) for t in args.tasks.split(",") if t]
    started = time.perf_counter()
    full = args.bank
    states_all = stored_states(full)
    model, metadata = load_model(full)
    stream = open_stream(metadata)
    plan = [(b, t) for b in budgets for t in (counts if parse_budget(b) == ONE_MB else tasks_for(parse_budget(b), counts))
            if t <= len(states_all)]
    runs = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=Console(stderr=True)) as progress:
        for budget, t in plan:
            bank = Path(tmp) / f"bank-{t}.h5"
            subset_bank(full, bank, t)
            bank_bytes = bank.stat().st_size
            progress.console.print(f"{budget} T={t}: encoding")
            report, _ = encode(bank, budget)
            recaller = Recaller(bank, budget, RecallConfig(method="keyed", seed=args.seed), model=model, stream=stream,
                                encode_missing=None)
            sample = np.sort(np.random.default_rng(np.random.SeedSequence([args.seed, t])).choice(
                t, size=min(t, args.sample), replace=False))
            bar = progress.add_task(f"{budget} T={t}", total=t + len(sample))
            own = own_candidates(recaller, states_all[:t], model, progress, bar)
            chosen = selection(recaller, sample, progress, bar)
            bits = states_all.shape[1]
            runs.append({"budget": budget, "T": t, **report, **own, **chosen,
                         "recalled_bits_per_byte": own["exact"] * bits / report["reservoir_bytes"],
                         "bank_bits_per_byte": t * bits / bank_bytes, "bank_bytes": bank_bytes})
            bank.unlink()
        grown = None
        if args.growth:
            start, end = (int(x) for x in args.growth.split(":"))
            if end <= len(states_all):
                grown = growth(full, budgets[0], start, end, model, stream, progress)
    result = {"benchmark": "binary_reservoir", "machine": machine("cpu"),
              "command": " ".join(["python benchmarks/bench_binary_reservoir.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "config": {"bank_tasks": len(states_all), "mask_bits": int(states_all.shape[1]),
                         "stream": stream.describe(), "seed": args.seed, "sample": args.sample},
              "runs": runs, "growth": grown, "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "binary_reservoir" + (f"_{args.name}" if args.name else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
