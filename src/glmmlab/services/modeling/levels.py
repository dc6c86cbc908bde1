"""Factor levels and grouping factors of a model frame, as lme4 codes them: unused levels dropped, R's level labels
(``TRUE``/``FALSE``, numbers as R prints them), ``relevel`` for chosen reference levels, and interaction groupings
``b:a`` (levels the combinations present, ``b`` varying slowest). Used by
:mod:`~glmmlab.services.modeling.modelframe` and, for the levels of data too large for memory, by the Dask path."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import Expr, Formula, Name, format_number, parse_formula
from glmmlab.engine.model.limits import echo, shorten
from glmmlab.services.modeling.design import _UsedFactor
from glmmlab.services.modeling.variables import _Data, _Fac, _show_levels

__all__ = ["grouping_levels", "level_label"]


def _compact(codes: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop unused levels: (new codes, indices of the kept levels)."""
    present = np.bincount(codes, minlength=n_levels) > 0
    keep = np.flatnonzero(present)
    if len(keep) == n_levels:
        return codes, keep
    remap = np.full(n_levels, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return remap[codes], keep


def level_label(level: object) -> str:
    """A level as the model frame labels it: text as it is, ``TRUE``/``FALSE`` for booleans, numbers as R prints
    them (``3``, ``0.5``)."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    if isinstance(level, (int, float, np.integer, np.floating)):
        return format_number(float(level))
    return str(level)


def _apply_references(reference_levels: Mapping[str, object], used: dict[Expr, _UsedFactor], data: _Data,
                      ftxt: str) -> dict[Expr, tuple[str, ...]]:
    """R's ``relevel`` on the factors named in ``reference_levels`` (in place in ``used``): the chosen level
    becomes code 0, the others keep their order. Returns the relevelled factors' levels in R's default order."""
    if not isinstance(reference_levels, Mapping):
        raise GlmmInputError("reference_levels must map factor columns to levels, e.g. {'f': 'b'}; got "
                             f"{type(reference_levels).__name__}")
    by_name: dict[str, Expr] = {}
    for v in used:
        by_name.setdefault(v.deparse(), v)
        if isinstance(v, Name):
            by_name.setdefault(v.name, v)
    default: dict[Expr, tuple[str, ...]] = {}
    for key, level in reference_levels.items():
        found = by_name.get(str(key))
        if found is None:
            kind = data.kinds.get(str(key))
            factors = ", ".join(repr(n) for n in dict.fromkeys(x.deparse() for x in used)) or "none"
            why = (f"{key!r} is a numeric column in {ftxt}; a reference level is for a factor (a text, categorical "
                   "or boolean column, or factor(x))" if kind == "numeric" else
                   f"{key!r} is not a factor among the fixed effects or random-effect terms of {ftxt}")
            raise GlmmInputError(f"reference_levels: {why}. The formula's factors: {factors}")
        v = found
        u = used[v]
        label = level_label(level)
        if label not in u.levels:
            raise GlmmInputError(
                f"reference_levels: {label!r} is not a level of {v.deparse()!r} on the rows used; its levels are "
                f"{_show_levels(u.levels)}"
            )
        k = u.levels.index(label)
        if k == 0:
            continue
        default[v] = tuple(u.levels)
        order = [k] + [i for i in range(len(u.levels)) if i != k]
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        used[v] = _UsedFactor(remap[u.codes], [u.levels[i] for i in order])
    return default


def grouping_levels(df: pd.DataFrame, formula: str | Formula) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per grouping factor of ``formula`` (by component, in the formula's order): its codes on every row of
    ``df`` and its levels, exactly as :func:`build_model_frame` codes them when these are the rows used. The
    levels and their order depend only on the set of values present, so ``df`` may hold just the distinct
    grouping values of data too large for memory (one row per combination)."""
    f = parse_formula(formula)
    formula = f.text
    data = _Data(df, formula)
    rows = np.arange(len(df))
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for r in f.random:
        vals = {}
        for g in r.group:
            gv = data.eval(g, f"the grouping of {shorten(r.written)} in formula {echo(formula)}", as_factor=True)
            assert isinstance(gv, _Fac)
            vals[g] = gv
        if r.component not in out:
            out[r.component] = _grouping(r.group, vals, rows)
    return out


def _grouping(group: tuple[Expr, ...], vals: dict[Expr, _Fac], rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of a grouping factor on the rows used; ``b:a`` sorts by b, then a."""
    if len(group) == 1:
        gf = vals[group[0]]
        codes, keep = _compact(gf.codes[rows], len(gf.levels))
        return codes, [gf.levels[k] for k in keep]
    key = np.zeros(len(rows), dtype=np.int64)
    for g in group:
        gv = vals[g]
        key = key * len(gv.levels) + gv.codes[rows]
    uniq, codes = np.unique(key, return_inverse=True)
    parts = []
    rest = uniq.copy()
    for g in reversed(group):
        L = len(vals[g].levels)
        parts.append(rest % L)
        rest = rest // L
    parts.reverse()
    level_arrays = [np.asarray(vals[g].levels, dtype=object)[p] for g, p in zip(group, parts)]
    labels = [":".join(x) for x in zip(*level_arrays)]
    return codes.astype(np.int64), labels
