"""hopfield_masks: store binary masks as attractors of fixed-size Hopfield networks, and in HDF5 mask banks.

NumPy, Numba and h5py (scipy in the modules that use it); this package never imports torch.
The public API is re-exported here; see ``docs/ARCHITECTURE.md`` for the map.

Examples
--------
Store two layer masks per task in a reservoir under a byte budget and recall one:

>>> import numpy as np
>>> import hopfield_masks as hm
>>> rng = np.random.default_rng(0)
>>> tasks = [{"fc1": rng.random((20, 30)) < 0.5, "fc2": rng.random(40) < 0.5} for _ in range(3)]
>>> layout = hm.MaskLayout.from_masks(tasks[0])
>>> res = hm.Reservoir.from_budget("64kB", layout, rule="storkey")
>>> for masks in tasks:
...     _ = res.store(masks)
>>> cue = res.cue("noisy:0.05", seed=1, reference=tasks[1])
>>> recalled, result = res.recall(cue=cue, method="dynamics")
>>> all((recalled[k] == tasks[1][k]).all() for k in tasks[1])
True

Or learn ±1 couplings for every task at once and recall each one by its key:

>>> binary = hm.BinaryReservoir(layout, key_units=64)
>>> binary.fit(np.stack([layout.flatten_spins(t) for t in tasks])).rows_unconverged
0
>>> bool((binary.recall_keyed().states[1] == layout.flatten_spins(tasks[1])).all())
True
"""

from __future__ import annotations

from .blocks import BlockLayout, MaskLayout, join_blocks, split_blocks
from .budget import format_bytes, parse_budget
from .errors import (
    BankFileNotFoundError,
    BudgetError,
    CapacityWarning,
    FileWriteError,
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
from .rules import LearningRule, available_rules, get_rule, register_rule
from .network import HopfieldNetwork
from .recall import Guidance, GuidedRecallResult, HammingGuidance, RecallResult, guided_dynamics, score_descent
from .reservoir import Reservoir
from .backends import MaskBank, available_backends, create_bank, describe_file, open_bank
from .codecs import MaskCodec, register_codec
from .binary import BinaryReservoir, PerceptronRule
from .encoding import EncodeReport, EncodeSettings, encode_bank, read_bank_reservoir
from .capacity import capacity_sweep

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BlockLayout", "MaskLayout", "join_blocks", "split_blocks",
    "format_bytes", "parse_budget",
    "BankFileNotFoundError", "BudgetError", "FileWriteError", "CapacityWarning", "ConvergenceWarning", "HopfieldMasksError",
    "HopfieldMasksWarning", "InvalidArgumentError", "PatternError", "PatternShapeError", "RegistryError",
    "StorageFormatError", "TaskNotFoundError", "UnknownBackendError", "UnknownRuleError",
    "from_spins", "pack_bits", "packed_nbytes", "to_spins", "unpack_bits", "validate_mask", "validate_states",
    "LearningRule", "available_rules", "get_rule", "register_rule",
    "HopfieldNetwork",
    "Guidance", "GuidedRecallResult", "HammingGuidance", "RecallResult", "guided_dynamics", "score_descent",
    "Reservoir", "BinaryReservoir", "PerceptronRule",
    "MaskBank", "available_backends", "create_bank", "describe_file", "open_bank", "MaskCodec", "register_codec",
    "EncodeReport", "EncodeSettings", "encode_bank", "read_bank_reservoir",
    "capacity_sweep",
]
