"""Normalisation layers of a wrapped model: per-task statistics, batch statistics, or frozen.

- :class:`TaskBatchNorm` -- the reference's ``MultitaskNonAffineBN`` (REFERENCE §3.1): batch
  normalisation with **running statistics of its own for every task**.  Training a task
  normalises with the batch's statistics and updates that task's running mean and
  variance; evaluating a task uses its own.  A superposition ``sum_i alpha_i M_i`` uses
  the statistics of the alpha-weighted mixture of the tasks' activations (mean
  ``sum_i alpha_i mu_i``, second moment ``sum_i alpha_i (var_i + mu_i^2)``), and the
  one-shot gradient includes their part: :meth:`TaskBatchNorm.contract` is the
  statistics' counterpart of a masked layer's packed contraction.
- :class:`BatchStatNorm` -- the reference's ``NonAffineNoStatsBN``: the current batch's
  statistics at train and test time, nothing per task (the outputs couple the batch).
- :class:`FrozenNorm` -- a pretrained normalisation layer (BatchNorm, LayerNorm,
  GroupNorm) kept as it is: its affine parameters and running statistics frozen, always
  in evaluation mode.

A seeded base (SupSup) has no affine parameters; over a pretrained base the module's own
``weight`` and ``bias`` are kept, frozen.

Examples
--------
>>> import torch
>>> bn = TaskBatchNorm(2)
>>> bn.start_task(); _ = bn(torch.tensor([[0.0, 1.0], [2.0, 3.0]])); bn.finish_task()
0
>>> bn.eval().select_task(0)
TaskBatchNorm(2, eps=1e-05, momentum=0.1, affine=False, tasks=1)
>>> bn.task_statistics(0)[0]  # running mean after one update with momentum 0.1
tensor([0.1000, 0.2000])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .unit import batch_statistics_norm

__all__ = ["TaskBatchNorm", "BatchStatNorm", "FrozenNorm", "TaskStatistics"]


class TaskStatistics(NamedTuple):
    """One task's own running ``mean`` and ``var`` ``(C,)``: an explicit override that normalises exactly as
    selecting the task does (the ``(2, C)`` tensor form is a superposition's mean and second moment)."""

    mean: torch.Tensor
    var: torch.Tensor


def _check_features(num_features: object) -> int:
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ConfigError("num_features", "a positive integer", repr(num_features))
    return num_features


def _frozen(tensor: torch.Tensor | None, size: int, name: str) -> torch.Tensor | None:
    if tensor is None:
        return None
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (size,):
        raise ConfigError(name, f"None or a tensor of shape ({size},)", getattr(tensor, "shape", type(tensor).__name__))
    return tensor.detach().clone().to(torch.float32)


def _channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over ``x`` ``(B, C, ...)``."""
    return t.reshape(1, -1, *([1] * (x.ndim - 2)))


class TaskBatchNorm(nn.Module):
    """Batch normalisation with per-task running statistics (module docstring).

    Parameters
    ----------
    num_features : int
        Channels ``C`` (features of a ``(B, C)`` input, channels of ``(B, C, ...)``).
    eps, momentum : float
        As ``nn.BatchNorm``.
    weight, bias : torch.Tensor, optional
        A frozen affine transform (a pretrained base's); None for the paper's non-affine BN.

    Notes
    -----
    One task's *state* is a float32 ``(2, C)`` tensor ``[running mean, running variance]``
    (:meth:`task_statistics`).  The state a superposition passes around (the leaf of the
    one-shot gradient) is ``[mean, second moment]`` of the mixture (:meth:`superposed_mask`).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        super().__init__()
        self.num_features = _check_features(num_features)
        self.eps, self.momentum = float(eps), float(momentum)
        self.register_buffer("weight", _frozen(weight, num_features, "weight"))
        self.register_buffer("bias", _frozen(bias, num_features, "bias"))
        self.register_buffer("stats", torch.zeros((0, 2, num_features), dtype=torch.float32))  # (capacity, 2, C)
        self.register_buffer("train_stats", None)  # (2, C) of the task in training
        self.num_tasks = 0
        self._selection: tuple = ("none",)
        self._override: torch.Tensor | None = None  # (2, C) [mean, second moment], set by the wrapping model
        self._stack: torch.Tensor | None = None  # (K, 2, C) running statistics of K tasks trained in one step

    @property
    def state_shape(self) -> tuple[int, int]:
        """Shape of one task's statistics."""
        return (2, self.num_features)

    # ------------------------------------------------------------ task life
    def fresh_statistics(self) -> torch.Tensor:
        """A new task's running statistics: mean 0, variance 1 (``nn.BatchNorm``'s start)."""
        device = self.stats.device
        return torch.stack([torch.zeros(self.num_features, device=device), torch.ones(self.num_features, device=device)])

    def start_task(self, generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> None:
        """Start the training task's running statistics and select them (``generator`` is not used)."""
        self.train_stats = self.fresh_statistics()
        self._selection = ("train",)

    def finish_task(self) -> int:
        """Append the training task's statistics as a finished task; return its index."""
        if self.train_stats is None:
            raise ConfigError("task", "a task being trained (call add_task first)", "no statistics")
        self.append_statistics(self.train_stats.unsqueeze(0))
        self.train_stats = None
        return self.num_tasks - 1

    def take_statistics(self) -> torch.Tensor:
        """The training task's statistics (a copy), forgetting them: the batched and worker paths' finish."""
        if self.train_stats is None:
            raise ConfigError("task", "a task being trained", "no statistics")
        out, self.train_stats = self.train_stats.detach().clone(), None
        self._selection = ("none",)
        return out

    def reserve(self, n_tasks: int) -> None:
        """Hold room for ``n_tasks`` finished tasks."""
        if n_tasks > self.stats.shape[0]:
            grown = torch.zeros((n_tasks, 2, self.num_features), dtype=torch.float32, device=self.stats.device)
            grown[: self.num_tasks] = self.stats[: self.num_tasks]
            self.stats = grown

    def append_statistics(self, stats: torch.Tensor) -> None:
        """Append finished tasks' statistics ``(n, 2, C)`` (running mean, running variance)."""
        if not isinstance(stats, torch.Tensor) or tuple(stats.shape[1:]) != self.state_shape or stats.ndim != 3:
            raise ConfigError("statistics", f"a tensor of shape (n, 2, {self.num_features})", getattr(stats, "shape", None))
        stats = stats.to(self.stats.device, torch.float32)
        if not torch.isfinite(stats).all() or bool((stats[:, 1] < 0).any()):
            raise ConfigError("statistics", "finite means and variances >= 0", "other values")
        k, n = self.num_tasks, stats.shape[0]
        if k + n > self.stats.shape[0]:
            self.reserve(max(k + n, 2 * self.stats.shape[0]))
        self.stats[k : k + n] = stats
        self.num_tasks = k + n

    def drop_tasks(self, keep: int) -> None:
        """Forget every finished task from index ``keep`` on."""
        if not 0 <= keep <= self.num_tasks:
            raise ConfigError("keep", f"a task count in [0, {self.num_tasks}]", keep)
        self.num_tasks = keep
        if self._selection[0] == "task" and self._selection[1] >= keep:
            self._selection = ("none",)

    def task_statistics(self, task: int) -> torch.Tensor:
        """Finished task ``task``'s ``(2, C)`` running mean and variance."""
        if not 0 <= task < self.num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self.num_tasks})", task)
        return self.stats[task]

    def task_override(self, task: int) -> TaskStatistics:
        """Finished task ``task``'s statistics as an explicit override (``SupSupNet.forward(masks=...)``)."""
        stats = self.task_statistics(task)
        return TaskStatistics(stats[0], stats[1])

    # ------------------------------------------------------------ selection
    def _select(self, selection: tuple) -> None:
        self._selection = selection

    def select_task(self, task: int) -> TaskBatchNorm:
        """Use finished task ``task``'s statistics, or the training task's when ``task == num_tasks``."""
        if task == self.num_tasks and self.train_stats is not None:
            self._selection = ("train",)
        elif 0 <= task < self.num_tasks:
            self._selection = ("task", task)
        else:
            raise ConfigError("task", f"a finished task in [0, {self.num_tasks}) or the training task", task)
        return self

    def select_alphas(self, alphas: torch.Tensor | None) -> None:
        """Use the statistics of the superposition ``sum_t alphas[t] M_t`` (None: uniform)."""
        self._selection = ("alphas", None if alphas is None else self.superposed_mask(alphas.detach()))

    # ------------------------------------------------------- superposition
    def _moments(self) -> torch.Tensor:
        """Every finished task's ``(k, 2, C)`` mean and second moment (float64)."""
        s = self.stats[: self.num_tasks].to(torch.float64)
        return torch.stack([s[:, 0], s[:, 1] + s[:, 0] ** 2], dim=1)

    def superposed_mask(self, alphas: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``[mean, second moment]`` ``(2, C)`` float32 of the ``alphas``-weighted mixture of the tasks."""
        if self.num_tasks == 0:
            raise ConfigError("task", "at least one finished task for a superposition", "none")
        if not isinstance(alphas, torch.Tensor) or tuple(alphas.shape) != (self.num_tasks,):
            raise ConfigError("alphas", f"a tensor of shape ({self.num_tasks},)", tuple(getattr(alphas, "shape", ())))
        a = alphas.detach().to(self.stats.device, torch.float64)
        return torch.einsum("k,kjc->jc", a, self._moments()).to(torch.float32)

    def mean_mask(self) -> torch.Tensor:
        """The uniform mixture's ``[mean, second moment]``."""
        if self.num_tasks == 0:
            raise ConfigError("task", "at least one finished task for a superposition", "none")
        return self._moments().mean(dim=0).to(torch.float32)

    def contract(self, grads: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``out[r, t] = <grads[r], [mu_t, var_t + mu_t^2]>``: float64 ``(R, num_tasks)`` (the one-shot term)."""
        if grads.ndim != 3 or tuple(grads.shape[1:]) != self.state_shape:
            raise ConfigError("grads", f"shape (R, 2, {self.num_features})", tuple(grads.shape))
        moments = self._moments().to(grads.device)  # (k, 2, C)
        return grads.detach().to(torch.float64).flatten(1) @ moments.flatten(1).T  # (R, k)

    # -------------------------------------------------------------- forward
    def _normalise(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, C)`` or ``(B, C, ...)``; returns the same shape."""
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ConfigError("x", f"a batch (B, {self.num_features}, ...)", f"shape {tuple(x.shape)}")
        if self._stack is not None:
            return self._forward_stacked(x)
        if isinstance(self._override, TaskStatistics):
            return self._normalise(x, self._override.mean, self._override.var)
        if self._override is not None:  # [mean, second moment] of a superposition, maybe a leaf of a gradient
            mean, second = self._override[0], self._override[1]
            var = second - mean**2
            if self._override.requires_grad:  # F.batch_norm does not differentiate its statistics
                y = (x - _channel_view(mean, x)) / torch.sqrt(_channel_view(var, x) + self.eps)
                if self.weight is not None:
                    y = y * _channel_view(self.weight, x) + _channel_view(self.bias, x)
                return y
            return self._normalise(x, mean, var)
        kind = self._selection[0]
        if self.training:
            running = self.train_stats if kind == "train" else None
            return F.batch_norm(x, None if running is None else running[0], None if running is None else running[1],
                                self.weight, self.bias, training=True, momentum=self.momentum, eps=self.eps)
        if kind == "train":
            return self._normalise(x, self.train_stats[0], self.train_stats[1])
        if kind == "task":
            stats = self.stats[self._selection[1]]
            return self._normalise(x, stats[0], stats[1])
        if kind == "alphas":
            moments = self.mean_mask() if self._selection[1] is None else self._selection[1]
            return self._normalise(x, moments[0], moments[1] - moments[0] ** 2)
        raise ConfigError("task", "a selected task (add_task, set_task or set_alphas)", "no selection")

    def _forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """K tasks' batches one after another.  Training: each normalised with its own batch statistics, each
        task's running statistics in ``_stack`` updated as the training task's would be; evaluation: each with
        its task's running statistics."""
        n_tasks = self._stack.shape[0]
        batch = x.shape[0] // n_tasks
        columns = x.reshape(n_tasks, batch, *x.shape[1:]).transpose(0, 1).reshape(batch, n_tasks * x.shape[1], *x.shape[2:])
        mean = self._stack[:, 0].reshape(-1).clone()  # (K C,): batch_norm updates these in place
        var = self._stack[:, 1].reshape(-1).clone()
        weight = None if self.weight is None else self.weight.repeat(n_tasks)
        bias = None if self.bias is None else self.bias.repeat(n_tasks)
        normed = F.batch_norm(columns, mean, var, weight, bias, training=self.training, momentum=self.momentum, eps=self.eps)
        if self.training:
            with torch.no_grad():
                self._stack[:, 0] = mean.view(n_tasks, -1)
                self._stack[:, 1] = var.view(n_tasks, -1)
        normed = normed.unflatten(1, (n_tasks, x.shape[1])).transpose(0, 1)  # (K, B, C, ...)
        return normed.reshape(x.shape)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self._selection[0] == "alphas" and self._selection[1] is not None:
            self._selection = ("alphas", fn(self._selection[1]))
        return out

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}, "
                f"tasks={self.num_tasks}")


class BatchStatNorm(nn.Module):
    """Normalisation with the current batch's statistics at train and test time (no running statistics).

    The reference's ``NonAffineNoStatsBN``; with ``weight``/``bias`` a frozen affine transform.
    The outputs of one image depend on the other images of its batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.num_features = _check_features(num_features)
        self.eps = float(eps)
        self.register_buffer("weight", _frozen(weight, num_features, "weight"))
        self.register_buffer("bias", _frozen(bias, num_features, "bias"))
        self._stack: int | None = None  # K tasks' batches one after another (batched training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, C, ...)``; each of the ``K`` stacked batches uses its own statistics."""
        per_channel = x.shape[0] * math.prod(x.shape[2:]) // (self._stack or 1) if x.ndim >= 2 else 0
        if x.ndim < 2 or x.shape[1] != self.num_features or per_channel < 2:
            raise ConfigError("x", f"a batch (B, {self.num_features}, ...) with at least 2 values per channel (batch "
                              "statistics)", f"shape {tuple(x.shape)}")
        y = batch_statistics_norm(x, self.eps, self._stack or 1)
        if self.weight is not None:
            y = y * _channel_view(self.weight, x) + _channel_view(self.bias, x)
        return y

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class FrozenNorm(nn.Module):
    """A pretrained normalisation module kept as it is: frozen, and always evaluated with its own statistics."""

    def __init__(self, module: nn.Module):
        super().__init__()
        if not isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            raise ConfigError("module", "a BatchNorm, LayerNorm or GroupNorm module", type(module).__name__)
        self.inner = module
        for name, param in list(module.named_parameters(recurse=False)):  # parameters become frozen buffers
            delattr(module, name)
            module.register_buffer(name, param.detach().clone())
        module.eval()

    def train(self, mode: bool = True) -> FrozenNorm:
        """Stays in evaluation mode whatever ``mode`` (frozen running statistics)."""
        super().train(mode)
        self.inner.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pretrained module's output."""
        return self.inner(x)
