"""The general GLMM form in a real browser, issue 11's remaining points: a factor's reference level, a typed
formula filling the form, and the roles Trials, Weights, Offset, "nested in", uncorrelated slopes and
"Show all N rows" of a general BLUP table, each run through the form and checked against `glmmlab fit --formula`
on the same data; then Save, Model Detail (CI recompute), Diagnostics and a report for a general model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect
from scipy.stats import norm

from tests.web.pages import assign, role_names
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

RELEVEL = Path(__file__).resolve().parents[1] / "references" / "relevel" / "relevel.csv"


def open_form(page, server, frame, name):
    api = server.api()
    ds = import_frame(api, frame, name)
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator("option").nth(1)).to_be_attached()
    return api, ds, panel


def simple_form_then_model(panel, response, family, fixed, group):
    """The product page's model (response, family, one covariate, the Group Variable) chosen with the roles."""
    control(panel, "response").select_option(response)
    control(panel, "family").select_option(family)
    assign(panel, "fixed", fixed)
    assign(panel, "group", group)


def screenshot(page, panel, name):
    """The form from its top, in a taller window (docs/ with GLMMLAB_SCREENSHOTS=1)."""
    panel.evaluate("p => p.closest('.tabpanel').scrollTop = 0")
    DOCS.mkdir(exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": 1000})
    page.screenshot(path=str(DOCS / name))
    page.set_viewport_size(size)


def run_form(panel):
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=90_000)
    return run


FIXED_KEYS = {"Estimate": "estimate", "Std. Error": "std_error", "z": "statistic", "t": "statistic",
              "p": "p_value", "Pr(>|t|)": "p_value", "df": "df"}


def same_fixed_effects(run, want, rel=1e-6):
    """The web's Fixed Effects table and the command line's document agree in every column, read by its header
    (Gaussian identity fits have df and t, the others z)."""
    headers, rows = table_values(run, "fixed-effects")
    assert [r[0] for r in rows] == [w["variable"] for w in want["fixed_effects"]]
    keys = [FIXED_KEYS.get(h, "lower" if h.startswith("Lower") else "upper" if h.startswith("Upper") else None)
            for h in headers]
    assert {"estimate", "std_error", "statistic", "p_value", "lower", "upper"} <= set(keys), headers
    for r, w in zip(rows, want["fixed_effects"], strict=True):
        assert all(close(v, w[k], rel) for v, k in zip(r, keys) if k is not None), (r, w)


def same_random_effects(run, want, rel=1e-6):
    _, rows = table_values(run, "random-effects")
    assert [(r[0], r[1]) for r in rows] == [(w["component"], w["term"]) for w in want["random_effects"]]
    assert all(close(r[2], w["variance"], rel) for r, w in zip(rows, want["random_effects"], strict=True))


def same_blups(run, want, comp, terms, rel=1e-5):
    headers, rows = table_values(run, f"blup-{comp}")
    assert headers == ["Level"] + terms + [f"Std. Error ({t})" for t in terms]
    wb = {(b["group"], b["term"]): b for b in want["blup"] if b["component"] == comp}
    assert len(rows) == want["groups"][comp]
    for r in rows:
        for j, t in enumerate(terms):
            assert close(r[1 + j], wb[(r[0], t)]["value"], rel)
            assert close(r[1 + len(terms) + j], wb[(r[0], t)]["std_error"], rel)


def model_fit(run):
    _, rows = table_values(run, "model-fit")
    return {r[0]: r[1] for r in rows}


