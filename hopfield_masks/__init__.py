"""hopfield_masks: store binary masks as attractors of fixed-size Hopfield networks, and in HDF5 mask banks.

NumPy, Numba, h5py and bitarray only; this package never imports torch.
The public API is re-exported here; see ``docs/ARCHITECTURE.md`` for the map.
"""

from __future__ import annotations

from .blocks import BlockLayout, MaskLayout, join_blocks, split_blocks
from .budget import format_bytes, parse_budget
from .errors import (
    BankFileNotFoundError,
    BudgetError,
    CapacityWarning,
    ConvergenceWarning,
    HopfieldMasksError,
    HopfieldMasksWarning,
    InvalidArgumentError,
    PatternError,
    PatternShapeError,
    RegistryError,
    StorageFormatError,
    TaskNotFoundError,
    UnknownBackendError,
    UnknownRuleError,
)
from .patterns import from_spins, pack_bits, packed_nbytes, to_spins, unpack_bits, validate_mask, validate_states

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BlockLayout", "MaskLayout", "join_blocks", "split_blocks",
    "format_bytes", "parse_budget",
    "BankFileNotFoundError", "BudgetError", "CapacityWarning", "ConvergenceWarning", "HopfieldMasksError",
    "HopfieldMasksWarning", "InvalidArgumentError", "PatternError", "PatternShapeError", "RegistryError",
    "StorageFormatError", "TaskNotFoundError", "UnknownBackendError", "UnknownRuleError",
    "from_spins", "pack_bits", "packed_nbytes", "to_spins", "unpack_bits", "validate_mask", "validate_states",
]
