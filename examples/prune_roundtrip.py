"""torch.nn.utils.prune masks -> mask bank -> reservoir -> recall -> back onto a model, end to end.

    python examples/prune_roundtrip.py [--out prune_out]

1. trains a dense LeNet 300-100 on the embedded MNIST subset (2 epochs, CPU, a few seconds);
2. prunes it iteratively with ``prune.l1_unstructured`` (4 checkpoints, 30 % of what is left each
   time) and stores every checkpoint's ``*_mask`` buffers as one task of an ``hdf5-entropy`` bank,
   next to the same tasks in ``hdf5-packed`` and ``hdf5-sparse`` banks (bytes compared);
3. prunes four fresh copies with ``prune.random_unstructured`` (50 %, four seeds: four "tasks"),
   stores them in a bank, encodes it into a 32 MB Hopfield reservoir (int8 couplings) and recalls every task's masks
   from a cue with 5 % of its bits flipped (``Reservoir.recall``);
4. puts each recalled task back onto a fresh copy of the dense model with
   ``prune.custom_from_mask`` and checks masks and test accuracy against the original.

The checkpoints of step 2 are nested (each keeps a subset of the previous one), so they are highly
correlated patterns: the entropy-coded bank exploits that, while a Hopfield reservoir is the wrong
store for them (the last line of the output measures it).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

import hopfield_masks as hm
from supsup_core.data import load_mnist
from supsup_core.interop.prune import apply_prune_masks, prune_masks, write_prune_task

LAYERS = (1, 3, 5)  # the Linear layers of the Sequential below


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("prune_out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    seeds = np.random.SeedSequence(0).generate_state(2)
    torch.manual_seed(int(seeds[0]))

    # 1. a dense LeNet 300-100 trained on the embedded MNIST subset
    data = load_mnist()
    x = torch.tensor(data.train_images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = torch.tensor(data.train_labels, dtype=torch.long)
    xt = torch.tensor(data.test_images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    yt = torch.tensor(data.test_labels, dtype=torch.long)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    optimiser = torch.optim.Adam(dense.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(int(seeds[1]))
    for _ in range(2):
        for idx in torch.randperm(x.shape[0], generator=order).split(128):
            optimiser.zero_grad()
            nn.functional.cross_entropy(dense(x[idx]), y[idx]).backward()
            optimiser.step()
    print(f"dense LeNet 300-100: test accuracy {accuracy(dense, xt, yt):.3f}")

    # 2. iterative L1 pruning; every checkpoint's masks are one task of each bank
    pruned = copy.deepcopy(dense)
    checkpoints, accuracies = [], []
    banks = {b: hm.create_bank(args.out / f"{b}.h5", b, overwrite=True, metadata={"source": "torch.nn.utils.prune"})
             for b in ("hdf5-packed", "hdf5-sparse", "hdf5-entropy")}
    for step in range(4):
        for i in LAYERS:
            prune.l1_unstructured(pruned[i], "weight", amount=0.3)
        checkpoints.append(prune_masks(pruned))
        accuracies.append(accuracy(pruned, xt, yt))
        for bank in banks.values():
            write_prune_task(bank, f"step-{step}", pruned, attrs={"accuracy": accuracies[-1]})
    for bank in banks.values():
        bank.close()
    print("checkpoint  density  accuracy  " + "  ".join(f"{b:>12}" for b in banks))
    for step, masks in enumerate(checkpoints):
        n = sum(m.size for m in masks.values())
        density = sum(int(m.sum()) for m in masks.values()) / n
        sizes = []
        for b in banks:
            with hm.open_bank(args.out / f"{b}.h5") as bank:
                sizes.append(bank.task_nbytes(f"step-{step}"))
        print(f"step-{step}      {density:7.3f}  {accuracies[step]:8.3f}  " + "  ".join(f"{s:>10,} B" for s in sizes))

    # 3. four random-pruning "tasks" -> bank -> reservoir -> recall from 5 %-noisy cues
    tasks, task_accuracy = [], []
    with hm.create_bank(args.out / "random.h5", "hdf5-packed", overwrite=True) as bank:
        for task in range(4):
            model = copy.deepcopy(dense)
            torch.manual_seed(int(np.random.SeedSequence(0, spawn_key=(task,)).generate_state(1)[0]))
            for i in LAYERS:
                prune.random_unstructured(model[i], "weight", amount=0.5)
            tasks.append(prune_masks(model))
            task_accuracy.append(accuracy(model, xt, yt))
            write_prune_task(bank, str(task), model)
    reservoir, _ = hm.encode_bank(args.out / "random.h5", "32MB", hm.EncodeSettings(rule="pseudo-inverse", dtype="int8"))
    print(f"reservoir: {reservoir.n_blocks} networks of {reservoir.network_size} units, {reservoir.nbytes:,} B, "
          f"{reservoir.n_tasks} tasks")
    # 4. each recalled task back onto a fresh dense copy, as prune masks
    for task, masks in enumerate(tasks):
        cue = reservoir.cue("noisy:0.05", seed=task, reference=masks)
        recalled, result = reservoir.recall(cue=cue, method="dynamics")
        wrong = sum(int((recalled[k] != masks[k]).sum()) for k in masks)
        model = copy.deepcopy(dense)
        apply_prune_masks(model, recalled)
        same = all(np.array_equal(prune_masks(model)[k], masks[k]) for k in masks)
        print(f"task {task}: {wrong} bits wrong after {result.steps_run} sweeps; pruned model identical: {same}; "
              f"test accuracy {accuracy(model, xt, yt):.3f} (original {task_accuracy[task]:.3f})")

    # the nested checkpoints in a reservoir of the same budget, for comparison
    reservoir, _ = hm.encode_bank(args.out / "hdf5-entropy.h5", "32MB", hm.EncodeSettings(rule="pseudo-inverse", dtype="int8"))
    wrong = []
    for step, masks in enumerate(checkpoints):
        recalled, _ = reservoir.recall(cue=reservoir.cue("noisy:0.05", seed=step, reference=masks), method="dynamics")
        wrong.append(sum(int((recalled[k] != masks[k]).sum()) for k in masks))
    print(f"nested checkpoints in the same reservoir: bits wrong after recall {wrong} (correlated patterns)")


if __name__ == "__main__":
    main()
