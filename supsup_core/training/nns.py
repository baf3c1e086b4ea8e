"""NNs: training without task identity, allocating a new mask when no existing one fits (REFERENCE §2.7).

Every ``decision_every`` (100) training batches, the decision batch ``x`` (the
whole training batch, never its task label) is run through the superposition
of ``n`` candidate masks with ``alpha_i = 1/n``; with ``g = d H / d alpha`` and
``nu = softmax(-g)``:

- ``max nu < (1 + epsilon) / n`` (epsilon = 2^-3): nobody fits, **allocate** a new mask;
- otherwise use ``argmax nu``: **continue** training the open mask, or **reuse** a finished one.

How this differs from the reference (and why):

- *Finished masks are immutable.*  Only one mask (the *open* one, the model's
  task in training) holds float scores; a reused finished mask classifies its
  segment but is not trained further.  Keeping scores for every mask is the
  memory cost this toolkit removes (REFERENCE §5.2, §7).  The open mask is
  finished when another mask is allocated or reused, and at the end.
- *Candidates* are the trained masks (finished ones and the open one).  The
  softmax test cannot express doubt about a single candidate (``nu = [1]`` is
  always below ``1.125``), so while fewer than ``min_candidates`` (2) masks are
  trained the masks that allocation would create next -- their initial scores,
  drawn exactly as ``add_task`` will draw them -- fill in as comparators.  They
  are never trained in place: picking one means allocating.
- ``reference_untrained_masks=True`` reproduces the reference's ``n = max(k, 5)``
  with untrained masks in the superposition (``min_candidates = 5``); when the
  reference would train an untrained slot without counting it, we allocate.
- The first decision allocates mask 0 in both modes.  With ``budget`` masks in
  use, an allocation is refused and its segment skipped (the reference's "final dip").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ConfigError
from ..validate import check_float
from ..inference.objectives import check_objective, objective_values
from ..models import SupSupNet, task_seed
from ..subnet import threshold_mask, topk_mask
from .callbacks import ProgressCallback, attach_callbacks
from .config import TrainConfig
from .trainer import Trainer

__all__ = ["NNsDecision", "NNsResult", "train_nns", "nns_batches", "decision_gradients"]

ACTIONS = ("allocate", "continue", "reuse", "skip")


@dataclass(frozen=True)
class NNsDecision:
    """One decision: where in the stream, what was seen, what was done.

    ``stream_task`` is the true task of the decision batch, logged for analysis
    only (the decision never reads it).  ``mask`` is the model task index used for
    the following segment (None when skipped).
    """

    batch: int
    stream_task: int
    n_candidates: int
    nu_max: float
    threshold: float
    action: str
    mask: int | None


@dataclass(frozen=True)
class NNsResult:
    """The allocation log of :func:`train_nns` and the number of masks it left in the model."""

    decisions: list[NNsDecision] = field(default_factory=list)
    n_masks: int = 0
    n_trained_batches: int = 0

    def allocations(self) -> list[NNsDecision]:
        """The decisions that allocated a new mask."""
        return [d for d in self.decisions if d.action == "allocate"]

    def task_to_mask(self) -> dict[int, int]:
        """``{stream task: the mask used most often for it}`` (ties: the lower index)."""
        used: dict[int, Counter] = defaultdict(Counter)
        for d in self.decisions:
            if d.mask is not None:
                used[d.stream_task][d.mask] += 1
        return {t: min(c, key=lambda m: (-c[m], m)) for t, c in sorted(used.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the log, the mask count and the stream-task -> mask map."""
        return {
            "n_masks": self.n_masks,
            "n_trained_batches": self.n_trained_batches,
            "task_to_mask": {str(t): m for t, m in self.task_to_mask().items()},
            "decisions": [asdict(d) for d in self.decisions],
        }


