"""A bank's reservoir, model and data opened once, and recall of every task (:class:`Recaller`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hopfield_masks.backends import open_bank
from hopfield_masks.binary import BinaryReservoir, PerceptronRule
from hopfield_masks.budget import parse_budget
from hopfield_masks.encoding import (
    AnyReservoir, EncodeReport, EncodeSettings, encode_bank, read_bank_reservoir, reservoir_is_current,
)
from hopfield_masks.errors import InvalidArgumentError, StorageFormatError

from ..errors import ConfigError, DataError
from ..guidance import model_layout
from ..models import SupSupNet
from .blockwise import recall_task
from .config import RecallConfig
from .data import TaskData, task_data
from .report import TaskRecall, masks_accuracy
from .selection import first_images, select_candidate


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
        self.budget = parse_budget(budget)  # bytes, from here on
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
        from ..persistence import PRODUCER, check_model_fits, load_model, stream_from_metadata

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
            return recall_task(
                self.reservoir, true_masks, task=task, model=self.model, data=data, guided=guided,
                method=cfg.method, cue=cfg.start, objective=cfg.objective, seed=cfg.seed + position, steps=cfg.steps,
                restarts=cfg.restarts if guided else 0, restart_noise=cfg.restart_noise,
                real_classes=self._real_classes(),
            )
        candidates = self.candidates()
        calls = 0
        if guided:
            chosen, scored = select_candidate(self.model, candidates, data.adapt, objective=cfg.objective,
                                              real_classes=self._real_classes(), shortlist=cfg.shortlist,
                                              selection=cfg.selection, screen_images=cfg.screen_images,
                                              score_images=cfg.score_images)
            narrowed = len(candidates) > cfg.shortlist
            first = (len(data.adapt) if cfg.selection == "one-shot" else len(candidates)) if narrowed else 0
            # forward passes (screen: of screen_images images; the shortlist: batches of its first score_images)
            calls = first + len(first_images(data.adapt, cfg.score_images)) * len(scored)
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
