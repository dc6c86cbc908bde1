"""A typed formula read back into the GLMM form's controls (issue 11, point 5).

The workbench's form builds an lme4 formula from its controls (response, fixed effects, factors, interactions,
one row per grouping variable with its intercept, slopes, correlated or not and "nested in", offset, binomial
trials). When a person types a formula instead, :func:`form_of` says how the form's controls would express it,
or why they cannot; :func:`signature` is the model a formula describes once lme4's expansion is done (the fixed
terms in order, the intercept, the offsets, the random terms in order), so two formulas written differently, such
as ``(1 + x || g)`` and ``(1 | g) + (0 + x | g)``, or ``(1 | a/b)`` and ``(1 | a) + (1 | b:a)``, have the same
signature. The page fills the form from :func:`form_of` only when the form's own formula for it has the typed
formula's signature, so the form never claims a model it does not run.

Parsing is the engine's (:func:`glmmlab.engine.model.formula.parse_formula`); no second parser.
"""

from __future__ import annotations

from typing import Any, Iterable

from glmmlab.engine.model.formula import BinOp, Call, Expr, Formula, Name, RandomPart
from glmmlab.engine.model.terms import ModelFrame

__all__ = ["factor_levels", "form_of", "signature"]


def signature(f: Formula) -> str:
    """The model ``f`` describes, as text: equal for formulas that lme4 expands to the same terms."""
    fixed = [t.label for t in f.fixed.terms]
    random = [(r.component, r.lhs.intercept, tuple(t.label for t in r.lhs.terms))
              + ((r.structure,) if r.structure not in ("", "us") else ()) for r in f.random]
    return repr((f.response_label, f.fixed.intercept, fixed, [o.deparse() for o in f.fixed.offsets], random))


def factor_levels(mf: ModelFrame) -> dict[str, dict[str, Any]]:
    """The factors of the model that are plain columns, by column name: their levels on the rows used in R's
    default order and the level coded as the reference (what the form's "Reference level" offers)."""
    assert mf.recipe is not None  # build_model_frame always records one
    labels = {v.deparse(): v.name for v in mf.recipe.levels if isinstance(v, Name)}
    return {labels[k]: v for k, v in mf.recipe.factors.items() if k in labels}


class _NotForm(Exception):
    """The formula says something the form's controls cannot express (the message says what)."""


def form_of(f: Formula, mf: ModelFrame, columns: Iterable[Any], family: str) -> tuple[dict[str, Any] | None, str]:
    """How the form expresses ``f`` (built as ``mf`` on the dataset whose ``columns`` are ColumnInfo-like objects
    with ``name``, ``numeric``, ``categorical`` and ``dtype``): ``(form, "")`` or ``(None, why not)``.

    ``form`` has ``response``, ``trials`` (binomial ``cbind(y, n - y)``), ``intercept``, ``fixed`` (numeric
    effects), ``factors``, ``interactions`` (lists of effects), ``terms`` (every fixed term as its list of columns,
    in the formula's expanded order: the main effects, then the interactions), ``group`` and ``first`` (the Group
    Variable's row:
    ``intercept``, ``slopes``, ``correlated``; with a covariance structure also ``structure``, its keyword
    (``diag``, ``cs``, ``ar1``, ``toep`` or ``ou``), and ``time``, for the last three the column of occasions or
    times, ``0 + time``), ``rows`` (further grouping variables, each also with ``group`` and
    ``nested_in``) and ``offset``."""
    try:
        return _form(f, mf, {c.name: c for c in columns}, family), ""
    except _NotForm as exc:
        return None, str(exc)


def _column(e: Expr, cols: dict[str, Any], what: str) -> str:
    if not isinstance(e, Name) or e.name not in cols:
        raise _NotForm(f"{e.deparse()} ({what}) is not a plain column")
    return e.name


