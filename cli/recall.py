"""``supsup-store recall``: recall every task's mask from a reservoir and compare it with the true mask.

All checks (bank, budget, base network, data) run before anything is written,
so a failed command never modifies the bank; the only write is encoding a
missing reservoir, which is atomic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app, console, err_console, guarded
from ._render import encode_table, pct, recall_table

__all__ = ["recall"]


def _check_cue(cue: str) -> None:
    """Refuse a malformed ``--cue`` before anything is encoded (the kinds of ``Reservoir.cue``)."""
    from supsup_core.errors import ConfigError

    ok = cue in ("mean", "random")
    if cue.startswith("noisy:"):
        try:
            ok = 0.0 <= float(cue[len("noisy:"):]) <= 1.0
        except ValueError:
            ok = False
    if not ok:
        raise ConfigError("--cue", "mean, random or noisy:<p> with 0 <= p <= 1 (e.g. noisy:0.1)", repr(cue))


def _load_model_and_stream(bank: Path, device: str, data_dir: Path | None, guided: bool | None):
    """The bank's model and task stream when its metadata allows, else ``(None, None, reason)``."""
    from hopfield_masks.backends import open_bank
    from supsup_core.errors import ConfigError, DataError
    from supsup_core.persistence import PRODUCER, load_model, stream_from_metadata

    with open_bank(bank, "r") as b:
        metadata = b.metadata
    # a bank written by the storage library alone (no model) still gets bits-wrong recall
    if metadata.get("producer") != PRODUCER or "model" not in metadata:
        if guided:
            raise ConfigError("--guided", "a bank whose metadata describes a supsup_core model (written by "
                                          "'train' or 'demo'), or --unguided", f"{bank} without one")
        return None, None, "the bank's metadata does not describe a supsup_core model, so only bits wrong are reported"
    model, metadata = load_model(bank, device=device)  # BaseNetworkMismatchError when the base network differs
    try:
        stream = stream_from_metadata(metadata, data_dir)
    except (DataError, ConfigError) as exc:
        if guided:
            raise
        return model, None, f"no data for guidance or accuracy ({exc})"
    return model, stream, None


def _scored_on(transductive: bool, guided: bool) -> str:
    """Which test images the accuracies were measured on, in words."""
    if transductive:
        return "the whole test set" + (": the same test images that guided recall (transductive)" if guided else "")
    if guided:
        return "held-out test images (half of each task's test set; the other half guides recall, without labels)"
    return "half of each task's test set (the same half guided recall scores on)"


