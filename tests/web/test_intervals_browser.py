"""Model Detail's Confidence Intervals in a real browser (issue 12.2): the interval-method choice, progress while
the bootstrap runs, and tables equal to result.conf_int (bootstrap, same seed) and lme4 (profile)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

import glmmlab
from tests.web.test_glmm_browser import DOCS, active_panel, import_frame, ready, table_values
from tests.web.test_intervals_api import REF, SLEEP

pytestmark = pytest.mark.browser

FORMULA = "Reaction ~ Days + (Days | Subject)"


def open_saved_model(page, server, api, body: dict, name: str) -> None:
    """Fit ``body`` through the API, save it as ``name`` and open its Model Detail tab."""
    fit = api.post("/api/glmm/fits", json=body).json()
    for _ in range(600):
        fit = api.get(f"/api/glmm/fits/{fit['id']}").json()
        if fit["state"] == "done":
            break
        page.wait_for_timeout(100)
    model = api.post("/api/models", json={"fit_id": fit["id"], "name": name}).json()
    ready(page, server.url)
    page.evaluate("m => window.glmmlab.openTab('model', {id: m.id}, {title: m.name})", model)


def test_model_detail_profile_and_bootstrap_intervals(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    data = pd.read_csv(SLEEP)
    ds = import_frame(api, data, "sleepstudy")
    open_saved_model(page, server, api, {"dataset_id": ds["id"], "formula": FORMULA}, "sleep slopes")
    panel = active_panel(page)
    section = panel.locator('section[data-section="Confidence Intervals"]')
    expect(section).to_have_count(1)
    # the bootstrap: samples and seed, progress while it runs, then the table
    section.locator("select.ci-method").select_option("boot")
    expect(section.locator("input.ci-nsim")).to_be_visible()
    section.locator("input.ci-nsim").fill("200")
    section.locator("input.ci-seed").fill("11")
    section.locator("button.ci-run").click()
    expect(section.locator(".ci-progress progress")).to_have_count(1)
    expect(section.locator(".ci-box")).to_have_attribute("data-state", "done", timeout=240_000)
    headers, rows = table_values(section, "intervals")
    assert headers == ["Parameter", "Lower 95%", "Upper 95%"]
    want = glmmlab.glmm(FORMULA, data).conf_int(method="boot", nsim=200, seed=11)
    assert [r[0] for r in rows] == list(want.index)
    np.testing.assert_allclose([r[1] for r in rows], want["lower"], rtol=1e-6)
    np.testing.assert_allclose([r[2] for r in rows], want["upper"], rtol=1e-6)
    expect(section.locator(".note").last).to_contain_text("200 simulated refits (seed 11)")
    section.evaluate("e => e.scrollIntoView({block: 'start'})")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "model-detail-intervals.png"))

    # the profile at the page's Confidence Level, against lme4
    section.locator("select.ci-method").select_option("profile")
    expect(section.locator("input.ci-nsim")).to_be_hidden()
    section.locator("button.ci-run").click()
    expect(section.locator("h4.ci-title")).to_have_text("Confidence Intervals (Profile likelihood, 95%)",
                                                        timeout=120_000)
    _, rows = table_values(section, "intervals")
    ref = json.loads(REF.read_text())["profile"]
    width = np.array(ref["upper"]) - np.array(ref["lower"])
    assert [r[0] for r in rows] == ref["names"]
    assert np.all(np.abs(np.array([r[1] for r in rows]) - ref["lower"]) < 0.01 * width)
    assert np.all(np.abs(np.array([r[2] for r in rows]) - ref["upper"]) < 0.01 * width)


def test_profile_intervals_of_a_model_above_2000_rows(page, live_server_factory):
    """From 2,000 rows the profile runs in worker processes (the server has threads, so they start from a fork
    server and the problem is pickled: its family used to hold lambdas, and every such profile failed). A Gamma
    model, whose profile covers sigma too, equal to result.conf_int(method="profile") in Python."""
    rng = np.random.default_rng(23)
    g = np.repeat(np.arange(120), 20)
    x = rng.normal(size=g.size)
    mu = np.exp(1.0 + 0.3 * x + rng.normal(0, 0.4, 120)[g])
    data = pd.DataFrame({"y": rng.gamma(1 / 0.3 ** 2, mu * 0.3 ** 2), "x": x, "g": [f"g{k}" for k in g]})
    formula = "y ~ x + (1 | g)"
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, data, "gamma 2400")
    open_saved_model(page, server, api, {"dataset_id": ds["id"], "formula": formula, "family": "gamma",
                                         "link": "log"}, "gamma profile")
    section = active_panel(page).locator('section[data-section="Confidence Intervals"]')
    section.locator("select.ci-method").select_option("profile")
    section.locator("button.ci-run").click()
    expect(section.locator("h4.ci-title")).to_have_text("Confidence Intervals (Profile likelihood, 95%)",
                                                        timeout=180_000)
    _, rows = table_values(section, "intervals")
    want = glmmlab.glmm(formula, data, family="gamma", link="log").conf_int(method="profile")
    assert [r[0] for r in rows] == list(want.index) == ["sd_(Intercept)|g", "sigma", "(Intercept)", "x"]
    # the page shows 4 decimals: 1e-3 relative is what those digits carry for these values (0.05 to 3)
    np.testing.assert_allclose([r[1] for r in rows], want["lower"], rtol=1e-3)
    np.testing.assert_allclose([r[2] for r in rows], want["upper"], rtol=1e-3)
