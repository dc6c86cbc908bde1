"""R's ``model.matrix`` for one part of a formula, and the recipe that rebuilds a fit's design for new rows.

:func:`_design` gives a part's columns and their names with R's contrast rules (treatment contrasts, or indicators
of every level where R's marginality rule asks for them); its size is checked against the limits
(:data:`~glmmlab.engine.model.limits.LIMITS`) before a column is built. :class:`DesignRecipe` keeps what a fit
coded (levels, ``scale()`` centres, the random terms' levels and columns) for ``prediction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import Expr, Formula, ModelPart
from glmmlab.engine.model.limits import LIMITS, mib, shorten
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.services.modeling.variables import _Fac, _Num


@dataclass
class _UsedFactor:
    codes: np.ndarray  # on used rows, 0..L-1
    levels: list[str]


def _term_columns(t, values: dict[Expr, _Num | _Fac], factors: dict[Expr, _UsedFactor],
                  full: dict[Expr, bool]) -> tuple[int, list[tuple[str, int, int]]]:
    """The number of design columns of term ``t`` and, per factor in it, (label, levels, columns coded)."""
    cols = 1
    parts = []
    for v in t.variables:
        if isinstance(values[v], _Fac):
            nl = len(factors[v].levels)
            k = nl if full[v] else max(nl - 1, 0)
            parts.append((v.deparse(), nl, k))
            cols *= k
    return cols, parts


def _check_design_size(part: ModelPart, values: dict[Expr, _Num | _Fac], factors: dict[Expr, _UsedFactor],
                       full: list[dict[Expr, bool]], n: int, where: str, progress: ProgressFn) -> int:
    """Size the design before a column is built: its number of columns, or a refusal (naming the term, its
    factors' levels and the limit) when it has more columns than LIMITS.design_columns or more cells than
    LIMITS.design_cells."""
    report(progress, "Preparing data: sizing the design", 0.0)
    sizes = [_term_columns(t, values, factors, full[j]) for j, t in enumerate(part.terms)]
    p = int(part.intercept) + sum(c for c, _ in sizes)
    if p <= LIMITS.design_columns and n * p <= LIMITS.design_cells:
        return p
    j = max(range(len(sizes)), key=lambda k: sizes[k][0])
    cols, parts = sizes[j]
    label = part.terms[j].label
    if parts:
        what = " x ".join(f"{lab!r} has {nl:,} levels" if len(parts) == 1 else f"{lab!r} {nl:,} levels"
                          for lab, nl, _ in parts)
        culprit = (f"factor {what} ({cols:,} columns)" if len(parts) == 1 else
                   f"the interaction {shorten(label)!r} of factors with {what} ({cols:,} columns)")
    else:
        culprit = f"term {shorten(label)!r} ({cols:,} columns)"
    raise GlmmInputError(
        f"the design of {where} would have {p:,} columns x {n:,} rows ({n * p:,} cells, "
        f"{mib(8.0 * n * p)}): {culprit}. The limits are {LIMITS.design_columns:,} columns and "
        f"{LIMITS.design_cells:,} cells ({mib(8.0 * LIMITS.design_cells)}). Use fewer levels (merge rare "
        "ones), or make a factor with many levels a grouping factor: (1 | factor)"
    )


def _design(part: ModelPart, values: dict[Expr, _Num | _Fac], rows: np.ndarray, where: str,
            factors: dict[Expr, _UsedFactor], check: bool = True,
            assign: list[int] | None = None, progress: ProgressFn = None) -> tuple[np.ndarray, list[str]]:
    """R's model.matrix for one part: columns and names, with R's contrast rules. ``check=False`` (new rows for
    prediction, coded into the fit's levels) skips the checks that only make sense on the data of a fit.
    ``assign``, when given, receives R's ``assign`` attribute: per column the index of its term in ``part.terms``
    plus 1, 0 for the intercept."""
    n = len(rows)
    names: list[str] = []
    sets = [frozenset(t.variables) for t in part.terms]
    # R's TermCode: a factor is coded by contrasts when the term without it is empty or contained in a
    # preceding term; otherwise by indicators of all its levels.
    full: list[dict[Expr, bool]] = []
    for j, t in enumerate(part.terms):
        codes = {}
        for v in t.variables:
            margin = sets[j] - {v}
            codes[v] = not (not margin or any(margin <= sets[k] for k in range(j)))
        full.append(codes)
    if not part.intercept:  # the first factor of the first term holding one gets all its levels
        done = False
        for j, t in enumerate(part.terms):
            for v in t.variables:
                if isinstance(values[v], _Fac):
                    full[j][v] = True
                    done = True
                    break
            if done:
                break
    p = _check_design_size(part, values, factors, full, n, where, progress)
    X = np.empty((n, p))  # filled column by column: no list of columns and stacked copy side by side
    at = 0
    if part.intercept:
        X[:, 0] = 1.0
        names.append("(Intercept)")
        at = 1
        if assign is not None:
            assign.append(0)
    for j, t in enumerate(part.terms):
        report(progress, "Preparing data: the design", 0.0)  # a cancel is seen between terms
        block_cols: list[np.ndarray] = [np.ones(n)]
        block_names: list[str] = [""]
        for v in t.variables:
            val = values[v]
            label = v.deparse()
            if isinstance(val, _Fac):
                f = factors[v]
                if check and len(f.levels) < 2:
                    raise GlmmInputError(
                        f"factor {label!r} (in {where}) has only one level ({f.levels[0]!r}) on the rows used; "
                        "a factor needs two or more levels: drop it from the formula or check the data"
                    )
                lv = range(len(f.levels)) if full[j][v] else range(1, len(f.levels))
                vnames = [label + f.levels[k] for k in lv]
                if t.degree == 1:  # a factor's indicators, written in place (the values of (codes == k))
                    block = X[:, at:at + len(lv)]
                    block[:] = 0.0
                    hit = f.codes >= lv.start
                    block[np.flatnonzero(hit), f.codes[hit] - lv.start] = 1.0
                    block_cols, block_names = [], vnames
                    break
                vcols = [(f.codes == k).astype(float) for k in lv]
            else:
                vcols = [val.values[rows]]
                vnames = [label]
            # earlier variables vary fastest (R's column order)
            block_cols = [pc * vc for vc in vcols for pc in block_cols]
            block_names = [(pn + ":" + vn) if pn else vn for vn in vnames for pn in block_names]
        if check and t.degree > 1:
            for c, nm in zip(block_cols, block_names):
                if not c.any():
                    raise GlmmInputError(
                        f"the interaction column {nm!r} (term {t.label!r} in {where}) is zero on every row used: "
                        "no row has that combination. Drop the interaction, or merge levels of its factors"
                    )
        for k, c in enumerate(block_cols):
            X[:, at + k] = c
        del block_cols
        at += len(block_names)
        names.extend(block_names)
        if assign is not None:
            assign.extend([j + 1] * len(block_names))
    assert at == p  # the sizing counted every column
    return X, names


# ----------------------------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class RandomTermRecipe:
    """One random term as the fit coded it: its grouping factor's levels on the rows used and its Z columns."""

    component: str
    levels: tuple[str, ...]
    names: tuple[str, ...]
    correlated: bool


@dataclass(frozen=True)
class DesignRecipe:
    """Everything needed to rebuild a fit's design for new rows (``ModelFrame.recipe``).

    ``levels`` holds, per factor-valued variable of the fixed part and of the random terms' left-hand sides, its
    levels on the rows used (the first is the reference of treatment contrasts); ``scales`` the centre and scale
    of every ``scale()`` call from the fit's data; ``column_kinds`` whether each data column read was numeric or a
    factor; ``terms`` the random terms in the formula's order (their grouping levels and column names). The
    structure of the fixed and random parts and the offset expressions are the parsed ``formula``'s.
    """

    formula: Formula
    x_names: tuple[str, ...]
    levels: dict[Expr, tuple[str, ...]]
    scales: dict[Expr, tuple[float, float]]
    column_kinds: dict[str, str]
    terms: tuple[RandomTermRecipe, ...]
    offset_column: str | None = None
    # factors given a reference level (``reference_levels``): their levels in R's default order (``levels``
    # holds the coding order, the chosen reference first)
    default_levels: dict[Expr, tuple[str, ...]] = field(default_factory=dict)
    # R's "assign" of the fixed part: per column of ``x_names`` its term's index in ``formula.fixed.terms`` + 1
    # (0: the intercept)
    assign: tuple[int, ...] = ()
    # the numeric data columns of the fixed part and its offsets on the rows used: {column: (min, mean, max, sd)}
    # (the reference grid of estimated marginal means: covariates at their means, effect plots over their range)
    covariates: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    # an ordinal response's categories in order (the ordinal family; its y holds their numbers 1 .. K)
    response_levels: tuple[str, ...] = ()

    @property
    def factors(self) -> dict[str, dict]:
        """Per factor variable (by its label): ``{"levels": [...] in R's default order, "reference": the level
        coded as the reference (the first of ``levels`` unless one was chosen)}``."""
        return {v.deparse(): {"levels": list(self.default_levels.get(v, lv)), "reference": lv[0]}
                for v, lv in self.levels.items()}

    @property
    def offsets(self) -> list[str]:
        """The offset expressions: the formula's ``offset()`` terms, then the ``offset=`` column."""
        out = [o.deparse() for o in self.formula.fixed.offsets]
        return out + ([self.offset_column] if self.offset_column is not None else [])
