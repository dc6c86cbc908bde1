"""Helpers for the real-browser tests of the workbench page (not fixtures: plain functions on a Playwright page)."""

from __future__ import annotations

import contextlib
from typing import Iterator


def ready(page, url: str) -> None:
    """Load the workbench and wait until its script has started."""
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def menu(page, title: str, item: str) -> None:
    page.locator(f'.menu-title:text-is("{title}")').click()
    page.locator(f'.menu.open [role=menuitem]:text-is("{item}")').click()


def active_panel(page):
    return page.locator(".tabpanel:not([hidden])")


def control(panel, name: str):
    """The select or input of the GLMM form's field ``name``."""
    return panel.locator(f'.field[data-field="{name}"] .field-control').locator("select, input").first


def glmm_form(page, dataset: str, response: str):
    """Open a GLMM tab, choose the dataset by its name and, once its columns are listed, the response; returns the
    tab's panel."""
    from playwright.sync_api import expect

    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    panel = active_panel(page)
    control(panel, "dataset_id").select_option(label=dataset)
    expect(control(panel, "response").locator(f'option[value="{response}"]')).to_have_count(1)
    control(panel, "response").select_option(response)
    return panel


@contextlib.contextmanager
def sized_page(browser, url: str, width: int, height: int) -> Iterator:
    """A fresh page of ``width`` x ``height`` on the workbench at ``url``, ready."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        ready(page, url)
        yield page
    finally:
        context.close()


def assign(panel, role: str, *names: str) -> None:
    """Give columns a role in the GLMM form (issue 19.1's variable roles): check them in the Variables list and
    press the role's arrow; waits until the role holds them."""
    from playwright.sync_api import expect

    for name in names:
        panel.locator(f'.var-list input.var-pick[value="{name}"]').check()
    panel.locator(f'.field[data-field="{role}"] > button.move-to').click()
    for name in names:
        if role in ("response", "offset", "weights", "trials"):
            expect(control(panel, role)).to_have_value(name)
        else:
            expect(panel.locator(f'.field[data-field="{role}"] .role-item[data-name="{name}"]')).to_have_count(1)


def role_names(panel, role: str):
    """The names a list role of the GLMM form holds (Factors, Covariates, Cluster Variables), in order."""
    return panel.locator(f'.field[data-field="{role}"] .role-item .var-name')
