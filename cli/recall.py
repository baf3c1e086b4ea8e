"""``supsup-store recall``: recall every task's mask from a reservoir and compare it with the true mask.

All checks (bank, budget, base network, data) run before anything is written,
so a failed command never modifies the bank; the only write is encoding a
missing reservoir, which is atomic.  Recall of a model's bank is guided by the
data it was trained on; when that data cannot be read here, recall refuses
(:func:`check_guidance_data`: ``--data`` says where it is, ``--unguided`` accepts
recall without guidance) rather than return masks it could not choose.  ``--plot``
saves bits wrong and accuracies per task as a PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import (COMPUTE_PANEL, DATA_PANEL, JSON_ERROR_HELP, OUTPUT_PANEL, RECALL_PANEL, RESERVOIR_PANEL, command,
                   console, err_console, guarded)
from ._render import encode_table, pct, recall_table
from ._untrusted import plain

__all__ = ["recall", "check_guidance_data"]


def check_guidance_data(bank: Path) -> None:
    """Refuse recall that would be unguided only because the data the bank was trained on cannot be read here.

    Guided recall picks each task's mask with the model's outputs on that task's images; without them
    keyed recall has no way to choose among its candidates and returns wrong masks.  So when a bank of a
    model (written by ``train`` or ``demo``) records data this machine cannot rebuild, recall stops before
    anything is encoded or written, naming what it needs: ``--data`` where the data is here, or
    ``--unguided`` to accept recall without guidance.  Banks without a model (written by the storage
    library) have no data to guide them and recall unguided, as before.
    """
    from hopfield_masks.backends import open_bank
    from supsup_core.errors import ConfigError, DataError
    from supsup_core.persistence import PRODUCER, stream_from_metadata

    with open_bank(bank, "r") as b:  # a missing or damaged file: the library's one-line refusal naming it
        metadata = dict(b.metadata)
    if metadata.get("producer") != PRODUCER or "model" not in metadata:
        return
    source = (metadata.get("benchmark") or {}).get("data_source", "mnist")
    try:
        stream_from_metadata(metadata)
    except ConfigError:  # metadata that describes no stream: the bank's own problem, which recall then names
        return
    except DataError as exc:
        raise ConfigError(
            "--data", "the data this bank was trained on, to guide recall (--data SPEC: where it is on this machine; "
            "or --unguided: recall without guidance)", f"{source!r}, which cannot be read here",
        ) from exc


def _scored_on(transductive: bool, guided: bool) -> str:
    """Which test images the accuracies were measured on, in words."""
    if transductive:
        return "the whole test set" + (": the same test images that guided recall (transductive)" if guided else "")
    if guided:
        return "held-out test images (half of each task's test set; the other half guides recall, without labels)"
    return "half of each task's test set (the same half guided recall scores on)"


@command("recall")
@guarded
def recall(
    bank: Annotated[Path, typer.Argument(help="Mask bank file.")] = Path("masks.h5"),
    *,
    budget: Annotated[str, typer.Option(
        "--budget", metavar="SIZE", help="Reservoir byte budget, encoded if missing")] = "1MB",
    method: Annotated[str, typer.Option(
        "--method", metavar="NAME", rich_help_panel=RECALL_PANEL,
        help="keyed (task keys), dynamics (guided Hopfield sweeps) or score-descent (the reference's)")] = "keyed",
    guided: Annotated[bool | None, typer.Option(
        "--guided/--unguided", rich_help_panel=RECALL_PANEL,
        help="Entropy guidance [default: guided for a model's bank]")] = None,
    cue: Annotated[str | None, typer.Option(
        "--cue", metavar="NAME", rich_help_panel=RECALL_PANEL,
        help="key, mean, random or noisy:P [default: key, or mean]")] = None,
    objective: Annotated[str, typer.Option(
        "--objective", metavar="H|G", rich_help_panel=RECALL_PANEL,
        help="Guidance: entropy H, or G")] = "H",
    steps: Annotated[int | None, typer.Option(
        "--steps", rich_help_panel=RECALL_PANEL,
        help="Sweeps or steps [default: 100 keyed, else 30]")] = None,
    shortlist: Annotated[int, typer.Option(
        "--shortlist", rich_help_panel=RECALL_PANEL, help="Keyed: candidates scored on every image")] = 8,
    selection: Annotated[str, typer.Option(
        "--selection", metavar="NAME", rich_help_panel=RECALL_PANEL,
        help="Keyed: screen or one-shot")] = "screen",
    restarts: Annotated[int, typer.Option(
        "--restarts", rich_help_panel=RECALL_PANEL,
        help="Extra guided starts, ≤ 1,000")] = 0,
    transductive: Annotated[bool, typer.Option(
        "--transductive", rich_help_panel=RECALL_PANEL,
        help="Guide and score on the same images (the reference's)")] = False,
    seed: Annotated[int, typer.Option(
        "--seed", rich_help_panel=RECALL_PANEL, help="Seed of cues, sweeps and image split")] = 0,
    rule: Annotated[str | None, typer.Option(
        "--rule", metavar="NAME", rich_help_panel=RESERVOIR_PANEL,
        help="perceptron, pseudo-inverse, storkey, hebbian or storkey-reference [default: auto]")] = None,
    dtype: Annotated[str, typer.Option(
        "--dtype", metavar="NAME", rich_help_panel=RESERVOIR_PANEL,
        help="auto, float32, float16, int8 or sign")] = "auto",
    key_units: Annotated[str, typer.Option(
        "--key-units", metavar="N", rich_help_panel=RESERVOIR_PANEL,
        help="Key units per network: auto, or 0..1048576")] = "auto",
    data: Annotated[str | None, typer.Option(
        "--data", metavar="SPEC", rich_help_panel=DATA_PANEL,
        help="The bank's data where it is here [default: as recorded]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", hidden=True, help="MNIST IDX folder (the same as --data idx:PATH).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="MODULE:FACTORY", rich_help_panel=DATA_PANEL,
        help="Your model's factory, for a bank of your model")] = None,
    device: Annotated[str, typer.Option(
        "--device", metavar="NAME", rich_help_panel=COMPUTE_PANEL, help="auto, cpu or cuda")] = "auto",
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", rich_help_panel=OUTPUT_PANEL,
        help="Save recall per task as a PNG (extra supsup-store[plot])")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", rich_help_panel=OUTPUT_PANEL, help=f"Print the results as JSON ({JSON_ERROR_HELP})")] = False,
) -> None:
    """Recall every task's mask from the bank's reservoir and print bits wrong and accuracies per task."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hopfield_masks.budget import format_bytes, parse_budget
    from supsup_core.recall import summarise
    from supsup_core.recall import RecallConfig, Recaller, encode_settings_for

    from ._parsing import parse_key_units
    from ._plots import check_plot, plot_recall
    from .train import _data_spec, resolve_device

    # 1. parse and validate everything before writing anything
    budget_bytes = parse_budget(budget, name="--budget")  # parsed once; the library gets the number
    config = RecallConfig(method=method, guided=guided, cue=cue, objective=objective, steps=steps, shortlist=shortlist,
                          selection=selection, restarts=restarts, transductive=transductive, seed=seed)
    encode = encode_settings_for(method, rule, dtype, parse_key_units(key_units))

    check_plot(plot)
    spec = None if data is None and data_dir is None else _data_spec(data, data_dir)
    if guided is None and spec is None:
        check_guidance_data(bank)

    # 2. open bank, model, data and reservoir (encoded now if missing; refused when stale)
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
    if as_json and plot is not None:
        plot_recall(plot, rows, title=f"{bank.name}: recall ({'guided' if use_guidance else 'unguided'}, {method})")
    if as_json:
        console.print_json(json.dumps({
            "bank": str(bank), "budget_bytes": budget_bytes, "reservoir_bytes": info["reservoir_bytes"],
            "n_tasks": info["n_tasks"], "capacity_tasks": info["capacity_tasks"],
            "over_capacity": info["over_capacity"], "reservoir": info, "mode": mode, "note": recaller.note,
            "tasks": [r.to_dict() for r in rows], "summary": summarise(rows),
        }))
        return
    res = recaller.reservoir
    if plot is not None:
        written = plot_recall(plot, rows, title=f"{bank.name}: recall from {format_bytes(res.nbytes)} "
                                               f"({'guided' if use_guidance else 'unguided'}, {method})")
        err_console.print(plain(f"wrote {written}"))
    keys = f", {res.key_units} key units each" if res.key_units else ""
    how = f"guided ({objective}, {method})" if use_guidance else f"unguided ({method})"
    if res.dtype == "bit":
        what = f"{res.n_blocks} blocks of {res.mask_units} mask units, {res.key_units:,} key units (learned 1-bit couplings"
    else:
        what = f"{res.n_blocks} × {res.network_size}-unit {res.rule.rule_id} networks{keys} ({res.dtype} couplings"
    title = f"Recall from {what}, {res.nbytes:,} B), {how}, cue {config.start}"
    console.print(recall_table(rows, title=title, layers=list(res.layout.names), width=console.width))
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
