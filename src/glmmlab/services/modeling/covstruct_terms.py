"""The random terms of a formula that carry a covariance structure (``cs``, ``ar1``, ``toep``, ``ou``, ...),
checked against the data and, for ``ou``, given their columns.

- ``ar1(0 + time | g)`` and ``toep(0 + time | g)``: ``time`` must be a factor (one column per level, in level
  order: the occasions), without an intercept column; when its levels look numeric (``1``, ``2``, ... or a common
  prefix and numbers, ``t1``, ``t2``, ``v01``) they must be equally spaced in that order.
- ``ou(0 + times | g)``: ``times`` must be a numeric column; the term has one column per distinct time (sorted,
  named ``times<value>``, an indicator of the row's time) and the correlation decays with the distance between
  the times (glmmTMB writes ``ou(numFactor(times) + 0 | g)``; here the numeric column itself says it).
- ``cs`` needs two or more columns.
"""

from __future__ import annotations

import re

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.formula import RandomPart, format_number
from glmmlab.engine.model.limits import shorten
from glmmlab.services.modeling.variables import _Fac, _Num

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _numeric_levels(levels: list[str]) -> np.ndarray | None:
    """The numbers the levels spell (``1``, ``2.5``; or after a common prefix: ``t1``, ``v01``), else None."""
    if not levels:
        return None
    k = 0
    first = levels[0]
    while k < len(first) and not (first[k].isdigit() or first[k] in "+-."):
        k += 1
    prefix = first[:k]
    if not all(lv.startswith(prefix) and _NUMBER.fullmatch(lv[k:]) for lv in levels):
        return None
    return np.array([float(lv[k:]) for lv in levels])


def _a(kind: str) -> str:
    """The structure's name with its article: "an ar1", "a toep"."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _single_variable(r: RandomPart):
    """The term's one variable when it has exactly one (``ar1(0 + time | g)``, ``toep(x | g)``), else None."""
    terms = r.lhs.terms
    return terms[0].variables[0] if len(terms) == 1 and len(terms[0].variables) == 1 else None


def _one_variable(r: RandomPart, ftxt: str, kind: str, what: str):
    """The one variable of ``kind(0 + v | g)``, refusing an intercept or more than one term."""
    if r.lhs.intercept:
        single = _single_variable(r)
        name = "time" if single is None else single.deparse()
        raise GlmmInputError(
            f"the random term {shorten(r.written)} of {ftxt} has an intercept column, which {_a(kind)} structure "
            f"cannot hold ({what}): write {kind}(0 + {name} | {r.component}) (with '0 +')")
    if len(r.lhs.terms) != 1 or len(r.lhs.terms[0].variables) != 1:
        raise GlmmInputError(
            f"the random term {shorten(r.written)} of {ftxt} must have one variable after '0 +' ({what}), as "
            f"{kind}(0 + time | {r.component})")
    return r.lhs.terms[0].variables[0]


def check_structured(r: RandomPart, values: dict, ftxt: str) -> None:
    """Refuse, naming the term, a structure its variables cannot carry (before any design is built)."""
    kind = r.kind
    if kind in ("ar1", "toep"):
        what = "its columns are the levels of a factor of occasions"
        # a numeric variable is named first, with or without an intercept (toep(x | g) on a numeric slope)
        single = _single_variable(r)
        v = single if single is not None and not isinstance(values[single], _Fac) else _one_variable(
            r, ftxt, kind, what)
        val = values[v]
        if not isinstance(val, _Fac):
            raise GlmmInputError(
                f"{v.deparse()!s} in the random term {shorten(r.written)} of {ftxt} is numeric, but {kind}() needs a "
                f"factor of equally spaced occasions (one column per level): make it a factor, "
                f"{kind}(0 + factor({v.deparse()}) | {r.component}), or use ou(0 + {v.deparse()} | {r.component}) "
                "for unequally spaced numeric times")
    elif kind == "ou":
        v = _one_variable(r, ftxt, kind, "its columns are the distinct times of a numeric column")
        if not isinstance(values[v], _Num):
            raise GlmmInputError(
                f"{v.deparse()} in the random term {shorten(r.written)} of {ftxt} is a factor, but ou() needs a "
                f"numeric column of times (the distances between them set the correlation); for equally spaced "
                f"occasions use ar1(0 + {v.deparse()} | {r.component})")


