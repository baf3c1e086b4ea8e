"""``supsup-store train``: learn one supermask per task of any data and save them to a mask bank.

A thin forwarder: it resolves the options into data (:func:`supsup_core.data.load_data`), a
stream (:func:`supsup_core.data.benchmark_stream`), a wrapped model (a built-in network or the
user's ``MODULE:FACTORY``) and a
:class:`~supsup_core.training.TrainConfig` preset, runs
:func:`~supsup_core.training.train_to_bank` (every task committed to the bank as it
finishes; ``--resume`` continues; ``--workers``/``--ray`` train tasks in parallel) or,
for ``--scenario nns``, :func:`~supsup_core.training.train_nns` then
:func:`supsup_core.persistence.save_masks` (NNs decides which mask a batch trains from
the masks trained so far, so its tasks are not independent and it stays sequential),
under a progress bar on stderr, and prints the accuracy table.
torch and supsup_core are imported inside the command so ``supsup-store --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import COMPUTE_PANEL, DATA_PANEL, MODEL_PANEL, TRAINING_PANEL, command, console, err_console, guarded
from ._parsing import MAX_BATCHES_PER_TASK, MAX_OUTPUT_SIZE, MAX_TASKS

__all__ = ["train", "resolve_device", "default_output_size", "BENCHMARKS", "MODELS", "TRAIN_SCENARIOS", "BACKENDS",
           "parse_split"]

BENCHMARKS = ("auto", "permuted", "rotated", "split", "permuted-mnist", "rotated-mnist", "split-mnist")
MODELS = ("lenet", "fc1024", "bnnet", "conv", "gemresnet18", "resnet18", "resnet50")
TRAIN_SCENARIOS = ("auto", "gg", "gnu", "gns", "nns", "hopsupsup")
BACKENDS = ("hdf5-packed", "hdf5-sparse", "hdf5-entropy")
_DEFAULT_BACKEND = "hdf5-packed"
_TABLE_LIMIT = 20  # tasks up to which the whole accuracy matrix is printed


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    from supsup_core.errors import ConfigError

    if value not in allowed:
        raise ConfigError(option, f"one of {', '.join(allowed)}", repr(value))
    return value


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    from supsup_core.errors import ConfigError

    _choice("--device", device, ("auto", "cpu", "cuda"))
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cpu or auto (no CUDA device is available)", "'cuda'")
    return device


def default_output_size(benchmark: str, model: str) -> int:
    """Outputs ``s`` of the paper's MNIST runs: 10 for split-mnist and BNNet (unshared 10-way labels), else 100."""
    return 10 if benchmark == "split-mnist" or model == "bnnet" else 100


def parse_split(text: str | None) -> tuple[int | None, str | None]:
    """``--split CLASSES[:ORDER]`` as (classes per task, class order).

    Examples
    --------
    >>> parse_split("5:seeded"), parse_split("2"), parse_split(None)
    ((5, 'seeded'), (2, None), (None, None))
    """
    from supsup_core.errors import ConfigError

    if text is None:
        return None, None
    count, sep, order = text.partition(":")
    if (not (count.isascii() and count.isdecimal()) or int(count) < 1 or (sep and order not in ("sorted", "seeded"))):
        raise ConfigError("--split", "CLASSES[:ORDER], e.g. 5 or 5:seeded (ORDER sorted or seeded)", repr(text))
    return int(count), order or None


def _resumed_backend(out: Path, backend: str | None) -> str:
    """The backend of the bank ``--resume`` continues; a different ``--backend`` is refused before anything runs."""
    from hopfield_masks.backends import open_bank
    from supsup_core.errors import ConfigError

    with open_bank(out, "r") as bank:  # not a bank: a one-line StorageFormatError naming the file
        stored = bank.backend_id
    if backend is not None and backend != stored:
        raise ConfigError("--backend", f"the backend of the bank to resume, {stored!r} (or no --backend)", repr(backend))
    return stored


