"""Bit-packing of boolean tensors on their own device (1 bit per entry).

The bit order is the project's: entries are flattened in C order and packed 8
to a ``uint8``, **most significant bit first**, the last byte padded with zero
bits -- exactly :func:`hopfield_masks.patterns.pack_bits` (``numpy.packbits``'
default), so a model's packed masks and a mask bank's bytes are interchangeable.

Examples
--------
>>> import torch
>>> m = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
>>> pack_bool(m)
tensor([176, 128], dtype=torch.uint8)
>>> torch.equal(unpack_bool(pack_bool(m), m.shape), m)
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["pack_bool", "pack_rows", "pack_rows_torch", "unpack_bool", "packed_nbytes", "BIT_WEIGHTS"]

BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)
"""Value of each of the 8 entries in a byte, first entry = most significant bit."""


def packed_nbytes(n: int) -> int:
    """Bytes holding ``n`` entries at one bit each.

    Examples
    --------
    >>> packed_nbytes(0), packed_nbytes(8), packed_nbytes(9)
    (0, 1, 2)
    """
    return (int(n) + 7) // 8


def pack_bool(mask: torch.Tensor) -> torch.Tensor:
    """Pack a mask (any shape, flattened in C order) into a 1-D ``uint8`` tensor on its device.

    Parameters
    ----------
    mask : torch.Tensor
        Boolean tensor (or 0/1 integer or float tensor).

    Returns
    -------
    torch.Tensor
        ``uint8`` of length ``ceil(numel / 8)``, MSB first, zero-padded.

    Raises
    ------
    ConfigError
        ``mask`` is not a tensor or holds values other than 0 and 1.
    """
    if not isinstance(mask, torch.Tensor):
        raise ConfigError("mask", "a torch.Tensor", type(mask).__name__)
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ConfigError("mask", "values in {0, 1}", f"a {mask.dtype} tensor with other values")
        mask = mask != 0
    flat = mask.reshape(-1)  # (n,)
    n = flat.numel()
    nbytes = packed_nbytes(n)
    padded = torch.zeros(nbytes * 8, dtype=torch.uint8, device=mask.device)  # (8 * nbytes,)
    padded[:n] = flat.to(torch.uint8)
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=mask.device)
    # uint8 products and sums never overflow: each byte is a sum of distinct powers of two
    return (padded.view(nbytes, 8) * weights).sum(dim=1, dtype=torch.uint8)  # (nbytes,)


def unpack_bool(packed: torch.Tensor, shape: tuple[int, ...] | torch.Size | int) -> torch.Tensor:
    """Unpack bytes written by :func:`pack_bool` into a bool tensor of ``shape`` on their device.

    Works on the last axis, so ``packed`` may also be ``(..., nbytes)`` with ``shape`` an int
    (the entry count per row): the result is then ``(..., shape)``.

    Raises
    ------
    ConfigError
        ``packed`` is not ``uint8`` or does not hold exactly ``ceil(n / 8)`` bytes per row.
    """
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise ConfigError("packed", "a uint8 torch.Tensor", getattr(packed, "dtype", type(packed).__name__))
    if isinstance(shape, int):
        n, out_shape = shape, (*packed.shape[:-1], shape)
    else:
        out_shape = tuple(shape)
        n = math.prod(out_shape)
        if packed.ndim != 1:
            raise ConfigError("packed", "a 1-D tensor when shape is a tuple", f"shape {tuple(packed.shape)}")
    if packed.ndim == 0 or packed.shape[-1] != packed_nbytes(n):
        raise ConfigError("packed", f"{packed_nbytes(n)} bytes per row for {n} entries", f"shape {tuple(packed.shape)}")
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)  # (8,) MSB first
    bits = (packed.unsqueeze(-1) >> shifts) & 1  # (..., nbytes, 8)
    bits = bits.reshape(*packed.shape[:-1], -1)[..., :n]  # (..., n)
    return bits.to(torch.bool).reshape(out_shape)


def pack_rows(masks: torch.Tensor) -> torch.Tensor:
    """Pack each row of a 2-D bool tensor ``(n, P)`` into ``(n, ceil(P / 8))`` bytes, same bit order.

    Examples
    --------
    >>> import torch
    >>> pack_rows(torch.tensor([[True, False, True], [False, False, True]]))
    tensor([[160],
            [ 32]], dtype=torch.uint8)
    """
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 2:
        raise ConfigError("masks", "a 2-D bool torch.Tensor", getattr(masks, "shape", type(masks).__name__))
    if masks.device.type == "cpu":  # numpy's packbits: MSB first, zero-padded, no temporaries beyond the result
        return torch.from_numpy(np.packbits(masks.numpy(), axis=1))  # (n, nbytes)
    return pack_rows_torch(masks)


def pack_rows_torch(masks: torch.Tensor) -> torch.Tensor:
    """:func:`pack_rows` in torch ops on any device (the path for CUDA; 8x the mask in temporaries).

    >>> import torch
    >>> pack_rows_torch(torch.tensor([[True, False, True]])).tolist()
    [[160]]
    """
    n, p = masks.shape
    nbytes = packed_nbytes(p)
    padded = torch.zeros((n, nbytes * 8), dtype=torch.uint8, device=masks.device)  # (n, 8 * nbytes)
    padded[:, :p] = masks.to(torch.uint8)
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (padded.view(n, nbytes, 8) * weights).sum(dim=2, dtype=torch.uint8)  # (n, nbytes)
