"""Scale benchmark: PermutedMNIST with LeNet 300-100 (96 batches per task) at T = 25, 250 (and 2500) tasks.

Every phase runs in a fresh child process (its own peak RSS), each writing one JSON
object; the parent collects them into ``benchmarks/results/scale.json`` and ``scale.md``
(rewritten after every phase, so an interrupted run keeps what it measured).

Phases
------
``train``      :func:`supsup_core.training.train_to_bank` with ``--workers`` processes: time per task
               (in the worker), commit time, wall time, peak RSS (driver and workers), bank size vs T n / 8.
``first``      reload the bank; GG of every task; GNu with the first image of each test batch deciding the
               batch (one-shot, rerank, binary), i.e. batch-level task inference; times.
``ksweep``     first-image decisions of ``rerank`` for k = 1..16 candidates (k = 1 is one-shot).
``per-image``  every test image infers its own task (one-shot, batched rank-one gradients); time, accuracy.
``workers``    20 tasks with --workers 1 and 2 (and Ray with 2 actors when installed): time, identical banks.
``fc1024``     FC 1024-1024 at 250 tasks: ``supsup-store train`` then ``evaluate``, each its own process, peak RSS.

``--per-image-bank BANK`` and ``--first-bank BANK`` run the per-image phase, or the first-image phase
without binary search, alone on a bank trained with these settings (``--child train --bank BANK --tasks T``)
and write their own results files, folded into ``scale.md``.

The machine is shared (2 cores, other jobs running): every phase records ``os.getloadavg()``
before and after; timings are only comparable within a run.

Usage::

    python benchmarks/bench_scale.py [--tasks 25,250] [--workers 2] [--phases train,first,...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCHES = 96
LENET_BITS = 784 * 300 + 300 * 100 + 100 * 100  # mask entries n per task
FC1024_BITS = 784 * 1024 + 1024 * 1024 + 1024 * 100
KS = (1, 2, 3, 4, 6, 8, 12, 16)


def _rss_mb() -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(me, 1), "peak_rss_children_mb": round(kids, 1)}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _setup(tasks: int, arch: str = "lenet", batches: int = BATCHES):
    from supsup_core.config import ModelConfig
    from supsup_core.data import load_mnist, make_stream
    from supsup_core.persistence import benchmark_metadata
    from supsup_core.training import TrainConfig, TrainingSetup

    stream = make_stream("permuted-mnist", tasks, load_mnist(None), seed=1)
    config = TrainConfig.for_scenario("gnu", batches_per_task=batches)
    setup = TrainingSetup.from_objects(ModelConfig(arch=arch, output_size=100, seed=0), stream.describe(), config)
    return setup, benchmark_metadata(stream, 0)


def phase_train(bank: str, tasks: int, workers: int, arch: str = "lenet", batches: int = BATCHES) -> dict:
    from supsup_core.training import BankTrainingConfig, train_to_bank

    setup, bench = _setup(tasks, arch, batches)
    result = train_to_bank(bank, setup, BankTrainingConfig(n_tasks=tasks, workers=workers, overwrite=True, eval_at=()),
                           benchmark=bench, scenario="gnu")
    per_task = [result.train_seconds[t] for t in sorted(result.train_seconds)]
    tenth = max(1, tasks // 10)
    bits = LENET_BITS if arch == "lenet" else FC1024_BITS
    return {
        "tasks": tasks, "workers": workers, "wall_s": round(result.wall_seconds, 2),
        "train_s_per_task_median": round(statistics.median(per_task), 4),
        "train_s_per_task_first_tenth": round(statistics.mean(per_task[:tenth]), 4),
        "train_s_per_task_last_tenth": round(statistics.mean(per_task[-tenth:]), 4),
        "commit_s_per_task_median": round(statistics.median(result.commit_seconds.values()), 4),
        "commit_s_last_tenth": round(statistics.mean([result.commit_seconds[t] for t in range(tasks - tenth, tasks)]), 4),
        "wall_s_per_task": round(result.wall_seconds / tasks, 4),
        "gg_mean_at_training": sum(result.gg.values()) / tasks,
        "bank_bytes": os.path.getsize(bank), "mask_bytes_T_n_over_8": tasks * bits // 8,
    }


def phase_first(bank: str, binary: bool) -> dict:
    from supsup_core.persistence import load_model
    from supsup_core.persistence import stream_from_metadata
    from supsup_core.training import evaluate_gg, evaluate_inferred

    t0 = time.perf_counter()
    model, meta = load_model(bank)
    stream = stream_from_metadata(meta)
    out = {"load_s": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    gg = evaluate_gg(model, stream)
    out["gg"] = {"time_s": round(time.perf_counter() - t0, 2), "mean_accuracy": gg.mean_accuracy}
    for method in ("oneshot", "rerank", *(("binary",) if binary else ())):
        t0 = time.perf_counter()
        r = evaluate_inferred(model, stream, method=method, protocol="first-image", measure_task_inference=False)
        decisions = sum(r.decision_accuracy.values()) / len(r.decision_accuracy)
        out[method] = {"time_s": round(time.perf_counter() - t0, 2), "gnu_accuracy": r.mean_accuracy,
                       "batch_task_inference": decisions}
    return out


def phase_ksweep(bank: str) -> dict:
    import torch

    from supsup_core.persistence import load_model
    from supsup_core.inference import coefficient_gradients
    from supsup_core.inference.objectives import objective_values
    from supsup_core.inference.rank_one import unpack_tasks
    from supsup_core.persistence import stream_from_metadata

    model, meta = load_model(bank)
    stream = stream_from_metadata(meta)
    hits = dict.fromkeys(KS, 0)
    n = 0
    t0 = time.perf_counter()
    oneshot_s = forward_s = 0.0
    for t in range(model.num_tasks):
        for x, _, _ in stream.test_batches(t, 128):
            first = x[:1]
            a = time.perf_counter()
            ranked = torch.sort(coefficient_gradients(model, first), stable=True).indices[: max(KS)].tolist()
            b = time.perf_counter()
            with torch.no_grad():
                values = []
                for c in ranked:
                    masks = {name: unpack_tasks(layer, c, c + 1)[0] for name, layer in model.masked_layers().items()}
                    values.append(float(objective_values(model(first, masks=masks), "H").mean()))
            forward_s += time.perf_counter() - b
            oneshot_s += b - a
            for k in KS:
                best = min(range(k), key=lambda i: (values[i], i))
                hits[k] += ranked[best] == t
            n += 1
    return {"decisions": n, "accuracy_by_k": {str(k): hits[k] / n for k in KS}, "time_s": round(time.perf_counter() - t0, 2),
            "oneshot_ms_per_decision": round(1000 * oneshot_s / n, 3),
            "forward_ms_per_candidate": round(1000 * forward_s / (n * max(KS)), 3)}


def phase_per_image(bank: str, every: int = 1) -> dict:
    from supsup_core.persistence import load_model
    from supsup_core.persistence import stream_from_metadata
    from supsup_core.training import evaluate_inferred

    model, meta = load_model(bank)
    stream = stream_from_metadata(meta)
    t0 = time.perf_counter()
    r = evaluate_inferred(model, stream, range(0, model.num_tasks, every), method="oneshot", protocol="per-image",
                          measure_task_inference=False)
    images = sum(r.n_images.values())
    return {"time_s": round(time.perf_counter() - t0, 2), "images": images, "tasks": model.num_tasks,
            "stream_tasks_evaluated": len(r.n_images), "every": every,
            "gnu_accuracy": r.mean_accuracy,
            "single_image_task_inference": sum(r.decision_accuracy.values()) / len(r.decision_accuracy)}


def phase_workers(folder: str, tasks: int = 20) -> dict:
    import numpy as np

    from hopfield_masks.backends import open_bank
    from supsup_core.training import BankTrainingConfig, train_to_bank

    setup, bench = _setup(tasks)
    runs = {}
    engines = [("workers-1", {"workers": 1}), ("workers-2", {"workers": 2})]
    if tasks <= 20 and importlib.util.find_spec("ray") is not None:  # Ray's start-up: on the 20-task run only
        engines.append(("ray-2", {"workers": 2, "ray": True}))
    contents = {}
    for name, options in engines:
        path = os.path.join(folder, f"{name}.h5")
        t0 = time.perf_counter()
        train_to_bank(path, setup, BankTrainingConfig(n_tasks=tasks, overwrite=True, eval_at=(), **options),
                      benchmark=bench, scenario="gnu")
        runs[name] = {"wall_s": round(time.perf_counter() - t0, 2), "load_after": _load()}
        with open_bank(path, "r") as b:
            contents[name] = (b.metadata, [b.read_task(n) for n in b.tasks()], [b.task_attrs(n) for n in b.tasks()])
    ref = contents["workers-1"]
    for name, (meta, masks, attrs) in contents.items():
        same = meta == ref[0] and attrs == ref[2] and all(
            all(np.array_equal(m[k], r[k]) for k in m) for m, r in zip(masks, ref[1]))
        runs[name]["identical_to_workers_1"] = bool(same)
        runs[name]["speed_up_vs_workers_1"] = round(runs["workers-1"]["wall_s"] / runs[name]["wall_s"], 2)
    return {"tasks": tasks, "runs": runs}


def _cli(args: list[str]) -> tuple[str, float, float]:
    """Run ``supsup-store ARGS`` in its own process; (stdout, wall seconds, that process's peak RSS in MB)."""
    cmd = [sys.executable, "-c", "from supsup_store_cli.app import main; main()", *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"supsup-store {' '.join(args)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return stdout, wall, usage.ru_maxrss / 1024


def phase_fc1024(bank: str, tasks: int, batches: int) -> dict:
    """FC 1024-1024 as a user runs it: ``supsup-store train`` then ``supsup-store evaluate``, each its own process."""
    _, train_s, train_rss = _cli(["train", "--model", "fc1024", "--tasks", str(tasks), "--batches-per-task", str(batches),
                                  "--out", bank, "--eval-at", "none", "--overwrite"])
    out = {"tasks": tasks, "train_wall_s": round(train_s, 1), "train_peak_rss_mb": round(train_rss, 1),
           "bank_bytes": os.path.getsize(bank), "mask_bytes_T_n_over_8": tasks * FC1024_BITS // 8}
    for method in ("oneshot", "rerank"):
        text, wall, rss = _cli(["evaluate", bank, "--method", method, "--no-task-inference", "--json"])
        report = json.loads(text)
        out[method] = {"wall_s": round(wall, 1), "peak_rss_mb": round(rss, 1), "gg": report["gg"]["mean_accuracy"],
                       "gnu": report["inferred"]["mean_accuracy"],
                       "batch_task_inference": _mean_of(report["inferred"]["decision_accuracy"])}
    return out


def _mean_of(values: dict) -> float:
    return sum(values.values()) / len(values)


def _child(args: argparse.Namespace) -> None:
    before = _load()
    t0 = time.perf_counter()
    if args.phase == "train":
        out = phase_train(args.bank, args.tasks, args.workers)
    elif args.phase == "first":
        out = phase_first(args.bank, binary=args.tasks <= 250)  # binary at 2500: ~12 gradient rounds per decision
    elif args.phase == "first-without-binary":
        out = phase_first(args.bank, binary=False)
    elif args.phase == "ksweep":
        out = phase_ksweep(args.bank)
    elif args.phase == "per-image":
        out = phase_per_image(args.bank, args.per_image_every)
    elif args.phase == "workers":
        out = phase_workers(args.bank, args.tasks)
    else:
        out = phase_fc1024(args.bank, args.tasks, args.fc_batches)
    out.update(_rss_mb())
    out.update({"phase_s": round(time.perf_counter() - t0, 2), "load_before": before, "load_after": _load()})
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(phase: str, bank: str, tasks: int, workers: int, fc_batches: int, every: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--bank", bank, "--tasks", str(tasks), "--workers", str(workers),
           "--fc-batches", str(fc_batches), "--per-image-every", str(every)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"phase {phase} (T={tasks}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(result: dict) -> str:
    lines = ["# Scale: PermutedMNIST, LeNet 300-100, 96 batches per task", "",
             f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs shared with other jobs "
             "(load averages recorded per phase: timings are noisy and only comparable within this run). "
             f"torch {result['machine']['torch']}. Written by `benchmarks/bench_scale.py`.", ""]
    runs = result["runs"]
    if runs:
        lines += ["## Training into a bank (linear time, every task committed)", "",
                  "| T | workers | wall | train s/task (median) | first 10% | last 10% | commit s/task (median, last 10%) "
                  "| driver peak RSS | worker peak RSS | bank bytes | T·n/8 | load before → after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            tr = run.get("train")
            if not tr:
                continue
            lines.append(
                f"| {t} | {tr['workers']} | {tr['wall_s']:.1f} s | {tr['train_s_per_task_median']:.3f} | "
                f"{tr['train_s_per_task_first_tenth']:.3f} | {tr['train_s_per_task_last_tenth']:.3f} | "
                f"{tr['commit_s_per_task_median']:.3f}, {tr['commit_s_last_tenth']:.3f} | {tr['peak_rss_mb']:.0f} MB | "
                f"{tr['peak_rss_children_mb']:.0f} MB | {tr['bank_bytes']:,} | {tr['mask_bytes_T_n_over_8']:,} | "
                f"{tr['load_before']} → {tr['load_after']} |")
        trained = {int(t): r["train"] for t, r in runs.items() if r.get("train")}
        if len(trained) > 1:
            lo, hi = min(trained), max(trained)
            ratio = trained[hi]["train_s_per_task_median"] / trained[lo]["train_s_per_task_median"]
            lines += ["", f"Per-task training time (median) at T = {hi} is **{ratio:.2f}×** that at T = {lo} (flat: the "
                      "cost of a task does not grow with the tasks learned)."]
        lines += ["", "## Evaluation of every task, first image of each test batch decides the batch", "",
                  "| T | GG (time) | method | GNu accuracy | batch-level task inference | time | peak RSS |",
                  "|---|---|---|---|---|---|---|"]
        for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            fi = run.get("first")
            if not fi:
                continue
            for method in ("oneshot", "rerank", "binary"):
                if method in fi:
                    m = fi[method]
                    lines.append(f"| {t} | {_pct(fi['gg']['mean_accuracy'])} ({fi['gg']['time_s']:.1f} s) | {method} | "
                                 f"{_pct(m['gnu_accuracy'])} | {_pct(m['batch_task_inference'])} | {m['time_s']:.1f} s | "
                                 f"{fi['peak_rss_mb']:.0f} MB |")
        lines += ["", "### Training plus full evaluation (GG, one-shot and rerank over every task)", "",
                  "| T | workers | train wall | GG | one-shot | rerank | total |", "|---|---|---|---|---|---|---|"]
        for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            tr, fi = run.get("train"), run.get("first")
            if tr and fi and "rerank" in fi:
                total = tr["wall_s"] + fi["load_s"] + fi["gg"]["time_s"] + fi["oneshot"]["time_s"] + fi["rerank"]["time_s"]
                lines.append(f"| {t} | {tr['workers']} | {tr['wall_s'] / 60:.1f} min | {fi['gg']['time_s']:.0f} s | "
                             f"{fi['oneshot']['time_s']:.0f} s | {fi['rerank']['time_s']:.0f} s | **{total / 60:.1f} min** |")
        for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            ks = run.get("ksweep")
            if ks:
                lines += ["", f"### rerank: candidates k vs first-image task inference, T = {t} ({ks['decisions']} decisions)",
                          "", "| k | " + " | ".join(ks["accuracy_by_k"]) + " |",
                          "|---|" + "---|" * len(ks["accuracy_by_k"]),
                          "| accuracy | " + " | ".join(_pct(v) for v in ks["accuracy_by_k"].values()) + " |", "",
                          f"Cost per decision: one-shot {ks['oneshot_ms_per_decision']:.2f} ms, plus "
                          f"{ks['forward_ms_per_candidate']:.3f} ms per candidate forward (k = 1 is the paper's one-shot)."]
        for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            pi = run.get("per-image")
            if pi:
                lines += ["", f"## Per-image protocol, T = {t}: every test image infers its own task", "",
                          f"{pi['images']:,} images × {pi['tasks']} candidate masks in {pi['time_s']:.0f} s "
                          f"({1000 * pi['time_s'] / pi['images']:.2f} ms per image): single-image task inference "
                          f"{_pct(pi['single_image_task_inference'])}, GNu accuracy {_pct(pi['gnu_accuracy'])}; peak RSS "
                          f"{pi['peak_rss_mb']:.0f} MB; load {pi['load_before']} → {pi['load_after']}."]
    for t, run in sorted(result["runs"].items(), key=lambda kv: int(kv[0])):
        for key, pi in run.items():
            if key.startswith("per-image-every"):
                lines += ["", f"## Per-image protocol, T = {t}, every {pi['every']}th task's test images "
                          f"({pi['stream_tasks_evaluated']} tasks), all {pi['tasks']} masks as candidates", "",
                          f"{pi['images']:,} images in {pi['time_s']:.0f} s ({1000 * pi['time_s'] / pi['images']:.2f} ms "
                          f"per image; all {pi['tasks']} tasks' images at this rate: "
                          f"{pi['time_s'] * pi['tasks'] / pi['stream_tasks_evaluated'] / 60:.1f} min): single-image task "
                          f"inference {_pct(pi['single_image_task_inference'])}, GNu accuracy {_pct(pi['gnu_accuracy'])}; "
                          f"peak RSS {pi['peak_rss_mb']:.0f} MB; load {pi['load_before']} → {pi['load_after']}."]
    for t, fi in sorted((result.get("first_separate") or {}).items(), key=lambda kv: int(kv[0])):
        lines += ["", f"## First-image evaluation at T = {t}, re-measured on the current evaluation code", "",
                  "A separate run (`--first-bank`) on a bank trained with this benchmark's settings: every decision "
                  "through `infer_groups` (one batched rank-one pass per window of tasks; binary search not re-run).", "",
                  "| method | GG | GNu accuracy | batch-level task inference | time | peak RSS |", "|---|---|---|---|---|---|"]
        for method in ("oneshot", "rerank"):
            m = fi[method]
            lines.append(f"| {method} | {_pct(fi['gg']['mean_accuracy'])} | {_pct(m['gnu_accuracy'])} | "
                         f"{_pct(m['batch_task_inference'])} | {m['time_s']:.1f} s | {fi['peak_rss_mb']:.0f} MB |")
        lines.append(f"\nGG over every task: {fi['gg']['time_s']:.1f} s. Load {fi['load_before']} → {fi['load_after']}.")
    parts = result.get("workers")
    for w in ([parts] if isinstance(parts, dict) else parts or []):
        lines += ["", f"## {w['tasks']} tasks: workers and engines", "",
                  "| engine | wall | speed-up vs 1 worker | bank identical to 1 worker |", "|---|---|---|---|"]
        for name, r in w["runs"].items():
            lines.append(f"| {name} | {r['wall_s']:.1f} s | {r['speed_up_vs_workers_1']:.2f}× | "
                         f"{'yes' if r['identical_to_workers_1'] else 'NO'} |")
        lines.append(f"\nLoad before: {w['load_before']}, after: {w['load_after']}. With `--workers 2` the driver trains "
                     "too, beside one child process forked from it (Linux: it inherits the base network and the stream, "
                     "so it trains within milliseconds). Timings on this shared 2-core machine are noisy; the 1-worker "
                     "run's seconds per task vary between runs, which is how a speed-up above 2× can appear.")
    fc = result.get("fc1024")
    if fc and "train_peak_rss_mb" in fc:
        lines += ["", f"## FC 1024-1024, {fc['tasks']} tasks ({fc['batches_per_task']} batches per task)", "",
                  "`supsup-store train --model fc1024 ...` and then `supsup-store evaluate`, each in its own process "
                  "(what a user runs); peak RSS of each process (target < 500 MB; the reference code: 7.9 GB).", "",
                  "| command | wall | peak RSS | result |", "|---|---|---|---|",
                  f"| train | {fc['train_wall_s']:.0f} s | {fc['train_peak_rss_mb']:.0f} MB | bank {fc['bank_bytes']:,} B "
                  f"(T·n/8 = {fc['mask_bytes_T_n_over_8']:,} B) |"]
        for method in ("oneshot", "rerank"):
            m = fc[method]
            lines.append(f"| evaluate --method {method} | {m['wall_s']:.0f} s | {m['peak_rss_mb']:.0f} MB | GG "
                         f"{_pct(m['gg'])}, GNu {_pct(m['gnu'])}, first-image task inference "
                         f"{_pct(m['batch_task_inference'])} |")
    if result.get("not_run"):
        lines += ["", "## Not run", ""] + [f"- {note}" for note in result["not_run"]]
    return "\n".join(lines) + "\n"


PER_IMAGE_FILE = "scale_per_image.json"  # written by --per-image-bank runs, merged into scale.md


def _merged(result: dict) -> dict:
    """``result`` with the per-image results of a separate ``--per-image-bank`` run folded in."""
    extra = RESULTS / PER_IMAGE_FILE
    if not extra.exists():
        return result
    per_image = json.loads(extra.read_text())
    merged = json.loads(json.dumps(result))
    merged["runs"].setdefault(str(per_image["tasks"]), {})["per-image"] = per_image  # the separate run is the newer one
    return merged


def _merged_all(result: dict) -> dict:
    """Fold in the per-image file and the ``--only workers`` / ``--only fc1024`` files of separate runs."""
    merged = _merged(result) if (RESULTS / PER_IMAGE_FILE).exists() else json.loads(json.dumps(result))
    for extra in sorted(RESULTS.glob("scale_per_image_every*.json")):
        part = json.loads(extra.read_text())
        merged["runs"].setdefault(str(part["tasks"]), {}).setdefault(f"per-image-every{part['every']}", part)
    for extra in sorted(RESULTS.glob("scale_first_T*.json")):
        part = json.loads(extra.read_text())
        merged.setdefault("first_separate", {})[str(part["tasks"])] = part
    for key in ("workers", "fc1024"):
        extra = RESULTS / f"scale_{key}.json"
        if extra.exists() and not merged.get(key):
            merged[key] = json.loads(extra.read_text())
    return merged


def _write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "scale.md").write_text(markdown(_merged_all(result)))


def _check_bank_settings(bank: str, tasks: int) -> None:
    """A bank given with --per-image-bank or --first-bank must hold exactly what this benchmark's train phase would write."""
    from supsup_core.persistence import read_bank_metadata

    setup, bench = _setup(tasks)
    meta = read_bank_metadata(bank)
    training = meta.get("training") or {}
    wanted = {"model": dict(setup.model), "config": dict(setup.train), "scenario": "gnu", "n_tasks": tasks,
              "stream": bench["stream"], "seed": bench["seed"], "train_seed": bench["train_seed"]}
    found = {"model": meta.get("model"), "config": training.get("config"), "scenario": training.get("scenario"),
             "n_tasks": meta.get("n_tasks"), "stream": meta["benchmark"].get("stream"),
             "seed": meta["benchmark"].get("seed"), "train_seed": meta["benchmark"].get("train_seed")}
    differences = [k for k in wanted if wanted[k] != found[k]]
    if differences:
        raise SystemExit(f"{bank}: not this benchmark's settings ({', '.join(differences)} differ)")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="25,250,2500", help="comma-separated task counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phases", default="train,first,ksweep,per-image,workers,fc1024")
    parser.add_argument("--per-image-at", type=int, default=250, help="task count at which the per-image phase runs")
    parser.add_argument("--fc-tasks", type=int, default=250)
    parser.add_argument("--fc-batches", type=int, default=16)
    parser.add_argument("--per-image-bank", help="only the per-image phase, on this bank (trained with the same "
                        "settings, e.g. by supsup-store train); writes results/" + PER_IMAGE_FILE)
    parser.add_argument("--first-bank", help="only the first-image phase without binary search (one-shot, rerank) on "
                        "this bank (trained with the same settings, e.g. by --child train); writes results/scale_first_T<T>.json")
    parser.add_argument("--first-at", type=int, default=250, help="task count of the --first-bank bank")
    parser.add_argument("--only", choices=("workers", "fc1024"), help="run one of these phases alone (results/scale_<phase>.json)")
    parser.add_argument("--per-image-every", type=int, default=1,
                        help="per-image phase on every N-th stream task's test images only (all masks are candidates)")
    parser.add_argument("--render", action="store_true", help="only rewrite scale.md from the JSON results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--bank", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.phase, args.tasks = args.child, int(args.tasks)
        _child(args)
        return None
    if args.render:
        _write(json.loads((RESULTS / "scale.json").read_text()))
        return None
    if args.only in ("workers", "fc1024"):  # one phase in its own run, merged into scale.md by --render
        with tempfile.TemporaryDirectory() as tmp:
            if args.only == "workers":
                out = [_run_child("workers", tmp, n, args.workers, args.fc_batches) for n in (20, 100)]
            else:
                out = _run_child("fc1024", os.path.join(tmp, "fc1024.h5"), args.fc_tasks, 1, args.fc_batches)
                out["batches_per_task"] = args.fc_batches
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"scale_{args.only}.json").write_text(json.dumps(out, indent=2) + "\n")
        return out
    if args.first_bank:
        _check_bank_settings(args.first_bank, args.first_at)
        out = _run_child("first-without-binary", args.first_bank, args.first_at, args.workers, args.fc_batches)
        out["tasks"] = args.first_at
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"scale_first_T{args.first_at}.json").write_text(json.dumps(out, indent=2) + "\n")
        return out
    if args.per_image_bank:
        _check_bank_settings(args.per_image_bank, args.per_image_at)
        out = _run_child("per-image", args.per_image_bank, args.per_image_at, args.workers, args.fc_batches,
                         args.per_image_every)
        RESULTS.mkdir(exist_ok=True)
        name = PER_IMAGE_FILE if args.per_image_every == 1 else f"scale_per_image_every{args.per_image_every}.json"
        (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
        return out
    import torch

    phases = args.phases.split(",")
    counts = [int(t) for t in args.tasks.split(",")]
    previous = json.loads((RESULTS / "scale.json").read_text()) if (RESULTS / "scale.json").exists() else {}
    result = {"benchmark": "scale", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                "torch": torch.__version__, "python": platform.python_version()},
              "settings": {"stream": "permuted-mnist (embedded 5k MNIST subset: 4000 train / 1000 test per task)",
                           "model": "lenet 784-300-100-100, s = 100", "batches_per_task": BATCHES,
                           "train": "gnu preset (RMSprop 1e-4, batch 128)", "mask_bits_per_task": LENET_BITS},
              "runs": previous.get("runs", {}), "workers": previous.get("workers"), "fc1024": previous.get("fc1024"),
              "not_run": previous.get("not_run", [])}
    with tempfile.TemporaryDirectory() as tmp:
        for tasks in counts:
            bank = os.path.join(tmp, f"lenet-{tasks}.h5")
            run = result["runs"].setdefault(str(tasks), {})
            for phase in ("train", "first", "ksweep"):
                if phase not in phases or (phase == "ksweep" and not 100 <= tasks <= 250) or (
                        phase == "per-image" and tasks != args.per_image_at):
                    continue
                if phase != "train" and not os.path.exists(bank):
                    continue
                print(f"T={tasks}: {phase} ...", flush=True)
                run[phase] = _run_child(phase, bank, tasks, args.workers, args.fc_batches)
                _write(result)
        if "workers" in phases:
            print("workers ...", flush=True)
            result["workers"] = [_run_child("workers", tmp, n, args.workers, args.fc_batches) for n in (20, 100)]
            _write(result)
        if "fc1024" in phases:
            print("fc1024 ...", flush=True)
            fc = _run_child("fc1024", os.path.join(tmp, "fc1024.h5"), args.fc_tasks, 1, args.fc_batches)
            fc["batches_per_task"] = args.fc_batches
            result["fc1024"] = fc
            _write(result)
        if "per-image" in phases and str(args.per_image_at) in result["runs"]:  # last: the longest phase
            bank = os.path.join(tmp, f"lenet-{args.per_image_at}.h5")
            if os.path.exists(bank):
                print(f"T={args.per_image_at}: per-image ...", flush=True)
                result["runs"][str(args.per_image_at)]["per-image"] = _run_child(
                    "per-image", bank, args.per_image_at, args.workers, args.fc_batches)
    _write(result)
    return result


if __name__ == "__main__":
    main()
