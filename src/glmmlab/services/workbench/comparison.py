"""Comparison of nested models by likelihood-ratio tests: lme4's ``anova(m1, m2, ...)`` for glmmlab fits.

One table for every front door (Python ``glmmlab.anova``, ``glmmlab compare``, the web's Compare Models dialog):
lme4's columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``, one row per model in order of ``npar``
(ties keep the order given), each row tested against the row before it, as ``anova.merMod`` does:
``Chisq = 2 max(0, logLik_i - logLik_(i-1))`` on ``Df = npar_i - npar_(i-1)`` degrees of freedom (no p-value
when Df is 0), ``deviance = -2 logLik``.

Gaussian + identity fits are REML fits in glmmlab; REML log-likelihoods of models with different fixed effects
are not comparable, so they are refitted by maximum likelihood first (lme4's "refitting model(s) with ML
(instead of REML)") and the table says so in its notes. Models are refused, with the reason, when they were
fitted to different rows or responses, to different families or links, or when a refit is needed and a fit
keeps no data (a Dask fit, or a model loaded from a project: the caller refits it from its dataset first).
Like lme4, nothing checks that the models are nested: that is the analyst's claim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.services.modeling.fitted import refit

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
REFIT_NOTE = "refitting model(s) with ML (instead of REML)"


def _is_reml(r: GlmmResult) -> bool:
    return r.family == "gaussian" and r.link == "identity" and r.method == "REML"


def _check_same_data(named: Sequence[tuple[str, GlmmResult]]) -> None:
    first_name, first = named[0]
    for name, r in named[1:]:
        if (r.family, r.link) != (first.family, first.link):
            raise GlmmInputError(
                f"models {first_name!r} ({first.family}/{first.link}) and {name!r} ({r.family}/{r.link}) have "
                "different families or links; a likelihood-ratio test compares models of one family and link")
        if r.model.get("response") != first.model.get("response"):
            raise GlmmInputError(
                f"models {first_name!r} and {name!r} have different responses ({first.model.get('response')!r} "
                f"and {r.model.get('response')!r}); compare models of the same response")
        if r.n_obs != first.n_obs:
            raise GlmmInputError(
                f"models {first_name!r} and {name!r} were fitted to different numbers of rows ({first.n_obs:,} and "
                f"{r.n_obs:,}): a variable one of them uses has missing values. Fit both to the rows complete for "
                "every variable of the larger model")
        if not np.array_equal(np.sort(np.asarray(r.rows)), np.sort(np.asarray(first.rows))):
            raise GlmmInputError(
                f"models {first_name!r} and {name!r} were fitted to different rows of the data; fit both to the "
                "same rows")
        mf_r, mf_first = r.model_frame(), first.model_frame()
        if mf_r is not None and mf_first is not None:
            same_y = np.allclose(_by_row(r, mf_r.y), _by_row(first, mf_first.y), rtol=1e-12, atol=0.0)
            w_r, w_f = mf_r.weights, mf_first.weights
            same_w = (w_r is None and w_f is None) or (
                w_r is not None and w_f is not None and np.allclose(_by_row(r, w_r), _by_row(first, w_f)))
            if not (same_y and same_w):
                raise GlmmInputError(
                    f"models {first_name!r} and {name!r} have different response values on the same rows: they "
                    "were fitted to different data; compare models of one data set")


def _by_row(r: GlmmResult, values: np.ndarray) -> np.ndarray:
    """A frame's per-row values in the order of the input rows."""
    rows = np.asarray(r.model_frame().rows)
    return np.asarray(values, dtype=float)[np.argsort(rows, kind="stable")]


