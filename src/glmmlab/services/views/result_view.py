"""The one view of a fit's result: its tables with their titles, column headers, labels, notes and number kinds,
and its warnings. The command line's text, the web pages and the reports all show these tables.

A table is a dict ``{"name", "title", "columns", "kinds", "rows", "cells", "note"}``: ``rows`` hold the values
(full precision; None for missing), ``cells`` the same values written by :mod:`glmmlab.services.views.numbers`, and
``kinds`` one kind per column (or, for Metric/Value tables, a list with one kind per row).
"""

from __future__ import annotations

import math
from typing import Any

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.modelled import HURDLE_BASE
from glmmlab.engine.inference.results import exp_label
from glmmlab.engine.inference.wald import z_quantile
from glmmlab.services.views.numbers import format_rows

TABLE_NAMES = ("random-effects", "icc", "fixed-effects", "thresholds", "omnibus", "zi-fixed-effects",
               "disp-fixed-effects", "model-fit", "glm-comparison", "blup")
ICC_NA = "N/A (ICC not defined)"


def level_text(conf_level: float) -> str:
    """95%, 90%, 99.9%: the confidence level as the column headers write it."""
    return f"{conf_level * 100:g}%"


def formula(model: dict[str, Any]) -> str:
    """The model in lme4's notation: as given (``Reaction ~ Days + (Days | Subject)``), or ``y ~ 1 + x + (1 | g)``
    for the random-intercept form."""
    if model.get("formula"):
        parts = [f"{key} {model[key]}" for key in ("zi", "disp") if model.get(key)]  # glmmTMB's other formulas
        return "; ".join([model["formula"], *parts])
    terms = (["1"] if model["intercept"] else ["0"]) + list(model["fixed"])
    return f"{model['response']} ~ {' + '.join(terms)} + (1 | {model['group']})"


def reference_text(model: dict[str, Any]) -> str:
    """The factors' reference levels chosen for the fit (``reference level f = b``), or "" for R's defaults."""
    refs = model.get("reference_levels") or {}
    if not refs:
        return ""
    return f"reference level{'s' if len(refs) > 1 else ''} " + ", ".join(f"{k} = {v}" for k, v in refs.items())


def log_likelihood_label(kind: str, nagq: int = 1) -> str:
    if kind == "REML":
        return "REML Log-Likelihood"
    if kind == "Laplace":
        return "Log-Likelihood (Laplace)"
    if kind == "ML":
        return "Log-Likelihood (ML)"
    return f"Log-Likelihood (AGQ, {nagq} nodes)"


def fixed_effects_headers(family: str, link: str, conf_level: float, t_tests: bool = False) -> list[str]:
    """The Fixed Effects headers; ``t_tests``: Satterthwaite's t tests (a df column, t and Pr(>|t|), as lmerTest)."""
    lv = level_text(conf_level)
    tests = ["df", "t", "Pr(>|t|)"] if t_tests else ["z", "p"]
    headers = ["Variable", "Estimate", "Std. Error"] + tests + [f"Lower {lv}", f"Upper {lv}"]
    label = exp_label(family, link)
    if label:
        headers += [label, f"exp(Lower {lv})", f"exp(Upper {lv})"]
    return headers


# the symbols of the families' own parameters in the Model Fit table
PARAMETER_SYMBOLS = {"theta": "θ", "phi": "φ", "sigma": "σ", "df": "ν", "power": "p"}


def family_label(family: str) -> str:
    return FAMILIES[family].label if family in FAMILIES else family


def warnings_of(result: dict[str, Any]) -> list[str]:
    """The fit's warnings, with the singular-fit and convergence advice added when the engine did not word it."""
    items = list(result.get("warnings") or [])
    if result.get("singular") and not any("singular" in w.lower() for w in items):
        items.insert(0, "Singular fit: the random-intercept variance is at or near zero. Interpret the ICC and the "
                        "variance components with caution; a GLM without random effects may be more appropriate.")
    if result.get("converged") is False and not any("converge" in w.lower() for w in items):
        items.insert(0, "The fit did not converge. Increase Max Iterations (for example 100 -> 500) or relax the "
                        "Convergence Tolerance (1e-6 -> 1e-4).")
    return items


