"""How the rows of one partition of a Dask DataFrame become a model frame, and the passes over the partitions.

:class:`FormulaRows` builds a formula's model frame of a partition (the in-memory :func:`build_model_frame` without
the whole data's checks), :class:`ColumnRows` that of the random-intercept form over numeric columns. Before any
pass, :func:`check_supported` refuses what needs the rows in one place (``scale()`` outside the fixed part, factors
in random terms, a text response, categorical columns with unknown categories); fixed factors and ``scale()`` get
the whole data's levels and moments from :mod:`~glmmlab.services.distributed.whole_data`. Pass 1
(:func:`summarise_partition`) gives the driver each partition's counts, Gram matrix, response moments, distinct
grouping values and separation columns; before the shuffle, :func:`code_outer_groups` numbers the rows used and
codes their outer group.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.advice import design_columns
from glmmlab.engine.model.design import no_complete_rows, too_few_groups
from glmmlab.engine.model.formula import BinOp, Call, Expr, Formula, Paren, Unary, parse_formula
from glmmlab.engine.model.terms import ModelFrame, RandomTerm
from glmmlab.services.distributed.whole_data import fixed_design, parse_rows_formula, scale_calls
from glmmlab.services.modeling import frames

# The workers import this module (the rows' model frames, the passes): what only the driver or the formula's
# model frames need is imported where it is used (the workers of a column-form fit then hold some 25 MB less of
# modules).

ROW = "__glmmlab_row__"
OUTER = "__glmmlab_outer__"
IN_MEMORY = "fit in memory (a pandas, polars or Arrow table)"


# -- what runs on Dask -------------------------------------------------------------------------------------
def _walk(e: Expr):
    yield e
    if isinstance(e, Call):
        for a in e.args:
            yield from _walk(a)
    elif isinstance(e, BinOp):
        yield from _walk(e.left)
        yield from _walk(e.right)
    elif isinstance(e, Unary):
        yield from _walk(e.operand)
    elif isinstance(e, Paren):
        yield from _walk(e.inner)


def check_supported(formula: Formula, meta: pd.DataFrame, family: str, weights, offset) -> ModelFrame:
    """Refuse what needs the whole data before any pass; return the model frame of the (empty) meta frame."""
    from glmmlab.services.modeling.modelframe import build_model_frame

    f = parse_formula(formula)
    exprs = ([f.response] if f.response is not None else []) + list(f.fixed.variables) + list(f.fixed.offsets)
    for r in f.random:
        exprs += list(r.lhs.variables) + list(r.group)
    fixed_scales = set(scale_calls(f))
    scaled = sorted({e.deparse() for x in exprs for e in _walk(x) if isinstance(e, Call) and e.fn == "scale"
                     and (e not in fixed_scales or len(e.args) != 1)})
    if scaled:
        raise GlmmInputError(
            f"{', '.join(scaled)} in the formula: on a Dask DataFrame scale() takes one argument and stands in the "
            f"fixed part only (its mean and SD are computed once on the cluster); centre and scale the column "
            f"beforehand, or {IN_MEMORY}")
    mf0 = build_model_frame(meta, parse_rows_formula(f) if fixed_scales else f, family=family, weights=weights,
                            offset=offset, whole=False)
    mf0 = replace(mf0, formula=f.text)
    factors = [v.deparse() for v in mf0.recipe.levels if any(v in r.lhs.variables for r in f.random)]
    if factors:
        raise GlmmInputError(
            f"on a Dask DataFrame the random terms' columns must be numeric; "
            f"{', '.join(repr(x) for x in factors)} {'is a factor' if len(factors) == 1 else 'are factors'} "
            f"in a random term. Recode as 0/1 columns, or {IN_MEMORY}")
    resp = f.response
    if resp is not None and not (isinstance(resp, Call) and resp.fn == "cbind"):
        names = resp.names()
        if any(mf0.recipe.column_kinds.get(n) == "factor" and not pd.api.types.is_bool_dtype(meta[n])
               for n in names):
            raise GlmmInputError(
                f"the response {f.response_label!r} is text or a factor; on a Dask DataFrame give it as 0/1 "
                f"numbers or booleans, or {IN_MEMORY}")
    columns = [(n, "grouping") for r in f.random for g in r.group for n in g.names()]
    columns += [(n, "factor") for v in mf0.recipe.levels for n in v.names()]
    for n, what in columns:
        dt = meta[n].dtype
        if isinstance(dt, pd.CategoricalDtype) and not _known(dt):
            raise GlmmInputError(
                f"the {what} column {n!r} is categorical with unknown categories; make them known "
                f"(ddf[{n!r}] = ddf[{n!r}].cat.as_known()) or use a text or number column")
    return mf0


def _known(dt) -> bool:
    from dask.dataframe.utils import has_known_categories

    return has_known_categories(pd.Series(dtype=dt))


# -- how one partition's rows become a model frame -----------------------------------------------------------
class FormulaRows:
    """A formula's model frame of one partition (:func:`build_model_frame` without the whole data's checks)."""

    def __init__(self, formula: Formula, family: str, weights: Optional[str], offset: Optional[str],
                 factors: Optional[list] = None):
        self.formula, self.family, self.weights, self.offset = formula, family, weights, offset  # parsed once
        f = formula
        # fixed factors and scale(): their levels and moments come from the whole data (whole_data.py); the rows
        # used from the formula with scale(x) read as I(x), the fixed design from the fit's recipe (``whole``)
        self.factors, self.scales = list(factors or []), scale_calls(f)
        self.rows_formula = parse_rows_formula(f) if self.scales else f
        self.factor_columns = sorted({n for v in self.factors for n in v.names()})
        self.whole: tuple | None = None
        self.columns = list(dict.fromkeys(f.columns() + [c for c in (weights, offset) if c is not None]))
        self.shuffled = self.columns  # what the shuffle carries besides ROW and OUTER
        self.group_columns: list[str] = []
        for r in f.random:
            for g in r.group:
                self.group_columns += [n for n in g.names() if n not in self.group_columns]

    @property
    def needs_whole(self) -> bool:
        return bool(self.factors or self.scales)

    def frame(self, part: pd.DataFrame) -> ModelFrame:
        from glmmlab.services.modeling.modelframe import build_model_frame

        mf = build_model_frame(part, self.rows_formula, family=self.family, weights=self.weights,
                               offset=self.offset, whole=False)
        if self.whole is not None:  # the fit's design of these rows: the whole data's levels and moments
            recipe, x_names = self.whole
            mf = replace(mf, X=fixed_design(recipe, x_names, part.iloc[mf.rows]), x_names=list(x_names))
        return mf

    def summary(self, part: pd.DataFrame) -> tuple[ModelFrame, dict]:
        """Pass 1's model frame and what the driver needs besides it: the distinct grouping values on the rows
        used."""
        mf = self.frame(part)
        return mf, {"distinct": part.iloc[mf.rows][self.group_columns].drop_duplicates()}

    def outer_codes(self, part: pd.DataFrame, outer: str, levels: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows used and their outer group's global code (``levels``: the outer factor's global levels)."""
        assert levels is not None
        mf = self.frame(part)
        term = next((t for t in mf.terms if t.component == outer), None)
        codes = np.zeros(mf.n, dtype=np.int64)
        if term is not None and mf.n:
            codes = levels.get_indexer(term.levels)[np.asarray(term.codes)]
        return np.asarray(mf.rows), codes

    def block_frame(self, part: pd.DataFrame, spec: dict) -> ModelFrame:
        """The model frame of a partition of shuffled rows (its columns, ROW and OUTER)."""
        return self.frame(part.drop(columns=[ROW, OUTER]))

    def levels(self, summaries: list[dict]) -> tuple[dict[str, tuple[np.ndarray, list[str]]], int]:
        """Per grouping factor, its codes on the distinct grouping values and its global levels (the order of
        :func:`build_model_frame`), and the number of distinct values."""
        from glmmlab.services.modeling.levels import grouping_levels

        distinct = pd.concat([s["distinct"] for s in summaries], ignore_index=True).drop_duplicates(
            ignore_index=True)
        coded = grouping_levels(distinct, self.formula)
        for r in self.formula.random:
            nl = len(coded[r.component][1])
            if nl < 2:
                raise GlmmInputError(
                    f"the grouping factor {r.component!r} of {r.written} has only {nl} level on the rows used; "
                    "grouping factors need two or more levels")
        return coded, len(distinct)

    def no_rows(self, meta: pd.DataFrame) -> None:
        from glmmlab.services.modeling.modelframe import build_model_frame

        build_model_frame(meta, self.rows_formula, family=self.family, weights=self.weights, offset=self.offset)


