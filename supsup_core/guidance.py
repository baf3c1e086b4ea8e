"""Entropy (and G) guidance for :mod:`hopfield_masks`' guided recall — the torch side of the bridge.

:class:`OutputGuidance` implements the :class:`hopfield_masks.recall.guidance.Guidance`
protocol: given a candidate pattern (a flat ±1 state holding every masked
layer of one task, in the order of a :class:`~hopfield_masks.blocks.MaskLayout`),
it runs the model with that mask on a batch of *unlabeled* inputs and returns
the gradient of the mean output objective with respect to the state, as NumPy.

The mask enters the network as ``m = (s + 1) / 2``, so ``dObj/ds = dObj/dm / 2``.
The gradient is taken with respect to the mask itself (a float leaf), i.e. it
is the straight-through gradient the reference code uses for its recovery
scores.  Each call uses the next batch, cycling, so a recall of ``n`` steps sees
``n`` batches as in the reference (one step per test batch).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from hopfield_masks.blocks import MaskLayout
from hopfield_masks.patterns import validate_states

from .errors import BaseNetworkMismatchError, ConfigError
from .inference.objectives import check_objective, objective_values
from .models import SupSupNet

__all__ = ["OutputGuidance", "model_layout"]


def model_layout(model: SupSupNet) -> MaskLayout:
    """The :class:`MaskLayout` of a model's masks (layer order of ``export_masks``)."""
    layers = model.masked_layers()
    return MaskLayout(tuple(layers), tuple(layer.mask_shape for layer in layers.values()))


class OutputGuidance:
    """Gradient of the model's output objective (entropy ``H`` or ``G``) with respect to a candidate state.

    Parameters
    ----------
    model : SupSupNet
        The model whose base network the masks belong to.
    batches : iterable of torch.Tensor
        Unlabeled input batches (``(B, 1, 28, 28)`` or ``(B, 784)``); cycled through, one per call.
    layout : MaskLayout, optional
        Order and shapes of the layers in the flat state; defaults to the model's own.
    objective : str
        ``"H"`` (mean output entropy, the reference's choice) or ``"G"`` (superfluous-neuron logsumexp).
    real_classes : int
        Real output classes for ``G``.

    Attributes
    ----------
    calls : int
        Number of gradients computed so far (one forward and one backward pass each).
    """

    def __init__(
        self,
        model: SupSupNet,
        batches: Iterable[torch.Tensor],
        layout: MaskLayout | None = None,
        *,
        objective: str = "H",
        real_classes: int = 10,
    ) -> None:
        check_objective(objective, real_classes, model.output_size)
        own = model_layout(model)
        if layout is not None and layout != own:
            raise BaseNetworkMismatchError(
                f"layout: expected the model's masked layers {own.to_dict()}, received {layout.to_dict()}"
            )
        self.model, self.layout, self.objective, self.real_classes = model, own, objective, real_classes
        batches = list(batches)
        bad = [type(b).__name__ for b in batches if not isinstance(b, torch.Tensor)]
        if bad:
            raise ConfigError("batches", "torch.Tensor input batches", f"a {bad[0]}")
        self._batches = [b.to(model.device) for b in batches]
        if not self._batches:
            raise ConfigError("batches", "at least one unlabeled input batch", "none")
        self._next = 0
        self.calls = 0

    def objective_value(self, state: np.ndarray, batch: torch.Tensor | None = None) -> float:
        """Mean objective of the masks in ``state`` on ``batch`` (default: the first guidance batch)."""
        masks = self._masks(state, requires_grad=False)
        with torch.no_grad():
            logits = self.model(self._batches[0] if batch is None else batch.to(self.model.device), masks=masks)
        return float(objective_values(logits, self.objective, self.real_classes).mean())

    def _masks(self, state: np.ndarray, requires_grad: bool) -> dict[str, torch.Tensor]:
        s = validate_states(state, size=self.layout.length, name="state")
        if s.ndim != 1:
            raise ConfigError("state", "one flat state (P,)", f"shape {s.shape}")
        masks = self.layout.unflatten(s)  # {name: bool array of the layer's shape}
        return {
            name: torch.from_numpy(m.astype(np.float32)).to(self.model.device).requires_grad_(requires_grad)
            for name, m in masks.items()
        }

    def gradient(self, state: np.ndarray) -> np.ndarray:
        """``d(mean objective)/d(state)`` as float64 ``(P,)`` for one flat ±1 state."""
        masks = self._masks(state, requires_grad=True)
        x = self._batches[self._next % len(self._batches)]
        self._next += 1
        self.calls += 1
        with torch.enable_grad():
            logits = self.model(x, masks=masks)  # (B, s)
            value = objective_values(logits, self.objective, self.real_classes).mean()
            grads = torch.autograd.grad(value, list(masks.values()))
        flat = torch.cat([g.detach().reshape(-1).to("cpu", torch.float64) for g in grads])  # (P,)
        return 0.5 * flat.numpy()  # dm/ds = 1/2
