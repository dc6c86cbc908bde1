"""From a formula string and a pandas DataFrame to the engine's :class:`~glmmlab.engine.model.terms.ModelFrame`.

lme4's rules (``lFormula``/``glFormula`` with R's ``model.frame`` and ``model.matrix``):

- string, pandas categorical and boolean columns are factors; their levels are the values present on the rows
  used, in code-point order, or in numeric order when every value is a number written as text (identifiers turned
  into text: ``"1", "2", ..., "10"``, as R's ``factor()`` of the numbers would order them; a categorical keeps its
  own category order; booleans are ``FALSE``/``TRUE``);
  factors get treatment contrasts (the first level is the reference) unless R's marginality rule asks for
  indicator columns (``0 + f``, ``x:f`` without ``x``);
- a numeric column used as a grouping factor becomes a factor with numerically sorted levels labelled as R
  prints them (``"308"``, ``"0.5"``); an interaction grouping ``b:a`` has levels ``"<b>:<a>"`` for the combinations
  present, ``b`` varying slowest;
- expressions (``I()``, ``log()``, ``scale()``...) are evaluated on every input row, then rows with a missing value
  in any variable the model uses (response, fixed and random terms, grouping factors, weights, offsets) are
  dropped (listwise deletion): NaN, None and +-inf in numeric columns, None/NaN in the others;
- binomial responses: 0/1 or boolean; ``cbind(s, f)`` (y = s / (s + f), weights = s + f times any prior
  weights); a proportion with ``weights=`` giving the trials.

Everything is vectorized over rows: factors are coded with ``pandas.factorize`` and level bookkeeping loops only
over levels.

The values of the variables are :mod:`~glmmlab.services.modeling.variables`'s and the design matrices
:mod:`~glmmlab.services.modeling.design`'s, the levels and groupings :mod:`~glmmlab.services.modeling.levels`'s;
this module puts them together: the rows used, the response, the
factors' levels and references, the grouping factors and random terms, and the fit's :class:`DesignRecipe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES, family_key
from glmmlab.engine.model.formula import Call, Expr, Formula, Name, format_number, parse_formula
from glmmlab.engine.model.limits import echo, shorten
from glmmlab.engine.model.spec import (
    random_intercept_formula,  # noqa: F401  (re-exported: the one definition)
    side_formula,
)
from glmmlab.engine.model.terms import ModelFrame, RandomTerm
from glmmlab.engine.progress import ProgressFn
from glmmlab.services.modeling import covstruct_terms
from glmmlab.services.modeling.design import DesignRecipe, RandomTermRecipe, _design, _UsedFactor
from glmmlab.services.modeling.levels import _apply_references, _compact, _grouping, grouping_levels
from glmmlab.services.modeling.ordinal_response import ordinal_response, without_intercept
from glmmlab.services.modeling.variables import _Data, _Fac, _Num, _show_levels

__all__ = ["build_model_frame", "grouping_levels", "random_intercept_formula"]


# ------------------------------------------------------------------------------------------- the builder


def build_model_frame(df: pd.DataFrame, formula: str | Formula, *, family: str = "gaussian", weights: str | None = None,
                      offset: str | None = None, whole: bool = True,
                      reference_levels: Mapping[str, object] | None = None,
                      known_columns: Sequence[str] | None = None, progress: ProgressFn = None,
                      zi: str | None = None, disp: str | None = None,
                      response_levels: Sequence | None = None) -> ModelFrame:
    """Build the engine's :class:`ModelFrame` for an lme4 ``formula`` on ``df`` (see the module docstring).

    ``family`` is gaussian, binomial, poisson, gamma or negbin (any case); ``weights`` and ``offset`` are column
    names (prior weights; an offset added to ``offset()`` terms in the formula); ``reference_levels`` maps a
    factor of the fixed part or of a random term's columns (its column name, or its label such as
    ``factor(cyl)``) to the level to use as its reference (R's ``relevel``). Raises
    :class:`GlmmInputError` for input a person can fix; a non-integer count response is a warning in
    ``ModelFrame.warnings``.

    ``whole=False`` says ``df`` is one part of the data (a Dask partition): the checks that only the whole data
    can answer (some complete row, two or more levels of each factor, a grouping factor coarser than the rows,
    interaction columns not all zero) are left to the caller, which makes them on the combined parts.
    ``zi`` and ``disp``: one-sided formulas of a zero(-inflation or hurdle) model and a dispersion model
    (glmmTMB's ``ziformula`` and ``dispformula``, fixed effects and offsets), whose designs the frame carries in
    ``parts`` on the same rows (a row missing a variable of any part is left out).
    ``known_columns``: every column of the dataset when ``df`` holds only some of them (what an unknown name's
    message lists and suggests). ``response_levels``: the categories of an ordinal response in order (the
    ordinal family; see :mod:`~glmmlab.services.modeling.ordinal_response`).
    """
    if not isinstance(df, pd.DataFrame):
        raise GlmmInputError(f"data must be a pandas DataFrame; got {type(df).__name__}")
    fam = family_key(family)
    if fam not in FAMILIES:
        raise GlmmInputError(f"unknown family {family!r}: choose one of {', '.join(FAMILIES)}")
    f: Formula = parse_formula(formula)
    formula = f.text
    if f.response is None:  # pragma: no cover - the parser requires one
        raise GlmmInputError(f"formula {echo(formula)} needs a response on the left of '~'")
    if not f.random:
        raise GlmmInputError(
            f"formula {echo(formula)} has no random term: add one such as (1 | group) (a mixed model needs one)"
        )
    data = _Data(df, formula, known_columns)
    n_input = data.n
    ftxt = f"formula {echo(formula)}"

    # ---- evaluate every variable on all input rows
    resp_expr = f.response
    is_cbind = isinstance(resp_expr, Call) and resp_expr.fn == "cbind"
    resp_vals: list[_Num | _Fac] = []
    if isinstance(resp_expr, Call) and is_cbind:
        resp_vals = [data.numeric(a, f"the response of {ftxt}") for a in resp_expr.args]
    else:
        resp_vals = [data.eval(resp_expr, f"the response of {ftxt}")]
    fixed_vals = {v: data.eval(v, f"term of {ftxt}") for v in f.fixed.variables}
    offset_vals = [data.numeric(o, f"offset({o.deparse()}) of {ftxt}") for o in f.fixed.offsets]
    rand_vals: dict[Expr, _Num | _Fac] = {}
    group_vals: dict[Expr, _Fac] = {}
    for r in f.random:
        for v in r.lhs.variables:
            rand_vals[v] = data.eval(v, f"random term {shorten(r.written)} of {ftxt}")
        covstruct_terms.check_structured(r, rand_vals, ftxt)
        for g in r.group:
            gv = data.eval(g, f"the grouping of {shorten(r.written)} in {ftxt}", as_factor=True)
            assert isinstance(gv, _Fac)
            group_vals[g] = gv
    side: dict[str, tuple[Formula, dict[Expr, _Num | _Fac], list]] = {}
    for key, text in (("zi", zi), ("disp", disp)):
        if text is not None:
            pf = side_formula(key, text)
            what = f"the {key} formula {echo(text)}"
            side[key] = (pf, {v: data.eval(v, f"term of {what}") for v in pf.fixed.variables},
                         [data.numeric(o, f"offset({o.deparse()}) of {what}") for o in pf.fixed.offsets])
            for r in pf.random:  # the zero model's random terms (side_formula allows them there only)
                for v in r.lhs.variables:
                    rand_vals[v] = data.eval(v, f"random term {shorten(r.written)} of {what}")
                for g in r.group:
                    gv = data.eval(g, f"the grouping of {shorten(r.written)} in {what}", as_factor=True)
                    assert isinstance(gv, _Fac)
                    group_vals[g] = gv
    w_val = o_val = None
    if weights is not None:
        w_val = data.numeric(Name(str(weights)), "weights=", what=str(weights))
        _finite_or_missing(data.column(str(weights), "weights="), str(weights), "weights")
    if offset is not None:
        o_val = data.numeric(Name(str(offset)), "offset=", what=str(offset))
        _finite_or_missing(data.column(str(offset), "offset="), str(offset), "offset")

    # ---- listwise deletion
    missing = np.zeros(n_input, dtype=bool)
    for val in [*resp_vals, *fixed_vals.values(), *offset_vals, *rand_vals.values(), *group_vals.values(),
                *(v for _, vals, offs in side.values() for v in [*vals.values(), *offs])]:
        missing |= val.missing
    for wo in (w_val, o_val):
        if wo is not None:
            missing |= wo.missing
    rows = np.flatnonzero(~missing)
    n = len(rows)
    if n == 0 and whole:
        raise GlmmInputError(
            f"no row is complete for {ftxt}: every row has a missing value in a variable the model uses"
        )

    # ---- factors on the rows used (unused levels dropped, as lme4's model frame does)
    used: dict[Expr, _UsedFactor] = {}
    for v, val in {**fixed_vals, **rand_vals}.items():
        if isinstance(val, _Fac):
            codes, keep = _compact(val.codes[rows], len(val.levels))
            used[v] = _UsedFactor(codes, [val.levels[k] for k in keep])
    for _, vals, _ in side.values():
        for v, val in vals.items():
            if isinstance(val, _Fac) and v not in used:
                codes, keep = _compact(val.codes[rows], len(val.levels))
                used[v] = _UsedFactor(codes, [val.levels[k] for k in keep])
    default_levels = _apply_references(reference_levels, used, data, ftxt) if reference_levels else {}

    # ---- fixed design
    assign: list[int] = []
    X, x_names = _design(f.fixed, fixed_vals, rows, f"the fixed part of {ftxt}", used, check=whole, assign=assign,
                         progress=progress)
    if fam == "ordinal":  # the thresholds take the intercept's place
        X, x_names, assign = without_intercept(formula, f.fixed.intercept, X, x_names, assign)
    elif X.shape[1] == 0:
        raise GlmmInputError(f"{ftxt} has no fixed effects: keep the intercept (1) or add a term")

    # ---- random terms
    terms: list[RandomTerm] = []
    for r in f.random:
        comp = r.component
        codes, levels = _grouping(r.group, group_vals, rows)
        nl = len(levels)
        if nl < 2 and whole:
            raise GlmmInputError(
                f"the grouping factor {comp!r} of {shorten(r.written)} has only {nl} level on the rows used; "
                "grouping factors need two or more levels"
            )
        if fam == "gaussian" and nl >= n and whole:
            raise GlmmInputError(
                f"the grouping factor {comp!r} of {shorten(r.written)} has {nl} levels for {n} rows: each group is a "
                "single row, so its variance cannot be told apart from the residual variance (lme4 refuses this "
                "too). Group by a coarser column or drop the term"
            )
        if nl > n:  # pragma: no cover - levels are dropped to those present
            raise GlmmInputError(f"the grouping factor {comp!r} has more levels than rows")
        times = None
        if r.kind == "ou":  # one column per distinct time (services/modeling/covstruct_terms)
            Z, z_names, times = covstruct_terms.ou_columns(r, rand_vals, rows)
        else:
            Z, z_names = _design(r.lhs, rand_vals, rows, f"random term {shorten(r.written)} of {ftxt}", used,
                                 check=whole, progress=progress)
        covstruct_terms.check_columns(r, z_names, covstruct_terms.term_levels(r, used), ftxt)
        correlated = r.correlated or Z.shape[1] > 1
        # a piece of (x || g) keeps lme4's meaning (a factor's columns stay one correlated term): no structure
        terms.append(RandomTerm(comp, codes, levels, Z, z_names, correlated, r.structure or "us", times,
                                covstruct_terms.label(r)))

    # ---- response, weights, offset
    warnings: list[str] = []
    w = None
    if w_val is not None:
        w = w_val.values[rows]
        if (w < 0).any():
            i = int(rows[np.flatnonzero(w < 0)[0]])
            raise GlmmInputError(
                f"weights column {weights!r} has negative values (first on row {i + 1}); "
                "prior weights must be >= 0"
            )
    ordinal_levels: list[str] = []
    if fam == "ordinal":  # an ordered factor: category numbers 1 .. K and the categories in order
        if is_cbind:
            raise GlmmInputError(f"the response {f.response_label} gives binomial successes and failures; the "
                                 "ordinal family needs one column of ordered categories")
        y, ordinal_levels = ordinal_response(f.response_label, resp_vals[0], rows, response_levels, warnings)
    else:
        y, w = _response(fam, f, resp_expr, resp_vals, rows, w, weights, warnings)
    off = None
    if offset_vals or o_val is not None:
        off = np.zeros(n)
        for o in offset_vals:
            off += o.values[rows]
        if o_val is not None:
            off += o_val.values[rows]
    parts: dict | None = None
    if side:
        parts = {}
        for key, (pf, vals, offs) in side.items():
            Xp, names = _design(pf.fixed, vals, rows, f"the {key} formula {echo(pf.text)}", used, check=whole)
            if Xp.shape[1] == 0:
                raise GlmmInputError(f"the {key} formula has no terms: write '~ 1' for a constant")
            parts[f"{key}_X"], parts[f"{key}_names"] = Xp, names
            parts[f"{key}_off"] = np.sum([o.values[rows] for o in offs], axis=0) if offs else None
            if pf.random:
                side_terms = []
                for r in pf.random:
                    codes, levels = _grouping(r.group, group_vals, rows)
                    if len(levels) < 2 and whole:
                        raise GlmmInputError(f"the grouping factor {r.component!r} of {shorten(r.written)} in the "
                                             f"{key} formula has only {len(levels)} level on the rows used")
                    Zr, zr_names = _design(r.lhs, rand_vals, rows, f"random term {shorten(r.written)} of the {key} "
                                           "formula", used, check=whole)
                    side_terms.append(RandomTerm(r.component, codes, levels, Zr, zr_names,
                                                 r.correlated or Zr.shape[1] > 1))
                parts[f"{key}_terms"] = side_terms
    recipe = DesignRecipe(
        formula=f, x_names=tuple(x_names), levels={v: tuple(u.levels) for v, u in used.items()},
        scales=dict(data.scale_params), column_kinds=dict(data.kinds),
        terms=tuple(RandomTermRecipe(t.component, tuple(t.levels), tuple(t.names), t.correlated) for t in terms),
        offset_column=None if offset is None else str(offset), default_levels=default_levels,
        assign=tuple(assign), covariates=_covariates(data, f, rows), response_levels=tuple(ordinal_levels),
    )
    return ModelFrame(
        response=f.response_label, y=y, X=X, x_names=x_names, terms=terms, rows=rows, n_input=n_input,
        weights=w, offset=off, intercept=f.fixed.intercept, formula=formula, warnings=warnings, recipe=recipe,
        parts=parts,
    )


def _covariates(data: _Data, f: Formula, rows: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """(min, mean, max, sd) on the rows used of each numeric data column of the fixed part and its offsets."""
    out: dict[str, tuple[float, float, float, float]] = {}
    for e in [*f.fixed.variables, *f.fixed.offsets]:
        for name in e.names():
            if name in out or data.kinds.get(name) != "numeric" or not len(rows):
                continue
            v = data.numeric(Name(name), "the reference grid").values[rows]
            out[name] = (float(np.min(v)), float(np.mean(v)), float(np.max(v)),
                         float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    return out


def _finite_or_missing(s: pd.Series, name: str, what: str) -> None:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        bad = np.isinf(v)
        if bad.any():
            raise GlmmInputError(
                f"{what} column {name!r} has infinite values (first on row {int(np.flatnonzero(bad)[0]) + 1}); "
                f"{what} must be finite"
            )


def _response(fam: str, f: Formula, expr: Expr, vals: list[_Num | _Fac], rows: np.ndarray, w: np.ndarray | None,
              weights: str | None, warnings: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    label = f.response_label
    binomial_type = fam in ("binomial", "betabinomial")
    if isinstance(expr, Call) and expr.fn == "cbind":
        if not binomial_type:
            raise GlmmInputError(
                f"the response {label} gives binomial successes and failures; use family='binomial' "
                f"(or 'betabinomial'; not {fam}) or a single response column"
            )
        if fam == "betabinomial" and w is not None:
            raise GlmmInputError(
                f"weights {weights!r} with the betabinomial response {label}: its trials come from cbind(), and "
                "beta-binomial rows take no prior weights; leave weights out")
        assert isinstance(vals[0], _Num) and isinstance(vals[1], _Num)  # cbind's arguments were read as numbers
        s = vals[0].values[rows]
        fl = vals[1].values[rows]
        for arr, part in ((s, expr.args[0]), (fl, expr.args[1])):
            if (arr < 0).any():
                i = int(rows[np.flatnonzero(arr < 0)[0]])
                raise GlmmInputError(
                    f"{part.deparse()!r} in the response {label} is negative on row {i + 1}; "
                    "successes and failures must be counts >= 0"
                )
        trials = s + fl
        with np.errstate(all="ignore"):
            y = np.where(trials > 0, s / np.where(trials > 0, trials, 1.0), 0.0)
        if not (_is_integer(s) and _is_integer(fl)):
            warnings.append(f"non-integer counts in the binomial response {label}")
        return y, trials if w is None else w * trials
    v = vals[0]
    if isinstance(v, _Fac):
        if binomial_type:
            # R: the first level is failure, every other level success
            lv = v.codes[rows]
            return (lv > 0).astype(float), w
        raise GlmmInputError(
            f"the response {label!r} is a factor with levels {_show_levels(v.levels)}; the {fam} family needs "
            "numbers (for ordered categories choose the ordinal family)"
        )
    y = np.ascontiguousarray(v.values[rows], dtype=float)
    if binomial_type:
        if ((y < 0) | (y > 1)).any():
            i = int(rows[np.flatnonzero((y < 0) | (y > 1))[0]])
            raise GlmmInputError(
                f"the {fam} response {label!r} must lie in [0, 1] (0/1 outcomes or proportions); row {i + 1} "
                f"has {format_number(float(v.values[i]))}. For counts of successes use "
                "cbind(successes, failures)"
            )
        if w is None and ((y > 0) & (y < 1)).any():
            raise GlmmInputError(
                f"the {fam} response {label!r} has proportions between 0 and 1 but no weights: give the "
                "number of trials with weights= (--weights), or write the response as cbind(successes, failures)"
            )
        if w is not None and not _is_integer(y * w):
            warnings.append(f"non-integer numbers of successes: {label} x weights {weights!r} is not whole")
    elif fam in ("poisson", "negbin", "nbinom1"):
        if (y < 0).any():
            i = int(rows[np.flatnonzero(y < 0)[0]])
            raise GlmmInputError(
                f"the {fam} response {label!r} must be counts >= 0; row {i + 1} has "
                f"{format_number(float(v.values[i]))}"
            )
        if not _is_integer(y):
            warnings.append(f"non-integer values in the {fam} response {label!r}: the model expects counts")
    elif fam == "gamma":
        if (y <= 0).any():
            i = int(rows[np.flatnonzero(y <= 0)[0]])
            raise GlmmInputError(
                f"the gamma response {label!r} must be strictly positive (> 0); row {i + 1} has "
                f"{format_number(float(v.values[i]))}: choose another family or remove those rows"
            )
    elif fam == "beta_family":
        bad = (y <= 0) | (y >= 1)
        if bad.any():
            i = int(rows[np.flatnonzero(bad)[0]])
            raise GlmmInputError(
                f"the beta_family response {label!r} must lie strictly between 0 and 1; row {i + 1} has "
                f"{format_number(float(v.values[i]))}. The beta density has no mass at 0 or 1: for successes out of "
                "trials use family='betabinomial' with cbind(successes, failures), or move the values into (0, 1)")
    elif fam == "tweedie":
        if (y < 0).any():
            i = int(rows[np.flatnonzero(y < 0)[0]])
            raise GlmmInputError(
                f"the tweedie response {label!r} must be >= 0 (exact zeros and positive amounts); row {i + 1} has "
                f"{format_number(float(v.values[i]))}")
    return y, w


def _is_integer(x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x - np.round(x)) <= 1e-7 * np.maximum(1.0, np.abs(x))))


def plain_columns(formula: str | Formula, df: pd.DataFrame) -> tuple[list[str] | None, str | None]:
    """(fixed columns, grouping column) when the formula is the random-intercept form over plain numeric
    columns (the contract fills ``model.fixed`` and ``model.group`` only then), else (None, None)."""
    try:
        f = parse_formula(formula)
    except GlmmInputError:
        return None, None
    if len(f.random) != 1 or f.fixed.offsets:
        return None, None
    r = f.random[0]
    if len(r.group) != 1 or not isinstance(r.group[0], Name) or r.lhs.terms or not r.lhs.intercept:
        return None, None
    fixed = []
    for t in f.fixed.terms:
        if len(t.variables) != 1 or not isinstance(t.variables[0], Name):
            return None, None
        name = t.variables[0].name
        if name not in df.columns or not pd.api.types.is_numeric_dtype(df[name]) \
                or pd.api.types.is_bool_dtype(df[name]):
            return None, None
        fixed.append(name)
    return fixed, r.component