def check_columns(r: RandomPart, names: list[str], levels: list[str] | None, ftxt: str) -> None:
    """The term's design columns against its structure: ``cs``/``ar1``/``toep`` need two or more; ``ar1`` and
    ``toep`` occasions whose levels look numeric must be equally spaced (``levels``: the factor's used levels)."""
    kind = r.kind
    if kind in ("cs", "ar1", "toep") and len(names) < 2:
        raise GlmmInputError(
            f"the random term {shorten(r.written)} of {ftxt} has {len(names)} column; {_a(kind)} structure needs two "
            f"or more (a correlation between them): use (1 | {r.component}) for a single effect")
    if kind in ("ar1", "toep") and levels is not None:
        nums = _numeric_levels(levels)
        if nums is not None and len(nums) > 2:
            steps = np.diff(nums)
            if not (np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-9, atol=0.0)):
                raise GlmmInputError(
                    f"the occasions of {shorten(r.written)} in {ftxt} are not equally spaced in level order "
                    f"({', '.join(levels[:8])}{', ...' if len(levels) > 8 else ''}): {kind}() takes its lag from the "
                    f"level positions, so use ou() on a numeric column of the times (ou(0 + times | {r.component})), "
                    "or relabel the levels so that they sort in time order (v01, v02, ...)")


def ou_columns(r: RandomPart, values: dict, rows: np.ndarray) -> tuple[np.ndarray, list[str], tuple[float, ...]]:
    """``ou(0 + times | g)``: one indicator column per distinct time on the rows used, its names and the times."""
    v = r.lhs.terms[0].variables[0]
    t = np.asarray(values[v].values, dtype=float)[rows]
    uniq, codes = np.unique(t, return_inverse=True)
    Z = np.zeros((rows.size, uniq.size))
    Z[np.arange(rows.size), codes] = 1.0
    label = v.deparse()
    return Z, [f"{label}{format_number(float(s))}" for s in uniq], tuple(float(s) for s in uniq)


def term_levels(r: RandomPart, used: dict) -> list[str] | None:
    """The used levels of the factor of an ``ar1``/``toep`` term (None for the others)."""
    if r.kind not in ("ar1", "toep"):
        return None
    u = used.get(r.lhs.terms[0].variables[0])
    return None if u is None else list(u.levels)


def label(r: RandomPart) -> str:
    """The term as glmmTMB labels it, without its structure keyword: ``0 + visit | Mare``, ``Days | Subject``."""
    lhs = r.lhs.labels
    parts = ([] if r.lhs.intercept else ["0"]) + lhs
    return f"{' + '.join(parts) if parts else '1'} | {r.component}"


def ou_new_columns(r: RandomPart, values: dict, rows: np.ndarray, names: list[str],
                   ftxt: str) -> tuple[np.ndarray, list[str]]:
    """``ou(0 + times | g)`` on new rows: the indicator of each fitted time (``names``); a time the fit did not
    have is refused (its effect is not among the fitted ones)."""
    Z, new_names, _ = ou_columns(r, values, rows)
    pos = {n: k for k, n in enumerate(names)}
    unknown = [n for n in new_names if n not in pos]
    if unknown:
        raise GlmmInputError(
            f"the new rows have times the fit of {shorten(r.written)} in {ftxt} did not have ({', '.join(unknown[:5])}"
            f"{', ...' if len(unknown) > 5 else ''}); predictions with ou() terms need times among the fitted ones")
    out = np.zeros((rows.size, len(names)))
    for j, n in enumerate(new_names):
        out[:, pos[n]] = Z[:, j]
    return out, list(names)
