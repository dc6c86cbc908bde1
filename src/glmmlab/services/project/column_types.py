"""Column types and measurement scales: what they are, which text fits which type, and what a new column gets.

Column types (``dtype``): ``boolean``, ``int64``, ``float64``, ``date``, ``datetime``, ``string``.
Numeric columns are ``int64`` and ``float64`` (see :attr:`~glmmlab.services.project.catalogue.ColumnInfo.numeric`).

Measurement scales (``scale``): ``nominal``, ``ordinal``, ``interval``, ``ratio``. The scale chosen on import is
(:func:`default_scale`):

- ``string`` and ``boolean`` columns: ``nominal``;
- ``date`` and ``datetime`` columns: ``interval``;
- ``int64`` and ``float64`` columns: ``ratio`` when no value is negative, else ``interval``. Integer columns are not
  guessed to be categories from how few values they have (a count and a code look alike); change the scale to
  ``nominal`` for integer codes such as a group id.

Which scales a type may take is in :data:`SCALES_BY_DTYPE`. A column is categorical (usable as a group variable) when
its scale is nominal or ordinal or its type is string
(:attr:`~glmmlab.services.project.catalogue.ColumnInfo.categorical`).

The rules for text (:func:`_text_fits`, :func:`_text_convert`, :data:`MISSING_TOKENS`) serve both an import's
choice of types (:func:`_choose_types`) and a change of a string column's type
(:func:`~glmmlab.services.project.editing.set_column_type`).
"""

from __future__ import annotations

import re
from typing import Any

from glmmlab.services.errors import ServiceError
from glmmlab.services.project.store import data_column, quote_literal

DTYPES = ("boolean", "int64", "float64", "date", "datetime", "string")
SCALES = ("nominal", "ordinal", "interval", "ratio")
SCALES_BY_DTYPE: dict[str, tuple[str, ...]] = {
    "string": ("nominal", "ordinal"),
    "boolean": ("nominal", "ordinal"),
    "int64": SCALES,
    "float64": SCALES,
    "date": ("ordinal", "interval"),
    "datetime": ("ordinal", "interval"),
}


# -- type rules for text -------------------------------------------------------------------------------------------
#
# Each rule says, in SQL over a VARCHAR expression ``v``, whether a cell fits a type (blank cells always fit, they
# become null) and how to convert it. Inference tries them in the order of ``_INFERENCE_ORDER``; the same rules convert
# a string column when the user changes its type.

_INT_RE = r"\s*([+-]?[0-9]{1,18})?\s*"
_FLOAT_RE = (r"\s*([+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?|[+-]?(?i:nan|inf|infinity))?\s*")
_DATE_RE = r"\s*([0-9]{4}-[0-9]{2}-[0-9]{2})?\s*"
_DATETIME_RE = r"\s*([0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?)?\s*"
_SQL_TYPES = {"boolean": "BOOLEAN", "int64": "BIGINT", "float64": "DOUBLE", "date": "DATE",
              "datetime": "TIMESTAMP", "string": "VARCHAR"}
_INFERENCE_ORDER = ("boolean", "int64", "float64", "date", "datetime", "string")
_FAMILY = {"boolean": "text", "string": "text", "int64": "number", "float64": "number", "date": "time",
           "datetime": "time"}


# Cells that mean "missing" in text files: empty or blank, R's NA, SPSS/Stata's ".", and the usual hand-written
# ways (compared without case and surrounding blanks). They count as missing when a column's type is inferred or
# changed; a column that stays text keeps them as they are.
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", ".", "#n/a")
# A regular expression rather than an IN list: DuckDB turns a long IN list into a join, which loses the row order
# of CREATE TABLE ... AS SELECT.
_MISSING_RE = r"\s*(" + "|".join(re.escape(t).replace(r"\.", "[.]") for t in MISSING_TOKENS if t) + r")?\s*"


def _blank(v: str) -> str:
    """SQL: the trimmed text ``v``, or null when it is one of :data:`MISSING_TOKENS`."""
    return f"(CASE WHEN regexp_full_match({v}, {quote_literal(_MISSING_RE)}, 'i') THEN NULL ELSE trim({v}) END)"


def _text_fits(v: str, dtype: str) -> str:
    """SQL that is true when the text ``v`` (null or blank included) can become ``dtype``."""
    missing = f"{_blank(v)} IS NULL"
    if dtype == "boolean":
        return f"({missing} OR lower(trim({v})) IN ('true', 'false'))"
    if dtype == "int64":
        return f"({missing} OR regexp_full_match({v}, '{_INT_RE}'))"
    if dtype == "float64":
        return f"({missing} OR regexp_full_match({v}, '{_FLOAT_RE}'))"
    if dtype == "date":
        return (f"({missing} OR (regexp_full_match({v}, '{_DATE_RE}')"
                f" AND try_cast(trim({v}) AS DATE) IS NOT NULL))")
    if dtype == "datetime":
        return (f"({missing} OR (regexp_full_match({v}, '{_DATETIME_RE}')"
                f" AND try_cast(trim({v}) AS TIMESTAMP) IS NOT NULL))")
    return "TRUE"