@app.command("recall")
@guarded
def recall(
    bank: Annotated[Path, typer.Argument(help="Mask bank file (default: masks.h5 in the current folder).")] = Path("masks.h5"),
    *,
    budget: Annotated[str, typer.Option("--budget", help="Byte budget of the reservoir to recall from (encoded first if missing).")] = "1MB",
    guided: Annotated[
        bool | None,
        typer.Option("--guided/--unguided", help="Entropy guidance from unlabeled test batches of each task "
                                                 "[default: guided when the bank's data is available]."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="dynamics (guided Hopfield sweeps) or score-descent (the reference's).")] = "dynamics",
    cue: Annotated[str, typer.Option("--cue", help="Where recall starts: mean (running ±1 sums), random, or noisy:0.1 (true mask with 10% flipped).")] = "mean",
    objective: Annotated[str, typer.Option("--objective", help="Guidance objective: H (entropy) or G (superfluous neurons).")] = "H",
    steps: Annotated[int | None, typer.Option("--steps", help="Steps (score-descent) or sweeps (dynamics); default 30.")] = None,
    transductive: Annotated[bool, typer.Option("--transductive", help="Guide and score on the same test images (the reference's protocol).")] = False,
    rule: Annotated[str, typer.Option("--rule", help="Learning rule if the reservoir must be encoded first.")] = "storkey",
    dtype: Annotated[str, typer.Option("--dtype", help="Coupling precision if the reservoir must be encoded first.")] = "auto",
    restarts: Annotated[int, typer.Option("--restarts", help="Guided only: this many extra recalls per task from the cue with 20% of its signs flipped; the final mask with the lowest objective on the adaptation images is kept (costs restarts+1 times the time).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of cues, sweep orders and the adaptation/evaluation split.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="MNIST IDX folder, if the bank was trained on one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Recall every task's mask from the bank's reservoir and print bits wrong and accuracies per task."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hopfield_masks.backends import open_bank
    from hopfield_masks.budget import parse_budget
    from hopfield_masks.encoding import encode_bank, read_bank_reservoir, reservoir_is_current
    from hopfield_masks.errors import StorageFormatError
    from supsup_core.errors import ConfigError
    from supsup_core.hopsupsup import RECALL_METHODS, recall_all, summarise

    from .train import resolve_device

    # 1. validate everything before writing anything
    parse_budget(budget, name="--budget")
    if method not in RECALL_METHODS:
        raise ConfigError("--method", f"one of {', '.join(RECALL_METHODS)}", repr(method))
    if objective not in ("H", "G"):
        raise ConfigError("--objective", "H or G", repr(objective))
    if steps is not None and steps < 1:
        raise ConfigError("--steps", "a positive number of steps", steps)
    if restarts < 0:
        raise ConfigError("--restarts", "an integer >= 0", restarts)
    _check_cue(cue)
    with open_bank(bank, "r") as b:
        tasks = b.tasks()
        if not tasks:
            raise StorageFormatError(bank, "holds no masks to recall")
        layout = b.task_layout(tasks[0])
    dev = resolve_device(device)
    model, stream, why_not = _load_model_and_stream(bank, dev, data_dir, guided)
    use_guidance = (stream is not None) if guided is None else guided
    if use_guidance and objective == "G" and model.config.output_size <= 10:
        raise ConfigError("--objective", f"H for a model with {model.config.output_size} outputs (G needs "
                                         "superfluous outputs beyond the 10 real classes)", "'G'")
    if restarts and not use_guidance:
        raise ConfigError("--restarts", "0 for unguided recall (restarts are ranked by the guidance objective)",
                          restarts)
    knobs: dict[str, Any] = {}
    if steps is not None:
        knobs["max_sweeps" if method == "dynamics" else "n_steps"] = steps

    # 2. the reservoir of that budget, encoded now if the bank has none
    reservoir = read_bank_reservoir(bank, budget)
    if reservoir is None:
        _, report = encode_bank(bank, budget, rule=rule, dtype=dtype)
        if not as_json:
            err_console.print(f"No reservoir for {budget} in {bank}: encoded one.", highlight=False)
            console.print(encode_table(report))
        reservoir = read_bank_reservoir(bank, budget)
    elif reservoir_is_current(bank, budget) is False or reservoir.n_tasks != len(tasks) or reservoir.layout != layout:
        # tasks written, overwritten or deleted after encoding: recall would score masks the reservoir never stored
        raise StorageFormatError(
            bank, f"its reservoir for {budget} was encoded from other masks (it holds {reservoir.n_tasks} tasks of "
                  f"{reservoir.layout.length} entries) "
                  f"but the bank has {len(tasks)} of {layout.length}; run 'supsup-store encode {bank} --budget "
                  f"{budget}' again")

    # 3. recall
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as progress:
        bar = progress.add_task("recalling", total=None)
        rows = recall_all(
            bank, reservoir, model=model, stream=stream, guided=use_guidance, method=method, cue=cue,
            objective=objective, transductive=transductive, seed=seed, knobs=knobs, restarts=restarts,
            progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    over = reservoir.n_tasks > reservoir.capacity
    mode = {
        "guided": use_guidance, "method": method, "cue": cue, "objective": objective if use_guidance else None,
        "transductive": transductive, "restarts": restarts, "scored_on": _scored_on(transductive, use_guidance),
    }
    if as_json:
        console.print_json(json.dumps({
            "bank": str(bank), "budget_bytes": parse_budget(budget), "reservoir_bytes": int(reservoir.nbytes),
            "n_tasks": reservoir.n_tasks, "capacity_tasks": float(reservoir.capacity), "over_capacity": over,
            "mode": mode, "note": why_not, "tasks": [r.to_dict() for r in rows], "summary": summarise(rows),
        }))
        return
    title = (f"Recall from {reservoir.n_blocks} × {reservoir.network_size}-unit {reservoir.rule.rule_id} networks "
             f"({reservoir.nbytes:,} B), {'guided (' + objective + ', ' + method + ')' if use_guidance else 'unguided (' + method + ')'}, cue {cue}")
    console.print(recall_table(rows, title=title, layers=list(reservoir.layout.names)))
    summary = summarise(rows)
    line = f"exact: {summary['exact']} of {summary['tasks']} tasks; largest steps to final mask: {summary['max_steps_to_final']}"
    if rows and rows[0].true_accuracy is not None:
        line += f"; mean accuracy drop {pct(summary['mean_accuracy_drop'])} points (scored on {mode['scored_on']})"
    console.print(line, highlight=False)
    if why_not:
        err_console.print(f"Note: {why_not}.", highlight=False)
    if over:
        err_console.print(
            f"[yellow]Warning:[/] {reservoir.n_tasks} tasks stored against a capacity of {reservoir.capacity:.1f}: "
            "the reservoir is over capacity, so exact recall is not expected.", highlight=False)
