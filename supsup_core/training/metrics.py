"""Continual-learning metrics: the accuracy matrix, average accuracy, forgetting, backward transfer.

``R[i, j]`` is the accuracy on task ``j`` measured after training task ``i``
(NaN where it was not measured, e.g. tasks not learned yet).  With ``T`` rows:

- average accuracy after row ``i``: mean of ``R[i, 0..i]`` (Lopez-Paz & Ranzato, 2017);
- forgetting of task ``j < T-1``: ``max_{j <= i < T-1} R[i, j] - R[T-1, j]``, averaged
  over ``j`` (Chaudhry et al., 2018);
- backward transfer: mean over ``j < T-1`` of ``R[T-1, j] - R[j, j]``.

SupSup never changes a finished mask, so both forgetting and backward transfer
should come out as exactly 0 -- they are computed from measurements all the
same, so a bug that disturbs old tasks shows up here.  This module uses NumPy
only; :func:`accuracy_table` and :func:`results_table` render rich tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.table import Table

from ..errors import ConfigError
from ..validate import check_float, check_int

__all__ = ["AccuracyMatrix", "accuracy_table", "results_table"]


class AccuracyMatrix:
    """Per-task accuracy after each training stage, with the standard summaries.

    Parameters
    ----------
    n_tasks : int
        Number of tasks (columns); rows are added with :meth:`record` as training goes on.

    Examples
    --------
    >>> m = AccuracyMatrix.from_rows([[0.9], [0.8, 0.95]])
    >>> round(m.average_accuracy(), 3), round(m.forgetting(), 3), round(m.backward_transfer(), 3)
    (0.875, 0.1, -0.1)
    """

    def __init__(self, n_tasks: int) -> None:
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
            raise ConfigError("n_tasks", "an integer >= 1", n_tasks)
        self.n_tasks = n_tasks
        self._rows: list[np.ndarray] = []

    # -- building ----------------------------------------------------------------------------
    def record(self, after_task: int, task: int, accuracy: float) -> None:
        """Store the accuracy on ``task`` measured after training ``after_task`` (rows grow as needed)."""
        for name, value in (("after_task", after_task), ("task", task)):
            check_int(name, value, low=0, high=self.n_tasks - 1)
        check_float("accuracy", accuracy, low=0, high=1)
        while len(self._rows) <= after_task:
            self._rows.append(np.full(self.n_tasks, np.nan))
        self._rows[after_task][task] = float(accuracy)

    def record_row(self, after_task: int, accuracies: Mapping[int, float]) -> None:
        """Record a whole row: ``{task: accuracy}`` measured after ``after_task``."""
        for task, acc in accuracies.items():
            self.record(after_task, task, acc)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float | None]], n_tasks: int | None = None) -> AccuracyMatrix:
        """Build from rows (``rows[i][j]``; a short row or None means not measured)."""
        if not rows:
            raise ConfigError("rows", "at least one row", "an empty sequence")
        width = n_tasks if n_tasks is not None else max(len(r) for r in rows)
        m = cls(max(width, 1))
        for i, row in enumerate(rows):
            if len(row) > m.n_tasks:
                raise ConfigError(f"rows[{i}]", f"at most {m.n_tasks} entries", len(row))
            m._rows.append(np.full(m.n_tasks, np.nan))
            for j, acc in enumerate(row):
                if acc is not None and not (isinstance(acc, float) and math.isnan(acc)):
                    m.record(i, j, acc)
        return m

    # -- reading -----------------------------------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """The matrix as a float64 array ``(rows, n_tasks)`` (a copy; NaN = not measured)."""
        if not self._rows:
            return np.full((0, self.n_tasks), np.nan)
        return np.stack(self._rows)  # (rows, n_tasks)

    @property
    def n_rows(self) -> int:
        """Number of training stages recorded."""
        return len(self._rows)

    def final_accuracies(self) -> dict[int, float]:
        """``{task: accuracy}`` from the last row (measured entries only)."""
        if not self._rows:
            return {}
        last = self._rows[-1]
        return {j: float(last[j]) for j in range(self.n_tasks) if not np.isnan(last[j])}

    def average_accuracy(self, after_task: int | None = None) -> float:
        """Mean accuracy over tasks ``0..i`` measured after task ``i`` (default: the last row)."""
        i = self.n_rows - 1 if after_task is None else after_task
        if not 0 <= i < self.n_rows:
            raise ConfigError("after_task", f"a recorded row in 0..{self.n_rows - 1}", after_task)
        seen = self._rows[i][: i + 1]
        seen = seen[~np.isnan(seen)]
        return float(seen.mean()) if seen.size else float("nan")

    def forgetting(self) -> float:
        """Average over earlier tasks of (best earlier accuracy - final accuracy); NaN with one row."""
        values = self.values
        last = values.shape[0] - 1
        drops = []
        for j in range(min(last, self.n_tasks)):
            earlier = values[j:last, j]
            earlier = earlier[~np.isnan(earlier)]
            if earlier.size and not np.isnan(values[last, j]):
                drops.append(earlier.max() - values[last, j])
        return float(np.mean(drops)) if drops else float("nan")

    def backward_transfer(self) -> float:
        """Average over earlier tasks of (final accuracy - accuracy right after learning it); NaN with one row."""
        values = self.values
        last = values.shape[0] - 1
        diffs = [
            values[last, j] - values[j, j]
            for j in range(min(last, self.n_tasks))
            if not (np.isnan(values[last, j]) or np.isnan(values[j, j]))
        ]
        return float(np.mean(diffs)) if diffs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the matrix (None for NaN) and the summaries (None when undefined)."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "n_tasks": self.n_tasks,
            "matrix": [[clean(v) for v in row] for row in self._rows],
            "average_accuracy": clean(self.average_accuracy()) if self._rows else None,
            "forgetting": clean(self.forgetting()),
            "backward_transfer": clean(self.backward_transfer()),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyMatrix:
        """Inverse of :meth:`to_dict` (the summaries are recomputed, not read)."""
        if not isinstance(data, Mapping) or "matrix" not in data or "n_tasks" not in data:
            raise ConfigError("data", "a dict with 'n_tasks' and 'matrix'", repr(data)[:80])
        if not data["matrix"]:
            return cls(int(data["n_tasks"]))
        return cls.from_rows(data["matrix"], n_tasks=int(data["n_tasks"]))

    def __repr__(self) -> str:
        return f"AccuracyMatrix(n_tasks={self.n_tasks}, rows={self.n_rows})"


def _pct(x: float | None, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def accuracy_table(matrix: AccuracyMatrix, title: str = "Accuracy (%) on task j after training task i") -> Table:
    """A rich table of ``R`` (one row per training stage) with average accuracy per row and a summary caption.

    >>> accuracy_table(AccuracyMatrix.from_rows([[0.5]])).row_count
    1
    """
    table = Table(title=title)
    table.add_column("i", justify="right")
    for j in range(matrix.n_tasks):
        table.add_column(str(j), justify="right")
    table.add_column("avg", justify="right", style="bold")
    for i, row in enumerate(matrix.values):  # one decimal keeps 10 tasks within 80 columns
        table.add_row(str(i), *(_pct(float(v), 1) for v in row), _pct(matrix.average_accuracy(i), 1))
    table.caption = (
        f"forgetting {_pct(matrix.forgetting()) or 'n/a'} pts, backward transfer "
        f"{_pct(matrix.backward_transfer()) or 'n/a'} pts"
    )
    return table


def results_table(columns: Mapping[str, Mapping[int, float]], title: str = "Accuracy (%) per task") -> Table:
    """A rich table with one row per task and one column per named result (e.g. ``{"GG": {0: 0.97}}``).

    A last row holds the mean of each column over its tasks.

    >>> results_table({"GG": {0: 0.5, 1: 1.0}}).row_count
    3
    """
    tasks = sorted({t for col in columns.values() for t in col})
    table = Table(title=title)
    table.add_column("task", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for t in tasks:
        table.add_row(str(t), *(_pct(col.get(t)) for col in columns.values()))
    means = [float(np.mean(list(col.values()))) if col else None for col in columns.values()]
    table.add_row("mean", *(_pct(m) for m in means), style="bold")
    return table
