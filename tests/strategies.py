"""Hypothesis strategies shared by the test suite (the only place strategies are defined)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["spins", "spin_batches", "masks", "mask_shapes", "layer_masks", "idx_arrays", "square_images", "rule_ids", "integer_couplings"]


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


# --- supsup_core.data -------------------------------------------------------------------------

IDX_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)


def idx_arrays(max_dims: int = 3, max_side: int = 6) -> st.SearchStrategy[np.ndarray]:
    """Small arrays of every dtype the IDX format stores (1 to ``max_dims`` dimensions, empty sides included)."""
    shapes = hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=max_side)
    return st.tuples(st.sampled_from(IDX_DTYPES), shapes).flatmap(
        lambda ds: hnp.arrays(ds[0], ds[1], elements=hnp.from_dtype(np.dtype(ds[0]), allow_nan=False))
    )


def square_images(max_batch: int = 3, min_side: int = 1, max_side: int = 9) -> st.SearchStrategy[np.ndarray]:
    """A float32 batch ``(n, 1, s, s)`` of square images with values in [0, 1]."""
    shapes = st.tuples(st.integers(1, max_batch), st.integers(min_side, max_side)).map(lambda ns: (ns[0], 1, ns[1], ns[1]))
    return shapes.flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=st.floats(0.0, 1.0, width=32))
    )


# --- hopfield_masks.rules / network / recall ----------------------------------------------------

HOPFIELD_RULE_IDS = ("hebbian", "storkey", "storkey-reference", "pseudo-inverse")


def rule_ids() -> st.SearchStrategy[str]:
    """One of the built-in learning-rule ids."""
    return st.sampled_from(HOPFIELD_RULE_IDS)


def integer_couplings(n: int | st.SearchStrategy[int], max_abs: int = 4) -> st.SearchStrategy[np.ndarray]:
    """A symmetric float64 ``(n, n)`` coupling matrix with small integer entries and a zero diagonal.

    Integer entries make every field sum exact, so ties (a field of exactly 0) are reproduced bit for bit
    by any summation order -- what kernel-versus-reference properties need.
    """
    size = n if isinstance(n, st.SearchStrategy) else st.just(n)

    def build(k: int) -> st.SearchStrategy[np.ndarray]:
        def symmetrise(a: np.ndarray) -> np.ndarray:
            upper = np.triu(a, 1)
            return (upper + upper.T).astype(np.float64)

        return hnp.arrays(np.int64, (k, k), elements=st.integers(-max_abs, max_abs)).map(symmetrise)

    return size.flatmap(build)


# --- hopfield_masks.reservoir -----------------------------------------------------------------


@st.composite
def mask_layouts(draw, max_layers: int = 3, max_side: int = 9, max_dims: int = 2):
    """A :class:`hopfield_masks.blocks.MaskLayout` of 1..``max_layers`` named layers with at least one entry."""
    from hopfield_masks.blocks import MaskLayout

    n = draw(st.integers(1, max_layers))
    shapes = [draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=max_side)) for _ in range(n)]
    if sum(int(np.prod(s)) for s in shapes) == 0:  # a reservoir needs at least one mask entry
        shapes[0] = (draw(st.integers(1, max_side)),)
    return MaskLayout(tuple(f"layer{i}" for i in range(n)), tuple(shapes))


def byte_budgets(min_bytes: int = 1, max_bytes: int = 400_000) -> st.SearchStrategy[int]:
    """A byte budget as a whole number of bytes, spread evenly over orders of magnitude."""
    top = max_bytes.bit_length()
    return st.integers(min_bytes.bit_length() - 1, top - 1).flatmap(
        lambda e: st.integers(max(min_bytes, 2**e), min(max_bytes, 2 ** (e + 1)))
    )


__all__ += ["mask_layouts", "byte_budgets"]


__all__ += ["bank_names", "json_dicts"]


def bank_names() -> st.SearchStrategy[str]:
    """Valid task/attachment names of mask banks: non-empty text without '/' or NUL, not '.' or '..'."""
    return st.text(
        st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12
    ).filter(lambda s: s not in (".", ".."))


def json_dicts(max_leaves: int = 10) -> st.SearchStrategy[dict]:
    """JSON objects (str keys; finite floats, ints, str, bool, None, nested lists and objects)."""
    scalars = (
        st.none() | st.booleans() | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=max_leaves,
    )
    return st.dictionaries(st.text(max_size=8), values, max_size=4)


@st.composite
def packed_mask_stacks(draw, max_bytes: int = 12, max_tasks: int = 9, max_rhs: int = 3):
    """A byte-major packed stack with its kernel inputs (supsup_core._kernels).

    Returns ``(packed, ntasks, grads, alphas)``: ``packed`` is ``(nbytes, capacity)`` uint8
    with ``capacity >= ntasks`` (spare columns hold random bytes the kernels must ignore),
    ``grads`` is ``(R, nbytes, 8)`` float64 and ``alphas`` is ``(ntasks,)`` float64 with some zeros.
    """
    nbytes = draw(st.integers(1, max_bytes))
    ntasks = draw(st.integers(0, max_tasks))
    capacity = ntasks + draw(st.integers(0, 3))
    n_rhs = draw(st.integers(1, max_rhs))
    finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    packed = draw(hnp.arrays(np.uint8, (nbytes, capacity)))
    grads = draw(hnp.arrays(np.float64, (n_rhs, nbytes, 8), elements=finite))
    alphas = draw(hnp.arrays(np.float64, (ntasks,), elements=st.one_of(st.just(0.0), finite)))
    return packed, ntasks, grads, alphas


# --- supsup_core.training.metrics ---------------------------------------------------------------


@st.composite
def accuracy_rows(draw, max_tasks: int = 6) -> list[list[float]]:
    """Rows of a lower-triangular accuracy matrix: row ``i`` has ``i + 1`` accuracies in [0, 1]."""
    n = draw(st.integers(1, max_tasks))
    acc = st.floats(0.0, 1.0, allow_nan=False)
    return [[draw(acc) for _ in range(i + 1)] for i in range(n)]


__all__ += ["accuracy_rows"]
