"""Model configuration: which base network, how it is initialised and how its masks are made.

:class:`ModelConfig` is a frozen dataclass validated in ``__post_init__``; every
field is JSON-safe so ``to_dict``/``from_dict`` round-trip through a mask bank's
metadata.  Training hyper-parameters live elsewhere (``supsup_core.training``).

Examples
--------
>>> cfg = ModelConfig(arch="lenet", output_size=100)
>>> cfg.widths
(300, 100)
>>> ModelConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import ConfigError
from .validate import check_bool, check_choice, check_float, check_int, check_optional, is_int

__all__ = ["ModelConfig", "ARCHITECTURES", "DEFAULT_WIDTHS"]

ARCHITECTURES = ("lenet", "fc1024", "bnnet", "conv", "gemresnet18", "resnet18", "resnet50")
"""Architecture names accepted by :class:`ModelConfig` (the built-in networks of :mod:`supsup_core.models`)."""

DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {
    "lenet": (300, 100),  # REFERENCE §3.3: LeNet 300-100
    "fc1024": (1024, 1024),  # REFERENCE §3.3: FC 1024-1024
    "bnnet": (2048, 2048),  # REFERENCE §2.8: BNNet, two unit-masked hidden layers
    "conv": (16, 32, 128),  # conv1 channels, conv2 channels, hidden linear width
    "gemresnet18": (20,),  # REFERENCE §3.1: nf = 20 channels in the first stage
    "resnet18": (),  # the standard widths (64-128-256-512)
    "resnet50": (),
}
"""Hidden widths of each architecture when ``ModelConfig.hidden`` is None."""

_INITS = ("signed_constant", "kaiming_normal")
_MASK_MODES = ("threshold", "topk")
_BATCHNORMS = ("task", "batch")
_RESNETS = ("gemresnet18", "resnet18", "resnet50")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a base network and its mask layers bit-identically.

    Attributes
    ----------
    arch : str
        ``"lenet"`` (784-300-100-s), ``"fc1024"`` (784-1024-1024-s), ``"bnnet"``
        (784-2048-2048-s with unit masks and Swish, REFERENCE §2.8) or ``"conv"``
        (two masked 3x3 convolutions with max-pooling, then two masked linear layers).
    output_size : int
        Number of outputs ``s``; outputs beyond the real classes are superfluous neurons.
    seed : int
        Seed of the base weights (and, combined with the task index, of each task's scores).
    init : str
        ``"signed_constant"`` (W = ±sqrt(2 / fan_in), the paper's choice) or ``"kaiming_normal"``.
    mask_mode : str
        ``"threshold"`` (mask = score >= 0) or ``"topk"`` (keep the largest ``|score|`` per layer).
        BNNet's unit masks are always thresholded, so ``"topk"`` is refused for ``"bnnet"``.
    density : float
        Kept fraction per layer in ``"topk"`` mode, in (0, 1]; ignored when ``er_sigma`` is set.
    er_sigma : float or None
        Erdős–Rényi budget σ: layer density ``min(0.5, σ (c_in + c_out) / (c_in c_out k_h k_w))``.
    in_features, in_channels, image : int
        Input geometry; ``in_features`` must equal ``in_channels * image**2``.
    hidden : tuple of int or None
        Overrides the hidden widths (tests use tiny networks).  For ``"conv"`` it is
        ``(channels1, channels2, linear_width)``; for ``"gemresnet18"`` ``(nf,)``; for the
        MLPs any non-empty tuple of widths; ResNet-18/50 have none.
    batchnorm : str
        The BatchNorm layers of the ResNets: ``"task"`` (per-task running statistics, the
        reference's ``MultitaskNonAffineBN``) or ``"batch"`` (the batch's statistics at test time too).
    transfer : bool
        Start each task's scores at the mean of the earlier tasks' (SupSup Transfer).
    """

    arch: str = "lenet"
    output_size: int = 10
    seed: int = 0
    init: str = "signed_constant"
    mask_mode: str = "threshold"
    density: float = 0.5
    er_sigma: float | None = None
    in_features: int = 784
    in_channels: int = 1
    image: int = 28
    hidden: tuple[int, ...] | None = None
    batchnorm: str = "task"
    transfer: bool = False

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHITECTURES)
        for name in ("output_size", "in_features", "in_channels", "image"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=1))
        object.__setattr__(self, "seed", check_int("seed", self.seed, low=0, high=2**63 - 1))
        check_choice("init", self.init, _INITS)
        check_choice("mask_mode", self.mask_mode, _MASK_MODES)
        if self.arch == "bnnet" and self.mask_mode != "threshold":
            raise ConfigError("mask_mode", "'threshold' for arch 'bnnet' (unit masks start all-on)", repr(self.mask_mode))
        object.__setattr__(self, "density", check_float("density", self.density, low=0, high=1, low_open=True))
        object.__setattr__(self, "er_sigma", check_optional(check_float, "er_sigma", self.er_sigma, low=0,
                                                            low_open=True))
        check_choice("batchnorm", self.batchnorm, _BATCHNORMS)
        check_bool("transfer", self.transfer)
        if self.transfer and self.arch == "bnnet":
            raise ConfigError("transfer", "False for arch 'bnnet' (unit masks)", True)
        if self.in_features != self.in_channels * self.image**2:
            raise ConfigError(
                "in_features",
                f"in_channels * image**2 = {self.in_channels * self.image ** 2}",
                repr(self.in_features),
            )
        self._check_hidden()

    def _check_hidden(self) -> None:
        """Validate ``hidden`` (a list from JSON is accepted and frozen into a tuple)."""
        if self.hidden is None:
            return
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise ConfigError("hidden", "None or a non-empty tuple of positive integers", repr(self.hidden))
        if not all(is_int(w) and w >= 1 for w in self.hidden):
            raise ConfigError("hidden", "positive integer widths", repr(self.hidden))
        if self.arch == "conv":
            if len(self.hidden) != 3:
                raise ConfigError("hidden", "(channels1, channels2, linear_width) for arch 'conv'", repr(self.hidden))
            if self.image < 4:
                raise ConfigError("image", "at least 4 for arch 'conv' (two 2x2 poolings)", repr(self.image))
        if self.arch == "gemresnet18" and len(self.hidden) != 1:
            raise ConfigError("hidden", "(nf,) for arch 'gemresnet18' (channels of the first stage)", repr(self.hidden))
        if self.arch in ("resnet18", "resnet50"):
            raise ConfigError("hidden", f"None for arch {self.arch!r} (its widths are fixed)", repr(self.hidden))
        # frozen dataclass: object.__setattr__ is the documented way to normalise a field
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden widths actually used (``hidden`` or the architecture's default)."""
        return self.hidden if self.hidden is not None else DEFAULT_WIDTHS[self.arch]

    def wrap_config(self) -> Any:
        """The :class:`~supsup_core.wrapping.WrapConfig` this built-in network is wrapped with (a seeded base)."""
        from .wrapping.config import WrapConfig  # local: the wrap package imports torch

        return WrapConfig(
            base="seed", seed=self.seed, init=self.init, masks="units" if self.arch == "bnnet" else "weights",
            mask_mode=self.mask_mode, density=self.density, er_sigma=self.er_sigma, batchnorm=self.batchnorm,
            transfer=self.transfer, output_size=self.output_size,
        )

    def layer_density(self, c_in: int, c_out: int, k_h: int = 1, k_w: int = 1) -> float:
        """Kept fraction of a top-k layer: ``density``, or the ER formula when ``er_sigma`` is set.

        Examples
        --------
        >>> ModelConfig(mask_mode="topk", er_sigma=1.0).layer_density(784, 300)
        0.004608843537414966
        >>> ModelConfig(mask_mode="topk", density=0.25).layer_density(784, 300)
        0.25
        """
        if self.er_sigma is None:
            return float(self.density)
        from .subnet import er_density  # local import: subnet imports torch, config stays light

        return er_density(c_in, c_out, k_h, k_w, sigma=self.er_sigma)

    def to_dict(self) -> dict:
        """JSON-safe dict of every field (``hidden`` as a list or None)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden) if self.hidden is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Rebuild a config written by :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError("d", "a dict from ModelConfig.to_dict()", type(d).__name__)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError("d", f"keys among {sorted(known)}", f"unknown keys {unknown}")
        return cls(**d)
