"""Tests of supsup_core/training/metrics.py: accuracy matrix, average accuracy, forgetting, BWT, tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from rich.console import Console
from rich.table import Table

from supsup_core.errors import ConfigError
from supsup_core.training.metrics import AccuracyMatrix, accuracy_table, results_table
from tests.strategies import accuracy_rows

# A hand-made 3-task run: task 0 drops from 0.9 to 0.6, task 1 from 0.8 (peak) to 0.7, task 2 learned last.
ROWS = [[0.9], [0.8, 0.8], [0.6, 0.7, 0.95]]


def _render(table: Table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


class TestAccuracyMatrix:
    def test_hand_made_matrix_summaries(self):
        """Average accuracy, forgetting and backward transfer match hand computation on ROWS."""
        m = AccuracyMatrix.from_rows(ROWS)
        assert m.average_accuracy() == pytest.approx((0.6 + 0.7 + 0.95) / 3)
        assert m.average_accuracy(0) == pytest.approx(0.9)
        assert m.average_accuracy(1) == pytest.approx(0.8)
        # forgetting: task 0 max(0.9, 0.8) - 0.6 = 0.3; task 1 0.8 - 0.7 = 0.1
        assert m.forgetting() == pytest.approx(0.2)
        # BWT: (0.6 - 0.9) + (0.7 - 0.8), averaged
        assert m.backward_transfer() == pytest.approx(-0.2)
        assert m.final_accuracies() == {0: 0.6, 1: 0.7, 2: 0.95}

    def test_supsup_like_matrix_has_zero_forgetting(self):
        """Columns that never change after a task is learned give forgetting and BWT of exactly 0."""
        m = AccuracyMatrix.from_rows([[0.9], [0.9, 0.8], [0.9, 0.8, 0.7]])
        assert m.forgetting() == 0.0 and m.backward_transfer() == 0.0

    def test_single_row_has_undefined_forgetting(self):
        """With one row, forgetting and BWT are NaN (nothing earlier to compare with)."""
        m = AccuracyMatrix.from_rows([[0.5]])
        assert math.isnan(m.forgetting()) and math.isnan(m.backward_transfer())

    def test_record_grows_rows_and_leaves_unmeasured_entries_nan(self):
        """record() adds rows as needed; entries never recorded stay NaN."""
        m = AccuracyMatrix(3)
        m.record(1, 0, 0.5)
        assert m.n_rows == 2 and np.isnan(m.values[0]).all() and m.values[1, 0] == 0.5 and np.isnan(m.values[1, 1])

    def test_to_dict_is_json_safe_and_round_trips(self):
        """to_dict survives strict JSON (NaN as null) and from_dict rebuilds the same values."""
        m = AccuracyMatrix.from_rows(ROWS)
        text = json.dumps(m.to_dict(), allow_nan=False)
        back = AccuracyMatrix.from_dict(json.loads(text))
        np.testing.assert_array_equal(np.nan_to_num(back.values, nan=-1), np.nan_to_num(m.values, nan=-1))

    @pytest.mark.parametrize(
        "call, match",
        [
            (lambda: AccuracyMatrix(0), "n_tasks"),
            (lambda: AccuracyMatrix(2).record(2, 0, 0.5), "after_task"),
            (lambda: AccuracyMatrix(2).record(0, -1, 0.5), "task"),
            (lambda: AccuracyMatrix(2).record(0, 0, 1.5), "accuracy"),
            (lambda: AccuracyMatrix.from_rows([]), "rows"),
            (lambda: AccuracyMatrix.from_rows([[0.1, 0.2, 0.3]], n_tasks=2), "rows"),
            (lambda: AccuracyMatrix(2).average_accuracy(), "after_task"),
            (lambda: AccuracyMatrix.from_dict({"rows": []}), "data"),
        ],
    )
    def test_bad_input_raises_config_error(self, call, match):
        """Out-of-range indices, accuracies outside [0, 1] and malformed rows raise ConfigError."""
        with pytest.raises(ConfigError, match=match):
            call()

    @given(accuracy_rows())
    def test_properties_of_random_matrices(self, rows):
        """Forgetting is >= -BWT (the best earlier accuracy is at least the first); average lies in the last row's range."""
        m = AccuracyMatrix.from_rows(rows)
        last = rows[-1]
        assert min(last) - 1e-12 <= m.average_accuracy() <= max(last) + 1e-12
        if len(rows) > 1:
            assert m.forgetting() >= -m.backward_transfer() - 1e-12
        else:
            assert math.isnan(m.forgetting())


class TestTables:
    def test_accuracy_table_shows_every_row_and_the_summary(self):
        """accuracy_table has one row per stage, percentages, and the forgetting caption."""
        table = accuracy_table(AccuracyMatrix.from_rows(ROWS))
        text = _render(table)
        assert table.row_count == 3 and "95.0" in text and "forgetting 20.00" in text

    def test_results_table_adds_a_mean_row(self):
        """results_table shows one row per task plus the column means."""
        table = results_table({"GG": {0: 0.5, 1: 1.0}, "GNu": {0: 0.25, 1: 0.75}})
        text = _render(table)
        assert table.row_count == 3 and "75.00" in text and "50.00" in text
