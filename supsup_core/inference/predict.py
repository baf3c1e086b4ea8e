"""Inference a user can act on: :func:`predict` returns the task, how sure it is, the outputs, and "unknown".

Task inference always picks one of the learned tasks, even for data from none of
them.  :func:`predict` therefore also reports two signals and flags an input
*unknown* when the calibrated one says so:

- ``confidence`` -- the paper's NNs test (REFERENCE §2.7): with ``g`` the one-shot
  coefficient gradient and ``nu = softmax(-g)``, ``k * max(nu)`` is 1 when no task
  stands out and ``k`` when one task takes all the weight; the paper allocates a new
  mask when it is below ``1 + eps``;
- ``objective`` -- the objective (entropy H, or G) of the chosen task's own outputs:
  low on data the mask was trained for, high on data it has not seen.

:func:`calibrate_unknown` sets the threshold from held-out batches of the learned
tasks (a quantile of their signal: with ``quantile=0.99`` about 1 % of real batches
are flagged), stores it on the model (banks keep it) and returns it.

Examples
--------
>>> import torch
>>> from supsup_core.config import ModelConfig
>>> from supsup_core.models import build_model
>>> model = build_model(ModelConfig(hidden=(6,), output_size=4, in_features=16, image=4))
>>> for _ in range(3):
...     _ = model.add_task(), model.finish_task()
>>> p = predict(model, torch.randn(8, 16, generator=torch.Generator().manual_seed(0)))
>>> p.task in range(3), p.outputs.shape, p.unknown
(True, torch.Size([8, 4]), False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import ConfigError
from ..validate import check_choice, check_float, check_optional, check_int
from .binary import DEFAULT_METHOD, METHODS, binary_search
from .objectives import OBJECTIVES, check_objective, objective_values
from .oneshot import _check_model, coefficient_gradients, per_image_coefficient_gradients
from .rerank import rerank_groups

__all__ = ["Prediction", "UnknownThreshold", "predict", "calibrate_unknown", "SIGNALS", "DEFAULT_METHOD"]

#: Signals an unknown-task threshold can be set on.
SIGNALS = ("objective", "confidence")


@dataclass(frozen=True)
class UnknownThreshold:
    """A calibrated "none of the learned tasks" rule: ``signal`` above (objective) or below (confidence) ``value``.

    ``objective``, ``method`` and ``per`` record how the signal was measured; :func:`predict`
    uses them so the comparison is like for like.
    """

    signal: str
    value: float
    objective: str = "H"
    method: str = DEFAULT_METHOD
    per: str = "batch"
    quantile: float = 0.99
    n_calibration: int = 0

    def __post_init__(self) -> None:
        check_choice("signal", self.signal, SIGNALS)
        check_float("value", self.value)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("method", self.method, METHODS)
        check_choice("per", self.per, ("batch", "image"))
        check_float("quantile", self.quantile, low=0.0, high=1.0, low_open=True)
        check_int("n_calibration", self.n_calibration, low=0)

    def is_unknown(self, objective: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """True where the signal is beyond the threshold."""
        if self.signal == "objective":
            return objective > self.value
        return confidence < self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (what a bank stores as ``unknown_threshold``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnknownThreshold:
        """Inverse of :meth:`to_dict` (validated)."""
        if not isinstance(data, Mapping):
            raise ConfigError("unknown_threshold", "a mapping of UnknownThreshold fields", type(data).__name__)
        names = {"signal", "value", "objective", "method", "per", "quantile", "n_calibration"}
        if set(data) - names:
            raise ConfigError("unknown_threshold", f"only the fields {sorted(names)}", sorted(set(data) - names))
        if not {"signal", "value"} <= set(data):
            raise ConfigError("unknown_threshold", "the fields 'signal' and 'value'", sorted(data))
        return cls(**dict(data))


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict` returns.

    Attributes
    ----------
    task : int or torch.Tensor
        The inferred task (``per="batch"``), or one per image (LongTensor ``(B,)``).
    confidence : float or torch.Tensor
        ``k * max(softmax(-g))`` in ``[1, k]`` (module docstring).
    objective : float or torch.Tensor
        The objective of the chosen task's outputs (mean over the batch, or per image).
    outputs : torch.Tensor
        Logits ``(B, s)`` of every image under its inferred task's mask.
    unknown : bool or torch.Tensor
        Flagged as from none of the learned tasks (False everywhere without a threshold).
    """

    task: Any
    confidence: Any
    objective: Any
    outputs: torch.Tensor
    unknown: Any