def compare(named: Sequence[tuple[str, GlmmResult]]) -> pd.DataFrame:
    """lme4's anova table of ``named`` fits ((name, result) pairs); ``df.attrs["notes"]`` lists what was done
    (the ML refit) and ``df.attrs["formulas"]`` each row's model."""
    named = list(named)
    if len(named) < 2:
        raise GlmmInputError(f"a model comparison needs at least two models; got {len(named)}")
    names = [n for n, _ in named]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GlmmInputError(f"model names must differ; {', '.join(map(repr, dup))} is given twice")
    for name, r in named:
        if not isinstance(r, GlmmResult):
            raise GlmmInputError(f"{name!r} is not a fitted model (a GlmmResult); got {type(r).__name__}")
    _check_same_data(named)
    notes: list[str] = []
    if any(_is_reml(r) for _, r in named):
        missing = [n for n, r in named if _is_reml(r) and r.model_frame() is None]
        if missing:
            raise GlmmInputError(
                f"model(s) {', '.join(map(repr, missing))} must be refitted by maximum likelihood for the comparison "
                "(REML likelihoods of different models are not comparable), but keep no data (a Dask fit or a model "
                "loaded from a project). Fit them in memory, or with reml=False")
        notes.append(REFIT_NOTE)
        named = [(n, refit(r, reml=False, ddf="none") if _is_reml(r) else r) for n, r in named]
    order = sorted(range(len(named)), key=lambda i: named[i][1].k)  # stable: ties keep the order given
    named = [named[i] for i in order]
    ll = np.array([r.log_likelihood for _, r in named])
    npar = np.array([r.k for _, r in named])
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, np.diff(ll))])
    dfc = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        p = np.where(np.isfinite(dfc) & (dfc > 0), special.chdtrc(np.where(dfc > 0, dfc, 1.0), chisq), np.nan)
    df = pd.DataFrame({
        "npar": npar, "AIC": [r.aic for _, r in named], "BIC": [r.bic for _, r in named], "logLik": ll,
        "deviance": -2.0 * ll, "Chisq": chisq, "Df": dfc, "Pr(>Chisq)": p,
    }, index=pd.Index([n for n, _ in named], name="model"), columns=COLUMNS)
    df.attrs["notes"] = notes
    df.attrs["formulas"] = {n: r.formula for n, r in named}
    df.attrs["family"] = f"{named[0][1].family}/{named[0][1].link}"
    df.attrs["n_obs"] = int(named[0][1].n_obs)
    return df


def rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON rows: {"model", "formula", npar, AIC, ... (None where lme4 prints nothing)}."""
    out = []
    formulas = table.attrs.get("formulas", {})
    for name, rec in table.iterrows():
        row: dict[str, Any] = {"model": str(name), "formula": formulas.get(name)}
        for c in COLUMNS:
            v = float(rec[c])
            row[c] = (int(v) if c in ("npar", "Df") else v) if math.isfinite(v) else None
        out.append(row)
    return out


def _lme4_number(v: float, digits: int) -> str:
    return "" if not math.isfinite(v) else f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4g}"


def text(table: pd.DataFrame, data: str | None = None) -> str:
    """lme4's printed layout: the data, the models with their formulas, then the table with significance codes."""
    lines = []
    if data:
        lines.append(f"Data: {data}")
    lines.append("Models:")
    for name, f in table.attrs.get("formulas", {}).items():
        lines.append(f"{name}: {f}")
    cells = []
    for name, rec in table.iterrows():
        p = float(rec["Pr(>Chisq)"])
        p_text = "" if not math.isfinite(p) else ("< 2.2e-16" if p < 2.2e-16 else f"{p:.4g}")
        stars = "" if not math.isfinite(p) else ("***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05
                                                  else "." if p < 0.1 else "")
        cells.append([str(name), f"{int(rec['npar'])}", f"{rec['AIC']:.1f}", f"{rec['BIC']:.1f}",
                      f"{rec['logLik']:.2f}", f"{rec['deviance']:.1f}", _lme4_number(float(rec["Chisq"]), 5),
                      "" if not math.isfinite(float(rec["Df"])) else f"{int(rec['Df'])}", p_text, stars])
    head = ["", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)", ""]
    widths = [max(len(r[i]) for r in cells + [head]) for i in range(len(head))]
    fmt = lambda r: " ".join(  # noqa: E731
        (c.ljust(widths[i]) if i in (0, 9) else c.rjust(widths[i])) for i, c in enumerate(r)).rstrip()
    lines.append(fmt(head))
    lines.extend(fmt(r) for r in cells)
    lines.append("---")
    lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    for note in table.attrs.get("notes", []):
        lines.append(f"Note: {note}")
    if len(table) >= 2:
        lines.append(reading(table))
    return "\n".join(lines) + "\n"


