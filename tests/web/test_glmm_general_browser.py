"""The GLMM tab for general models in a real browser (issue 11): a model built with the roles and builders, its
formula shown in the Model formula field, every table equal to `glmmlab fit --formula`; a typed formula with an
offset and the negative binomial; a random-intercept model of a glmmTMB family (beta) built with the roles, fitted
as its formula; Save, Model Detail, Diagnostics and Reports for a general model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.web.pages import assign
from tests.web.test_glmm_browser import (
    DOCS,
    active_panel,
    cli_fit,
    close,
    control,
    export_csv,
    field,
    import_frame,
    menu,
    ready,
    table_values,
)

pytestmark = pytest.mark.browser


def crossed(seed: int = 3) -> pd.DataFrame:
    """y ~ x * f + (1 + x | g) + (1 | h): 16 levels of g crossed with 6 of h, a three-level factor f."""
    rng = np.random.default_rng(seed)
    n = 480
    g = rng.integers(0, 16, n)
    h = rng.integers(0, 6, n)
    f = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    u0, u1, v = rng.normal(0, 0.8, 16), rng.normal(0, 0.4, 16), rng.normal(0, 0.5, 6)
    fx = {"a": 0.0, "b": 0.5, "c": -0.4}
    y = 1 + 0.7 * x + np.array([fx[k] for k in f]) + 0.3 * x * (f == "b") + u0[g] + u1[g] * x + v[h] \
        + rng.normal(0, 0.6, n)
    return pd.DataFrame({"g": [f"G{i:02d}" for i in g], "h": [f"H{i}" for i in h], "f": f, "x": x.round(6),
                         "y": y.round(6)})


def counts(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    exposure = rng.uniform(0.5, 3.0, n)
    mu = np.exp(0.3 + 0.4 * x + np.log(exposure) + rng.normal(0, 0.5, 20)[g])
    count = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return pd.DataFrame({"site": [f"S{i:02d}" for i in g], "x": x.round(6),
                         "log_exposure": np.log(exposure).round(6), "count": count})


def shares(seed: int = 7) -> pd.DataFrame:
    """Proportions strictly inside (0, 1): a beta response with precision 10."""
    rng = np.random.default_rng(seed)
    n = 300
    g = rng.integers(0, 15, n)
    x = rng.normal(size=n)
    mu = 1 / (1 + np.exp(-(-0.3 + 0.5 * x + rng.normal(0, 0.4, 15)[g])))
    y = np.clip(rng.beta(mu * 10, (1 - mu) * 10), 1e-6, 1 - 1e-6)
    return pd.DataFrame({"site": [f"S{i:02d}" for i in g], "x": x.round(6), "y": y.round(6)})


def rows_by_first(rows):
    return {r[0]: r[1:] for r in rows}


def test_a_general_model_built_with_the_form_equals_the_command_line(page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, crossed(), "crossed")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    expect(panel.locator('.field-label:text-is("Model formula")')).to_have_count(1)
    formula = control(panel, "formula")

    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="y"]')).to_have_count(1)
    control(panel, "response").select_option("y")
    assign(panel, "fixed", "x")
    assign(panel, "group", "g")
    expect(formula).to_have_value("y ~ x + (1 | g)")  # the controls' formula, always shown

    assign(panel, "factors", "f")
    expect(formula).to_have_value("y ~ x + f + (1 | g)")
    picks = field(panel, "terms").locator(".inline-checks")
    picks.locator('input[value="x"]').check()
    picks.locator('input[value="f"]').check()
    panel.locator("button.add-interaction").click()
    expect(formula).to_have_value("y ~ x * f + (1 | g)")
    rows = field(panel, "random").locator(".random-row")
    rows.nth(0).locator('input.slope[value="x"]').check()
    expect(formula).to_have_value("y ~ x * f + (1 + x | g)")
    assign(panel, "group", "h")
    expect(formula).to_have_value("y ~ x * f + (1 + x | g) + (1 | h)")
    # the negative binomial, glmmTMB's families and the ordinal family are offered with the general form
    assert control(panel, "family").locator("option").evaluate_all("os => os.map(o => o.value)") == \
        ["gaussian", "binomial", "poisson", "gamma", "negbin", "nbinom1", "beta_family", "betabinomial", "t_family",
         "tweedie", "truncated_poisson", "truncated_nbinom2", "truncated_nbinom1", "ziGamma", "ordinal"]
    expect(field(panel, "formula").locator(".field-error")).to_be_hidden()
    panel.evaluate("p => p.closest('.tabpanel').scrollTop = 0")
    DOCS.mkdir(exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1000})
    page.screenshot(path=str(DOCS / "glmm-general-form.png"))
    page.set_viewport_size(size)

    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)

    want = cli_fit(export_csv(api, ds["id"], tmp_path / "crossed.csv"), "--formula",
                   "y ~ x * f + (1 + x | g) + (1 | h)")
    headers, rows_ = table_values(run, "random-effects")
    assert headers == ["Component", "Term", "Variance", "Std.Dev.", "Corr"]
    assert [(r[0], r[1]) for r in rows_] == [(r["component"], r["term"]) for r in want["random_effects"]]
    assert all(close(r[2], w["variance"], 1e-6) and close(r[3], w["std_dev"], 1e-6)
               for r, w in zip(rows_, want["random_effects"], strict=True))
    corr = want["random_correlations"][0]["correlation"]
    assert close(rows_[1][4], float(f"{corr:.2f}"))
    headers, rows_ = table_values(run, "fixed-effects")
    assert headers[:6] == ["Variable", "Estimate", "Std. Error", "df", "t", "Pr(>|t|)"]  # Gaussian: Satterthwaite
    for r, w in zip(rows_, want["fixed_effects"], strict=True):
        assert r[0] == w["variable"]
        assert all(close(v, w[k], 1e-6) for v, k in zip(r[1:8], ["estimate", "std_error", "df", "statistic",
                                                                  "p_value", "lower", "upper"])), (r, w)
    _, rows_ = table_values(run, "model-fit")
    fit = rows_by_first(rows_)
    assert close(fit["REML Log-Likelihood"][0], want["fit"]["log_likelihood"], 1e-8)
    assert close(fit["AIC"][0], want["fit"]["aic"], 1e-8) and fit["Parameters (k)"][0] == want["fit"]["k"]
    assert fit["Groups (g)"][0] == want["groups"]["g"] and fit["Groups (h)"][0] == want["groups"]["h"]
    for comp, terms in (("g", ["(Intercept)", "x"]), ("h", ["(Intercept)"])):
        headers, rows_ = table_values(run, f"blup-{comp}")
        assert headers == ["Level"] + terms + [f"Std. Error ({t})" for t in terms]
        wb = {(b["group"], b["term"]): b for b in want["blup"] if b["component"] == comp}
        assert len(rows_) == want["groups"][comp]
        for r in rows_:
            for j, t in enumerate(terms):
                assert close(r[1 + j], wb[(r[0], t)]["value"], 1e-5)
                assert close(r[1 + len(terms) + j], wb[(r[0], t)]["std_error"], 1e-5)
    run.locator(".model-line").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(DOCS / "glmm-general-results.png"))

    # Save, Diagnostics (a caterpillar plot per term), Model Detail (recompute) and a report
    run.locator("input.model-name").fill("crossed slopes")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("crossed slopes")
    run.locator("button.view-diagnostics").click()
    diag = active_panel(page)
    expect(diag.locator("figure.plot")).to_have_count(6)
    assert diag.locator("figcaption").all_inner_texts()[2].startswith("Caterpillar Plot: (Intercept) | g")
    for img in diag.locator("figure.plot img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)  # plots render on the server: slow under load
        assert img.evaluate("i => i.naturalWidth") > 100
    diag.locator('figure.plot[data-kind="caterpillar-2"] button.add-plot').click()
    expect(diag.locator(".report-status")).to_contain_text("Added")
    page.locator(".tab", has_text="GLMM").first.click()
    run.locator("button.view-details").click()
    detail = active_panel(page)
    detail.locator("input.conf-level").fill("90")
    # Gaussian: Variable, Estimate, Std. Error, df, t, Pr(>|t|), then the interval
    expect(detail.locator('table[data-table="fixed-effects"] th').nth(6)).to_have_text("Lower 90%")
    expect(detail.locator('table[data-table="blup-g"] tbody tr')).to_have_count(16)
    detail.locator("button.add-report").click()  # a dialog to choose what and where; BLUPs on request
    dialog = page.locator("dialog.add-report-dialog")
    for blup in ("BLUP: g", "BLUP: h"):
        dialog.locator('fieldset[data-group="tables"] label.check', has_text=blup).locator("input").check()
    dialog.locator("button.add-chosen").click()
    expect(detail.locator(".report-status")).to_contain_text("BLUP: g, BLUP: h")
    detail.locator("button.open-report").click()
    report = active_panel(page)
    # the caterpillar plot and six tables: the Omnibus Tests table in, no ICC (not defined for this model)
    expect(report.locator("li.report-item")).to_have_count(7)


def test_a_typed_formula_with_an_offset_and_the_negative_binomial(page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, counts(), "counts")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="count"]')).to_have_count(1)
    formula = control(panel, "formula")
    # a mistake is explained next to the field before anything runs
    formula.fill("count ~ x + offset(log_exposur) + (1 | site)")
    err = field(panel, "formula").locator(".field-error")
    expect(err).to_contain_text("log_exposur")
    panel.locator("button.run").click()
    expect(err).to_contain_text("log_exposur")
    expect(panel.locator("article.run")).to_have_count(0)
    formula.fill("count ~ x + offset(log_exposure) + (1 | site)")
    expect(err).to_be_hidden()
    control(panel, "family").select_option("negbin")
    assert [o for o in control(panel, "link").locator("option").evaluate_all("os => os.map(o => o.value)")] == \
        ["log", "identity"]
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "counts.csv"), "--formula",
                   "count ~ x + offset(log_exposure) + (1 | site)", "--family", "negbin")
    _, rows = table_values(run, "fixed-effects")
    for r, w in zip(rows, want["fixed_effects"], strict=True):
        assert r[0] == w["variable"] and close(r[1], w["estimate"], 1e-6) and close(r[4], w["p_value"], 1e-5)
    _, rows = table_values(run, "model-fit")
    fit = rows_by_first(rows)
    assert close(fit["Negative binomial theta (θ)"][0], want["family_parameter"]["value"], 1e-6)
    assert close(fit["Log-Likelihood (Laplace)"][0], want["fit"]["log_likelihood"], 1e-8)
    headers, rows = table_values(run, "random-effects")  # one random intercept: the product page's layout
    assert headers == ["Component", "Variance", "Std.Dev."] and [r[0] for r in rows] == ["site"]
    assert close(rows[0][1], want["random_effects"][0]["variance"], 1e-6)
    run.locator(".model-line").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(DOCS / "glmm-negbin-results.png"))
    run.locator("input.model-name").fill("counts nb")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("counts nb")
    run.locator("button.view-diagnostics").click()
    diag = active_panel(page)
    expect(diag.locator("figure.plot")).to_have_count(4)


def test_a_glmmTMB_family_with_the_roles_is_fitted_as_its_formula(page, live_server_factory, tmp_path):
    """One cluster with its intercept and a covariate is the product page's simple form, which offers only its four
    families: with beta_family the tab sends the formula, and its tables are the command line's."""
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, shares(), "shares")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="y"]')).to_have_count(1)
    control(panel, "response").select_option("y")
    assign(panel, "fixed", "x")
    assign(panel, "group", "site")
    expect(control(panel, "formula")).to_have_value("y ~ x + (1 | site)")
    control(panel, "family").select_option("beta_family")
    assert control(panel, "link").locator("option").evaluate_all("os => os.map(o => o.value)") == ["logit", "probit"]
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "shares.csv"), "--formula", "y ~ x + (1 | site)",
                   "--family", "beta_family")
    _, rows = table_values(run, "fixed-effects")
    for r, w in zip(rows, want["fixed_effects"], strict=True):
        assert r[0] == w["variable"] and close(r[1], w["estimate"], 1e-6) and close(r[2], w["std_error"], 1e-6)
    fit = rows_by_first(table_values(run, "model-fit")[1])
    assert close(fit["Beta phi (φ)"][0], want["family_parameter"]["parameters"]["phi"], 1e-6)
    assert close(fit["Log-Likelihood (Laplace)"][0], want["fit"]["log_likelihood"], 1e-8)
