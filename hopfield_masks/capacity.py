"""Capacity sweep: how many random patterns a network keeps, measured over a range of loads.

For each load ``α`` the sweep stores ``round(α N)`` random ±1 patterns in a fresh
network and measures

- the fraction of stored patterns that are **fixed points** (no unit would
  flip: ``s_i h_i >= 0`` for all ``i``);
- the fraction **recovered exactly** from a cue with ``round(noise N)`` spins
  flipped at random positions;
- the mean **overlap** ``m = x · s / N`` between each pattern and its recall;
- the fraction of recalls that converged within ``max_steps``.

Patterns and cues for a load are drawn from a generator seeded by
``(seed, n_patterns)``, so one load's row does not depend on the other loads.
Loads beyond the rule's capacity are the point of a sweep, so the network's
:class:`~hopfield_masks.errors.CapacityWarning` is silenced here.

``rule="perceptron"`` measures the learned ±1 couplings of :mod:`hopfield_masks.binary` without keys
(``N`` a multiple of 64): one row of ``N`` couplings per unit, learnt with a margin of ``sqrt(N)/2``
so that stored patterns have basins; ``dtype`` is ignored (the couplings are bits) and recall is
asynchronous.

The network size is checked before any work (:func:`check_sweep_size`): the
float32 matrix every rule updates must fit the per-array ceiling and the
sweep's working memory (couplings, a float64 temporary of the same shape, the
patterns, cues and recalled states) what this process can hold.

Examples
--------
>>> rows = capacity_sweep(64, "storkey", [0.05, 0.1], seed=0)
>>> [(r.n_patterns, r.fixed_point_fraction) for r in rows]
[(3, 1.0), (6, 1.0)]
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .budget import check_memory
from .safety.files import atomic_path
from .errors import CapacityWarning, InvalidArgumentError
from .binary.learning import WORD_BITS, PerceptronRule, fit_couplings, recall_couplings
from .network import HopfieldNetwork
from .recall.dynamics import RecallResult
from .rules import LearningRule, get_rule
from .rules.base import check_units

__all__ = ["CapacityRow", "capacity_sweep", "sweep_rule", "rule_capacity", "check_sweep_size", "default_loads",
           "plot_capacity", "require_plotting"]

#: Bytes per coupling held in memory (sign couplings are read as an int8 matrix).
_MEMORY_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "sign": 1}
#: Highest load a sweep accepts (patterns per unit).
_MAX_LOAD = 4.0


@dataclass(frozen=True)
class CapacityRow:
    """One load of a capacity sweep (fractions in [0, 1]; ``mean_overlap`` in [-1, 1])."""

    load: float
    n_patterns: int
    fixed_point_fraction: float
    recovered_fraction: float
    mean_overlap: float
    converged_fraction: float

    def to_dict(self) -> dict[str, float | int]:
        """JSON-safe dict of the fields."""
        return asdict(self)


def check_sweep_size(size: object, dtype: str = "float32", max_load: float = _MAX_LOAD) -> int:
    """``size`` as an int, after checking that a sweep of networks of that size fits this process.

    The largest array is the float32 matrix the rule updates (``4 N²`` bytes;
    float16, int8 and sign networks keep it beside their couplings while
    storing) or the float64 temporaries of ``round(max_load * N)`` patterns;
    the working set adds the couplings, a float64 ``(N, N)`` temporary and the
    int8 patterns, cues and recalled states.

    Raises
    ------
    InvalidArgumentError
        Naming ``size``: not an integer >= 2, or more than the per-array ceiling or this process's memory.

    Examples
    --------
    >>> check_sweep_size(256)
    256
    >>> check_sweep_size(2**64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: size: expected a value whose largest array fits the per-array ceiling ...
    """
    n = check_units(size, name="size")
    load = float(max_load) if isinstance(max_load, (int, float)) and math.isfinite(max_load) else _MAX_LOAD
    patterns = max(1, round(min(max(load, 0.0), _MAX_LOAD) * n)) * n  # entries of one (k, N) array
    itemsize = _MEMORY_ITEMSIZE.get(dtype, 4)
    work = 0 if dtype == "float32" else 4  # the float32 work copy (sign: the accumulator)
    check_memory("size", f"{n:,} units", largest_array=max(4 * n * n, 8 * patterns),
                 working_set=n * n * (itemsize + work + 8) + 20 * patterns,
                 what=f"a {dtype} network of {n:,} units and up to {patterns // n:,} patterns")
    return n


def sweep_rule(rule: object) -> LearningRule | PerceptronRule:
    """The rule a sweep runs: ``"perceptron"`` (or a :class:`PerceptronRule`), or a Hopfield rule of the registry."""
    return PerceptronRule() if rule == PerceptronRule.rule_id else rule if isinstance(rule, PerceptronRule) \
        else get_rule(rule)


def rule_capacity(rule: LearningRule | PerceptronRule, n: int) -> float:
    """The rule's capacity, in patterns, for ``n`` units (no keys)."""
    return rule.capacity(0, n) if isinstance(rule, PerceptronRule) else rule.capacity(n)


def default_loads(size: int, rule: str | LearningRule = "storkey") -> list[float]:
    """Loads from a quarter to twice the rule's capacity per unit (capped at 1.5), 8 points, rounded to 4 digits.

    Examples
    --------
    >>> default_loads(1000, "hebbian")
    [0.0181, 0.0362, 0.0543, 0.0724, 0.0905, 0.1086, 0.1267, 0.1448]
    """
    n = check_sweep_size(size, max_load=1.5)
    per_unit = rule_capacity(sweep_rule(rule), n) / n
    top = min(2.0 * per_unit, 1.5)
    return [round(top * i / 8, 4) for i in range(1, 9)]


def _check_loads(loads: Sequence[float], size: int) -> list[float]:
    try:
        values = [float(x) for x in loads]
    except (TypeError, ValueError):
        raise InvalidArgumentError("loads", "a sequence of numbers", repr(loads)) from None
    if not values:
        raise InvalidArgumentError("loads", "at least one load", "an empty sequence")
    for x in values:
        if not math.isfinite(x) or x <= 0.0 or round(x * size) < 1 or x > _MAX_LOAD:
            raise InvalidArgumentError(
                "loads", f"loads in (0, {_MAX_LOAD:g}] with at least one pattern each (load >= {0.5 / size:.3g})", x
            )
    return values


def capacity_sweep(
    size: int,
    rule: str | LearningRule = "storkey",
    loads: Sequence[float] | None = None,
    noise: float = 0.1,
    seed: int = 0,
    dtype: str = "float32",
    mode: str = "async",
    max_steps: int = 50,
    callback: Callable[[CapacityRow], None] | None = None,
) -> list[CapacityRow]:
    """Measure fixed points and noisy-cue recovery of random patterns at each load.

    Parameters
    ----------
    size : int
        Units ``N`` per network.
    rule : str or LearningRule
        Learning rule id or instance.
    loads : sequence of float, optional
        Patterns per unit; ``round(load * size)`` patterns are stored. Default :func:`default_loads`.
    noise : float
        Fraction of spins flipped in each cue, in [0, 0.5].
    seed : int
        Seed of the patterns, the cues and the sweep orders.
    dtype, mode, max_steps
        Passed to :class:`~hopfield_masks.network.HopfieldNetwork` and its ``recall``.
    callback : callable, optional
        Called with each row as soon as it is measured (progress reporting).

    Returns
    -------
    list of CapacityRow
        One row per load, in the given order.
    """
    n = check_units(size, name="size")
    rule_obj = sweep_rule(rule)
    if isinstance(rule_obj, PerceptronRule) and n % WORD_BITS:
        raise InvalidArgumentError("size", f"a multiple of {WORD_BITS} units for the perceptron rule", n)
    values = default_loads(n, rule_obj) if loads is None else _check_loads(loads, n)
    check_sweep_size(n, dtype, max(values))  # before any allocation
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= float(noise) <= 0.5:
        raise InvalidArgumentError("noise", "a fraction in [0, 0.5]", repr(noise))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError("seed", "an integer >= 0", repr(seed))
    n_flip = int(round(float(noise) * n))
    rows = []
    for load in values:
        k = int(round(load * n))
        rng = np.random.default_rng([int(seed), k])
        patterns = rng.choice(np.array([-1, 1], np.int8), size=(k, n))  # (k, N)
        cues = patterns.copy()
        for row in cues:  # flip exactly n_flip distinct spins per cue
            row[rng.choice(n, size=n_flip, replace=False)] *= -1
        if isinstance(rule_obj, PerceptronRule):
            result, fixed = _perceptron_recall(rule_obj, patterns, cues, max_steps, seed)
        else:
            net = HopfieldNetwork(n, rule_obj, dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CapacityWarning)
                net.store(patterns)
            result = net.recall(cues, mode=mode, max_steps=max_steps, seed=int(seed))
            fixed = net.is_fixed_point(patterns)
        # x . s / N = (N - 2 * mismatches) / N for ±1 spins: no (k, N) float64 product
        overlap = (n - 2.0 * np.count_nonzero(result.states != patterns, axis=1)) / n  # (k,)
        point = CapacityRow(
            load=float(load),
            n_patterns=k,
            fixed_point_fraction=float(np.mean(fixed)),
            recovered_fraction=float(np.mean((result.states == patterns).all(axis=1))),
            mean_overlap=float(overlap.mean()),
            converged_fraction=float(np.mean(result.converged)),
        )
        rows.append(point)
        if callback is not None:
            callback(point)
    return rows


def _perceptron_recall(rule: PerceptronRule, patterns: np.ndarray, cues: np.ndarray, max_steps: int,
                       seed: int) -> tuple[RecallResult, np.ndarray]:
    """Learn ±1 couplings for ``patterns`` (no keys, margin ``sqrt(N)/2``), recall from ``cues``; and the fixed points."""
    k, n = patterns.shape
    margin = replace(rule, kappa_full=max(rule.kappa_full, math.isqrt(n) // 2), seed=int(seed))
    fit = fit_couplings(np.zeros((k, 0), np.int8), patterns[:, None, :], margin)
    none = np.zeros((k, 0), np.int8)
    states, sweeps, converged = recall_couplings(fit.couplings, none, start=cues[:, None, :], max_sweeps=max_steps)
    still, _, _ = recall_couplings(fit.couplings, none, start=patterns[:, None, :], max_sweeps=1)
    return RecallResult(states=states[:, 0], steps=sweeps, converged=converged), (still[:, 0] == patterns).all(1)


def require_plotting(argument: str = "plot") -> None:
    """Raise a one-line error naming the ``plot`` extra when matplotlib is not installed.

    Call it before long work whose result is to be plotted, so a missing extra fails at once.
    """
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InvalidArgumentError(
            argument, "matplotlib for plots (pip install 'supsup-store[plot]')", "an environment without matplotlib"
        )


def plot_capacity(rows: Sequence[CapacityRow], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Save the fixed-point and recovery fractions against the load as a PNG at ``path`` (written atomically).

    matplotlib is imported here, with the Agg canvas only (no GUI backend is
    selected, no global state is changed), so importing this module stays cheap.
    """
    if not rows:
        raise InvalidArgumentError("rows", "at least one capacity row", "an empty sequence")
    require_plotting()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loads = [r.load for r in rows]
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(loads, [r.fixed_point_fraction for r in rows], "o-", label="stored patterns that are fixed points")
    ax.plot(loads, [r.recovered_fraction for r in rows], "s-", label="recovered exactly from noisy cue")
    ax.plot(loads, [r.mean_overlap for r in rows], "^--", label="mean overlap after recall")
    ax.set_xlabel("load (patterns per unit)")
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    if title:
        ax.set_title(title)
    dest = Path(path).expanduser()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest
