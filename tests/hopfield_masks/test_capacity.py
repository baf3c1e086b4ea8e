"""Tests for hopfield_masks.capacity: the capacity sweep and its plot."""

from __future__ import annotations

import numpy as np
import pytest

from hopfield_masks.capacity import CapacityRow, capacity_sweep, default_loads, plot_capacity
from hopfield_masks.errors import InvalidArgumentError
from hopfield_masks.rules import get_rule


class TestCapacitySweep:
    def test_rows_follow_the_loads(self):
        """One row per load, in order, with round(load * N) patterns and fractions in range."""
        rows = capacity_sweep(64, "hebbian", [0.1, 0.05, 0.3], seed=1)
        assert [r.load for r in rows] == [0.1, 0.05, 0.3]
        assert [r.n_patterns for r in rows] == [6, 3, 19]
        for r in rows:
            assert isinstance(r, CapacityRow)
            for frac in (r.fixed_point_fraction, r.recovered_fraction, r.converged_fraction):
                assert 0.0 <= frac <= 1.0
            assert -1.0 <= r.mean_overlap <= 1.0

    def test_low_load_is_perfect_and_high_load_is_not(self):
        """Storkey at load 0.05 keeps and recovers everything; Hebbian at load 0.5 keeps almost nothing."""
        low = capacity_sweep(128, "storkey", [0.05], seed=0)[0]
        assert low.fixed_point_fraction == 1.0 and low.recovered_fraction == 1.0 and low.mean_overlap == 1.0
        high = capacity_sweep(128, "hebbian", [0.5], seed=0)[0]
        assert high.fixed_point_fraction < 0.2 and high.recovered_fraction < 0.2

    @pytest.mark.parametrize("mode", ["async", "sync"])
    def test_seeded_and_independent_of_other_loads(self, mode):
        """The same seed gives the same rows, and a load's row does not depend on the other loads."""
        a = capacity_sweep(48, "storkey", [0.1, 0.4], seed=3, mode=mode)
        b = capacity_sweep(48, "storkey", [0.1, 0.4], seed=3, mode=mode)
        c = capacity_sweep(48, "storkey", [0.4], seed=3, mode=mode)
        assert a == b and a[1] == c[0]

    def test_noise_zero_recovers_every_fixed_point(self):
        """With noiseless cues, recovered patterns are exactly the fixed points."""
        row = capacity_sweep(64, "hebbian", [0.2], noise=0.0, seed=2)[0]
        assert row.recovered_fraction == row.fixed_point_fraction

    @pytest.mark.parametrize("dtype", ["float16", "int8"])
    def test_low_precision_networks(self, dtype):
        """The sweep runs on float16 and int8 couplings and still recovers at low load."""
        row = capacity_sweep(96, "storkey", [0.05], dtype=dtype)[0]
        assert row.recovered_fraction == 1.0

    def test_callback_sees_every_row(self):
        """The callback receives each row as it is measured."""
        seen = []
        rows = capacity_sweep(32, "storkey", [0.1, 0.2], callback=seen.append)
        assert seen == rows

    def test_default_loads_pass_the_capacity(self):
        """Default loads increase, start below and end beyond the rule's capacity per unit."""
        for rule in ("hebbian", "storkey", "pseudo-inverse"):
            loads = default_loads(256, rule)
            per_unit = get_rule(rule).capacity(256) / 256
            assert loads == sorted(loads) and len(loads) == 8
            assert loads[0] < per_unit < loads[-1]
        assert len(capacity_sweep(24, "hebbian")) == 8

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"loads": []}, "loads"),
            ({"loads": [0.1, -0.2]}, "loads"),
            ({"loads": [float("nan")]}, "loads"),
            ({"loads": [0.001]}, "loads"),
            ({"loads": "abc"}, "loads"),
            ({"noise": 0.7}, "noise"),
            ({"noise": "x"}, "noise"),
            ({"seed": -1}, "seed"),
            ({"dtype": "float64"}, "dtype"),
            ({"mode": "batch"}, "mode"),
        ],
    )
    def test_bad_arguments_are_named(self, kwargs, match):
        """Bad loads, noise, seed, dtype or mode raise InvalidArgumentError naming the argument."""
        args = {"loads": [0.1], **kwargs}
        with pytest.raises(InvalidArgumentError, match=match):
            capacity_sweep(32, "storkey", **args)

    def test_bad_size(self):
        """The size must be an integer >= 2."""
        with pytest.raises(InvalidArgumentError, match="size"):
            capacity_sweep(1, "storkey", [0.5])


class TestPlot:
    def test_writes_a_png(self, tmp_path):
        """plot_capacity saves a PNG at the path and leaves no temporary file behind."""
        rows = capacity_sweep(32, "storkey", [0.1, 0.3])
        out = plot_capacity(rows, tmp_path / "curve.png", title="test")
        assert out == tmp_path / "curve.png"
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]

    def test_no_rows(self, tmp_path):
        """An empty sweep cannot be plotted."""
        with pytest.raises(InvalidArgumentError, match="rows"):
            plot_capacity([], tmp_path / "x.png")

    def test_rows_are_json_safe(self):
        """CapacityRow.to_dict holds plain numbers."""
        d = capacity_sweep(32, "hebbian", [0.1])[0].to_dict()
        assert set(d) == {"load", "n_patterns", "fixed_point_fraction", "recovered_fraction", "mean_overlap",
                          "converged_fraction"}
        assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for v in d.values())
