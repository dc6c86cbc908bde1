"""Fixed-effect factors and ``scale()`` on a Dask DataFrame: what they need of the whole data, computed once on
the cluster before the fit's passes.

In memory a factor is coded by its levels on the rows used (in the order the model frame gives them: sorted text,
numbers in order, a categorical's categories) and ``scale(x)`` centres and scales by the mean and SD of x over
the rows where x is present. A partition alone has neither, so one pass (:func:`summarise_levels`) collects each
partition's distinct values of the factors' columns on its rows used and the moments (count, mean, sum of squared
deviations) of each ``scale()`` argument; the driver (:func:`whole_data`) takes the levels in the in-memory order
from the distinct values, pools the moments, and builds the fit's :class:`DesignRecipe` with them. Every
partition's fixed design is then that recipe's design of its rows used (:func:`prediction_design`: the in-memory
coding and column names), and the rows used come from the formula with each ``scale(x)`` read as ``I(x)`` (same
rows, no local moments that a partition of one row could not give).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import Call, Expr, Formula, _tokenize, parse_formula
from glmmlab.services.modeling.design import DesignRecipe, _design, _UsedFactor
from glmmlab.services.modeling.variables import _Data, _Fac, _Num


def scale_calls(f: Formula) -> list[Call]:
    """The ``scale()`` calls of the fixed part's variables (in order, once each)."""
    out: list[Call] = []

    def walk(e: Expr) -> None:
        if isinstance(e, Call):
            if e.fn == "scale" and e not in out:
                out.append(e)
            for a in e.args:
                walk(a)
        for attr in ("left", "right", "operand", "inner"):
            sub = getattr(e, attr, None)
            if isinstance(sub, Expr):
                walk(sub)

    for v in f.fixed.variables:
        walk(v)
    return out


def without_scale(text: str) -> str:
    """The formula ``text`` with every ``scale(...)`` call read as ``I(...)``: the same rows used, the same checks
    of its argument, no moments."""
    toks = _tokenize(text)
    out, last = [], 0
    k = 0
    while k < len(toks):
        t = toks[k]
        if t.kind == "name" and t.text == "scale" and k + 1 < len(toks) and toks[k + 1].text == "(":
            out.append(text[last:t.pos] + "I")
            last = toks[k + 1].pos
        k += 1
    out.append(text[last:])
    return "".join(out)


def summarise_levels(part: pd.DataFrame, rows_formula: Formula, formula: Formula, family: str, weights, offset,
                     factor_columns: list[str], scales: list[Call]) -> dict:
    """One partition's distinct values of the factors' columns on its rows used, and the moments of each
    ``scale()`` argument where it is present."""
    from glmmlab.services.modeling.modelframe import build_model_frame

    try:
        mf = build_model_frame(part, rows_formula, family=family, weights=weights, offset=offset, whole=False)
        data = _Data(part, formula.text)
        moments = []
        for e in scales:
            v = data.numeric(e.args[0], f"{e.deparse()} of formula {formula.text!r}")
            x = v.values[~v.missing]
            mean = float(np.mean(x)) if x.size else 0.0
            moments.append({"n": int(x.size), "mean": mean, "m2": float(np.sum((x - mean) ** 2))})
    except GlmmInputError as exc:
        return {"error": str(exc)}
    return {"distinct": part.iloc[mf.rows][factor_columns].drop_duplicates(), "moments": moments}


def _pooled(parts: list[dict]) -> tuple[int, float, float]:
    """(n, mean, sum of squared deviations) of values known by blocks' (Chan et al.)."""
    n, mean, m2 = 0, 0.0, 0.0
    for p in parts:
        if not p["n"]:
            continue
        delta, total = p["mean"] - mean, n + p["n"]
        mean += delta * p["n"] / total
        m2 += p["m2"] + delta * delta * n * p["n"] / total
        n = total
    return n, mean, m2


def whole_data(recipe0: DesignRecipe, formula: Formula, factors: list[Expr], scales: list[Call],
               summaries: list[dict]) -> tuple[DesignRecipe, list[str]]:
    """The fit's recipe (the factors' levels on the rows used in the in-memory order, ``scale()``'s centres and
    scales) and its fixed design's column names, from the partitions' :func:`summarise_levels`."""
    where = f"the fixed part of formula {formula.text!r}"
    levels: dict[Expr, tuple[str, ...]] = {}
    if factors:
        distinct = pd.concat([s["distinct"] for s in summaries], ignore_index=True).drop_duplicates(
            ignore_index=True)
        data = _Data(distinct, formula.text)
        for v in factors:
            val = data.eval(v, where, as_factor=True)
            assert isinstance(val, _Fac)
            present = np.unique(val.codes[val.codes >= 0])  # sorted codes: the levels' own order kept
            levels[v] = tuple(val.levels[k] for k in present)
            if len(levels[v]) < 2:
                raise GlmmInputError(
                    f"factor {v.deparse()!r} (in {where}) has only one level "
                    f"({levels[v][0] if levels[v] else 'none'!r}) on the rows used; a factor needs two or more "
                    "levels: drop it from the formula or check the data")
    fixed_scales: dict[Expr, tuple[float, float]] = {}
    for k, e in enumerate(scales):
        n, mean, m2 = _pooled([s["moments"][k] for s in summaries])
        sd = float(np.sqrt(m2 / (n - 1))) if n > 1 else np.nan
        if not np.isfinite(sd) or sd == 0:
            raise GlmmInputError(f"{e.deparse()} (in term of formula {formula.text!r}) cannot scale "
                                 f"{e.args[0].deparse()!r}: its standard deviation is zero or it has fewer than "
                                 "two values")
        fixed_scales[e] = (mean, sd)
    values: dict[Expr, _Num | _Fac] = {}
    used: dict[Expr, _UsedFactor] = {}
    for v in formula.fixed.variables:
        if v in levels:
            values[v] = _Fac(np.zeros(0, dtype=np.int64), list(levels[v]))
            used[v] = _UsedFactor(np.zeros(0, dtype=np.int64), list(levels[v]))
        else:
            values[v] = _Num(np.zeros(0), np.zeros(0, dtype=bool))
    x_names = _design(formula.fixed, values, np.arange(0), where, used, check=False)[1]
    recipe = replace(recipe0, formula=formula, x_names=tuple(x_names), levels={**recipe0.levels, **levels},
                     scales=fixed_scales)
    return recipe, list(x_names)


def parse_rows_formula(formula: Formula) -> Formula:
    return parse_formula(without_scale(formula.text))


def fixed_design(recipe: DesignRecipe, x_names: list[str], part: pd.DataFrame) -> Any:
    """The fixed design of rows (the rows used of a partition) by the fit's recipe."""
    from glmmlab.services.modeling.prediction import prediction_design

    return prediction_design(recipe, part, x_names=x_names, fixed_only=True).X
