"""``supsup-store recall``: recall every task's mask from a reservoir and compare it with the true mask.

All checks (bank, budget, base network, data) run before anything is written,
so a failed command never modifies the bank; the only write is encoding a
missing reservoir, which is atomic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import JSON_ERROR_HELP, app, console, err_console, guarded
from ._render import encode_table, pct, recall_table

__all__ = ["recall"]


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
    method: Annotated[str, typer.Option("--method", help="keyed (every task's key recalls a candidate; the output objective picks one), dynamics (guided Hopfield sweeps per block) or score-descent (the reference's).")] = "keyed",
    cue: Annotated[str | None, typer.Option("--cue", help="Where recall starts: key (keyed: the key's own field), mean (running ±1 sums), random, or noisy:0.1 (true mask with 10% flipped; dynamics and score-descent) [default: key for keyed, else mean].")] = None,
    objective: Annotated[str, typer.Option("--objective", help="Guidance objective: H (entropy) or G (superfluous neurons).")] = "H",
    steps: Annotated[int | None, typer.Option("--steps", help="Sweeps (keyed, dynamics) or steps (score-descent), at most 1,000,000 [default: 100 keyed, 30 otherwise].")] = None,
    shortlist: Annotated[int, typer.Option("--shortlist", help="Keyed: candidates scored on every adaptation image after screening.")] = 8,
    selection: Annotated[str, typer.Option("--selection", help="Keyed: screen (each candidate scored on the first adaptation batch) or one-shot (one gradient over their superposition).")] = "screen",
    transductive: Annotated[bool, typer.Option("--transductive", help="Guide and score on the same test images (the reference's protocol).")] = False,
    rule: Annotated[str | None, typer.Option("--rule", help="Learning rule if the reservoir must be encoded first: perceptron, pseudo-inverse, storkey, hebbian or storkey-reference [default: auto (perceptron where the budget holds it, else pseudo-inverse) for keyed recall, else pseudo-inverse].", show_default=False)] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Coupling precision if the reservoir must be encoded first.")] = "auto",
    key_units: Annotated[str, typer.Option("--key-units", help="Key units per network if the reservoir must be encoded first (auto or a count up to 1048576).")] = "auto",
    restarts: Annotated[int, typer.Option("--restarts", help="dynamics/score-descent, guided: this many extra recalls per task (at most 1,000) from the cue with 20% of its signs flipped; the lowest objective wins.")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of cues, sweep orders and the adaptation/evaluation split.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    data: Annotated[str | None, typer.Option("--data", help="The bank's data from where it is here, as a data spec (default: the source recorded in the bank); data given here that cannot be read is refused.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="MNIST IDX folder (the same as --data idx:PATH).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="MODULE:FACTORY that built the bank's model, for banks of a model of yours.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON. " + JSON_ERROR_HELP)] = False,
) -> None:
    """Recall every task's mask from the bank's reservoir and print bits wrong and accuracies per task."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hopfield_masks.budget import parse_budget
    from supsup_core.recall import summarise
    from supsup_core.recall import RecallConfig, Recaller, encode_settings_for

    from ._parsing import parse_key_units
    from .train import _data_spec, resolve_device

    # 1. parse and validate everything before writing anything
    budget_bytes = parse_budget(budget, name="--budget")  # parsed once; the library gets the number
    config = RecallConfig(method=method, guided=guided, cue=cue, objective=objective, steps=steps, shortlist=shortlist,
                          selection=selection, restarts=restarts, transductive=transductive, seed=seed)
    encode = encode_settings_for(method, rule, dtype, parse_key_units(key_units))

    # 2. open bank, model, data and reservoir (encoded now if missing; refused when stale)
    spec = None if data is None and data_dir is None else _data_spec(data, data_dir)
    recaller = Recaller(bank, budget_bytes, config, device=resolve_device(device), data_dir=spec, encode_missing=encode,
                        factory=model)
    if recaller.encoded is not None and not as_json:
        err_console.print(f"No reservoir for {budget} in {bank}: encoded one.", highlight=False)
        console.print(encode_table(recaller.encoded))

    # 3. recall
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as progress:
        bar = progress.add_task("recalling", total=None)
        rows = recaller.recall_all(progress=lambda done, total: progress.update(bar, completed=done, total=total))

    # 4. render
    info = recaller.describe()
    use_guidance = recaller.guided
    mode = {
        "guided": use_guidance, "method": method, "cue": config.start,
        "objective": objective if use_guidance else None, "transductive": transductive, "restarts": restarts,
        "scored_on": _scored_on(transductive, use_guidance),
    }
    if as_json:
        console.print_json(json.dumps({
            "bank": str(bank), "budget_bytes": budget_bytes, "reservoir_bytes": info["reservoir_bytes"],
            "n_tasks": info["n_tasks"], "capacity_tasks": info["capacity_tasks"],
            "over_capacity": info["over_capacity"], "reservoir": info, "mode": mode, "note": recaller.note,
            "tasks": [r.to_dict() for r in rows], "summary": summarise(rows),
        }))
        return
    res = recaller.reservoir
    keys = f", {res.key_units} key units each" if res.key_units else ""
    how = f"guided ({objective}, {method})" if use_guidance else f"unguided ({method})"
    if res.dtype == "bit":
        what = f"{res.n_blocks} blocks of {res.mask_units} mask units, {res.key_units:,} key units (learned 1-bit couplings"
    else:
        what = f"{res.n_blocks} × {res.network_size}-unit {res.rule.rule_id} networks{keys} ({res.dtype} couplings"
    title = f"Recall from {what}, {res.nbytes:,} B), {how}, cue {config.start}"
    console.print(recall_table(rows, title=title, layers=list(res.layout.names)))
    summary = summarise(rows)
    line = f"exact: {summary['exact']} of {summary['tasks']} tasks; largest steps to final mask: {summary['max_steps_to_final']}"
    if rows and rows[0].true_accuracy is not None:
        line += f"; mean accuracy drop {pct(summary['mean_accuracy_drop'])} points (scored on {mode['scored_on']})"
    console.print(line, highlight=False)
    if recaller.note:
        err_console.print(f"Note: {recaller.note}.", highlight=False)
    if info["over_capacity"]:
        err_console.print(
            f"[yellow]Warning:[/] {res.n_tasks} tasks stored against a capacity of {res.capacity:.1f}: "
            "the reservoir is over capacity, so exact recall is not expected.", highlight=False)
