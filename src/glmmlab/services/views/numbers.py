"""The one number formatter: how every results table (web, command line, reports) writes its numbers.

Numbers are formatted a column at a time, by the column's kind:

- ``"decimal"``: a fixed number of decimals (4) for the whole column, so ``0`` is ``0.0000`` beside ``0.1234``. A
  column switches to scientific notation as a whole, only when every non-zero value is below 0.0001 or some value
  is 10^8 or more; a single tiny value in a column of ordinary ones is written with the fixed decimals.
- ``"proportion"``: a quantity on [0, 1] (R², ICC) with the fixed decimals and never scientific notation: its scale
  is 1, so a value below 0.00005 is 0 at that scale (a marginal R² of 2.7e-30, an intercept-only model's rounding
  noise, is ``0.0000``). Decimal columns of other quantities keep the rule above: they carry units, and a small
  coefficient beside a large one is not noise.
- ``"count"``: whole numbers with thousands separators (``12,345``).
- ``"p"``: p-values with 4 decimals, ``< 0.0001`` below that.
- ``"df"``: degrees of freedom (Satterthwaite's are not whole numbers) with 2 decimals (``17.00``, ``1915.40``).
- ``"text"``: as it is.

Missing values (None, NaN) are ``N/A`` everywhere; infinities are ``Inf`` and ``-Inf``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

DECIMALS = 4
NA = "N/A"
KINDS = ("decimal", "proportion", "count", "p", "df", "text")
DF_DECIMALS = 2
_SMALL = 10.0 ** -DECIMALS
_LARGE = 1e8


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def scientific_column(values: Iterable[Any]) -> bool:
    """True when a decimal column is written in scientific notation (rule in the module docstring)."""
    finite = [abs(float(v)) for v in values if _is_number(v) and math.isfinite(v)]
    nonzero = [a for a in finite if a != 0]
    if not nonzero:
        return False
    return max(nonzero) >= _LARGE or max(nonzero) < _SMALL


def format_number(v: Any, kind: str = "decimal", scientific: bool = False) -> str:
    """One value of a column of ``kind`` (``scientific``: the column's choice, see :func:`scientific_column`)."""
    if _missing(v):
        return NA
    if kind == "text" or not _is_number(v):
        return str(v)
    if isinstance(v, float) and math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if kind == "count":
        return f"{int(round(v)):,}"
    if kind == "df":
        return f"{v:.{DF_DECIMALS}f}"
    if kind == "p":
        return f"< {_SMALL:.{DECIMALS}f}" if v < _SMALL else f"{v:.{DECIMALS}f}"
    if scientific and kind != "proportion":
        return f"{v:.{DECIMALS}e}"
    text = f"{v:.{DECIMALS}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0000"


def format_column(values: Sequence[Any], kind: str = "decimal") -> list[str]:
    """A whole column, with one notation for all of it."""
    sci = kind == "decimal" and scientific_column(values)
    return [format_number(v, kind, sci) for v in values]


def format_rows(rows: Sequence[Sequence[Any]], kinds: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """A table's rows as text. ``kinds`` has one entry per column: a kind, or a list of kinds, one per row (for the
    Metric/Value tables, where each row is its own quantity)."""
    columns: list[list[str]] = []
    for j, kind in enumerate(kinds):
        values = [row[j] for row in rows]
        if isinstance(kind, str):
            columns.append(format_column(values, kind))
        else:
            columns.append([format_number(v, k, k == "decimal" and scientific_column([v]))
                            for v, k in zip(values, kind)])
    return [list(cells) for cells in zip(*columns)] if columns else [[] for _ in rows]


def numeric_kind(kind: str | Sequence[str]) -> bool:
    """Whether a column of this kind is right-aligned (numbers)."""
    return kind != "text"


# Spreadsheets run a cell that begins with one of these as a formula (CSV injection: OWASP's guidance is to
# prefix such a cell with a single quote). A plain number such as -1.5 or +2e-3 is left as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_safe(v: Any) -> Any:
    """A cell for a CSV or tab-separated text that a spreadsheet opens: text that would start a formula gets a
    leading ``'``; numbers, and text that is a plain number, are unchanged."""
    if not isinstance(v, str) or not v.startswith(_FORMULA_START) or _PLAIN_NUMBER.fullmatch(v):
        return v
    return "'" + v
