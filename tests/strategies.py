"""Hypothesis strategies shared by the test suite (the only place strategies are defined)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["spins", "spin_batches", "masks", "mask_shapes", "layer_masks"]


def spins(n: int | st.SearchStrategy[int]) -> st.SearchStrategy[np.ndarray]:
    """A flat int8 state of ±1 spins of length ``n``."""
    size = n if isinstance(n, st.SearchStrategy) else st.just(n)
    return size.flatmap(
        lambda k: hnp.arrays(np.int8, (k,), elements=st.sampled_from([-1, 1]))
    )


def spin_batches(k: int | st.SearchStrategy[int], n: int | st.SearchStrategy[int]) -> st.SearchStrategy[np.ndarray]:
    """A ``(k, n)`` int8 batch of ±1 states."""
    ks = k if isinstance(k, st.SearchStrategy) else st.just(k)
    ns = n if isinstance(n, st.SearchStrategy) else st.just(n)
    return st.tuples(ks, ns).flatmap(
        lambda kn: hnp.arrays(np.int8, kn, elements=st.sampled_from([-1, 1]))
    )


def mask_shapes(max_dims: int = 3, max_side: int = 13) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes of layer masks, including empty and odd sizes."""
    return hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=max_side)


def masks(shape: tuple[int, ...] | None = None) -> st.SearchStrategy[np.ndarray]:
    """A boolean mask of the given (or a drawn) shape."""
    shapes = st.just(shape) if shape is not None else mask_shapes()
    return shapes.flatmap(lambda s: hnp.arrays(np.bool_, s))


@st.composite
def layer_masks(draw, max_layers: int = 4) -> dict[str, np.ndarray]:
    """A dict of named layer masks of assorted shapes (one task's mask)."""
    n = draw(st.integers(1, max_layers))
    return {f"layer{i}": draw(masks()) for i in range(n)}
