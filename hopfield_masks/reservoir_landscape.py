"""The energy landscape of a reservoir's blocks: a flat state's gradient, sweeps and block-wise recall, and
recall's starting points (cues).

A flat ±1 state of ``P`` spins is cut into ``B`` blocks of ``N`` spins (the
last padded with copies of the first spins, see
:mod:`hopfield_masks.reservoir`); these functions take the networks and the
padded blocks and handle the copies: a copy's gradient is added to its
source's, and a sweep refreshes the copies right before the padded block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .errors import InvalidArgumentError, PatternShapeError
from .network import HopfieldNetwork
from .patterns import validate_states
from .recall.dynamics import RecallResult
from .validate import check_int

__all__ = ["flat_state", "score_array", "blocks_energy_gradient", "blocks_sweep", "blocks_recall", "make_cue",
           "seeded_keys"]


def flat_state(state: object, length: int, name: str) -> np.ndarray:
    """One flat int8 ±1 state of ``length`` spins, or an error naming ``name``."""
    s = validate_states(state, size=length, name=name)
    if s.ndim != 1:
        raise PatternShapeError(name, "one flat state (1-D)", f"shape {s.shape}")
    return s


def blocks_energy_gradient(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, pad_src: np.ndarray) -> np.ndarray:
    """``dE/ds`` of ``E(s) = sum_b E_b(pad(s)_b)``: a padded copy's gradient is added to its source's."""
    length = blocks.size - pad_src.size
    padded = np.concatenate([net.energy_gradient(b) for net, b in zip(networks, blocks)])  # (B*N,)
    grad = padded[:length].copy()  # (P,)
    np.add.at(grad, pad_src, padded[length:])  # chain rule through the copies
    return grad


def blocks_sweep(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, pad_src: np.ndarray,
                 external_field: object, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One asynchronous sweep of every block in order; returns the flat ``(P,)`` state and its flips.

    ``blocks`` ``(B, N)`` is the wrap-padded state; padded unit ``k`` (flat
    index ``P + k``) copies spin ``pad_src[k]``.
    """
    n_blocks, n = blocks.shape
    length = blocks.size - pad_src.size
    work = blocks.reshape(-1).copy()  # flat padded state, (B*N,)
    field = None
    if external_field is not None:
        f = np.asarray(external_field, dtype=np.float64)
        if f.shape != (length,):
            raise PatternShapeError("external_field", f"shape ({length},)", f"shape {f.shape}")
        field = np.concatenate([f, f[pad_src]])  # a copy feels its source's field, (P,) -> (B*N,)
    for b, net in enumerate(networks):
        sl = slice(b * n, (b + 1) * n)
        if b == n_blocks - 1 and pad_src.size:
            work[length:] = work[pad_src]  # sources may have flipped earlier in this sweep
        work[sl] = net.sweep(work[sl].copy(), None if field is None else field[sl], rng)[0]
    out = work[:length].copy()  # the copies are dropped, (P,)
    return out, int(np.count_nonzero(out != blocks.reshape(-1)[:length]))


def score_array(scores: object, length: int, name: str) -> np.ndarray:
    """Finite float64 scores of shape ``(length,)``, or an error naming ``name``."""
    a = np.asarray(scores)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise InvalidArgumentError(name, "a cue kind, masks, or real scores", type(scores).__name__)
    if a.shape != (length,):
        raise PatternShapeError(name, f"shape ({length},)", f"shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InvalidArgumentError(name, "finite values", "NaN or infinity")
    return a


def blocks_recall(networks: Sequence[HopfieldNetwork], blocks: np.ndarray, mode: str, max_steps: int,
                  seed: int) -> RecallResult:
    """Recall every block ``(B, N)`` independently with its network (seed ``seed + b``); one result row per block."""
    results = [net.recall(block, mode=mode, max_steps=max_steps, seed=seed + b)
               for b, (net, block) in enumerate(zip(networks, blocks))]
    states = np.stack([r.states for r in results])  # B x (N,) -> (B, N)
    steps, converged = (np.array([getattr(r, k) for r in results]) for k in ("steps", "converged"))  # (B,)
    return RecallResult(states=states, steps=steps, converged=converged)


def seeded_keys(key_seed: int, tasks: object, shape: tuple[int, ...]) -> np.ndarray:
    """Task keys, int8 ±1 ``(T, *shape)``: task ``t``'s from ``SeedSequence(key_seed, spawn_key=(t,))``.

    Keys are regenerated from the seed, never stored (``docs/FORMAT.md``).
    """
    index = np.asarray(tasks)
    if index.ndim != 1 or (index.size and (index.dtype.kind not in "iu" or index.min() < 0)):
        raise InvalidArgumentError("tasks", "a 1-D sequence of task indices >= 0", repr(tasks)[:200])
    out = np.empty((index.size, *shape), np.int8)
    for i, t in enumerate(index.tolist()):
        rng = np.random.default_rng(np.random.SeedSequence(key_seed, spawn_key=(int(t),)))
        out[i] = 2 * rng.integers(0, 2, size=shape, dtype=np.int8) - 1
    return out


def make_cue(kind: object, length: int, seed: int, mean: Callable[[], np.ndarray],
             reference: Callable[[], np.ndarray]) -> np.ndarray:
    """The cue of :meth:`Reservoir.cue <hopfield_masks.reservoir.Reservoir.cue>`, float64 ``(length,)``.

    ``mean`` and ``reference`` are called only when the kind needs them.

    Examples
    --------
    >>> make_cue("noisy:0.5", 4, 0, None, lambda: np.ones(4, np.int8))
    array([ 1.,  1., -1., -1.])
    """
    expected = "'mean', 'random' or 'noisy:<p>' with 0 <= p <= 1"
    if not isinstance(kind, str):
        raise InvalidArgumentError("kind", expected, repr(kind))
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    if kind == "mean":
        return mean()
    if kind == "random":
        return rng.choice(np.array([-1.0, 1.0]), size=length)
    p = math.nan
    if kind.startswith("noisy:"):
        try:
            p = float(kind[len("noisy:"):])
        except ValueError:
            pass
    if not 0.0 <= p <= 1.0:
        raise InvalidArgumentError("kind", expected, repr(kind))
    state = reference().astype(np.float64)  # (P,)
    # exactly round(p * P) flips, not a Bernoulli draw per spin: the noise level is then what was asked for
    state[rng.choice(length, size=round(p * length), replace=False)] *= -1.0
    return state
