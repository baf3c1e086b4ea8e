"""Per-image coefficient gradients of MLPs in one batched pass: the gradients are rank one per image and layer.

For a masked linear layer ``y = (W * M) h`` and one image, the gradient of its
objective with respect to the mask is the outer product ``(delta h^T) * W``
(``delta = dObj/dy``, ``h`` the layer input, both from the superposed forward).
Its contraction with task ``t``'s mask is therefore a bilinear form,

    g[i, t] = sum_l  delta_l[i]^T (W_l * M_l^t) h_l[i],

so one forward/backward of the images (each image's objective depends on that
image only) gives every ``h_l[i]`` and ``delta_l[i]``, and the ``(B, k)`` table
of coefficient gradients is, per layer and task, one matrix product ``h (W *
M^t)^T`` followed by a row-wise dot product with ``delta``.  The masks are
unpacked a block of tasks at a time into one reused buffer (never a float stack
of all ``k``), and no ``(B, P)`` per-image gradient is ever formed -- the path
:func:`supsup_core.inference.oneshot.per_image_coefficient_gradients` takes for
other architectures with ``torch.func.vmap`` and the packed contraction.

The matrix products and their elementwise products with ``delta`` are float32;
the sums over outputs and layers are float64: values agree with the exact
contraction to about 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import torch

from ..heap import release_free_memory
from ..layers import MaskedLayer, MaskedLinear
from ..models import SupSupNet
from .objectives import objective_values

__all__ = ["supports_rank_one", "rank_one_coefficient_gradients", "unpack_tasks", "unpack_rows", "packed_rows"]

ENTRIES_PER_CHUNK = 1 << 21  # float32 entries of a block of unpacked masks: 8 MB
FEATURE_BYTES_PER_PASS = 24 << 20  # inputs h and deltas of the images of one pass (FC 1024-1024: about 1,300 images)


def images_per_pass(model: SupSupNet) -> int:
    """Images whose ``h`` and ``delta`` one pass holds: :data:`FEATURE_BYTES_PER_PASS` over their float32 features."""
    features = sum(layer.in_features + layer.out_features for layer in model.masked_layers().values())
    return max(1, FEATURE_BYTES_PER_PASS // (4 * max(1, features)))


def tasks_per_chunk(layer: MaskedLinear) -> int:
    """Masks of ``layer`` unpacked at once: a float32 ``(c, out, in)`` block within :data:`ENTRIES_PER_CHUNK`."""
    return max(1, ENTRIES_PER_CHUNK // max(1, layer.mask_numel))


def supports_rank_one(model: SupSupNet) -> bool:
    """True when every task layer is a :class:`MaskedLinear` and no layer couples the batch (LeNet, FC 1024).

    The identity also needs each masked layer to be applied once per image to a ``(B, in)``
    input; a model that reuses a layer or feeds it sequences is detected during the pass and
    handed to the per-image ``vmap`` path instead.
    """
    layers = model.masked_layers()
    return (bool(layers) and not model.has_batch_statistics and not model.norm_layers()
            and all(isinstance(layer, MaskedLinear) for layer in layers.values()))


def unpack_tasks(layer: MaskedLayer, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Tasks ``start..stop-1`` of ``layer`` as float32 masks ``(stop - start, *mask_shape)`` (MSB-first bits).

    ``out``, if given, is a float32 tensor of that shape on the layer's device that receives them.
    """
    return unpack_rows(layer, layer.packed[:, start:stop].T.contiguous(), out)


def packed_rows(layer: MaskedLayer, tasks: torch.Tensor) -> torch.Tensor:
    """The packed bytes of any ``tasks`` (a LongTensor), task-major ``(len(tasks), nbytes)`` uint8.

    One gather reads each byte row of the task-interleaved buffer once for all the
    tasks, where a column at a time would read it once per task.
    """
    return layer.packed.index_select(1, tasks.to(layer.packed.device)).T.contiguous()


