"""Speed of the Hopfield numerics against the NumPy/BLAS operation each one is built around.

Three ratios, measured side by side in one run at ``N = 2048`` with float32
couplings learned by the Storkey rule (64 random patterns stored):

- ``async_ratio``: asynchronous recall of one 10%-noisy cue (every sweep
  until a sweep with no flip) / one float32 matrix-vector product ``W @ x``
  with NumPy.  Target <= 3.
- ``sync_ratio``: one synchronous recall step of 256 cues (``max_steps=1``:
  validation, BLAS product, sign-with-ties kernel, bookkeeping) / NumPy
  ``np.sign(S.astype(float32) @ W)``.  Target <= 1.2.  The full synchronous
  recall to convergence is reported too, against the same NumPy step repeated
  as many times as the recall ran steps (``sync_full_ratio``).
- ``storkey_ratio``: :meth:`HopfieldNetwork.store` of one pattern / one
  matrix-vector product.  Target <= 5.

Numba compilation (or loading from its cache) is triggered first and timed
separately as ``jit_warmup_s``.

Threads: the Numba kernels run on one core, while OpenBLAS would use every
core for the baselines.  On a shared machine multi-threaded BLAS timings swing
by orders of magnitude (a thread waits for a descheduled peer), so by default
BLAS is limited to ``blas_threads=1`` for every measurement, ours and the
baselines alike (through ``threadpoolctl`` when it is installed; the result
says whether the limit was applied).  The matvec with BLAS's default thread
count is reported alongside as ``matvec_default_threads_s``.  Each time is the median of ``repeats`` runs
with :func:`time.perf_counter`.  Nothing is written to disk: the caller
(``bench_storage.py``) stores the returned dict.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from hopfield_masks.errors import CapacityWarning
from hopfield_masks.network import HopfieldNetwork

__all__ = ["run", "markdown_rows", "TARGETS"]

#: Upper bounds the three ratios should stay under.
TARGETS = {"async_ratio": 3.0, "sync_ratio": 1.2, "storkey_ratio": 5.0}


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def _blas_threads(n: int | None) -> Iterator[int | None]:
    """Limit BLAS to ``n`` threads when threadpoolctl is available; yield the limit applied (None if none)."""
    if n is None:
        yield None
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its default thread count
        yield None
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield n


def _noisy(patterns: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    cues = patterns.copy()
    n = cues.shape[1]
    for row in cues:
        row[rng.choice(n, size=int(round(fraction * n)), replace=False)] *= -1
    return cues


def run(
    seed: int = 0,
    *,
    size: int = 2048,
    n_patterns: int = 64,
    n_cues: int = 256,
    repeats: int = 15,
    blas_threads: int | None = 1,
) -> dict:
    """Measure the three ratios; returns a JSON-safe dict of raw times (seconds), ratios and targets.

    ``blas_threads=None`` leaves BLAS at its default thread count.
    """
    rng = np.random.default_rng(seed)

    # 1. JIT warm-up on a tiny network: every kernel the timed calls use, compiled or loaded from cache.
    t0 = time.perf_counter()
    tiny = HopfieldNetwork(16, "storkey")
    tiny.store(rng.choice(np.array([-1, 1], np.int8), size=(2, 16)))
    tiny.recall(tiny_cue := rng.choice(np.array([-1, 1], np.int8), size=16), mode="async")
    tiny.recall(tiny_cue[None, :], mode="sync")
    jit_warmup_s = time.perf_counter() - t0

    # 2. A Storkey network at N = size with a few patterns, and the BLAS baselines.
    patterns = rng.choice(np.array([-1, 1], np.int8), size=(n_patterns, size))  # (P, N)
    net = HopfieldNetwork(size, "storkey", "float32")
    net.store(patterns)
    w = net.couplings  # (N, N) float32, read-only view
    x32 = patterns[0].astype(np.float32)  # (N,)
    matvec_default_s = _median_time(lambda: w @ x32, repeats)
    with _blas_threads(blas_threads) as applied:
        result = _measure(net, patterns, w, x32, rng, seed, n_cues, repeats)
    result.update(
        size=size, n_patterns=n_patterns, n_cues=n_cues, repeats=repeats, seed=seed,
        machine=platform.processor() or platform.machine(), blas_threads=applied,
        jit_warmup_s=jit_warmup_s, matvec_default_threads_s=matvec_default_s,
    )
    return result


def _measure(net, patterns, w, x32, rng, seed, n_cues, repeats) -> dict:
    """The timed part of :func:`run` (under the BLAS thread limit)."""
    n_patterns, size = patterns.shape
    matvec_s = _median_time(lambda: w @ x32, repeats)

    cue = _noisy(patterns[:1], 0.1, rng)[0]  # (N,)
    first = net.recall(cue, mode="async", seed=seed)
    async_s = _median_time(lambda: net.recall(cue, mode="async", seed=seed), repeats)

    cues = _noisy(patterns[np.arange(n_cues) % n_patterns], 0.1, rng)  # (C, N)
    numpy_step_s = _median_time(lambda: np.sign(cues.astype(np.float32) @ w), repeats)
    sync_step_s = _median_time(lambda: net.recall(cues, mode="sync", max_steps=1), repeats)
    full = net.recall(cues, mode="sync")
    sync_full_s = _median_time(lambda: net.recall(cues, mode="sync"), max(3, repeats // 3))
    sync_iterations = int(full.steps.max())

    fresh = iter(rng.choice(np.array([-1, 1], np.int8), size=(repeats, size)))  # drawn outside the timing

    def store_one() -> None:
        net.store(next(fresh))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)
        storkey_s = _median_time(store_one, repeats)

    return {
        "matvec_s": matvec_s,
        "async_recall_s": async_s,
        "async_sweeps": int(first.steps),
        "async_recovered": bool((first.states == patterns[0]).all()),
        "numpy_matmul_sign_s": numpy_step_s,
        "sync_step_s": sync_step_s,
        "sync_full_s": sync_full_s,
        "sync_full_steps": sync_iterations,
        "storkey_store_s": storkey_s,
        "async_ratio": async_s / matvec_s,
        "sync_ratio": sync_step_s / numpy_step_s,
        "sync_full_ratio": sync_full_s / (sync_iterations * numpy_step_s),
        "storkey_ratio": storkey_s / matvec_s,
        "targets": dict(TARGETS),
        "targets_met": {
            key: bool(value_ratio <= TARGETS[key])
            for key, value_ratio in (
                ("async_ratio", async_s / matvec_s),
                ("sync_ratio", sync_step_s / numpy_step_s),
                ("storkey_ratio", storkey_s / matvec_s),
            )
        },
    }


def markdown_rows(result: dict) -> list[str]:
    """Markdown table lines (header included) for a :func:`run` result."""
    ms = 1e3
    threads = result.get("blas_threads")
    rows = [
        "| measurement | time (ms) | baseline (ms) | ratio | target |",
        "|---|---:|---:|---:|---:|",
        f"| async recall, 10%-noisy cue, N={result['size']} ({result['async_sweeps']} sweeps) vs float32 matvec "
        f"| {result['async_recall_s'] * ms:.3f} | {result['matvec_s'] * ms:.3f} | {result['async_ratio']:.2f} "
        f"| <= {result['targets']['async_ratio']} |",
        f"| sync recall step, {result['n_cues']} cues vs NumPy matmul + sign "
        f"| {result['sync_step_s'] * ms:.3f} | {result['numpy_matmul_sign_s'] * ms:.3f} | {result['sync_ratio']:.2f} "
        f"| <= {result['targets']['sync_ratio']} |",
        f"| sync recall to convergence ({result['sync_full_steps']} steps) vs as many NumPy steps "
        f"| {result['sync_full_s'] * ms:.3f} | {result['sync_full_steps'] * result['numpy_matmul_sign_s'] * ms:.3f} "
        f"| {result['sync_full_ratio']:.2f} | - |",
        f"| Storkey store of one pattern vs float32 matvec "
        f"| {result['storkey_store_s'] * ms:.3f} | {result['matvec_s'] * ms:.3f} | {result['storkey_ratio']:.2f} "
        f"| <= {result['targets']['storkey_ratio']} |",
        f"| JIT warm-up (compile or cache load) | {result['jit_warmup_s'] * ms:.1f} | - | - | - |",
        f"| float32 matvec with default BLAS threads (timed rows use {threads or 'default'}) "
        f"| {result['matvec_default_threads_s'] * ms:.3f} | - | - | - |",
    ]
    return rows


if __name__ == "__main__":  # pragma: no cover - manual run
    import json

    res = run()
    print("\n".join(markdown_rows(res)))
    print(json.dumps(res, indent=2))
