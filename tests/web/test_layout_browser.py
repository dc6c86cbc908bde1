"""Issue 10.8 in a real browser: the layout at 1024 x 700 and 1280 x 800, measured with bounding boxes: nothing
overlaps or leaves the window, the GLMM form is one column when narrow, results scroll in their own box, the tab
strip scrolls with a visible overflow indicator, sticky table headers sit flush, Model Detail's buttons stay on one
line, and the Dummy Coding dialog's buttons stay on screen.

With GLMMLAB_SCREENSHOTS=1 the screenshots of the workbench, the GLMM form with results and Model Detail at 1024
and 1400 px wide go to docs/ (otherwise to a temporary folder)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.pages import assign, glmm_form, sized_page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="layout-"))
CHECKS = Path(tempfile.mkdtemp(prefix="layout-checks-"))  # the measured tests' own pictures, not for docs/
SIZES = [(1024, 700), (1280, 800)]
TOL = 0.5  # px: boxes are fractional


def box(locator) -> dict:
    b = locator.bounding_box()
    assert b is not None, f"{locator} is not displayed"
    return b


def inside(b: dict, outer: dict) -> bool:
    return (b["x"] >= outer["x"] - TOL and b["y"] >= outer["y"] - TOL
            and b["x"] + b["width"] <= outer["x"] + outer["width"] + TOL
            and b["y"] + b["height"] <= outer["y"] + outer["height"] + TOL)


def overlap(a: dict, b: dict) -> bool:
    return (a["x"] + a["width"] > b["x"] + TOL and b["x"] + b["width"] > a["x"] + TOL
            and a["y"] + a["height"] > b["y"] + TOL and b["y"] + b["height"] > a["y"] + TOL)


def assert_apart(page, locators: dict) -> None:
    """Every named element is inside the window and no two overlap."""
    view = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": page.viewport_size["height"]}
    boxes = {name: box(loc) for name, loc in locators.items()}
    for name, b in boxes.items():
        assert inside(b, view), f"{name} leaves the {view['width']}x{view['height']} window: {b}"
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not overlap(boxes[a], boxes[b]), f"{a} {boxes[a]} overlaps {b} {boxes[b]}"


def frame_parts(page) -> dict:
    parts = {"brand": page.locator(".brand"), "project": page.locator(".project-label"),
             "sidebar": page.locator(".sidebar"), "tabbar": page.locator(".tabbar"),
             "statusbar": page.locator(".statusbar")}
    for title in ("File", "Data", "Analysis", "Help"):
        parts[title] = page.locator(f'.menu-title:text-is("{title}")')
    panel = page.locator(".tabpanel:not([hidden])")
    parts["panel"] = panel if panel.count() else page.locator("#welcome")
    return parts


def no_page_scroll(page) -> None:
    assert page.evaluate("() => document.documentElement.scrollHeight <= window.innerHeight + 1 && "
                         "document.documentElement.scrollWidth <= window.innerWidth + 1")


def open_glmm_with_results(page):
    panel = glmm_form(page, "school scores", "score")
    assign(panel, "fixed", "study_hours")
    assign(panel, "group", "school")
    return panel


def run_and_wait(panel):
    panel.locator("button.run").click()
    expect(panel.locator("article.run").first).to_have_attribute("data-state", "done", timeout=120_000)


@pytest.mark.parametrize("width, height", SIZES)
def test_the_glmm_tab_and_model_detail_fit_the_window(browser, live_server_factory, width, height):
    server = live_server_factory()
    with sized_page(browser, server.url, width, height) as page:
        assert_apart(page, frame_parts(page))
        panel = open_glmm_with_results(page)
        cols = panel.locator(".glmm-form > .form-grid > .col")
        first, second = box(cols.nth(0)), box(cols.nth(1))
        if width <= 1024:  # one column: the second below the first
            assert second["y"] >= first["y"] + first["height"] - TOL and abs(second["x"] - first["x"]) < 1
        else:  # room for two side by side
            assert abs(second["y"] - first["y"]) < 1 and second["x"] >= first["x"] + first["width"]
        form = box(panel.locator(".glmm-form"))
        for control in panel.locator(".glmm-form .field:visible .field-control").all():
            assert inside(box(control), {**form, "y": -10_000, "height": 100_000}), "a control is cut off"
        for field in panel.locator(".glmm-form > .form-grid .field:visible").all():
            label, control = box(field.locator(".field-label")), box(field.locator(".field-control"))
            assert not overlap(label, control), (field.get_attribute("data-field"), label, control)

        run_and_wait(panel)
        runs = panel.locator(".runs")
        parts = frame_parts(page)
        del parts["panel"]  # the form and the runs are inside it
        assert_apart(page, parts)
        assert inside(box(panel.locator("button.run")), box(panel.locator(".glmm-form")))
        no_page_scroll(page)
        # issue 19.2 (replacing 10.8's box of its own): the results scroll with the tab's panel, no box inside it
        assert panel.evaluate("p => p.scrollHeight > p.clientHeight + 50")
        assert runs.evaluate("r => r.scrollHeight <= r.clientHeight + 1 && getComputedStyle(r).overflowY === "
                             "'visible'")
        # a long results table (BLUP) has a frame of its own whose header sticks flush to its top
        blup = runs.locator('table[data-table="blup"]')
        frame = runs.locator('.table-frame[data-frame-of="blup"]')
        frame.evaluate("f => { f.scrollTop = 120; }")
        head = box(blup.locator("thead th").first)
        top = frame.evaluate("f => f.getBoundingClientRect().top + f.clientTop")
        assert abs(head["y"] - top) < 1, (head, top)
        if width == 1024:
            page.screenshot(path=str(CHECKS / "layout-1024-glmm.png"))

        run = runs.locator("article.run").first
        run.locator(".model-name").fill(f"layout {width}")
        run.locator("button.save").click()
        expect(run.locator(".saved")).to_contain_text("Saved as")
        run.locator("button.view-details").click()
        detail = page.locator(".tabpanel:not([hidden]) .model-detail")
        expect(detail.locator(".ds-title")).to_have_text(f"layout {width}")
        buttons = detail.locator(".ds-actions button")
        assert buttons.count() >= 3
        boxes = [box(b) for b in buttons.all()]
        one_line = box(detail.locator(".ds-actions button").first)["height"]
        assert all(abs(b["y"] - boxes[0]["y"]) < 1 and b["height"] <= one_line + TOL for b in boxes), boxes
        assert one_line < 40, "a button's label wraps"
        heading = box(detail.locator(".ds-title"))
        assert all(not overlap(heading, b) for b in boxes)
        assert all(inside(b, box(page.locator(".tabpanel:not([hidden])"))) for b in boxes)
        assert_apart(page, frame_parts(page))
        no_page_scroll(page)
        if width == 1024:
            page.screenshot(path=str(CHECKS / "layout-1024-model-detail.png"))


@pytest.mark.parametrize("width, height", SIZES)
def test_the_tab_strip_scrolls_with_a_visible_overflow_indicator(browser, live_server_factory, width, height):
    server = live_server_factory()
    with sized_page(browser, server.url, width, height) as page:
        for name in ("school scores", "clinic recovery", "regional incidents", "hospital costs"):
            page.locator("#dataset-list button.open", has_text=name).click()
        strip = page.locator("#tabstrip")
        left, right = page.locator(".tab-scroll.left"), page.locator(".tab-scroll.right")
        if not strip.evaluate("s => s.scrollWidth > s.clientWidth"):
            expect(left).to_be_hidden()
            expect(right).to_be_hidden()
        for _ in range(8):  # GLMM tabs are not keyed: each opens a new one
            page.evaluate("() => window.glmmlab.openTab('glmm', {})")
        expect(page.locator(".tab")).to_have_count(12)
        assert strip.evaluate("s => s.scrollWidth > s.clientWidth")
        expect(left).to_be_visible()  # the newest (active) tab is in view at the right end: more to the left
        expect(right).to_be_hidden()
        active = box(page.locator(".tab.active"))
        assert inside(active, box(strip)), "the active tab is scrolled into view"
        left.click()
        expect(right).to_be_visible()
        parts = frame_parts(page)
        del parts["tabbar"]  # it holds the strip and the buttons
        parts.update(strip=strip, right=right)
        if left.is_visible():
            parts["left"] = left
        assert_apart(page, parts)
        no_page_scroll(page)


def test_the_dataset_tables_sticky_header_sits_flush(browser, live_server_factory):
    server = live_server_factory()
    with sized_page(browser, server.url, 1024, 700) as page:
        page.locator("#dataset-list button.open", has_text="school scores").click()
        scroller = page.locator(".tabpanel:not([hidden]) .table-scroll")
        expect(scroller.locator("tbody tr")).not_to_have_count(0)
        scroller.evaluate("s => { s.scrollTop = 400; }")
        top = scroller.evaluate("s => s.getBoundingClientRect().top + s.clientTop")
        for th in scroller.locator("thead th").all()[:3]:
            assert abs(box(th)["y"] - top) < 1
        first_row = scroller.locator("tbody tr").first
        assert box(first_row)["y"] < top  # the rows did scroll under the header
        assert_apart(page, frame_parts(page))
        page.screenshot(path=str(CHECKS / "layout-1024-workbench.png"))


@pytest.mark.parametrize("height", [900, 700])
def test_the_dummy_coding_dialogs_buttons_stay_on_screen(browser, live_server_factory, height):
    server = live_server_factory()
    with sized_page(browser, server.url, 1280, height) as page:
        page.locator("#dataset-list button.open", has_text="hospital costs").click()
        page.locator('.menu-title:text-is("Data")').click()
        page.locator('.menu.open [role=menuitem]:text-is("Dummy Coding...")').click()
        dlg = page.locator("#dlg-dummy")
        expect(dlg.locator("table.dummy-spec tbody tr")).not_to_have_count(0)
        for select in dlg.locator("tbody tr:has(td:text-is('string')) select.action").all():
            select.select_option("dummy_keep")
        expect(dlg.locator(".preview-rows table")).to_have_count(1)
        time.sleep(0.3)
        view = {"x": 0, "y": 0, "width": 1280, "height": height}
        for b in dlg.locator(".buttons button").all():
            bb = box(b)
            assert inside(bb, view), bb
            hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).textContent.trim()",
                                [bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2])
            assert hit == b.inner_text().strip(), "the button is covered"
        dlg.locator("[data-submit]").click()
        expect(dlg).to_be_hidden()


@pytest.mark.parametrize("width, height", [(1024, 700), (1400, 900)])
def test_screenshots_of_the_workbench_glmm_form_and_model_detail(browser, live_server_factory, width, height):
    """The docs' pictures (look at them): the workbench with a dataset, the GLMM form with results, Model Detail."""
    server = live_server_factory()
    with sized_page(browser, server.url, width, height) as page:
        page.locator("#dataset-list button.open", has_text="school scores").click()
        expect(page.locator(".tabpanel:not([hidden]) tbody tr")).not_to_have_count(0)
        page.screenshot(path=str(SHOTS / f"workbench-{width}.png"))
        panel = open_glmm_with_results(page)
        run_and_wait(panel)
        page.screenshot(path=str(SHOTS / f"glmm-form-results-{width}.png"))
        run = panel.locator("article.run").first
        run.locator(".model-name").fill("school scores GLMM")
        run.locator("button.save").click()
        expect(run.locator(".saved")).to_contain_text("Saved as")
        run.locator("button.view-details").click()
        expect(page.locator(".tabpanel:not([hidden]) .model-detail")).to_have_count(1)
        page.screenshot(path=str(SHOTS / f"model-detail-{width}.png"))
