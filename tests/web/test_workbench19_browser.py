"""Issue 19's workbench points in a real browser, at 1024 x 700 and 1280 x 800: a numeric identifier as the Group
Variable, the heading that describes the model, a dataset switch that resets the model and the formula's message
naming the new dataset's columns; results with room (they scroll with the panel, the form folds to its one-line
model, nothing covers a heading, wide tables scroll in their own frame); plots right after a run opening full size
with PNG and SVG downloads, closed with Escape; Ctrl+Enter, a menu item's focus and the sidebar's tools by Tab."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.web.pages import active_panel, assign, control, role_names, sized_page
from tests.web.test_glmm_browser import import_frame
from tests.web.test_glmm_workbench_api import cbpp_like, sleepstudy_like

pytestmark = pytest.mark.browser

SIZES = [(1024, 700), (1280, 800)]
TOL = 0.5


def overlap(a, b):
    return (a["x"] + a["width"] > b["x"] + TOL and b["x"] + b["width"] > a["x"] + TOL
            and a["y"] + a["height"] > b["y"] + TOL and b["y"] + b["height"] > a["y"] + TOL)


def open_glmm(page):
    page.locator('.menu-title:text-is("Analysis")').click()
    page.locator('.menu.open [role=menuitem]:text-is("Mixed Effects Model (GLMM)...")').click()
    return active_panel(page)


def frames(server):
    import io

    import pandas as pd
    api = server.api()
    sleep = import_frame(api, pd.read_csv(io.StringIO(sleepstudy_like())), "sleep")
    cbpp = import_frame(api, pd.read_csv(io.StringIO(cbpp_like())), "cbpp")
    return sleep, cbpp


@pytest.mark.parametrize("width, height", SIZES)
def test_a_numeric_id_groups_the_heading_says_the_model_and_a_new_dataset_resets_it(browser, live_server_factory,
                                                                                   width, height):
    server = live_server_factory()
    sleep, cbpp = frames(server)
    with sized_page(browser, server.url, width, height) as page:
        panel = open_glmm(page)
        control(panel, "dataset_id").select_option(str(sleep["id"]))
        expect(panel.locator('.var-list input[value="Subject"]')).to_have_count(1)
        control(panel, "response").select_option("Reaction")
        assign(panel, "fixed", "Days")
        assign(panel, "group", "Subject")  # int64: a cluster variable all the same
        kind = panel.locator(".model-kind")
        expect(kind).to_contain_text("Linear mixed model")
        expect(kind).to_contain_text("Random intercept model: g(μ) = Xβ + u_Subject")
        formula = control(panel, "formula")
        formula.fill("Reaction ~ Days + (Days | Subject)")
        expect(panel.locator(".formula-help")).to_have_attribute("data-state", "filled")  # the form shows it
        expect(kind).to_contain_text("Random intercept and slopes: intercept and slope of Days by Subject (correlated)")
        panel.locator("button.run").click()
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)
        expect(run.locator('table[data-table="blup-Subject"] tbody tr')).to_have_count(18)

        # another dataset: a new model, and a typed formula's message names this dataset's columns
        control(panel, "dataset_id").select_option(str(cbpp["id"]))
        expect(control(panel, "response").locator('option[value="incidence"]')).to_have_count(1)
        expect(control(panel, "response")).to_have_value("")
        expect(role_names(panel, "group")).to_have_count(0)
        expect(role_names(panel, "fixed")).to_have_count(0)
        expect(formula).to_have_value("y ~ 1")
        expect(kind).to_contain_text("choose a Group Variable")
        formula.fill("incidence ~ perod + (1 | herd)")
        err = panel.locator('.field[data-field="formula"] .field-error')
        expect(err).to_contain_text("did you mean 'period'")
        expect(err).to_contain_text("Columns: herd, incidence, size, period.")


def clinic_model(panel) -> None:
    """The sample clinic data's binomial model, recovered ~ age + (1 | clinic), chosen with the form."""
    control(panel, "dataset_id").select_option(label="clinic recovery")
    expect(control(panel, "response").locator('option[value="recovered"]')).to_have_count(1)
    control(panel, "response").select_option("recovered")
    control(panel, "family").select_option("binomial")
    assign(panel, "fixed", "age")
    assign(panel, "group", "clinic")


