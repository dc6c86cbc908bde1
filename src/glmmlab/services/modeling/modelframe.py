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
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import (
    BinOp,
    Call,
    Expr,
    Formula,
    ModelPart,
    Name,
    Num,
    Paren,
    Unary,
    format_number,
    is_syntactic,
    parse_formula,
)
from glmmlab.engine.model.limits import LIMITS, echo, mib, shorten
from glmmlab.engine.model.spec import random_intercept_formula  # noqa: F401  (re-exported: the one definition)
from glmmlab.engine.model.terms import ModelFrame, RandomTerm
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.services.modeling.frames import level_order

__all__ = ["DesignRecipe", "RandomTermRecipe", "build_model_frame", "grouping_levels", "random_intercept_formula"]

_FAMILIES = {"gaussian": "gaussian", "binomial": "binomial", "poisson": "poisson", "gamma": "gamma",
             "negbin": "negbin", "negative_binomial": "negbin", "nbinom2": "negbin"}


# --------------------------------------------------------------------------------------------- values


@dataclass
class _Num:
    values: np.ndarray  # float (n_input,); NaN where missing
    missing: np.ndarray  # bool (n_input,)


@dataclass
class _Fac:
    codes: np.ndarray  # int64 (n_input,); -1 where missing
    levels: list[str]

    @property
    def missing(self) -> np.ndarray:
        return self.codes < 0


def _quote(name: str) -> str:
    return name if is_syntactic(name) else f"`{name}`"