class ColumnRows:
    """The model frame of ``response ~ fixed + (1 | group)`` over numeric columns on one partition, as
    :func:`glmmlab.services.modeling.frames.column_frame` builds it in memory (rows with a missing, non-numeric or
    infinite value left out) but keeping every fixed column: which are constant is told on the whole data."""

    def __init__(self, response: str, group: str, fixed: list[str], intercept: bool):
        self.response, self.group, self.fixed, self.intercept = response, group, list(fixed), intercept
        self.columns = [response, group] + list(fixed)
        self.shuffled = [response] + list(fixed)  # OUTER is the group's code
        self.names = (["(Intercept)"] if intercept else []) + list(fixed)
        self.keys: pd.Index | None = None  # the whole data's group keys, once known (codes into them)

    def _complete(self, part: pd.DataFrame) -> tuple[list[tuple], pd.Series, np.ndarray, np.ndarray]:
        """The response's and the fixed columns' :func:`frames.numeric_values`, the group keys, their codes into
        the whole data's keys (in pass 1, before those are known: 0 where there is a group), and the complete
        rows."""
        values = [frames.numeric_values(part[c]) for c in [self.response] + self.fixed]
        keys = frames.group_keys(part[self.group])
        # the whole data's keys (a partition's own labels could be written otherwise: 1 against 1.0)
        codes = keys.notna().to_numpy().astype(np.int64) - 1 if self.keys is None else self.keys.get_indexer(keys)
        keep = codes >= 0
        for v in values:
            keep &= np.isfinite(v[0])
        return values, keys, codes, np.flatnonzero(keep)

    def _frame(self, part: pd.DataFrame, values: list[tuple], codes: np.ndarray, rows: np.ndarray,
               levels: list[str] | None, order: Literal["C", "F"] = "C") -> ModelFrame:
        """The frame of the complete ``rows`` with the group's ``levels`` (None: without the random term); its X in
        ``order`` ("F": column by column, contiguous writes, for what reads it by columns)."""
        whole = rows.size == len(part)  # every row complete: no gathers
        off = 1 if self.intercept else 0
        X = np.empty((rows.size, off + len(self.fixed)), order=order)
        if off:
            X[:, 0] = 1.0
        for j, v in enumerate(values[1:]):
            if whole:
                X[:, off + j] = v[0]
            else:
                np.take(v[0], rows, out=X[:, off + j])
        terms = [RandomTerm(self.group, codes if whole else codes[rows], levels, np.broadcast_to(1.0, (rows.size, 1)),
                            ["(Intercept)"])] if levels is not None else []
        return ModelFrame(response=self.response, y=values[0][0] if whole else values[0][0][rows], X=X,
                          x_names=list(self.names), terms=terms, rows=rows, n_input=len(part),
                          intercept=self.intercept)

    def summary(self, part: pd.DataFrame) -> tuple[ModelFrame, dict]:
        """Pass 1's model frame (without its random term) and what the driver needs besides it: the columns'
        numeric checks (values present, numbers among them, an example of a value that is not), the distinct
        group keys on the rows used, and each design column's range on them."""
        values, keys, codes, rows = self._complete(part)
        mf = self._frame(part, values, codes, rows, None, "F")  # read by columns: ranges, Gram, separation
        out: dict[str, Any] = {"numeric": [v[1:] for v in values],
                               "group_numeric": frames.is_numeric_group(part[self.group]),
                               "groups": pd.unique(keys.to_numpy()[rows]),
                               "x_range": [(float(c.min()), float(c.max())) for c in mf.X.T] if mf.n else None}
        return mf, out

    def outer_codes(self, part: pd.DataFrame, outer: str, levels: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows used and their group's global code (into the whole data's keys: no ``levels`` needed)."""
        _, _, codes, rows = self._complete(part)
        return rows, codes[rows]

    def block_frame(self, part: pd.DataFrame, spec: dict) -> ModelFrame:
        """The model frame of a partition of shuffled rows (complete rows of the response, the fixed columns, ROW
        and OUTER, the group's code into the whole data's levels ``spec["levels"]``)."""
        values = [frames.numeric_values(part[c]) for c in [self.response] + self.fixed]
        codes = part[OUTER].to_numpy()
        return self._frame(part, values, codes, np.arange(len(part)), spec["levels"][self.group])

    def refuse(self, summaries: list[dict]) -> None:
        """The in-memory refusal of a column none of whose present values is a number."""
        for j, name in enumerate([self.response] + self.fixed):
            checks = [s["numeric"][j] for s in summaries]
            if sum(c[0] for c in checks) and not sum(c[1] for c in checks):
                raise frames.not_numeric_error(name, "response" if j == 0 else "fixed-effect",
                                               next(c[2] for c in checks if c[2] is not None))

    def levels(self, summaries: list[dict]) -> tuple[dict[str, tuple[np.ndarray, list[str]]], int]:
        """The group's levels, in the in-memory order, from the distinct keys on the rows used (kept here: the
        later passes code the groups by them)."""
        numeric = any(s["group_numeric"] for s in summaries)
        uniques = pd.unique(np.concatenate([np.asarray(s["groups"], dtype=object) for s in summaries]))
        keys, labels = frames.sorted_levels(uniques.astype(float) if numeric else uniques, numeric)
        if len(labels) < 2:
            raise too_few_groups(self.group, len(labels))
        self.keys = pd.Index(keys)
        return {self.group: (np.arange(len(labels)), labels)}, len(labels)

    def constant(self, summaries: list[dict]) -> list[int]:
        """The fixed columns constant on the rows used (dropped, as in memory)."""
        off = 1 if self.intercept else 0
        out = []
        for j in range(off, len(self.names)):
            lo = min(s["x_range"][j][0] for s in summaries)
            hi = max(s["x_range"][j][1] for s in summaries)
            if lo == hi and (self.intercept or lo == 0.0):
                out.append(j)
        return out

    def no_rows(self, meta: pd.DataFrame) -> None:
        raise no_complete_rows(self.response, self.group)


# -- pass 1 ------------------------------------------------------------------------------------------------
def summarise_partition(part: pd.DataFrame, rows_of: FormulaRows | ColumnRows, binomial: bool) -> dict:
    try:
        mf, checks = rows_of.summary(part)
    except GlmmInputError as exc:  # the driver says which partition (row numbers and counts are within it)
        return {"error": str(exc)}
    out = {"n_input": len(part), "n": mf.n, "warnings": list(mf.warnings), "x_names": list(mf.x_names), "gram": None,
           "w_min": None, **checks}
    if mf.n:
        X = np.asarray(mf.X, dtype=float)
        out["gram"] = X.T @ X
        if mf.weights is not None:
            out["w_min"] = float(np.min(mf.weights))
        y = np.asarray(mf.y, dtype=float)
        mean = float(np.mean(y))
        out["y"] = {"n": mf.n, "mean": mean, "m2": float(np.sum((y - mean) ** 2)), "min": float(np.min(y)),
                    "max": float(np.max(y)), "sum_w": float(mf.n), "sum_wy": mean * mf.n, "sum_log_w": 0.0}
        if mf.weights is not None:
            w = np.asarray(mf.weights, dtype=float)
            out["y"].update(sum_w=float(np.sum(w)), sum_wy=float(np.sum(w * y)),
                            sum_log_w=float(np.sum(np.log(w[w > 0]))))
        if binomial:  # what the separation check needs of each column
            out["columns"] = design_columns(list(mf.x_names), X, y)
    return out


def code_outer_groups(part: pd.DataFrame, rows_of: FormulaRows | ColumnRows, outer: str, outer_levels: pd.Index | None,
           offsets: np.ndarray, partition_info: dict | None = None) -> pd.DataFrame:
    """The rows used, with their input row numbers and their outer group's global code."""
    number = partition_info["number"] if partition_info else 0
    rows, codes = rows_of.outer_codes(part, outer, outer_levels)
    out = part[rows_of.shuffled]  # a new frame: the columns added below do not reach the partition
    if rows.size < len(part):
        out = out.iloc[rows].copy()
    out[ROW] = offsets[number] + np.asarray(rows, dtype=np.int64)
    out[OUTER] = np.asarray(codes, dtype=np.int64)
    return out

