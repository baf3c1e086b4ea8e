"""Guided recall: settle into a stored attractor that also minimises an external objective.

Two procedures share the :class:`~hopfield_masks.recall.guidance.Guidance`
interface and the :class:`EnergyLandscape` interface (a single
:class:`~hopfield_masks.network.HopfieldNetwork`, wrapped by
:class:`NetworkLandscape`, or a :class:`~hopfield_masks.reservoir.Reservoir`):

- :func:`score_descent` is the reference code's ``hopfield_recovery``
  (REFERENCE.md §2.8): SGD on continuous scores ``u``, the state being
  ``sign(u)``; the objective's weight ramps down from about 1 to exactly 0
  while the energy's weight ramps up to ``gamma``; the result is read by sign.
- :func:`guided_dynamics` runs ordinary asynchronous Hopfield sweeps whose
  local field is biased by the (ramped, rescaled) negative objective gradient,
  then plain sweeps until a fixed point.

Without guidance both are plain, unguided energy descent from the cue.

Examples
--------
>>> import numpy as np
>>> from hopfield_masks.recall.guidance import HammingGuidance
>>> from hopfield_masks.network import HopfieldNetwork
>>> xi = np.array([[1, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1]], dtype=np.int8)
>>> net = HopfieldNetwork(8, "storkey"); net.store(xi)
>>> cue = xi[0].copy(); cue[0] = -1                                    # one flip away from pattern 0
>>> bool((score_descent(net, cue).state == xi[0]).all())
True
>>> bool((score_descent(net, cue, HammingGuidance(xi[1], scale=2e-3)).state == xi[1]).all())
True
>>> bool((guided_dynamics(net, cue, HammingGuidance(xi[1])).state == xi[1]).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidArgumentError, PatternShapeError
from ..patterns import validate_states
from ..validate import check_choice, check_float, check_int
from .guidance import Guidance, guidance_gradient, validate_guidance

__all__ = [
    "EnergyLandscape",
    "NetworkLandscape",
    "GuidedRecallResult",
    "as_landscape",
    "score_descent",
    "guided_dynamics",
    "RAMPS",
    "BIAS_PER_RMS",
]

#: Guided dynamics at strength 1 and full weight bias each unit by this many local-field RMS (see guided_dynamics).
BIAS_PER_RMS = 2.0
#: Ramp shapes: progress ``x`` in [0, 1] -> fraction of the way from "all objective" to "all energy".
RAMPS: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,  # the reference code's choice
    "cosine": lambda x: 0.5 * (1.0 - math.cos(math.pi * x)),
}


@runtime_checkable
class EnergyLandscape(Protocol):
    """What the guided loops need from a Hopfield memory (a network, or a reservoir of networks).

    ``length`` is the pattern length ``P``; states are flat int8 ±1 of that
    length.  ``energy_gradient`` is ``dE/ds``, float64 ``(P,)`` (for a
    symmetric coupling matrix, minus the local field).  ``sweep`` runs one
    asynchronous sweep with an optional float64 ``(P,)`` external field added
    to the local field, drawing its update order from ``rng``, and returns the
    new state and the number of spins that flipped.
    """

    @property
    def length(self) -> int: ...  # pragma: no cover - protocol

    def energy(self, state: np.ndarray) -> float: ...  # pragma: no cover - protocol

    def energy_gradient(self, state: np.ndarray) -> np.ndarray: ...  # pragma: no cover - protocol

    def sweep(
        self, state: np.ndarray, external_field: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]: ...  # pragma: no cover - protocol


class NetworkLandscape:
    """Adapt one :class:`~hopfield_masks.network.HopfieldNetwork` to :class:`EnergyLandscape`.

    Parameters
    ----------
    network : HopfieldNetwork
        Any object with ``size``, ``energy``, ``energy_gradient`` and ``sweep``.
    """

    def __init__(self, network: object) -> None:
        for attr in ("size", "energy", "energy_gradient", "sweep"):
            if not hasattr(network, attr):
                raise InvalidArgumentError("network", "a HopfieldNetwork", f"{type(network).__name__} without {attr!r}")
        self.network = network

    @property
    def length(self) -> int:
        """The network size ``N`` (the pattern length)."""
        return int(self.network.size)

    def energy(self, state: np.ndarray) -> float:
        """``-1/2 s^T W s``."""
        return float(self.network.energy(state))

    def energy_gradient(self, state: np.ndarray) -> np.ndarray:
        """``-1/2 (W + W^T) s`` as float64 ``(N,)``."""
        return np.asarray(self.network.energy_gradient(state), dtype=np.float64)

    def sweep(self, state, external_field, rng):
        """One asynchronous sweep of the network (see ``HopfieldNetwork.sweep``)."""
        new_state, n_flips = self.network.sweep(state, external_field, rng)
        return np.asarray(new_state, dtype=np.int8), int(n_flips)


def as_landscape(obj: object, *, name: str = "landscape") -> EnergyLandscape:
    """Return ``obj`` if it is an :class:`EnergyLandscape`, wrap it if it is a network, else raise."""
    if isinstance(obj, EnergyLandscape):
        return obj
    if all(hasattr(obj, a) for a in ("size", "energy", "energy_gradient", "sweep")):
        return NetworkLandscape(obj)
    raise InvalidArgumentError(name, "a HopfieldNetwork, a Reservoir or an EnergyLandscape", type(obj).__name__)


@dataclass
class GuidedRecallResult:
    """Outcome of :func:`score_descent` or :func:`guided_dynamics`.

    Attributes
    ----------
    state : ndarray
        Final int8 ±1 state ``(P,)``.
    steps_run : int
        Steps (score descent) or sweeps (dynamics) executed.
    steps_to_final : int
        First step after which the state no longer changed (0: the cue itself).
    history : dict[str, ndarray]
        Per-step arrays of length ``steps_run``: ``"flips"`` (spins changed by
        the step), ``"energy"`` (energy after the step), and the weights used
        (``"objective_weight"``/``"energy_weight"`` or ``"guidance_weight"``).
    converged : bool
        Dynamics: a sweep without guidance made no flip.  Score descent: the
        last step changed no spin.
    """

    state: np.ndarray
    steps_run: int
    steps_to_final: int
    history: dict[str, np.ndarray] = field(default_factory=dict)
    converged: bool = False


def _sign(u: np.ndarray) -> np.ndarray:
    """Spins of scores: ``+1`` where ``u >= 0`` (so a zero score keeps the unit, mask ``1[u >= 0]``)."""
    return np.where(u >= 0, 1, -1).astype(np.int8)


def _is_numeric(x: object) -> bool:
    a = np.asarray(x)
    return a.dtype != object and (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) and not np.iscomplexobj(a)


def _check_ramp(ramp: object) -> Callable[[float], float]:
    return RAMPS[check_choice("ramp", ramp, sorted(RAMPS))]


def _landscape_gradient(land: EnergyLandscape, state: np.ndarray) -> np.ndarray:
    grad = np.asarray(land.energy_gradient(state), dtype=np.float64)
    if grad.shape != state.shape:
        raise PatternShapeError("landscape.energy_gradient(state)", f"shape {state.shape}", f"shape {grad.shape}")
    return grad


def _steps_to_final(flips: list[int]) -> int:
    """Index (1-based) of the last step that changed a spin, 0 if none did."""
    changed = np.flatnonzero(np.asarray(flips, dtype=np.int64))
    return int(changed[-1]) + 1 if changed.size else 0


def score_descent(
    landscape: object,
    cue_scores: object,
    guidance: Guidance | None = None,
    *,
    n_steps: int = 30,
    lr: float = 500.0,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    gamma: float = 1.5e-3,
    ramp: str = "linear",
    callback: Callable[[int, np.ndarray], object] | None = None,
) -> GuidedRecallResult:
    """The reference code's recovery: momentum SGD on continuous scores, read out by sign.

    At step ``b = 1..n_steps`` with ramp progress ``r = ramp(b / n_steps)``
    (``b / n_steps`` for ``"linear"``), the loss is
    ``(1 - r) * objective(s) + gamma * r * E(s)`` with ``s = sign(u)``
    (0 -> +1).  The straight-through estimator of the reference treats the
    mask ``1[u >= 0]`` as the identity in the backward pass, so
    ``ds/du = 2`` and ``grad_u = (1 - r) * 2 * g(s) + gamma * r * 2 * dE/ds``.
    The update is ``torch.optim.SGD``'s (no dampening, no Nesterov):
    ``buf = momentum * buf + (grad_u + weight_decay * u)``, ``u -= lr * buf``.
    The defaults are the reference's (REFERENCE.md §2.8): 30 steps (one per
    test batch), lr 500, momentum 0.9, weight decay 1e-4, gamma 1.5e-3.

    Parameters
    ----------
    landscape : EnergyLandscape or HopfieldNetwork
        The memory; a network is wrapped with :class:`NetworkLandscape`.
    cue_scores : array_like
        Finite starting scores ``(P,)``; e.g. the mean ±1 state of the stored
        tasks (the reference's start) or a ±1 cue.
    guidance : Guidance, optional
        Objective gradient; ``None`` gives plain (ramped) energy descent.  It is
        called once per step while its weight is positive (not on the last
        step of a linear ramp).
    callback : callable, optional
        ``callback(step, state)`` after each step with a copy of the state
        (diagnostics, e.g. the Hamming distance to a known mask).

    Returns
    -------
    GuidedRecallResult
        ``history`` holds ``flips``, ``energy``, ``objective_weight`` and
        ``energy_weight`` per step.

    Notes
    -----
    With the reference's knobs the scores behave like an under-damped
    oscillator: weight decay is a spring of stiffness ``lr * weight_decay =
    0.05`` per step and momentum 0.9 damps it only to ``|root| = sqrt(0.9)``,
    a period of about 28 steps.  A guidance gradient much larger than the
    energy's (``2 * gamma * |h|``, about 2e-3 for unit-scale couplings) drives
    the scores far out; when its weight ramps to zero the spring swings them
    back through zero and the read-out can land on the *negated* target
    (itself an attractor, since ``E(-s) = E(s)``).  Keep the guidance gradient
    within about an order of magnitude of the energy gradient, or lower
    ``lr`` / ``weight_decay``.
    """
    land = as_landscape(landscape)
    length = int(land.length)
    u = np.array(cue_scores, dtype=np.float64, copy=True) if _is_numeric(cue_scores) else None
    if u is None:
        raise InvalidArgumentError("cue_scores", "a numeric array", type(cue_scores).__name__)
    if u.shape != (length,):
        raise PatternShapeError("cue_scores", f"shape ({length},)", f"shape {u.shape}")
    if not np.isfinite(u).all():
        raise InvalidArgumentError("cue_scores", "finite values", "NaN or infinity")
    guidance = validate_guidance(guidance)
    n_steps = check_int("n_steps", n_steps, low=1)
    lr = check_float("lr", lr, low=0)
    momentum = check_float("momentum", momentum, low=0, high=1, high_open=True)
    weight_decay = check_float("weight_decay", weight_decay, low=0)
    gamma = check_float("gamma", gamma, low=0)
    ramp_fn = _check_ramp(ramp)

    buf = np.zeros(length)  # momentum buffer, (P,)
    state = _sign(u)
    flips, energies, w_objs, w_es = [], [], [], []
    for b in range(1, n_steps + 1):
        r = ramp_fn(b / n_steps)
        w_obj, w_e = 1.0 - r, gamma * r
        grad = (2.0 * w_e) * _landscape_gradient(land, state)  # chain rule through ds/du = 2
        if guidance is not None and w_obj > 0:
            grad += (2.0 * w_obj) * guidance_gradient(guidance, state)
        buf = momentum * buf + (grad + weight_decay * u)  # torch's SGD: weight decay joins the gradient
        u -= lr * buf
        new_state = _sign(u)
        flips.append(int(np.count_nonzero(new_state != state)))
        state = new_state
        energies.append(float(land.energy(state)))
        w_objs.append(w_obj)
        w_es.append(w_e)
        if callback is not None:
            callback(b, state.copy())
    history = {
        "flips": np.asarray(flips, dtype=np.int64),
        "energy": np.asarray(energies),
        "objective_weight": np.asarray(w_objs),
        "energy_weight": np.asarray(w_es),
    }
    return GuidedRecallResult(state, n_steps, _steps_to_final(flips), history, converged=flips[-1] == 0)


def guided_dynamics(
    landscape: object,
    cue_state: object,
    guidance: Guidance | None = None,
    *,
    max_sweeps: int = 30,
    strength: float = 1.0,
    ramp: str = "linear",
    ramp_sweeps: int | None = None,
    seed: int | np.random.Generator = 0,
    callback: Callable[[int, np.ndarray], object] | None = None,
) -> GuidedRecallResult:
    """Asynchronous Hopfield sweeps whose local field is biased by the guidance gradient.

    Sweep ``b`` (1-based) adds the external field
    ``-strength * w(b) * BIAS_PER_RMS * rms(h) / rms(g) * g`` to the local
    field, where ``g = guidance.gradient(state)`` (once per sweep),
    ``h = -dE/ds`` is the current local field and
    ``w(b) = 1 - ramp((b - 1) / ramp_sweeps)`` (0 from sweep ``ramp_sweeps + 1``
    on).  The gradient's scale is arbitrary (an entropy gradient can be 1e-6
    or 1e3), so it is normalised to the RMS of the local field, which keeps
    the gradient's shape (units it cares more about get a stronger bias).  In
    a stored pattern every unit's field is close to that RMS, so a bias of
    exactly one RMS is a coin toss; ``BIAS_PER_RMS = 2`` makes ``strength = 1``
    decisive: the guidance overrides a typical unit while ``w > 1/2`` (the
    first half of the ramp) and the memory's own fields take over in the
    second half, so the result is a fixed point of the memory itself.  Recall
    stops after the first sweep that runs without guidance and flips nothing
    (``converged``), or after ``max_sweeps``.

    Parameters
    ----------
    landscape : EnergyLandscape or HopfieldNetwork
        The memory.
    cue_state : array_like
        Flat ±1 state ``(P,)`` to start from.
    guidance : Guidance, optional
        ``None`` gives plain asynchronous recall.
    max_sweeps : int
        Most sweeps to run.
    strength : float
        Bias strength in units of ``BIAS_PER_RMS`` local-field RMS (>= 0).
    ramp : str
        ``"linear"`` or ``"cosine"`` decay of the guidance weight.
    ramp_sweeps : int, optional
        Sweeps over which the weight decays to 0; default ``max(1, max_sweeps // 2)``
        so that at least half the budget is left for unguided settling.
    seed : int or numpy.random.Generator
        Seeds the update orders (same seed, same result).
    callback : callable, optional
        ``callback(sweep, state)`` after each sweep with a copy of the state.

    Returns
    -------
    GuidedRecallResult
        ``history`` holds ``flips``, ``energy`` and ``guidance_weight`` per sweep.
    """
    land = as_landscape(landscape)
    length = int(land.length)
    state = validate_states(cue_state, size=length, name="cue_state")
    if state.ndim != 1:
        raise PatternShapeError("cue_state", "one flat state (1-D)", f"shape {state.shape}")
    state = state.copy()
    guidance = validate_guidance(guidance)
    max_sweeps = check_int("max_sweeps", max_sweeps, low=1)
    strength = check_float("strength", strength, low=0)
    ramp_fn = _check_ramp(ramp)
    ramp_sweeps = max(1, max_sweeps // 2) if ramp_sweeps is None else check_int("ramp_sweeps", ramp_sweeps, low=1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_int("seed", seed, low=0))

    flips, energies, weights = [], [], []
    converged = False
    for b in range(1, max_sweeps + 1):
        w = 1.0 - ramp_fn(min(1.0, (b - 1) / ramp_sweeps)) if guidance is not None else 0.0
        external = None
        if w > 0:
            g = guidance_gradient(guidance, state)
            g_rms = math.sqrt(float(np.mean(g * g)))
            if g_rms > 0:
                h = -_landscape_gradient(land, state)  # local field, (P,)
                h_rms = math.sqrt(float(np.mean(h * h)))
                # an empty memory has no field to compare with: then the gradient is taken at unit RMS
                external = (-strength * w * BIAS_PER_RMS * (h_rms if h_rms > 0 else 1.0) / g_rms) * g
        state, n_flips = land.sweep(state, external, rng)
        state = np.asarray(state, dtype=np.int8)
        flips.append(int(n_flips))
        energies.append(float(land.energy(state)))
        weights.append(w)
        if callback is not None:
            callback(b, state.copy())
        if w == 0 and n_flips == 0:
            converged = True
            break
    history = {
        "flips": np.asarray(flips, dtype=np.int64),
        "energy": np.asarray(energies),
        "guidance_weight": np.asarray(weights),
    }
    return GuidedRecallResult(state, len(flips), _steps_to_final(flips), history, converged=converged)