def nns_batches(stream: Any, tasks: Sequence[int], config: TrainConfig) -> Iterator[tuple]:
    """Training batches of ``tasks`` one after another (a task may recur), ``config.batches_per_task`` each.

    A recurring task continues with a different shuffle (its seed is offset by the occurrence).
    """
    seen: Counter = Counter()
    for task in tasks:
        seed = config.seed + seen[task]
        seen[task] += 1
        yield from stream.train_batches(task, batch_size=config.batch_size, seed=seed, n_batches=config.batches_per_task)


def _initial_masks(model: SupSupNet, task: int) -> dict[str, torch.Tensor]:
    """The float masks ``add_task`` would start task ``task`` with (same generator, same layer order)."""
    generator = torch.Generator().manual_seed(task_seed(model.wrap_config.seed, task))
    out = {}
    for name, layer in model.masked_layers().items():
        scores = layer.init_scores(generator).to(model.device)
        mask = topk_mask(scores, layer.density) if layer.mask_mode == "topk" else threshold_mask(scores)
        out[name] = mask.detach().to(torch.float32)
    return out


def decision_gradients(
    model: SupSupNet,
    x: torch.Tensor,
    n_pads: int = 0,
    objective: str = "H",
    real_classes: int = 10,
) -> torch.Tensor:
    """``d mean Obj / d alpha`` over the candidates: finished masks, then the open mask, then ``n_pads`` fresh ones.

    One forward/backward through the network with the uniform superposition of
    the candidates as leaves, then the packed contraction for the finished masks
    and plain inner products for the others (REFERENCE §2.4 identity).

    Returns
    -------
    torch.Tensor
        float64 ``(n,)`` with ``n = num_tasks + (1 if a task is open) + n_pads``.
    """
    check_objective(objective, real_classes, model.output_size)
    k = model.num_tasks
    layers = model.masked_layers()
    extra: list[dict[str, torch.Tensor]] = []
    if model.training_task is not None:
        extra.append({name: layer.score_mask().detach().to(torch.float32) for name, layer in layers.items()})
    first_pad = k + len(extra)
    extra += [_initial_masks(model, first_pad + i) for i in range(n_pads)]
    n = k + len(extra)
    if n == 0:
        raise ConfigError("model", "at least one candidate mask", "no finished, open or padding masks")
    leaves = {}
    for name, layer in layers.items():
        total = layer.mask_sum.to(torch.float32) + sum(e[name] for e in extra)  # mask_shape
        leaves[name] = (total / n).detach().requires_grad_(True)
    with torch.enable_grad():
        obj = objective_values(model(x, masks=leaves), objective, real_classes).mean()
        grads = torch.autograd.grad(obj, list(leaves.values()))
    g = torch.zeros(n, dtype=torch.float64, device=model.device)
    for (name, layer), grad in zip(layers.items(), grads):
        if k:
            g[:k] += layer.contract(grad.unsqueeze(0))[0].to(g.device)  # (k,)
        for i, e in enumerate(extra):
            g[k + i] += (grad.to(torch.float64) * e[name].to(torch.float64)).sum()
    return g


