"""The paper's MNIST networks as plain PyTorch modules (REFERENCE §3.3, §2.8), wrapped by :func:`~supsup_core.models.build_model`.

- :class:`MLP` -- LeNet 300-100 and FC 1024-1024: bias-free linear layers with ReLU between them;
- :class:`BNNet` -- HopSupSup's 784-2048-2048-10: bias-free linear layers, each hidden one followed
  by a non-affine batch-statistics BatchNorm (where the unit masks go) and Swish;
- :class:`ConvNet` -- two 3x3 convolutions with 2x2 max-pooling, then two linear layers.

Every ``forward`` accepts images ``(B, C, H, W)`` or flat rows ``(B, C H W)``.
Layers are named ``fc1``, ``fc2``... (``conv1``, ``conv2``, ``unit1``...): the names masks carry in banks.

Examples
--------
>>> import torch
>>> MLP((300, 100), output_size=100)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 100])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["MLP", "BNNet", "ConvNet", "check_images"]


def check_images(x: object, shape: tuple[int, int, int]) -> torch.Tensor:
    """``x`` as ``(B, C, H, W)`` images of ``shape``, from images or flat rows; ConfigError naming ``x`` otherwise."""
    features = math.prod(shape)
    ok = isinstance(x, torch.Tensor) and x.is_floating_point() and (
        (x.ndim == 2 and x.shape[1] == features) or (x.ndim == 4 and tuple(x.shape[1:]) == shape)
    )
    if not ok:
        received = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError("x", f"a float tensor (B, {features}) or (B, {', '.join(map(str, shape))})", received)
    return x if x.ndim == 4 else x.reshape(x.shape[0], *shape)


class MLP(nn.Module):
    """``in -> widths... -> output_size``, bias-free linear layers ``fc1 .. fc{n}`` with ReLU between them.

    Parameters
    ----------
    widths : tuple of int
        Hidden widths: ``(300, 100)`` is LeNet 300-100, ``(1024, 1024)`` FC 1024-1024.
    output_size : int
        Outputs ``s`` (superfluous neurons beyond the real classes help task inference).
    image_shape : tuple of int
        ``(C, H, W)`` of the inputs (flattened first).
    """

    def __init__(self, widths: tuple[int, ...], output_size: int = 10, image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        dims = [math.prod(self.image_shape), *widths, output_size]
        self.depth = len(dims) - 1
        for i in range(self.depth):
            self.add_module(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1], bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, output_size)``."""
        h = check_images(x, self.image_shape).flatten(1)  # (B, in_features)
        for i in range(1, self.depth):
            h = F.relu(getattr(self, f"fc{i}")(h))  # (B, width_i)
        return getattr(self, f"fc{self.depth}")(h)  # (B, output_size)


class BNNet(nn.Module):
    """HopSupSup's network: ``fc{i}`` (bias-free) -> ``unit{i}`` (non-affine batch-statistics BatchNorm) -> Swish.

    Wrapped with ``masks="units"``, each ``unit{i}`` carries the per-unit mask on the
    normalised pre-activations (REFERENCE §2.8); the linear layers stay frozen.
    """

    def __init__(self, widths: tuple[int, ...] = (2048, 2048), output_size: int = 10,
                 image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        dims = [math.prod(self.image_shape), *widths, output_size]
        self.depth = len(dims) - 1
        for i in range(self.depth):
            self.add_module(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1], bias=False))
            if i < self.depth - 1:
                self.add_module(f"unit{i + 1}", nn.BatchNorm1d(dims[i + 1], affine=False, track_running_stats=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, output_size)``; needs at least two images (batch statistics)."""
        h = check_images(x, self.image_shape).flatten(1)  # (B, in_features)
        for i in range(1, self.depth):
            h = F.silu(getattr(self, f"unit{i}")(getattr(self, f"fc{i}")(h)))  # Swish(u) = u * sigmoid(u)
        return getattr(self, f"fc{self.depth}")(h)


class ConvNet(nn.Module):
    """``conv1`` 3x3 -> ReLU -> max-pool 2 -> ``conv2`` 3x3 -> ReLU -> max-pool 2 -> ``fc1`` -> ReLU -> ``fc2``."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 128), output_size: int = 10,
                 image_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        c1, c2, hidden = widths
        self.image_shape = tuple(image_shape)
        channels, side = self.image_shape[0], self.image_shape[1] // 2 // 2
        self.conv1 = nn.Conv2d(channels, c1, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(c2 * side * (self.image_shape[2] // 2 // 2), hidden, bias=False)
        self.fc2 = nn.Linear(hidden, output_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, output_size)``."""
        h = check_images(x, self.image_shape)  # (B, C, H, W)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)  # (B, c1, H/2, W/2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, c2, H/4, W/4)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, hidden)
        return self.fc2(h)
