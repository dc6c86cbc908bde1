"""Issue 10, point 6: the one number formatter (web, command line and reports write numbers with it)."""

from __future__ import annotations

import math

from glmmlab.services.views.numbers import format_column, format_number, format_rows
from glmmlab.services.workbench.reports import table_cells


def test_a_decimal_column_has_one_notation_and_fixed_decimals():
    assert format_column([0.0, 0.12345, -2.5]) == ["0.0000", "0.1235", "-2.5000"]  # no "0" beside "0.0000"
    assert format_column([0.00087085, 1.5]) == ["0.0009", "1.5000"]  # no 8.7085e-4 in a column of decimals
    assert format_column([0.000012345, 0.0000002]) == ["1.2345e-05", "2.0000e-07"]  # all tiny: scientific
    assert format_column([-0.00001]) == ["-1.0000e-05"]
    assert format_column([-0.00001, 1.0]) == ["0.0000", "1.0000"]  # never "-0.0000"
    assert format_column([1, 2.5]) == ["1.0000", "2.5000"]  # an int in a decimal column is written as one


def test_counts_p_values_and_missing_values():
    assert format_column([12345, 7, 1234567], "count") == ["12,345", "7", "1,234,567"]
    assert format_column([0.5, 0.00001, None], "p") == ["0.5000", "< 0.0001", "N/A"]
    assert format_column([None, math.nan, math.inf, -math.inf]) == ["N/A", "N/A", "Inf", "-Inf"]
    assert format_number(None, "text") == "N/A" and format_number("a", "decimal") == "a"


def test_metric_tables_format_each_row_by_its_own_kind():
    rows = [["AIC", 1234.56789], ["Observations", 12000], ["p", 0.00001]]
    assert format_rows(rows, ["text", ["decimal", "count", "p"]]) == [
        ["AIC", "1234.5679"], ["Observations", "12,000"], ["p", "< 0.0001"]]


def test_report_tables_stored_without_kinds_are_formatted_by_their_values():
    payload = {"columns": ["Variable", "Estimate", "Rank"], "rows": [["a", 0.0, 1], ["b", 0.5, 1200]]}
    assert table_cells(payload) == [["a", "0.0000", "1"], ["b", "0.5000", "1,200"]]


def test_degrees_of_freedom_have_two_decimals():
    """Satterthwaite's df (issue 19 point 4): 17.00 and 1915.40, not 17.0000; infinite df (asymptotic) is Inf."""
    from glmmlab.services.views.numbers import format_column

    assert format_column([16.99998, 1915.396, float("inf"), None], "df") == ["17.00", "1915.40", "Inf", "N/A"]
