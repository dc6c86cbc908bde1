"""Issue 10 in a real browser: the workbench as a new user finds it (data in, complete saved models, tables out,
plots, layout, keyboard). Screenshots go to docs/ when GLMMLAB_SCREENSHOTS=1, else to a temporary folder."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.web.pages import assign

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="nu-shots-"))

# A file as R (NA), SPSS/Stata (".", empty) and a person (n/a, NaN) write missing values.
MISSING_CSV = """school,hours,score,passed,region,note
A,4.5,71.2,TRUE,NA,ok
A,NA,64,FALSE,north,NA
B,.,80.5,TRUE,south,n/a
B,6,,NA,east,fine
C,n/a,69.75,FALSE,west,.
C,NaN,58,TRUE,north,good
D,3,66,FALSE,south,bad
D,2.5,NA,TRUE,east,ok
"""


def ready(page, url=None):
    if url:
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


def import_frame(api, text: str, name: str) -> dict:
    r = api.post("/api/datasets/import", params={"filename": f"{name}.csv", "name": name}, content=text.encode())
    assert r.status_code == 202, r.text
    for _ in range(1200):
        job = api.get(f"/api/jobs/{r.json()['id']}").json()
        if job["state"] == "done":
            return job["result"]["dataset"]
        assert job["state"] != "failed", job
        time.sleep(0.05)
    raise AssertionError("import did not finish")


def shot(page, name):
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / name))


# ---- 1. data in -------------------------------------------------------------------------------------------------

def test_missing_value_markers_import_as_missing_numbers_and_a_type_change_offers_missing(
        page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ready(page, server.url)
    path = tmp_path / "r export.csv"
    path.write_text(MISSING_CSV)
    menu(page, "File", "Import Data...")
    page.set_input_files("#dlg-import input[type=file]", str(path))
    page.locator("#dlg-import [data-submit]").click()
    panel = active_panel(page)
    expect(panel.locator(".ds-title")).to_have_text("r export")
    for column, dtype in [("hours", "float64"), ("score", "float64"), ("passed", "boolean"),
                          ("region", "string"), ("note", "string")]:
        expect(panel.locator(f'th[data-column="{column}"] select.dtype')).to_have_value(dtype)
    ds = next(d for d in api.get("/api/datasets").json()["datasets"] if d["name"] == "r export")
    rows = api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"]
    assert [r[1] for r in rows] == [4.5, None, None, 6.0, None, None, 3.0, 2.5]
    assert [r[3] for r in rows] == [True, False, True, None, False, True, False, True]
    assert [r[4] for r in rows][:2] == ["NA", "north"]  # a text column keeps its text

    # 'note' holds words: changing it to float64 is refused, with the count and the offer to make them missing
    panel.locator('th[data-column="note"] select.dtype').select_option("float64")
    error = panel.locator("p.error")
    expect(error).to_contain_text("cannot become float64")
    offer = error.locator("button.set-missing")
    expect(offer).to_have_text("Turn the 5 of 8 values that are not a number into missing and make 'note' float64...")
    shot(page, "type-change-missing.png")
    offer.click()  # (issue 19.8: it asks first; tests/web/test_type_undo_browser.py follows the question and Undo)
    page.locator("#dlg-confirm [data-submit]").click()
    expect(panel.locator('th[data-column="note"] select.dtype')).to_have_value("float64")
    expect(error).to_be_hidden()
    info = api.get(f"/api/datasets/{ds['id']}").json()
    assert {c["name"]: c["dtype"] for c in info["columns"]}["note"] == "float64"
    assert all(r[5] is None for r in api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"])


def test_glmm_menu_starts_on_the_dataset_in_view_and_a_boolean_is_a_binomial_response(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, MISSING_CSV, "flags")
    ready(page, server.url)

    # with no dataset in view the form asks for one instead of saying there are no numeric columns
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    expect(control(panel, "dataset_id")).to_have_value("")
    expect(control(panel, "response").locator("option").first).to_have_text("Choose a dataset first")
    expect(field(panel, "group").locator(".role-list")).to_have_text("Choose a dataset first.")
    expect(field(panel, "fixed").locator(".role-list")).to_have_text("Choose a dataset first.")
    expect(panel.locator(".var-list")).to_have_text("Choose a dataset first.")
    expect(panel).not_to_contain_text("(no numeric columns)")

    # from a dataset tab the form starts on that dataset
    page.locator(f'#dataset-list li.item[data-id="{ds["id"]}"] button.open').click()
    expect(active_panel(page).locator(".ds-title")).to_have_text("flags")
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    expect(control(panel, "dataset_id")).to_have_value(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="passed"]')).to_have_count(1)
    assert options_of(control(panel, "response")) == ["hours", "score", "passed"]

    # a boolean response: the family follows, and the fit runs
    control(panel, "response").select_option("passed")
    expect(control(panel, "family")).to_have_value("binomial")
    expect(control(panel, "link")).to_have_value("logit")
    assign(panel, "group", "school")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    fit = dict(run.locator('table[data-table="model-fit"] tbody tr').evaluate_all(
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].dataset.value])"))
    assert fit["Observations"] == "7" and fit["Rows excluded"] == "1"


def run_fit(api, body: dict) -> str:
    fit_id = api.post("/api/glmm/fits", json=body).json()["id"]
    for _ in range(600):
        job = api.get(f"/api/glmm/fits/{fit_id}").json()
        if job["state"] == "done":
            return fit_id
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError("the fit did not finish")


def clinic(api) -> dict:
    return next(d for d in api.get("/api/datasets").json()["datasets"] if d["name"] == "clinic recovery")


def open_glmm_on(page, dataset_id, response, group, fixed=(), family=None):
    page.locator(f'#dataset-list li.item[data-id="{dataset_id}"] button.open').click()
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    expect(control(panel, "dataset_id")).to_have_value(str(dataset_id))
    expect(control(panel, "response").locator(f'option[value="{response}"]')).to_have_count(1)
    control(panel, "response").select_option(response)
    if family:
        control(panel, "family").select_option(family)
    if fixed:
        assign(panel, "fixed", *fixed)
    assign(panel, "group", group)
    return panel


# ---- 3. complete saved models, unique names ---------------------------------------------------------------------

def test_model_detail_shows_every_table_and_the_warnings_and_names_are_unique(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    ds = clinic(api)
    ready(page, server.url)
    panel = open_glmm_on(page, ds["id"], "recovered", "clinic", ["age"], "binomial")
    panel.locator('summary:text-is("Advanced Options")').click()
    control(panel, "max_iter").fill("1")  # stops early: a warning to carry over
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    run = panel.locator(f'article.run[data-fit-id="{run.get_attribute("data-fit-id")}"]')  # newer runs come first
    expect(run.locator(".warnings")).to_contain_text("did not converge")
    run.locator("input.model-name").fill("early stop")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_have_text(
        "Saved as “early stop”, with the diagnostics dataset “early stop diagnostics”.")

    # the same name again is refused inline, and nothing is saved
    panel.locator("button.run").click()
    second = panel.locator("article.run").first
    expect(panel.locator("article.run")).to_have_count(2)
    expect(second).to_have_attribute("data-state", "done", timeout=30_000)
    second.locator("input.model-name").fill("Early Stop")
    second.locator("button.save").click()
    expect(second.locator(".field-error.save-error")).to_have_text(  # (the Effects section has its own)
        "There is already a model called 'early stop' in this project; choose another Model Name.")
    assert [m["name"] for m in api.get("/api/models").json()["models"]] == ["early stop"]
    # a dataset already holding the diagnostics name: the message names the dataset truly made
    api.post("/api/datasets/import", params={"filename": "x.csv", "name": "other diagnostics"},
             content=b"a,b\n1,2\n")
    time.sleep(1)
    second.locator("input.model-name").fill("other")
    second.locator("button.save").click()
    expect(second.locator(".saved")).to_have_text(
        "Saved as “other”, with the diagnostics dataset “other diagnostics (2)”.")

    # Model Detail: every table of the run and the warnings
    names = ("random-effects", "fixed-effects", "model-fit", "glm-comparison")
    run_cells = {name: run.locator(f'table[data-table="{name}"] td').all_inner_texts() for name in names}
    run.locator("button.view-details").click()
    detail = active_panel(page)
    expect(detail.locator(".ds-title")).to_have_text("early stop")
    expect(detail.locator(".result-section h3")).to_have_text(
        ["Random Effects", "ICC", "Fixed Effects", "Confidence Intervals", "Omnibus Tests (Type III)", "Model Fit",
         "Comparison with GLM (no random intercept)", "BLUP (Random Effect Predictions)", "Effects"])
    expect(detail.locator(".warnings")).to_contain_text("did not converge")
    for name in ("random-effects", "fixed-effects", "model-fit", "glm-comparison", "blup"):
        expect(detail.locator(f'table[data-table="{name}"]')).to_have_count(1)
    # the same cells as the run's tables
    for name in names:
        assert detail.locator(f'table[data-table="{name}"] td').all_inner_texts() == run_cells[name] != []
    detail.locator(".result-section h3").first.scroll_into_view_if_needed()
    shot(page, "model-detail-complete.png")
    detail.locator("button.add-report").click()  # a dialog to choose what and where; BLUPs on request
    dialog = page.locator("dialog.add-report-dialog")
    dialog.locator('fieldset[data-group="tables"] label.check', has_text="BLUP").locator("input").check()
    dialog.locator("button.add-chosen").click()
    expect(detail.locator(".report-status")).to_contain_text("Added 7 tables")
    rep = api.get("/api/reports").json()["reports"][0]
    items = api.get(f"/api/reports/{rep['id']}").json()["items"]
    assert [i["title"] for i in items] == [f"early stop: {t}" for t in (
        "Random Effects", "ICC", "Fixed Effects", "Omnibus Tests (Type III)", "Model Fit",
        "Comparison with GLM (no random intercept)", "BLUP (Random Effect Predictions)")]
    assert "did not converge" in items[0]["payload"]["note"]


# ---- 6. one number formatter ------------------------------------------------------------------------------------

def cli_text(api, dataset_id, path: Path, *args) -> str:
    import subprocess
    import sys

    page = api.get(f"/api/datasets/{dataset_id}/rows", params={"limit": 5000}).json()
    pd.DataFrame(page["rows"], columns=[c["name"] for c in page["columns"]]).to_csv(path, index=False)
    glmmlab = Path(sys.executable).parent / "glmmlab"
    return subprocess.run([str(glmmlab), "fit", str(path), *args], capture_output=True, text=True,
                          check=True).stdout


def text_block(text: str, title: str) -> list[list[str]]:
    """The rows of a table of the command line's text output, split on runs of two or more blanks."""
    import re

    lines = text.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def test_the_web_and_the_command_line_write_the_same_digits(page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ds = clinic(api)
    ready(page, server.url)
    panel = open_glmm_on(page, ds["id"], "recovered", "clinic", ["age"], "binomial")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    text = cli_text(api, ds["id"], tmp_path / "clinic.csv", "--response", "recovered", "--group", "clinic",
                    "--fixed", "age", "--family", "binomial", "--blups", "all")
    for name, title in [("random-effects", "Random Effects"), ("fixed-effects", "Fixed Effects"),
                        ("model-fit", "Model Fit"), ("glm-comparison", "Comparison with GLM (no random intercept)"),
                        ("blup", "BLUP (Random Effect Predictions)")]:
        web = run.locator(f'table[data-table="{name}"] tbody tr').evaluate_all(
            "trs => trs.map(tr => Array.from(tr.cells).map(td => td.textContent))")
        assert web == text_block(text, title)[:len(web)], name
    cells = run.locator("table.result-grid td").all_inner_texts()
    assert "NA" not in cells and not any("e-" in c for c in cells)
    fit = dict(run.locator('table[data-table="model-fit"] tbody tr').evaluate_all(
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))
    assert fit["Observations"] == "1,293"  # thousands separators for counts
    # a decimal column never shows a bare integer beside fixed decimals
    for name in ("random-effects", "fixed-effects"):
        for row in run.locator(f'table[data-table="{name}"] tbody tr').evaluate_all(
                "trs => trs.map(tr => Array.from(tr.cells).map(td => td.textContent))"):
            assert all(len(c.split(".")[1]) == 4 for c in row[1:]), row


# ---- 5. copy and CSV of every results table ---------------------------------------------------------------------

def test_every_results_table_copies_as_tab_separated_text_and_downloads_as_csv(page, live_server_factory, tmp_path):
    import urllib.parse

    server = live_server_factory()
    api = server.api()
    ds = clinic(api)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    ready(page, server.url)
    panel = open_glmm_on(page, ds["id"], "recovered", "clinic", ["age"], "binomial")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    job = api.get(f"/api/glmm/fits/{run.get_attribute('data-fit-id')}").json()
    sections = run.locator("section.result-section")
    expect(sections).to_have_count(10)  # seven tables (Omnibus Tests among them), Effects, plots, simulated residuals
    for k in range(7):  # every table has both
        expect(sections.nth(k).locator(".section-head button.copy-table")).to_have_count(1)
        expect(sections.nth(k).locator(".section-head button.csv-table")).to_have_count(1)
    expect(sections.nth(7)).to_have_attribute("data-section", "Effects")
    expect(sections.nth(8)).to_have_attribute("data-section", "Plots")

    fe = run.locator('section[data-section="Fixed Effects"]')
    fe.locator("button.copy-table").click()
    expect(fe.locator(".copy-status")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    lines = [line.split("\t") for line in copied.strip("\n").split("\n")]
    assert lines[0] == job["display"]["fixed_effects_headers"]
    assert lines[1:] == fe.locator("tbody tr").evaluate_all(
        "trs => trs.map(tr => Array.from(tr.cells).map(td => td.textContent))")

    blup = run.locator('section[data-section="BLUP (Random Effect Predictions)"]')
    with page.expect_download() as download:
        blup.locator("button.csv-table").click()
    assert download.value.suggested_filename == "BLUP_Random_Effect_Predictions.csv"
    frame = pd.read_csv(download.value.path())
    assert list(frame.columns) == ["Group", "Random Intercept", "Std. Error", "Rank"]
    assert len(frame) == job["result"]["n_groups"]  # all rows, not only the ones shown
    assert np.allclose(frame["Random Intercept"], [b["random_intercept"] for b in job["result"]["blup"]],
                       rtol=1e-12)  # full precision

    # Model Detail: the table at the level in view; the report tab; the exported file
    run.locator("input.model-name").fill("copy me")
    run.locator("button.save").click()
    expect(run.locator(".saved")).to_contain_text("copy me")
    run.locator("button.view-details").click()
    detail = active_panel(page)
    detail.locator("input.conf-level").fill("90")
    expect(detail.locator('table[data-table="fixed-effects"] th').nth(5)).to_have_text("Lower 90%")
    with page.expect_download() as download:
        detail.locator('section[data-section="Fixed Effects"] button.csv-table').click()
    assert list(pd.read_csv(download.value.path()).columns)[3:7] == ["z", "p", "Lower 90%", "Upper 90%"]
    detail.locator("button.add-report").click()  # a dialog to choose what and where; BLUPs on request
    dialog = page.locator("dialog.add-report-dialog")
    dialog.locator('fieldset[data-group="tables"] label.check', has_text="BLUP").locator("input").check()
    dialog.locator("button.add-chosen").click()
    detail.locator("button.open-report").click()
    report = active_panel(page)
    expect(report.locator("li.report-item")).to_have_count(7)  # the Omnibus Tests table is one of them
    item = report.locator("li.report-item").nth(2)
    expect(item.locator(".item-title")).to_have_text("copy me: Fixed Effects")
    item.locator("button.copy-table").click()
    expect(item.locator(".copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()").split("\n")[0].split("\t")[5] == "Lower 90%"
    shot(page, "report-copy-csv.png")

    with page.expect_download() as download:
        report.locator("a.export").click()
    exported = tmp_path / "report.html"
    download.value.save_as(exported)
    other = page.context.new_page()
    other.goto(exported.as_uri())
    links = other.locator("a.csv")
    expect(links).to_have_count(7)
    href = links.nth(2).get_attribute("href")
    assert href.startswith("data:text/csv;charset=utf-8,")
    csv_text = urllib.parse.unquote(href.split(",", 1)[1])
    assert csv_text.splitlines()[0].split(",")[5] == "Lower 90%"
    other.locator("details.copy").nth(2).locator("summary").click()
    tsv = other.locator("details.copy textarea").nth(2).input_value()
    assert tsv.split("\n")[0].split("\t")[5] == "Lower 90%"
    assert "<script" not in exported.read_text()
    other.close()


# ---- 7. plots -----------------------------------------------------------------------------------------------------

def test_plots_are_drawn_at_twice_their_size_binomial_residuals_are_binned_and_reports_keep_them(
        page, live_server_factory, tmp_path):
    import base64
    import struct

    server = live_server_factory()
    api = server.api()
    ds = clinic(api)
    fit_id = run_fit(api, {"dataset_id": ds["id"], "response": "recovered", "fixed": ["age"], "group": "clinic",
                           "family": "binomial"})
    model = api.post("/api/models", json={"fit_id": fit_id, "name": "plots"}).json()
    ready(page, server.url)
    page.locator('#model-list li.item button.open:text-is("plots")').click()
    active_panel(page).locator("button.view-diagnostics").click()
    diag = active_panel(page)
    expect(diag.locator("figure.plot")).to_have_count(4)
    expect(diag.locator("figure.plot figcaption").first).to_contain_text("Binned Residuals vs Fitted")
    for img in diag.locator("figure.plot img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)  # plots render on the server: slow under load
        natural, shown = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
        assert natural >= 2 * shown - 1 and shown > 200, (natural, shown)
    diag.locator('figure.plot[data-kind="residuals"]').scroll_into_view_if_needed()
    shot(page, "diagnostics-binned.png")
    png = api.get(f"/api/models/{model['id']}/plots/residuals.png").content
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1008, 720)

    # into a report at full quality
    diag.locator('figure.plot[data-kind="residuals"] button.add-plot').click()
    expect(diag.locator(".report-status")).to_contain_text("Added")
    rep = api.get("/api/reports").json()["reports"][0]
    item = api.get(f"/api/reports/{rep['id']}").json()["items"][0]
    assert item["title"] == "plots: Binned Residuals vs Fitted"
    assert struct.unpack(">II", base64.b64decode(item["payload"]["png_base64"])[16:24]) == (1008, 720)
    page.evaluate(f"glmmlab.openTab('report', {{id: {rep['id']}}})")
    img = active_panel(page).locator("img.report-plot")
    expect(img).to_have_js_property("complete", True, timeout=30_000)  # plots render on the server: slow under load
    natural, shown = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    assert natural >= 2 * shown - 1


def test_binned_residuals_average_observed_minus_fitted_per_bin():
    from glmmlab.services.workbench.plots import binned_residuals

    fitted = np.linspace(0.05, 0.95, 400)
    observed = (np.arange(400) % 2).astype(float)
    b = binned_residuals(fitted, observed)
    assert len(b["fitted"]) == 20  # sqrt(400)
    assert np.allclose(b["fitted"], [fitted[k * 20:(k + 1) * 20].mean() for k in range(20)])
    assert np.allclose(b["residual"], [(observed - fitted)[k * 20:(k + 1) * 20].mean() for k in range(20)])
    assert np.allclose(b["band"], 2 * np.sqrt(b["fitted"] * (1 - b["fitted"]) / 20))