def reading(table: pd.DataFrame) -> str:
    """One sentence that reads the last test of the table (the largest model against the one before it), e.g.
    "The model m2 fits better than m1: chi-squared(2) = 42.14, p < 0.001"."""
    names = [str(n) for n in table.index]
    last = table.iloc[-1]
    chisq, dfc, p = float(last["Chisq"]), float(last["Df"]), float(last["Pr(>Chisq)"])
    if not math.isfinite(p):
        return (f"Models {names[-2]} and {names[-1]} have the same number of parameters: no likelihood-ratio test; "
                f"compare their AIC ({table.iloc[-2]['AIC']:.1f} and {last['AIC']:.1f}).")
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    stat = f"χ²({int(dfc)}) = {chisq:.2f}, {p_text}"
    if p < 0.05:
        return f"The model {names[-1]} fits better than {names[-2]}: {stat}."
    return f"The model {names[-1]} does not fit significantly better than {names[-2]}: {stat}."


# -- saved models of a project (the web's Compare Models dialog) ----------------------------------------------------
KINDS = ["text", "count", "decimal", "decimal", "decimal", "decimal", "decimal", "count", "p"]


def load_saved(project: Any, model_ids: Sequence[Any]) -> dict[str, Any]:
    """What comparing saved models needs from the project: the saved models (one dataset, else
    :class:`ServiceError` naming both) and the dataset's columns they use. Fitting happens in
    :func:`compare_loaded`, after the project is released."""
    from glmmlab.services.errors import ServiceError
    from glmmlab.services.project import catalogue
    from glmmlab.services.workbench import models

    ids = list(dict.fromkeys(model_ids))
    if len(ids) < 2:
        raise ServiceError("Choose at least two saved models to compare.")
    saved = [models.get_model(project, i) for i in ids]
    first = saved[0]
    for m in saved[1:]:
        if m["dataset_id"] != first["dataset_id"]:
            raise ServiceError(
                f"“{first['name']}” was fitted to dataset “{first['dataset_name']}” and “{m['name']}” to "
                f"“{m['dataset_name']}”: models can only be compared on the same data. Choose models of one dataset.")
    columns = list(dict.fromkeys(c for m in saved for c in models.spec_columns(m["spec"])))
    return {"saved": saved, "frame": catalogue.read_frame(project, first["dataset_id"], columns),
            "dtypes": models.column_types(project, first["dataset_id"], columns)}


def compare_loaded(loaded: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """Refit each saved model from its dataset (saved models keep their result document, not the data) and compare
    them. The answer holds the table as the result view's tables are (columns, kinds, rows, cells), the notes, the
    sentence that reads it and each model's formula. A model that cannot be compared: :class:`ServiceError`."""
    from glmmlab.services.errors import ServiceError
    from glmmlab.services.views.numbers import format_rows
    from glmmlab.services.workbench.models import check_data, fit_form

    saved = loaded["saved"]
    try:
        fits = []
        for k, m in enumerate(saved):
            if progress is not None:
                progress(f"Refitting {m['name']}", k / len(saved))
            check_data(m, loaded["frame"], loaded.get("dtypes", {}))
            fit = fit_form(loaded["frame"], dict(m["spec"], ddf="none"))
            was = (m.get("result") or {}).get("n_obs")
            if was is not None and fit.n_obs != was:
                raise ServiceError(f"The dataset of “{m['name']}” has changed since it was saved ({fit.n_obs:,} rows "
                                   f"used now, {was:,} then); run the model again.")
            fits.append((m["name"], fit))
        table = compare(fits)
    except GlmmInputError as exc:
        raise ServiceError(str(exc)) from None
    keys = ["model"] + COLUMNS
    body = [[r[k] for k in keys] for r in rows(table)]
    return {"dataset_id": saved[0]["dataset_id"], "dataset_name": saved[0]["dataset_name"],
            "columns": ["Model"] + COLUMNS, "kinds": KINDS, "rows": body, "cells": format_rows(body, KINDS),
            "formulas": table.attrs["formulas"], "notes": list(table.attrs["notes"]), "reading": reading(table),
            "n_obs": table.attrs["n_obs"], "family": table.attrs["family"]}