def _parse_eval_at(text: str | None) -> tuple[int, ...] | None:
    from supsup_core.errors import ConfigError

    if text is None:
        return None
    if text.strip() in ("", "none"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError("--eval-at", "comma-separated task counts such as 10,50,250 (or 'none')", repr(text)) from None


def _parse_hidden(text: str | None) -> tuple[int, ...] | None:
    """``--hidden`` as widths, each in ``1..MAX_OUTPUT_SIZE`` (then :func:`supsup_core.models.check_model_size`
    bounds the whole model without overflowing).

    Examples
    --------
    >>> _parse_hidden("300,100"), _parse_hidden(None)
    ((300, 100), None)
    """
    from supsup_core.errors import ConfigError

    if text is None:
        return None
    parts = text.split(",")
    expected = f"comma-separated widths in 1..{MAX_OUTPUT_SIZE} such as 300,100"
    if not all(p.strip().isascii() and p.strip().isdecimal() and len(p.strip().lstrip("0")) <= 9 for p in parts):
        raise ConfigError("--hidden", expected, repr(text if len(text) <= 60 else text[:57] + "..."))
    widths = tuple(int(p) for p in parts)
    if not all(1 <= w <= MAX_OUTPUT_SIZE for w in widths):
        raise ConfigError("--hidden", expected, repr(text if len(text) <= 60 else text[:57] + "..."))
    return widths


def _data_spec(data: str | None, data_dir: Path | None) -> str:
    """The data spec of ``--data`` or the legacy ``--data-dir`` (an MNIST IDX folder)."""
    from supsup_core.errors import ConfigError

    if data is not None and data_dir is not None:
        raise ConfigError("--data-dir", "no --data-dir with --data (use --data idx:PATH)", str(data_dir))
    if data_dir is not None:
        return f"idx:{data_dir}"
    return "mnist" if data is None else data


def _build_model(model: str, data: Any, stream: Any, scenario: str, *, output_size: int | None, seed: int,
                 hidden: str | None, sparsity: float | None, transfer: bool, batchnorm: str, base: str) -> Any:
    """The wrapped model ``--model`` names: a built-in network shaped for the data, or a user's MODULE:FACTORY."""
    from supsup_core.config import ModelConfig
    from supsup_core.errors import ConfigError
    from supsup_core.models import build_model, check_model_size, default_output_size, factory_model
    from supsup_core.wrapping import WrapConfig

    mask_mode = "topk" if sparsity is not None else "threshold"
    if ":" in model:
        if hidden is not None:
            raise ConfigError("--hidden", "no --hidden with a MODULE:FACTORY model (the factory sets its widths)", hidden)
        config = WrapConfig(base=base, seed=seed, mask_mode=mask_mode, er_sigma=sparsity, batchnorm=batchnorm,
                            transfer=transfer, masks="units" if scenario == "hopsupsup" else "weights",
                            output_size=output_size)
        return factory_model(model, config)
    _choice("--model", model, MODELS)
    if base != "seed":
        raise ConfigError("--base", "seed for a built-in network (its weights are drawn from --seed)", repr(base))
    channels, height, width = data.image_shape if hasattr(data, "image_shape") else (3, 224, 224)
    if height != width:
        raise ConfigError("--data", f"square images for the built-in {model!r} (use MODULE:FACTORY for others)",
                          f"{height}x{width}")
    size = output_size if output_size is not None else default_output_size(model, stream.output_classes, scenario)
    config = ModelConfig(arch=model, output_size=size, seed=seed, hidden=_parse_hidden(hidden), mask_mode=mask_mode,
                         er_sigma=sparsity, in_channels=channels, image=height, in_features=channels * height * width,
                         batchnorm=batchnorm, transfer=transfer)
    check_model_size(config, "--hidden" if hidden is not None else "--output-size" if output_size is not None else "--model")
    return build_model(config)


def _from_flags(loaded: Any, kind: str, *, model: str, benchmark: str, tasks: int | None, per_task_classes: int | None,
                order: str | None, stream_seed: int | None, augment: bool | None, scenario: str, seed: int,
                batches_per_task: int | None, lr: float | None, output_size: int | None, hidden: str | None,
                sparsity: float | None, transfer: bool, batchnorm: str, base: str) -> tuple[Any, Any, Any, str]:
    """Model, stream, training settings and scenario from the data, model and training flags (no --recipe)."""
    from supsup_core.data import Augment, ImageFolderData, benchmark_stream
    from supsup_core.models import default_scenario
    from supsup_core.training import TrainConfig

    if augment is None:
        augment = kind in ("cifar10", "cifar100")
    if augment and isinstance(loaded, ImageFolderData):
        augment = False  # an image folder's training transform already crops and flips
    if stream_seed is None:
        stream_seed = (1 if isinstance(loaded, ImageFolderData) else seed) if benchmark == "split" else 1
    stream = benchmark_stream(loaded, benchmark, tasks, classes_per_task=per_task_classes, order=order, seed=stream_seed,
                              augment=Augment() if augment else None)
    arch = None if ":" in model else model
    if scenario == "auto":
        scenario = default_scenario(arch, stream.name, bool(getattr(stream, "relabel", False)))
    overrides: dict[str, Any] = {"seed": seed}
    if batches_per_task is not None:
        overrides["batches_per_task"] = None if batches_per_task == 0 else batches_per_task
    if lr is not None:
        overrides["lr"] = lr
    config = TrainConfig.for_scenario(scenario, **overrides)
    net = _build_model(model, loaded, stream, scenario, output_size=output_size, seed=seed, hidden=hidden,
                       sparsity=sparsity, transfer=transfer, batchnorm=batchnorm, base=base)
    return net, stream, config, scenario


def _from_recipe(name: str, data: Any, *, seed: int, sparsity: float | None, transfer: bool,
                 batches_per_task: int | None, lr: float | None) -> tuple[Any, Any, Any]:
    """Model, stream and training settings of a :mod:`supsup_core.training.recipes` recipe, with the flags that may
    change it (``--sparsity``, ``--transfer``, ``--seed``, ``--batches-per-task`` instead of its epochs, ``--lr``)."""
    from supsup_core.models import build_model
    from supsup_core.training import RECIPES
    from supsup_core.training import recipe as make_recipe

    _choice("--recipe", name, RECIPES)
    r = make_recipe(name, sparsity=8 if sparsity is None else sparsity, seed=seed, transfer=transfer)
    config = r.train
    if batches_per_task:
        config = config.replace(epochs=None, batches_per_task=batches_per_task)
    if lr is not None:
        config = config.replace(lr=lr)
    return build_model(r.model), r.stream(data), config


@command("train")
@guarded
def train(
    out: Annotated[Path, typer.Option("--out", help="Mask bank file to write (HDF5).")],
    backend: Annotated[str | None, typer.Option(
        "--backend", metavar="NAME", help="hdf5-packed, hdf5-sparse, hdf5-entropy [default: hdf5-packed]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue --out from its first missing task (same settings).")] = False,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", metavar="NAME", help="splitcifar100 or splitimagenet: the paper's whole setup")] = None,
    # -- data
    data: Annotated[str | None, typer.Option(
        "--data", metavar="SPEC", rich_help_panel=DATA_PANEL,
        help="mnist, mnist-full, digits, cifar10:PATH, cifar100:PATH, imagefolder:PATH, "
        "idx:PATH [default: mnist]")] = None,
    benchmark: Annotated[str, typer.Option(
        "--benchmark", metavar="NAME", rich_help_panel=DATA_PANEL,
        help="permuted, rotated or split[-mnist]")] = "auto",
    split: Annotated[str | None, typer.Option(
        "--split", metavar="N[:ORDER]", rich_help_panel=DATA_PANEL,
        help="Classes per task, sorted|seeded [default: 2:sorted]")] = None,
    tasks: Annotated[int | None, typer.Option(
        "--tasks", min=1, max=MAX_TASKS, rich_help_panel=DATA_PANEL,
        help="Number of tasks [default: 10; split: all classes]")] = None,
    stream_seed: Annotated[int | None, typer.Option(
        "--stream-seed", min=0, rich_help_panel=DATA_PANEL,
        help="Permutation/class seed [default: 1; split: --seed]")] = None,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", rich_help_panel=DATA_PANEL,
        help="Random crop and flip [default: on for CIFAR]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", hidden=True, help="Folder of MNIST IDX files (the same as --data idx:PATH).")] = None,
    # -- model
    model: Annotated[str, typer.Option(
        "--model", metavar="NAME", rich_help_panel=MODEL_PANEL,
        help="lenet, fc1024, bnnet, conv, gemresnet18, resnet18, resnet50 or your MODULE:FACTORY")] = "lenet",
    hidden: Annotated[str | None, typer.Option(
        "--hidden", metavar="W,W", rich_help_panel=MODEL_PANEL,
        help="Hidden widths, e.g. 300,100 [default: the model's]")] = None,
    output_size: Annotated[int | None, typer.Option(
        "--output-size", min=1, max=MAX_OUTPUT_SIZE, rich_help_panel=MODEL_PANEL,
        help="Outputs s [default: 100; gg, hopsupsup: the classes]")] = None,
    sparsity: Annotated[float | None, typer.Option(
        "--sparsity", metavar="SIGMA", rich_help_panel=MODEL_PANEL,
        help="Top-k masks of Erdős–Rényi sigma > 0 [default: off]")] = None,
    batchnorm: Annotated[str, typer.Option(
        "--batchnorm", metavar="KIND", rich_help_panel=MODEL_PANEL,
        help="BatchNorm statistics: task or batch")] = "task",
    base: Annotated[str, typer.Option(
        "--base", metavar="KIND", rich_help_panel=MODEL_PANEL,
        help="Factory weights: seed or pretrained")] = "seed",
    transfer: Annotated[bool, typer.Option(
        "--transfer", rich_help_panel=MODEL_PANEL,
        help="Start scores at earlier tasks' mean (SupSup Transfer)")] = False,
    seed: Annotated[int, typer.Option(
        "--seed", min=0, rich_help_panel=MODEL_PANEL, help="Seed of base weights, scores and data order")] = 0,
    # -- training
    scenario: Annotated[str, typer.Option(
        "--scenario", metavar="NAME", rich_help_panel=TRAINING_PANEL,
        help="gg, gnu, gns, nns, hopsupsup or auto")] = "auto",
    batches_per_task: Annotated[int | None, typer.Option(
        "--batches-per-task", min=0, max=MAX_BATCHES_PER_TASK, rich_help_panel=TRAINING_PANEL,
        help="Steps, 0 = one epoch [default: the scenario's]")] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", rich_help_panel=TRAINING_PANEL, help="Learning rate [default: the scenario's]")] = None,
    eval_at: Annotated[str | None, typer.Option(
        "--eval-at", metavar="N,N", rich_help_panel=TRAINING_PANEL,
        help="Task counts to evaluate at, or none [default: last]")] = None,
    full_matrix: Annotated[bool, typer.Option(
        "--full-matrix", rich_help_panel=TRAINING_PANEL,
        help="Evaluate all tasks after each task (O(T²))")] = False,
    decision_every: Annotated[int, typer.Option(
        "--decision-every", min=1, rich_help_panel=TRAINING_PANEL, help="NNs: batches between decisions")] = 100,
    # -- compute
    device: Annotated[str, typer.Option(
        "--device", metavar="NAME", rich_help_panel=COMPUTE_PANEL, help="auto, cpu or cuda")] = "auto",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, rich_help_panel=COMPUTE_PANEL,
        help="Tasks trained at once, ≤ 4 per CPU")] = 1,
    batched: Annotated[int, typer.Option(
        "--batched", min=1, rich_help_panel=COMPUTE_PANEL, help="Tasks per batched step on --device (GPU)")] = 1,
    ray: Annotated[bool, typer.Option(
        "--ray", rich_help_panel=COMPUTE_PANEL, help="Train on Ray (extra supsup-store[ray])")] = False,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="URL", rich_help_panel=COMPUTE_PANEL,
        help="A Ray cluster, e.g. ray://head:10001 (implies --ray)")] = None,
) -> None:
    """Train one supermask per task and save them to a mask bank."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hopfield_masks.safety.files import check_output_file
    from supsup_core.data import load_data, parse_data_spec
    from supsup_core.errors import ConfigError
    from supsup_core.persistence import benchmark_metadata, save_masks
    from supsup_core.training import (BankTrainingConfig, TrainingSetup, check_training_data,
                                      evaluate_inferred, results_table, train_nns)
    from supsup_core.training.engines import check_workers
    from supsup_core.training.nns import nns_batches

    use_ray = ray or ray_address is not None
    check_workers(workers, ray=use_ray, address=ray_address)  # before anything starts: no fork bomb
    _choice("--benchmark", benchmark, BENCHMARKS)
    _choice("--scenario", scenario, TRAIN_SCENARIOS)
    _choice("--batchnorm", batchnorm, ("task", "batch"))
    _choice("--base", base, ("seed", "pretrained"))
    if backend is not None:
        _choice("--backend", backend, BACKENDS)
    per_task_classes, order = parse_split(split)
    spec = _data_spec(data, data_dir)
    kind = parse_data_spec(spec)[0]
    if ":" not in model:
        _choice("--model", model, MODELS)
    if resume and not out.is_file():
        raise ConfigError("--resume", "an existing bank at --out to continue", f"{out} (no such file)")
    backend = _resumed_backend(out, backend) if resume else (backend or _DEFAULT_BACKEND)
    if out.exists() and not (overwrite or resume):
        raise ConfigError("--out", "a new file (or pass --overwrite, or --resume to continue it)", f"existing file {out}")
    if not out.expanduser().parent.is_dir():  # checked now, not after all the training
        raise ConfigError("--out", "a file in an existing folder", f"{out} (folder {out.parent} does not exist)")
    check_output_file(out, overwrite=overwrite or resume, argument="--out")  # folder/special file, writable folder, free space
    dev = resolve_device(device)
    if benchmark == "auto":
        split_data = kind in ("cifar10", "cifar100", "digits", "imagefolder") or per_task_classes is not None
        benchmark = "split" if split_data else "permuted-mnist"
    if benchmark == "split-mnist" and per_task_classes is not None:
        raise ConfigError("--split", "no --split with split-mnist (its five digit pairs are fixed)", split)
    if scenario == "nns" and (resume or workers > 1 or batched > 1 or use_ray or eval_at is not None or full_matrix):
        raise ConfigError(
            "--scenario", "gg, gnu, gns or hopsupsup with --resume/--workers/--batched/--ray/--eval-at/--full-matrix "
            "(NNs picks each batch's mask from the masks trained so far: it is sequential)", "'nns'",
        )
    if use_ray:
        from supsup_core.training.engines import import_ray

        import_ray()  # a missing extra fails now, with the install command
    loaded = load_data(spec)
    if recipe is not None:
        given = {"--model": model != "lenet", "--benchmark": benchmark not in ("auto", "split"), "--split": split,
                 "--scenario": scenario not in ("auto", "gg"), "--hidden": hidden, "--output-size": output_size,
                 "--batchnorm": batchnorm != "task", "--stream-seed": stream_seed, "--augment": augment is not None}
        clash = [flag for flag, value in given.items() if value]
        if clash:
            raise ConfigError(clash[0], f"no {clash[0]} with --recipe {recipe} (the recipe sets it)", "both")
        net, stream, config = _from_recipe(recipe, loaded, seed=seed, sparsity=sparsity, transfer=transfer,
                                           batches_per_task=batches_per_task, lr=lr)
        scenario = "gg"
        n_tasks = stream.n_tasks if tasks is None else min(tasks, stream.n_tasks)
    else:
        net, stream, config, scenario = _from_flags(
            loaded, kind, model=model, benchmark=benchmark, tasks=tasks, per_task_classes=per_task_classes, order=order,
            stream_seed=stream_seed, augment=augment, scenario=scenario, seed=seed, batches_per_task=batches_per_task,
            lr=lr, output_size=output_size, hidden=hidden, sparsity=sparsity, transfer=transfer, batchnorm=batchnorm,
            base=base)
        n_tasks = stream.n_tasks
    per_task = config.task_steps(-(-stream.train_size(0) // config.batch_size))
    # drop_last: a 1-image batch has no batch statistics
    setup = TrainingSetup.from_objects(net, stream.describe(), config, drop_last=net.has_batch_statistics)
    check_training_data(net, stream, 0, setup)  # a model that does not fit its data: one line, before any output
    if scenario != "nns":
        run = BankTrainingConfig(
            n_tasks=n_tasks, eval_at=_parse_eval_at(eval_at), full_matrix=full_matrix, workers=workers,
            ray=use_ray, ray_address=ray_address, resume=resume, overwrite=overwrite, backend=backend,
            batched=batched,
        )
        _train_into_bank(out, stream, net, setup, run, scenario, dev, seed, per_task)
        return
    net = net.to(dev)
    err_console.print(
        f"Training {n_tasks} × {per_task} batches: {model} (s = {net.output_size}) on {stream.name} ({spec}), "
        f"scenario {scenario}, {config.optimizer} lr {config.lr:g}, device {dev}",
        highlight=False,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    training: dict[str, Any] = {"scenario": scenario, "config": config.to_dict(), "device": dev}
    with Progress(*columns, console=err_console, transient=False) as progress:
        bar = progress.add_task("task 0", total=n_tasks * per_task)

        def advance(n: int) -> None:
            progress.advance(bar, n)

        result = train_nns(
            net, nns_batches(stream, range(n_tasks), config), config, decision_every=decision_every, progress=advance
        )
        progress.update(bar, description="evaluating")
        inferred = evaluate_inferred(
            net, stream, scenario="gns", task_to_mask=result.task_to_mask(), measure_task_inference=False,
            protocol="batch" if net.has_batch_statistics else "first-image",
        )
        nns_log = result.to_dict()
        training["nns"] = {k: nns_log[k] for k in ("n_masks", "n_trained_batches", "task_to_mask")}
        training["nns"]["decision_every"] = decision_every
        training["nns"]["gns_accuracy"] = {str(t): a for t, a in inferred.accuracy.items()}
        method = "one-shot" if inferred.method == "oneshot" else inferred.method
        table = results_table({"GNs": inferred.accuracy},
                              title=f"NNs accuracy (%) per task, task by {method} ({inferred.protocol})")
    benchmark_info = benchmark_metadata(stream, seed)
    # bank tasks are masks, not stream tasks: per-stream-task numbers go to metadata
    save_masks(net, out, backend=backend, benchmark=benchmark_info, accuracies=None, overwrite=overwrite,
               training=training)
    console.print(table)
    console.print(f"Saved {net.num_tasks} masks to {out} ({backend}).", highlight=False)


def _train_into_bank(
    out: Path, stream: Any, net: Any, setup: Any, run: Any, scenario: str, dev: str, seed: int, per_task: int,
) -> None:
    """GG/GNu/GNs/HopSupSup: :func:`~supsup_core.training.train_to_bank` under a task-level progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from supsup_core.persistence import benchmark_metadata
    from supsup_core.training import AccuracyMatrix, accuracy_table, results_table, train_to_bank

    config = setup.train_config
    if run.ray:
        engine = f"Ray ({run.ray_address or 'local instance'})"
    elif run.batched > 1:
        engine = f"{run.batched} tasks per batched step"
    elif min(run.workers, run.n_tasks) > 1:  # no more workers than tasks are started
        children = min(run.workers, run.n_tasks) - 1
        engine = f"this process and {children} worker process{'es' if children > 1 else ''}"
    else:
        engine = "this process"
    name = net.config.arch if net.config is not None else net.spec.get("factory", "model")
    err_console.print(
        f"Training {run.n_tasks} × {per_task} batches: {name} (s = {net.output_size}) on {stream.name} "
        f"({stream.describe().get('data_source')}), scenario {scenario}, {config.optimizer} lr {config.lr:g}, "
        f"device {dev}, {engine}" + (", resuming" if run.resume else ""),
        highlight=False,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        bar = progress.add_task("training", total=run.n_tasks)

        def on_task(p: Any) -> None:
            if p.done == p.started_at + 1:  # the ETA counts only tasks trained in this run
                progress.reset(bar, total=run.n_tasks, completed=p.started_at)
            progress.update(bar, completed=p.done,
                            description=f"task {p.outcome.task}: GG {100 * p.outcome.gg_accuracy:.2f}%")

        def on_checkpoint(count: int) -> None:
            progress.update(bar, description=f"evaluating all {count} tasks")

        result = train_to_bank(
            out, setup, run, benchmark=benchmark_metadata(stream, seed), scenario=scenario, device=dev,
            on_task=on_task, on_checkpoint=on_checkpoint, model=net, stream=stream,
        )
    if run.full_matrix and run.n_tasks <= _TABLE_LIMIT:
        table = accuracy_table(AccuracyMatrix.from_rows([[row[j] for j in range(c)] for c, row in sorted(result.rows.items())]))
    else:
        columns_out: dict[str, dict[int, float]] = {"GG after training": result.gg}
        if result.rows:
            last = max(result.rows)
            columns_out[f"GG after {last} tasks"] = result.rows[last]
        table = results_table(columns_out, title="GG accuracy (%) per task")
    if run.n_tasks <= _TABLE_LIMIT:
        console.print(table)
        if result.rows and not (run.full_matrix and run.n_tasks <= _TABLE_LIMIT):
            console.print(f"Forgetting {100 * result.forgetting():.2f} points (finished masks never change).",
                          highlight=False)
    else:
        last_row = result.rows[max(result.rows)] if result.rows else {}
        console.print(
            f"GG after training: mean {100 * sum(result.gg.values()) / len(result.gg):.2f}% over {len(result.gg)} tasks"
            + (f"; after {max(result.rows)} tasks: {100 * sum(last_row.values()) / len(last_row):.2f}%, forgetting "
               f"{100 * result.forgetting():.2f} pts" if last_row else ""),
            highlight=False,
        )
    trained = run.n_tasks - result.resumed_from
    console.print(
        f"Saved {run.n_tasks} masks to {out} ({run.backend}); trained {trained} in this run"
        + (f" (resumed after {result.resumed_from})" if run.resume else "") + f", {result.wall_seconds:.1f} s.",
        highlight=False,
    )
    for note in result.notes:
        err_console.print(f"Note: {note}", highlight=False, markup=False)
