"""A bank's metadata is untrusted: a declared model is checked against the stored masks before it is built."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

from hopfield_masks.backends.fileformat import write_str_attr
from hopfield_masks.safety.integrity import record_group_checksum
from supsup_core.config import ModelConfig
from supsup_core.errors import BaseNetworkMismatchError
from supsup_core.models import build_model
from supsup_core.persistence import load_model, save_masks

ROOT = Path(__file__).parents[2]


def small_bank(path: Path) -> None:
    net = build_model(ModelConfig(arch="lenet", output_size=10, seed=0, hidden=(8, 6)))
    for _ in range(2):
        net.add_task()
        net.finish_task()
    save_masks(net, path)


def declare(path: Path, **model) -> None:
    """Rewrite the bank's metadata so that its model declares ``model`` (checksum kept consistent)."""
    with h5py.File(path, "r+") as f:
        metadata = json.loads(f.attrs["metadata"])
        metadata["model"].update(model)
        write_str_attr(f.attrs, "metadata", json.dumps(metadata))
        record_group_checksum(f)


def test_honest_bank_loads(tmp_path):
    path = tmp_path / "bank.h5"
    small_bank(path)
    model, _ = load_model(path)
    assert model.num_tasks == 2


def test_huge_declared_model_is_refused_before_it_is_built(tmp_path):
    """hidden=[200000, 200000] in a 10 kB bank: refused, naming the mismatch, without allocating 160 GB."""
    path = tmp_path / "bank.h5"
    small_bank(path)
    declare(path, hidden=[200000, 200000])
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from supsup_core.persistence import load_model
        from supsup_core.errors import SupSupError
        try:
            load_model({str(path)!r})
        except SupSupError as exc:
            print("refused:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("refused:") and "MAX_MODEL_ENTRIES" in proc.stdout, proc.stdout


def test_other_layer_shapes_are_refused(tmp_path):
    """A declared model whose masked layers differ from the stored masks is refused before building it."""
    path = tmp_path / "bank.h5"
    small_bank(path)
    declare(path, hidden=[9, 6])
    with pytest.raises(BaseNetworkMismatchError, match="does not match the stored masks"):
        load_model(path)
