"""Zero-inflation and dispersion models in the workbench, in a real browser: the Zero-inflation / hurdle and
Dispersion fields of the GLMM form, a mistake in them explained next to the field before anything runs, and the
Zero-Inflation Model table equal to `glmmlab fit --zi`."""

from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.conftest import REFERENCE
from tests.web.test_glmm_browser import (
    DOCS,
    active_panel,
    cli_fit,
    close,
    control,
    export_csv,
    field,
    import_frame,
    menu,
    ready,
    table_values,
)

pytestmark = pytest.mark.browser


def test_a_zero_inflated_model_from_the_form(page, live_server_factory, tmp_path):
    server = live_server_factory()
    api = server.api()
    ds = import_frame(api, pd.read_csv(REFERENCE / "breadth" / "salamanders_zinb2.csv"), "salamanders")
    ready(page, server.url)
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(str(ds["id"]))
    expect(control(panel, "response").locator('option[value="count"]')).to_have_count(1)
    control(panel, "formula").fill("count ~ mined + (1 | site)")
    control(panel, "family").select_option("negbin")
    panel.locator("details.model-parts > summary").click()
    zi = control(panel, "zi")
    zi.fill("~ minde")
    panel.locator("button.run").click()
    err = field(panel, "zi").locator(".field-error")
    expect(err).to_contain_text("minde")
    expect(panel.locator("article.run")).to_have_count(0)
    zi.fill("~ mined")
    panel.locator("button.run").click()
    run = panel.locator("article.run").first
    expect(run).to_have_attribute("data-state", "done", timeout=120_000)
    expect(err).to_be_hidden()
    want = cli_fit(export_csv(api, ds["id"], tmp_path / "sal.csv"), "--formula", "count ~ mined + (1 | site)",
                   "--family", "nbinom2", "--zi", "~ mined")
    headers, rows = table_values(run, "zi-fixed-effects")
    assert headers[0] == "Variable" and "Odds ratio" in headers
    for r, w in zip(rows, want["zi_fixed_effects"], strict=True):
        assert r[0] == w["variable"] and close(r[1], w["estimate"], 1e-5) and close(r[2], w["std_error"], 1e-4)
    _, rows = table_values(run, "fixed-effects")
    for r, w in zip(rows, want["fixed_effects"], strict=True):
        assert r[0] == w["variable"] and close(r[1], w["estimate"], 1e-5)
    run.locator('table[data-table="zi-fixed-effects"]').scroll_into_view_if_needed()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "glmm-zero-inflation.png"))
