"""Issue 10.4 in a real browser: rename and delete saved models and reports, reopen a saved model's settings in
the GLMM form, a guard before closing a GLMM tab with unsaved runs, and removing a run."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.web.pages import active_panel, assign, control, glmm_form, ready

pytestmark = pytest.mark.browser


def sample_ids(api) -> dict:
    return {d["name"]: d["id"] for d in api.get("/api/datasets").json()["datasets"]}


def saved_model(api, name: str, **body) -> dict:
    r = api.post("/api/glmm/fits", json=body)
    assert r.status_code == 202, r.text
    deadline = time.time() + 120
    while (job := api.get(f"/api/glmm/fits/{r.json()['id']}").json())["state"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.1)
    assert job["state"] == "done", job
    r = api.post("/api/models", json={"fit_id": job["id"], "name": name})
    assert r.status_code == 201, r.text
    return r.json()


def sidebar_item(page, kind, name):
    return page.locator(f'#{kind}-list li.item:has(button.open:text-is("{name}"))')


def item_button(page, kind, name, button):
    """Press the sidebar item's rename or delete button (they show on hover)."""
    item = sidebar_item(page, kind, name)
    item.hover()
    item.locator(f"button.{button}").click()


def test_models_and_reports_are_renamed_and_deleted_from_the_sidebar(page, live_server_factory):
    server = live_server_factory()
    with server.api() as api:
        ids = sample_ids(api)
        model = saved_model(api, "first model", dataset_id=ids["school scores"], response="score",
                            fixed=["study_hours"], group="school")
        saved_model(api, "other model", dataset_id=ids["school scores"], response="score", group="school")
        report = api.post("/api/reports", json={"name": "weekly"}).json()
    ready(page, server.url)
    page.locator("#model-list button.open", has_text="first model").click()
    expect(active_panel(page).locator(".model-detail .ds-title")).to_have_text("first model")

    # rename: the app's dialog, a clash refused inline, then the new name everywhere
    item_button(page, "model", "first model", "rename")
    dlg = page.locator("#dlg-rename")
    expect(dlg).to_be_visible()
    name = dlg.locator("input[name=name]")
    expect(name).to_have_value("first model")
    name.fill("Other Model")
    dlg.locator("[data-submit]").click()
    expect(dlg.locator(".error")).to_contain_text("already a model called 'other model'")
    name.fill("renamed model")
    dlg.locator("[data-submit]").click()
    expect(dlg).to_be_hidden()
    expect(sidebar_item(page, "model", "renamed model")).to_have_count(1)
    expect(page.locator(".tab.active .tab-label")).to_have_text("renamed model")
    expect(active_panel(page).locator(".ds-title")).to_have_text("renamed model")

    # delete: the app's confirm (Cancel keeps it), then the model, its tab and its diagnostics dataset go
    item_button(page, "model", "renamed model", "delete")
    confirm = page.locator("#dlg-confirm")
    expect(confirm).to_be_visible()
    expect(confirm.locator(".question")).to_contain_text("renamed model")
    confirm.locator("[data-close]").click()
    expect(confirm).to_be_hidden()
    expect(sidebar_item(page, "model", "renamed model")).to_have_count(1)
    item_button(page, "model", "renamed model", "delete")
    confirm.locator("[data-submit]").click()
    expect(sidebar_item(page, "model", "renamed model")).to_have_count(0)
    expect(page.locator(".tab")).to_have_count(0)
    expect(page.locator("#dataset-list button.open", has_text="first model diagnostics")).to_have_count(0)
    with server.api() as api:
        assert api.get(f"/api/models/{model['id']}").status_code == 404
        assert api.get(f"/api/datasets/{model['diagnostics_dataset_id']}").status_code == 404

    # reports the same way
    item_button(page, "report", "weekly", "rename")
    dlg.locator("input[name=name]").fill("monthly")
    dlg.locator("input[name=name]").press("Enter")
    expect(sidebar_item(page, "report", "monthly")).to_have_count(1)
    item_button(page, "report", "monthly", "delete")
    confirm.locator("[data-submit]").click()
    expect(page.locator("#report-list li.empty")).to_have_text("No reports.")
    with server.api() as api:
        assert api.get(f"/api/reports/{report['id']}").status_code == 404


