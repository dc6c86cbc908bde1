"""The values of a formula's variables on a DataFrame's rows: numbers (:class:`_Num`) or factors (:class:`_Fac`).

A column becomes a number or a factor by R's rules (:func:`_series_value`; the rules and the order of a factor's
levels are in :mod:`glmmlab.services.modeling.modelframe`'s docstring), and :class:`_Data` evaluates every
expression of a formula (arithmetic, ``I()``, ``log()``, ``scale()``, ``factor()``...) on every input row, with
messages that name the column or the term. The same evaluation serves a fit (``modelframe``) and new rows
(``prediction``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import BinOp, Call, Expr, Name, Num, Paren, Unary, format_number, is_syntactic
from glmmlab.engine.model.limits import LIMITS, echo, shorten
from glmmlab.services.modeling.frames import level_order


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
        columns = df.columns.tolist()  # a list once (iterating a pandas Index of strings costs 1 us a name)
        # the columns a message names: the whole dataset's when only the formula's columns were read
        self.known = [str(c) for c in (known_columns if known_columns is not None else columns)]
        self.n = len(df)
        self.formula = formula_text
        self.names = {str(c): c for c in columns}
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
            if e.name == "pi" and e.name not in self.names:  # R's constant, unless the data have such a column
                return _Num(np.full(self.n, np.pi), np.zeros(self.n, dtype=bool))
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
                         "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos}[fn](x)
            return self._checked(e, r, miss, used_in)
        raise GlmmInputError(f"cannot evaluate {e.deparse()!r} in {used_in}")  # pragma: no cover

    def _arith_arg(self, arg: Expr, whole: Expr, used_in: str) -> _Num:
        v = self.eval(arg, used_in)  # a column met again (cbind(s, n - s)) is read once
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
    if isinstance(dt, np.dtype) and dt.kind in "fiu":  # numpy's numbers: NaN is their only missing value
        vals = np.array(s.to_numpy(), dtype=float)  # a copy: the frame's arrays are not the data's
        miss = ~np.isfinite(vals)
        if miss.any():
            vals[miss] = np.nan
        return _Num(vals, miss)
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
    if isinstance(dt, pd.StringDtype) or dt == object:  # noqa: E721  (a dtype compared with object dtype)
        # as Python objects (missing values None): half the time of factorizing an Arrow-backed column and
        # iterating its uniques
        codes, uniques = pd.factorize(s.to_numpy(dtype=object, na_value=None), use_na_sentinel=True)
        uniques = uniques.tolist()
    else:
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
