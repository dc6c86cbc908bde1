"""Issue 12 in a real browser: Analysis > Compare Models... (two saved models of sleepstudy compared as lme4's anova:
the table, the reading sentence, the ML-refit note; a model of another dataset refused inline), and the GLMM form's
Satterthwaite t tests (df, t and Pr(>|t|) in Fixed Effects, equal to lmerTest's; refused next to the field for a
binomial model), with R² in Model Fit."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.inference.conftest import REF, SHARED
from tests.web.pages import assign
from tests.web.test_glmm_browser import DOCS, active_panel, control, field, import_frame, menu, ready, table_values

pytestmark = pytest.mark.browser


def fit_and_save(api, dataset_id, name, **body):
    r = api.post("/api/glmm/fits", json=dict(dataset_id=dataset_id, **body))
    assert r.status_code == 202, r.text
    for _ in range(1200):
        job = api.get(f"/api/glmm/fits/{r.json()['id']}").json()
        if job["state"] == "done":
            break
        assert job["state"] not in ("failed", "cancelled"), job
        time.sleep(0.05)
    r = api.post("/api/models", json={"fit_id": job["id"], "name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_compare_models_dialog(live_server_factory, page):
    server = live_server_factory()
    api = server.api()
    sleep = import_frame(api, pd.read_csv(SHARED / "sleepstudy_gaussian.csv"), "sleepstudy")
    herds = import_frame(api, pd.read_csv(SHARED / "models" / "cbpp_trials.csv"), "herds")
    fit_and_save(api, sleep["id"], "intercepts", formula="Reaction ~ Days + (1 | Subject)")
    fit_and_save(api, sleep["id"], "slopes", formula="Reaction ~ Days + (Days | Subject)")
    fit_and_save(api, herds["id"], "herds", formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
                 family="binomial")
    ready(page, server.url)
    menu(page, "Analysis", "Compare Models...")
    dlg = page.locator("#dlg-compare")
    expect(dlg).to_be_visible()
    # a model of another dataset: refused inline, no table
    dlg.locator("label.check", has_text="intercepts").locator("input").check()
    dlg.locator("label.check", has_text="herds").locator("input").check()
    dlg.locator("button[type=submit]").click()
    expect(dlg.locator(".error")).to_contain_text("models can only be compared on the same data")
    expect(dlg.locator("table")).to_have_count(0)
    dlg.locator("label.check", has_text="herds").locator("input").uncheck()
    dlg.locator("label.check", has_text="slopes").locator("input").check()
    dlg.locator("button[type=submit]").click()
    table = dlg.locator("table[data-table=anova]")
    expect(table).to_be_visible(timeout=60_000)
    expect(dlg.locator(".error")).to_be_hidden()
    heads = table.locator("th").all_inner_texts()
    assert heads == ["Model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    rows = [r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all()]
    assert [r[0] for r in rows] == ["intercepts", "slopes"] and [r[1] for r in rows] == ["4", "6"]
    chisq = float(table.locator("tbody tr").nth(1).locator("td").nth(6).get_attribute("data-value"))
    assert chisq == pytest.approx(REF["anova"]["sleepstudy"]["columns"]["Chisq"][1], rel=1e-6)
    expect(dlg.locator(".compare-reading")).to_have_text(
        "The model slopes fits better than intercepts: χ²(2) = 42.14, p < 0.001.")
    expect(dlg).to_contain_text("Note: refitting model(s) with ML (instead of REML).")
    expect(dlg).to_contain_text("slopes: Reaction ~ Days + (Days | Subject)")
    dlg.screenshot(path=str(DOCS / "compare-models.png"))


def test_satterthwaite_tests_in_the_form(live_server_factory, page):
    server = live_server_factory()
    sleep = import_frame(server.api(), pd.read_csv(SHARED / "sleepstudy_gaussian.csv"), "sleepstudy")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(sleep["id"]))
    control(panel, "response").select_option("Reaction")
    assign(panel, "fixed", "Days")
    assign(panel, "group", "Subject")
    panel.locator("details.advanced summary").click()
    control(panel, "family").select_option("binomial")
    control(panel, "ddf").select_option("satterthwaite")
    expect(field(panel, "ddf").locator(".field-error")).to_contain_text("Gaussian family with the identity link")
    control(panel, "family").select_option("gaussian")
    control(panel, "ddf").select_option("satterthwaite")
    expect(field(panel, "ddf").locator(".field-error")).to_be_hidden()
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    headers, rows = table_values(run, "fixed-effects")
    assert headers[:6] == ["Variable", "Estimate", "Std. Error", "df", "t", "Pr(>|t|)"]
    want = REF["satterthwaite"]["sleep_ri"]
    assert [r[3] for r in rows] == pytest.approx(want["df"], rel=1e-3)
    assert [r[5] for r in rows] == pytest.approx(want["p"], rel=1e-3)
    _, fit = table_values(run, "model-fit")
    labels = [r[0] for r in fit]
    assert labels[-2:] == ["Marginal R² (Nakagawa)", "Conditional R² (Nakagawa)"]
    assert fit[-1][1] == pytest.approx(REF["r2"]["sleep_ri"]["conditional"], rel=1e-5)
    run.locator('table[data-table="fixed-effects"]').screenshot(path=str(DOCS / "glmm-satterthwaite.png"))
