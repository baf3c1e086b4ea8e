"""One-shot task inference through the mean-mask identity (REFERENCE §2.4, §7).

With the superposed masks ``M_l(alpha) = sum_i alpha_i M^i_l`` the gradient of
an objective with respect to the coefficients is

    g_i = sum_l < dObj/dM_l , M^i_l >,   dObj/dM_l = (dObj/dW~_l) * W_l,

so **one** forward/backward pass through the network with the superposed mask
as a leaf (the cached mean mask when alphas are uniform) gives ``dObj/dM_l``,
and one contraction with the *packed* masks of every task
(:meth:`~supsup_core.layers.base.MaskedLayer.contract`) gives all ``g_i``.  No
float stack of the ``k`` masks is ever built.  One-shot picks
``argmin_i g_i`` over the ``k`` learned tasks only.

:func:`float_stack_coefficient_gradients` is the reference's way (a dense
``k x P`` float stack per layer, alphas as an autograd leaf) kept for tests and
the benchmark.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..models import SupSupNet
from .objectives import check_objective, objective_values

__all__ = [
    "coefficient_gradients",
    "per_image_coefficient_gradients",
    "oneshot_task",
    "build_float_stacks",
    "float_stack_coefficient_gradients",
]

_IMAGES_PER_CHUNK = 32  # per-image gradients hold (chunk, P) floats per layer at a time


def _check_model(model: SupSupNet) -> int:
    """Return ``k`` after checking ``model`` is a SupSupNet with at least one finished task."""
    if not isinstance(model, SupSupNet):
        raise ConfigError("model", "a SupSupNet", type(model).__name__)
    if model.num_tasks == 0:
        raise ConfigError("model", "at least one finished task to infer", "0 tasks")
    return model.num_tasks


def _mask_leaves(model: SupSupNet, alphas: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Superposed task states as fresh leaves requiring grad (the mean mask for alphas=None).

    Masked layers give their superposed mask; per-task batch norms the mixture's mean and
    second moment (:class:`~supsup_core.layers.norm.TaskBatchNorm`), so the gradient covers both.
    """
    k = model.num_tasks
    if alphas is not None and (not isinstance(alphas, torch.Tensor) or tuple(alphas.shape) != (k,)):
        raise ConfigError("alphas", f"None or a tensor of shape ({k},)", tuple(getattr(alphas, "shape", ())))
    leaves = {}
    for name, layer in model.task_layers().items():
        mask = layer.mean_mask() if alphas is None else layer.superposed_mask(alphas)  # mask_shape
        leaves[name] = mask.detach().requires_grad_(True)  # a new leaf over the same storage (never written)
    return leaves


def coefficient_gradients(
    model: SupSupNet, x: torch.Tensor, objective: str = "H", alphas: torch.Tensor | None = None, *, real_classes: int = 10
) -> torch.Tensor:
    """``d mean_x Obj / d alpha`` at ``alphas`` (uniform ``1/k`` when None): float64 ``(k,)``.

    One forward/backward through the superposed network, then one packed contraction per layer.

    Examples
    --------
    >>> import torch
    >>> from supsup_core.config import ModelConfig
    >>> from supsup_core.models import build_model
    >>> model = build_model(ModelConfig(hidden=(6,), output_size=4, in_features=16, image=4))
    >>> for _ in range(3):
    ...     _ = model.add_task(), model.finish_task()
    >>> coefficient_gradients(model, torch.randn(2, 16, generator=torch.Generator().manual_seed(0))).shape
    torch.Size([3])
    """
    _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    leaves = _mask_leaves(model, alphas)
    with torch.enable_grad():
        obj = objective_values(model(x, masks=leaves), objective, real_classes).mean()
        grads = torch.autograd.grad(obj, list(leaves.values()))
    layers = model.task_layers().values()
    return sum(layer.contract(g.unsqueeze(0))[0] for layer, g in zip(layers, grads))


_PER_IMAGE_BACKENDS = ("auto", "rank-one", "vmap")


