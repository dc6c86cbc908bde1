"""Diagnostic plots of a saved model as PNG images (matplotlib, Agg backend: no display needed), drawn at twice
their display size (:data:`DISPLAY_SIZE`) so they stay sharp on high-density screens and in reports.

- ``residuals``: deviance residuals against fitted values; for the binomial family, binned residuals (the mean
  observed-minus-fitted in bins of the fitted values, with +-2 SE bands), since the raw residuals of 0/1 data only
  form two bands;
- ``qq``: normal Q-Q plot of the deviance residuals;
- ``caterpillar``: the groups' random intercepts (BLUPs / conditional modes), sorted, with +-1.96 SE bars; a general
  model (slopes, several grouping factors) has one per grouping factor and term, ``caterpillar-1``,
  ``caterpillar-2``... in the order of the result's BLUP rows;
- ``observed``: observed response against fitted values, with the line y = x.
"""

from __future__ import annotations

import io
import threading
from statistics import NormalDist
from typing import Any

import numpy as np

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.project import catalogue
from glmmlab.services.project.store import Project
from glmmlab.services.views.result_view import is_general
from glmmlab.services.workbench.models import diagnostics_of, get_model

PLOTS = {
    "residuals": "Residuals vs Fitted",
    "qq": "Normal Q-Q of Residuals",
    "caterpillar": "Caterpillar Plot of Random Intercepts",
    "observed": "Observed vs Fitted",
}
BINNED_TITLE = "Binned Residuals vs Fitted"
DISPLAY_SIZE = (504, 360)  # CSS pixels; the PNG has twice as many in each direction
_FIGSIZE, _DPI = (4.2, 3.0), 240  # a small figure: its text is large beside the data
_LOCK = threading.Lock()  # pyplot's state is global; draw one figure at a time
MAX_POINTS = 20_000


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _thin(n: int) -> np.ndarray:
    """Row positions to draw: all of them up to MAX_POINTS, else an evenly spaced subset (plots stay readable)."""
    return np.arange(n) if n <= MAX_POINTS else np.linspace(0, n - 1, MAX_POINTS).astype(int)


def caterpillar_terms(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(component, term) of each caterpillar plot of a general model, in the order of the BLUP rows."""
    return list(dict.fromkeys((b["component"], b["term"]) for b in result.get("blup", [])))


def titles(result: dict[str, Any]) -> dict[str, str]:
    """The plots' titles for this model (the residual plot of a binomial model is binned; a general model has a
    caterpillar plot per grouping factor and term)."""
    out = dict(PLOTS)
    if (result.get("model") or {}).get("family") == "binomial":
        out["residuals"] = BINNED_TITLE
    if is_general(result):
        out.pop("caterpillar")
        observed = out.pop("observed")
        for i, (comp, term) in enumerate(caterpillar_terms(result), 1):
            out[f"caterpillar-{i}"] = f"Caterpillar Plot: {term} | {comp}"
        out["observed"] = observed
    return out


def _observed(project: Project, model: dict[str, Any], rows: np.ndarray, n: int) -> np.ndarray:
    """The response on the fit's rows: the column, or for a formula's response (``cbind(s, n - s)``, ``log(y)``)
    the model frame's response built again from the dataset."""
    result = model["result"]
    m = result["model"]
    response = m["response"]
    try:
        cols = catalogue.get_dataset(project, model["dataset_id"]).columns
    except NotFound:
        raise ServiceError(f"The dataset of model '{model['name']}' was deleted.") from None
    names = [c.name for c in cols]
    if response in names and m["family"] != "ordinal":  # an ordinal response: its category numbers, below
        frame = catalogue.read_frame(project, model["dataset_id"], [response])
        y = frame[response].to_numpy(dtype=float, na_value=np.nan)
        return y[rows] if rows.size and rows.max() < y.size else np.full(n, np.nan)
    formula = m.get("formula") or ""
    wanted = [c for c in names if c in formula or c == m.get("weights")]
    try:
        mf = build_model_frame(catalogue.read_frame(project, model["dataset_id"], wanted), formula,
                               family=m["family"], weights=m.get("weights"), offset=m.get("offset"),
                               response_levels=m.get("levels"))
    except Exception:  # noqa: BLE001 - the data changed since the fit: no observed values to draw
        return np.full(n, np.nan)
    by_row = dict(zip(np.asarray(mf.rows).tolist(), np.asarray(mf.y, dtype=float).tolist()))
    return np.array([by_row.get(int(r), np.nan) for r in rows], dtype=float)


