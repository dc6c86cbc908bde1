"""Issue 10 in a real browser: the workbench as a new user finds it (data in, complete saved models, tables out,
plots, layout, keyboard). Screenshots go to docs/ when GLMMLAB_SCREENSHOTS=1, else to a temporary folder."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

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
    expect(offer).to_have_text("Turn the 5 values that are not a number into missing and make 'note' float64")
    shot(page, "type-change-missing.png")
    offer.click()
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
    expect(control(panel, "group").locator("option").first).to_have_text("Choose a dataset first")
    expect(field(panel, "fixed")).to_contain_text("Choose a dataset first.")
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
    control(panel, "group").select_option("school")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=30_000)
    fit = dict(run.locator('table[data-table="model-fit"] tbody tr').evaluate_all(
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].dataset.value])"))
    assert fit["Observations"] == "7" and fit["Rows excluded"] == "1"