def test_a_reference_level_chosen_in_the_model_section(page, live_server_factory, tmp_path):
    api, ds, panel = open_form(page, live_server_factory(), pd.read_csv(RELEVEL), "relevel")
    simple_form_then_model(panel, "y", "gaussian", "x", "g")
    assign(panel, "factors", "f")
    picks = field(panel, "terms").locator(".inline-checks")
    picks.locator('input[value="x"]').check()
    picks.locator('input[value="f"]').check()
    panel.locator("button.add-interaction").click()
    expect(control(panel, "formula")).to_have_value("y ~ x * f + (1 | g)")
    ref = field(panel, "factors").locator('select.reference-level[data-factor="f"]')
    expect(ref.locator("option")).to_have_count(3)  # the levels come from the model frame: R's order
    assert ref.locator("option").all_inner_texts() == ["a (first level)", "b", "c"]
    expect(ref).to_have_value("a")
    ref.select_option("b")
    expect(control(panel, "formula")).to_have_value("y ~ x * f + (1 | g)")  # the formula stays as R users write it
    screenshot(page, panel, "glmm-reference-level.png")
    run = run_form(panel)
    expect(run.locator(".model-line")).to_contain_text("y ~ x * f + (1 | g) · reference level f = b · Gaussian")
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "relevel.csv"), "--formula", "y ~ x * f + (1 | g)",
                   "--reference", "f=b")
    same_fixed_effects(run, want)
    _, rows = table_values(run, "fixed-effects")
    assert [r[0] for r in rows] == ["(Intercept)", "x", "fa", "fc", "x:fa", "x:fc"]
    assert close(model_fit(run)["REML Log-Likelihood"], want["fit"]["log_likelihood"], 1e-8)


def test_a_typed_formula_fills_the_form_or_runs_as_typed(page, live_server_factory, tmp_path):
    frame = pd.read_csv(RELEVEL)
    frame["h"] = [f"H{i}" for i in np.random.default_rng(4).integers(0, 6, len(frame))]  # crossed with g
    api, ds, panel = open_form(page, live_server_factory(), frame, "relevel")
    formula = control(panel, "formula")
    helptext = field(panel, "formula").locator(".formula-help")
    rows = field(panel, "random").locator(".random-row")

    formula.fill("y ~ x * f + (1 + x | g) + (1 | h)")
    expect(helptext).to_have_attribute("data-state", "filled")
    expect(helptext).to_contain_text("The controls now show this formula")
    expect(control(panel, "response")).to_have_value("y")
    expect(role_names(panel, "fixed")).to_have_text(["x"])
    expect(role_names(panel, "factors")).to_have_text(["f"])
    expect(field(panel, "terms").locator("li.term code")).to_have_text(["x", "f", "x:f"])
    expect(role_names(panel, "group")).to_have_text(["g", "h"])
    expect(rows.nth(0).locator('input.slope[value="x"]')).to_be_checked()
    expect(rows.nth(1)).to_have_attribute("data-group", "h")
    expect(formula).to_have_value("y ~ x * f + (1 + x | g) + (1 | h)")
    screenshot(page, panel, "glmm-formula-fills-form.png")
    # a control changed now: the form is the model again and writes its formula
    rows.nth(0).locator('input.slope[value="x"]').uncheck()
    expect(formula).to_have_value("y ~ x * f + (1 | g) + (1 | h)")
    expect(helptext).to_have_attribute("data-state", "form")

    # what the form cannot show runs as typed, and the controls stay as they were
    formula.fill("y ~ I(x^2) + f + (1 | g)")
    expect(helptext).to_have_attribute("data-state", "typed")
    expect(helptext).to_contain_text("I(x^2) (a fixed effect) is not a plain column")
    expect(helptext).to_contain_text("it runs as typed")
    expect(field(panel, "terms").locator("li.interaction code")).to_have_text(["x:f"])
    # a role list keeps its order: f before x is shown (issue 19.1: what the controls build round-trips)
    formula.fill("y ~ f + x + (1 | g)")
    expect(helptext).to_have_attribute("data-state", "filled")
    expect(field(panel, "terms").locator("li.term code")).to_have_text(["f", "x"])
    # a column in two roles, or a cluster variable in two random terms: the controls say which part they cannot show
    formula.fill("y ~ x + g + (1 | g)")
    expect(helptext).to_have_attribute("data-state", "typed")
    expect(helptext).to_contain_text("g plays two roles in it")

    # nesting and uncorrelated slopes written in lme4's short forms fill the form too
    formula.fill("y ~ x + (x || g) + (1 | h/f)")
    expect(helptext).to_have_attribute("data-state", "filled")
    expect(role_names(panel, "group")).to_have_text(["g", "h", "f"])
    expect(rows.nth(0).locator("input.correlated")).not_to_be_checked()
    expect(rows.nth(0).locator('input.slope[value="x"]')).to_be_checked()
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_have_attribute("data-group", "h")
    expect(rows.nth(2)).to_have_attribute("data-group", "f")
    expect(rows.nth(2).locator("select.nested-in")).to_have_value("h")
    expect(role_names(panel, "factors")).to_have_count(0)
    run = run_form(panel)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "relevel.csv"), "--formula",
                   "y ~ x + (x || g) + (1 | h/f)")
    same_fixed_effects(run, want)
    same_random_effects(run, want)


