"""The GLMM tab in a real browser: the spec's story from the form to an exported report, and cancelling a long fit."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.web.pages import assign, role_names

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
# Screenshots go to docs/ only when GLMMLAB_SCREENSHOTS=1 (as in test_browser.py); otherwise to a temp folder.
DOCS = ROOT / "docs" if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="glmm-shots-"))
GLMMLAB = Path(sys.executable).parent / "glmmlab"


def ready(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def menu(page, title, item):
    page.locator(f'.menu-title:text-is("{title}")').click()
    page.locator(f'.menu.open [role=menuitem]:text-is("{item}")').click()


def active_panel(page):
    return page.locator(".tabpanel:not([hidden])")


def field(panel, name):
    return panel.locator(f'.field[data-field="{name}"]')


def control(panel, name):
    return field(panel, name).locator(".field-control").locator("select, input").first


def options_of(select):
    return select.locator("option").evaluate_all("os => os.map(o => o.value).filter(v => v)")


def table_values(panel, name):
    """The table's header texts and its cells' full-precision values (numbers as floats)."""
    table = panel.locator(f'table[data-table="{name}"]').first
    headers = table.locator("thead th").all_inner_texts()
    rows = table.locator("tbody tr").evaluate_all(
        "trs => trs.map(tr => Array.from(tr.cells).map(td => td.dataset.value))")
    out = []
    for row in rows:
        out.append([_value(v) for v in row])
    return headers, out


def _value(v):
    if v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


def close(a, b, rel=1e-7):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-10)


def export_csv(api, dataset_id, path: Path) -> Path:
    page = api.get(f"/api/datasets/{dataset_id}/rows", params={"limit": 5000}).json()
    assert page["total"] <= 5000
    pd.DataFrame(page["rows"], columns=[c["name"] for c in page["columns"]]).to_csv(path, index=False)
    return path


def cli_fit(csv: Path, *args: str) -> dict:
    out = subprocess.run([str(GLMMLAB), "fit", str(csv), *args, "--format", "json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def import_frame(api, frame: pd.DataFrame, name: str) -> dict:
    r = api.post("/api/datasets/import", params={"filename": f"{name}.csv", "name": name},
                 content=frame.to_csv(index=False).encode())
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    for _ in range(1200):
        job = api.get(f"/api/jobs/{job_id}").json()
        if job["state"] == "done":
            return job["result"]["dataset"]
        assert job["state"] != "failed", job
        time.sleep(0.05)
    raise AssertionError("import did not finish")


def simulated(n_groups: int, per_group: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    eta = -0.2 + 0.5 * x + rng.normal(0, 0.8, n_groups)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"g": [f"G{i:04d}" for i in g], "x": x.round(6), "y": y})


def test_the_spec_story_from_form_to_exported_report(page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ready(page, server.url)
    ds = next(d for d in api.get("/api/datasets").json()["datasets"] if d["name"] == "clinic recovery")

    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    # (issue 19.1: the variables get roles as in jamovi's GAMLj; the spec's names stay on the roles' lines)
    for label in ("Dataset", "Dependent Variable", "Factors", "Covariates", "Cluster Variables", "Offset", "Weights",
                  "Distribution Family", "Link Function", "Include intercept", "Confidence Level", "Fixed Effects",
                  "Random Effects"):
        expect(panel.locator(f'.field-label:text-is("{label}")')).to_have_count(1)
    expect(field(panel, "response").locator(".role-hint")).to_contain_text("Response Variable (Y)")
    expect(field(panel, "fixed").locator(".role-hint")).to_contain_text("fixed effects (X)")
    expect(field(panel, "group").locator(".role-hint")).to_contain_text("Group Variables: a random intercept per group")
    expect(panel.locator("button.run")).to_have_text("Run GLMM")
    expect(control(panel, "conf_level")).to_have_value("95")
    expect(control(panel, "intercept")).to_be_checked()
    panel.locator('summary:text-is("Advanced Options")').click()
    expect(control(panel, "max_iter")).to_have_value("100")
    expect(control(panel, "tol")).to_have_value("1e-6")

    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="age"]')).to_have_count(1)
    # numeric and boolean columns, and those of the ordinal scale (ordered categories: the ordinal family)
    assert options_of(control(panel, "response")) == ["age", "severity", "recovered"]
    # every column is a variable to give a role, with its type; any column can be a cluster variable (issue 19)
    assert panel.locator(".var-list input.var-pick").evaluate_all("xs => xs.map(x => x.value)") == \
        [c["name"] for c in api.get(f"/api/datasets/{ds['id']}").json()["columns"]]
    expect(panel.locator('.var-list label.var:has(input[value="age"]) .var-type')).to_have_text("int64")

    # the family decides the links, canonical first and chosen
    family, link = control(panel, "family"), control(panel, "link")
    # every family and link the engine fits, from the start (issue 19)
    assert family.locator("option").all_inner_texts() == ["Gaussian (Normal)", "Binomial (Logistic)",
                                                          "Poisson (Count)", "Gamma", "Negative Binomial (NB2)",
                                                          "Negative Binomial (NB1)", "Beta", "Beta-binomial",
                                                          "Student t", "Tweedie", "Truncated Poisson (hurdle)",
                                                          "Truncated Negative Binomial (NB2, hurdle)",
                                                          "Truncated Negative Binomial (NB1, hurdle)",
                                                          "Gamma with exact zeros (hurdle)",
                                                          "Ordinal (cumulative link)"]
    assert options_of(link) == ["identity", "log", "inverse"]
    for fam, links in [("poisson", ["log", "identity"]), ("gamma", ["inverse", "log", "identity"]),
                       ("binomial", ["logit", "probit"])]:
        family.select_option(fam)
        assert options_of(link) == links
        expect(link).to_have_value(links[0])

    # a variable plays one role: the Dependent Variable leaves Covariates; a role refuses a column of another type
    assign(panel, "fixed", "recovered")
    control(panel, "response").select_option("recovered")
    expect(role_names(panel, "fixed")).to_have_count(0)
    expect(panel.locator('.var-list input[value="recovered"]')).to_have_count(0)
    panel.locator('.var-list input[value="clinic"]').check()
    field(panel, "fixed").locator("button.move-to").click()
    expect(panel.locator(".role-error")).to_contain_text("clinic is string: a covariate must be numeric")
    expect(role_names(panel, "fixed")).to_have_count(0)
    panel.locator('.var-list input[value="clinic"]').uncheck()
    # invalid choices are explained next to the control, and nothing runs
    control(panel, "conf_level").fill("40")
    expect(field(panel, "conf_level").locator(".field-error")).to_contain_text("between 50 and 99.99")
    control(panel, "conf_level").fill("95")
    panel.locator("button.run").click()
    expect(field(panel, "group").locator(".field-error")).to_contain_text("Choose a Group Variable")
    expect(panel.locator("article.run")).to_have_count(0)

    assign(panel, "group", "clinic")
    assign(panel, "fixed", "age")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "glmm-form.png"))
    # the progress bar appears below the form (the fit is quick, so watch the page for it)
    page.evaluate("""() => { window.__sawProgress = false; new MutationObserver(() => {
        if (document.querySelector('.run progress')) window.__sawProgress = true; })
        .observe(document.body, {subtree: true, childList: true}); }""")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    assert page.evaluate("window.__sawProgress")

    # every table, against `glmmlab fit` on the same data
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "clinic.csv"), "--response", "recovered", "--group",
                   "clinic", "--fixed", "age", "--family", "binomial")
    headers, rows = table_values(run, "random-effects")
    assert headers == ["Component", "Variance", "Std.Dev."]
    assert [r[0] for r in rows] == ["clinic"]  # no Residual row for the binomial family
    assert close(rows[0][1], want["random_effects"][0]["variance"])
    assert close(float(run.locator(".icc").get_attribute("data-value")), want["icc"])
    headers, rows = table_values(run, "fixed-effects")
    assert headers == ["Variable", "Estimate", "Std. Error", "z", "p", "Lower 95%", "Upper 95%", "OR",
                       "exp(Lower 95%)", "exp(Upper 95%)"]
    keys = ["estimate", "std_error", "statistic", "p_value", "lower", "upper", "exp_estimate", "exp_lower",
            "exp_upper"]
    for row, fe in zip(rows, want["fixed_effects"], strict=True):
        assert row[0] == fe["variable"]
        assert all(close(v, fe[k]) for v, k in zip(row[1:], keys)), (row, fe)
    headers, rows = table_values(run, "model-fit")
    fit = dict((r[0], r[1]) for r in rows)
    assert close(fit["Log-Likelihood (Laplace)"], want["fit"]["log_likelihood"])
    assert close(fit["AIC"], want["fit"]["aic"]) and close(fit["BIC"], want["fit"]["bic"])
    assert fit["Observations"] == want["n_obs"] and fit["Groups"] == want["n_groups"]
    assert fit["Rows excluded"] == want["n_excluded"]
    headers, rows = table_values(run, "glm-comparison")
    comp = dict((r[0], r[1]) for r in rows)
    assert close(comp["p-value (boundary-corrected)"], want["glm_comparison"]["lrt_p_value"])
    assert close(comp["Design effect (DEFF)"], want["glm_comparison"]["design_effect"])
    headers, rows = table_values(run, "blup")
    assert headers == ["Group", "Random Intercept", "Std. Error", "Rank"]
    assert [(r[0], r[3]) for r in rows] == [(b["group"], b["rank"]) for b in want["blup"]]
    assert all(close(r[1], b["random_intercept"]) for r, b in zip(rows, want["blup"]))
    run.locator(".model-line").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(DOCS / "glmm-results.png"))

    # save: then the model's tabs become available
    expect(run.locator("button.view-details")).to_be_disabled()
    run.locator("input.model-name").fill("recovery by age")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("recovery by age")
    expect(page.locator('#model-list li.item button.open:text-is("recovery by age")')).to_have_count(1)
    model = api.get("/api/models").json()["models"][0]

    run.locator("button.view-diagnostics").click()
    diag = active_panel(page)
    expect(diag.locator("figure.plot")).to_have_count(4)
    for img in diag.locator("figure.plot img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)  # plots render on the server: slow under load
        assert img.evaluate("i => i.naturalWidth") > 100
    expect(diag.locator(".diag-data table tbody tr")).to_have_count(100)
    assert diag.locator(".diag-data thead th .col-name").all_inner_texts() == [
        "row", "fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect"]
    diag.evaluate("p => p.closest('.tabpanel').scrollTop = 0")
    page.screenshot(path=str(DOCS / "glmm-diagnostics.png"))
    diag.locator('figure.plot[data-kind="caterpillar"] button.add-plot').click()
    expect(diag.locator(".report-status")).to_contain_text("Added")

    # Model Detail: recompute at 90% without touching the saved 95%
    page.locator(".tab", has_text="GLMM").first.click()
    run.locator("button.view-details").click()
    detail = active_panel(page)
    level = detail.locator("input.conf-level")
    expect(level).to_have_value("95")
    _, at95 = table_values(detail, "fixed-effects")
    level.fill("90")
    expect(detail.locator('table[data-table="fixed-effects"] th').nth(5)).to_have_text("Lower 90%")
    headers, at90 = table_values(detail, "fixed-effects")
    assert headers[3:] == ["z", "p", "Lower 90%", "Upper 90%", "OR", "exp(Lower 90%)", "exp(Upper 90%)"]
    for a, b in zip(at90, at95):  # estimate, z and p do not depend on the level; the interval widens
        assert a[1] == b[1] and a[3] == b[3] and a[4] == b[4] and a[5] > b[5] and a[6] < b[6]
    saved = api.get(f"/api/models/{model['id']}").json()
    assert saved["saved_conf_level"] == 0.95 and saved["result"]["model"]["conf_level"] == 0.95

    # (issue 10.3: Add to Report adds every table of the model)
    detail.locator("button.add-report").click()  # (issue 19.6: a dialog to choose what and where; BLUPs on request)
    dialog = page.locator("dialog.add-report-dialog")
    dialog.locator('fieldset[data-group="tables"] label.check', has_text="BLUP").locator("input").check()
    dialog.locator("button.add-chosen").click()
    expect(detail.locator(".report-status")).to_contain_text(
        "Added 7 tables (Random Effects, ICC, Fixed Effects, Omnibus Tests, Model Fit, Comparison with GLM, BLUP)")
    detail.locator("button.open-report").click()
    report = active_panel(page)
    expect(report.locator("li.report-item")).to_have_count(8)
    titles = report.locator(".item-title").all_inner_texts()
    assert titles == ["recovery by age: Caterpillar Plot of Random Intercepts", "recovery by age: Random Effects",
                      "recovery by age: ICC", "recovery by age: Fixed Effects",
                      "recovery by age: Omnibus Tests (Type III)", "recovery by age: Model Fit",
                      "recovery by age: Comparison with GLM (no random intercept)",
                      "recovery by age: BLUP (Random Effect Predictions)"]
    for k in range(3):  # move the Fixed Effects table to the top
        report.locator("li.report-item").nth(3 - k).locator("button.up").click()
        expect(report.locator(".item-title").nth(2 - k)).to_have_text("recovery by age: Fixed Effects")
    expect(report.locator(".item-title").nth(1)).to_have_text("recovery by age: Caterpillar Plot of Random Intercepts")
    fe = report.locator("li.report-item").nth(0)
    assert fe.locator('table[data-table="report-table"] th').nth(5).inner_text() == "Lower 90%"
    with page.expect_download() as download:
        report.locator("a.export").click()
    exported = tmp_path / "report.html"
    download.value.save_as(exported)
    html = exported.read_text()
    assert "<script" not in html and "data:image/png;base64," in html

    # the exported file opens on its own, off the server
    server.stop()
    other = page.context.new_page()
    other.goto(exported.as_uri())
    expect(other.locator("h2")).to_have_text(["recovery by age: Fixed Effects",
                                              "recovery by age: Caterpillar Plot of Random Intercepts",
                                              "recovery by age: Random Effects", "recovery by age: ICC",
                                              "recovery by age: Omnibus Tests (Type III)",
                                              "recovery by age: Model Fit",
                                              "recovery by age: Comparison with GLM (no random intercept)",
                                              "recovery by age: BLUP (Random Effect Predictions)"])
    expect(other.locator("table").first.locator("th").nth(5)).to_have_text("Lower 90%")
    assert other.locator("img").evaluate("i => i.naturalWidth") > 100
    other.close()


def test_blup_table_shows_50_rows_then_all(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, simulated(60, 12), "sixty groups")
    r = api.post("/api/glmm/fits", json={"dataset_id": ds["id"], "response": "y", "fixed": ["x"], "group": "g",
                                         "family": "binomial"})
    fit_id = r.json()["id"]
    for _ in range(300):
        if api.get(f"/api/glmm/fits/{fit_id}").json()["state"] == "done":
            break
        time.sleep(0.05)
    model = api.post("/api/models", json={"fit_id": fit_id, "name": "sixty"}).json()
    ready(page, server.url)
    page.locator('#model-list li.item button.open:text-is("sixty")').click()
    detail = active_panel(page)
    rows = detail.locator('table[data-table="blup"] tbody tr')
    expect(rows).to_have_count(50)
    detail.locator('button.show-all:text-is("Show all 60 rows")').click()
    expect(rows).to_have_count(60)
    assert model["name"] == "sixty"


def big_project(path: Path) -> int:
    """A project holding 2,000,000 rows in 20,000 groups: a Gaussian fit with the log link takes a few seconds."""
    from glmmlab.services.project.catalogue import store_frame
    from glmmlab.services.project.store import Project

    rng = np.random.default_rng(3)
    n_groups, per = 20_000, 100
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    y = (rng.random(g.size) < 1 / (1 + np.exp(-(0.5 * x + rng.normal(0, 0.8, n_groups)[g])))).astype(np.int64)
    labels = np.array([f"G{i:05d}" for i in range(n_groups)])[g]
    path.parent.mkdir(parents=True, exist_ok=True)
    with Project.open(path) as project:
        return store_frame(project, pd.DataFrame({"g": labels, "x": x, "x2": rng.normal(size=g.size), "y": y}),
                           "big simulated", operation={"type": "import"}).id


def test_a_long_fit_shows_progress_and_can_be_cancelled(page, live_server_factory, tmp_path):
    project = tmp_path / "projects" / "big.duckdb"
    ds_id = big_project(project)
    server = live_server_factory(project)
    api = server.api()
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds_id))
    control(panel, "response").select_option("y")
    assign(panel, "fixed", "x", "x2")
    assign(panel, "group", "g")
    control(panel, "link").select_option("log")
    panel.locator("button.run").click()
    panel.locator("button.run").click()  # a second fit at the same time
    expect(panel.locator("article.run")).to_have_count(2)
    first, second = panel.locator("article.run").nth(1), panel.locator("article.run").nth(0)
    expect(first.locator(".stage")).to_contain_text("Optimizing", timeout=30_000)
    assert first.locator("progress").evaluate("p => p.value") > 0
    # the page stays usable while the fits run
    control(panel, "family").select_option("poisson")
    assert options_of(control(panel, "link")) == ["log", "identity"]
    first.locator("button.cancel").click()
    second.locator("button.cancel").click()
    expect(first).to_have_attribute("data-state", "cancelled", timeout=15_000)
    expect(first.locator(".stage")).to_have_text("Cancelled.")
    expect(second).to_have_attribute("data-state", "cancelled", timeout=15_000)
    fits = api.get("/api/glmm/fits").json()["fits"]
    assert [f["state"] for f in fits] == ["cancelled", "cancelled"]