def binned_residuals(fitted: np.ndarray, observed: np.ndarray) -> dict[str, np.ndarray]:
    """Bins of about equal size along the fitted values: mean fitted, mean residual (observed - fitted) and the
    +-2 SE band 2 sqrt(p (1 - p) / n) of each bin."""
    ok = np.isfinite(fitted) & np.isfinite(observed)
    f, r = fitted[ok], observed[ok] - fitted[ok]
    n = f.size
    if n == 0:
        return {"fitted": np.array([]), "residual": np.array([]), "band": np.array([])}
    n_bins = int(min(50, max(1, min(n // 5, np.floor(np.sqrt(n))))))
    order = np.argsort(f, kind="stable")
    bins = np.array_split(order, n_bins)
    mf = np.array([f[b].mean() for b in bins])
    mr = np.array([r[b].mean() for b in bins])
    band = np.array([2 * np.sqrt(max(p * (1 - p), 0.0) / len(b)) for p, b in zip(mf, bins)])
    return {"fitted": mf, "residual": mr, "band": band}


def plot_png(project: Project, model_id: int, kind: str, fmt: str = "png") -> bytes:
    """One diagnostic plot of the saved model as PNG (or ``fmt="svg"``: SVG) bytes."""
    model = get_model(project, model_id)
    result = model["result"] or {}
    _known(result, kind)
    diag = diagnostics_of(project, model)
    if diag is None:
        raise ServiceError(f"The per-row diagnostics of model '{model['name']}' were deleted with its diagnostics "
                           "dataset; run the model again to plot them.")
    return draw(project, model, diag, kind, fmt)


def run_titles(result: dict[str, Any]) -> dict[str, str]:
    """The plots the GLMM tab shows right after a run: those of :func:`titles`, without the Normal Q-Q for a
    binomial model (its deviance residuals are not normal; the binned residuals take its place)."""
    out = titles(result)
    if (result.get("model") or {}).get("family") == "binomial":
        out.pop("qq", None)
    return out


def title_of(result: dict[str, Any], kind: str) -> str:
    """The title of plot ``kind`` of this model (a Q-Q of a binomial model, not listed, still has one)."""
    return _known(result, kind)[kind]


def _known(result: dict[str, Any], kind: str) -> dict[str, str]:
    names = titles(result)
    if kind not in names and kind not in PLOTS:
        raise NotFound(f"There is no plot called {kind!r}; choose one of {', '.join(names)}.")
    return {**PLOTS, **names}


def fit_plot(project: Project, name: str, dataset_id: Any, result: dict[str, Any], kind: str,
             fmt: str = "png") -> bytes:
    """A plot of a fit that is not saved (the GLMM tab's run): ``result`` is its document with the per-row
    diagnostics (:func:`glmmlab.services.workbench.fits.full_result`), ``name`` what the title calls it."""
    _known(result, kind)
    diag = result.get("diagnostics")
    if not diag:
        raise ServiceError("This fit has no per-row diagnostics to plot.")
    return draw(project, {"name": name, "result": result, "dataset_id": dataset_id}, diag, kind, fmt)


def draw(project: Project, model: dict[str, Any], diag: dict[str, Any], kind: str, fmt: str = "png") -> bytes:
    """Draw plot ``kind`` of ``model`` ({name, result, dataset_id}) from its per-row diagnostics ``diag``."""
    if fmt not in ("png", "svg"):
        raise NotFound(f"Plots come as png or svg, not {fmt!r}.")
    result = model["result"] or {}
    names = _known(result, kind)
    fitted = _arr(diag.get("fitted_values", []))
    resid = _arr(diag.get("deviance_residuals", []))
    observed = None
    binned = kind == "residuals" and result["model"]["family"] == "binomial"
    if kind == "observed" or binned:
        rows = np.asarray(diag.get("row", []), dtype=int)
        try:
            observed = _observed(project, model, rows, fitted.size)
        except NotFound:
            response = result["model"]["response"]
            raise ServiceError(f"The dataset of model '{model['name']}' no longer has column '{response}'.") from None

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with _LOCK:
        fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
        ax = fig.add_subplot()
        title = f"{names[kind]} — {model['name']}" if model["name"] else names[kind]
        if binned:
            assert observed is not None  # read above for the binned residuals
            b = binned_residuals(fitted, observed)
            ax.fill_between(b["fitted"], -b["band"], b["band"], color="#9bb7e8", alpha=.35, lw=0)
            ax.plot(b["fitted"], b["residual"], "o", ms=4, color="#2f6fdb")
            ax.axhline(0.0, color="#c0392b", lw=1)
            ax.set_xlabel(f"Fitted values ({len(b['fitted'])} bins; band ±2 SE)")
            ax.set_ylabel("Mean residual (observed − fitted)")
        elif kind == "residuals":
            idx = _thin(fitted.size)
            ax.scatter(fitted[idx], resid[idx], s=8, alpha=.45, color="#2f6fdb", edgecolors="none")
            ax.axhline(0.0, color="#c0392b", lw=1)
            ax.set_xlabel("Fitted values")
            ax.set_ylabel("Deviance residuals")
        elif kind == "qq":
            r = np.sort(resid[np.isfinite(resid)])
            n = r.size
            theo = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]) if n else np.array([])
            idx = _thin(n)
            ax.scatter(theo[idx], r[idx], s=8, alpha=.5, color="#2f6fdb", edgecolors="none")
            if n > 1:
                q1, q3 = np.percentile(r, [25, 75])
                t1, t3 = NormalDist().inv_cdf(.25), NormalDist().inv_cdf(.75)
                slope = (q3 - q1) / (t3 - t1)
                ax.axline((t1, q1), slope=slope, color="#c0392b", lw=1)
            ax.set_xlabel("Theoretical normal quantiles")
            ax.set_ylabel("Deviance residuals (sorted)")
        elif kind.startswith("caterpillar"):
            blup = result.get("blup", [])
            if kind != "caterpillar":
                comp, term = caterpillar_terms(result)[int(kind.split("-")[1]) - 1]
                blup = [b for b in blup if b["component"] == comp and b["term"] == term]
            est = _arr([b["value"] if "value" in b else b["random_intercept"] for b in blup])
            se = _arr([b["std_error"] for b in blup])
            order = np.argsort(est, kind="stable")
            pos = np.arange(len(order))
            ax.errorbar(est[order], pos, xerr=1.96 * se[order], fmt="o", ms=3, color="#2f6fdb",
                        ecolor="#9bb7e8", elinewidth=1)
            ax.axvline(0.0, color="#c0392b", lw=1)
            if len(order) <= 40:
                ax.set_yticks(pos, [str(blup[i]["group"]) for i in order], fontsize=7 if len(order) <= 25 else 5.5)
            else:
                ax.set_yticks([])
                ax.set_ylabel(f"{len(order)} groups, sorted")
            ax.set_xlabel("Random intercept ± 1.96 SE" if kind == "caterpillar" else
                          f"{comp}: {term} ± 1.96 SE" if len(f"{comp}: {term}") < 40 else "Conditional mode ± 1.96 SE")
        else:
            idx = _thin(fitted.size)
            assert observed is not None  # read above for this plot
            ax.scatter(fitted[idx], observed[idx], s=8, alpha=.45, color="#2f6fdb", edgecolors="none")
            finite = np.concatenate([fitted[np.isfinite(fitted)], observed[np.isfinite(observed)]])
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                ax.plot([lo, hi], [lo, hi], color="#c0392b", lw=1)
            ax.set_xlabel("Fitted values")
            ax.set_ylabel(f"Observed {result['model']['response']}")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=.25)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    return buf.getvalue()


_BY_COLOURS = ("#2f6fdb", "#c0392b", "#2e8b57", "#8e44ad", "#d4820f", "#17a2b8", "#6c757d", "#b5651d")


def effect_plot(view: dict[str, Any], title: str = "", fmt: str = "png") -> bytes:
    """The effect plot of a term from :func:`glmmlab.services.workbench.fits.marginal_view`'s answer: predicted
    values on the response scale over a covariate (a line with its confidence band, one per level of ``by``) or over a
    factor's
    levels (points with interval bars, side by side per level of ``by``)."""
    if fmt not in ("png", "svg"):
        raise NotFound(f"Plots come as png or svg, not {fmt!r}.")
    eff = view["effects"]
    rows = eff["rows"]
    by = eff.get("by")
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("by") if by else None, []).append(r)
    num = lambda v: np.nan if v is None else float(v)  # noqa: E731

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with _LOCK:
        fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
        ax = fig.add_subplot()
        if eff["kind"] == "line":
            for k, (level, rs) in enumerate(groups.items()):
                colour = _BY_COLOURS[k % len(_BY_COLOURS)]
                x = np.array([num(r["x"]) for r in rs])
                ax.fill_between(x, [num(r["lower"]) for r in rs], [num(r["upper"]) for r in rs], color=colour,
                                alpha=.18, lw=0)
                ax.plot(x, [num(r["estimate"]) for r in rs], color=colour, lw=1.6,
                        label=None if level is None else str(level))
        else:
            levels: list[Any] = []
            for rs in groups.values():
                levels += [r["x"] for r in rs if r["x"] not in levels]
            pos = {lv: i for i, lv in enumerate(levels)}
            n = len(groups)
            width = min(.6, .15 * (n - 1)) if n > 1 else 0.0
            for k, (level, rs) in enumerate(groups.items()):
                colour = _BY_COLOURS[k % len(_BY_COLOURS)]
                shift = (k / (n - 1) - .5) * width if n > 1 else 0.0
                x = np.array([pos[r["x"]] + shift for r in rs])
                est = np.array([num(r["estimate"]) for r in rs])
                err = np.array([[e - num(r["lower"]) for e, r in zip(est, rs)],
                                [num(r["upper"]) - e for e, r in zip(est, rs)]])
                ax.errorbar(x, est, yerr=err, fmt="o", ms=4, capsize=3, color=colour, elinewidth=1.2,
                            label=None if level is None else str(level))
            ax.set_xticks(range(len(levels)), [str(v) for v in levels],
                          fontsize=7 if len(levels) > 6 else None, rotation=45 if len(levels) > 8 else 0)
            ax.set_xlim(-.6, len(levels) - .4)
        if by:
            ax.legend(title=by, fontsize=6.5, title_fontsize=7, frameon=False)
        level_pct = f"{float(view.get('level') or 0.95) * 100:g}%"
        ax.set_xlabel(str(eff["x"]))
        response = str(view.get("response") or "response")
        ax.set_ylabel(f"Predicted {response if len(response) <= 24 else 'response'} ({level_pct} CI)", fontsize=8)
        plain = f"Effect of {view['term']}" + (f" by {by}" if by else "")
        ax.set_title(title if title and len(title) <= 56 else plain, fontsize=10)  # a long model name is left out
        ax.grid(True, alpha=.25)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    return buf.getvalue()