def _confidence(g: torch.Tensor) -> torch.Tensor:
    """``k * max softmax(-g)`` per row of ``g`` ``(R, k)`` (the paper's NNs statistic)."""
    return g.shape[1] * torch.softmax(-g, dim=1).max(dim=1).values


def _resolve(model: Any, threshold: UnknownThreshold | None | bool) -> UnknownThreshold | None:
    if threshold is False:
        return None
    if threshold is None or threshold is True:
        return getattr(model, "unknown_threshold", None)
    if not isinstance(threshold, UnknownThreshold):
        raise ConfigError("threshold", "an UnknownThreshold, None (the model's own) or False", type(threshold).__name__)
    return threshold


def _settings(rule: UnknownThreshold | None, method: str | None, objective: str | None, per: str | None) -> tuple[str, str, str]:
    """The inference settings of a call: as given, else the threshold's (so its signal is measured the same way),
    else the defaults; a setting given that differs from the threshold's is refused."""
    chosen = {"method": method, "objective": objective, "per": per}
    defaults = {"method": DEFAULT_METHOD, "objective": "H", "per": "batch"}
    for name, value in chosen.items():
        calibrated = getattr(rule, name) if rule is not None else None
        if value is None:
            chosen[name] = calibrated if calibrated is not None else defaults[name]
        elif calibrated is not None and value != calibrated:
            raise ConfigError(name, f"{calibrated!r}, the {name} the unknown-task threshold was calibrated with "
                              "(or threshold=False)", repr(value))
    return chosen["method"], chosen["objective"], chosen["per"]


def predict(
    model: Any,
    x: torch.Tensor,
    *,
    method: str | None = None,
    objective: str | None = None,
    per: str | None = None,
    real_classes: int | None = None,
    threshold: UnknownThreshold | None | bool = None,
) -> Prediction:
    """Infer the task of ``x`` and classify it with that task's mask.

    Parameters
    ----------
    model : SupSupNet
        A model with at least one finished task.
    x : torch.Tensor
        A batch ``(B, ...)`` of inputs.
    method : {"rerank", "oneshot", "binary"}, optional
        Task inference (``"rerank"``, the default, is the best measured; ``"oneshot"`` and
        ``"binary"`` are the paper's).
    objective : {"H", "G"}, optional
        Entropy (default), or the superfluous-neuron objective (needs ``real_classes``).
    per : {"batch", "image"}, optional
        One task for the whole batch (default), or one per image (not for batch-statistics models).
        With an unknown-task threshold, ``method``, ``objective`` and ``per`` default to the ones it
        was calibrated with, and other values are refused (its signal would not be comparable).
    real_classes : int, optional
        Real (labelled) outputs, for ``objective="G"``.
    threshold : UnknownThreshold, None or False
        The unknown-task rule; None uses the model's (:func:`calibrate_unknown`), False none.
    """
    _check_model(model)
    rule = _resolve(model, threshold)
    method, objective, per = _settings(rule, method, objective, per)
    check_choice("method", method, METHODS)
    check_choice("per", per, ("batch", "image"))
    if objective == "G" and real_classes is None:
        raise ConfigError("real_classes", "the number of real (labelled) outputs for objective G", None)
    real = check_optional(check_int, "real_classes", real_classes, low=1) or model.output_size
    check_objective(objective, real, model.output_size)
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] == 0:
        raise ConfigError("x", "a non-empty batch tensor (B, ...)", getattr(x, "shape", type(x).__name__))
    x = x.to(model.device)
    with model.preserving_selection():
        model.eval()
        model.check_input(x)  # one forward: the module accepts x and returns the (B, output_size) logits
        if per == "batch":
            g = coefficient_gradients(model, x, objective, real_classes=real).unsqueeze(0).cpu()  # (1, k)
            if method == "oneshot":
                tasks = torch.argmin(g, dim=1)
            elif method == "rerank":
                tasks = rerank_groups(model, x, g, [x.shape[0]], objective, real)
            else:
                tasks = torch.tensor([binary_search(model, x, objective, real_classes=real).task])
            per_image = tasks.expand(x.shape[0])
        else:
            if model.has_batch_statistics:
                raise ConfigError("per", "'batch' for models whose outputs depend on the whole batch", "'image'")
            g = per_image_coefficient_gradients(model, x, objective, real_classes=real).cpu()  # (B, k)
            if method == "oneshot":
                tasks = torch.argmin(g, dim=1)
            elif method == "rerank":
                tasks = rerank_groups(model, x, g, [1] * x.shape[0], objective, real)
            else:
                tasks = torch.tensor([binary_search(model, x[i : i + 1], objective, real_classes=real).task
                                      for i in range(x.shape[0])])
            per_image = tasks
        outputs = torch.empty((x.shape[0], model.output_size), device=x.device)
        with torch.no_grad():
            for task in torch.unique(per_image).tolist():
                rows = (per_image == task).to(x.device)
                model.set_task(int(task))
                outputs[rows] = model(x[rows]).to(outputs.dtype)
            values = objective_values(outputs, objective, real).cpu()  # (B,)
    confidence = _confidence(g.to(torch.float64))  # (1,) or (B,)
    value = values.mean().reshape(1) if per == "batch" else values
    unknown = rule.is_unknown(value, confidence) if rule is not None else torch.zeros_like(confidence, dtype=torch.bool)
    unknown = unknown | ~torch.isfinite(value) | ~torch.isfinite(confidence)  # no finite answer: from no known task
    if per == "batch":
        return Prediction(int(tasks[0]), float(confidence[0]), float(value[0]), outputs, bool(unknown[0]))
    return Prediction(tasks.to(torch.long), confidence.to(torch.float32), value, outputs, unknown)


