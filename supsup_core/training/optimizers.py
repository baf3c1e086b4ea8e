"""The optimisers of a task's scores, as plain tensor updates: the same arithmetic as ``torch.optim``, without its import.

Training a mask only ever updates a few score tensors with RMSprop, SGD or Adam
(:class:`~supsup_core.training.config.TrainConfig`).  ``torch.optim``'s optimisers
import ``torch._dynamo`` the first time one is built (about 1 s and 70 MB in every
process: each training worker pays it before its first task).  :class:`ScoreOptimizer`
applies the same update rules with the same tensor operations, in the same order, as
``torch.optim``'s single-tensor implementations (the ones it runs on CPU) with PyTorch's
default settings for everything a :class:`TrainConfig` does not name:

- **RMSprop** (``alpha = 0.99``, ``eps = 1e-8``, not centred)::

      g = grad + wd * p;  v = alpha * v + (1 - alpha) * g * g;  d = sqrt(v) + eps
      p -= lr * g / d                                   (momentum 0)
      b = momentum * b + g / d;  p -= lr * b            (momentum > 0)

- **SGD** (no dampening, not Nesterov)::

      g = grad + wd * p;  b = g (first step) or momentum * b + g;  p -= lr * b

- **Adam** (``betas = (0.9, 0.999)``, ``eps = 1e-8``, coupled weight decay, no AMSGrad)::

      g = grad + wd * p;  m = lerp(m, g, 1 - b1);  v = b2 * v + (1 - b2) * g * g
      p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

The test suite checks, step by step, that parameters come out bit-identical to
``torch.optim``'s, so masks trained here equal masks trained with ``torch.optim``
(the Avalanche strategy, which must hand Avalanche a ``torch.optim`` optimiser,
uses :func:`~supsup_core.training.trainer.make_optimizer`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig

__all__ = ["ScoreOptimizer", "RMSPROP_ALPHA", "ADAM_BETAS", "EPS"]

#: RMSprop's smoothing constant (PyTorch's default).
RMSPROP_ALPHA = 0.99
#: Adam's coefficients for the running averages of the gradient and its square (PyTorch's defaults).
ADAM_BETAS = (0.9, 0.999)
#: The term added to denominators (PyTorch's default).
EPS = 1e-8


class ScoreOptimizer:
    """The :class:`TrainConfig`'s optimiser over ``params`` (module docstring for the rules).

    Parameters
    ----------
    params : iterable of nn.Parameter
        Tensors to update from their ``.grad`` (parameters without a gradient are skipped).
    config : TrainConfig
        Optimiser name, learning rate, momentum and weight decay.

    Examples
    --------
    >>> p = nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = ScoreOptimizer([p], TrainConfig(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0))
    >>> p.grad = torch.tensor([1.0, 2.0])
    >>> opt.step(); p.tolist()
    [0.5, -2.0]
    """

    def __init__(self, params: Iterable[nn.Parameter], config: TrainConfig) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError("config", "a TrainConfig", type(config).__name__)
        self.params = list(params)
        if not self.params or not all(isinstance(p, torch.Tensor) for p in self.params):
            raise ConfigError("params", "one or more tensors to optimise", [type(p).__name__ for p in self.params][:3])
        self.config = config
        self.lr = config.lr  # the rate of the next step (a schedule sets it before each step)
        self.steps = 0
        self._state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the parameters' gradients (``set_to_none=False`` zeroes them in place)."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        self.steps += 1
        cfg = self.config
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if cfg.weight_decay != 0:
                grad = grad.add(p, alpha=cfg.weight_decay)
            state = self._state.setdefault(i, {})
            if cfg.optimizer == "rmsprop":
                self._rmsprop(p, grad, state)
            elif cfg.optimizer == "sgd":
                self._sgd(p, grad, state)
            else:
                self._adam(p, grad, state)

    def _rmsprop(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        cfg = self.config
        square_avg = state.setdefault("square_avg", torch.zeros_like(p, memory_format=torch.preserve_format))
        square_avg.mul_(RMSPROP_ALPHA).addcmul_(grad, grad, value=1 - RMSPROP_ALPHA)
        avg = square_avg.sqrt().add_(EPS)
        if cfg.momentum > 0:
            buf = state.setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))
            buf.mul_(cfg.momentum).addcdiv_(grad, avg)
            p.add_(buf, alpha=-self.lr)
        else:
            p.addcdiv_(grad, avg, value=-self.lr)

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        cfg = self.config
        if cfg.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(cfg.momentum).add_(grad, alpha=1)
            grad = buf
        p.add_(grad, alpha=-self.lr)

    def _adam(self, p: torch.Tensor, grad: torch.Tensor, state: dict) -> None:
        beta1, beta2 = ADAM_BETAS
        exp_avg = state.setdefault("exp_avg", torch.zeros_like(p, memory_format=torch.preserve_format))
        exp_avg_sq = state.setdefault("exp_avg_sq", torch.zeros_like(p, memory_format=torch.preserve_format))
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        state["step"] = step = state.get("step", 0) + 1  # per parameter, as torch.optim counts
        step = float(step)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(EPS)
        p.addcdiv_(exp_avg, denom, value=-step_size)
