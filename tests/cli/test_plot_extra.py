"""matplotlib is the optional [plot] extra: asking for a plot without it is a one-line error, before any work."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from hopfield_masks.capacity import CapacityRow, plot_capacity, require_plotting
from hopfield_masks.errors import InvalidArgumentError
from supsup_store_cli.app import app

runner = CliRunner()


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make matplotlib look uninstalled to importlib (the check the library and the CLI use)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))


def test_cli_plot_without_the_extra_exits_2_and_writes_nothing(tmp_path, no_matplotlib):
    out = tmp_path / "capacity.png"
    result = runner.invoke(app, ["capacity", "--size", "24", "--loads", "0.1", "--plot", str(out)])
    assert result.exit_code == 2
    message = result.output.strip()
    assert "--plot: expected matplotlib for plots (pip install 'supsup-store[plot]')" in message
    assert len(message.splitlines()) == 1 and not out.exists()


def test_library_plot_without_the_extra(tmp_path, no_matplotlib):
    with pytest.raises(InvalidArgumentError, match=r"plot: expected matplotlib .*supsup-store\[plot\]"):
        require_plotting()
    row = CapacityRow(load=0.1, n_patterns=1, fixed_point_fraction=1.0, recovered_fraction=1.0, mean_overlap=1.0,
                      converged_fraction=1.0)
    with pytest.raises(InvalidArgumentError, match="without matplotlib"):
        plot_capacity([row], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_cli_plot_still_works_with_the_extra(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "capacity.png"
    result = runner.invoke(app, ["capacity", "--size", "24", "--loads", "0.1", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