def _signal_values(model: Any, batches: Iterable[torch.Tensor], signal: str, **options: Any) -> torch.Tensor:
    values: list[float] = []
    for x in batches:
        p = predict(model, x, threshold=False, **options)
        v = p.objective if signal == "objective" else p.confidence
        values.extend([float(v)] if options.get("per", "batch") == "batch" else [float(t) for t in v])
    return torch.tensor(values, dtype=torch.float64)


def calibrate_unknown(
    model: Any,
    batches: Iterable[torch.Tensor],
    *,
    unknown_batches: Iterable[torch.Tensor] | None = None,
    signal: str = "objective",
    quantile: float = 0.99,
    method: str = DEFAULT_METHOD,
    objective: str = "H",
    per: str = "batch",
    real_classes: int | None = None,
) -> UnknownThreshold:
    """Set the model's unknown-task threshold from held-out batches of its learned tasks; return it.

    Without ``unknown_batches``, ``quantile`` of the real batches' ``objective`` (or ``1 - quantile``
    of their ``confidence``) becomes the threshold, so about ``1 - quantile`` of batches like them
    will be flagged.  With ``unknown_batches`` (inputs from none of the tasks: another dataset, or
    noise in the data's range) the threshold sits halfway between that quantile and the opposite
    quantile of the unknown batches -- on a log scale for the objective, whose values span orders of
    magnitude -- which leaves room for real data a little unlike the held-out batches (new writers,
    new cameras).  Use data the masks were not trained on, batched as :func:`predict` will see it.
    """
    check_choice("signal", signal, SIGNALS)
    q = check_float("quantile", quantile, low=0.0, high=1.0, low_open=True)
    options = {"method": method, "objective": objective, "per": per, "real_classes": real_classes}
    known = _signal_values(model, batches, signal, **options)
    if known.numel() == 0:
        raise ConfigError("batches", "at least one batch of held-out data from the learned tasks", "none")
    high = signal == "objective"  # unknown inputs have a high objective, a low confidence
    value = float(torch.quantile(known, q if high else 1.0 - q, interpolation="higher" if high else "lower"))
    n = int(known.numel())
    if unknown_batches is not None:
        other = _signal_values(model, unknown_batches, signal, **options)
        if other.numel() == 0:
            raise ConfigError("unknown_batches", "at least one batch of inputs from none of the tasks", "none")
        edge = float(torch.quantile(other, 1.0 - q if high else q, interpolation="lower" if high else "higher"))
        if (edge > value) if high else (edge < value):
            if high:
                floor = 1e-12  # entropies of confident masks reach 0: keep the logarithm finite
                value = float(torch.exp((torch.log(torch.tensor(max(value, floor))) + torch.log(torch.tensor(edge))) / 2))
            else:
                value = (value + edge) / 2
        n += int(other.numel())
    if not math.isfinite(value):
        raise ConfigError("batches", "batches whose signal is finite", value)
    rule = UnknownThreshold(signal, value, objective, method, per, q, n)
    model.unknown_threshold = rule
    return rule