def _form(f: Formula, mf: ModelFrame, cols: dict[str, Any], family: str) -> dict[str, Any]:
    assert mf.recipe is not None and f.response is not None
    kinds = mf.recipe.column_kinds
    out: dict[str, Any] = {"trials": None, "offset": None, "intercept": f.fixed.intercept}
    resp = f.response
    if isinstance(resp, Call) and resp.fn == "cbind":
        s, rest = resp.args
        successes_of_trials = family in ("binomial", "betabinomial")
        if not (successes_of_trials and isinstance(s, Name) and isinstance(rest, BinOp) and rest.op == "-"
                and isinstance(rest.left, Name) and rest.right == s):
            raise _NotForm(f"the response {resp.deparse()} is not cbind(successes, trials - successes)")
        out["response"] = _column(s, cols, "the response")
        out["trials"] = _column(rest.left, cols, "the trials")
        if not cols[out["trials"]].numeric:
            raise _NotForm(f"the trials column {out['trials']} is not numeric")
    else:
        out["response"] = _column(resp, cols, "the response")
    c = cols[out["response"]]
    if not (c.numeric or c.dtype == "boolean"):
        raise _NotForm(f"the response {out['response']} is not a numeric or boolean column")
    if len(f.fixed.offsets) > 1:
        raise _NotForm("the formula has more than one offset")
    if f.fixed.offsets:
        out["offset"] = _column(f.fixed.offsets[0], cols, "the offset")
        if not cols[out["offset"]].numeric:
            raise _NotForm(f"the offset {out['offset']} is not a numeric column")

    fixed: list[str] = []
    factors: list[str] = []
    effects: list[str] = []
    interactions: list[list[str]] = []
    terms: list[list[str]] = []
    for t in f.fixed.terms:
        names = [_column(v, cols, "a fixed effect") for v in t.variables]
        terms.append(names)
        if t.degree == 1:
            name = names[0]
            if kinds.get(name) == "numeric" and cols[name].numeric:
                fixed.append(name)
            elif kinds.get(name) == "factor" and cols[name].categorical:
                factors.append(name)
            else:
                raise _NotForm(f"{name} is neither a numeric nor a categorical column")
            effects.append(name)
        else:
            missing = [n for n in names if n not in effects]
            if missing:
                raise _NotForm(f"the interaction {t.label} needs {', '.join(missing)} as a fixed effect too")
            interactions.append(names)
    out.update(fixed=fixed, factors=factors, interactions=interactions, terms=terms)

    rows: list[dict[str, Any]] = []
    by_component: dict[str, dict[str, Any]] = {}
    for r in f.random:
        row = by_component.get(r.component)
        if row is None:
            row = _grouping(r, cols)
            by_component[r.component] = row
            rows.append(row)
        elif rows[-1] is not row:
            raise _NotForm(f"the terms of {r.component} are not written together")
        else:
            row["parts"] += 1
        kind = r.structure if r.structure not in ("", "us") else ""
        if kind or row.get("structure"):
            if row["parts"] > 1:
                raise _NotForm(f"{r.component} has a covariance structure and another term (the form has one term "
                               "per cluster variable with a structure)")
            row["structure"] = kind
        if kind in ("ar1", "toep", "ou"):
            if r.lhs.intercept or len(r.lhs.terms) != 1 or r.lhs.terms[0].degree != 1:
                raise _NotForm(f"the {kind} term of {r.component} is not {kind}(0 + time | {r.component})")
            row["time"] = _column(r.lhs.terms[0].variables[0], cols, f"the times of {r.component}")
            continue
        lhs = [_column(v, cols, f"a random slope of {r.component}") for t in r.lhs.terms for v in t.variables]
        if any(t.degree > 1 for t in r.lhs.terms):
            raise _NotForm(f"a random slope of {r.component} is an interaction")
        for name in lhs:
            if name in row["slopes"]:
                raise _NotForm(f"{r.component} has the slope {name} twice")
            if name not in effects:
                raise _NotForm(f"the random slope {name} of {r.component} is not a fixed effect")
        if r.lhs.intercept:
            if row["intercept"]:
                raise _NotForm(f"{r.component} has two intercepts")
            if row["slopes"]:
                raise _NotForm(f"the intercept of {r.component} comes after its slopes")
            row["intercept"] = True
        row["slopes"].extend(lhs)
    for row in rows:
        # one term per column written separately: uncorrelated (||); one term with them all: correlated
        row["correlated"] = row.pop("parts") == 1
    first = rows[0] if rows and rows[0]["nested_in"] is None else None
    out["group"] = first["group"] if first else None
    out["first"] = {k: first[k] for k in ("intercept", "slopes", "correlated", "structure", "time") if k in first} \
        if first else {"intercept": True, "slopes": [], "correlated": True}
    out["rows"] = rows[1:] if first else rows
    return out


def _grouping(r: RandomPart, cols: dict[str, Any]) -> dict[str, Any]:
    names = [_column(g, cols, "a grouping variable") for g in r.group]
    # any column can hold groups (numeric identifiers included: their values are the groups' labels)
    if len(names) > 2:
        raise _NotForm(f"the grouping {r.component} nests more than two variables")
    # the form writes "b nested in a" as lme4 names a/b's inner factor: (1 | b:a)
    return {"group": names[0], "nested_in": names[1] if len(names) == 2 else None, "intercept": False,
            "slopes": [], "parts": 1}
