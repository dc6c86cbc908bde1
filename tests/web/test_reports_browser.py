"""Issue 19 points 5 and 6 in a real browser: after a run, the Effects section (a factor's effect plot, its marginal
means and Tukey/Holm pairwise comparisons; a covariate's line by a factor), and Add to Report: a dialog listing the
run's tables and plots with checkboxes and a report chooser with "New report..." (a blank name refused inline), added
once however often it is clicked, effects added from their section, and the report exported as Word."""

from __future__ import annotations

import io

import docx
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.inference.conftest import SHARED
from tests.web.pages import active_panel, control, menu, sized_page
from tests.web.test_glmm_browser import DOCS, import_frame

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width, height", [(1280, 800), (1024, 700)])
def test_effects_and_the_add_to_report_dialog(browser, live_server_factory, tmp_path, width, height):
    server = live_server_factory()
    herds = pd.read_csv(SHARED / "models" / "cbpp_trials.csv")
    herds["size_c"] = herds["size"] - herds["size"].mean()
    ds = import_frame(server.api(), herds, "herds")
    big = width == 1280
    with sized_page(browser, server.url, width, height) as page:
        menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
        panel = active_panel(page)
        control(panel, "dataset_id").select_option(str(ds["id"]))
        control(panel, "family").select_option("binomial")
        control(panel, "formula").fill("cbind(incidence, size - incidence) ~ period + size_c + (1 | herd)")
        panel.locator("button.run").click()
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)

        # Effects: period (a factor) first: points with intervals, 4 means, 6 Tukey comparisons
        effects = run.locator('section[data-section="Effects"]')
        expect(effects.locator("select.effect-term")).to_have_value("period")
        expect(effects.locator('table[data-table="emmeans"] tbody tr')).to_have_count(4)
        expect(effects.locator('table[data-table="pairs"] tbody tr')).to_have_count(6)
        expect(effects.locator('[data-table="pairs"] h4')).to_have_text("Pairwise Comparisons: period (tukey)")
        img = effects.locator("figure.plot img")
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True, timeout=30_000)
        assert img.evaluate("i => i.naturalWidth") > 500
        probs = [float(v) for v in effects.locator('table[data-table="emmeans"] tbody tr td:nth-child(2)')
                 .evaluate_all("tds => tds.map(t => t.dataset.value)")]
        assert all(0 < p < 1 for p in probs)  # the response scale: probabilities
        effects.locator("select.effect-adjust").select_option("holm")
        expect(effects.locator('[data-table="pairs"] h4')).to_have_text("Pairwise Comparisons: period (holm)")
        if big:
            effects.scroll_into_view_if_needed()
            effects.screenshot(path=str(DOCS / "glmm-effects.png"))
        # a covariate by the factor: lines, no comparisons, the adjustment hidden
        effects.locator("select.effect-term").select_option("size_c")
        effects.locator("select.effect-by").select_option("period")
        expect(effects.locator('[data-table="emmeans"] h4')).to_have_text("Estimated Marginal Means: size_c by period")
        expect(effects.locator('[data-table="pairs"]')).to_have_count(0)
        expect(effects.locator(".effect-adjust-row")).to_be_hidden()
        run.locator("input.model-name").fill("herds")
        effects.locator("select.effect-by").select_option("")
        effects.locator("select.effect-by").select_option("period")  # (the plot is titled after the Model Name)
        expect(effects.locator("figure.plot img")).to_have_attribute(
            "src", f"/api/glmm/fits/{run.get_attribute('data-fit-id')}/effects.png?term=size_c&by=period&name=herds")

        # Add to Report: the dialog lists the run's tables and plots; a new report needs a name
        run.locator("button.add-report-run").click()
        dlg = page.locator("dialog.add-report-dialog")
        expect(dlg).to_be_visible()
        tables = dlg.locator('fieldset[data-group="tables"] label.check')
        expect(tables.first).to_be_visible()
        assert tables.all_inner_texts() == ["Random Effects", "ICC", "Fixed Effects", "Omnibus Tests (Type III)",
                                            "Model Fit", "Comparison with GLM (no random intercept)",
                                            "BLUP (Random Effect Predictions)"]
        checked = dlg.locator('fieldset[data-group="tables"] input').evaluate_all("xs => xs.map(x => x.checked)")
        assert checked == [True, True, True, True, True, True, False]  # the BLUPs (a row per herd) only when asked
        expect(dlg.locator('fieldset[data-group="plots"] label.check')).to_have_count(3)  # no Q-Q for a binomial model
        dlg.locator('fieldset[data-group="plots"] label.check', has_text="Binned Residuals").locator("input").check()
        expect(dlg.locator("select.report-choice")).to_have_value("new")  # no report yet
        dlg.locator("input.new-report-name").fill("  ")
        dlg.locator("button.add-chosen").click()
        expect(dlg.locator('[data-error-for="new_report"]')).to_have_text("New report name: give the report a name.")
        dlg.locator("input.new-report-name").fill("Herd report")
        if big:
            dlg.screenshot(path=str(DOCS / "report-add-dialog.png"))
        dlg.locator("button.add-chosen").click()
        expect(dlg).to_have_count(0)
        status = run.locator(".report-status").last
        expect(status).to_contain_text("Added 6 tables (Random Effects, ICC, Fixed Effects, Omnibus Tests, Model Fit, "
                                       "Comparison with GLM) and 1 plot (Binned Residuals vs Fitted) to report "
                                       "“Herd report” (7 items).")
        # clicked again: the report chosen is the newest, nothing is added twice
        run.locator("button.add-report-run").click()
        expect(dlg.locator("select.report-choice")).to_have_value(
            dlg.locator("select.report-choice option", has_text="Herd report").get_attribute("value"))
        dlg.locator('fieldset[data-group="plots"] label.check', has_text="Binned Residuals").locator("input").check()
        dlg.locator("button.add-chosen").click()
        expect(status).to_contain_text("Added nothing new to report “Herd report” (7 items); 7 already there")

        # the effects of period into the same report, from the Effects section
        effects.locator("select.effect-term").select_option("period")
        expect(effects.locator('table[data-table="pairs"] tbody tr')).to_have_count(6)
        effects.locator("button.add-effects").click()
        expect(dlg.locator("label.check")).to_have_text(["Estimated Marginal Means: period",
                                                         "Pairwise Comparisons: period (holm)", "Effect of period"])
        dlg.locator("button.add-chosen").click()
        expect(effects.locator(".effects-report-status")).to_contain_text(
            "Added 2 tables (Estimated Marginal Means: period, Pairwise Comparisons: period) and 1 plot (Effect of "
            "period) to report “Herd report” (10 items).")
        effects.locator("button.open-report").click()
        report = active_panel(page)
        expect(report.locator("li.report-item")).to_have_count(10)
        expect(report.locator(".item-title").last).to_have_text("herds: Effect of period")
        with page.expect_download() as download:
            report.locator("a.export-docx").click()
        path = tmp_path / "report.docx"
        download.value.save_as(path)
        doc = docx.Document(io.BytesIO(path.read_bytes()))
        assert len(doc.tables) == 8 and len(doc.inline_shapes) == 2
        # a logit model's means compare as odds ratios on the response scale (as emmeans)
        assert [c.text for c in doc.tables[-1].rows[0].cells] == ["Contrast", "Odds ratio", "SE", "df", "z", "p"]
        assert doc.tables[-1].rows[1].cells[0].text == "P1 / P2"
        if big:
            report.screenshot(path=str(DOCS / "report-tab.png"))
