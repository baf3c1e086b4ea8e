"""Task inference: objectives H and G, one-shot, binary search and one-shot re-ranking via the mean-mask identity.

Entry points: :func:`predict` (task, confidence, outputs and an "unknown" flag), :func:`infer_task`, and
:func:`infer_groups` for many groups of images at once (evaluation).
Diagnostics: :func:`coefficient_gradients` (packed contraction) and its dense reference
:func:`float_stack_coefficient_gradients`.
"""

from .binary import DEFAULT_METHOD, METHODS, PAPER_METHODS, BinarySearchResult, binary_search, infer_task
from .groups import infer_groups
from .rank_one import rank_one_coefficient_gradients, supports_rank_one
from .rerank import DEFAULT_CANDIDATES, rerank_task
from .objectives import OBJECTIVES, entropy, objective_values, superfluous_logsumexp
from .predict import SIGNALS, Prediction, UnknownThreshold, calibrate_unknown, predict
from .oneshot import (
    build_float_stacks,
    coefficient_gradients,
    float_stack_coefficient_gradients,
    oneshot_task,
    per_image_coefficient_gradients,
)

__all__ = [
    "predict",
    "calibrate_unknown",
    "Prediction",
    "UnknownThreshold",
    "SIGNALS",
    "DEFAULT_METHOD",
    "infer_task",
    "infer_groups",
    "rerank_task",
    "DEFAULT_CANDIDATES",
    "rank_one_coefficient_gradients",
    "supports_rank_one",
    "binary_search",
    "BinarySearchResult",
    "METHODS",
    "PAPER_METHODS",
    "OBJECTIVES",
    "entropy",
    "superfluous_logsumexp",
    "objective_values",
    "coefficient_gradients",
    "per_image_coefficient_gradients",
    "oneshot_task",
    "build_float_stacks",
    "float_stack_coefficient_gradients",
]
