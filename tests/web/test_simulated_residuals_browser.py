"""Simulated (DHARMa) residuals in a real browser: a GLMM run's section and a saved model's Diagnostics tab show the
tests' table and the two plots at the seed asked for; a bad seed is explained next to the controls."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.pages import active_panel, assign, glmm_form, ready

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="dharma-"))


def images_loaded(scope) -> None:
    for img in scope.locator("figure.plot img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)
        assert img.evaluate("i => i.naturalWidth") > 100


def test_simulated_residuals_of_a_run_and_of_a_saved_model(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    ready(page, server.url)
    panel = glmm_form(page, "clinic recovery", "recovered")
    panel.locator('.field[data-field="family"] select').select_option("binomial")
    assign(panel, "group", "clinic")
    assign(panel, "fixed", "age")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)

    sim = run.locator('section[data-section="Simulated Residuals (DHARMa)"]')
    expect(sim.locator("input.sim-nsim")).to_have_value("250")
    expect(sim.locator("input.sim-seed")).to_have_value("123")
    sim.locator("input.sim-seed").fill("-1")
    sim.locator("button.sim-run").click()
    expect(sim.locator(".sim-error")).to_contain_text("Random Seed must be a whole number")
    expect(sim.locator("figure.plot")).to_have_count(0)

    sim.locator("input.sim-seed").fill("42")
    sim.locator("input.sim-nsim").fill("200")
    sim.locator("button.sim-run").click()
    expect(sim.locator("figure.plot")).to_have_count(2, timeout=30_000)
    expect(sim.locator(".sim-error")).to_be_hidden()
    rows = sim.locator('table[data-table="simulated_residuals"] tbody tr')
    expect(rows).to_have_count(4)
    assert rows.locator("td:first-child").all_inner_texts() == ["Uniformity (Kolmogorov-Smirnov)", "Dispersion",
                                                               "Zero-inflation", "Outliers"]
    fit_id = api.get("/api/glmm/fits").json()["fits"][0]["id"]
    want = api.get(f"/api/glmm/fits/{fit_id}/simulated-residuals", params={"n_sim": 200, "seed": 42}).json()
    shown = [float(v) for v in rows.locator("td:nth-child(3)").evaluate_all("ts => ts.map(t => t.dataset.value)")]
    assert shown == pytest.approx([want["tests"][k]["p_value"] for k in
                                   ("uniformity", "dispersion", "zero_inflation", "outliers")], abs=1e-12)
    expect(sim.locator(".sim-note")).to_contain_text("200 simulations, seed 42")
    images_loaded(sim)
    sim.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "glmm-simulated-residuals.png"))

    # the saved model's Diagnostics tab
    run.locator("input.model-name").fill("recovery by age")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("recovery by age")
    run.locator("button.view-diagnostics").click()
    diag = active_panel(page)
    section = diag.locator('section[data-section="Simulated Residuals (DHARMa)"]')
    expect(section.locator("input.sim-conditional")).to_be_checked()  # DHARMa's default: the modes held
    section.locator("button.sim-run").click()
    expect(section.locator("figure.plot")).to_have_count(2, timeout=30_000)
    expect(section.locator(".sim-note")).to_contain_text("held at their fitted modes")
    images_loaded(section)
    section.locator("button.sim-report").click()
    expect(section.locator(".sim-report-status")).to_contain_text("Added the simulated residuals to report")
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "diagnostics-simulated-residuals.png"))
    section.locator("figure.plot").first.locator("button.plot-open").click()
    dialog = page.locator("dialog.plot-dialog")
    expect(dialog.locator("img.plot-full")).to_have_js_property("complete", True, timeout=30_000)
    expect(dialog.locator("a.download-svg")).to_have_attribute("href", "/api/models/1/simulated-residuals/"
                                                               "simulated-qq.svg?n_sim=250&seed=123&conditional=true")
    dialog.locator("button.close-plot").click()
