"""``--plot FILE`` of ``evaluate`` and ``recall``: one PNG per command, drawn with matplotlib (the ``plot`` extra).

:func:`check_plot` runs before any work, so a missing extra or a folder that does not exist fails at
once (one line naming ``--plot``, exit 2) instead of after minutes of evaluation.  The figures use
matplotlib's Agg canvas only (no GUI backend is selected, no global state changes) and are written
atomically, like ``supsup-store capacity --plot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hopfield_masks.capacity import require_plotting
from hopfield_masks.errors import InvalidArgumentError
from hopfield_masks.safety.files import atomic_path

__all__ = ["check_plot", "plot_evaluation", "plot_recall"]

_LABELLED = 30  # tasks up to which each bar carries its task's name and count


def check_plot(path: Path | None, option: str = "--plot") -> None:
    """Refuse ``--plot FILE`` now when it cannot be written later: no such folder, or matplotlib missing."""
    if path is None:
        return
    if not path.expanduser().parent.is_dir():
        raise InvalidArgumentError(option, "a file in an existing folder", f"{path} (folder {path.parent} does not exist)")
    require_plotting(option)


def _figure(rows: int) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.0 + 2.2 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    dest = path.expanduser()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest


def _percent_line(ax: Any, values: Mapping[int, float], style: str, label: str) -> None:
    tasks = sorted(t for t, v in values.items() if v == v)  # NaN: a task without a right answer (GNs)
    if tasks:
        ax.plot(tasks, [100 * values[t] for t in tasks], style, label=label, markersize=3)


def plot_evaluation(path: Path, curves: Mapping[str, Mapping[int, float]], *, title: str) -> Path:
    """Accuracy (%) against the task index, one line per named result (``{"GG": {0: 0.97, ...}, ...}``)."""
    fig, (ax,) = _figure(1)
    for (label, values), style in zip(curves.items(), ("o-", "s-", "^--", "v:", "d-.")):
        _percent_line(ax, values, style, label)
    ax.set_xlabel("task")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def plot_recall(path: Path, rows: Sequence[Any], *, title: str) -> Path:
    """Recall quality per task: bits wrong (exact tasks marked) and, when measured, the accuracy of the true and the
    recalled mask."""
    measured = any(r.true_accuracy is not None for r in rows)
    fig, axes = _figure(2 if measured else 1)
    index = list(range(len(rows)))
    wrong = [r.total_bits_wrong for r in rows]
    bars = axes[0].bar(index, wrong, color=["tab:green" if r.exact else "tab:red" for r in rows])
    axes[0].set_ylabel("bits wrong")
    axes[0].set_title(f"{title}\nexact: {sum(r.exact for r in rows)} of {len(rows)} (green)", fontsize="medium")
    if len(rows) <= _LABELLED:
        axes[0].bar_label(bars, labels=[f"{w:,}" for w in wrong], fontsize="x-small")
    if measured:
        true = {i: r.true_accuracy for i, r in enumerate(rows) if r.true_accuracy is not None}
        recalled = {i: r.recalled_accuracy for i, r in enumerate(rows) if r.recalled_accuracy is not None}
        _percent_line(axes[1], true, "o-", "true mask")
        _percent_line(axes[1], recalled, "s--", "recalled mask")
        axes[1].set_ylabel("accuracy (%)")
        axes[1].legend(loc="lower left", fontsize="small")
        axes[1].grid(True, alpha=0.3)
    if len(rows) <= _LABELLED:
        for ax in axes:
            ax.set_xticks(index, [str(r.task) for r in rows], fontsize="small")
    axes[-1].set_xlabel("task" if len(rows) <= _LABELLED else "task (in the bank's order)")
    return _save(fig, path)
