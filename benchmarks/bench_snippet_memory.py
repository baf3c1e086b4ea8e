"""Peak memory of the README's storage snippet against the reservoir and masks it makes.

Acceptance (issue 21, item 4): the peak RSS of the README storage snippet is at most
``4 × (reservoir bytes + mask bytes)`` above the interpreter's baseline.  What is measured:

- **the snippet**: the Python block after ``<!-- tested: storage -->`` in README.md (or, without that tag,
  the first Python block that calls ``encode_bank(``), run as written with this interpreter in a
  scratch folder, in its own process; its peak RSS is the child's ``ru_maxrss`` (``os.wait4``);
- **reservoir bytes**: ``report.reservoir_bytes`` of each ``encode_bank`` call the snippet makes
  (recorded by a second, instrumented run).  The target uses the *largest single* reservoir (the
  stricter reading; the snippet holds both at its end, and the figure with their sum is given too);
- **mask bytes**: the stored tasks' masks as the user holds them, NumPy booleans, one byte per
  entry (``T × P``; packed they would be an eighth of that);
- **baselines**, each the same interpreter in its own process:
  ``imports``: ``import numpy, h5py, numba, hopfield_masks``, nothing else;
  ``imports + kernels``: the same, then the calls the snippet makes (a bank, ``encode_bank`` with the
  default and the projection rule, keyed recall, block-wise dynamics) on 3 tasks of 320 entries, so the
  Numba kernels are loaded (from Numba's on-disk cache, warmed first) and its thread pool started.
  Numba's code and LLVM take a fixed ~75 MB that no data size changes; the verdict is against the
  ``imports + kernels`` baseline, and the ratio against ``imports`` alone is reported next to it.

Each process runs ``--repeats`` times (default 3); the figures are medians.  ``--compare DIR`` measures
another copy of the library too (``PYTHONPATH=DIR``, for example ``git archive`` of an earlier commit),
reported as "before".  Writes ``benchmarks/results/snippet_memory.json`` and ``.md``.

Usage::

    python benchmarks/bench_snippet_memory.py [--repeats 3] [--compare DIR [--compare-label TEXT]] [--out DIR]

The published figures compare with the commit before this benchmark::

    git archive 2d295be hopfield_masks | tar -x -C /tmp/before
    python benchmarks/bench_snippet_memory.py --compare /tmp/before --compare-label "commit 2d295be"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FACTOR = 4

_TAGGED = re.compile(r"<!-- tested: storage -->\s*\n```python\n(.*?)```", re.S)
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)

IMPORTS = "import numpy, h5py, numba, hopfield_masks\n"

# The snippet's calls on 3 tasks of 320 entries: every Numba kernel it runs is loaded, nothing is large.
KERNELS = IMPORTS + '''
import numpy as np
import hopfield_masks as hm

rng = np.random.default_rng(0)
tasks = [{"fc1": rng.random((4, 64)) < 0.5, "fc2": rng.random((1, 64)) < 0.5} for _ in range(3)]
with hm.create_bank("tiny.h5", backend="hdf5-packed", overwrite=True) as bank:
    for i, masks in enumerate(tasks):
        bank.write_task(str(i), masks)
reservoir, report = hm.encode_bank("tiny.h5", "40kB")
states = reservoir.recall_keyed().states
hopfield, _ = hm.encode_bank("tiny.h5", "40kB", hm.EncodeSettings(rule="pseudo-inverse"))
cue = hopfield.cue("noisy:0.05", seed=0, reference=tasks[1])
recalled, result = hopfield.recall(cue=cue, method="dynamics")
'''

# The snippet run as written, with encode_bank wrapped to record what each call built.
PROBE = '''
import json, sys
import hopfield_masks as hm

calls = []
_encode = hm.encode_bank


def encode_bank(path, *args, **kwargs):
    reservoir, report = _encode(path, *args, **kwargs)
    calls.append({"path": str(path), "rule": report.rule, "dtype": report.dtype, "budget_bytes": report.budget_bytes,
                  "reservoir_bytes": report.reservoir_bytes, "n_tasks": report.n_tasks,
                  "pattern_length": report.pattern_length, "report": str(report)})
    return reservoir, report


hm.encode_bank = encode_bank
exec(compile(open(sys.argv[1]).read(), "README storage snippet", "exec"), {"__name__": "__readme__"})
masks = 0
for path in dict.fromkeys(c["path"] for c in calls):
    with hm.open_bank(path) as bank:
        masks += sum(bank.task_layout(t).length for t in bank.tasks())  # bools: one byte per entry
json.dump({"encodes": calls, "mask_bytes": masks}, open(sys.argv[2], "w"))
'''


def readme_snippet(readme: Path = ROOT / "README.md") -> tuple[str, str]:
    """The storage snippet and how it was found."""
    text = readme.read_text(encoding="utf-8")
    tagged = _TAGGED.search(text)
    if tagged:
        return tagged.group(1), "the block after <!-- tested: storage -->"
    for block in _BLOCK.findall(text):
        if "encode_bank(" in block:
            return block, "the first Python block calling encode_bank( (no <!-- tested: storage --> tag)"
    raise SystemExit("README.md has no storage snippet (no Python block calls encode_bank)")


def _env(source: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH", "")) if p)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    """Peak RSS (bytes) of one child process (``os.wait4``: its own ``ru_maxrss``, not every child's), its wall
    seconds and its stdout; raises if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n"
                               f"{err.read().decode(errors='replace')[-3000:]}")
        return usage.ru_maxrss * 1024, wall, out.read().decode(errors="replace")