# -- simulation-based (DHARMa) residuals of a fitted model: two plots and the tests' table --------------------------
SIMULATED_PLOTS = {"simulated-qq": "Simulated Residuals: Uniform Q-Q",
                   "simulated-predicted": "Simulated Residuals vs Predicted"}
_SIMULATED: dict[tuple, Any] = {}  # the last few runs (the page asks for the tests, then for each plot)
_SIMULATED_KEPT = 6
_TEST_LABELS = {"uniformity": "Uniformity (Kolmogorov-Smirnov)", "dispersion": "Dispersion",
                "zero_inflation": "Zero-inflation", "outliers": "Outliers"}


def simulation_settings(n_sim: Any, seed: Any, conditional: Any) -> tuple[int, int, bool]:
    """The web form's Simulations, Random Seed and Conditional fields checked: (n_sim, seed, conditional); a bad
    value raises :class:`ServiceError` naming the field."""
    from glmmlab.services.modeling.simulated_residuals import DEFAULT_SEED, MAX_SIMULATIONS

    def whole(value: Any, default: int, label: str, low: int, high: int) -> int:
        if value is None or str(value).strip() == "":
            return default
        text = str(value).strip()
        if not text.isdigit() or not low <= int(text) <= high:
            raise ServiceError(f"{label} must be a whole number from {low:,} to {high:,} (got {text!r}).")
        return int(text)

    # held at the modes unless told otherwise (DHARMa's default since 0.5.0)
    cond = str(conditional).strip().lower() not in ("0", "false", "no", "off") if conditional is not None else True
    return (whole(n_sim, 250, "Simulations", 2, MAX_SIMULATIONS), whole(seed, DEFAULT_SEED, "Random Seed", 0,
                                                                         2**63 - 1), cond)