def per_image_coefficient_gradients(
    model: SupSupNet,
    x: torch.Tensor,
    objective: str = "H",
    alphas: torch.Tensor | None = None,
    *,
    real_classes: int = 10,
    backend: str = "auto",
) -> torch.Tensor:
    """Each image's own coefficient gradient: float64 ``(B, k)``.

    ``backend="rank-one"`` (``"auto"`` for MLPs): one batched forward/backward, then the
    bilinear form of the rank-one per-image gradients with chunks of unpacked masks
    (:mod:`supsup_core.inference.rank_one`).  ``"vmap"`` (``"auto"`` otherwise): per-sample
    gradients with respect to the superposed masks from ``torch.func.vmap(grad(...))``
    (each image is its own forward), every row contracted with the packed masks.
    Models whose outputs couple the batch (BNNet's batch statistics) are refused: a
    lone image has no batch statistics.
    """
    _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    if model.has_batch_statistics:
        raise ConfigError("per", "'batch' for models with batch-statistics unit masks (bnnet)", "'image'")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ConfigError("x", "a batch tensor (B, ...)", getattr(x, "shape", type(x).__name__))
    if backend not in _PER_IMAGE_BACKENDS:
        raise ConfigError("backend", f"one of {list(_PER_IMAGE_BACKENDS)}", repr(backend))
    from .rank_one import rank_one_coefficient_gradients, supports_rank_one

    if backend == "rank-one" and not supports_rank_one(model):
        raise ConfigError("backend", "'vmap' or 'auto' for models with conv or unit masks", "'rank-one'")
    if backend != "vmap" and supports_rank_one(model):
        if alphas is not None:
            _mask_leaves(model, alphas)  # validates the shape
        return rank_one_coefficient_gradients(model, x, objective, alphas, real_classes=real_classes)
    from torch.func import grad, vmap  # local: only this path needs torch.func

    leaves = {name: t.detach() for name, t in _mask_leaves(model, alphas).items()}

    def single(masks: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        logits = model(image, masks=masks)  # (1, s)
        return objective_values(logits, objective, real_classes)[0]

    per_sample = vmap(grad(single), in_dims=(None, 0))
    rows = []
    for start in range(0, x.shape[0], _IMAGES_PER_CHUNK):
        chunk = x[start : start + _IMAGES_PER_CHUNK].unsqueeze(1)  # (b, 1, ...): one image per call
        with torch.enable_grad():
            grads = per_sample(leaves, chunk)  # {name: (b, *mask_shape)}
        rows.append(sum(layer.contract(grads[name]) for name, layer in model.task_layers().items()))  # (b, k)
    return torch.cat(rows, dim=0)  # (B, k)


def oneshot_task(
    model: SupSupNet, x: torch.Tensor, objective: str = "H", *, real_classes: int = 10, per: str = "batch"
) -> int | torch.Tensor:
    """One-shot inference: ``argmin`` of the coefficient gradient at uniform alphas over learned tasks.

    ``per="batch"`` returns one int from the mean objective over ``x``;
    ``per="image"`` returns a LongTensor ``(B,)``, one task per image.
    """
    if per == "batch":
        return int(torch.argmin(coefficient_gradients(model, x, objective, real_classes=real_classes)))
    if per == "image":
        g = per_image_coefficient_gradients(model, x, objective, real_classes=real_classes)  # (B, k)
        return torch.argmin(g, dim=1)
    raise ConfigError("per", "'batch' or 'image'", repr(per))


def build_float_stacks(model: SupSupNet) -> dict[str, torch.Tensor]:
    """The reference's cache: per masked layer a dense float32 stack ``(k, *mask_shape)`` of all masks."""
    k = _check_model(model)
    return {
        name: torch.stack([layer.task_mask(t) for t in range(k)]).to(torch.float32)  # (k, *mask_shape)
        for name, layer in model.masked_layers().items()
    }


def float_stack_coefficient_gradients(
    model: SupSupNet,
    x: torch.Tensor,
    objective: str = "H",
    alphas: torch.Tensor | None = None,
    *,
    real_classes: int = 10,
    stacks: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Reference implementation of :func:`coefficient_gradients` with dense float stacks (float64 ``(k,)``).

    alphas is an autograd leaf; each layer's mask is ``sum_i alpha_i stack[i]``
    (``tensordot``: the reference's broadcast-multiply-sum, without its ``k x P``
    temporary), then autograd returns ``d Obj / d alpha``.  Costs ``O(k P)`` floats.
    """
    k = _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    stacks = build_float_stacks(model) if stacks is None else stacks
    start = torch.full((k,), 1.0 / k) if alphas is None else alphas.detach()
    a = start.to(model.device, torch.float32).clone().requires_grad_(True)
    with torch.enable_grad():
        masks = {name: torch.tensordot(a, stack, dims=1) for name, stack in stacks.items()}  # {name: mask_shape}
        obj = objective_values(model(x, masks=masks), objective, real_classes).mean()
        (g,) = torch.autograd.grad(obj, a)
    return g.to(torch.float64)