def binomial_trials(seed: int = 8) -> pd.DataFrame:
    """Successes out of trials per row; plots (g) nested in regions (h), a random slope of x per plot."""
    rng = np.random.default_rng(seed)
    regions, plots = 5, 6
    h = np.repeat(np.arange(regions), plots * 10)
    g = np.repeat(np.arange(plots), 10)[np.tile(np.arange(plots * 10), regions)]
    x = rng.normal(size=h.size)
    n = rng.integers(5, 20, h.size)
    k = h * plots + g
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.5, regions)[h] + rng.normal(0, 0.6, regions * plots)[k] \
        + rng.normal(0, 0.3, regions * plots)[k] * x
    s = rng.binomial(n, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"region": [f"R{i}" for i in h], "plot": [f"P{i}" for i in g], "x": x.round(6),
                         "s": s, "n": n})


def test_trials_nested_in_and_uncorrelated_slopes_built_with_the_form(page, live_server_factory, tmp_path):
    api, ds, panel = open_form(page, live_server_factory(), binomial_trials(), "plots")
    formula = control(panel, "formula")
    simple_form_then_model(panel, "s", "binomial", "x", "region")
    expect(field(panel, "trials")).to_be_visible()
    control(panel, "trials").select_option("n")
    expect(formula).to_have_value("cbind(s, n - s) ~ x + (1 | region)")
    assign(panel, "group", "plot")
    row = field(panel, "random").locator(".random-row").nth(1)
    row.locator("select.nested-in").select_option("region")
    row.locator('input.slope[value="x"]').check()
    row.locator("input.correlated").uncheck()
    typed = "cbind(s, n - s) ~ x + (1 | region) + (1 + x || plot:region)"
    expect(formula).to_have_value(typed)
    expect(field(panel, "formula").locator(".field-error")).to_be_hidden()
    run = run_form(panel)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "plots.csv"), "--formula", typed, "--family", "binomial")
    same_fixed_effects(run, want)
    same_random_effects(run, want)
    _, rows = table_values(run, "random-effects")
    assert [r[4] for r in rows] == [None, None, None]  # uncorrelated: no correlation
    fit = model_fit(run)
    assert close(fit["Log-Likelihood (Laplace)"], want["fit"]["log_likelihood"], 1e-8)
    assert fit["Groups (plot:region)"] == want["groups"]["plot:region"] == 30
    same_blups(run, want, "plot:region", ["(Intercept)", "x"])
    same_blups(run, want, "region", ["(Intercept)"])


def counts_two_factors(seed: int = 9) -> pd.DataFrame:
    """Counts with an exposure (offset), prior weights, 60 sites with a random slope, crossed with 5 observers."""
    rng = np.random.default_rng(seed)
    n = 540
    site = rng.integers(0, 60, n)
    obs = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    exposure = rng.uniform(0.5, 2.0, n)
    eta = 0.4 + 0.3 * x + np.log(exposure) + rng.normal(0, 0.5, 60)[site] + rng.normal(0, 0.2, 60)[site] * x \
        + rng.normal(0, 0.3, 5)[obs]
    return pd.DataFrame({"site": [f"S{i:02d}" for i in site], "observer": [f"O{i}" for i in obs],
                         "x": x.round(6), "log_exposure": np.log(exposure).round(6),
                         "w": rng.integers(1, 4, n), "count": rng.poisson(np.exp(eta))})


