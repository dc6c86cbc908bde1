"""issue 19: a missing cell reads NA in the web data grid and in the tables built by glmmlab.table (never
"null", never an empty-looking cell made of CSS)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.web.test_browser import active_panel, ready, sidebar_item

pytestmark = pytest.mark.browser


def test_missing_cells_read_na_in_the_data_grid(page, live_server_factory, scores_csv):
    server = live_server_factory()
    api = server.api()
    r = api.post("/api/datasets/import", params={"filename": "exam.csv", "name": "exam"}, content=scores_csv.encode())
    job = r.json()
    while job["state"] not in ("done", "failed"):
        time.sleep(0.05)
        job = api.get(f"/api/jobs/{job['id']}").json()
    ds = job["result"]["dataset"]
    rows = api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"]
    hours = [c["name"] for c in ds["columns"]].index("hours")
    missing = next(i for i, row in enumerate(rows) if row[hours] is None)  # the JSON keeps null
    ready(page, server.url)
    sidebar_item(page, ds["id"]).locator(".open").click()
    panel = active_panel(page)
    expect(panel.locator("tbody tr")).to_have_count(len(rows))
    cell = panel.locator("tbody tr").nth(missing).locator("td").nth(hours)
    expect(cell).to_have_text("NA")
    expect(cell).to_have_class("null")
    text = panel.locator("table.grid").inner_text()
    assert "null" not in text and "undefined" not in text
    n_missing = sum(v is None for row in rows for v in row)
    expect(panel.locator("tbody td.null")).to_have_count(n_missing)
    for td in panel.locator("tbody td.null").all():
        expect(td).to_have_text("NA")
    # glmmlab.table (the other grids of the pages) the same
    assert page.evaluate("glmmlab.table(['a', 'b'], [[null, 1]]).querySelector('td').textContent") == "NA"
