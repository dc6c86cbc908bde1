"""Omnibus tests per model term, estimated marginal means, pairwise comparisons and effect-plot data of a fit.

**Omnibus tests** (:func:`anova_terms`, ``result.anova()``): one row per term of the fixed part (``period`` with its
3 df, ``x:f``), the test that all of the term's coefficients are 0 given every other coefficient of the model, with
R's default treatment contrasts: "type III" as ``car::Anova(type = 3)`` computes it. GLMMs get the Wald chi-square
b_T' V_T^-1 b_T; Gaussian-identity fits the F test of the same hypothesis with Satterthwaite's denominator df
(lmerTest's ``contestMD``). With treatment contrasts a main effect that is part of an interaction is its effect at
the reference level of the factors it interacts with (at 0 of a covariate). lmerTest's ``anova()`` builds its own
type III contrasts instead; they are the same tests for every term except a covariate's main effect in an
interaction with a factor, which lmerTest tests averaged over the factor's levels (sleepstudy, the interaction terms,
factor main effects and terms outside interactions agree: tests/inference/test_terms.py).

**Estimated marginal means** (:func:`emmeans`), as R's ``emmeans`` computes them: the reference grid holds every
factor's levels and every covariate at its mean (over the rows used); a mean of ``term`` (and ``by``) is the
prediction averaged with equal weights over the levels of the other factors. Covariates as the ``term`` give a grid
of ``n_grid`` (20) equally spaced values over their range on the rows used (emmeans' ``at``); a covariate as ``by``
takes its mean and the mean -/+ one SD. Intervals are computed on the link scale and mapped through the inverse link
(``type="response"``; the SE there by the delta method). Degrees of freedom: Satterthwaite's for Gaussian-identity
fits (emmeans' ``lmer.df = "satterthwaite"``), infinite (asymptotic z) for the other families.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.inference.wald import contest_f, wald_chisq
from glmmlab.engine.model.formula import Call, Name

N_GRID = 20
ADJUST = ("tukey", "holm", "bonferroni", "none")
TYPE3_NOTE = ("Type III tests with treatment contrasts (R's default): each term's coefficients = 0 given all other "
              "terms, as car::Anova(type = 3); a main effect inside an interaction is its effect at the reference "
              "level (or at 0) of the variables it interacts with")


def _is_lmm(result: Any) -> bool:
    return result.family == "gaussian" and result.link == "identity"


def fixed_terms(result: Any, intercept: bool = False) -> list[tuple[str, list[int]]]:
    """(term label, indices into ``result.names``) per term of the fixed part, in the formula's order (R's
    ``assign``). Without the model's data (a Dask fit, a model loaded from a project) each coefficient is a term."""
    names = list(result.names)
    idx = {nm: i for i, nm in enumerate(names)}
    frame = result.model_frame()
    recipe = getattr(frame, "recipe", None) if frame is not None else None
    out: list[tuple[str, list[int]]] = []
    if intercept and "(Intercept)" in idx:
        out.append(("(Intercept)", [idx["(Intercept)"]]))
    if recipe is not None and recipe.assign:
        for j, label in enumerate(recipe.formula.fixed.labels):
            cols = [idx[nm] for nm, a in zip(recipe.x_names, recipe.assign) if a == j + 1 and nm in idx]
            if cols:
                out.append((label, cols))
        return out
    return out + [(nm, [i]) for nm, i in idx.items() if nm != "(Intercept)"]