def _text_convert(v: str, dtype: str) -> str:
    """SQL converting the text ``v`` (which fits ``dtype``) to ``dtype``; blank cells become null."""
    if dtype == "boolean":
        return f"CASE lower(trim({v})) WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"
    if dtype == "string":
        return f"CASE WHEN trim({v}) = '' THEN NULL ELSE {v} END"
    return f"CAST({_blank(v)} AS {_SQL_TYPES[dtype]})"


def default_scale(dtype: str, has_negative: bool = False) -> str:
    """The scale a new column of type ``dtype`` gets (rule in the module docstring)."""
    if dtype in ("string", "boolean"):
        return "nominal"
    if dtype in ("date", "datetime"):
        return "interval"
    return "interval" if has_negative else "ratio"


def _check_scale(dataset_name: str, column: str, dtype: str, scale: str) -> None:
    if scale not in SCALES:
        raise ServiceError(f"'{scale}' is not a measurement scale; use one of {', '.join(SCALES)} "
                           f"(column '{column}' of dataset '{dataset_name}').")
    if scale not in SCALES_BY_DTYPE[dtype]:
        raise ServiceError(f"Column '{column}' of dataset '{dataset_name}' is {dtype}, which cannot be on the "
                           f"{scale} scale; choose {' or '.join(SCALES_BY_DTYPE[dtype])}, or change the type first.")


# -- choosing types and scales from the stored values ------------------------------------------------------------------

_BATCH = 200  # expressions per query: DuckDB's cost per expression grows with their number in one query


def _batched(cur, relation: str, exprs: list[str]) -> list[Any]:
    """``SELECT expr, ... FROM relation`` in batches of :data:`_BATCH` expressions; the one row's values in order.

    One query with thousands of expressions costs DuckDB time quadratic in their number; batches keep it linear.
    """
    out: list[Any] = []
    for b in range(0, len(exprs), _BATCH):
        out.extend(cur.execute(f"SELECT {', '.join(exprs[b:b + _BATCH])} FROM {relation}").fetchone())
    return out


def _negative_columns(cur, table: str, dtypes: list[str]) -> set[int]:
    numeric = [i for i, d in enumerate(dtypes) if d in ("int64", "float64")]
    if not numeric:
        return set()
    row = _batched(cur, table, [f"coalesce(bool_or({data_column(i)} < 0), FALSE)" for i in numeric])
    return {i for i, neg in zip(numeric, row) if neg}


def _sample_fits(cur, relation: str, n: int, rows: int) -> tuple[list[dict[str, bool]], list[int]]:
    """For the first ``rows`` rows: per column, which types every cell fits, and how many cells are not blank.

    The sample is unpivoted (one row per cell, in batches of columns), so the same six expressions serve every
    column and the cost is linear in the number of cells.
    """
    fits: list[dict[str, bool]] = [dict() for _ in range(n)]
    counts = [0] * n
    kinds = _INFERENCE_ORDER[:-1]
    step = 1000
    for b in range(0, n, step):
        cols = ", ".join(f"{data_column(i)} AS \"{i}\"" for i in range(b, min(n, b + step)))
        conds = ", ".join(f"bool_and({_text_fits('v', t)})" for t in kinds)
        result = cur.execute(
            f"SELECT CAST(k AS INTEGER), {conds}, count({_blank('v')}) FROM (UNPIVOT (SELECT {cols} FROM {relation} "
            f"LIMIT {rows}) ON COLUMNS(*) INTO NAME k VALUE v) GROUP BY k").fetchall()
        for row in result:
            i = int(row[0])
            fits[i] = {t: row[1 + j] is not False for j, t in enumerate(kinds)}
            counts[i] = int(row[-1])
    for i in range(n):  # a column with no values in the sample (all null) fits everything so far
        if not fits[i]:
            fits[i] = {t: True for t in kinds}
    return fits, counts


def _choose_types(cur, relation: str, n: int) -> list[str]:
    """Infer the type of each VARCHAR column c0..c{n-1} of ``relation``: the first type that every cell fits."""
    if n == 0:
        return []
    # A first guess from the first rows, then a check of that guess over all rows (one condition per column);
    # columns whose guess fails move on to the next type that fits everything.
    fits, counts = _sample_fits(cur, relation, n, 2000)
    candidates = [tuple(t for t in _INFERENCE_ORDER[:-1] if fits[i][t]) + ("string",) for i in range(n)]
    chosen = [c[0] for c in candidates]
    pending = [i for i in range(n) if chosen[i] != "string"]
    if pending:
        row = _batched(cur, relation, [f"coalesce(bool_and({_text_fits(data_column(i), chosen[i])}), TRUE)"
                                       for i in pending])
        failed = [i for i, ok in zip(pending, row) if not ok]
        if failed:
            checks = [(i, t) for i in failed for t in candidates[i][1:-1]]
            if checks:
                row = _batched(cur, relation, [f"coalesce(bool_and({_text_fits(data_column(i), t)}), TRUE)"
                                               for i, t in checks])
                ok = {(i, t) for (i, t), good in zip(checks, row) if good}
            else:
                ok = set()
            for i in failed:
                chosen[i] = next((t for t in candidates[i][1:-1] if (i, t) in ok), "string")
    # A column with no values at all stays text.
    empty = [i for i in range(n) if counts[i] == 0]
    if empty:
        full = _batched(cur, relation, [f"count({_blank(data_column(i))})" for i in empty])
        for i, c in zip(empty, full):
            if c == 0:
                chosen[i] = "string"
    return chosen