class _Data:
    """Column lookup and evaluation of formula expressions on every input row."""

    def __init__(self, df: pd.DataFrame, formula_text: str, known_columns: Sequence[str] | None = None):
        self.df = df
        # the columns a message names: the whole dataset's when only the formula's columns were read
        self.known = [str(c) for c in known_columns] if known_columns is not None else [str(c) for c in df.columns]
        self.n = len(df)
        self.formula = formula_text
        self.names = {str(c): c for c in df.columns}
        self.cache: dict[tuple[Expr, bool], _Num | _Fac] = {}
        # scale(): the centre and scale each call used; given (``fixed_scales``) when rebuilding for new rows
        self.scale_params: dict[Expr, tuple[float, float]] = {}
        self.fixed_scales: dict[Expr, tuple[float, float]] | None = None
        self.kinds: dict[str, str] = {}  # "numeric" or "factor" per column read

    def column(self, name: str, used_in: str) -> pd.Series:
        if name not in self.names:
            near: list[str] = []
            if len(name) <= LIMITS.echo_chars:  # a close match of a long name would cost its length squared
                near = difflib.get_close_matches(name, list(self.known), n=3, cutoff=0.6)
                near += [c for c in self.known if c.lower() == name.lower() and c not in near]
            hint = f"; did you mean {', '.join(echo(c) for c in near)}?" if near else ""
            cols = list(self.known)
            shown = ", ".join(shorten(c) for c in cols[:20]) + (", ..." if len(cols) > 20 else "")
            raise GlmmInputError(
                f"column {echo(name)} (in {used_in}) is not in the data{hint} Columns: {shown}. "
                "Fix the name in the formula (quote names with spaces in backquotes: `my column`)"
            )
        s = self.df[self.names[name]]
        if isinstance(s, pd.DataFrame):
            raise GlmmInputError(f"column name {echo(name)} occurs more than once in the data; rename the copies")
        return s

    # -- one expression ------------------------------------------------------------------------------

    def eval(self, e: Expr, used_in: str, as_factor: bool = False) -> _Num | _Fac:
        key = (e, as_factor)
        if key not in self.cache:
            out = self._eval(e, used_in)
            if as_factor and isinstance(out, _Num):
                out = _numeric_factor(out)
            self.cache[key] = out
        return self.cache[key]

    def numeric(self, e: Expr, used_in: str, what: str | None = None) -> _Num:
        v = self.eval(e, used_in)
        if isinstance(v, _Fac):
            raise GlmmInputError(
                f"{echo(what or e.deparse())} (in {used_in}) is a factor with levels "
                f"{_show_levels(v.levels)}; it must be numeric here. Recode it as numbers in the data"
            )
        return v

    def _eval(self, e: Expr, used_in: str) -> _Num | _Fac:
        if isinstance(e, Name):
            out = _series_value(self.column(e.name, used_in), e.name)
            self.kinds.setdefault(e.name, "factor" if isinstance(out, _Fac) else "numeric")
            return out
        if isinstance(e, Num):
            return _Num(np.full(self.n, e.value), np.zeros(self.n, dtype=bool))
        if isinstance(e, Paren):
            return self._eval(e.inner, used_in)
        if isinstance(e, Unary):
            v = self._arith_arg(e.operand, e, used_in)
            return _Num(-v.values if e.op == "-" else v.values, v.missing)
        if isinstance(e, BinOp):
            a = self._arith_arg(e.left, e, used_in)
            b = self._arith_arg(e.right, e, used_in)
            with np.errstate(all="ignore"):
                x, y = a.values, b.values
                r = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}[e.op](x, y)
            return self._checked(e, r, a.missing | b.missing, used_in)
        if isinstance(e, Call):
            fn = e.fn
            if fn in ("factor", "as.factor"):
                arg = self._eval(e.args[0], used_in)
                return arg if isinstance(arg, _Fac) else _numeric_factor(arg)
            if fn == "I":
                arg = self._eval(e.args[0], used_in)
                if isinstance(arg, _Fac):
                    raise GlmmInputError(f"I() needs numbers; {e.args[0].deparse()!r} (in {used_in}) is a factor")
                return arg
            a = self._arith_arg(e.args[0], e, used_in)
            x = a.values
            miss = a.missing
            with np.errstate(all="ignore"):
                if fn == "log":
                    r = np.log(x)
                    if len(e.args) == 2:
                        b = self._arith_arg(e.args[1], e, used_in)
                        r = r / np.log(b.values)
                        miss = miss | b.missing
                elif fn == "scale":
                    if self.fixed_scales is not None:  # new rows: the fit's centre and scale
                        m, sd = self.fixed_scales[e]
                    else:
                        ok = ~miss
                        m = x[ok].mean() if ok.any() else np.nan
                        sd = x[ok].std(ddof=1) if ok.sum() > 1 else np.nan
                        if not np.isfinite(sd) or sd == 0:
                            raise GlmmInputError(
                                f"{e.deparse()} (in {used_in}) cannot scale {e.args[0].deparse()!r}: its standard "
                                "deviation is zero or it has fewer than two values"
                            )
                    self.scale_params[e] = (float(m), float(sd))
                    r = (x - m) / sd
                else:
                    r = {"log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp,
                         "sqrt": np.sqrt, "abs": np.abs}[fn](x)
            return self._checked(e, r, miss, used_in)
        raise GlmmInputError(f"cannot evaluate {e.deparse()!r} in {used_in}")  # pragma: no cover

    def _arith_arg(self, arg: Expr, whole: Expr, used_in: str) -> _Num:
        v = self._eval(arg, used_in)
        if isinstance(v, _Fac):
            if v.levels == ["FALSE", "TRUE"]:  # R: arithmetic on a logical uses 0/1
                vals = v.codes.astype(float)
                vals[v.codes < 0] = np.nan
                return _Num(vals, v.codes < 0)
            raise GlmmInputError(
                f"{whole.deparse()!r} (in {used_in}) does arithmetic on {arg.deparse()!r}, a factor with levels "
                f"{_show_levels(v.levels)}; use numbers, or the factor on its own as a term"
            )
        return v

    def _checked(self, e: Expr, r: np.ndarray, miss: np.ndarray, used_in: str) -> _Num:
        r = np.asarray(r, dtype=float)
        bad = ~np.isfinite(r) & ~miss
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GlmmInputError(
                f"{e.deparse()} (in {used_in}) is not a finite number on {int(bad.sum())} row(s), first on row "
                f"{i + 1}, although its inputs are; fix those values or change the term (log() and sqrt() need "
                "positive values)"
            )
        return _Num(r, miss)


def _show_levels(levels: list[str]) -> str:
    shown = ", ".join(repr(x) for x in levels[:6])
    return shown + (", ..." if len(levels) > 6 else "")