def anova_terms(result: Any, intercept: bool = False) -> pd.DataFrame:
    """The omnibus test of each fixed-effect term (module docstring): a DataFrame indexed by term with columns
    ``Df``, ``Chisq``, ``p`` (GLMMs: Wald chi-square) or ``Df``, ``DenDF``, ``F``, ``p`` (Gaussian identity: F with
    Satterthwaite's df). ``attrs``: ``test`` ("Chisq" or "F"), ``type`` ("III"), ``contrasts`` ("treatment"),
    ``note``. ``intercept=True`` adds the intercept's row (car's table has it; lmerTest's has not)."""
    if not isinstance(intercept, bool):
        raise GlmmInputError(f"intercept must be True or False; got {intercept!r}")
    terms = fixed_terms(result, intercept)
    beta = np.asarray(result.beta, dtype=float)
    V = np.asarray(result.vcov_matrix, dtype=float)
    p = len(beta)
    rows: dict[str, list] = {}
    notes = [TYPE3_NOTE]
    lmm = _is_lmm(result)
    pieces = result.satterthwaite_pieces() if lmm else None
    for label, cols in terms:
        L = np.zeros((len(cols), p))
        L[np.arange(len(cols)), cols] = 1.0
        if lmm:
            if pieces is not None:
                F, q, ddf, pv = contest_f(beta, pieces, L)
            else:
                chi, q, _ = wald_chisq(beta, V, L)
                F, ddf, pv = chi / q if q else float("nan"), float("nan"), float("nan")
            rows[label] = [q, ddf, F, pv]
        else:
            chi, q, pv = wald_chisq(beta, V, L)
            rows[label] = [q, chi, pv]
    if lmm:
        cols_out = ["Df", "DenDF", "F", "p"]
        notes.append("F tests with Satterthwaite's denominator degrees of freedom (lmerTest's)" if pieces is not None
                     else "no denominator df: this fit keeps no model to compute Satterthwaite's df (a Dask fit or a "
                          "model loaded from a project); F = Wald chi-square / Df")
    else:
        cols_out = ["Df", "Chisq", "p"]
        notes.append("Wald chi-square tests from the covariance of the fixed effects")
    table = pd.DataFrame.from_dict(rows, orient="index", columns=cols_out) if rows else \
        pd.DataFrame(columns=cols_out)
    table.index.name = "term"
    table["Df"] = table["Df"].astype(int)
    table.attrs.update({"test": "F" if lmm else "Chisq", "type": "III", "contrasts": "treatment",
                        "note": "; ".join(notes)})
    return table


# -- the reference grid ---------------------------------------------------------------------------------------
def _recipe(result: Any, what: str) -> Any:
    frame = result.model_frame()
    recipe = getattr(frame, "recipe", None) if frame is not None else None
    if recipe is None:
        raise GlmmInputError(
            f"{what} need the model's data (its factor levels and covariate means): this fit was not made in memory "
            "(a Dask fit or a model loaded from a project keeps no data); fit it in memory with glmmlab.glmm")
    return recipe


