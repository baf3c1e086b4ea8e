"""Recall as one typed object: :class:`RecallConfig` says how, :class:`Recaller` holds what is needed.

A :class:`Recaller` opens a mask bank once — its reservoir for a byte budget
(encoded first when missing, refused when stale), the model its metadata
describes and the task stream its data came from — and recalls every task's
mask under one validated :class:`RecallConfig`.  The CLI's ``recall`` and
``demo`` and :func:`supsup_core.demo.run_demo` only build the config, call
:meth:`Recaller.recall_all` and render the rows.

Methods
-------
``"keyed"`` (the default)
    The reservoir stores a seeded *task key* beside every block of a task's
    mask (:meth:`hopfield_masks.reservoir.Reservoir.recall_keyed`), so clamping
    task ``t``'s key makes every network settle into task ``t``'s attractor:
    one candidate mask per stored task, recalled once and shared by all
    queries.  Which task a query needs is decided as in SupSup's one-shot task
    inference (REFERENCE.md §2.4), by the output objective on the unlabeled
    adaptation images: every candidate is screened on the first ``screen_images``
    images (in bfloat16 where the hardware computes it natively), and the
    ``shortlist`` best are scored on all of them in float32; the lowest wins.  (The
    one-shot gradient over the superposition of the candidates is available as
    ``selection="one-shot"``; on BNNet unit masks it ranked the true candidate
    first for only 6 of 14 tasks in a 40-task bank, where screening finds 14
    of 14, so screening is the default.)  Unguided, the candidate nearest to
    the cue is returned (no task identity is given either way).
``"dynamics"`` and ``"score-descent"``
    The earlier procedures of :mod:`hopfield_masks.recall.guided` over the
    blocks independently (guided discrete dynamics, and the reference's score
    descent), with optional noisy restarts ranked by the objective.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hopfield_masks.backends import open_bank
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.binary import BinaryReservoir, PerceptronRule
from hopfield_masks.encoding import (
    AnyReservoir, EncodeReport, EncodeSettings, encode_bank, read_bank_reservoir, reservoir_is_current,
)
from hopfield_masks.errors import InvalidArgumentError, StorageFormatError

from .errors import ConfigError, DataError
from .guidance import model_layout
from .hopsupsup import TaskData, TaskRecall, masks_accuracy, recall_task, task_data
from .inference.objectives import objective_values
from .models import SupSupNet

__all__ = ["RecallConfig", "EncodeSettings", "encode_settings_for", "Recaller", "RECALL_METHODS", "SELECTIONS", "MAX_STEPS", "MAX_RESTARTS",
           "rank_candidates", "select_candidate"]

#: Recall procedures; the first is the default everywhere (library, CLI, demo).
RECALL_METHODS = ("keyed", "dynamics", "score-descent")
#: Most sweeps or steps one recall may run (:attr:`RecallConfig.steps`).
MAX_STEPS = 1_000_000
#: Most extra recalls per task (:attr:`RecallConfig.restarts`).
MAX_RESTARTS = 1_000
_OBJECTIVES = ("H", "G")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_cue(cue: object, method: str) -> str:
    """A cue kind valid for ``method``: ``mean``, ``random``, ``noisy:<p>`` (and ``key`` for keyed)."""
    kinds = ("key", "mean", "random") if method == "keyed" else ("mean", "random")
    ok = isinstance(cue, str) and cue in kinds
    if isinstance(cue, str) and cue.startswith("noisy:") and method != "keyed":
        try:
            ok = 0.0 <= float(cue[len("noisy:"):]) <= 1.0
        except ValueError:
            ok = False
    if not ok:
        noisy = "" if method == "keyed" else " or noisy:<p> with 0 <= p <= 1"
        raise ConfigError("cue", f"{', '.join(kinds)}{noisy} for method {method}", repr(cue))
    return cue


@dataclass(frozen=True)
class RecallConfig:
    """How to recall: method, start, objective and budgets of work, validated at construction.

    Parameters
    ----------
    method : str
        ``"keyed"``, ``"dynamics"`` or ``"score-descent"`` (see the module docstring).
    guided : bool or None
        Output-objective guidance from unlabeled test images of each task;
        ``None``: guided when the bank's data can be rebuilt.
    cue : str or None
        Where recall starts; ``None``: ``"key"`` (the key's own field) for keyed
        recall, ``"mean"`` (the running ±1 sums) otherwise.
    objective : str
        ``"H"`` (entropy) or ``"G"`` (superfluous-neuron logsumexp).
    steps : int or None
        Sweeps (keyed, dynamics) or steps (score-descent), at most :data:`MAX_STEPS`; ``None``: the method's default.
    shortlist : int
        Keyed: candidates scored on every adaptation image after the first narrowing.
    selection : str
        Keyed: how the candidates are narrowed to the shortlist, ``"screen"`` (each
        scored on the first ``screen_images`` adaptation images) or ``"one-shot"``
        (one gradient over their superposition; see :func:`select_candidate`).
    screen_images : int
        Keyed, screening: images each candidate is scored on before the shortlist.
    restarts, restart_noise
        Dynamics and score-descent: extra starts (at most :data:`MAX_RESTARTS`) with that share of the cue's signs
        flipped.
    transductive : bool
        Guide and score on the same test images (the reference's protocol).
    seed : int
        Seeds cues, sweep orders and the adaptation/evaluation split.
    batch_size : int
        Adaptation batch size (images per guidance step).

    Examples
    --------
    >>> RecallConfig().method, RecallConfig().start
    ('keyed', 'key')
    >>> RecallConfig(method="dynamics", steps=0)
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: steps: expected a number of steps in 1..1,000,000 (or None: the method's default), received 0
    """

    method: str = "keyed"
    guided: bool | None = None
    cue: str | None = None
    objective: str = "H"
    steps: int | None = None
    shortlist: int = 8
    selection: str = "screen"
    screen_images: int = 8
    restarts: int = 0
    restart_noise: float = 0.2
    transductive: bool = False
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.method not in RECALL_METHODS:
            raise ConfigError("method", f"one of {', '.join(RECALL_METHODS)}", repr(self.method))
        if self.guided is not None and not isinstance(self.guided, bool):
            raise ConfigError("guided", "True, False or None (guided when the data is available)", repr(self.guided))
        if self.cue is not None:
            _check_cue(self.cue, self.method)
        if self.objective not in _OBJECTIVES:
            raise ConfigError("objective", "H or G", repr(self.objective))
        if self.steps is not None and (not _is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS):
            raise ConfigError("steps", f"a number of steps in 1..{MAX_STEPS:,} (or None: the method's default)", repr(self.steps))
        if not _is_int(self.shortlist) or self.shortlist < 1:
            raise ConfigError("shortlist", "a positive number of candidates", repr(self.shortlist))
        if self.selection not in SELECTIONS:
            raise ConfigError("selection", f"one of {', '.join(SELECTIONS)}", repr(self.selection))
        if not _is_int(self.screen_images) or self.screen_images < 2:
            raise ConfigError("screen_images", "an integer >= 2 (batch-statistics models need two images)",
                              repr(self.screen_images))
        if not _is_int(self.restarts) or not 0 <= self.restarts <= MAX_RESTARTS:
            raise ConfigError("restarts", f"an integer in 0..{MAX_RESTARTS:,}", repr(self.restarts))
        if self.restarts and self.guided is False:
            raise ConfigError("restarts", "0 for unguided recall (restarts are ranked by the guidance objective)",
                              repr(self.restarts))
        if self.restarts and self.method == "keyed":
            raise ConfigError("restarts", "0 for keyed recall (every task's candidate is already scored)",
                              repr(self.restarts))
        noise = self.restart_noise
        if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and 0.0 < float(noise) <= 1.0):
            raise ConfigError("restart_noise", "a fraction of the cue's signs in (0, 1]", repr(noise))
        if not isinstance(self.transductive, bool):
            raise ConfigError("transductive", "True or False", repr(self.transductive))
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise ConfigError("seed", "an integer in [0, 2**32)", repr(self.seed))
        if not _is_int(self.batch_size) or self.batch_size < 2:
            raise ConfigError("batch_size", "an integer >= 2 (batch-statistics models need two images)",
                              repr(self.batch_size))

    @property
    def start(self) -> str:
        """The cue actually used (``cue``, or the method's default)."""
        return self.cue if self.cue is not None else ("key" if self.method == "keyed" else "mean")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecallConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are refused)."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", "a mapping of RecallConfig fields", type(data).__name__)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError("config", f"fields among {sorted(cls.__dataclass_fields__)}", unknown)
        return cls(**dict(data))


def encode_settings_for(method: str, rule: str | None = None, dtype: str = "auto",
                        key_units: int | str = "auto") -> EncodeSettings:
    """How to encode a bank that has no reservoir yet, for recall by ``method``.

    ``rule=None`` picks the rule the method works best with: ``"auto"`` for keyed recall (learned ±1
    couplings where the budget holds them), pseudo-inverse couplings for ``"dynamics"`` and
    ``"score-descent"`` (their sweeps and energy need a Hopfield network).  A perceptron reservoir is
    refused for those two here, before anything is written.
    """
    if method not in RECALL_METHODS:
        raise ConfigError("method", f"one of {', '.join(RECALL_METHODS)}", repr(method))
    if rule is None or (rule == "auto" and method != "keyed"):
        rule = "auto" if method == "keyed" else "pseudo-inverse"
    if rule == PerceptronRule.rule_id and method != "keyed":
        raise ConfigError("rule", f"a Hopfield learning rule for {method} recall (the perceptron rule's reservoir "
                                  "is recalled by key only)", repr(rule))
    return EncodeSettings(rule=rule, dtype=dtype, key_units=key_units)


def _unflatten(layout: MaskLayout, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat ``(P,)`` float tensor into the layout's named layer masks (views)."""
    out, start = {}, 0
    for name, shape in zip(layout.names, layout.shapes):
        size = int(np.prod(shape))
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    return out


def _mean_objective(model: SupSupNet, masks: dict[str, torch.Tensor], batches: list[torch.Tensor],
                    objective: str, real_classes: int) -> torch.Tensor:
    """Mean objective over every image of ``batches`` (a scalar tensor, differentiable in ``masks``)."""
    total = sum(objective_values(model(x, masks=masks), objective, real_classes).sum() for x in batches)
    return total / sum(len(x) for x in batches)


def rank_candidates(model: SupSupNet, candidates: np.ndarray, batches: list[torch.Tensor], *,
                    objective: str = "H", real_classes: int = 10) -> np.ndarray:
    """One-shot scores of candidate masks: ``d objective / d alpha_t`` at the uniform superposition, ``(T,)``.

    The superposed mask is ``sum_t alpha_t m_t`` with ``alpha_t = 1/T`` (the mean
    candidate), so the derivative for candidate ``t`` is ``m_t . g`` with ``g``
    the objective's gradient with respect to the mask; the most negative score
    is the candidate whose weight lowers the objective fastest (REFERENCE.md §2.4).
    """
    layout = model_layout(model)
    masks01 = torch.from_numpy((np.asarray(candidates, np.float32) + 1.0) / 2.0).to(model.device)  # (T, P)
    mean = masks01.mean(0).clone().requires_grad_(True)  # (P,)
    with torch.enable_grad():
        value = _mean_objective(model, _unflatten(layout, mean), batches, objective, real_classes)
        (grad,) = torch.autograd.grad(value, [mean])
    return (masks01 @ grad).double().cpu().numpy()  # (T,)


def _exact_objectives(model: SupSupNet, candidates: np.ndarray, rows: list[int], batches: list[torch.Tensor],
                      objective: str, real_classes: int) -> dict[int, float]:
    """Mean objective on every image of ``batches`` of each candidate row in ``rows`` (float32, vectorised)."""
    picked = np.asarray(candidates)[rows]
    total = np.zeros(len(rows))
    for x in batches:
        total += len(x) * _screen_objectives(model, picked, x.to(model.device), objective, real_classes)
    total /= sum(len(x) for x in batches)
    return dict(zip(rows, total.tolist()))


def _low_precision(device: torch.device) -> torch.autocast | contextlib.nullcontext:
    """bfloat16 autocast where the hardware computes it natively (a CUDA device, or a CPU with AVX512-BF16)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and torch.cpu._is_avx512_bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _screen_objectives(model: SupSupNet, candidates: np.ndarray, x: torch.Tensor, objective: str,
                       real_classes: int, chunk: int = 256, fast: bool = False) -> np.ndarray:
    """Mean objective on one batch ``x`` of every candidate, ``(T,)``: vectorised over candidates with ``vmap``.

    What does not depend on the mask (the first layer's pre-activations) is
    computed once per chunk.  A model whose forward cannot be vectorised is
    scored one candidate at a time, with the same result.  ``fast``: in bfloat16
    where the hardware has it (a screen: the shortlist is then scored in float32).
    """
    layout = model_layout(model)

    def one(flat: torch.Tensor) -> torch.Tensor:
        return objective_values(model(x, masks=_unflatten(layout, flat)), objective, real_classes).float().mean()

    masks01 = torch.from_numpy((np.asarray(candidates, np.float32) + 1.0) / 2.0).to(model.device)  # (T, P)
    out = []
    with torch.no_grad(), (_low_precision(masks01.device) if fast else contextlib.nullcontext()):
        for part in torch.split(masks01, chunk):
            try:
                out.append(torch.func.vmap(one)(part))
            except RuntimeError:  # an op without a batching rule: score one by one
                out.append(torch.stack([one(m) for m in part]))
    return torch.cat(out).double().cpu().numpy()


#: How keyed recall narrows the candidates before scoring the shortlist on every adaptation image.
SELECTIONS = ("screen", "one-shot")


def select_candidate(model: SupSupNet, candidates: np.ndarray, batches: list[torch.Tensor], *,
                     objective: str = "H", real_classes: int = 10, shortlist: int = 8,
                     selection: str = "screen", screen_images: int = 8) -> tuple[int, dict[int, float]]:
    """The candidate with the lowest mean objective on ``batches``, among a shortlist when there are many.

    With more than ``shortlist`` candidates they are first narrowed down:
    ``"screen"`` scores every candidate on the first ``screen_images`` images of the first batch,
    ``"one-shot"`` ranks them by :func:`rank_candidates` (one gradient);
    the ``shortlist`` best are then scored on all of ``batches``.  Returns the
    chosen row and the objective of every candidate scored on all batches.
    """
    if selection not in SELECTIONS:
        raise ConfigError("selection", f"one of {SELECTIONS}", repr(selection))
    t = len(candidates)
    rows = list(range(t))
    if t > shortlist:
        if selection == "one-shot":
            scores = rank_candidates(model, candidates, batches, objective=objective, real_classes=real_classes)
        else:
            x = batches[0][:max(2, screen_images)].to(model.device)  # batch statistics need two images
            scores = _screen_objectives(model, candidates, x, objective, real_classes, fast=True)
        rows = np.argsort(scores, kind="stable")[:shortlist].tolist()
    exact = _exact_objectives(model, candidates, rows, batches, objective, real_classes)
    best = min(exact, key=lambda i: (exact[i], i))
    return best, exact


class Recaller:
    """A bank's reservoir, model and data, opened once, and recall of its tasks under one :class:`RecallConfig`.

    Parameters
    ----------
    bank : path-like
        Mask bank file (its tasks are the true masks recall is compared with).
    budget : str or int
        Byte budget of the reservoir attached to the bank.
    config : RecallConfig, optional
    device : str
        Torch device for the model.
    data_dir : path-like or str, optional
        The bank's data from where it is here: an MNIST IDX folder (a path) or a data spec (a string).  Data
        given here must be usable: a path or spec that cannot be read is refused (before anything is written),
        where the data the bank records is only skipped (unguided recall, with a note) when it is missing.
    encode_missing : EncodeSettings or None
        Encode a reservoir when the bank has none for ``budget`` (``None``: refuse).
    model, stream : optional
        An already built model and stream for this bank (the demo passes its own).
    factory : str, optional
        ``MODULE:FACTORY`` that built the bank's model, for a model that is not built in (a bank never
        makes this toolkit import code).

    Raises
    ------
    StorageFormatError
        No masks, no reservoir (and ``encode_missing=None``), or a reservoir encoded
        from other masks than the bank now holds.
    ConfigError
        Guidance asked for without a model or data, or ``G`` without superfluous outputs.
    """

    def __init__(self, bank: str | Path, budget: str | int | float = "1MB", config: RecallConfig | None = None, *,
                 device: str = "cpu", data_dir: str | Path | None = None,
                 encode_missing: EncodeSettings | None = EncodeSettings(),
                 model: SupSupNet | None = None, stream: Any = None, factory: str | None = None) -> None:
        self.bank = Path(bank)
        self.budget = budget
        self.config = config if config is not None else RecallConfig()
        if not isinstance(self.config, RecallConfig):
            raise ConfigError("config", "a RecallConfig", type(self.config).__name__)
        with open_bank(self.bank, "r") as b:
            self.tasks = b.tasks()
            if not self.tasks:
                raise StorageFormatError(self.bank, "holds no masks to recall")
            self.layout = b.task_layout(self.tasks[0])
            metadata = b.metadata
        self.note: str | None = None
        if model is None and stream is None:
            model, stream = self._open_model_and_stream(metadata, device, data_dir, factory)
        if model is not None and model.norm_layers():
            # recalled masks carry no batch-norm statistics, and guidance does not know the task to take them from
            if self.config.guided:
                raise ConfigError("guided", "unguided recall for a model with per-task batch norms (recalled masks "
                                            "carry no statistics to run it with)", f"{self.bank}: layers "
                                            f"{sorted(model.norm_layers())[:3]}")
            self.note = "the model keeps per-task batch-norm statistics, which recalled masks do not carry: unguided"
            model, stream = None, None
        self.model, self.stream = model, stream
        self.guided = (self.stream is not None and self.model is not None) if self.config.guided is None \
            else self.config.guided
        if self.guided and (self.model is None or self.stream is None):
            raise ConfigError("guided", "a bank whose metadata describes a supsup_core model and its data "
                                        "(written by 'train' or 'demo'), or unguided recall", f"{self.bank}: {self.note}")
        if self.guided and self.config.objective == "G" and self.model.output_size <= self._real_classes():
            raise ConfigError("objective", f"H for a model with {self.model.output_size} outputs (G needs "
                                           "superfluous outputs beyond the real classes)", "'G'")
        if self.config.restarts and not self.guided:
            raise ConfigError("restarts", "0 unless recall is guided (a model and its data)", repr(self.config.restarts))
        if self.model is not None and model_layout(self.model) != self.layout:
            raise ConfigError("model", f"masked layers {self.layout.to_dict()}", model_layout(self.model).to_dict())
        self.encoded: EncodeReport | None = None
        self.reservoir = self._open_reservoir(encode_missing)
        self._candidates: np.ndarray | None = None  # keyed: one recalled mask per stored task, (T, P)
        self._candidate_steps: np.ndarray | None = None

    # -- opening ---------------------------------------------------------------------------------
    def _open_model_and_stream(self, metadata: Mapping[str, Any], device: str, data_dir, factory: str | None) -> tuple:
        from .persistence import PRODUCER, check_model_fits, load_model, stream_from_metadata

        if metadata.get("producer") != PRODUCER or "model" not in metadata:
            if data_dir is not None:  # data given explicitly cannot be used: refused, not skipped
                raise ConfigError("data_dir", "a bank whose metadata describes a supsup_core model (written by "
                                              "'train' or 'demo') for data to guide and score recall",
                                  f"{self.bank}: no model in its metadata")
            self.note = "the bank's metadata does not describe a supsup_core model, so only bits wrong are reported"
            return None, None
        model, metadata = load_model(self.bank, device=device, factory=factory)  # BaseNetworkMismatchError when it differs
        try:
            stream = stream_from_metadata(metadata, data_dir)
        except (DataError, ConfigError) as exc:
            if self.config.guided or data_dir is not None:  # data asked for (guidance, or given explicitly): refused
                raise
            self.note = f"no data for guidance or accuracy ({exc})"
            return model, None
        check_model_fits(model, stream, self.bank)
        return model, stream

    def _open_reservoir(self, encode_missing: EncodeSettings | None) -> AnyReservoir:
        reservoir = read_bank_reservoir(self.bank, self.budget)
        if reservoir is None:
            if encode_missing is None:
                raise StorageFormatError(self.bank, f"has no reservoir for {self.budget}; run 'supsup-store encode "
                                                    f"{self.bank} --budget {self.budget}' first")
            if self.config.method != "keyed" and encode_missing.rule == PerceptronRule.rule_id:  # before any write
                raise ConfigError("method", "keyed recall for a reservoir of learned ±1 couplings (rule perceptron)",
                                  repr(self.config.method))
            if self.config.method == "keyed" and encode_missing.key_units == 0:  # refused before anything is written
                raise ConfigError("method", "dynamics or score-descent for a reservoir without task keys (or "
                                            "key units > 0)", "'keyed'")
            reservoir, self.encoded = encode_bank(self.bank, self.budget, encode_missing)
        elif (reservoir_is_current(self.bank, self.budget) is False or reservoir.n_tasks != len(self.tasks)
              or reservoir.layout != self.layout):
            # tasks written, overwritten or deleted after encoding: recall would score masks never stored
            raise StorageFormatError(
                self.bank, f"its reservoir for {self.budget} was encoded from other masks (it holds "
                           f"{reservoir.n_tasks} tasks of {reservoir.layout.length} entries) but the bank has "
                           f"{len(self.tasks)} of {self.layout.length}; run 'supsup-store encode {self.bank} "
                           f"--budget {self.budget}' again")
        if self.config.method != "keyed" and isinstance(reservoir, BinaryReservoir):
            raise ConfigError("method", "keyed recall for a reservoir of learned ±1 couplings (rule perceptron)",
                              repr(self.config.method))
        if self.config.method == "keyed" and not reservoir.key_units:
            raise ConfigError("method", "dynamics or score-descent for a reservoir without task keys (or encode "
                                        "it again with keys)", "'keyed'")
        return reservoir

    def _real_classes(self) -> int:
        return int(self.stream.output_classes) if self.stream is not None else 10

    # -- recall ----------------------------------------------------------------------------------
    def candidates(self) -> np.ndarray:
        """Keyed recall of every stored task, computed once: int8 ``(T, P)``, row ``i`` = reservoir task ``i``."""
        if self._candidates is None:
            cfg = self.config
            cue = None if cfg.start == "key" else cfg.start
            result = self.reservoir.recall_keyed(cue, max_steps=cfg.steps or 100, seed=cfg.seed)
            self._candidates, self._candidate_steps = result.states, result.steps
        return self._candidates

    def task_data(self, index: int) -> TaskData:
        """The adaptation batches and evaluation images of stream task ``index``."""
        if index >= self.stream.n_tasks:
            raise DataError(f"task {index} has no data in the {self.stream.n_tasks}-task stream")
        return task_data(self.stream, index, batch_size=self.config.batch_size,
                         transductive=self.config.transductive, seed=self.config.seed)

    def recall_task(self, task: str, true_masks: Mapping[str, np.ndarray], data: TaskData | None,
                    position: int) -> TaskRecall:
        """Recall bank task ``task`` (the ``position``-th) and compare it with ``true_masks``.

        Every argument was checked when the config was built, so a bad value met during recall comes from the
        bank's reservoir or from the model's outputs on its data: it is raised naming the bank (never as an
        argument of the procedures inside, such as ``external_field``).
        """
        try:
            return self._recall_task(task, true_masks, data, position)
        except ConfigError:
            raise
        except InvalidArgumentError as exc:
            if "guidance" in str(exc.argument):
                raise ConfigError(str(self.bank), "a model whose outputs on the bank's data have a finite gradient "
                                  "(guided recall follows it; or recall --unguided)",
                                  f"NaN or infinity in the guidance gradient of task {task}") from None
            raise StorageFormatError(self.bank, f"its reservoir for {self.budget} holds values recall cannot use "
                                                f"(recalling task {task}: expected {exc.expected}, received "
                                                f"{exc.received}); encode it again") from None

    def _recall_task(self, task: str, true_masks: Mapping[str, np.ndarray], data: TaskData | None,
                     position: int) -> TaskRecall:
        cfg = self.config
        guided = self.guided and data is not None
        if cfg.method != "keyed":
            knobs: dict[str, Any] = {}
            if cfg.steps is not None:
                knobs["max_sweeps" if cfg.method == "dynamics" else "n_steps"] = cfg.steps
            return recall_task(
                self.reservoir, true_masks, task=task, model=self.model, data=data, guided=guided,
                method=cfg.method, cue=cfg.start, objective=cfg.objective, seed=cfg.seed + position, knobs=knobs,
                restarts=cfg.restarts if guided else 0, restart_noise=cfg.restart_noise,
                real_classes=self._real_classes(),
            )
        candidates = self.candidates()
        calls = 0
        if guided:
            chosen, scored = select_candidate(self.model, candidates, data.adapt, objective=cfg.objective,
                                              real_classes=self._real_classes(), shortlist=cfg.shortlist,
                                              selection=cfg.selection, screen_images=cfg.screen_images)
            narrowed = len(candidates) > cfg.shortlist
            first = (len(data.adapt) if cfg.selection == "one-shot" else len(candidates)) if narrowed else 0
            calls = first + len(data.adapt) * len(scored)  # forward passes (screen: of screen_images images)
        else:  # no guidance, no task identity: the candidate nearest to the cue
            cue = np.where(self.reservoir.cue("mean" if cfg.start == "key" else cfg.start, seed=cfg.seed) >= 0, 1, -1)
            chosen = int(np.argmin((candidates != cue[None, :].astype(np.int8)).sum(1)))
        recalled = self.layout.unflatten(candidates[chosen])
        bits_wrong = {name: int(np.count_nonzero(recalled[name] != np.asarray(true_masks[name], dtype=bool)))
                      for name in self.layout.names}
        steps = int(self._candidate_steps[chosen])
        row = TaskRecall(task=task, method="keyed", guided=guided, cue=cfg.start, bits_wrong=bits_wrong,
                         exact=not any(bits_wrong.values()), steps_run=steps, steps_to_final=steps,
                         guidance_calls=calls, chosen_task=chosen, candidates=len(candidates))
        if self.model is not None and data is not None:
            row.true_accuracy = masks_accuracy(self.model, true_masks, data.eval_x, data.eval_y)
            row.recalled_accuracy = (row.true_accuracy if row.exact
                                     else masks_accuracy(self.model, recalled, data.eval_x, data.eval_y))
        return row

    def recall_all(self, progress: Callable[[int, int], None] | None = None) -> list[TaskRecall]:
        """Recall every task of the bank (bank task ``"i"`` is stream task ``i``), one row each."""
        rows: list[TaskRecall] = []
        with open_bank(self.bank, "r") as bank:
            for i, task in enumerate(self.tasks):
                data = None
                if self.stream is not None:
                    data = self.task_data(int(task) if task.isascii() and task.isdecimal() else i)
                rows.append(self.recall_task(task, bank.read_task(task), data, i))
                if progress is not None:
                    progress(i + 1, len(self.tasks))
        return rows

    def describe(self) -> dict[str, Any]:
        """What was recalled from, and how (JSON-safe)."""
        res = self.reservoir
        return {
            "bank": str(self.bank), "budget": self.budget, "reservoir_bytes": int(res.nbytes),
            "networks": res.n_blocks, "network_size": res.network_size, "key_units": res.key_units,
            "rule": res.rule.rule_id, "dtype": res.dtype, "n_tasks": res.n_tasks,
            "capacity_tasks": float(res.capacity), "over_capacity": bool(res.n_tasks > res.capacity),
            "guided": self.guided, "config": self.config.to_dict(), "note": self.note,
        }