def _table(name: str, title: str, columns: list[str], kinds: list, rows: list[list[Any]],
           note: str | None = None, na: str | None = None) -> dict[str, Any]:
    cells = format_rows(rows, kinds)
    if na is not None:
        cells = [[na if v is None else c for v, c in zip(row, crow)] for row, crow in zip(rows, cells)]
    return {"name": name, "title": title, "columns": columns, "kinds": kinds, "rows": rows, "cells": cells,
            "note": note}


def fixed_effects_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    t_tests = bool(rows) and "df" in rows[0]
    keys = ["variable", "estimate", "std_error"] + (["df"] if t_tests else []) + ["statistic", "p_value", "lower",
                                                                                  "upper"]
    if rows and "exp_estimate" in rows[0]:
        keys += ["exp_estimate", "exp_lower", "exp_upper"]
    return keys, [[r.get(k) for k in keys] for r in rows]


def _exp(x: float | None) -> float | None:
    if x is None:
        return None
    try:
        v = math.exp(x)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def fixed_effects_at(result: dict[str, Any], conf_level: float, key: str = "fixed_effects") -> list[dict[str, Any]]:
    """The fixed-effects rows (``key``: of the zero or dispersion model, ``zi_fixed_effects``,
    ``disp_fixed_effects``) with Wald intervals at ``conf_level``, from the stored estimates and standard errors
    (the standard normal quantile, as the engine computes them); ``exp_*`` where the stored table has them."""
    z = float(z_quantile(conf_level))
    out = []
    for row in result.get(key, []):
        est, se = row.get("estimate"), row.get("std_error")
        lower = upper = None
        if est is not None and se is not None:
            lower, upper = est - z * se, est + z * se
        new = {"variable": row["variable"], "estimate": est, "std_error": se, "statistic": row.get("statistic"),
               "p_value": row.get("p_value"), "lower": lower, "upper": upper}
        if "df" in row:
            new["df"] = row["df"]
        if "exp_estimate" in row:
            new.update({"exp_estimate": row.get("exp_estimate"), "exp_lower": _exp(lower), "exp_upper": _exp(upper)})
        out.append(new)
    return out


def fixed_effects_table(result: dict[str, Any], conf_level: float | None = None) -> dict[str, Any]:
    """The Fixed Effects table, at the fit's level or recomputed at ``conf_level``."""
    m = result["model"]
    level = m["conf_level"] if conf_level is None else conf_level
    rows = result["fixed_effects"] if level == m["conf_level"] else fixed_effects_at(result, level)
    keys, values = fixed_effects_rows(rows)
    t_tests = "df" in keys
    note = f"Wald z tests and intervals at {level_text(level)} with the standard normal quantile."
    if t_tests:
        note = ("t tests with Satterthwaite's degrees of freedom (lmerTest's); Wald intervals at "
                f"{level_text(level)} with the standard normal quantile.")
    table = _table("fixed-effects", "Fixed Effects", fixed_effects_headers(m["family"], m["link"], level, t_tests),
                   ["text", "decimal", "decimal"] + (["df"] if t_tests else []) + ["decimal", "p"]
                   + ["decimal"] * (len(keys) - 5 - t_tests), values, note=note)
    table["keys"] = keys
    table["conf_level"] = level
    return table


SUBMODEL_TITLES = {"zi": ("Zero-Inflation Model", "Odds ratio"), "hurdle": ("Zero Model (hurdle: P(y = 0))",
                                                                           "Odds ratio"),
                   "disp": ("Dispersion Model", "exp(Est.)")}


