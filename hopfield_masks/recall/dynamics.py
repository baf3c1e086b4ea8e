"""Synchronous and asynchronous recall loops over a batch of cues.

Rules of the dynamics (the same everywhere in the package):

- the total field of unit ``i`` is ``scale * (W s)_i + b_i`` with an optional
  external field ``b``; the unit takes the sign of the total field, and a
  unit whose total field is exactly 0 **keeps its spin** (ties);
- **asynchronous**: one step is one sweep over all units in a random order
  drawn afresh for each sweep from a generator seeded by ``(seed, cue index)``,
  so a cue's result does not depend on the other cues in the batch; fields are
  kept and updated in O(N) per flip (:mod:`hopfield_masks.recall._kernels`);
- **synchronous**: one step updates every unit from the fields of the previous
  state (BLAS matrix product, then a sign kernel); it may end in a 2-cycle;
- a cue has **converged** when a step changes nothing; ``steps`` counts the
  steps run, including that last, unchanged one.  A cue that still changes at
  ``max_steps`` is reported with ``converged = False``; no
  :class:`~hopfield_masks.errors.ConvergenceWarning` is issued unless
  ``warn=True``.

Asynchronous updates need symmetric couplings (the kernel reads row ``i`` as
column ``i``); the public functions check it, the network (whose rules keep
the matrix symmetric) skips the check.

Examples
--------
>>> import numpy as np
>>> x = np.array([1, -1, 1, -1, 1, 1], np.int8)
>>> w = (np.outer(x, x) - np.eye(6)).astype(np.float32) / 6
>>> cue = x.copy(); cue[:2] *= -1
>>> res = recall(w, cue, mode="async", seed=0)
>>> bool((res.states == x).all()), bool(res.converged), int(res.steps)
(True, True, 2)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, InvalidArgumentError
from ..patterns import validate_states
from ..validate import check_int
from .energy import _products, validate_couplings, validate_scale

__all__ = ["RecallResult", "recall", "recall_async", "recall_sync", "async_sweep"]

_MODES = ("async", "sync")


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarray fields with == has no single truth value
class RecallResult:
    """Outcome of recall from one cue ``(N,)`` or a batch ``(k, N)``.

    Attributes
    ----------
    states : ndarray
        int8 final states, the shape of the cues.
    steps : ndarray
        int64 steps run per cue, shape ``cues.shape[:-1]`` (``(k,)`` for a batch, ``()`` for one cue).
    converged : ndarray
        bool per cue, same shape as ``steps``: True when the last step changed nothing.
    """

    states: np.ndarray
    steps: np.ndarray
    converged: np.ndarray

    @property
    def all_converged(self) -> bool:
        """True when every cue reached a fixed point."""
        return bool(np.all(self.converged))


def _as_rng(rng_or_seed: object) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(check_int("seed", rng_or_seed, low=0))


def _check_external(external_field: object, cues: np.ndarray) -> np.ndarray:
    """External field as float64 (1, N) (shared) or (k, N) (one per cue); zeros when None."""
    n = cues.shape[-1]
    if external_field is None:
        return np.zeros((1, n), np.float64)
    b = np.asarray(external_field)
    if b.dtype.kind not in "biuf":
        raise InvalidArgumentError("external_field", "a real-valued array", f"dtype {b.dtype}")
    allowed = [(n,)] if cues.ndim == 1 else [(n,), cues.shape]
    if b.shape not in allowed:
        raise InvalidArgumentError("external_field", f"shape {' or '.join(map(str, allowed))}", f"shape {b.shape}")
    b = np.ascontiguousarray(b, dtype=np.float64).reshape(-1, n)  # (N,) -> (1, N); (k, N) unchanged
    if not np.isfinite(b).all():
        raise InvalidArgumentError("external_field", "finite values", "NaN or infinity")
    return b


def _finish(states: np.ndarray, steps: np.ndarray, converged: np.ndarray, shape: tuple, warn: bool) -> RecallResult:
    if warn and not converged.all():
        warnings.warn(
            ConvergenceWarning(f"{int((~converged).sum())} of {converged.size} cues did not converge"),
            stacklevel=4,
        )
    batch_shape = shape[:-1]
    return RecallResult(states.reshape(shape), steps.reshape(batch_shape), converged.reshape(batch_shape))


def _recall_trusted(
    w: np.ndarray,
    scale: float,
    cues: object,
    *,
    mode: str = "async",
    max_steps: int = 100,
    seed: int = 0,
    external_field: object = None,
    warn: bool = False,
) -> RecallResult:
    """Recall with couplings already validated (symmetric, C-contiguous); everything else is checked here."""
    from . import _kernels  # Numba (and LLVM) load on first use, not on import
    if mode not in _MODES:
        raise InvalidArgumentError("mode", f"one of {list(_MODES)}", repr(mode))
    steps_max = check_int("max_steps", max_steps, low=1)
    seed = check_int("seed", seed, low=0)
    c = validate_states(cues, size=w.shape[0], name="cues")
    ext = _check_external(external_field, c)
    states = c.reshape(-1, c.shape[-1]).copy()  # (k, N), recall works on a copy
    k, n = states.shape
    steps = np.zeros(k, np.int64)
    converged = np.zeros(k, bool)
    if mode == "async":
        fields = _products(w, states)  # (k, N) float64, unscaled W s
        wk, table = _kernels.kernel_couplings(w)
        for i in range(k):
            rng = np.random.default_rng([seed, i])  # per-cue stream: batch composition does not matter
            e = ext[0] if ext.shape[0] == 1 else ext[i]
            for _ in range(steps_max):
                flips = _kernels.async_sweep(wk, table, scale, states[i], fields[i], e, rng.permutation(n))
                steps[i] += 1
                if flips == 0:
                    converged[i] = True
                    break
    else:
        active = np.arange(k)
        for _ in range(steps_max):
            if active.size == 0:
                break
            sub = states[active]  # (a, N) copy of the cues still moving
            fields = _products(w, sub, as_float64=False)  # (a, N)
            e = ext if ext.shape[0] == 1 else ext[active]
            changed = np.empty(active.size, np.int64)
            _kernels.sync_update(fields, scale, e, sub, changed)
            states[active] = sub
            steps[active] += 1
            done = changed == 0
            converged[active[done]] = True
            active = active[~done]
    return _finish(states, steps, converged, c.shape, warn)


def _sweep_trusted(
    w: np.ndarray, scale: float, state: object, external_field: object = None, rng_or_seed: object = 0
) -> tuple[np.ndarray, int]:
    """One asynchronous sweep with couplings already validated."""
    from . import _kernels  # Numba (and LLVM) load on first use, not on import
    s = validate_states(state, size=w.shape[0], name="state")
    if s.ndim != 1:
        raise InvalidArgumentError("state", "one state of shape (N,)", f"shape {s.shape}")
    ext = _check_external(external_field, s)[0]
    rng = _as_rng(rng_or_seed)
    new = s.copy()
    field = _products(w, new[None, :])[0]  # (1, N) -> (N,)
    wk, table = _kernels.kernel_couplings(w)
    flips = _kernels.async_sweep(wk, table, scale, new, field, ext, rng.permutation(w.shape[0]))
    return new, int(flips)


def recall(
    weights: np.ndarray,
    cues: object,
    *,
    mode: str = "async",
    max_steps: int = 100,
    seed: int = 0,
    external_field: object = None,
    scale: float = 1.0,
    warn: bool = False,
) -> RecallResult:
    """Run the dynamics from each cue until it stops changing or ``max_steps`` steps have run.

    Parameters
    ----------
    weights : ndarray
        Symmetric ``(N, N)`` couplings (float64/float32/float16/int8); the real coupling is ``scale * weights``.
    cues : array_like
        One state ``(N,)`` or a batch ``(k, N)`` of ±1 spins.
    mode : {"async", "sync"}
        Asynchronous sweeps in a seeded random order, or synchronous updates.
    max_steps : int
        Sweeps (async) or updates (sync) allowed per cue, >= 1.
    seed : int
        Seed of the sweep orders (async only; sync is deterministic).
    external_field : array_like, optional
        Added to every field: ``(N,)`` shared by all cues, or ``(k, N)``.
    warn : bool
        Issue a ConvergenceWarning when a cue did not converge.

    Raises
    ------
    InvalidArgumentError, PatternError, PatternShapeError
        Bad couplings (including asymmetric), mode, max_steps, seed, cues or external field.
    """
    w = validate_couplings(weights, check_symmetric=True)
    return _recall_trusted(
        w, validate_scale(scale), cues, mode=mode, max_steps=max_steps, seed=seed,
        external_field=external_field, warn=warn,
    )


def recall_async(weights: np.ndarray, cues: object, **kwargs: object) -> RecallResult:
    """:func:`recall` with ``mode="async"`` (same keyword arguments)."""
    return recall(weights, cues, mode="async", **kwargs)  # type: ignore[arg-type]


def recall_sync(weights: np.ndarray, cues: object, **kwargs: object) -> RecallResult:
    """:func:`recall` with ``mode="sync"`` (same keyword arguments; ``seed`` is accepted and unused)."""
    return recall(weights, cues, mode="sync", **kwargs)  # type: ignore[arg-type]


def async_sweep(
    weights: np.ndarray,
    state: object,
    external_field: object = None,
    rng_or_seed: object = 0,
    *,
    scale: float = 1.0,
) -> tuple[np.ndarray, int]:
    """One asynchronous sweep of one state ``(N,)`` in a random order; returns ``(new_state, n_flips)``.

    ``rng_or_seed`` is a :class:`numpy.random.Generator` (advanced by one
    permutation) or an int seed.  ``state`` is not modified.

    Examples
    --------
    >>> w = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> async_sweep(w, np.array([1, -1], np.int8), rng_or_seed=0)[1]
    1
    """
    w = validate_couplings(weights, check_symmetric=True)
    return _sweep_trusted(w, validate_scale(scale), state, external_field, rng_or_seed)
