"""The GLMM tab with an ordinal response in a real browser: a text column of the ordinal measurement scale as the
Dependent Variable chooses the Ordinal family (a column of another scale is not offered), the Category order shows
the response's categories (sorted) once the formula is checked, a typed order is the fit's, and the results show
the Thresholds table (equal to ``glmmlab.glmm``'s); saved, Model Detail shows it too, and reopened the form has
its family, link and order again."""

from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

import glmmlab
from tests.conftest import REFERENCE
from tests.web.pages import assign
from tests.web.test_glmm_browser import active_panel, close, control, field, import_frame, menu, ready, table_values

pytestmark = pytest.mark.browser

NAMES = {1: "a-poor", 2: "b-fair", 3: "c-good", 4: "d-very good", 5: "e-excellent"}
FORMULA = "rating ~ temp + contact + (1 | judge)"


def test_a_categorical_response_is_fitted_as_an_ordinal_model(page, live_server_factory):
    df = pd.read_csv(REFERENCE / "breadth" / "wine_clmm_logit.csv")
    df["rating"] = df["rating"].map(NAMES)
    df["judge"] = "J" + df["judge"].astype(str)
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, df, "wine")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="rating"]')).to_have_count(0)  # nominal: not offered
    r = api.patch(f"/api/datasets/{ds['id']}/columns", json={"column": "rating", "scale": "ordinal"})
    assert r.status_code == 200, r.text
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(field(panel, "levels")).to_be_hidden()
    expect(control(panel, "response").locator('option[value="rating"]')).to_have_count(1)
    control(panel, "response").select_option("rating")
    expect(control(panel, "family")).to_have_value("ordinal")
    assign(panel, "factors", "temp", "contact")
    assign(panel, "group", "judge")
    expect(control(panel, "formula")).to_have_value(FORMULA)
    expect(field(panel, "levels")).to_be_visible()
    expect(control(panel, "levels")).to_have_value(", ".join(NAMES.values()), timeout=10_000)
    order = list(NAMES.values())[::-1]
    control(panel, "levels").fill(", ".join(order))
    control(panel, "link").select_option("probit")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    want = glmmlab.glmm(FORMULA, df, family="ordinal", link="probit", levels=order).to_dict()
    headers, rows = table_values(run, "thresholds")
    assert headers[0] == "Threshold"
    for r, w in zip(rows, want["thresholds"], strict=True):
        assert r[0] == w["threshold"] and close(r[1], w["estimate"], 1e-6) and close(r[2], w["std_error"], 1e-6)
    _, fixed = table_values(run, "fixed-effects")
    assert [r[0] for r in fixed] == ["tempwarm", "contactyes"]
    assert all(close(r[1], w["estimate"], 1e-6) for r, w in zip(fixed, want["fixed_effects"], strict=True))
    # saved and reopened from Model Detail: the form comes back with the family, link and the typed order
    run.locator(".model-name").fill("wine ordinal")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("Saved as")
    run.locator("button.view-details").click()
    detail = active_panel(page)
    expect(detail.locator('table[data-table="thresholds"]')).to_have_count(1)
    detail.locator("button.reopen").click()
    form = active_panel(page)
    expect(page.locator(".tab.active .tab-label")).to_have_text("GLMM: wine ordinal")
    expect(control(form, "family")).to_have_value("ordinal")
    expect(control(form, "link")).to_have_value("probit")
    expect(control(form, "levels")).to_have_value(", ".join(order))
    expect(control(form, "formula")).to_have_value(FORMULA)