def test_offset_weights_show_all_and_the_saved_model(page, live_server_factory, tmp_path):
    api, ds, panel = open_form(page, live_server_factory(), counts_two_factors(), "counts")
    formula = control(panel, "formula")
    simple_form_then_model(panel, "count", "poisson", "x", "site")
    control(panel, "offset").select_option("log_exposure")
    control(panel, "weights").select_option("w")
    field(panel, "random").locator(".random-row").nth(0).locator('input.slope[value="x"]').check()
    assign(panel, "group", "observer")
    typed = "count ~ x + offset(log_exposure) + (1 + x | site) + (1 | observer)"
    expect(formula).to_have_value(typed)
    run = run_form(panel)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "counts.csv"), "--formula", typed, "--family", "poisson",
                   "--weights", "w")
    assert want["model"]["weights"] == "w"
    same_fixed_effects(run, want)
    same_random_effects(run, want)
    assert close(model_fit(run)["Log-Likelihood (Laplace)"], want["fit"]["log_likelihood"], 1e-8)
    # 60 sites: the first 50 rows, then all of them
    blup = run.locator('section[data-section="BLUP: site"]')
    expect(blup.locator("tbody tr")).to_have_count(50)
    expect(blup.locator(".blup-count")).to_contain_text("Showing 50 of 60 rows")
    blup.locator("button.show-all").click()
    expect(blup.locator("tbody tr")).to_have_count(60)
    expect(blup.locator("button.show-all")).to_have_text("Show first 50 rows")
    same_blups(run, want, "site", ["(Intercept)", "x"])
    same_blups(run, want, "observer", ["(Intercept)"])

    # Save, Model Detail with the interval at another level, Diagnostics and a report
    run.locator("input.model-name").fill("counts offset")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("counts offset")
    run.locator("button.view-details").click()
    detail = active_panel(page)
    expect(detail.locator(".model-line")).to_contain_text(typed)
    detail.locator("input.conf-level").fill("90")
    expect(detail.locator('table[data-table="fixed-effects"] th').nth(5)).to_have_text("Lower 90%")
    _, rows = table_values(detail, "fixed-effects")
    z = norm.ppf(0.95)
    for r, w in zip(rows, want["fixed_effects"], strict=True):
        half = z * w["std_error"]
        assert close(r[5], w["estimate"] - half, 1e-6) and close(r[6], w["estimate"] + half, 1e-6)
    expect(detail.locator('table[data-table="blup-site"] tbody tr')).to_have_count(50)
    detail.locator("button.add-report").click()  # (issue 19.6: a dialog to choose what and where; BLUPs on request)
    dialog = page.locator("dialog.add-report-dialog")
    for blup in ("BLUP: site", "BLUP: observer"):
        dialog.locator('fieldset[data-group="tables"] label.check', has_text=blup).locator("input").check()
    dialog.locator("button.add-chosen").click()
    expect(detail.locator(".report-status")).to_contain_text("BLUP: site, BLUP: observer")
    detail.locator("button.view-diagnostics").click()
    diag = active_panel(page)
    expect(diag.locator("figure.plot")).to_have_count(6)  # residuals, Q-Q, a caterpillar per term (3), observed
    for img in diag.locator("figure.plot img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)  # plots render on the server: slow under load
        assert img.evaluate("i => i.naturalWidth") > 100
    diag.locator('figure.plot[data-kind="caterpillar-2"] button.add-plot').click()
    expect(diag.locator(".report-status")).to_contain_text("Added")
    page.locator(".tab", has_text="counts offset").first.click()  # the Model Detail tab (opened first)
    detail.locator("button.open-report").click()
    report = active_panel(page)
    # the caterpillar plot and six tables: the Omnibus Tests table in, no ICC (not defined for this model)
    expect(report.locator("li.report-item")).to_have_count(7)
