"""Prediction for general mixed models: a fit's design rebuilt for new rows, and the predictor of a fitted model.

:func:`prediction_design` evaluates the formula on new data with the fit's :class:`DesignRecipe` (from
``build_model_frame(...).recipe``) and the same design code, so the columns come out exactly as the fit built them:

- factors are coded into the fit's levels by label, whatever levels the new rows hold and in whatever order; a
  level the fit never saw is an error for a factor of the fixed part (or of a random term's columns), and code -1
  for a grouping factor (a new group: lme4's ``allow.new.levels = TRUE``);
- ``scale()`` uses the fit's centre and scale, not the new rows';
- the response, weights and columns the model does not use are not needed;
- nothing is dropped: a missing value in a needed column is an error naming the column and counting the rows.

:func:`make_predictor` closes over the estimates and returns ``new_data -> (eta_fixed, random_part)``, the form
``FittedModel.predictor`` takes: ``eta_fixed`` is X beta plus offsets, ``random_part`` the sum over random terms of
z_i' b[level] (0 for a new level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import Expr, Name
from glmmlab.services.modeling import covstruct_terms
from glmmlab.services.modeling.design import DesignRecipe, _design, _UsedFactor
from glmmlab.services.modeling.variables import _Data, _Fac, _Num, _numeric_factor, _series_value, _show_levels

__all__ = ["NewRandomTerm", "PredictionDesign", "blups_by_component", "fixed_design", "make_predictor",
           "prediction_design", "to_pandas"]


class NewRandomTerm(NamedTuple):
    """One random term on the new rows."""

    component: str
    codes: np.ndarray  # int (m,): index into the fit's levels of the term; -1 for a level the fit never saw
    Z: np.ndarray  # float (m, q)
    names: list[str]


class PredictionDesign(NamedTuple):
    X: np.ndarray  # (m, p), columns in the order of the x_names asked for
    offset: np.ndarray  # (m,), zeros without offsets
    random: list[NewRandomTerm]


def to_pandas(data: Any) -> pd.DataFrame:
    """New data as a pandas DataFrame: pandas, polars or pyarrow tables, or a mapping of columns (a mapping of
    scalars is one row)."""
    if isinstance(data, pd.DataFrame):
        df = data
    elif hasattr(data, "to_pandas"):  # polars, pyarrow
        df = data.to_pandas()
    elif isinstance(data, Mapping):
        if data and all(np.ndim(v) == 0 for v in data.values()):
            df = pd.DataFrame({k: [v] for k, v in data.items()})
        else:
            try:
                df = pd.DataFrame(dict(data))
            except ValueError as exc:
                raise GlmmInputError(f"new data: the columns cannot form a table ({exc})") from exc
    else:
        raise GlmmInputError(
            f"new data must be a table (pandas, polars, pyarrow) or a mapping of columns; got {type(data).__name__}"
        )
    if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
        df = df.reset_index(drop=True)
    return df


class _NewData(_Data):
    """The fit's evaluation rules on new rows: the fit's scale() parameters; columns the fit read as numbers are
    converted to numbers (text such as "3.5" is accepted) unless the column only groups."""

    def __init__(self, df: pd.DataFrame, recipe: DesignRecipe, group_only: set[str]):
        super().__init__(df, recipe.formula.text)
        self.fixed_scales = recipe.scales
        self.recipe = recipe
        self.group_only = group_only

    def column(self, name: str, used_in: str) -> pd.Series:
        if name not in self.names:
            cols = list(self.names)
            shown = ", ".join(cols[:20]) + (", ..." if len(cols) > 20 else "")
            raise GlmmInputError(
                f"column {name!r} (in {used_in}) is not in the new data; the model needs it to predict. "
                f"Columns: {shown or '(none)'}"
            )
        return super().column(name, used_in)

    def _eval(self, e: Expr, used_in: str) -> _Num | _Fac:
        if isinstance(e, Name) and self.recipe.column_kinds.get(e.name) == "numeric" \
                and e.name not in self.group_only:
            s = self.column(e.name, used_in)
            out = _series_value(s, e.name)
            if isinstance(out, _Fac):
                if out.levels == ["FALSE", "TRUE"]:  # logical: 0/1, as R's arithmetic does
                    vals = out.codes.astype(float)
                    vals[out.codes < 0] = np.nan
                    return _Num(vals, out.codes < 0)
                out = _to_numbers(s, e.name, used_in)
            return out
        return super()._eval(e, used_in)


def _to_numbers(s: pd.Series, name: str, used_in: str) -> _Num:
    vals = np.array(pd.to_numeric(s.astype(object), errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    bad = np.isnan(vals) & ~np.asarray(s.isna())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GlmmInputError(
            f"column {name!r} (in {used_in}) was numeric in the fit but the new data has values that are not "
            f"numbers: {s.iloc[i]!r} on row {i + 1}"
            + (f" and {int(bad.sum()) - 1} more row(s)" if bad.sum() > 1 else "")
        )
    miss = ~np.isfinite(vals)
    vals[miss] = np.nan
    return _Num(vals, miss)


def _no_missing(data: _NewData, e: Expr, val: _Num | _Fac, used_in: str) -> None:
    miss = val.missing
    if not miss.any():
        return
    k, m = int(miss.sum()), data.n
    first = int(np.flatnonzero(miss)[0])
    cols = [c for c in e.names() if data.eval(Name(c), used_in).missing.any()] if not isinstance(e, Name) else [e.name]
    if cols:
        what = f"column {cols[0]!r}" if len(cols) == 1 else "columns " + ", ".join(repr(c) for c in cols)
        where = "" if isinstance(e, Name) else f" (used in {e.deparse()})"
        raise GlmmInputError(
            f"{what}{where} has missing values on {k} of {m} new row(s), first on row {first + 1}; "
            "prediction does not drop rows: fill those values or remove the rows"
        )
    raise GlmmInputError(  # pragma: no cover - transforms reject non-finite results themselves
        f"{e.deparse()} (in {used_in}) is missing on {k} of {m} new row(s), first on row {first + 1}"
    )


def _recode(val: _Fac, levels: tuple[str, ...]) -> np.ndarray:
    """Codes of ``val`` into ``levels`` by label; -1 where the label is not one of them."""
    pos = {lab: i for i, lab in enumerate(levels)}
    perm = np.array([pos.get(lab, -1) for lab in val.levels] + [-1], dtype=np.int64)
    return perm[val.codes]


def prediction_design(recipe: DesignRecipe, new_df: Any, x_names: list[str] | None = None,
                      fixed_only: bool = False) -> PredictionDesign:
    """The fit's design on new rows: ``(X_new, offset_new, random)``.

    ``x_names`` are the fixed-effect columns wanted, in order (default: all the fit's columns; leave out columns
    the fit dropped as rank-deficient). ``random`` holds one :class:`NewRandomTerm` per random term in the
    formula's order: its codes into the fit's levels (-1 for a new level) and its Z columns. Raises
    :class:`GlmmInputError` naming the column for a missing or unconvertible column, missing values, or a
    level of a fixed-effect factor the fit never saw. ``fixed_only``: the fixed part alone (``random`` empty; the
    grouping columns and the random terms' own columns are not needed).
    """
    if not isinstance(recipe, DesignRecipe):
        raise TypeError(f"recipe must be a DesignRecipe (ModelFrame.recipe); got {type(recipe).__name__}")
    df = to_pandas(new_df)
    f = recipe.formula
    ftxt = f"formula {f.text!r}"
    group_cols = {c for r in f.random for g in r.group for c in g.names()}
    other_cols: set[str] = set()
    for e in [*f.fixed.variables, *f.fixed.offsets, *(v for r in f.random for v in r.lhs.variables)]:
        other_cols.update(e.names())
    data = _NewData(df, recipe, group_cols - other_cols)
    m = data.n
    rows = np.arange(m)

    values: dict[Expr, _Num | _Fac] = {}
    factors: dict[Expr, _UsedFactor] = {}
    variables = [(v, f"term of {ftxt}") for v in f.fixed.variables]
    if not fixed_only:
        variables += [(v, f"random term {r.written} of {ftxt}") for r in f.random for v in r.lhs.variables]
    for v, used_in in variables:
        if v in values:
            continue
        if v in recipe.levels:
            levels = recipe.levels[v]
            val = data.eval(v, used_in, as_factor=True)
            assert isinstance(val, _Fac)
            _no_missing(data, v, val, used_in)
            codes = _recode(val, levels)
            if (codes < 0).any():
                new = [val.levels[k] for k in np.unique(val.codes[codes < 0])]
                k = int((codes < 0).sum())
                cols = v.names()
                col = f"column {cols[0]!r}" if isinstance(v, Name) else \
                    f"{v.deparse()!r} (column {', '.join(repr(c) for c in cols)})"
                raise GlmmInputError(
                    f"{col} (in {used_in}) has level(s) {_show_levels(new)} on {k} new row(s) that the fit "
                    f"never saw; its levels are {_show_levels(list(levels))}. A fixed effect cannot be predicted "
                    "for a new level: use one of the fit's levels or refit with it"
                )
            values[v] = _Fac(codes, list(levels))
            factors[v] = _UsedFactor(codes, list(levels))
        else:
            val = data.numeric(v, used_in)
            _no_missing(data, v, val, used_in)
            values[v] = val

    X_all, names_all = _design(f.fixed, values, rows, f"the fixed part of {ftxt}", factors, check=False)
    wanted = list(recipe.x_names) if x_names is None else list(x_names)
    index = {nm: j for j, nm in enumerate(names_all)}
    unknown = [nm for nm in wanted if nm not in index]
    if unknown:
        raise ValueError(f"x_names {unknown} are not columns of {ftxt}; its columns are {names_all}")
    X = np.ascontiguousarray(X_all[:, [index[nm] for nm in wanted]])

    offset = np.zeros(m)
    for o in f.fixed.offsets:
        used_in = f"offset({o.deparse()}) of {ftxt}"
        val = data.numeric(o, used_in)
        _no_missing(data, o, val, used_in)
        offset += val.values
    if recipe.offset_column is not None:
        o = Name(recipe.offset_column)
        val = data.numeric(o, "offset=", what=recipe.offset_column)
        _no_missing(data, o, val, "offset=")
        offset += val.values

    random: list[NewRandomTerm] = []
    for r, tr in zip([] if fixed_only else f.random, recipe.terms):
        used_in = f"the grouping of {r.written} in {ftxt}"
        gvals = []
        for g in r.group:
            gv = data.eval(g, used_in, as_factor=True)
            if isinstance(gv, _Num):  # pragma: no cover - eval(as_factor=True) gives factors
                gv = _numeric_factor(gv)
            _no_missing(data, g, gv, used_in)
            gvals.append(gv)
        if len(gvals) == 1:
            codes = _recode(gvals[0], tr.levels)
        else:  # b:a: look up the label of each combination present
            key = np.zeros(m, dtype=np.int64)
            for gv in gvals:
                key = key * len(gv.levels) + gv.codes
            kcodes, kuniq = pd.factorize(key)
            pos = {lab: i for i, lab in enumerate(tr.levels)}
            combo = np.empty(len(kuniq), dtype=np.int64)
            for j, k in enumerate(int(x) for x in np.asarray(kuniq)):
                parts = []
                for gv in reversed(gvals):
                    parts.append(gv.levels[k % len(gv.levels)])
                    k //= len(gv.levels)
                combo[j] = pos.get(":".join(reversed(parts)), -1)
            codes = combo[kcodes]
        if r.kind == "ou":  # an indicator per fitted time (services/modeling/covstruct_terms)
            Z, z_names = covstruct_terms.ou_new_columns(r, values, rows, list(tr.names), ftxt)
        else:
            Z, z_names = _design(r.lhs, values, rows, f"random term {r.written} of {ftxt}", factors, check=False)
        if z_names != list(tr.names):  # pragma: no cover - same formula, same levels
            raise ValueError(f"random term {r.written}: columns {z_names} differ from the fit's {list(tr.names)}")
        random.append(NewRandomTerm(tr.component, codes, Z, z_names))
    return PredictionDesign(X, offset, random)


def make_predictor(recipe: DesignRecipe, x_names: list[str], beta: Any,
                   blups: Mapping[str, Mapping[str, Any]]) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
    """A predictor for ``FittedModel.predictor``: ``new_data -> (eta_fixed, random_part)``.

    ``x_names`` and ``beta`` are the fitted fixed effects (rank-deficient columns left out); ``blups`` maps each
    grouping factor (component, as lme4 names it) to ``{"levels": [...], "names": [...], "values": (levels x q)}``.
    ``eta_fixed`` is X beta plus the offsets; ``random_part`` sums z' b[level] over the random terms, with 0 for a
    level the fit never saw. ``new_data`` may be pandas, polars, pyarrow or a mapping of columns.
    """
    x_names = list(x_names)
    beta = np.asarray(beta, dtype=float).reshape(-1)
    if beta.shape[0] != len(x_names):
        raise ValueError(f"beta has {beta.shape[0]} values for {len(x_names)} names")
    components = {t.component for t in recipe.terms}
    extra = [c for c in blups if c not in components]
    if extra:
        raise ValueError(f"blups for {extra}, which are not grouping factors of the model ({sorted(components)})")
    # per term: (fit's levels + 1) x q coefficients, the last row 0 for new levels
    coefs: list[np.ndarray] = []
    used_cols: dict[str, int] = {}
    for t in recipe.terms:
        if t.component not in blups:
            raise ValueError(f"blups have no entry for the grouping factor {t.component!r}")
        b = blups[t.component]
        b_levels = [str(x) for x in b["levels"]]
        b_names = [str(x) for x in b["names"]]
        vals = np.asarray(b["values"], dtype=float).reshape(len(b_levels), len(b_names))
        concat = [n for u in recipe.terms if u.component == t.component for n in u.names]
        start = used_cols.get(t.component, 0)
        used_cols[t.component] = start + len(t.names)
        if b_names == concat:  # the merged block's columns: take this term's by position
            cols = list(range(start, start + len(t.names)))
        else:
            cols = []
            for nm in t.names:
                if b_names.count(nm) != 1:
                    raise ValueError(f"blups of {t.component!r} have columns {b_names}; need exactly one {nm!r}")
                cols.append(b_names.index(nm))
        pos = {lab: i for i, lab in enumerate(b_levels)}
        missing = [lab for lab in t.levels if lab not in pos]
        if missing:
            raise ValueError(f"blups of {t.component!r} lack the fit's level(s) {_show_levels(missing)}")
        rows = np.array([pos[lab] for lab in t.levels], dtype=np.int64)
        coefs.append(np.vstack([vals[np.ix_(rows, np.asarray(cols, dtype=np.intp))], np.zeros((1, len(cols)))]))

    def predictor(new_data: Any) -> tuple[np.ndarray, np.ndarray]:
        d = prediction_design(recipe, new_data, x_names)
        eta_fixed = d.X @ beta + d.offset
        random_part = np.zeros(d.X.shape[0])
        for term, coef in zip(d.random, coefs):
            random_part += np.einsum("ij,ij->i", term.Z, coef[term.codes])
        return eta_fixed, random_part

    return predictor


def fixed_design(result: Any, new_data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(X, offset) of the fixed part of ``result``'s model on new rows (``GlmmResult.predict`` with an interval)."""
    d = prediction_design(result.model_frame().recipe, new_data, list(result.names), fixed_only=True)
    return d.X, d.offset


def blups_by_component(result: Any) -> dict:
    """The conditional modes per grouping factor: {component: {"levels", "names", "values" (levels x q)}}, a mode
    that is not a number counted as 0."""
    return {m.component: {"levels": list(m.levels), "names": list(m.terms),
                          "values": np.nan_to_num(np.asarray(m.values, dtype=float), nan=0.0, posinf=0.0,
                                                  neginf=0.0)}
            for m in result.modes}


class OnFirstCall:
    """The predictor of a fit, made by ``build()`` (:func:`make_predictor`'s arguments taken from the record) when
    first called: a fit whose caller never predicts for new rows does not pay for it."""

    def __init__(self, build: Callable[[], Callable[[Any], tuple[np.ndarray, np.ndarray]]]):
        self._build: Callable[[], Callable[[Any], tuple[np.ndarray, np.ndarray]]] | None = build
        self._predictor: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None

    def __call__(self, new_data: Any) -> tuple[np.ndarray, np.ndarray]:
        if self._predictor is None:
            assert self._build is not None
            self._predictor, self._build = self._build(), None
        return self._predictor(new_data)
