"""From DataFrame columns to the engine's arrays: numeric conversion and group coding, with messages that name
the column. Used by the Python API (whole frames) and by the Dask path (one partition at a time)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import group_labels_of
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.solvers.threads import THREADED_ROWS, cpu_count, in_threads, row_slices


def numeric_values(col: pd.Series) -> tuple[np.ndarray, int, int, object]:
    """(floats with NaN for missing or non-numeric, present count, numeric count among present, an example of
    a non-numeric value or None)."""
    if pd.api.types.is_bool_dtype(col):
        values = col.astype(float).to_numpy()
        return values, len(col), len(col), None
    if pd.api.types.is_numeric_dtype(col):
        if isinstance(col.dtype, np.dtype):  # plain numpy storage: NaN is the missing value; no copy for floats
            values = np.asarray(col.to_numpy(), dtype=float)
        else:  # pandas' nullable or Arrow-backed dtypes
            values = col.to_numpy(dtype=float, na_value=np.nan)
        return values, len(col), len(col), None
    converted = pd.to_numeric(col, errors="coerce")
    present = col.notna().to_numpy()
    numeric = converted.notna().to_numpy()
    example = None
    bad = present & ~numeric
    if bad.any():
        example = col[bad].iloc[0]
    return converted.to_numpy(dtype=float, na_value=np.nan), int(present.sum()), int(numeric.sum()), example


def not_numeric_error(name: str, role: str, example: object) -> GlmmInputError:
    return GlmmInputError(
        f"{role} column '{name}' is not numeric (e.g. value {str(example)!r}); "
        "choose a numeric column, or convert a categorical one with Dummy Coding first"
    )


def numeric_column(df: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """A column as floats; refused when no present value is a number."""
    values, present, numeric, example = numeric_values(df[name])
    if present and not numeric:
        raise not_numeric_error(name, role, example)
    return values


def is_numeric_group(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def group_keys(col: pd.Series) -> pd.Series:
    """The values groups are told apart by: floats for a numeric column (NaN/inf missing), labels otherwise."""
    if is_numeric_group(col):
        v = col.astype(float)
        return v.where(np.isfinite(v))
    return col


_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def numeric_text_order(labels: Sequence[str]) -> list[int] | None:
    """When every label is a number written as text (identifiers turned into text), the indices that list them by
    their numbers ("1", "2", ..., "10", not "1", "10", "2"; equal numbers by their text); None otherwise."""
    texts = [str(x).strip() for x in labels]
    if not texts or not all(_NUMBER_TEXT.fullmatch(t) for t in texts):
        return None
    values = [float(t) for t in texts]
    return sorted(range(len(texts)), key=lambda i: (values[i], texts[i]))


def level_order(labels: Sequence[str]) -> np.ndarray:
    """The indices that list text levels in the order glmmlab reports them: numerically when every label is a
    number written as text (:func:`numeric_text_order`), else in code-point order (R's sort in the C locale)."""
    numeric = numeric_text_order(labels)
    if numeric is not None:
        return np.asarray(numeric, dtype=np.int64)
    return np.argsort(np.asarray([str(x) for x in labels], dtype=object), kind="stable")


def _order(uniques: np.ndarray, numeric: bool) -> np.ndarray:
    return np.argsort(uniques.astype(float), kind="stable") if numeric else level_order(list(group_labels_of(uniques)))


def sorted_levels(uniques: np.ndarray, numeric: bool) -> tuple[np.ndarray, list[str]]:
    """The distinct keys in the order groups are reported (numeric order for numbers, and for numbers written as
    text), and their labels."""
    uniques = np.asarray(uniques)
    order = _order(uniques, numeric)
    keys = uniques[order]
    return keys, [str(v) for v in group_labels_of(keys)]


# integer group keys spanning at most this many values (and two per row) are coded by counting, not hashing
COUNTED_SPAN = 1 << 24


def _counted_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """:func:`group_codes` of an integer column by counting: each value's rank among the distinct values present
    (a pass to mark them, a cumulative sum, a lookup), where the values span fewer than COUNTED_SPAN numbers
    (and at most two per row) within +-2^53 (where they are exact as floats, as the hashed path sees them). 1M rows
    of 10,000 groups: 9 ms against 65 ms for the hashed floats. None for a column that does not qualify."""
    if values.size == 0:
        return None
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span > min(COUNTED_SPAN, 2 * values.size + 1024) or max(abs(lo), abs(hi)) > 2 ** 53:
        return None
    offset = values - lo if lo else values
    present = np.zeros(span, dtype=bool)
    present[offset] = True
    rank = np.cumsum(present, dtype=np.int32) - 1
    levels = np.flatnonzero(present) + lo
    return rank[offset], [str(v) for v in levels.tolist()]


def group_codes(df: pd.DataFrame, name: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 where missing) into the sorted group labels; O(n) hashing, only the labels sorted (plain
    integers of a moderate span: by counting, :func:`_counted_codes`)."""
    col = df[name]
    numeric = is_numeric_group(col)
    if numeric and isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu":
        counted = _counted_codes(col.to_numpy())
        if counted is not None:
            return counted
    codes, uniques = pd.factorize(group_keys(col), sort=False, use_na_sentinel=True)
    uniques = np.asarray(uniques)
    if uniques.size == 0:
        return codes.astype(np.int64), []
    order = _order(uniques, numeric)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
    return codes, [str(v) for v in group_labels_of(uniques[order])]


def check_columns(columns: Iterable[str], n_rows: int | None, response: str, group: str, fixed: list[str]) -> None:
    """The model's columns exist and play one role each."""
    available = [str(c) for c in columns]
    shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
    for role, name in [("response", response), ("group", group)] + [("fixed-effect", f) for f in fixed]:
        if not isinstance(name, str) or name not in available:
            raise GlmmInputError(f"{role} column {name!r} is not in the data; available columns: {shown}")
    if len(set(fixed)) != len(fixed):
        dup = next(f for f in fixed if fixed.count(f) > 1)
        raise GlmmInputError(f"fixed effect '{dup}' is listed twice; list each column once")
    if response in fixed:
        raise GlmmInputError(f"'{response}' is the response and cannot also be a fixed effect")
    if group == response or group in fixed:
        raise GlmmInputError(
            f"'{group}' is the group variable and cannot also be the response or a fixed effect"
        )
    if n_rows == 0:
        raise GlmmInputError("the data have no rows")


def plain_values(df: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """A column as :func:`numeric_column` gives it, except that plain numpy integers stay integers (no float copy:
    the column frame converts them as it gathers its rows) and plain float64 is the column's own memory."""
    col = df[name]
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf" and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy()
    return numeric_column(df, name, role)


GATHER_WIDTH = 4  # columns gathered together (their rows side by side: one memory access per row for all four)
GATHER_ROWS = 65_536  # rows gathered at a time (their block of the output stays in cache while it is spread out)


def gather_rows(columns: list[np.ndarray], rows: np.ndarray, outs: list[np.ndarray]) -> None:
    """``outs[k][:] = columns[k][rows]`` (as floats) for rows in another order (the order of the groups). A column
    gathered alone reads one row per cache line at random; GATHER_WIDTH columns are first put side by side (a
    sequential copy, which also turns integers into floats), so each row read fetches all of them: 1M rows, 10
    columns in the order of 10,000 groups, 75 ms against 150 ms. The extra memory is one n x GATHER_WIDTH copy.
    From THREADED_ROWS rows both copies run over runs of rows in threads, one per core."""
    parts = cpu_count() if rows.size >= THREADED_ROWS else 1
    for s in range(0, len(columns), GATHER_WIDTH):
        part = columns[s:s + GATHER_WIDTH]
        side = np.empty((part[0].size, len(part)))
        in_threads(partial(_side_by_side, part, side), row_slices(side.shape[0], parts))
        runs = row_slices(rows.size, parts)
        # each run's block of gathered rows made here, not in its thread (a thread's own allocations went to a
        # malloc arena of its own, which the fit's later temporaries could not reuse: the first fit's peak +17 MB)
        blocks = [np.empty((min(GATHER_ROWS, r.stop - r.start), len(part))) for r in runs]
        in_threads(partial(_spread, side, rows, outs[s:s + len(part)]), list(zip(runs, blocks)))
        del side, blocks


def _side_by_side(part: list[np.ndarray], side: np.ndarray, r: slice) -> None:
    """Rows ``r`` of the columns ``part`` into the columns of ``side``."""
    for j, col in enumerate(part):
        side[r, j] = col[r]


def _spread(side: np.ndarray, rows: np.ndarray, outs: list[np.ndarray], run: tuple[slice, np.ndarray]) -> None:
    """``outs[j][r] = side[rows[r], j]`` for the run of rows r, GATHER_ROWS rows at a time through ``buffer``."""
    r, buffer = run
    for a in range(r.start, r.stop, GATHER_ROWS):
        b = min(a + GATHER_ROWS, r.stop)
        block = np.take(side, rows[a:b], axis=0, out=buffer[: b - a], mode="clip")  # (raise would buffer out)
        for j, out in enumerate(outs):
            out[a:b] = block[:, j]


def column_frame(df: pd.DataFrame, response: str, group: str, fixed: list[str], *, intercept: bool, family: Any,
                 formula: str, grouped: bool = True) -> tuple[ModelFrame, np.ndarray | None]:
    """The model frame of ``response ~ fixed + (1 | group)`` over numeric columns, built from the columns
    without the formula machinery: rows with a missing, non-numeric or infinite value in a column the model uses
    are left out (listwise deletion), a predictor constant on the rows used is dropped with a warning naming it,
    and the design is gathered once, with its rows already in the order of the groups (so the engine does not
    permute it again). The frame's ``rows`` are in that order; the second value, the position of each frame row
    among the rows used in input order, puts per-row results back in input order (a scatter, not a sort).
    ``grouped`` False: the rows stay in input order (a linear model, whose cross-products are computed once, needs
    no sort), and the second value is None."""
    from glmmlab.engine.model.design import constant_column_warning, no_complete_rows, too_few_groups
    from glmmlab.engine.model.terms import RandomTerm, ones_column

    y = plain_values(df, response, "response")
    columns = [plain_values(df, f, "fixed-effect") for f in fixed]
    codes, levels = group_codes(df, group)
    keep = codes >= 0
    for col in [y] + columns:
        if col.dtype.kind == "f":  # integers are always finite
            keep &= np.isfinite(col)
    if not keep.any():
        raise no_complete_rows(response, group)
    every = bool(keep.all())  # no row left out: no gather of the codes, no renumbering of the groups
    rows = np.arange(y.size) if every else np.flatnonzero(keep)
    counts = np.bincount(codes if every else codes[rows], minlength=len(levels))
    used = counts > 0
    present = levels if used.all() else [lv for lv, u in zip(levels, used) if u]
    if len(present) < 2:
        raise too_few_groups(group, len(present))
    order: np.ndarray | None = None
    if grouped:
        g = codes if every and used.all() else (np.cumsum(used) - 1)[codes[rows]]
        order = np.argsort(g.astype(np.uint16) if len(present) <= 65_536 else g, kind="stable")
        rows = order if every else rows[order]
        g = np.repeat(np.arange(len(present), dtype=np.int32), counts[used])  # the codes in their sorted order
        every = False
    else:
        g = (codes if every and used.all() else (np.cumsum(used) - 1)[codes[rows]]).astype(np.int32)
    off = 1 if intercept else 0
    # the design is gathered into contiguous rows of its transpose (X is then column-major: writing the columns of
    # a row-major X strides through memory, 3x slower on 1M rows), the response with it
    Xt = np.empty((off + len(fixed), rows.size))
    if intercept:
        Xt[0] = 1.0
    sources, targets = list(columns), [Xt[off + k] for k in range(len(fixed))]
    if every and y.dtype == np.float64:  # the column itself (perhaps the table's own memory): read-only, so no
        yv = y.view()  # step can write into it
        yv.flags.writeable = False
    else:
        yv = np.empty(rows.size)
        sources.insert(0, y)
        targets.insert(0, yv)
    if every:
        for col, out in zip(sources, targets):
            out[:] = col
    else:
        gather_rows(sources, rows, targets)
    family.check_response(yv, response)
    warnings: list[str] = []
    kept: list[int] = []
    for k, name in enumerate(fixed):
        v = Xt[off + k]
        if v.size and v.min() == v.max() and (intercept or v.min() == 0.0):
            warnings.append(constant_column_warning(name))
            continue
        kept.append(off + k)
    if len(kept) < len(fixed):  # the constant columns are left out (the others moved up over them)
        Xt[off:off + len(kept)] = Xt[kept]
    names = (["(Intercept)"] if intercept else []) + [fixed[k - off] for k in kept]
    X = Xt[: len(names)].T
    term = RandomTerm(group, g, present, ones_column(rows.size), ["(Intercept)"])
    return ModelFrame(response=response, y=yv, X=X, x_names=names, terms=[term], rows=rows, n_input=len(df),
                      intercept=intercept, formula=formula, warnings=warnings), order