def submodel_table(result: dict[str, Any], part: str, conf_level: float | None = None) -> dict[str, Any] | None:
    """The coefficients of the zero model (``part`` "zi") or the dispersion model ("disp") as a table like Fixed
    Effects (Wald z tests; exp(estimate) is the odds ratio of a structural zero, or of P(y = 0) for a hurdle
    family, and the ratio of the dispersion on glmmTMB's scale of it); None where the model has no such part."""
    key = f"{part}_fixed_effects"
    if not result.get(key):
        return None
    m = result["model"]
    level = m["conf_level"] if conf_level is None else conf_level
    rows = result[key] if level == m["conf_level"] else fixed_effects_at(result, level, key)
    keys, values = fixed_effects_rows(rows)
    hurdle = part == "zi" and m["family"] in HURDLE_BASE
    title, exp_name = SUBMODEL_TITLES["hurdle" if hurdle else part]
    lv = level_text(level)
    what = ("the log-odds of a zero" if hurdle else "the log-odds of a structural zero") if part == "zi" else \
        DISPERSION_SCALES.get(m["family"], "the log of the dispersion")
    table = _table(f"{part}-fixed-effects", title,
                   ["Variable", "Estimate", "Std. Error", "z", "p", f"Lower {lv}", f"Upper {lv}", exp_name,
                    f"exp(Lower {lv})", f"exp(Upper {lv})"],
                   ["text", "decimal", "decimal", "decimal", "p"] + ["decimal"] * (len(keys) - 5), values,
                   note=f"Model {m[part]}: coefficients on {what}; Wald z tests and intervals at {lv}.")
    table["keys"] = keys
    table["conf_level"] = level
    return table


# what a dispersion model's coefficients act on, by family (glmmTMB 1.1.5's parameterisation)
DISPERSION_SCALES = {"gaussian": "the log of the residual variance", "gamma": "the log of the Gamma shape (1 / CV²)",
                     "negbin": "the log of the negative binomial's θ", "nbinom1": "the log of NB1's φ",
                     "beta_family": "the log of the beta precision φ", "betabinomial": "the log of the precision φ",
                     "t_family": "the log of the t scale σ"}


def thresholds_table(result: dict[str, Any]) -> dict[str, Any]:
    """An ordinal model's Thresholds table (the JSON's ``thresholds``): P(Y <= j) = F(threshold_j - eta)."""
    level = result["model"]["conf_level"]
    keys = ["threshold", "estimate", "std_error", "statistic", "p_value", "lower", "upper"]
    levels = (result.get("ordinal") or {}).get("levels") or []
    return _table("thresholds", "Thresholds", ["Threshold", "Estimate", "Std. Error", "z", "p",
                                               f"Lower {level_text(level)}", f"Upper {level_text(level)}"],
                  ["text", "decimal", "decimal", "decimal", "p", "decimal", "decimal"],
                  [[r.get(k) for k in keys] for r in result["thresholds"]],
                  note="P(Y <= j) = F(threshold_j - eta), eta = the fixed effects and the random effects "
                       "(no intercept: the thresholds take its place); categories in order: "
                       + ", ".join(map(str, levels)) + ". Wald z tests and intervals.")


