"""Issue 19.8 in a real browser, at 1024 x 700 and 1280 x 800: a type change that turns values into missing asks
first, saying how many of how many, and Undo after it gives the column its values and type back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.web.pages import active_panel, sized_page
from tests.web.test_newuser_browser import import_frame

pytestmark = pytest.mark.browser

SIZES = [(1024, 700), (1280, 800)]
CSV = "herd,size\n" + "".join(f"H{i},{i + 3}\n" for i in range(1, 13)) + "7,20\n,4\n"


def inside_window(page, locator) -> bool:
    b = locator.bounding_box()
    view = page.viewport_size
    return b is not None and b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["width"] <= view["width"] + 0.5 \
        and b["y"] + b["height"] <= view["height"] + 0.5


@pytest.mark.parametrize("width, height", SIZES)
def test_a_destructive_type_change_asks_first_and_can_be_undone(browser, live_server_factory, width, height):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, CSV, "herds")
    before = api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"]
    with sized_page(browser, server.url, width, height) as page:
        page.locator(f'#dataset-list li.item[data-id="{ds["id"]}"] button.open').click()
        panel = active_panel(page)
        dtype = panel.locator('th[data-column="herd"] select.dtype')
        expect(dtype).to_have_value("string")
        dtype.select_option("int64")
        offer = panel.locator("p.error button.set-missing")
        # 13 values present (one cell is empty), 12 of them are not whole numbers
        expect(offer).to_have_text("Turn the 12 of 13 values that are not a whole number into missing and make "
                                   "'herd' int64...")
        expect(dtype).to_have_value("string")

        # it asks first, saying how many; Cancel changes nothing
        offer.click()
        confirm = page.locator("#dlg-confirm")
        expect(confirm).to_be_visible()
        expect(confirm.locator(".question")).to_contain_text("12 of 13 values of 'herd' are not a whole number "
                                                             "(for example 'H1')")
        expect(confirm.locator(".question")).to_contain_text("Undo gives them back")
        expect(confirm.locator("[data-submit]")).to_have_text("Make 12 values missing")
        assert inside_window(page, confirm)
        confirm.locator("[data-close]").click()
        expect(confirm).to_be_hidden()
        assert api.get(f"/api/datasets/{ds['id']}").json()["columns"][0]["dtype"] == "string"

        offer.click()
        confirm.locator("[data-submit]").click()
        expect(dtype).to_have_value("int64")
        bar = panel.locator(".undo-bar")
        expect(bar).to_be_visible()
        expect(bar).to_contain_text("'herd' is now int64; 12 values became missing.")
        assert inside_window(page, bar.locator("button.undo-type"))
        cells = panel.locator("table.grid.data tbody tr td:first-of-type")
        expect(cells.first).to_have_class("null")
        rows = api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"]
        assert [r[0] for r in rows] == [None] * 12 + [7, None]

        # the Undo survives a reload of the tab, and gives the values and the type back
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        panel = active_panel(page)
        bar = panel.locator(".undo-bar")
        expect(bar).to_contain_text("'herd' is now int64")
        bar.locator("button.undo-type").click()
        expect(panel.locator('th[data-column="herd"] select.dtype')).to_have_value("string")
        expect(bar).to_be_hidden()
        expect(panel.locator("table.grid.data tbody tr td:first-of-type").first).to_have_text("H1")
        assert api.get(f"/api/datasets/{ds['id']}/rows").json()["rows"] == before
        assert api.get(f"/api/datasets/{ds['id']}/columns/undo").json() == {"undo": None}
        assert api.post(f"/api/datasets/{ds['id']}/columns/undo").status_code == 400