def unpack_rows(layer: MaskedLayer, packed: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Task-major packed bytes ``(c, nbytes)`` of ``layer`` as float32 masks ``(c, *mask_shape)`` (into ``out``)."""
    shape = (packed.shape[0], *layer.mask_shape)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=packed.device)
    if packed.device.type == "cpu":  # numpy's unpackbits (MSB first) is several times faster than torch shifts
        bits = torch.from_numpy(np.unpackbits(packed.numpy(), axis=1, count=layer.mask_numel))  # (c, P) uint8
        return out.copy_(bits.reshape(shape))
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)  # bit 7 is entry 8 j
    bits = (packed.unsqueeze(-1) >> shifts) & 1  # (c, nbytes, 8)
    return out.copy_(bits.reshape(packed.shape[0], -1)[:, : layer.mask_numel].reshape(shape))


def _inputs_and_deltas(
    model: SupSupNet, x: torch.Tensor, objective: str, real_classes: int, alphas: torch.Tensor | None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """Per masked layer: the inputs ``h`` (B, in) and per-image output gradients ``delta`` (B, out).

    None when the forward did not apply every masked layer exactly once to a ``(B, in)`` input.
    """
    layers = model.masked_layers()
    masks = {
        name: (layer.mean_mask() if alphas is None else layer.superposed_mask(alphas)).detach()
        for name, layer in layers.items()
    }
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    calls: dict[str, int] = {}

    def hook(name: str):
        def record(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            if args[0].ndim == 2 and output.ndim == 2:
                output.retain_grad()
                captured[name] = (args[0].detach(), output)

        return record

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    try:
        with torch.enable_grad():
            inputs = x.detach().requires_grad_(True)  # something to differentiate: the masks are constants here
            logits = model(inputs, masks=masks)
            objective_values(logits, objective, real_classes).sum().backward()  # per-image grads: no batch coupling
    finally:
        for handle in handles:
            handle.remove()
    if set(captured) != set(layers) or any(c != 1 for c in calls.values()):
        return None  # a layer reused, skipped or fed more than (B, in): not rank one per image
    return {name: (h, out.grad.detach()) for name, (h, out) in captured.items()}


def rank_one_coefficient_gradients(
    model: SupSupNet,
    x: torch.Tensor,
    objective: str = "H",
    alphas: torch.Tensor | None = None,
    *,
    real_classes: int = 10,
) -> torch.Tensor:
    """Each image's coefficient gradient, float64 ``(B, k)``, for MLP models (see the module docstring).

    Memory is bounded whatever ``B`` and ``k``: the images go in passes of
    :func:`images_per_pass`, and within a pass each layer's masks are unpacked a
    block of :func:`tasks_per_chunk` tasks at a time into one reused buffer, so
    every pass reads all masks once.  The caller checks the model (:func:`supports_rank_one`) and the objective.
    """
    k = model.num_tasks
    out = torch.zeros((x.shape[0], k), dtype=torch.float64, device=x.device)
    step = images_per_pass(model)
    for i in range(0, x.shape[0], step):
        parts = _inputs_and_deltas(model, x[i : i + step], objective, real_classes, alphas)
        if parts is None:  # the model's forward is not a plain chain of linear layers: per-image gradients by vmap
            from .oneshot import per_image_coefficient_gradients

            return per_image_coefficient_gradients(model, x, objective, alphas, real_classes=real_classes, backend="vmap")
        for name, layer in model.masked_layers().items():
            h, delta = parts.pop(name)  # (b, in), (b, out)
            chunk = tasks_per_chunk(layer)
            masked = torch.empty((chunk, *layer.mask_shape), dtype=torch.float32, device=h.device)  # reused buffers:
            z = torch.empty((h.shape[0], layer.out_features), dtype=torch.float32, device=h.device)  # no heap churn
            for start in range(0, k, chunk):
                stop = min(k, start + chunk)
                block = unpack_tasks(layer, start, stop, out=masked[: stop - start]).mul_(layer.weight)  # W * M^t
                for j in range(stop - start):
                    torch.mm(h, block[j].T, out=z)  # (b, out) = (W * M^t) h for every image
                    out[i : i + h.shape[0], start + j] += z.mul_(delta).sum(dim=1, dtype=torch.float64)
            del masked, z
            release_free_memory()  # the layer's buffers go back to the OS before the next layer's are made
    return out