class _Grid:
    """The variables of a fit's fixed part as emmeans' reference grid sees them: factors with their levels (in the
    fit's coding order) and numeric columns with (min, mean, max, sd)."""

    def __init__(self, recipe: Any):
        self.recipe = recipe
        self.factors: dict[str, tuple[str, list[str]]] = {}  # label -> (data column, levels)
        for v in recipe.formula.fixed.variables:
            if v not in recipe.levels:
                continue
            col = v.name if isinstance(v, Name) else (
                v.args[0].name if isinstance(v, Call) and len(v.args) == 1 and isinstance(v.args[0], Name) else None)
            if col is not None:
                self.factors[v.deparse()] = (col, list(recipe.levels[v]))
        self.covariates = dict(recipe.covariates)

    def variables(self) -> list[str]:
        return list(self.factors) + [c for c in self.covariates if c not in {c2 for c2, _ in self.factors.values()}]

    def check(self, name: Any, argument: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise GlmmInputError(f"{argument} must name a variable of the fixed part; got {name!r}")
        name = name.strip()
        as_factor = [label for label, (col, _) in self.factors.items() if col == name]
        if name not in self.factors and as_factor:  # the column of factor(period): the factor it makes
            return as_factor[0]
        if name not in self.factors and name not in self.covariates:
            known = ", ".join(repr(v) for v in self.variables()) or "none"
            raise GlmmInputError(f"{argument} {name!r} is not a factor or covariate of the model's fixed part; its "
                                 f"variables are {known}")
        return name


def _values(grid: _Grid, name: str, role: str, at: Sequence[float] | None, n_grid: int) -> list:
    if name in grid.factors:
        return list(grid.factors[name][1])
    lo, mean, hi, sd = grid.covariates[name]
    if role == "term":
        if at is not None:
            return [float(a) for a in at]
        return list(np.linspace(lo, hi, n_grid)) if hi > lo else [mean]
    if role == "by":
        return [mean - sd, mean, mean + sd] if sd > 0 else [mean]
    return [mean]


def _cells(result: Any, term: Any, by: Any, at: Sequence[float] | None, n_grid: int, what: str):
    """The reference grid's design: (keys: the term's and by's variables, cells: their value tuples, L: one row of
    averaged X per cell, offset per cell)."""
    from glmmlab.services.modeling.prediction import prediction_design

    recipe = _recipe(result, what)
    grid = _Grid(recipe)
    term_vars = [grid.check(t, "term") for t in (term.split(":") if isinstance(term, str) else [term])]
    by_vars = [] if by is None else [grid.check(b, "by") for b in (by if isinstance(by, (list, tuple)) else [by])]
    if set(term_vars) & set(by_vars):
        raise GlmmInputError(f"by {by!r} repeats a variable of term {term!r}: choose another variable for by")
    if at is not None and not (len(term_vars) == 1 and term_vars[0] in grid.covariates):
        raise GlmmInputError("at gives the grid of a covariate term; the term here is not one covariate")
    if not isinstance(n_grid, int) or isinstance(n_grid, bool) or not 2 <= n_grid <= 1000:
        raise GlmmInputError(f"n_grid must be a whole number from 2 to 1000; got {n_grid!r}")
    keys = term_vars + by_vars
    others = [v for v in grid.variables() if v not in keys]
    key_values = [_values(grid, k, "term" if k in term_vars else "by", at, n_grid) for k in keys]
    other_values = [_values(grid, o, "other", None, n_grid) for o in others]
    combos = list(itertools.product(*key_values))
    rest = list(itertools.product(*other_values)) or [()]
    names = keys + others
    rows = [c + r for c in combos for r in rest]
    data: dict[str, list] = {}
    for j, nm in enumerate(names):
        col = grid.factors[nm][0] if nm in grid.factors else nm
        data[col] = [row[j] for row in rows]
    for c, (_lo, mean, _hi, _sd) in grid.covariates.items():  # offsets' columns and covariates not yet set
        data.setdefault(c, [mean] * len(rows))
    d = prediction_design(recipe, pd.DataFrame(data), list(result.names), fixed_only=True)
    m = len(rest)
    L = d.X.reshape(len(combos), m, -1).mean(axis=1)
    off = d.offset.reshape(len(combos), m).mean(axis=1)
    return keys, term_vars, by_vars, combos, L, off


def _dfs(result: Any, L: np.ndarray) -> np.ndarray:
    pieces = result.satterthwaite_pieces() if _is_lmm(result) else None
    return pieces.df(L) if pieces is not None else np.full(L.shape[0], np.inf)


def _quantile(level: float, df: np.ndarray) -> np.ndarray:
    a = 0.5 + level / 2.0
    return np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), a), special.ndtri(a))


def _level(result: Any, level: Any) -> float:
    from glmmlab.engine.model.options import OPTIONS

    if level is None:
        return float(result.conf_level)
    try:
        return float(OPTIONS["conf_level"].check(level))
    except GlmmInputError as exc:
        raise GlmmInputError(str(exc).replace("conf_level", "level", 1)) from None