def train_nns(
    model: SupSupNet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    config: TrainConfig,
    *,
    decision_every: int = 100,
    epsilon: float = 2**-3,
    budget: int | None = None,
    reference_untrained_masks: bool = False,
    objective: str = "H",
    real_classes: int = 10,
    callbacks: Iterable[Any] = (),
    progress: Callable[[int], Any] | None = None,
    device: str | torch.device | None = None,
) -> NNsResult:
    """Train ``model`` on ``batches`` without task identity, allocating masks as needed (module docstring).

    Parameters
    ----------
    model : SupSupNet
        Gains the allocated masks (appended after any it already holds); no task may be in training.
    batches : iterable of (x, y, t)
        The training stream (see :func:`nns_batches`); ``t`` is only logged.
    config : TrainConfig
        Optimiser settings; a new optimiser is made for each allocated mask.
    decision_every : int
        Batches between decisions (the decision batch is trained on too).
    epsilon : float
        Allocation slack: allocate when ``max nu < (1 + epsilon) / n``.
    budget : int, optional
        Most masks the model may hold; further allocations skip their segment.
    reference_untrained_masks : bool
        Reproduce the reference's ``n = max(k, 5)`` with untrained masks.
    objective : {"H", "G"}
        Decision objective (the paper uses H).
    real_classes : int
        Labelled outputs (for G).
    callbacks, progress, device
        As :func:`~supsup_core.training.tasks.train_task`; ``on_task_start`` fires when a mask is
        allocated, ``on_task_end`` when it is finished.
    """
    if not isinstance(model, SupSupNet):
        raise ConfigError("model", "a SupSupNet", type(model).__name__)
    if model.training_task is not None:
        raise ConfigError("model", "no task in training", f"task {model.training_task} in training")
    if isinstance(decision_every, bool) or not isinstance(decision_every, int) or decision_every < 1:
        raise ConfigError("decision_every", "an integer >= 1", decision_every)
    epsilon = check_float("epsilon", epsilon, low=0)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= model.num_tasks):
        raise ConfigError("budget", f"None or an integer > {model.num_tasks} (the masks already held)", budget)
    check_objective(objective, real_classes, model.output_size)
    min_candidates = 5 if reference_untrained_masks else 2
    callbacks = list(callbacks)
    base = model.num_tasks  # masks held before this run take part in decisions but were not allocated here
    decisions: list[NNsDecision] = []
    trainer: Trainer | None = None
    trained = 0

    if config.schedule != "constant" or config.epochs is not None:
        raise ConfigError("schedule" if config.schedule != "constant" else "epochs",
                          "a constant rate and batches_per_task for NNs (a task's length is only known when it ends)",
                          config.schedule if config.schedule != "constant" else config.epochs)

    def finish_open() -> None:
        nonlocal trainer
        if trainer is not None:
            trainer.trigger_callbacks("on_task_end")
            model.finish_task()
            trainer = None

    def allocate() -> None:
        nonlocal trainer
        model.add_task()
        trainer = Trainer(model, model.score_parameters(), config, device)
        attach_callbacks(trainer, callbacks)
        if progress is not None:
            ProgressCallback(progress).attach(trainer)
        trainer.trigger_callbacks("on_task_start")

    model.train()
    for i, batch in enumerate(batches):
        x, t = batch[0], batch[2]
        if i % decision_every == 0:
            n_trained = model.num_tasks + (trainer is not None)
            stream_task = int(t[0]) if t.numel() else -1
            if n_trained == 0:
                nu_max, n, action = float("nan"), 0, "allocate"
            else:
                n_pads = max(0, min_candidates - n_trained)
                x_dev = x.to(model.device, non_blocking=True)
                g = decision_gradients(model, x_dev, n_pads, objective, real_classes)
                nu = torch.softmax(-g, dim=0)  # (n,)
                n = g.shape[0]
                nu_max, best = float(nu.max()), int(nu.argmax())
                if nu_max < (1 + epsilon) / n or best >= n_trained:
                    action = "allocate"
                elif trainer is not None and best == n_trained - 1:
                    action = "continue"
                else:
                    action = "reuse"
            mask: int | None
            if action == "allocate":
                finish_open()
                if budget is not None and model.num_tasks >= budget:
                    action, mask = "skip", None
                else:
                    allocate()
                    mask = model.training_task
            elif action == "reuse":
                finish_open()
                mask = best
                model.set_task(best)
            else:
                mask = model.training_task
            threshold = (1 + epsilon) / n if n else float("nan")
            decisions.append(NNsDecision(i, stream_task, n, nu_max, threshold, action, mask))
        if trainer is not None:
            trainer.train_batch(batch)
            trained += 1
        elif progress is not None:  # reused or skipped batches still move the bar
            progress(1)
    finish_open()
    return NNsResult(decisions, model.num_tasks - base, trained)