def _is_bool_object(s: pd.Series) -> bool:
    v = s.dropna()
    if len(v) == 0:
        return False
    return bool(v.map(type).isin([bool, np.bool_]).all())


def _series_value(s: pd.Series, name: str) -> _Num | _Fac:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes, dtype=np.int64)
        cats = list(dt.categories)
        if cats and all(isinstance(c, (bool, np.bool_)) for c in cats):
            levels = ["TRUE" if c else "FALSE" for c in cats]
        elif cats and all(isinstance(c, (int, float, np.integer, np.floating)) for c in cats):
            levels = [_number_label(float(c)) for c in cats]
        else:
            levels = [str(c) for c in cats]
        return _Fac(codes, levels)
    if pd.api.types.is_bool_dtype(dt):
        arr = s.to_numpy()
        if dt == object or str(dt) == "boolean":  # noqa: E721  (a dtype compared with object dtype, not a type check)
            miss = np.asarray(s.isna())
            codes = np.where(miss, -1, np.asarray(s.fillna(False), dtype=bool).astype(np.int64))
        else:
            codes = arr.astype(np.int64)
        return _Fac(codes, ["FALSE", "TRUE"])
    if pd.api.types.is_numeric_dtype(dt):
        vals = s.to_numpy(dtype=float, na_value=np.nan)
        miss = ~np.isfinite(vals)
        if miss.any():
            vals = vals.copy()
            vals[miss] = np.nan
        return _Num(vals, miss)
    if dt == object and _is_bool_object(s):  # noqa: E721  (a dtype compared with object dtype)
        miss = np.asarray(s.isna())
        codes = np.full(len(s), -1, dtype=np.int64)
        codes[~miss] = np.asarray(s[~miss].astype(bool), dtype=np.int64)
        return _Fac(codes, ["FALSE", "TRUE"])
    # strings (object, pandas string dtypes) and anything else: a factor of the values' text
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    labels = [u if isinstance(u, str) else str(u) for u in uniques]
    return _relevel(np.asarray(codes, dtype=np.int64), labels)


def _relevel(codes: np.ndarray, labels: list[str]) -> _Fac:
    """Sort labels in code-point order, or by their numbers when every label is a number written as text
    (identifiers turned into text: "1", "2", ..., "10"), merging equal texts, and recode."""
    distinct = sorted(set(labels))
    levels = [distinct[i] for i in level_order(distinct)]
    pos = {lab: i for i, lab in enumerate(levels)}
    perm = np.array([pos[lab] for lab in labels] + [-1], dtype=np.int64)  # index -1 -> -1
    return _Fac(perm[codes], levels)


def _number_label(v: float) -> str:
    return format_number(v)


def _numeric_factor(v: _Num) -> _Fac:
    codes, uniques = pd.factorize(v.values, sort=True, use_na_sentinel=True)
    u = np.asarray(uniques, dtype=float)
    if np.all(np.abs(u) < 1e15) and np.array_equal(u, np.round(u)):  # whole numbers: "308", fast
        labels = u.astype(np.int64).astype(str).tolist()
    else:
        labels = [_number_label(float(x)) for x in u]
    return _Fac(np.asarray(codes, dtype=np.int64), labels)


# ------------------------------------------------------------------------------------- design matrices


