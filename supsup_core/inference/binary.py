"""Binary (log-k) task inference (REFERENCE §2.5) and the :func:`infer_task` entry point.

Binary search keeps an active set ``A`` (all learned tasks at first), takes the
coefficient gradient with alphas uniform on ``A`` and keeps the lower half:
tasks are sorted by ``(g_i, i)`` -- a stable sort, so ties go to the lower
index -- and the first ``ceil(|A| / 2)`` survive.  The set therefore always
shrinks and the search ends after exactly ``ceil(log2 k)`` rounds, all on the
same data (the reference's median rule could keep more than half on ties and
had no proper loop guard).

Cost: the first round uses the cached mean mask; later rounds build
``sum_{i in A} M_i / |A|`` from the packed masks (O(k P / 8) table work per layer
and round, never a float stack), so the whole search is ``ceil(log2 k)``
forward/backward passes plus as many packed passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..models import SupSupNet
from .objectives import check_objective
from .oneshot import _check_model, coefficient_gradients, oneshot_task

__all__ = ["BinarySearchResult", "binary_search", "infer_task", "METHODS", "DEFAULT_METHOD", "PAPER_METHODS"]

#: Task-inference methods: the paper's one-shot and binary search, and one-shot then re-ranking (:mod:`.rerank`).
METHODS = ("oneshot", "binary", "rerank")
#: The method every entry point uses unless told otherwise (``infer_task``, ``infer_groups``, ``predict``,
#: ``evaluate_inferred``, the Avalanche ``SupSupModel``, ``supsup-store evaluate``): the best measured one.  On 250
#: LeNet PermutedMNIST tasks it decides 99.5 % or more of the test batches right where the paper's one-shot decides
#: about 98 % (``benchmarks/results/default_inference.md``), at about the same cost.  Not everywhere: on FC 1024-1024
#: (s = 500) over full MNIST the one-shot decides more batches right (``benchmarks/results/paper_mnist_permuted-fc.md``).
DEFAULT_METHOD = "rerank"
#: The paper's own methods (SupSup §3.3): one gradient (``oneshot``), or ``ceil(log2 k)`` of them (``binary``).
PAPER_METHODS = ("oneshot", "binary")
"""Task-inference methods accepted by :func:`infer_task` (``rerank``: :mod:`supsup_core.inference.rerank`)."""


@dataclass(frozen=True)
class BinarySearchResult:
    """Outcome of :func:`binary_search`.

    Attributes
    ----------
    task : int
        The surviving task.
    rounds : int
        Gradient rounds taken (``ceil(log2 k)``).
    active_sizes : tuple of int
        Size of the active set at the start of each round.
    """

    task: int
    rounds: int
    active_sizes: tuple[int, ...]


def binary_search(model: SupSupNet, x: torch.Tensor, objective: str = "H", *, real_classes: int = 10) -> BinarySearchResult:
    """Halve the active set by the coefficient gradient until one task remains.

    Examples
    --------
    >>> import torch
    >>> from supsup_core.config import ModelConfig
    >>> from supsup_core.models import build_model
    >>> model = build_model(ModelConfig(hidden=(6,), output_size=4, in_features=16, image=4))
    >>> for _ in range(5):
    ...     _ = model.add_task(), model.finish_task()
    >>> result = binary_search(model, torch.randn(3, 16, generator=torch.Generator().manual_seed(0)))
    >>> result.rounds, result.active_sizes
    (3, (5, 3, 2))
    """
    k = _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    active = torch.arange(k)  # ascending task indices
    sizes = []
    while active.numel() > 1:
        sizes.append(active.numel())
        if active.numel() == k:
            alphas = None  # uniform over all: the cached mean mask
        else:
            alphas = torch.zeros(k, dtype=torch.float64)
            alphas[active] = 1.0 / active.numel()
        g = coefficient_gradients(model, x, objective, alphas, real_classes=real_classes).cpu()[active]  # (|A|,)
        order = torch.sort(g, stable=True).indices  # ties keep ascending task order
        active = torch.sort(active[order[: math.ceil(active.numel() / 2)]]).values
    return BinarySearchResult(task=int(active[0]), rounds=len(sizes), active_sizes=tuple(sizes))


def infer_task(
    model: SupSupNet,
    x: torch.Tensor,
    method: str = DEFAULT_METHOD,
    objective: str = "H",
    real_classes: int = 10,
    per: str = "batch",
) -> int | torch.Tensor:
    """Infer which learned task ``x`` comes from, among the ``model.num_tasks`` finished tasks.

    Parameters
    ----------
    model : SupSupNet
        A model with at least one finished task (a task in training is never a candidate).
    x : torch.Tensor
        Images ``(B, 1, 28, 28)`` or ``(B, 784)``.
    method : str
        ``"rerank"`` (the default, :data:`DEFAULT_METHOD`: one gradient, then the best few candidates scored by
        their own objective), or the paper's ``"oneshot"`` (one gradient, argmin) and ``"binary"`` (halving,
        ``ceil(log2 k)`` gradients).
    objective : str
        ``"H"`` (entropy over all outputs) or ``"G"`` (superfluous-neuron logsumexp).
    real_classes : int
        Number of real (labelled) outputs; G stops the gradient on them.
    per : str
        ``"batch"``: one task from the mean objective over ``x``, returned as an int
        (the paper's single-image protocol is ``infer_task(model, x[:1], per="batch")``);
        ``"image"``: one task per image, returned as a LongTensor ``(B,)``.

    Returns
    -------
    int or torch.Tensor
        The task index, or one index per image.
    """
    if method not in METHODS:
        raise ConfigError("method", f"one of {METHODS}", repr(method))
    if per not in ("batch", "image"):
        raise ConfigError("per", "'batch' or 'image'", repr(per))
    if method == "oneshot":
        return oneshot_task(model, x, objective, real_classes=real_classes, per=per)
    if method == "rerank":
        from .rerank import rerank_task

        return rerank_task(model, x, objective, real_classes=real_classes, per=per)
    if per == "batch":
        return binary_search(model, x, objective, real_classes=real_classes).task
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ConfigError("x", "a batch tensor (B, ...)", getattr(x, "shape", type(x).__name__))
    if model.has_batch_statistics:
        raise ConfigError("per", "'batch' for models with batch-statistics unit masks (bnnet)", "'image'")
    tasks = [binary_search(model, x[i : i + 1], objective, real_classes=real_classes).task for i in range(x.shape[0])]
    return torch.tensor(tasks, dtype=torch.long)