def emmeans(result: Any, term: Any, by: Any = None, type: str = "response", level: float | None = None,
            at: Sequence[float] | None = None, n_grid: int = N_GRID) -> pd.DataFrame:
    """Estimated marginal means of ``term`` (a factor or covariate of the fixed part; ``"a:b"`` for both), per level
    of ``by`` when given (module docstring): a DataFrame with the variables, ``estimate``, ``SE``, ``df``,
    ``lower``, ``upper``. ``type`` "response" (the mean, via the inverse link) or "link"."""
    if type not in ("response", "link"):
        raise GlmmInputError(f"type must be 'response' or 'link'; got {type!r}")
    if type == "response" and getattr(result, "ordinal", None) is not None:
        raise GlmmInputError("type 'response': an ordinal model has no mean on the response scale (its fixed part "
                             "has no intercept: the thresholds take its place); use type='link' (x'beta, the "
                             "shift of the latent scale)")
    level = _level(result, level)
    keys, term_vars, by_vars, combos, L, off = _cells(result, term, by, at, n_grid, "estimated marginal means")
    beta = np.asarray(result.beta, dtype=float)
    V = np.asarray(result.vcov_matrix, dtype=float)
    eta = L @ beta + off
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", L, V, L), 0.0))
    df = _dfs(result, L)
    q = _quantile(level, df)
    lower, upper = eta - q * se, eta + q * se
    est = eta
    if type == "response":
        lk = LINKS[result.link]
        est = lk.linkinv(eta)
        se = np.abs(lk.mu_eta(eta)) * se
        a, b = lk.linkinv(lower), lk.linkinv(upper)
        lower, upper = np.minimum(a, b), np.maximum(a, b)
    out = pd.DataFrame([list(c) for c in combos], columns=keys)
    out["estimate"], out["SE"], out["df"], out["lower"], out["upper"] = est, se, df, lower, upper
    out.attrs.update({"term": ":".join(term_vars), "by": by_vars or None, "type": type, "level": level,
                      "note": _note(result, type, level)})
    return out


def _note(result: Any, type: str, level: float) -> str:
    dfs = ("degrees of freedom: Satterthwaite's" if _is_lmm(result) and result.satterthwaite_pieces() is not None
           else "asymptotic (z) intervals")
    scale = "response scale (intervals on the link scale, back-transformed)" if type == "response" and \
        result.link != "identity" else f"{'link' if type == 'link' else 'response'} scale"
    return (f"Marginal means on the {scale}, {level:.0%} intervals, {dfs}; other covariates at their means, factors "
            "averaged with equal weights")


RATIO_LINKS = {"log": "ratio", "logit": "odds ratio"}


def pairs(result: Any, term: Any, by: Any = None, adjust: str = "tukey", type: str = "link") -> pd.DataFrame:
    """Pairwise comparisons of the marginal means of a factor ``term`` (within each level of ``by``): ``contrast``,
    ``estimate``, ``SE``, ``df``, ``statistic`` (t or z), ``p`` adjusted by ``adjust``: "tukey" (the studentized
    range over the means compared), "holm", "bonferroni" or "none".

    ``type`` "link" (the default): differences on the link scale ("a - b"). "response", as emmeans' ``pairs()`` of
    means on the response scale: with a log link the ratios of the means and with a logit link their odds ratios
    ("a / b", ``estimate`` exp(difference), ``SE`` by the delta method, ``statistic`` and ``p`` those of the link
    scale: the test of a ratio of 1); with other links the differences on the link scale (there is no ratio to
    take). ``attrs["scale"]`` says which: "difference", "ratio" or "odds ratio"."""
    if not isinstance(adjust, str) or adjust.strip().lower() not in ADJUST:
        raise GlmmInputError(f"adjust must be one of {', '.join(ADJUST)}; got {adjust!r}")
    adjust = adjust.strip().lower()
    if type not in ("response", "link"):
        raise GlmmInputError(f"type must be 'response' or 'link'; got {type!r}")
    scale = RATIO_LINKS.get(result.link, "difference") if type == "response" else "difference"
    keys, term_vars, by_vars, combos, L, off = _cells(result, term, by, None, N_GRID, "pairwise comparisons")
    grid = _Grid(_recipe(result, "pairwise comparisons"))
    covs = [t for t in term_vars if t not in grid.factors]
    if covs:
        raise GlmmInputError(f"pairs compare the levels of factors; {covs[0]!r} is a covariate: use a factor as "
                             "term (the slope of a covariate is its coefficient)")
    beta = np.asarray(result.beta, dtype=float)
    V = np.asarray(result.vcov_matrix, dtype=float)
    nt = len(term_vars)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(combos):
        groups.setdefault(tuple(c[nt:]), []).append(i)
    records = []
    for bkey, idx in groups.items():
        pairs_ = list(itertools.combinations(idx, 2))
        if not pairs_:
            continue
        D = np.array([L[i] - L[j] for i, j in pairs_])
        est = D @ beta
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", D, V, D), 0.0))
        df = _dfs(result, D)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = est / se
        p = _adjusted(stat, df, len(idx), adjust)
        if scale != "difference":  # exp(difference) and its delta-method SE; the test stays the link scale's
            est = np.exp(est)
            se = est * se
        sep = " - " if scale == "difference" else " / "
        for (i, j), e, s, d, t, pv in zip(pairs_, est, se, df, stat, p):
            label = _label(combos[i][:nt]) + sep + _label(combos[j][:nt])
            records.append(list(bkey) + [label, e, s, d, t, pv])
    out = pd.DataFrame(records, columns=by_vars + ["contrast", "estimate", "SE", "df", "statistic", "p"])
    within = f"p-values adjusted by {adjust} within each {'group of by' if by_vars else 'family of comparisons'}"
    what = ("differences on the link scale" if scale == "difference" else
            f"{scale}s of the means (the exponentiated differences on the {result.link} scale, SE by the delta "
            f"method; tests of {'an' if scale[0] in 'aeiou' else 'a'} {scale} of 1 on the {result.link} scale)")
    out.attrs.update({"term": ":".join(term_vars), "by": by_vars or None, "adjust": adjust, "scale": scale,
                      "type": type, "note": f"{what}; {within}"})
    return out