def simulated(result: Any, n_sim: int, seed: int, conditional: bool) -> Any:
    """The simulated residuals of a fitted model at these settings (the same run for the tests and both plots)."""
    key = (id(result), n_sim, seed, conditional)
    hit = _SIMULATED.get(key)
    if hit is not None and hit[0] is result:
        return hit[1]
    try:
        sr = result.simulate_residuals(n_sim, seed=seed, conditional=conditional)
    except ValueError as exc:  # GlmmInputError: a fit whose data are gone, a simulation that cannot be drawn
        raise ServiceError(str(exc)) from None
    _SIMULATED[key] = (result, sr)
    while len(_SIMULATED) > _SIMULATED_KEPT:
        _SIMULATED.pop(next(iter(_SIMULATED)))
    return sr


def simulated_view(sr: Any) -> dict[str, Any]:
    """The settings and tests of simulated residuals as the page shows them: ``settings``, ``tests`` (the JSON of
    each test) and ``table`` (columns Test, Statistic, p-value, Reading, as the result view's tables)."""
    from glmmlab.services.views.numbers import format_number

    doc = sr.to_dict()
    rows, cells = [], []
    for key, label in _TEST_LABELS.items():
        t = doc["tests"][key]
        p = t["p_value"]
        reading = "deviation significant" if p is not None and p < 0.05 else "n.s."
        rows.append([label, t["statistic"], p, reading])
        kind = "count" if key == "outliers" else "decimal"  # the outlier test's statistic is a number of rows
        cells.append([label, format_number(t["statistic"], kind), format_number(p, "p"), reading])
    table = {"name": "simulated_residuals", "title": "Simulated Residuals (DHARMa)",
             "columns": ["Test", "Statistic", "p-value", "Reading"], "kinds": ["text", "decimal", "p", "text"],
             "rows": rows, "cells": cells,
             "note": (f"{doc['n_sim']} simulations, seed {doc['seed']}; random effects "
                      f"{'held at their fitted modes' if doc['conditional'] else 'drawn afresh from their covariance'}"
                      ". Statistics: dispersion and zero-inflation as observed / simulated (1 expected), KS's D, "
                      "the number of outliers; two-sided p-values.")}
    return {"settings": {k: doc[k] for k in ("n_sim", "seed", "conditional", "method", "integer_response")},
            "tests": doc["tests"], "table": table}


