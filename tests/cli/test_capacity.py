"""Tests for the ``supsup-store capacity`` command (CliRunner, small networks)."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from supsup_store_cli.app import app

runner = CliRunner()


class TestCapacityCommand:
    def test_prints_a_table(self):
        """The command prints one table row per load with the measured fractions."""
        result = runner.invoke(app, ["capacity", "--size", "32", "--rule", "hebbian", "--loads", "0.05,0.5"])
        assert result.exit_code == 0, result.output
        assert "fixed points" in result.stdout and "recovered" in result.stdout
        assert "100.0%" in result.stdout  # load 0.05 keeps its single pattern

    def test_json_output(self):
        """--json prints the rows, the rule and the theoretical capacity as JSON on stdout."""
        result = runner.invoke(app, ["capacity", "--size", "32", "--loads", "0.1,0.2", "--json", "--dtype", "int8"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["rule"] == {"id": "storkey"} and payload["dtype"] == "int8"
        assert [row["n_patterns"] for row in payload["rows"]] == [3, 6]
        assert payload["theoretical_capacity"] > 0

    def test_plot_writes_png(self, tmp_path):
        """--plot FILE saves the curve as a PNG."""
        out = tmp_path / "capacity.png"
        result = runner.invoke(app, ["capacity", "--size", "24", "--loads", "0.1,0.3", "--plot", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_default_loads(self):
        """Without --loads the command sweeps the default range (eight loads)."""
        result = runner.invoke(app, ["capacity", "--size", "24", "--json", "--mode", "sync"])
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["rows"]) == 8

    def test_bad_loads_exit_2(self):
        """A non-numeric load ends with exit code 2 and a message naming --loads."""
        result = runner.invoke(app, ["capacity", "--size", "32", "--loads", "0.1,abc"])
        assert result.exit_code == 2
        assert "--loads" in result.stderr

    def test_unknown_rule_exit_2(self):
        """An unknown rule id ends with exit code 2 and lists the available rules."""
        result = runner.invoke(app, ["capacity", "--size", "32", "--rule", "oja"])
        assert result.exit_code == 2
        assert "storkey-reference" in result.stderr


def test_the_perceptron_rule_reports_its_figures():
    """--rule perceptron: learned 1-bit couplings keep 0.3 N patterns and recover them from 5% noise."""
    result = runner.invoke(app, ["capacity", "--rule", "perceptron", "--size", "128", "--loads", "0.3",
                                 "--noise", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rule"]["id"] == "perceptron" and payload["theoretical_capacity"] == pytest.approx(0.6 * 128)
    (row,) = payload["rows"]
    assert row["fixed_point_fraction"] == 1.0 and row["recovered_fraction"] >= 0.95
    refused = runner.invoke(app, ["capacity", "--rule", "perceptron", "--size", "100"])
    assert refused.exit_code == 2 and "--size: expected a multiple of 64" in refused.output
