"""The layering rule: hopfield_masks never imports torch, supsup_core or the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


class TestLayering:
    def test_hopfield_masks_imports_without_torch(self):
        """Importing hopfield_masks (and all its subpackages) leaves torch, supsup_core and the CLI unloaded."""
        code = (
            "import sys, pkgutil, importlib, hopfield_masks\n"
            "for m in pkgutil.walk_packages(hopfield_masks.__path__, 'hopfield_masks.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'torch', 'supsup_core', 'supsup_store_cli'})\n"
            "print(','.join(bad))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == ""

    def test_supsup_core_does_not_import_cli(self):
        """supsup_core never imports the CLI package."""
        code = (
            "import sys, pkgutil, importlib, supsup_core\n"
            "for m in pkgutil.walk_packages(supsup_core.__path__, 'supsup_core.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(','.join(sorted(n for n in sys.modules if n.startswith('supsup_store_cli'))))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == ""


class TestImportCost:
    def test_numba_loads_only_when_a_kernel_runs(self):
        """The CLI, the models and the training code import without Numba (it and its first kernel add about 120 MB of RSS).

        ``supsup-store train`` never runs a kernel; Numba loads at the first contraction or recall.
        """
        code = (
            "import sys, supsup_store_cli.app, supsup_core.models, supsup_core.training, supsup_core.persistence\n"
            "import hopfield_masks.rules, hopfield_masks.recall\n"
            "print('numba' in sys.modules)\n"
            "from supsup_core.contraction import row_abs_sums\n"
            "import numpy as np\n"
            "row_abs_sums(np.ones((1, 4), np.float32))\n"
            "print('numba' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["False", "True"]

    def test_mlp_evaluation_never_loads_numba(self):
        """Inferred-task evaluation of an MLP (one-shot, rerank, single-image inference) stays in PyTorch.

        Its decisions go through the batched rank-one pass (supsup_core.inference.groups), which is what keeps
        ``supsup-store evaluate`` of 250 FC 1024-1024 tasks under 500 MB.
        """
        code = (
            "import sys, torch\n"
            "from supsup_core.config import ModelConfig\n"
            "from supsup_core.data import load_mnist, make_stream\n"
            "from supsup_core.models import build_model\n"
            "from supsup_core.training import evaluate_gg, evaluate_inferred\n"
            "model = build_model(ModelConfig(arch='lenet', hidden=(8, 6), output_size=10))\n"
            "for _ in range(3):\n"
            "    model.add_task(); model.finish_task()\n"
            "stream = make_stream('permuted-mnist', 3, load_mnist(None))\n"
            "evaluate_gg(model, stream)\n"
            "for method in ('oneshot', 'rerank'):\n"
            "    evaluate_inferred(model, stream, method=method)\n"
            "print('numba' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["False"]


def test_every_package_is_in_the_wheel():
    """Each folder with an ``__init__.py`` is listed in pyproject.toml's packages (a missing one installs nothing)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    renamed = {folder: name for name, folder in config.get("package-dir", {}).items()}
    found = set()
    for top in ("hopfield_masks", "supsup_core", "cli"):
        for init in (root / top).rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((renamed.get(parts[0], parts[0]), *parts[1:])))
    assert found == listed


def test_the_built_wheel_holds_every_package_its_data_and_the_command(tmp_path):
    """A wheel built from a copy of the sources holds every package folder's modules, the py.typed markers and the
    ``supsup-store`` entry point, and nothing else of the repository (no tests, benchmarks or docs).

    The full check (build, install in a fresh environment outside the checkout, run the demo and the README's
    quick start) is ``.ci/wheel-check``; this one builds without isolation, offline, in about a second.
    """
    import shutil
    import zipfile

    import pytest

    pytest.importorskip("setuptools", minversion="68", reason="building the wheel needs setuptools (the build backend)")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    for top in ("hopfield_masks", "supsup_core", "cli"):
        shutil.copytree(root / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    code = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=src, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"hopfield_masks/py.typed", "supsup_core/py.typed"}
    for top, installed in (("hopfield_masks", "hopfield_masks"), ("supsup_core", "supsup_core"), ("cli", "supsup_store_cli")):
        for module in (root / top).rglob("*.py"):
            if (module.parent / "__init__.py").is_file():  # a module of a package (every folder is one)
                expected.add("/".join((installed, *module.relative_to(root / top).parts)))
    assert expected - names == set()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"hopfield_masks", "supsup_core", "supsup_store_cli", wheel.name.split("-py3")[0] + ".dist-info"}
    info = wheel.name.split("-py3")[0] + ".dist-info"
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "supsup-store = supsup_store_cli.app:main" in entry_points