def result_tables(result: dict[str, Any], conf_level: float | None = None) -> list[dict[str, Any]]:
    """Every table of a result document, in the order the GLMM tab shows them (see :data:`TABLE_NAMES`)."""
    m = result["model"]
    fit = result["fit"]
    general = is_general(result)
    groups = result.get("groups") or {}
    group_rows = ([[f"Groups ({k})", v] for k, v in groups.items()] if len(groups) > 1
                  else [["Groups", result["n_groups"]]])
    extra = []
    fp = result.get("family_parameter")
    if fp:
        words = "Negative binomial" if m["family"] == "negbin" else family_label(m["family"])
        extra = [[f"{words} {name} ({PARAMETER_SYMBOLS.get(name, name)})", value]
                 for name, value in (fp.get("parameters") or {fp["name"]: fp["value"]}).items()]
    r2 = result.get("r2")
    r2_rows = [["Marginal R² (Nakagawa)", r2.get("marginal")],
               ["Conditional R² (Nakagawa)", r2.get("conditional")]] if r2 else []
    tables = [
        random_effects_table(result) if general else
        _table("random-effects", "Random Effects", ["Component", "Variance", "Std.Dev."],
               ["text", "decimal", "decimal"],
               [[r["component"], r["variance"], r["std_dev"]] for r in result["random_effects"]]),
        fixed_effects_table(result, conf_level),
        _table("model-fit", "Model Fit", ["Metric", "Value"],
               ["text", ["decimal", "decimal", "decimal", "count", "count"] + ["count"] * len(group_rows)
                + ["count"] + ["decimal"] * len(extra) + ["proportion"] * len(r2_rows)],
               [[log_likelihood_label(fit["log_likelihood_kind"], m.get("nagq", 1)), fit["log_likelihood"]],
                ["AIC", fit["aic"]], ["BIC", fit["bic"]], ["Parameters (k)", fit.get("k")],
                ["Observations", result["n_obs"]]] + group_rows
               + [["Rows excluded", result["n_excluded"]]] + extra + r2_rows, na="N/A",
               note=f"R²: {r2['reason']}" if r2 and r2.get("reason") else None),
    ]
    structures = covariance_structures_table(result)
    if structures is not None:  # after Random Effects
        tables.insert(1, structures)
    if result.get("icc") is not None:  # the ICC only where it is defined (one random intercept; see result.icc)
        tables.insert(1, _table("icc", "ICC", ["Metric", "Value"], ["text", "proportion"], [["ICC", result["icc"]]]))
    omnibus = omnibus_table(result)
    if omnibus is not None:
        tables.insert([t["name"] for t in tables].index("fixed-effects") + 1, omnibus)
    for part in ("disp", "zi"):
        sub = submodel_table(result, part, conf_level)
        if sub is not None:
            tables.insert([t["name"] for t in tables].index("model-fit"), sub)
    if result.get("thresholds"):  # an ordinal model's thresholds, after its fixed effects
        tables.insert([t["name"] for t in tables].index("fixed-effects") + 1, thresholds_table(result))
    c = result.get("glm_comparison")
    if c:
        tables.append(_table(
            "glm-comparison", "Comparison with GLM (no random intercept)", ["Metric", "Value"],
            ["text", ["decimal", "decimal", "decimal", "p", "decimal", "decimal"]],
            [["GLM Log-Likelihood", c.get("glm_log_likelihood")], ["GLM AIC", c.get("glm_aic")],
             ["LRT statistic (σu² = 0)", c.get("lrt_statistic")],
             ["p-value (boundary-corrected)", c.get("lrt_p_value")],
             ["Mean group size", c.get("mean_group_size")], ["Design effect (DEFF)", c.get("design_effect")]],
            note="The p-value halves the χ²(1) tail probability because σu² = 0 lies on the boundary. "
                 "DEFF = 1 + (mean group size − 1) × ICC."))
    if general:
        return tables + blup_tables(result)
    tables.append(_table(
        "blup", "BLUP (Random Effect Predictions)", ["Group", "Random Intercept", "Std. Error", "Rank"],
        ["text", "decimal", "decimal", "count"],
        [[b["group"], b["random_intercept"], b["std_error"], b["rank"]] for b in result.get("blup", [])],
        note=f"Group variable {m['group']}; rank 1 is the largest random intercept."))
    return tables


def omnibus_table(result: dict[str, Any]) -> dict[str, Any] | None:
    """Omnibus Tests: one row per fixed-effect term (the document's ``anova_terms``), F with Satterthwaite's
    denominator df or Wald chi-square; None when the document has none."""
    a = result.get("anova_terms")
    if not a or not a.get("rows"):
        return None
    f = a["test"] == "F"
    columns = ["Term", "Df"] + (["DenDF", "F"] if f else ["Chisq"]) + ["Pr(>F)" if f else "Pr(>Chisq)"]
    kinds = ["text", "count"] + (["df", "decimal"] if f else ["decimal"]) + ["p"]
    rows = [[r["term"], r["df"]] + ([r.get("den_df"), r["statistic"]] if f else [r["statistic"]]) + [r["p_value"]]
            for r in a["rows"]]
    return _table("omnibus", f"Omnibus Tests (Type {a.get('type', 'III')})", columns, kinds, rows,
                  note=a.get("note"), na="N/A")