def measure(snippet: str, repeats: int, source: Path) -> dict:
    """Peaks of the snippet and both baselines (medians of ``repeats`` runs), and what the snippet built."""
    env = _env(source)
    with tempfile.TemporaryDirectory(prefix="snippet-memory-") as tmp:
        tmp = Path(tmp)
        (tmp / "snippet.py").write_text(snippet)
        (tmp / "imports.py").write_text(IMPORTS)
        (tmp / "kernels.py").write_text(KERNELS)
        (tmp / "probe.py").write_text(PROBE)
        _run(["kernels.py"], tmp, env)  # warms Numba's on-disk cache: every later run loads, none compiles
        _run(["probe.py", "snippet.py", "probe.json"], tmp, env)
        probe = json.loads((tmp / "probe.json").read_text())
        runs: dict[str, list[int]] = {"snippet": [], "imports": [], "imports_kernels": []}
        walls, stdout = [], ""
        for _ in range(repeats):  # interleaved, so a busy machine weighs on all three alike
            peak, wall, stdout = _run(["snippet.py"], tmp, env)
            runs["snippet"].append(peak)
            walls.append(wall)
            runs["imports"].append(_run(["imports.py"], tmp, env)[0])
            runs["imports_kernels"].append(_run(["kernels.py"], tmp, env)[0])
    medians = {name: int(statistics.median(values)) for name, values in runs.items()}
    reservoirs = [c["reservoir_bytes"] for c in probe["encodes"]]
    masks = probe["mask_bytes"]
    result = {"source": "this checkout" if source == ROOT else str(source), "runs_bytes": runs, "peak_bytes": medians,
              "snippet_wall_s": round(statistics.median(walls), 2), "snippet_stdout": stdout.strip().splitlines(),
              "encodes": probe["encodes"], "mask_bytes": masks, "mask_bytes_counted_as": "bool, 1 byte per entry",
              "reservoir_bytes_largest": max(reservoirs), "reservoir_bytes_sum": sum(reservoirs)}
    for base in ("imports_kernels", "imports"):
        above = medians["snippet"] - medians[base]
        result[f"above_{base}_bytes"] = above
        for which in ("largest", "sum"):
            unit = result[f"reservoir_bytes_{which}"] + masks
            result[f"ratio_{base}_{which}"] = round(above / unit, 2)
            result[f"pass_{base}_{which}"] = above <= FACTOR * unit
    result["pass"] = result["pass_imports_kernels_largest"]
    return result


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def markdown(result: dict) -> str:
    now = result["after"]
    lines = ["# Peak memory of the README storage snippet", "",
             f"`{result['command']}` on {result['machine']['platform']} ({result['machine']['cpu_count']} CPUs; "
             f"Python {result['machine']['python']}, numpy {result['machine']['numpy']}, numba "
             f"{result['machine']['numba']}, {result['machine']['numba_threads']} Numba threads); peak RSS of each "
             f"process (`ru_maxrss`), median of {result['repeats']} runs.  Snippet: {result['snippet_found']} "
             f"(sha256 {result['snippet_sha256'][:12]}).", "",
             f"**Target**: peak ≤ {FACTOR} × (reservoir bytes + mask bytes) + baseline.  Reservoir bytes: the "
             "largest single reservoir the snippet builds (the sum of both, which it holds at its end, in the last "
             "column); mask bytes: its tasks' masks as NumPy booleans, one byte per entry.  Baseline: the same "
             "interpreter after `import numpy, h5py, numba, hopfield_masks` and the snippet's calls on 3 tasks of "
             "320 entries (the Numba kernels loaded from its warmed cache, the thread pool started: a fixed "
             f"{_mb(now['peak_bytes']['imports_kernels'] - now['peak_bytes']['imports'])} over the imports); the "
             "ratio over the imports alone is shown too.", ""]
    header = ("| | peak RSS | baseline: imports + kernels | above it | ratio (largest) | ratio (sum) | "
              "baseline: imports | ratio over imports (largest) | snippet s |")
    lines += [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("before", "after"):
        r = result.get(name)
        if r is None:
            continue
        lines.append(f"| {name} ({r['source']}) | {_mb(r['peak_bytes']['snippet'])} | "
                     f"{_mb(r['peak_bytes']['imports_kernels'])} | {_mb(r['above_imports_kernels_bytes'])} | "
                     f"{r['ratio_imports_kernels_largest']:.2f} | {r['ratio_imports_kernels_sum']:.2f} | "
                     f"{_mb(r['peak_bytes']['imports'])} | {r['ratio_imports_largest']:.2f} | {r['snippet_wall_s']} |")
    lines += ["", "What the snippet built (after):", ""]
    lines += [f"- `encode_bank` → {c['report']}" for c in now["encodes"]]
    lines += [f"- masks: {now['mask_bytes']:,} B ({now['mask_bytes_counted_as']}); largest reservoir "
              f"{now['reservoir_bytes_largest']:,} B, both {now['reservoir_bytes_sum']:,} B; "
              f"{FACTOR} × (largest + masks) = {_mb(FACTOR * (now['reservoir_bytes_largest'] + now['mask_bytes']))}",
              f"- the snippet printed: {' / '.join(now['snippet_stdout'])}", "",
              f"**Verdict** (after, against the imports + kernels baseline, largest reservoir): "
              f"{'PASS' if now['pass'] else 'FAIL'} — {_mb(now['above_imports_kernels_bytes'])} above the baseline, "
              f"{now['ratio_imports_kernels_largest']:.2f} × (reservoir + masks), target ≤ {FACTOR}.  Against the "
              f"imports alone: {now['ratio_imports_largest']:.2f} × "
              f"({'within' if now['pass_imports_largest'] else 'over'} {FACTOR}; the difference is Numba's fixed cost)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None,
                        help="another copy of the library (a folder holding hopfield_masks/) measured as 'before'")
    parser.add_argument("--compare-label", default=None, help="what --compare is, for the table (default: its path)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    import numba
    import numpy

    snippet, found = readme_snippet()
    result = {"benchmark": "snippet_memory",
              "command": " ".join(["python benchmarks/bench_snippet_memory.py", *(sys.argv[1:] if argv is None
                                                                                   else argv)]),
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "numpy": numpy.__version__, "numba": numba.__version__, "cpu_count": os.cpu_count(),
                          "numba_threads": numba.config.NUMBA_NUM_THREADS},
              "repeats": args.repeats, "factor": FACTOR, "snippet_found": found,
              "snippet_sha256": hashlib.sha256(snippet.encode()).hexdigest(), "snippet": snippet}
    if args.compare is not None:
        result["before"] = measure(snippet, args.repeats, args.compare.resolve())
        if args.compare_label:
            result["before"]["source"] = args.compare_label
    result["after"] = measure(snippet, args.repeats, ROOT)
    result["pass"] = result["after"]["pass"]
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snippet_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "snippet_memory.md").write_text(text)
    return result


if __name__ == "__main__":
    main()