@pytest.mark.parametrize("width, height", SIZES)
def test_results_have_room_and_the_form_folds(browser, live_server_factory, width, height):
    server = live_server_factory()
    with sized_page(browser, server.url, width, height) as page:
        panel = open_glmm(page)
        clinic_model(panel)
        panel.locator("button.run").click()
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)
        # the panel scrolls; the runs are not a box of their own and are not capped in height
        runs = panel.locator(".runs")
        assert runs.evaluate("r => getComputedStyle(r).overflowY === 'visible' && "
                             "getComputedStyle(r).maxHeight === 'none' && r.scrollHeight <= r.clientHeight + 1")
        assert runs.evaluate("r => r.getBoundingClientRect().height") > height  # longer than the window: room
        # the results use the panel's width (minus its padding)
        inner = panel.evaluate("p => p.clientWidth - parseFloat(getComputedStyle(p).paddingLeft) - "
                               "parseFloat(getComputedStyle(p).paddingRight)")
        assert runs.evaluate("r => r.getBoundingClientRect().width") >= inner - 1
        # the Run GLMM button sits in the flow: scrolled anywhere, it covers no heading or label
        run_btn = panel.locator("button.run")
        for target in panel.locator("h2:visible, h3:visible, .field-label:visible").all():
            target.scroll_into_view_if_needed()
            assert not overlap(run_btn.bounding_box(), target.bounding_box()) or \
                target.evaluate("t => t.closest('.form-actions') !== null")
        assert run_btn.evaluate("b => getComputedStyle(b.closest('.form-actions')).position") == "static"
        # a wide table scrolls inside its frame, whose border stays whole
        fe = panel.locator('.table-frame[data-frame-of="fixed-effects"]')
        fb, tb = fe.bounding_box(), fe.locator("table").bounding_box()
        assert fb["x"] + fb["width"] <= panel.bounding_box()["x"] + panel.bounding_box()["width"] + TOL
        assert fe.evaluate("f => getComputedStyle(f).overflowX") == "auto"
        if fe.evaluate("f => f.scrollWidth > f.clientWidth + 1"):
            assert tb["width"] > fb["width"]  # the table is wider than its frame, which did not grow
        assert fe.evaluate("f => getComputedStyle(f).borderRightStyle") == "solid"
        # the form folds to its one-line model and opens again
        panel.locator("button.collapse-form").click()
        expect(panel.locator(".form-summary code")).to_have_text("recovered ~ age + (1 | clinic)")
        expect(panel.locator(".glmm-form > .form-grid")).to_be_hidden()
        assert panel.locator(".glmm-form").bounding_box()["height"] < 160
        panel.locator("button.collapse-form").click()
        expect(panel.locator(".glmm-form > .form-grid")).to_be_visible()
        expect(panel.locator(".form-summary")).to_be_hidden()


def test_plots_right_after_a_run_open_full_size_and_download(browser, live_server_factory):
    server = live_server_factory()
    with sized_page(browser, server.url, 1280, 800) as page:
        panel = open_glmm(page)
        clinic_model(panel)
        control(panel, "formula").press("Control+Enter")  # Ctrl+Enter runs, as the button does
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)
        figs = run.locator(".run-plots figure.plot")
        expect(figs).to_have_count(3)  # not saved, yet plotted
        assert figs.evaluate_all("fs => fs.map(f => f.dataset.kind)") == ["residuals", "caterpillar", "observed"]
        expect(figs.first.locator("figcaption")).to_contain_text("Binned Residuals vs Fitted")
        opener = figs.nth(1).locator("button.plot-open")
        opener.focus()
        page.keyboard.press("Enter")
        dlg = page.locator("dialog.plot-dialog[open]")
        expect(dlg).to_be_visible()
        img = dlg.locator("img.plot-full")
        expect(img).to_have_js_property("complete", True, timeout=30_000)
        assert img.evaluate("i => i.naturalWidth") >= 1000 and img.bounding_box()["width"] > 600
        png, svg = dlg.locator("a.download-png"), dlg.locator("a.download-svg")
        assert png.get_attribute("download").endswith(".png") and svg.get_attribute("download").endswith(".svg")
        api = server.api()
        assert api.get(png.get_attribute("href")).content.startswith(b"\x89PNG")
        assert b"<svg" in api.get(svg.get_attribute("href")).content
        page.keyboard.press("Escape")
        expect(page.locator("dialog.plot-dialog")).to_have_count(0)
        assert page.evaluate("() => document.activeElement.classList.contains('plot-open')")


def test_keyboard_menu_focus_and_sidebar_tools(browser, live_server_factory):
    server = live_server_factory()
    api = server.api()
    api.post("/api/reports", json={"name": "Notes"})
    with sized_page(browser, server.url, 1280, 800) as page:
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        # choosing the GLMM menu item with Enter puts the focus into the form, not back on the menu bar
        page.locator(".brand").click()
        page.keyboard.press("Tab")
        for _ in range(2):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        expect(page.locator(".tab.active .tab-label")).to_have_text("GLMM")
        page.wait_for_function("() => document.activeElement && document.activeElement.closest('.tabpanel') !== null")
        assert page.evaluate("() => document.activeElement.closest('.field').dataset.field") == "dataset_id"
        # the sidebar's rename and delete are reached with Tab, and shown when focused
        page.locator('#report-list li.item button.open').focus()
        page.keyboard.press("Tab")
        rename = page.locator("#report-list li.item button.rename")
        expect(rename).to_be_focused()
        assert rename.evaluate("b => getComputedStyle(b.closest('.item-tools')).opacity") == "1"
        page.keyboard.press("Tab")
        expect(page.locator("#report-list li.item button.delete")).to_be_focused()
