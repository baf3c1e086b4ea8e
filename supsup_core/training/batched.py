"""Many GG/GNu tasks trained at once on one device: one batched step over K tasks' scores.

GG/GNu tasks are independent given the base network (:mod:`.jobs`), so K of them
can share one forward and one backward pass: every masked layer holds a
``(K, *mask_shape)`` stack of scores, one optimiser trains the stacks, and each
step reads one batch of every task, stacked into ``(K, B, ...)``.  The frozen
base weights are held once; only the masked weights ``W ⊙ M_k`` are per task.

:class:`BatchedTaskTrainer` (``run(tasks)`` for at most K tasks, ``outcomes(tasks)`` for
any number) returns the :class:`~supsup_core.training.jobs.TaskOutcome`\\ s that
:meth:`TaskWorker.run <supsup_core.training.jobs.TaskWorker.run>` would.

What is the same as the sequential job, by construction
--------------------------------------------------------
- **Scores**: task ``t``'s layers draw their scores in layer order from
  ``torch.Generator().manual_seed(task_seed(model seed, t))``, as ``start_scores``.
- **Data**: task ``t``'s batches are ``stream.train_batches(t, batch_size, seed=cfg.seed,
  n_batches=cfg.batches_per_task, drop_last=setup.drop_last)``; step ``i`` stacks the
  ``i``-th batch of every task.  Tasks whose batch-size schedules differ (SplitMNIST
  digit pairs have different training sizes, so their partial batches fall elsewhere)
  are trained in separate stacks of equal schedules.
- **Masks**: threshold masks are elementwise; top-k keeps the largest ``|scores|`` of
  each task separately (a stable sort per row of the ``(K, n)`` stack: the same ties
  as :class:`~supsup_core.subnet.TopKMask`), never across the K tasks.  Both are
  straight-through, like the layers.
- **Loss**: the **sum** over tasks of each task's mean cross-entropy.  Task ``k``'s
  scores only reach task ``k``'s logits, so ``d loss / d scores_k`` is exactly
  the sequential gradient ``d mean_k / d scores_k``; the mean over tasks would
  scale every gradient by ``1 / K``.  (Adam and RMSprop would nearly undo that
  scale, up to ``eps``; SGD would not, and weight decay would no longer match.)
- **Optimiser**: the :class:`~supsup_core.training.optimizers.ScoreOptimizer` the
  :class:`~supsup_core.training.trainer.Trainer` uses, over the stacks.  Its RMSprop,
  SGD and Adam (weight decay included) update each entry from that entry's gradient
  and state only (Adam's step count is per stack, and every task steps together), so
  one optimiser over the stacks gives every task the updates of its own optimiser.
- **Accuracy**: GG accuracy is measured once per task, on its own test batches
  (``stream.test_batches(t, eval_batch_size)``) under its own mask, stacked like the
  training batches: what :func:`~supsup_core.training.evaluation.gg_accuracy_of_masks`
  counts for the job, with the same logits wherever the masks are bit-identical.

Floating point: where the masks are bit-identical
-------------------------------------------------
``kernels="batched"`` (the default) runs each layer for all K tasks in one kernel:
``torch.bmm`` for masked and fixed linear layers, one grouped ``conv2d`` for masked
convolutions, one ``batch_norm`` over the ``K * units`` columns for unit masks.
``kernels="per-task"`` calls, for each task, the very op the model's forward calls
(``F.linear``, ``F.conv2d``, ``F.batch_norm``) on that task's slice; the optimiser
step and the backward pass are still one for all K tasks.

- **MLPs (LeNet, FC 1024-1024), batched, on CPU: bit-identical** masks and GG
  accuracies.  On CPU ``torch.bmm`` multiplies float32 matrices one batch entry
  at a time with the GEMM ``F.linear`` uses, and the backward pass forms the products
  ``F.linear``'s autograd forms (``grad^T @ x`` for the weight, ``grad @ W`` for the
  input), so products, gradients and updates agree bit for bit (tests check it).  Below ``rows * inner * cols = 400``
  torch's bmm switches to a naive loop that rounds differently; such tiny
  products go through ``F.linear`` per task instead, so identity holds for every size.
- **Conv and BNNet, batched: not guaranteed bit-identical.**  The grouped convolution
  may pick other oneDNN algorithms than K separate ones (for a 2 -> 4 channel 3x3
  layer its forward differs by up to 4e-6), and batch-norm's backward over ``K * units``
  columns vectorises the channels differently for some widths (100 units: last-bit
  gradient differences; 8 and 2048: none).  A last-bit difference only changes a
  mask where it moves a score across the threshold.  Measured on CPU, 3 tasks x 20
  batches: at the presets' learning rates (RMSprop 1e-4, SGD 0.1) the conv net
  (16, 32, 128), a tiny conv net (2, 4, 12) and BNNet 100-100 all gave the sequential
  masks exactly; at lr 1e-2 (100x the preset, most scores cross the threshold every
  few steps, so trajectories diverge) the tiny conv net agreed on 93.4-99.6 % of mask
  entries, the wide one and BNNet 24-24 exactly.  Tests assert at least 99.9 % of mask
  entries equal and GG accuracy within 1 point after 4 batches at lr 1e-2.
- **Any architecture, per-task, on CPU: bit-identical** (the same calls on the same
  values as the sequential forward, stacked afterwards).
- **CUDA**: cuBLAS / cuDNN pick kernels per shape, and a strided-batched GEMM need
  not round like K separate GEMMs, so batched CUDA masks are held to the measured
  agreement above (the CUDA tests; ``benchmarks/bench_batched_training.py`` reports
  the agreement and the tasks bit-identical).  Per-task kernels make the sequential
  job's calls on the same shapes, but the CUDA tests hold them to the same agreement.

Costs: each task's stream iterator holds that task's training tensors (PermutedMNIST
on full MNIST: 188 MB per task), so K tasks hold K of them on the host; on the
device, each masked layer holds ``K`` float copies of its weight shape for the
scores, their gradients, the optimiser state and the masked weights.

NNs is refused (each batch's mask is chosen from the masks trained so far: it is
sequential), as are inputs the sequential job would refuse.

Examples
--------
>>> from supsup_core.config import ModelConfig
>>> from supsup_core.training.config import TrainConfig
>>> from supsup_core.training.jobs import TrainingSetup
>>> setup = TrainingSetup.from_objects(ModelConfig(hidden=(16, 8), output_size=10),
...     {"stream": "permuted-mnist", "n_tasks": 3, "seed": 1}, TrainConfig(batch_size=32, batches_per_task=2))
>>> outcomes = BatchedTaskTrainer(setup, k=2).run([0, 2])
>>> [o.task for o in outcomes], sorted(outcomes[0].masks), outcomes[0].masks["fc1"].shape
([0, 2], ['fc1', 'fc2', 'fc3'], (16, 784))
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..validate import check_int, is_int
from ..heap import release_free_memory
from ..models import SupSupNet, task_seed
from ..subnet import kept_count, threshold_mask
from .config import steps_per_epoch
from .jobs import TaskOutcome, TaskWorker, TrainingSetup, single_thread
from .optimizers import ScoreOptimizer

__all__ = ["BatchedTaskTrainer", "StackedTopKMask", "stacked_mask", "BATCHED_SCENARIOS", "KERNELS"]

#: Scenarios whose tasks are independent given the base network (NNs is sequential).
BATCHED_SCENARIOS = ("gg", "gnu", "gns", "hopsupsup")
#: ``kernels`` settings: one kernel per layer for all tasks, or the model's own op per task.
KERNELS = ("batched", "per-task")


class StackedTopKMask(torch.autograd.Function):
    """Per-task top-k of a ``(K, *mask_shape)`` magnitude stack: row ``k`` as ``TopKMask`` on ``magnitudes[k]``.

    Each task keeps its own ``kept_count(n, density)`` largest entries, ties broken by
    flat index (a stable sort per row gives the single-task order); backward is
    straight-through onto the magnitudes.
    """

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, density: float) -> torch.Tensor:
        """0/1 stack shaped like ``magnitudes``."""
        flat = magnitudes.reshape(magnitudes.shape[0], -1)  # (K, n)
        n_drop = flat.shape[1] - kept_count(flat.shape[1], density)
        order = torch.argsort(flat, dim=1, stable=True)  # (K, n) ascending per task
        out = torch.ones_like(flat)
        out.scatter_(1, order[:, :n_drop], 0.0)  # the n_drop smallest of each task off
        return out.view_as(magnitudes)

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor):
        """Straight-through onto the magnitudes; no gradient for ``density``."""
        return grad_mask, None


def stacked_mask(scores: torch.Tensor, mask_mode: str, density: float) -> torch.Tensor:
    """The masks of a ``(K, *mask_shape)`` score stack, as :meth:`MaskedLayer.score_mask` makes one.

    Examples
    --------
    >>> s = torch.tensor([[0.3, -0.1, 0.2, -0.5], [-0.5, 0.1, 0.0, 0.4]])
    >>> stacked_mask(s, "threshold", 1.0)
    tensor([[1., 0., 1., 0.],
            [0., 1., 1., 1.]])
    >>> stacked_mask(s, "topk", 0.5)  # two per task, not four across the stack
    tensor([[1., 0., 0., 1.],
            [1., 0., 0., 1.]])
    """
    if mask_mode == "topk":
        return StackedTopKMask.apply(scores.abs(), float(density))  # STE through |S|: dL/dS = sign(S) dL/dM
    return threshold_mask(scores)


def _batch_sizes(n: int, batch_size: int, n_batches: int | None, drop_last: bool) -> tuple[int, ...]:
    """The sizes of the batches ``TaskStream.train_batches`` yields for ``n`` training samples."""
    epoch = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size and not drop_last else [])
    if n_batches is None:
        return tuple(epoch)
    return tuple(epoch[i % len(epoch)] for i in range(n_batches))


class BatchedTaskTrainer:
    """Trains up to ``k`` tasks of one :class:`TrainingSetup` at once on ``device``.

    Parameters
    ----------
    setup : TrainingSetup
        What to train (as for :class:`~supsup_core.training.jobs.TaskWorker`).
    k : int
        Most tasks trained in one stack (>= 1).
    device : str or torch.device
        Where the base network, the score stacks and the batches live.
    scenario : str
        One of :data:`BATCHED_SCENARIOS`; ``"nns"`` is refused (it is sequential).
    kernels : {"batched", "per-task"}
        One kernel per layer for all K tasks, or the model's own op per task (see the
        module docstring for which masks are bit-identical with the sequential job).
    model : SupSupNet, optional
        A base network of ``setup``'s configuration holding no finished tasks (shared weights).

    Raises
    ------
    ConfigError
        An invalid ``k``, ``device``, ``scenario`` or ``kernels``, or a model with a layer
        this trainer has no batched form of.

    Notes
    -----
    On CPU, torch runs on one intra-op thread inside :meth:`run` (as the sequential job);
    on other devices the host threads are left as they are.  ``TaskOutcome.train_seconds``
    and ``eval_seconds`` are the stack's training and GG-evaluation times divided by its
    number of tasks.
    """

    def __init__(
        self,
        setup: TrainingSetup,
        k: int,
        device: str | torch.device = "cpu",
        *,
        scenario: str = "gnu",
        kernels: str = "batched",
        model: SupSupNet | None = None,
        stream=None,
    ) -> None:
        k = check_int("k", k, low=1)
        if scenario == "nns":
            raise ConfigError(
                "scenario", f"one of {list(BATCHED_SCENARIOS)} (NNs picks each batch's mask from the masks "
                "trained so far: it is sequential)", repr(scenario),
            )
        if scenario not in BATCHED_SCENARIOS:
            raise ConfigError("scenario", f"one of {list(BATCHED_SCENARIOS)}", repr(scenario))
        if kernels not in KERNELS:
            raise ConfigError("kernels", f"one of {list(KERNELS)}", repr(kernels))
        self.device = _check_device(device)
        if model is not None and isinstance(model, SupSupNet) and model.device.type != self.device.type:
            raise ConfigError("model", f"a base network on {self.device}", f"one on {model.device}")
        self._worker = TaskWorker(setup, self.device, model=model, stream=stream)  # validates setup and model
        self.setup, self.k, self.scenario, self.kernels = setup, k, scenario, kernels
        self.config, self.stream, self.model = self._worker.config, self._worker.stream, self._worker.model
        if self.model.wrap_config.transfer:
            raise ConfigError("transfer", "False for batched training (each task starts from the earlier tasks' scores)", True)

    # ---------------------------------------------------------------- scores
    def start_scores(self, tasks: Sequence[int]) -> list[nn.Parameter]:
        """One ``(len(tasks), *mask_shape)`` score stack per masked layer; row ``i`` is what ``begin_task(tasks[i])`` draws."""
        rows: list[list[torch.Tensor]] = [[] for _ in self.model.masked_layers()]
        for task in tasks:
            generator = torch.Generator().manual_seed(task_seed(self.model.wrap_config.seed, task))
            for i, layer in enumerate(self.model.masked_layers().values()):  # layer order, as begin_task draws
                rows[i].append(layer.init_scores(generator))
        return [nn.Parameter(torch.stack(r).to(self.device)) for r in rows]  # (K, *mask_shape) each

    def start_statistics(self, n_tasks: int) -> dict[str, torch.Tensor]:
        """Fresh running statistics ``(K, 2, C)`` of every per-task batch norm (mean 0, variance 1)."""
        return {name: norm.fresh_statistics().unsqueeze(0).repeat(n_tasks, 1, 1).to(self.device)
                for name, norm in self.model.norm_layers().items()}

    def masks(self, scores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The float mask stacks of ``scores`` (straight-through), one per masked layer."""
        layers = self.model.masked_layers().values()
        return [stacked_mask(s, layer.mask_mode, layer.density) for s, layer in zip(scores, layers, strict=True)]

    # --------------------------------------------------------------- forward
    def logits(self, x: torch.Tensor, masks: Sequence[torch.Tensor], statistics: Mapping[str, torch.Tensor] | None = None
               ) -> torch.Tensor:
        """Logits ``(K, B, output_size)`` of ``x`` ``(K, B, ...)`` (task ``k``'s batch under mask stack row ``k``).

        The model's own ``forward`` runs once on the K batches one after another
        (:meth:`SupSupNet.stacked`); with ``kernels="per-task"`` it runs once per task.
        ``statistics`` holds the per-task batch norms' ``(K, 2, C)`` running statistics (updated in training).
        """
        model = self.model
        names = list(model.masked_layers())
        statistics = {} if statistics is None else statistics
        n_tasks = x.shape[0]
        if self.kernels == "per-task":
            out = []
            for i in range(n_tasks):
                with model.stacked({n: m[i : i + 1] for n, m in zip(names, masks, strict=True)},
                                   {n: s[i : i + 1] for n, s in statistics.items()}):
                    out.append(model(x[i]))
            return torch.stack(out)
        with model.stacked(dict(zip(names, masks, strict=True)), statistics):
            logits = model(x.flatten(0, 1))  # (K B, s)
        return logits.view(n_tasks, -1, logits.shape[-1])

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the K tasks of each task's mean cross-entropy (see the module docstring for why the sum)."""
        n_tasks, batch = y.shape
        per_sample = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")  # (K B,)
        return per_sample.view(n_tasks, batch).mean(dim=1).sum()

    # ----------------------------------------------------------------- runs
    def run(self, tasks: Iterable[int]) -> list[TaskOutcome]:
        """Train ``tasks`` (at most ``k``, distinct) together; one :class:`TaskOutcome` per task, in the given order."""
        tasks = self._check_tasks(tasks)
        cfg = self.config
        with single_thread() if self.device.type == "cpu" else contextlib.nullcontext():
            # Every task's batches, in its own order; stacks only tasks whose batch sizes line up step by step.
            groups: dict[tuple[int, ...], list[tuple[int, Iterator, float]]] = {}
            for task in tasks:
                t0 = time.perf_counter()  # building a task's data counts as its training, as in the job
                n = self.stream.train_size(task)  # builds the task's tensors, which train_batches then uses
                n_batches = cfg.task_steps(steps_per_epoch(n, cfg.batch_size, self.setup.drop_last))
                batches = self.stream.train_batches(
                    task, batch_size=cfg.batch_size, seed=cfg.seed, n_batches=n_batches, drop_last=self.setup.drop_last,
                )
                groups.setdefault(_batch_sizes(n, cfg.batch_size, n_batches, self.setup.drop_last), []).append(
                    (task, batches, time.perf_counter() - t0))
            outcomes: dict[int, TaskOutcome] = {}
            for group in groups.values():
                outcomes.update((o.task, o) for o in self._train_group(group))
                release_free_memory()  # the stack's temporaries go back to the OS (supsup_core.heap)
        return [outcomes[t] for t in tasks]

    def outcomes(self, tasks: Iterable[int]) -> Iterator[TaskOutcome]:
        """Outcomes of any number of ``tasks``, in the given order, trained ``k`` at a time."""
        tasks = list(tasks)
        for start in range(0, len(tasks), self.k):
            yield from self.run(tasks[start : start + self.k])

    def _train_group(self, group: list[tuple[int, Iterator, float]]) -> list[TaskOutcome]:
        """Train the tasks of ``group`` (equal batch schedules, data built in the given seconds) as one stack; GG of each."""
        tasks = [task for task, _, _ in group]
        start = time.perf_counter() - sum(seconds for _, _, seconds in group)
        scores = self.start_scores(tasks)
        statistics = self.start_statistics(len(tasks))
        optimizer = ScoreOptimizer(scores, self.config)  # what Trainer steps a single task with
        cfg = self.config
        epoch_steps = (steps_per_epoch(self.stream.train_size(tasks[0]), cfg.batch_size, self.setup.drop_last)
                       if cfg.schedule != "constant" else 1)  # equal batch schedules: equal epochs
        n_outputs = self.model.output_size
        self.model.train()
        for i, step in enumerate(zip(*(batches for _, batches, _ in group), strict=True)):
            optimizer.lr = cfg.learning_rate(i, epoch_steps, cfg.task_steps(epoch_steps))
            x, y = _stack([b[0] for b in step], self.device), torch.stack([b[1] for b in step])  # (K, B, ...), (K, B)
            _check_labels(y, n_outputs)  # on the CPU labels: no device sync
            y = _to_device(y, self.device)
            loss = self.loss(self.logits(x, self.masks(scores), statistics), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            masks = [m.detach() for m in self.masks(scores)]  # (K, *mask_shape) float 0/1 each
            stacks = [(m != 0).cpu().numpy() for m in masks]  # bool, on the host
            stat_stacks = {name: s.detach().cpu().numpy().astype(np.float32) for name, s in statistics.items()}
        del optimizer, scores
        trained = time.perf_counter()
        accuracies = self.gg_accuracies(tasks, masks, statistics)
        evaluated = time.perf_counter()
        names = list(self.model.masked_layers())
        out = []
        for i, (task, (accuracy, n)) in enumerate(zip(tasks, accuracies, strict=True)):
            own = {name: stack[i].copy() for name, stack in zip(names, stacks, strict=True)}  # own arrays, as end_task
            stats = {name: stack[i].copy() for name, stack in stat_stacks.items()}
            # the stack's times, shared by its tasks
            out.append(TaskOutcome(task, own, accuracy, n, (trained - start) / len(tasks), (evaluated - trained) / len(tasks),
                                   stats))
        return out

    def gg_accuracies(self, tasks: Sequence[int], masks: Sequence[torch.Tensor],
                      statistics: Mapping[str, torch.Tensor] | None = None) -> list[tuple[float, int]]:
        """GG accuracy and test size of each task under its row of the mask stacks, on its own test set.

        What :func:`~supsup_core.training.evaluation.gg_accuracy_of_masks` measures, with the test
        batches of tasks of equal test-set sizes stacked as in training (``eval_batch_size`` each).
        """
        batch_size = self.setup.eval_batch_size
        statistics = {} if statistics is None else statistics
        schedules: dict[tuple[int, ...], list[tuple[int, Iterator]]] = {}
        for row, task in enumerate(tasks):
            batches = self.stream.test_batches(task, batch_size)
            sizes = _batch_sizes(self.stream.test_size(task), batch_size, None, False)  # cached by the line above
            schedules.setdefault(sizes, []).append((row, batches))
        out: list[tuple[float, int]] = [(float("nan"), 0)] * len(tasks)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for group in schedules.values():
                    rows = [row for row, _ in group]
                    index = torch.tensor(rows, device=self.device)
                    sub = [m.index_select(0, index) for m in masks]  # (K', *mask_shape)
                    sub_stats = {name: s.index_select(0, index) for name, s in statistics.items()}
                    correct = torch.zeros(len(rows), dtype=torch.int64, device=self.device)  # summed on the device
                    n = 0
                    for step in zip(*(batches for _, batches in group), strict=True):
                        x, y = _stack([b[0] for b in step], self.device), _stack([b[1] for b in step], self.device)
                        correct += (self.logits(x, sub, sub_stats).argmax(dim=2) == y).sum(dim=1)
                        n += y.shape[1]
                    for row, c in zip(rows, correct.tolist(), strict=True):
                        out[row] = (c / n if n else float("nan"), n)
        finally:
            self.model.train(was_training)
        return out

    def _check_tasks(self, tasks: Iterable[int]) -> list[int]:
        """Validate a list of at most ``k`` distinct stream tasks before anything is trained."""
        if isinstance(tasks, (str, bytes, Mapping)) or not isinstance(tasks, Iterable):
            raise ConfigError("tasks", "a sequence of task indices", type(tasks).__name__)
        tasks = list(tasks)
        if not 1 <= len(tasks) <= self.k:
            raise ConfigError("tasks", f"1 to k = {self.k} task indices", f"{len(tasks)} tasks")
        n = self.stream.n_tasks
        bad = [t for t in tasks if not is_int(t) or not 0 <= t < n]
        if bad:
            raise ConfigError("tasks", f"stream tasks in 0..{n - 1}", bad)
        tasks = [int(t) for t in tasks]
        if len(set(tasks)) != len(tasks):
            raise ConfigError("tasks", "distinct task indices", sorted(t for t in set(tasks) if tasks.count(t) > 1))
        return tasks


def _stack(xs: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Stack CPU batches into ``(K, ...)`` on ``device`` (through pinned memory to CUDA: the copy does not block)."""
    if device.type != "cuda":
        return torch.stack(xs).to(device)
    pinned = torch.empty((len(xs), *xs[0].shape), dtype=xs[0].dtype, pin_memory=True)
    return torch.stack(xs, out=pinned).to(device, non_blocking=True)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device`` (pinned first for CUDA, so the host does not wait for the copy)."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def _check_labels(y: torch.Tensor, n_outputs: int) -> None:
    """Labels in ``0..n_outputs-1`` (as the Trainer checks: a bad label is an opaque device assert on CUDA)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_outputs):
        raise ConfigError("labels", f"class indices in 0..{n_outputs - 1}", f"range {int(y.min())}..{int(y.max())}")


def _check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", "a torch device such as 'cpu' or 'cuda'", repr(device)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "'cpu' (no CUDA device is available)", repr(str(device)))
    return device