def simulated_png(sr: Any, kind: str, name: str = "", fmt: str = "png") -> bytes:
    """Plot ``kind`` (``simulated-qq`` or ``simulated-predicted``) of simulated residuals as PNG or SVG bytes."""
    if fmt not in ("png", "svg"):
        raise NotFound(f"Plots come as png or svg, not {fmt!r}.")
    if kind not in SIMULATED_PLOTS:
        raise NotFound(f"There is no plot called {kind!r}; choose one of {', '.join(SIMULATED_PLOTS)}.")
    import matplotlib

    matplotlib.use("Agg", force=False)
    title = SIMULATED_PLOTS[kind].split(": ")[-1] if ": " in SIMULATED_PLOTS[kind] else SIMULATED_PLOTS[kind]
    title = f"{title} — {name}" if name and len(name) <= 30 else title
    with _LOCK:
        fig = sr.plot_qq(title=title) if kind == "simulated-qq" else sr.plot_vs_predicted(title=title)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    return buf.getvalue()


def simulated_report_items(sr: Any, name: str, owner: str) -> list[dict[str, Any]]:
    """The report items of simulated residuals: the tests' table and the two plots, titled ``"<name>: ..."``, each
    with a ``source`` of ``owner`` and the settings (so adding the same run twice adds nothing)."""
    import base64

    view = simulated_view(sr)
    t = view["table"]
    settings = f"n_sim={sr.n_sim}&seed={sr.seed}&conditional={str(sr.conditional).lower()}"
    items = [{"kind": "table", "title": f"{name}: {t['title']}",
              "payload": {"columns": t["columns"], "rows": t["rows"], "kinds": t["kinds"], "note": t["note"],
                          "source": f"{owner}:simulated:table?{settings}"}}]
    for kind, title in SIMULATED_PLOTS.items():
        png = simulated_png(sr, kind, name)
        items.append({"kind": "plot", "title": f"{name}: {title}",
                      "payload": {"png_base64": base64.b64encode(png).decode("ascii"), "note": t["note"],
                                  "source": f"{owner}:simulated:{kind}?{settings}"}})
    return items
