"""Plain-text tables of a fit, as a person reads them in the GLMM tab."""

from __future__ import annotations

from glmmlab.engine.results import GlmmResult, exp_label


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "NA"
    if isinstance(x, int):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e6):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def _level(conf_level: float) -> str:
    pct = conf_level * 100
    return f"{pct:g}%"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def fixed_effects_headers(family: str, link: str, conf_level: float) -> list[str]:
    lv = _level(conf_level)
    headers = ["Variable", "Estimate", "Std. Error", f"Lower {lv}", f"Upper {lv}"]
    label = exp_label(family, link)
    if label:
        headers += [label, f"exp(Lower {lv})", f"exp(Upper {lv})"]
    return headers


def render(result: GlmmResult) -> str:
    d = result.to_dict()
    m = d["model"]
    parts = []
    formula = m.get("formula") or (
        f"{m['response']} ~ {' + '.join((['1'] if m['intercept'] else ['0']) + m['fixed'])} + (1 | {m['group']})")
    extras = "".join(f"   {k} {m[k]}" for k in ("weights", "offset") if m.get(k))
    parts.append(
        f"GLMM: {formula}{extras}"
        f"   family {m['family']}, link {m['link']}, method {d['method']}"
        + (f" ({m['nagq']} nodes)" if d["method"] == "AGQ" else "")
    )
    parts.append(
        f"Observations: {d['n_obs']}   Groups: {', '.join(f'{k} {v}' for k, v in d['groups'].items())}   Rows excluded: {d['n_excluded']}   "
        f"Converged: {'yes' if d['converged'] else 'no'}   Fit time: {d['timing']['fit_seconds']:.3f} s"
    )
    for w in d["warnings"]:
        parts.append(f"Warning: {w}")
    parts.append("\nRandom Effects")
    parts.append(varcorr_table(d))
    fp = d.get("family_parameter")
    if fp:
        parts.append(f"\nFamily parameter: {fp['name']} = {_fmt(fp['value'])}")
    icc = d["icc"]
    parts.append(f"\nICC: {_fmt(icc) if icc is not None else 'N/A (ICC not defined)'}")
    parts.append("\nFixed Effects")
    headers = fixed_effects_headers(m["family"], m["link"], m["conf_level"])
    headers[3:3] = ["z", "p"]
    rows = []
    for f in d["fixed_effects"]:
        row = [f["variable"], _fmt(f["estimate"]), _fmt(f["std_error"]), _fmt(f.get("statistic"), 3),
               _p(f.get("p_value")), _fmt(f["lower"]), _fmt(f["upper"])]
        if "exp_estimate" in f:
            row += [_fmt(f["exp_estimate"]), _fmt(f["exp_lower"]), _fmt(f["exp_upper"])]
        rows.append(row)
    parts.append(table(headers, rows))
    fit = d["fit"]
    ll_label = "REML Log-Likelihood" if fit["log_likelihood_kind"] == "REML" else (
        "Log-Likelihood (Laplace)" if fit["log_likelihood_kind"] == "Laplace" else f"Log-Likelihood (AGQ, {m['nagq']} nodes)")
    parts.append("\nModel Fit")
    parts.append(table(["Metric", "Value"], [
        [ll_label, _fmt(fit["log_likelihood"])], ["AIC", _fmt(fit["aic"])], ["BIC", _fmt(fit["bic"])],
        ["Parameters (k)", str(fit["k"])], ["Observations", str(d["n_obs"])], ["Groups", str(d["n_groups"])],
        ["Rows excluded", str(d["n_excluded"])],
    ]))
    c = d.get("glm_comparison")
    if c:
        parts.append("\nComparison with the GLM (no random intercept)")
        parts.append(table(["Metric", "Value"], [
            ["GLM log-likelihood", _fmt(c["glm_log_likelihood"])], ["GLM AIC", _fmt(c["glm_aic"])],
            ["LRT statistic (sigma_u^2 = 0)", _fmt(c["lrt_statistic"])],
            ["p-value (boundary-corrected)", _fmt(c["lrt_p_value"])],
            ["Mean group size", _fmt(c["mean_group_size"], 2)],
            ["Design effect (DEFF)", _fmt(c["design_effect"]) if c["design_effect"] is not None else "N/A"],
        ]))
    parts.append("\nBLUP (Random Effect Predictions)")
    comps = list(dict.fromkeys(b["component"] for b in d["blup"]))
    simple = len(comps) == 1 and all(b["term"] == "(Intercept)" for b in d["blup"])
    if simple:
        parts.append(table(["Group", "Random Intercept", "Std. Error", "Rank"],
                           [[b["group"], _fmt(b["random_intercept"]), _fmt(b["std_error"]), str(b["rank"])]
                            for b in d["blup"]]))
    else:
        parts.append(table(["Component", "Level", "Term", "Value", "Std. Error", "Rank"],
                           [[b["component"], b["group"], b["term"], _fmt(b["value"]), _fmt(b["std_error"]),
                             str(b["rank"])] for b in d["blup"]]))
    return "\n".join(parts) + "\n"


def _p(p) -> str:
    if p is None:
        return "NA"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def varcorr_table(d: dict) -> str:
    """lme4's VarCorr layout: Groups, Name, Variance, Std.Dev., Corr (the correlations of a term with the
    terms before it in its component, on that term's row)."""
    corr = {}
    for c in d.get("random_correlations", []):
        corr.setdefault((c["component"], c["term2"]), []).append(c["correlation"])
    rows, last = [], None
    for r in d["random_effects"]:
        comp = r["component"]
        cs = corr.get((comp, r["term"]), [])
        rows.append([comp if comp != last else "", r["term"] or "", _fmt(r["variance"]), _fmt(r["std_dev"]),
                     " ".join(f"{c:.2f}" if c is not None else "NA" for c in cs)])
        last = comp
    return table(["Groups", "Name", "Variance", "Std.Dev.", "Corr"], rows)