FORM_STATE = """panel => {
  const q = (s) => panel.querySelector(s);
  const v = (name) => { const c = q(`.field[data-field="${name}"] .field-control`).querySelector("select, input");
                        return c.type === "checkbox" ? c.checked : c.value; };
  const names = (name) => Array.from(panel.querySelectorAll(`.field[data-field="${name}"] .role-item .var-name`))
                               .map((e) => e.textContent);
  const checked = (name) => Array.from(panel.querySelectorAll(`.field[data-field="${name}"] input:checked`))
                                 .map((i) => (i.className || "") + ":" + i.value);
  return { dataset: v("dataset_id"), response: v("response"), family: v("family"),
           link: v("link"), intercept: v("intercept"), conf: v("conf_level"), maxIter: v("max_iter"), tol: v("tol"),
           formula: v("formula"), offset: v("offset"), weights: v("weights"),
           fixed: names("fixed"), factors: names("factors"), group: names("group"), random: checked("random"),
           free: Array.from(panel.querySelectorAll(".var-list input.var-pick")).map((i) => i.value),
           terms: Array.from(panel.querySelectorAll(".model-terms li.term code")).map((c) => c.textContent),
           nested: Array.from(panel.querySelectorAll(".random-row .nested-in")).map((s) => s.value) };
}"""


def test_a_saved_models_settings_fill_the_glmm_form_again_without_running(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    panel = glmm_form(page, "regional incidents", "incidents")
    assign(panel, "fixed", "population_k")
    assign(panel, "group", "region")
    control(panel, "family").select_option("poisson")
    assign(panel, "factors", "season")
    panel.locator(".random-row").first.locator("input.slope").first.check()
    panel.locator(".random-row").first.locator("input.correlated").uncheck()
    control(panel, "conf_level").fill("90")
    panel.locator(".advanced > summary").click()
    control(panel, "max_iter").fill("250")
    before = panel.evaluate(FORM_STATE)
    assert "||" in before["formula"] and before["factors"] == ["season"], before
    assert before["terms"] == ["population_k", "season"] and before["group"] == ["region"], before
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=120_000)
    run.locator(".model-name").fill("reopen me")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("Saved as")
    run.locator("button.view-details").click()
    detail = active_panel(page)
    detail.locator("button.reopen").click()
    form = active_panel(page)
    expect(page.locator(".tab.active .tab-label")).to_have_text("GLMM: reopen me")
    expect(control(form, "formula")).to_have_value(before["formula"])
    after = form.evaluate(FORM_STATE)
    assert after == before
    assert form.locator("article.run").count() == 0  # filled, not run
    with server.api() as api:
        assert len(api.get("/api/glmm/fits").json()["fits"]) == 1


def test_a_model_saved_without_a_form_record_fills_the_simple_form(page, live_server_factory):
    server = live_server_factory()
    with server.api() as api:
        ids = sample_ids(api)
        model = saved_model(api, "from the api", dataset_id=ids["clinic recovery"], response="recovered",
                            fixed=["age"], group="clinic", family="binomial", link="probit", conf_level=0.9)
    ready(page, server.url)
    page.evaluate("(id) => window.glmmlab.openTab('glmm', {model: id})", model["id"])
    panel = active_panel(page)
    expect(control(panel, "formula")).to_have_value("recovered ~ age + (1 | clinic)")
    state = panel.evaluate(FORM_STATE)
    assert (state["dataset"], state["response"], state["group"], state["family"], state["link"], state["conf"]) == \
        (str(ids["clinic recovery"]), "recovered", ["clinic"], "binomial", "probit", "90")
    assert state["fixed"] == ["age"] and state["factors"] == [] and state["terms"] == ["age"]


def test_closing_a_glmm_tab_with_unsaved_runs_asks_first_and_a_run_can_be_removed(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    panel = glmm_form(page, "school scores", "score")
    assign(panel, "group", "school")
    for _ in range(2):
        panel.locator("button.run").click()
    expect(panel.locator('article.run[data-state="done"]')).to_have_count(2, timeout=120_000)
    tab = page.locator(".tab.active")

    # closing asks with the app's own dialog (the page fixture fails on a window.confirm); Cancel keeps the tab
    tab.locator(".tab-close").click()
    confirm = page.locator("#dlg-confirm")
    expect(confirm).to_be_visible()
    expect(confirm.locator(".question")).to_contain_text("2 runs with results that are not saved")
    confirm.locator("[data-close]").click()
    expect(page.locator(".tab")).to_have_count(1)

    # removing an unsaved run asks too; the removed run leaves the list
    panel.locator("article.run").first.locator(".remove-run").click()
    expect(confirm).to_be_visible()
    confirm.locator("[data-submit]").click()
    expect(panel.locator("article.run")).to_have_count(1)

    # a saved run needs no question; with only saved runs the tab closes at once
    run = panel.locator("article.run").first
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("Saved as")
    tab.locator(".tab-close").click()
    expect(page.locator(".tab")).to_have_count(0)
    expect(confirm).to_be_hidden()
