"""Tests for hopfield_masks.budget."""

from __future__ import annotations

import pytest

from hopfield_masks.budget import format_bytes, parse_budget
from hopfield_masks.errors import BudgetError


class TestParseBudget:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("1MB", 10**6), ("512KiB", 524288), ("2e6", 2 * 10**6), ("1.5 MiB", 1572864), ("100", 100),
         ("1mb", 10**6), (4096, 4096), ("3GB", 3 * 10**9), ("64kB", 64000)],
    )
    def test_units(self, text, expected):
        """Decimal and binary units and bare numbers parse to bytes."""
        assert parse_budget(text) == expected

    @pytest.mark.parametrize("text", ["", "MB", "1XB", "-1MB", "0", "nan", True, None, "1 M B"])
    def test_bad_budgets_name_the_argument(self, text):
        """Unparseable or non-positive budgets raise BudgetError naming the argument and the received text."""
        with pytest.raises(BudgetError, match=r"^budget: expected a positive byte count"):
            parse_budget(text)

    def test_format_bytes_reads_back(self):
        """format_bytes produces text that parse_budget reads back to the same order of magnitude."""
        assert format_bytes(1_000_000) == "1.00 MB"
        assert parse_budget(format_bytes(2_500_000).replace(" ", "")) == 2_500_000