def _label(values: tuple) -> str:
    """A mean's name in a contrast, as emmeans writes it: a level holding other characters than letters, digits,
    '.' and '_' is parenthesised (``2 - (3+)``)."""
    if len(values) == 1:
        text = str(values[0])
        return f"({text})" if re.search(r"[^A-Za-z0-9._]", text) else text
    return " ".join(str(v) for v in values)


def _adjusted(stat: np.ndarray, df: np.ndarray, k: int, adjust: str) -> np.ndarray:
    a = np.abs(stat)
    raw = np.where(np.isfinite(df), 2.0 * special.stdtr(np.where(np.isfinite(df), df, 1.0), -a), 2.0 * special.ndtr(-a))
    if adjust == "none":
        return raw
    m = len(raw)
    if adjust == "bonferroni":
        return np.minimum(1.0, raw * m)
    if adjust == "holm":
        order = np.argsort(raw)
        adj = np.maximum.accumulate((m - np.arange(m)) * raw[order])
        out = np.empty(m)
        out[order] = np.minimum(1.0, adj)
        return out
    # Tukey: P(studentized range of k means > |t| sqrt 2) with each contrast's df
    return np.array([float(stats.studentized_range.sf(x * np.sqrt(2.0), k, d if np.isfinite(d) else np.inf))
                     if k > 2 else r for x, d, r in zip(a, df, raw)])


def effects(result: Any, term: Any, by: Any = None, level: float | None = None, n_grid: int = N_GRID
            ) -> pd.DataFrame:
    """The data of an effect plot of ``term`` on the response scale: columns ``x`` (the covariate's grid or the
    factor's levels), ``by`` (when given), ``estimate``, ``lower``, ``upper`` and ``SE``; ``attrs["kind"]`` is
    "line" (a covariate: lines with bands) or "points" (a factor: points with intervals)."""
    em = emmeans(result, term, by=by, type="response", level=level, n_grid=n_grid)
    term_vars = em.attrs["term"].split(":")
    by_vars = em.attrs["by"] or []
    out = pd.DataFrame({"x": em[term_vars[0]] if len(term_vars) == 1 else
                        em[term_vars].astype(str).agg(" ".join, axis=1)})
    if by_vars:
        out["by"] = em[by_vars[0]] if len(by_vars) == 1 else em[by_vars].astype(str).agg(" ".join, axis=1)
    for c in ("estimate", "lower", "upper", "SE"):
        out[c] = em[c]
    grid = _Grid(_recipe(result, "effect plots"))
    kind = "line" if len(term_vars) == 1 and term_vars[0] in grid.covariates and term_vars[0] not in {
        c for c, _ in grid.factors.values()} else "points"
    out.attrs.update(em.attrs, kind=kind, x=em.attrs["term"], response=result.model.get("response"))
    return out
