"""How :func:`~supsup_core.wrapping.wrap` turns a module into a SupSup model: :class:`WrapConfig`.

One frozen, validated, JSON-safe object: built once (by the caller or from a bank's
metadata), recorded in every bank the model writes, compared on ``--resume``.

Examples
--------
>>> cfg = WrapConfig(seed=3, mask_mode="topk", er_sigma=8.0)
>>> cfg.resolved_score_init(), cfg.batchnorm
('kaiming-uniform', 'task')
>>> WrapConfig.from_dict(cfg.to_dict()) == cfg
True
>>> WrapConfig(base="pretrained", batchnorm="frozen").resolved_score_init()
'constant'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from ..settings import Settings
from ..layers.base import BASE_INITS, MASK_MODES, SCORE_INITS
from ..validate import check_bool, check_choice, check_float, check_int, check_optional

__all__ = ["WrapConfig", "BASES", "MASK_TARGETS", "BATCHNORM_MODES"]

#: Where the frozen base weights come from: drawn from ``seed`` (SupSup), or the module's own (pretrained).
BASES = ("seed", "pretrained")
#: What a task's supermask masks: every weight of the Linear/Conv layers, or the units of the BatchNorm layers.
MASK_TARGETS = ("weights", "units")
#: What becomes of BatchNorm layers when weights are masked (:mod:`supsup_core.layers.norm`).
BATCHNORM_MODES = ("task", "batch", "frozen")


@dataclass(frozen=True)
class WrapConfig(Settings):
    """Options of :func:`~supsup_core.wrapping.wrap` (validated on construction).

    Parameters
    ----------
    base : {"seed", "pretrained"}
        ``"seed"``: every masked layer's base weights are drawn from ``seed`` with ``init``
        (a bank then needs only the seed and the architecture); biases are dropped and
        normalisation layers lose their affine parameters (the paper's networks have
        neither).  ``"pretrained"``: the module's own weights, biases and affine
        parameters become the frozen base (masks over a pretrained model, as Piggyback);
        the bank records a hash of them.
    seed : int
        Seed of the base weights (``base="seed"``) and, with the task index, of each task's scores.
    init : {"signed_constant", "kaiming_normal"}
        Distribution of seeded base weights (the paper: signed constant ``±sqrt(2 / fan_in)``).
    masks : {"weights", "units"}
        ``"weights"``: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` gets a per-task weight mask.
        ``"units"``: every BatchNorm gets a per-unit (per-channel) mask on its batch-normalised
        output (HopSupSup's BNNet); the weight layers stay frozen and unmasked.
    mask_mode : {"threshold", "topk"}
        ``1[score >= 0]`` (GNu, NNs) or the largest ``|score|`` of each layer (GG, edge-popup).
    density : float
        Kept fraction of every top-k layer when ``er_sigma`` is None.
    er_sigma : float, optional
        The paper's Erdős–Rényi sparsity σ: layer density ``min(0.5, σ (c_in + c_out) / (c_in c_out k_h k_w))``.
    batchnorm : {"task", "batch", "frozen"}
        With weight masks: ``"task"`` per-task running statistics (the reference's
        ``MultitaskNonAffineBN``), ``"batch"`` the current batch's statistics at train and
        test time, ``"frozen"`` (pretrained bases only) the module's own BatchNorm unchanged.
    score_init : str
        ``"auto"`` (Kaiming-uniform over a seeded base; over a pretrained one ``"constant"``
        for threshold masks, which start all-on, and ``"weight-magnitude"`` for top-k) or one of
        :data:`~supsup_core.layers.base.SCORE_INITS`.
    transfer : bool
        Start each new task's scores at the mean of the earlier tasks' final scores (the paper's
        *SupSup Transfer*; the model keeps one float copy of every masked weight).  Tasks then
        depend on each other and train one after another.
    output_size : int, optional
        Number of outputs; default the output size of the module's last Linear/Conv layer.
    """

    _argument: ClassVar[str] = "wrap"

    base: str = "seed"
    seed: int = 0
    init: str = "signed_constant"
    masks: str = "weights"
    mask_mode: str = "threshold"
    density: float = 0.5
    er_sigma: float | None = None
    batchnorm: str = "task"
    score_init: str = "auto"
    transfer: bool = False
    output_size: int | None = None

    def __post_init__(self) -> None:
        check_choice("base", self.base, BASES)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_choice("init", self.init, BASE_INITS)
        check_choice("masks", self.masks, MASK_TARGETS)
        check_choice("mask_mode", self.mask_mode, MASK_MODES)
        object.__setattr__(self, "density", check_float("density", self.density, low=0.0, high=1.0, low_open=True))
        object.__setattr__(self, "er_sigma", check_optional(check_float, "er_sigma", self.er_sigma, low=0.0, low_open=True))
        check_choice("batchnorm", self.batchnorm, BATCHNORM_MODES)
        if self.batchnorm == "frozen" and self.base != "pretrained":
            raise ConfigError("batchnorm", "'task' or 'batch' over a seeded base (it has no pretrained statistics)", "'frozen'")
        check_choice("score_init", self.score_init, ("auto", *SCORE_INITS))
        check_bool("transfer", self.transfer)
        if self.masks == "units" and self.mask_mode != "threshold":
            raise ConfigError("mask_mode", "'threshold' with masks='units' (unit masks start all-on)", repr(self.mask_mode))
        if self.masks == "units" and self.transfer:
            raise ConfigError("transfer", "False with masks='units'", True)
        check_optional(check_int, "output_size", self.output_size, low=1)

    def resolved_score_init(self) -> str:
        """The score initialisation ``"auto"`` stands for with this base and mask mode."""
        if self.score_init != "auto":
            return self.score_init
        if self.base == "seed":
            return "kaiming-uniform"
        return "constant" if self.mask_mode == "threshold" else "weight-magnitude"

    def layer_density(self, c_in: int, c_out: int, kernel: tuple[int, ...] = ()) -> float:
        """Kept fraction of a top-k layer: ``density``, or the ER formula when ``er_sigma`` is set.

        >>> WrapConfig(er_sigma=1.0).layer_density(784, 300)
        0.004608843537414966
        """
        if self.er_sigma is None:
            return float(self.density)
        from ..subnet import er_density

        return er_density(c_in, c_out, math.prod(kernel), 1, sigma=self.er_sigma)  # the formula uses k_h k_w only
