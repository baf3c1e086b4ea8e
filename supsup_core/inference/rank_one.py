"""Per-image coefficient gradients of MLPs in one batched pass: the gradients are rank one per image and layer.

For a masked linear layer ``y = (W * M) h`` and one image, the gradient of its
objective with respect to the mask is the outer product ``(delta h^T) * W``
(``delta = dObj/dy``, ``h`` the layer input, both from the superposed forward).
Its contraction with task ``t``'s mask is therefore a bilinear form,

    g[i, t] = sum_l  delta_l[i]^T (W_l * M_l^t) h_l[i],

so one forward/backward of the whole batch (each image's objective depends on
that image only) gives every ``h_l[i]`` and ``delta_l[i]``, and the ``(B, k)``
table of coefficient gradients is, per layer and chunk of tasks, one batched
matrix product ``h (W * M^t)^T`` followed by a row-wise dot product with
``delta``.  The masks are unpacked a chunk of tasks at a time (never a float
stack of all ``k``), and no ``(B, P)`` per-image gradient is ever formed -- the
path :func:`supsup_core.inference.oneshot.per_image_coefficient_gradients` takes
for other architectures with ``torch.func.vmap`` and the packed contraction.

Float32 products accumulate in float32 (BLAS) before the float64 sum over
layers: values agree with the exact contraction to about 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import torch

from ..layers import MaskedLayer, MaskedLinear
from ..models import SupSupNet
from .objectives import objective_values

__all__ = ["supports_rank_one", "rank_one_coefficient_gradients", "unpack_tasks"]

TASKS_PER_CHUNK = 16  # masks unpacked at once per layer: 16 * P float32 (LeNet fc1: 15 MB)
IMAGES_PER_CHUNK = 1024  # images per pass: (tasks, images, out) float32 products (LeNet fc1: 20 MB)


def supports_rank_one(model: SupSupNet) -> bool:
    """True when every masked layer is a :class:`MaskedLinear` and no layer couples the batch (LeNet, FC 1024)."""
    layers = model.masked_layers()
    return bool(layers) and not model.has_batch_statistics and all(isinstance(layer, MaskedLinear) for layer in layers.values())


def unpack_tasks(layer: MaskedLayer, start: int, stop: int) -> torch.Tensor:
    """Tasks ``start..stop-1`` of ``layer`` as float32 masks ``(stop - start, *mask_shape)`` (MSB-first bits)."""
    packed = layer.packed[:, start:stop].T.contiguous()  # (c, nbytes)
    if packed.device.type == "cpu":  # numpy's unpackbits (MSB first) is several times faster than torch shifts
        bits = torch.from_numpy(np.unpackbits(packed.numpy(), axis=1, count=layer.mask_numel))  # (c, P) uint8
        return bits.to(torch.float32).reshape(packed.shape[0], *layer.mask_shape)
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)  # bit 7 is entry 8 j
    bits = (packed.unsqueeze(-1) >> shifts) & 1  # (c, nbytes, 8)
    flat = bits.reshape(packed.shape[0], -1)[:, : layer.mask_numel]  # (c, P)
    return flat.to(torch.float32).reshape(packed.shape[0], *layer.mask_shape)


def _inputs_and_deltas(
    model: SupSupNet, x: torch.Tensor, objective: str, real_classes: int, alphas: torch.Tensor | None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per masked layer: the inputs ``h`` (B, in) and per-image output gradients ``delta`` (B, out)."""
    layers = model.masked_layers()
    masks = {
        name: (layer.mean_mask() if alphas is None else layer.superposed_mask(alphas)).detach()
        for name, layer in layers.items()
    }
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        def record(module, args, output):
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
    return {name: (h, out.grad.detach()) for name, (h, out) in captured.items()}


def rank_one_coefficient_gradients(
    model: SupSupNet,
    x: torch.Tensor,
    objective: str = "H",
    alphas: torch.Tensor | None = None,
    *,
    real_classes: int = 10,
    tasks_per_chunk: int = TASKS_PER_CHUNK,
) -> torch.Tensor:
    """Each image's coefficient gradient, float64 ``(B, k)``, for MLP models (see the module docstring).

    The caller checks the model (:func:`supports_rank_one`) and the objective.
    """
    k = model.num_tasks
    out = torch.zeros((x.shape[0], k), dtype=torch.float64, device=x.device)
    chunks = [
        (i, _inputs_and_deltas(model, x[i : i + IMAGES_PER_CHUNK], objective, real_classes, alphas))
        for i in range(0, x.shape[0], IMAGES_PER_CHUNK)
    ]  # h and delta of every image: (784 + 300 + 100 + 300 + 100 + s) floats each for LeNet
    for name, layer in model.masked_layers().items():
        weight = layer.weight  # (out, in)
        for start in range(0, k, tasks_per_chunk):  # each chunk of masks is unpacked once for all images
            stop = min(k, start + tasks_per_chunk)
            masked = unpack_tasks(layer, start, stop) * weight  # (c, out, in)
            for i, parts in chunks:
                h, delta = parts[name]  # (b, in), (b, out)
                z = torch.matmul(h, masked.transpose(1, 2))  # (c, b, out) = (W * M^t) h for every image
                out[i : i + h.shape[0], start:stop] += (z * delta).sum(dim=-1).T.to(torch.float64)  # (b, c)
    return out