def _compact(codes: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop unused levels: (new codes, indices of the kept levels)."""
    present = np.bincount(codes, minlength=n_levels) > 0
    keep = np.flatnonzero(present)
    if len(keep) == n_levels:
        return codes, keep
    remap = np.full(n_levels, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return remap[codes], keep


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


# ------------------------------------------------------------------------------------------- the builder


def build_model_frame(df: pd.DataFrame, formula: str | Formula, *, family: str = "gaussian", weights: str | None = None,
                      offset: str | None = None, whole: bool = True,
                      reference_levels: Mapping[str, object] | None = None,
                      known_columns: Sequence[str] | None = None, progress: ProgressFn = None) -> ModelFrame:
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
    ``known_columns``: every column of the dataset when ``df`` holds only some of them (what an unknown name's
    message lists and suggests).
    """
    if not isinstance(df, pd.DataFrame):
        raise GlmmInputError(f"data must be a pandas DataFrame; got {type(df).__name__}")
    fam = _FAMILIES.get(str(family).strip().lower())
    if fam is None:
        raise GlmmInputError(f"unknown family {family!r}: choose one of gaussian, binomial, poisson, gamma, negbin")
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
        for g in r.group:
            gv = data.eval(g, f"the grouping of {shorten(r.written)} in {ftxt}", as_factor=True)
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
    for val in [*resp_vals, *fixed_vals.values(), *offset_vals, *rand_vals.values(), *group_vals.values()]:
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
    default_levels = _apply_references(reference_levels, used, data, ftxt) if reference_levels else {}

    # ---- fixed design
    assign: list[int] = []
    X, x_names = _design(f.fixed, fixed_vals, rows, f"the fixed part of {ftxt}", used, check=whole, assign=assign,
                         progress=progress)
    if X.shape[1] == 0:
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
        Z, z_names = _design(r.lhs, rand_vals, rows, f"random term {shorten(r.written)} of {ftxt}", used,
                             check=whole, progress=progress)
        correlated = r.correlated or Z.shape[1] > 1
        terms.append(RandomTerm(comp, codes, levels, Z, z_names, correlated))

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
    y, w = _response(fam, f, resp_expr, resp_vals, rows, w, weights, warnings)
    off = None
    if offset_vals or o_val is not None:
        off = np.zeros(n)
        for o in offset_vals:
            off += o.values[rows]
        if o_val is not None:
            off += o_val.values[rows]
    recipe = DesignRecipe(
        formula=f, x_names=tuple(x_names), levels={v: tuple(u.levels) for v, u in used.items()},
        scales=dict(data.scale_params), column_kinds=dict(data.kinds),
        terms=tuple(RandomTermRecipe(t.component, tuple(t.levels), tuple(t.names), t.correlated) for t in terms),
        offset_column=None if offset is None else str(offset), default_levels=default_levels,
        assign=tuple(assign), covariates=_covariates(data, f, rows),
    )
    return ModelFrame(
        response=f.response_label, y=y, X=X, x_names=x_names, terms=terms, rows=rows, n_input=n_input,
        weights=w, offset=off, intercept=f.fixed.intercept, formula=formula, warnings=warnings, recipe=recipe,
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


def _finite_or_missing(s: pd.Series, name: str, what: str) -> None:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        bad = np.isinf(v)
        if bad.any():
            raise GlmmInputError(
                f"{what} column {name!r} has infinite values (first on row {int(np.flatnonzero(bad)[0]) + 1}); "
                f"{what} must be finite"
            )


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


def _response(fam: str, f: Formula, expr: Expr, vals: list[_Num | _Fac], rows: np.ndarray, w: np.ndarray | None,
              weights: str | None, warnings: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    label = f.response_label
    if isinstance(expr, Call) and expr.fn == "cbind":
        if fam != "binomial":
            raise GlmmInputError(
                f"the response {label} gives binomial successes and failures; use family='binomial' "
                f"(not {fam}) or a single response column"
            )
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
        if fam == "binomial":
            # R: the first level is failure, every other level success
            lv = v.codes[rows]
            return (lv > 0).astype(float), w
        raise GlmmInputError(
            f"the response {label!r} is a factor with levels {_show_levels(v.levels)}; the {fam} family needs "
            "numbers"
        )
    y = np.ascontiguousarray(v.values[rows], dtype=float)
    if fam == "binomial":
        if ((y < 0) | (y > 1)).any():
            i = int(rows[np.flatnonzero((y < 0) | (y > 1))[0]])
            raise GlmmInputError(
                f"the binomial response {label!r} must lie in [0, 1] (0/1 outcomes or proportions); row {i + 1} "
                f"has {format_number(float(v.values[i]))}. For counts of successes use "
                "cbind(successes, failures)"
            )
        if w is None and ((y > 0) & (y < 1)).any():
            raise GlmmInputError(
                f"the binomial response {label!r} has proportions between 0 and 1 but no weights: give the "
                "number of trials with weights= (--weights), or write the response as cbind(successes, failures)"
            )
        if w is not None and not _is_integer(y * w):
            warnings.append(f"non-integer numbers of successes: {label} x weights {weights!r} is not whole")
    elif fam in ("poisson", "negbin"):
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
