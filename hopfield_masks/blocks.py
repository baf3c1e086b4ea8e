"""Named layer masks <-> one flat pattern <-> fixed-size blocks.

A task's mask is usually several named arrays (one per layer, any shape).
:class:`MaskLayout` fixes their order and shapes so they can be flattened into
one state of length ``P`` and rebuilt.  A Hopfield network has a fixed size
``N``, so :class:`BlockLayout` cuts that state into ``ceil(P / N)`` blocks of
exactly ``N`` spins; the last block is padded.

Padding takes the first spins of the same pattern again (``"wrap"``), so padded
units look like ordinary pattern units to the network: a constant padding would
be identical in every stored pattern and so correlate them, which costs capacity.
Both layouts are plain frozen dataclasses with ``to_dict``/``from_dict`` so that
files can record them.

Examples
--------
>>> import numpy as np
>>> layout = BlockLayout(length=5, block_size=4)
>>> layout.n_blocks, layout.padding
(2, 3)
>>> s = np.array([1, -1, 1, 1, -1], dtype=np.int8)
>>> blocks = split_blocks(s, layout)
>>> blocks
array([[ 1, -1,  1,  1],
       [-1,  1, -1,  1]], dtype=int8)
>>> join_blocks(blocks, layout)
array([ 1, -1,  1,  1, -1], dtype=int8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidArgumentError, PatternShapeError
from .patterns import to_spins, validate_mask
from .validate import check_int

__all__ = ["BlockLayout", "MaskLayout", "split_blocks", "join_blocks"]


@dataclass(frozen=True)
class BlockLayout:
    """How a flat state of ``length`` spins is cut into blocks of ``block_size``.

    Attributes
    ----------
    length : int
        Spins in the flat state (``P``).
    block_size : int
        Spins per block, the Hopfield network size ``N``.
    pad_mode : str
        ``"wrap"`` (padding repeats the state's first spins); the only mode.
    """

    length: int
    block_size: int
    pad_mode: str = "wrap"

    def __post_init__(self) -> None:
        check_int("length", self.length, low=0)
        check_int("block_size", self.block_size, low=1)
        if self.pad_mode != "wrap":
            raise InvalidArgumentError("pad_mode", "'wrap'", repr(self.pad_mode))

    @property
    def n_blocks(self) -> int:
        """Number of blocks (0 for an empty state)."""
        return math.ceil(self.length / self.block_size)

    @property
    def padding(self) -> int:
        """Spins appended to the last block."""
        return self.n_blocks * self.block_size - self.length

    def to_dict(self) -> dict:
        """JSON-safe description (inverse of :meth:`from_dict`)."""
        return {"length": int(self.length), "block_size": int(self.block_size), "pad_mode": self.pad_mode}

    @classmethod
    def from_dict(cls, d: Mapping) -> "BlockLayout":
        """Rebuild a layout written by :meth:`to_dict`."""
        return cls(int(d["length"]), int(d["block_size"]), str(d.get("pad_mode", "wrap")))


def split_blocks(state: np.ndarray, layout: BlockLayout) -> np.ndarray:
    """Cut one flat state ``(P,)`` or a batch ``(k, P)`` into blocks.

    Returns an ``int8`` array of shape ``(n_blocks, N)`` or ``(k, n_blocks, N)``.
    """
    s = np.asarray(state)
    if s.shape[-1:] != (layout.length,):
        raise PatternShapeError("state", f"last axis of length {layout.length}", f"shape {s.shape}")
    if layout.padding:
        # wrap-pad: repeat the state's own first spins (cyclically, if padding > length)
        idx = np.arange(layout.padding) % layout.length
        s = np.concatenate([s, s[..., idx]], axis=-1)
    return np.ascontiguousarray(s.reshape(s.shape[:-1] + (layout.n_blocks, layout.block_size)), dtype=np.int8)


def join_blocks(blocks: np.ndarray, layout: BlockLayout) -> np.ndarray:
    """Inverse of :func:`split_blocks`: drop the padding and flatten back to ``(..., P)``."""
    b = np.asarray(blocks)
    if b.shape[-2:] != (layout.n_blocks, layout.block_size):
        raise PatternShapeError(
            "blocks", f"trailing shape ({layout.n_blocks}, {layout.block_size})", f"shape {b.shape}"
        )
    flat = b.reshape(b.shape[:-2] + (layout.n_blocks * layout.block_size,))
    return np.ascontiguousarray(flat[..., : layout.length])


@dataclass(frozen=True)
class MaskLayout:
    """Ordered names and shapes of a task's layer masks.

    Examples
    --------
    >>> import numpy as np
    >>> layout = MaskLayout.from_masks({"fc1": np.ones((2, 3), bool), "fc2": np.zeros(2, bool)})
    >>> layout.length
    8
    >>> masks = layout.unflatten(layout.flatten({"fc1": np.eye(2, 3, dtype=bool), "fc2": np.ones(2, bool)}))
    >>> masks["fc1"].astype(int).tolist(), masks["fc2"].tolist()
    ([[1, 0, 0], [0, 1, 0]], [True, True])
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        shapes = tuple(tuple(int(d) for d in s) for s in self.shapes)
        if len(names) != len(shapes):
            raise InvalidArgumentError("shapes", f"{len(names)} shapes (one per name)", len(shapes))
        if len(set(names)) != len(names):
            raise InvalidArgumentError("names", "unique layer names", list(names))
        for n, s in zip(names, shapes):
            if any(d < 0 for d in s):
                raise InvalidArgumentError("shapes", f"non-negative dimensions for layer {n!r}", s)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", shapes)
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        object.__setattr__(self, "_offsets", tuple(np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()))

    @classmethod
    def from_masks(cls, masks: Mapping[str, np.ndarray]) -> "MaskLayout":
        """Layout of a dict of masks, in the dict's order."""
        return cls(tuple(masks), tuple(np.shape(m) for m in masks.values()))

    @property
    def length(self) -> int:
        """Total mask entries over all layers (``P``)."""
        return int(self._offsets[-1])

    def slices(self) -> dict[str, slice]:
        """Where each layer sits in the flat pattern."""
        return {n: slice(self._offsets[i], self._offsets[i + 1]) for i, n in enumerate(self.names)}

    def flatten(self, masks: Mapping[str, object], *, name: str = "masks") -> np.ndarray:
        """Validate the masks against the layout and return one flat bool array ``(P,)``."""
        if set(masks) != set(self.names):
            raise PatternShapeError(name, f"layers {list(self.names)}", f"layers {list(masks)}")
        parts = []
        for layer, shape in zip(self.names, self.shapes):
            m = validate_mask(masks[layer], name=f"{name}[{layer!r}]")
            if m.shape != shape:
                raise PatternShapeError(f"{name}[{layer!r}]", f"shape {shape}", f"shape {m.shape}")
            parts.append(m.ravel())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

    def flatten_spins(self, masks: Mapping[str, object]) -> np.ndarray:
        """Like :meth:`flatten`, as a flat ``int8`` ±1 state."""
        return to_spins(self.flatten(masks))

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Split a flat mask (bool, or ±1 state) into named bool arrays of the layout's shapes."""
        f = np.asarray(flat)
        if f.shape != (self.length,):
            raise PatternShapeError("flat", f"shape ({self.length},)", f"shape {f.shape}")
        f = f > 0
        return {n: f[sl].reshape(s).copy() for (n, sl), s in zip(self.slices().items(), self.shapes)}

    def to_dict(self) -> dict:
        """JSON-safe description (inverse of :meth:`from_dict`)."""
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "MaskLayout":
        """Rebuild a layout written by :meth:`to_dict`."""
        return cls(tuple(d["names"]), tuple(tuple(s) for s in d["shapes"]))
