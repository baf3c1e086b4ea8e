"""Image transforms for the MNIST task streams: normalisation, pixel permutations, rotations.

* Normalisation is per channel on pixels scaled to [0, 1]; the default
  statistics are the reference's MNIST ones (mean 0.1307, std 0.3081).
* :func:`permutation_for_task` reproduces the reference exactly: task ``i``
  uses ``numpy.random.RandomState(i + seed).permutation(784)``.  A private
  ``RandomState`` is used, so NumPy's global RNG is never touched (the
  reference reseeds the global one).
* :func:`rotate_images` is a pure-torch replacement for the reference's PIL
  rotation (no torchvision): bilinear interpolation, zero padding, rotation
  about the image centre, **counter-clockwise for positive degrees** as the
  image is displayed (row 0 at the top), like ``PIL.Image.rotate`` and
  ``torch.rot90(x, 1, dims=(-2, -1))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..validate import check_int

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "normalize_images",
    "permutation_for_task",
    "permute_pixels",
    "rotate_images",
]

MNIST_MEAN = 0.1307
"""Mean of MNIST pixels scaled to [0, 1] (the reference's normalisation)."""
MNIST_STD = 0.3081
"""Standard deviation of MNIST pixels scaled to [0, 1]."""

_MAX_SEED = 2**32 - 1  # numpy's legacy RandomState accepts seeds in [0, 2**32 - 1]


def normalize_images(
    images: np.ndarray | torch.Tensor,
    mean: float | Sequence[float] = MNIST_MEAN,
    std: float | Sequence[float] = MNIST_STD,
    *,
    max_value: int = 255,
) -> torch.Tensor:
    """Turn images into normalised float32 tensors ``(n, C, H, W)``.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        ``uint8`` images ``(n, H, W)`` or ``(n, C, H, W)`` with values 0–``max_value``, or
        floating images of the same shapes already scaled to [0, 1].
    mean, std : float or sequence of float
        Per-channel statistics on the [0, 1] scale (one value, or one per channel);
        the defaults are MNIST's (0.1307, 0.3081).
    max_value : int
        The ``uint8`` value that maps to 1.0 (ignored for floating images).

    Returns
    -------
    torch.Tensor
        ``(x / max_value - mean_c) / std_c`` as float32 ``(n, C, H, W)``, a new tensor on the input's device.
        Each channel is computed with scalar arithmetic, so one-channel results are the same bits
        whatever the channel count of the call.

    Examples
    --------
    >>> import numpy as np
    >>> x = normalize_images(np.array([[[0, 255]]], np.uint8))
    >>> tuple(x.shape), round(float(x[0, 0, 0, 1]), 4)
    ((1, 1, 1, 2), 2.8215)
    >>> rgb = normalize_images(np.full((1, 3, 1, 1), 255, np.uint8), (0.5, 0.5, 0.5), (0.5, 0.25, 1.0))
    >>> rgb.flatten().tolist()
    [1.0, 2.0, 0.5]
    """
    max_value = check_int("max_value", max_value, low=1, high=255)
    scale = float(max_value)
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise ConfigError("images", "uint8 or floating values", f"dtype {images.dtype}")
        # astype copies, so read-only (cached) arrays never reach torch.from_numpy.
        images = torch.from_numpy(images.astype(np.float32) / (scale if images.dtype == np.uint8 else 1.0))
    elif isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            images = images.to(torch.float32) / scale
        elif images.is_floating_point():
            images = images.to(torch.float32)
        else:
            raise ConfigError("images", "uint8 or floating values", f"dtype {images.dtype}")
    else:
        raise ConfigError("images", "a numpy.ndarray or torch.Tensor", type(images).__name__)
    if images.ndim == 3:
        images = images.unsqueeze(1)  # (n, H, W) -> (n, 1, H, W)
    if images.ndim != 4:
        raise ConfigError("images", "shape (n, H, W) or (n, C, H, W)", tuple(images.shape))
    channels = images.shape[1]
    means, stds = _per_channel("mean", mean, channels), _per_channel("std", std, channels)
    if channels == 1:
        return (images - means[0]) / stds[0]
    out = torch.empty_like(images)
    for c in range(channels):  # python scalars per channel: the same arithmetic as the one-channel case
        out[:, c] = (images[:, c] - means[c]) / stds[c]
    return out


def _per_channel(name: str, value: float | Sequence[float], channels: int) -> list[float]:
    """One float per channel (a single value is used for every channel); std must be > 0."""
    try:
        values = [value] if isinstance(value, (int, float, np.number)) else list(value)
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(name, "a number or a sequence of numbers (one per channel)", repr(value)) from None
    if len(floats) == 1:
        floats = floats * channels
    if len(floats) != channels:
        raise ConfigError(name, f"one value or {channels} (one per channel)", f"{len(floats)} values")
    if not all(math.isfinite(v) for v in floats) or (name == "std" and min(floats) <= 0):
        raise ConfigError(name, "finite values" + (" > 0" if name == "std" else ""), floats)
    return floats


def permutation_for_task(task: int, seed: int = 1, size: int = 784) -> np.ndarray:
    """The pixel permutation of task ``task``: ``RandomState(task + seed).permutation(size)``.

    Bit-for-bit the reference's choice (with its default ``seed=1`` task 0 is
    already permuted), drawn from a private generator so the global NumPy RNG
    is left alone.

    Parameters
    ----------
    task : int
        Task index, ``>= 0``.
    seed : int
        Offset added to the task index; ``task + seed`` must lie in [0, 2**32 - 1].
    size : int
        Number of pixels (784 for MNIST).

    Returns
    -------
    numpy.ndarray
        ``int64`` ``(size,)``: new pixel ``j`` is old pixel ``perm[j]``.

    Examples
    --------
    >>> p = permutation_for_task(0, seed=1)
    >>> p.shape, sorted(p.tolist()) == list(range(784)), bool((p == np.arange(784)).all())
    ((784,), True, False)
    """
    for name, value in (("task", task), ("seed", seed), ("size", size)):
        check_int(name, value)
    if task < 0:
        raise ConfigError("task", "an index >= 0", task)
    if not 0 <= task + seed <= _MAX_SEED:
        raise ConfigError("seed", f"task + seed in [0, {_MAX_SEED}]", f"task {task} + seed {seed}")
    if size < 1:
        raise ConfigError("size", "a positive number of pixels", size)
    return np.random.RandomState(int(task + seed)).permutation(int(size)).astype(np.int64)


def permute_pixels(images: torch.Tensor, permutation: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Reorder the pixels of each image: flattened pixel ``j`` becomes old pixel ``permutation[j]``.

    Parameters
    ----------
    images : torch.Tensor
        ``(n, C, H, W)`` images (any dtype).
    permutation : array-like of int
        A permutation of ``range(C * H * W)`` (the flattened image, channels first).

    Examples
    --------
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> permute_pixels(x, np.array([3, 2, 1, 0])).flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ConfigError("images", "a tensor of shape (n, C, H, W)", getattr(images, "shape", type(images).__name__))
    index = torch.as_tensor(np.asarray(permutation), dtype=torch.int64, device=images.device)
    n_pixels = images.shape[1] * images.shape[2] * images.shape[3]
    if index.shape != (n_pixels,):
        raise ConfigError("permutation", f"a permutation of {n_pixels} pixels", f"shape {tuple(index.shape)}")
    flat = images.reshape(images.shape[0], -1)  # (n, C, H, W) -> (n, C*H*W)
    return flat[:, index].reshape(images.shape)  # (n, C*H*W) -> (n, C, H, W)


def rotate_images(images: torch.Tensor, degrees: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Rotate images about their centre, counter-clockwise for positive ``degrees``.

    Uses ``affine_grid`` / ``grid_sample`` (bilinear, zero padding,
    ``align_corners=False``).  The affine map is built in pixel units, so
    non-square images rotate without shearing.  Padding is 0, so rotate images
    scaled to [0, 1] *before* normalising (the reference rotates raw images
    with PIL, filling black).  Multiples of 90° on these grids map pixel centres
    onto pixel centres, so they agree with :func:`torch.rot90` to float precision.

    Parameters
    ----------
    images : torch.Tensor
        Floating ``(n, C, H, W)``.
    degrees : float, sequence of float, or torch.Tensor
        One angle for all images, or one per image (``(n,)``).

    Returns
    -------
    torch.Tensor
        Rotated images, same shape, dtype and device.

    Examples
    --------
    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 2] = 1.0   # a dot right of the centre
    >>> rotate_images(x, 90.0)[0, 0].round().nonzero().tolist()   # moves to the top
    [[0, 1]]
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ConfigError(
            "images", "a floating tensor of shape (n, C, H, W)", getattr(images, "shape", type(images).__name__)
        )
    n, _, height, width = images.shape
    angles = torch.as_tensor(degrees, dtype=torch.float64).flatten()
    if angles.numel() == 1:
        angles = angles.expand(n)
    if angles.shape != (n,):
        raise ConfigError("degrees", f"one angle or {n} angles (one per image)", f"{angles.numel()} angles")
    if not torch.isfinite(angles).all():
        raise ConfigError("degrees", "finite angles", angles.tolist())
    if n == 0:
        return images.clone()
    radians = angles * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # grid_sample pulls: output pixel p reads input at theta @ p.  In pixel units with y pointing down, a
    # counter-clockwise rotation on screen reads from R^-1 p = [[cos, -sin], [sin, cos]] p; conjugating with
    # diag(W/2, H/2) (normalised -> pixel units) puts the aspect ratio into the off-diagonal terms.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)  # (n, 2, 3) affine matrices, zero translation
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (height / width)
    theta[:, 1, 0] = sin * (width / height)
    theta[:, 1, 1] = cos
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (n, H, W, 2) sampling points
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
