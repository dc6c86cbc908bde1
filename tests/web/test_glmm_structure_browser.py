"""The GLMM form's covariance-structure choice in a real browser: a cluster row's "covariance" select and its
column of occasions build ``ar1(0 + time | id)``, the fit runs through the form with its Covariance Structures
table (rho) equal to the command line's, and a typed structured formula fills the row back."""

from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.conftest import REFERENCE
from tests.web.pages import assign
from tests.web.test_glmm_browser import cli_fit, close, control, export_csv, field, table_values
from tests.web.test_glmm_form_browser import open_form, run_form, same_fixed_effects

pytestmark = pytest.mark.browser

CASE = REFERENCE / "breadth" / "sim_longitudinal_ar1.csv"


def test_an_ar1_structure_chosen_in_the_form(page, live_server_factory, tmp_path):
    api, ds, panel = open_form(page, live_server_factory(), pd.read_csv(CASE), "ar1")
    formula = control(panel, "formula")
    control(panel, "response").select_option("y")
    assign(panel, "fixed", "tnum")
    assign(panel, "group", "id")
    expect(formula).to_have_value("y ~ tnum + (1 | id)")
    row = field(panel, "random").locator(".random-row").first
    row.locator("select.structure").select_option("ar1")
    row.locator("select.structure-time").select_option("time")
    typed = "y ~ tnum + ar1(0 + time | id)"
    expect(formula).to_have_value(typed)
    expect(panel.locator("[data-kind]").first).to_contain_text("AR(1) over time by id")
    run = run_form(panel)
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "ar1.csv"), "--formula", typed)
    same_fixed_effects(run, want)
    headers, rows = table_values(run, "covariance-structures")
    assert headers[:3] == ["Component", "Term", "Structure"] and rows[0][:3] == ["id", "0 + time | id", "ar1"]
    assert close(float(rows[0][5]), want["covariance_structures"][0]["rho"], 1e-3)

    # a typed structured formula fills the row back: structure and occasions
    formula.fill("y ~ tnum + toep(0 + time | id)")
    formula.press("Tab")
    expect(row.locator("select.structure")).to_have_value("toep", timeout=20_000)
    expect(field(panel, "random").locator(".random-row").first.locator("select.structure-time")).to_have_value("time")
