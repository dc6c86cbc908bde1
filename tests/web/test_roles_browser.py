"""Issue 19.1 in a real browser, at 1024 x 700 and 1280 x 800: the GLMM tab's variable roles as jamovi's GAMLj has
them (a Variables list, and Dependent Variable, Factors, Covariates, Cluster Variables, Offset, Weights and Trials
filled with arrow buttons, a double-click or the keyboard; a column plays one role), a fixed-effects builder (main
effects, interactions of two or more checked variables) and a random-effects builder (per cluster variable:
intercept, slopes, correlated or not, nested within), and one model behind the controls and the formula: editing
either updates the other, and a formula the controls cannot show says which part and runs as typed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.web.pages import active_panel, assign, control, role_names, sized_page
from tests.web.test_glmm_browser import import_frame
from tests.web.test_glmm_general_browser import crossed
from tests.web.test_workbench19_browser import frames, open_glmm

pytestmark = pytest.mark.browser

SIZES = [(1024, 700), (1280, 800)]
TOL = 0.5
RELEVEL = Path(__file__).resolve().parents[1] / "references" / "relevel" / "relevel.csv"
ROOT = Path(__file__).resolve().parents[2]
# Screenshots go to docs/ only when GLMMLAB_SCREENSHOTS=1 (as in test_browser.py); otherwise to a temp folder.
DOCS = ROOT / "docs" if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="roles-"))


def field(panel, name):
    return panel.locator(f'.field[data-field="{name}"]')


def box(locator) -> dict:
    b = locator.bounding_box()
    assert b is not None, f"{locator} is not displayed"
    return b


def inside_x(b, outer) -> bool:
    return b["x"] >= outer["x"] - TOL and b["x"] + b["width"] <= outer["x"] + outer["width"] + TOL


def overlap(a, b) -> bool:
    return (a["x"] + a["width"] > b["x"] + TOL and b["x"] + b["width"] > a["x"] + TOL
            and a["y"] + a["height"] > b["y"] + TOL and b["y"] + b["height"] > a["y"] + TOL)


@pytest.mark.parametrize("width, height", SIZES)
def test_variables_take_their_roles_with_arrows_and_play_one_role_each(browser, live_server_factory, width, height):
    server = live_server_factory()
    _, cbpp = frames(server)
    with sized_page(browser, server.url, width, height) as page:
        panel = open_glmm(page)
        formula = control(panel, "formula")
        control(panel, "dataset_id").select_option(str(cbpp["id"]))
        free = panel.locator(".var-list input.var-pick")
        expect(free).to_have_count(4)
        assert free.evaluate_all("xs => xs.map(x => x.value)") == ["herd", "incidence", "size", "period"]
        expect(panel.locator('.var-list label.var:has(input[value="herd"]) .var-type')).to_have_text("int64")

        # the Variables list beside the roles, everything inside the panel, no label over its control
        form = box(panel.locator(".glmm-form"))
        variables, roles = box(panel.locator(".var-list")), box(panel.locator(".role-fields"))
        assert variables["x"] + variables["width"] <= roles["x"] + TOL and inside_x(roles, form)
        for f in panel.locator(".roles .field.role:visible").all():
            label, ctl = box(f.locator(".field-label")), box(f.locator(".field-control"))
            arrow = box(f.locator(".move-to"))
            assert inside_x(ctl, form) and not overlap(label, ctl) and not overlap(arrow, ctl), \
                f.get_attribute("data-field")

        # Trials is a role of the binomial family
        expect(field(panel, "trials")).to_be_hidden()
        control(panel, "family").select_option("binomial")
        expect(field(panel, "trials")).to_be_visible()

        # the single roles are chosen in their list; the variable leaves the Variables list
        control(panel, "response").select_option("incidence")
        expect(panel.locator('.var-list input[value="incidence"]')).to_have_count(0)
        # a double-click gives the role the type suggests: a numeric column is a covariate
        panel.locator('.var-list label.var:has(input[value="period"])').dblclick()
        expect(role_names(panel, "fixed")).to_have_text(["period"])
        # by keyboard: Space checks a variable, Enter on a role's arrow moves it (any column is a cluster variable)
        panel.locator('.var-list input[value="herd"]').focus()
        page.keyboard.press("Space")
        field(panel, "group").locator("button.move-to").focus()
        page.keyboard.press("Enter")
        expect(role_names(panel, "group")).to_have_text(["herd"])
        assign(panel, "trials", "size")
        expect(formula).to_have_value("cbind(incidence, size - incidence) ~ period + (1 | herd)")
        expect(panel.locator(".var-list")).to_have_text("Every variable has a role.")
        kind = panel.locator(".model-kind")
        expect(kind).to_contain_text("Generalized linear mixed model · Binomial (Logistic), logit link · fixed: period")
        expect(kind).to_contain_text("Random intercept model: g(μ) = Xβ + u_herd")

        # one role per variable: period as the Offset leaves Covariates (and the fixed effects)
        control(panel, "offset").select_option("period")
        expect(role_names(panel, "fixed")).to_have_count(0)
        expect(formula).to_have_value("cbind(incidence, size - incidence) ~ 1 + offset(period) + (1 | herd)")
        control(panel, "offset").select_option("")
        expect(panel.locator('.var-list input[value="period"]')).to_have_count(1)

        # a role refuses a column of another type, saying why; × gives a variable back (the focus stays in the form)
        field(panel, "group").locator('.role-item[data-name="herd"] button.remove-role').click()
        expect(role_names(panel, "group")).to_have_count(0)
        expect(field(panel, "group").locator("button.move-to")).to_be_focused()
        panel.locator('.var-list input[value="herd"]').check()
        field(panel, "factors").locator("button.move-to").click()
        expect(panel.locator(".role-error")).to_contain_text("herd is int64: a factor needs a string or boolean column")
        expect(role_names(panel, "factors")).to_have_count(0)
        panel.locator("button.run").click()
        expect(field(panel, "group").locator(".field-error")).to_contain_text("Choose a Group Variable")
        expect(panel.locator("article.run")).to_have_count(0)


def relevel_crossed() -> pd.DataFrame:
    frame = pd.read_csv(RELEVEL)
    frame["h"] = [f"H{i}" for i in np.random.default_rng(4).integers(0, 6, len(frame))]  # crossed with g
    return frame


@pytest.mark.parametrize("width, height", SIZES)
def test_the_builders_and_the_formula_are_one_model(browser, live_server_factory, width, height):
    server = live_server_factory()
    ds = import_frame(server.api(), relevel_crossed(), "relevel")
    with sized_page(browser, server.url, width, height) as page:
        panel = open_glmm(page)
        formula = control(panel, "formula")
        helptext = field(panel, "formula").locator(".formula-help")
        terms = field(panel, "terms").locator("li.term code")
        rows = field(panel, "random").locator(".random-row")
        control(panel, "dataset_id").select_option(str(ds["id"]))
        control(panel, "response").select_option("y")
        assign(panel, "fixed", "x")
        assign(panel, "factors", "f")
        assign(panel, "group", "g", "h")
        expect(terms).to_have_text(["x", "f"])  # the main effects: every factor and covariate
        expect(formula).to_have_value("y ~ x + f + (1 | g) + (1 | h)")

        # an interaction: check two or more variables, press the button (once is enough)
        picks = field(panel, "terms").locator(".inline-checks")
        field(panel, "terms").locator("button.add-interaction").click()
        expect(field(panel, "terms").locator(".field-error")).to_contain_text("Check two or more variables")
        for _ in range(2):
            picks.locator('input[value="x"]').check()
            picks.locator('input[value="f"]').check()
            field(panel, "terms").locator("button.add-interaction").click()
        expect(terms).to_have_text(["x", "f", "x:f"])
        expect(formula).to_have_value("y ~ x * f + (1 | g) + (1 | h)")

        # the random effects per cluster variable: a slope, uncorrelated, nested within another variable
        expect(rows).to_have_count(2)
        rows.nth(0).locator('input.slope[value="x"]').check()
        rows.nth(0).locator("input.correlated").uncheck()
        rows.nth(1).locator("select.nested-in").select_option("g")
        expect(formula).to_have_value("y ~ x * f + (1 + x || g) + (1 | h:g)")
        expect(panel.locator(".model-kind")).to_contain_text(
            "Nested random effects: intercept and slope of x by g (uncorrelated); intercept by h within g")
        # the builders side by side where there is room, one below the other when narrow
        fixed_box, random_box = box(field(panel, "terms")), box(field(panel, "random"))
        if width >= 1280:
            assert abs(fixed_box["y"] - random_box["y"]) < 1 and random_box["x"] >= fixed_box["x"] + fixed_box["width"]
        else:
            assert random_box["y"] >= fixed_box["y"] + fixed_box["height"] - TOL

        # removing the interaction, then a main effect (its variable goes back to the Variables list)
        field(panel, "terms").locator('li.term[data-term="x:f"] button.remove-term').click()
        expect(formula).to_have_value("y ~ x + f + (1 + x || g) + (1 | h:g)")
        field(panel, "terms").locator('li.term[data-term="f"] button.remove-term').click()
        expect(role_names(panel, "factors")).to_have_count(0)
        expect(panel.locator('.var-list input[value="f"]')).to_have_count(1)

        # a typed formula sets the controls (its terms in its order); a control changed then writes the formula
        formula.fill("y ~ f * x + (0 + x | g) + (1 | h)")
        expect(helptext).to_have_attribute("data-state", "filled")
        expect(role_names(panel, "factors")).to_have_text(["f"])
        expect(role_names(panel, "fixed")).to_have_text(["x"])
        expect(terms).to_have_text(["f", "x", "f:x"])
        expect(rows.nth(0).locator("input.intercept")).not_to_be_checked()
        expect(rows.nth(0).locator('input.slope[value="x"]')).to_be_checked()
        expect(rows.nth(1).locator("select.nested-in")).to_have_value("")
        expect(formula).to_have_value("y ~ f * x + (0 + x | g) + (1 | h)")
        rows.nth(0).locator("input.intercept").check()
        expect(formula).to_have_value("y ~ f * x + (1 + x | g) + (1 | h)")
        expect(helptext).to_have_attribute("data-state", "form")

        # the Weights column as a term of a typed formula: one role per variable, so the controls say so
        control(panel, "weights").select_option("count")
        formula.fill("y ~ count + (1 | g)")
        expect(helptext).to_contain_text("count, the Weights column, is also part of the formula")
        control(panel, "weights").select_option("")
        expect(helptext).to_have_attribute("data-state", "filled")
        expect(role_names(panel, "fixed")).to_have_text(["count"])

        # a formula the controls cannot show says which part, and runs as typed
        typed = "y ~ x + (1 | g) + (1 | h/g)"
        formula.fill(typed)
        expect(helptext).to_have_attribute("data-state", "typed")
        expect(helptext).to_contain_text("g groups two random terms (g and g:h)")
        expect(helptext).to_contain_text("it runs as typed")
        expect(terms).to_have_text(["count"])  # the controls stay as they were
        panel.locator("button.run").click()
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)
        expect(run.locator(".model-line code")).to_have_text(typed)
        assert active_panel(page).locator('table[data-table="blup-g:h"]').count() == 1


@pytest.mark.parametrize("width, height", SIZES)
def test_screenshots_of_the_roles_the_builders_and_the_results(browser, live_server_factory, width, height):
    """docs/glmm19-form-<width>.png (the roles), glmm19-builders-<width>.png (the builders and the formula) and
    glmm19-results-<width>.png (the form folded to its model line above the results), at the window's size."""
    server = live_server_factory()
    ds = import_frame(server.api(), crossed(), "crossed")  # a real slope by g, 16 g crossed with 6 h
    DOCS.mkdir(exist_ok=True)
    with sized_page(browser, server.url, width, height) as page:
        panel = open_glmm(page)
        control(panel, "dataset_id").select_option(str(ds["id"]))
        control(panel, "response").select_option("y")
        assign(panel, "fixed", "x")
        assign(panel, "factors", "f")
        assign(panel, "group", "g", "h")
        picks = field(panel, "terms").locator(".inline-checks")
        picks.locator('input[value="x"]').check()
        picks.locator('input[value="f"]').check()
        field(panel, "terms").locator("button.add-interaction").click()
        field(panel, "random").locator(".random-row").nth(0).locator('input.slope[value="x"]').check()
        model = "y ~ x * f + (1 + x | g) + (1 | h)"
        expect(control(panel, "formula")).to_have_value(model)
        expect(field(panel, "factors").locator("select.reference-level option")).to_have_count(3)
        panel.evaluate("p => { p.scrollTop = 0; }")
        page.screenshot(path=str(DOCS / f"glmm19-form-{width}.png"))
        panel.locator(".builders").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(DOCS / f"glmm19-builders-{width}.png"))
        panel.locator("button.run").click()
        run = panel.locator("article.run").first
        expect(run).to_have_attribute("data-state", "done", timeout=90_000)
        panel.locator("button.collapse-form").click()
        expect(panel.locator(".form-summary code")).to_have_text(model)
        panel.evaluate("p => { p.scrollTop = 0; }")
        page.screenshot(path=str(DOCS / f"glmm19-results-{width}.png"))