def is_general(result: dict[str, Any]) -> bool:
    """Whether a result is beyond the product page's random-intercept model (slopes, several factors)."""
    rows = [r for r in result.get("random_effects", []) if r.get("component") != "Residual"]
    return len(rows) != 1 or rows[0].get("term", "(Intercept)") != "(Intercept)"


def blup_tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One BLUP table per grouping factor (``blup-<component>``): a row per level, a column per term and a Std. Error
    column per term (the long rows of the result document, laid out as lme4's ``ranef``)."""
    by_comp: dict[str, dict] = {}
    for b in result.get("blup", []):
        c = by_comp.setdefault(b["component"], {"terms": [], "levels": {}})
        if b["term"] not in c["terms"]:
            c["terms"].append(b["term"])
        c["levels"].setdefault(b["group"], {})[b["term"]] = (b["value"], b["std_error"])
    tables = []
    for comp, c in by_comp.items():
        terms = c["terms"]
        columns = ["Level"] + terms + [f"Std. Error ({t})" for t in terms]
        rows = [[level] + [cells.get(t, (None, None))[0] for t in terms]
                + [cells.get(t, (None, None))[1] for t in terms] for level, cells in c["levels"].items()]
        tables.append(_table(
            f"blup-{comp}", f"BLUP: {comp}", columns, ["text"] + ["decimal"] * (2 * len(terms)), rows,
            note=f"Conditional modes of the grouping factor {comp}, one column per term, with their conditional "
                 "standard deviations."))
    return tables


def random_effects_table(result: dict[str, Any]) -> dict[str, Any]:
    """Random Effects in lme4's VarCorr order: Component, Term, Variance, Std.Dev., Corr (a term's correlations
    with the terms before it in its component, on its row)."""
    corr: dict = {}
    for c in result.get("random_correlations", []):
        corr.setdefault((c["component"], c["term2"]), []).append(c["correlation"])
    rows = []
    for r in result["random_effects"]:
        comp = r["component"]
        cs = corr.get((comp, r["term"]), [])
        rows.append([comp, r["term"] or "", r["variance"], r["std_dev"],
                     " ".join("N/A" if c is None else f"{c:.2f}" for c in cs)])
    return _table("random-effects", "Random Effects", ["Component", "Term", "Variance", "Std.Dev.", "Corr"],
                  ["text", "text", "decimal", "decimal", "text"], rows)


def _numbers(values: list[float | None], digits: int = 4) -> str:
    return " ".join("N/A" if v is None else f"{v:.{digits}g}" for v in values)


def covariance_structures_table(result: dict[str, Any]) -> dict[str, Any] | None:
    """Covariance Structures: one row per random-effects term with its structure, columns, SDs and correlation
    parameter rho (``toep``: by lag 1, 2, ...; ``ou``: at one time unit, with the range); None when every term is
    unstructured (``us``, the model language's default), where Random Effects says it all."""
    entries = result.get("covariance_structures") or []
    if not any(e["structure"] != "us" for e in entries):
        return None
    rows = []
    for e in entries:
        sds = e["sd"]
        sd_text = _numbers(sds[:1]) if e["structure"] in ("ar1", "ou") or len(set(sds)) == 1 else _numbers(sds)
        rho = e.get("rho")
        rho_text = "" if rho is None else _numbers(rho if isinstance(rho, list) else [rho])
        if e.get("range") is not None:
            rho_text += f" (range {e['range']:.4g})"
        rows.append([e["component"], e["term"], e["structure"], e["dim"], sd_text, rho_text])
    return _table("covariance-structures", "Covariance Structures",
                  ["Component", "Term", "Structure", "Columns", "Std.Dev.", "rho"],
                  ["text", "text", "text", "count", "text", "text"], rows,
                  note="rho: the correlation parameter (ar1 and cs: one; toep: by lag 1, 2, ...; ou: at one unit "
                       "of time). The implied covariance and correlation matrices are in the result document "
                       "(covariance_structures).")


def summary_line(result: dict[str, Any]) -> str:
    """One line naming the model: formula, family, link, method, observations and groups."""
    m = result["model"]
    method = result["method"] + (f" ({m.get('nagq')} nodes)" if result["method"] == "AGQ" else "")
    groups = result.get("groups") or {}
    where = (", ".join(f"{v:,} {k}" for k, v in groups.items()) if len(groups) > 1
             else f"{result['n_groups']:,} groups")
    refs = reference_text(m)
    return (f"{formula(m)}{'; ' + refs if refs else ''}; {family_label(m['family'])}, {m['link']} link, {method}; "
            f"{result['n_obs']:,} observations in {where}")


def view(result: dict[str, Any], conf_level: float | None = None) -> dict[str, Any]:
    """What a page shows for a result: labels, warnings and every table (without the per-row diagnostics)."""
    m = result["model"]
    level = m["conf_level"] if conf_level is None else conf_level
    return {"formula": formula(m), "reference_text": reference_text(m), "family_label": family_label(m["family"]),
            "level_text": level_text(level),
            "log_likelihood_label": log_likelihood_label(result["fit"]["log_likelihood_kind"], m.get("nagq", 1)),
            "fixed_effects_headers": fixed_effects_headers(
                m["family"], m["link"], level, any("df" in r for r in result.get("fixed_effects", [])[:1])),
            "summary": summary_line(result), "warnings": warnings_of(result),
            "fit_time_text": f"{(result.get('timing') or {}).get('fit_seconds') or 0:.2f} s",
            "tables": result_tables(result, conf_level)}


# -- confidence intervals of a fit (result.conf_int: --ci on the command line, Model Detail's interval choice) ----
INTERVAL_METHOD_LABELS = {"wald": "Wald", "profile": "Profile likelihood", "boot": "Parametric bootstrap"}


def intervals_document(ci: Any) -> dict[str, Any]:
    """The JSON form of ``result.conf_int(...)`` (a DataFrame with ``lower``/``upper`` and its ``attrs``):
    {"method", "level", "rows": [{"parameter", "lower", "upper"}], and for the bootstrap "nsim", "failed",
    "not_converged", "seed", "seconds"}."""
    def num(v: Any) -> float | None:
        v = float(v)
        return v if math.isfinite(v) else None

    a = ci.attrs
    doc: dict[str, Any] = {"method": a["method"], "level": a["level"],
                           "rows": [{"parameter": str(name), "lower": num(lo), "upper": num(up)}
                                    for name, lo, up in zip(ci.index, ci["lower"], ci["upper"])]}
    if a["method"] == "boot":
        doc.update({k: a[k] for k in ("nsim", "failed", "not_converged", "workers") if k in a})
        doc["seed"] = int(a["seed"]) if a.get("seed") is not None else None
        doc["seconds"] = num(a.get("seconds", float("nan")))
    return doc


def intervals_table(doc: dict[str, Any], family: str | None = None) -> dict[str, Any]:
    """The Confidence Intervals table of an :func:`intervals_document`; its note speaks of the model's ``family``."""
    lv = level_text(doc["level"])
    method = doc["method"]
    deviance = ("" if family is None else " Gaussian models are profiled on the ML deviance, as lme4 does."
                if family == "gaussian" else
                " The profile is on the deviance of the fit (Laplace, or adaptive Gauss-Hermite quadrature with nAGQ "
                "> 1), as lme4's glmer does.")
    notes = {
        "wald": "Wald intervals of the fixed effects: estimate ± z × standard error.",
        "profile": "Likelihood-profile intervals (lme4's confint method \"profile\"): where the signed root of the "
                   "deviance change reaches ± z." + deviance,
        "boot": "Parametric bootstrap percentile intervals (lme4's confint method \"boot\")",
    }
    note = notes[method]
    if method == "boot":
        note += (f" from {doc.get('nsim', 0):,} simulated refits (seed {doc.get('seed')})"
                 + (f"; {doc['failed']:,} refits failed and are left out" if doc.get("failed") else "") + ".")
    t = _table("intervals", f"Confidence Intervals ({INTERVAL_METHOD_LABELS[method]}, {lv})",
               ["Parameter", f"Lower {lv}", f"Upper {lv}"], ["text", "decimal", "decimal"],
               [[r["parameter"], r["lower"], r["upper"]] for r in doc["rows"]], note=note)
    return t
