"""Issue 10.9 in a real browser: the menu bar, the tab strip and the dialogs work with the keyboard alone, with
ARIA roles a screen reader can follow."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.web.pages import ready

pytestmark = pytest.mark.browser

def focused_text(page) -> str:
    return page.evaluate("() => document.activeElement.textContent.trim()")


def test_the_menu_bar_works_with_the_keyboard(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    bar = page.locator("[role=menubar]")
    assert bar.locator(":scope > .menu > [role=menuitem][aria-haspopup=menu]").count() == 4
    assert page.locator("[role=menu]").count() == 4
    assert page.locator("[role=menu] [role=menuitem]").count() >= 10

    # Tab reaches the menu bar at File (one tab stop); ArrowRight moves along the titles
    page.locator(".brand").click()
    page.keyboard.press("Tab")
    assert focused_text(page) == "File"
    page.keyboard.press("ArrowRight")
    assert focused_text(page) == "Data"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert focused_text(page) == "Help"
    page.keyboard.press("ArrowRight")
    assert focused_text(page) == "File"

    # Enter opens at the first item; the arrows move (and wrap); Escape closes and returns to the title
    page.keyboard.press("Enter")
    file_menu = page.locator(".menu.open")
    expect(file_menu).to_have_count(1)
    expect(file_menu.locator(".menu-title")).to_have_attribute("aria-expanded", "true")
    assert focused_text(page) == "New Project..."
    page.keyboard.press("ArrowDown")
    assert focused_text(page) == "Open Project..."
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert focused_text(page) == "Import Data..."
    page.keyboard.press("Home")
    assert focused_text(page) == "New Project..."
    page.keyboard.press("Escape")
    expect(page.locator(".menu.open")).to_have_count(0)
    assert focused_text(page) == "File"
    expect(page.locator('.menu-title:text-is("File")')).to_have_attribute("aria-expanded", "false")

    # Space and ArrowDown open too; ArrowRight inside a menu goes to the next menu
    page.keyboard.press(" ")
    assert focused_text(page) == "New Project..."
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    expect(page.locator(".menu.open .menu-title")).to_have_text("Data")
    assert focused_text(page) == "Dummy Coding..."
    page.keyboard.press("ArrowRight")
    expect(page.locator(".menu.open .menu-title")).to_have_text("Analysis")

    # Enter activates: the GLMM tab opens and the menu is closed
    page.keyboard.press("Enter")
    expect(page.locator(".menu.open")).to_have_count(0)
    expect(page.locator(".tab.active .tab-label")).to_have_text("GLMM")

    # a menu opened with the mouse: Escape puts the focus back where it was before (a field of the form)
    field = page.locator(".tabpanel:not([hidden]) input.formula")
    field.focus()
    page.locator('.menu-title:text-is("Help")').click()
    expect(page.locator(".menu.open .menu-title")).to_have_text("Help")
    page.keyboard.press("Escape")
    expect(page.locator(".menu.open")).to_have_count(0)
    assert page.evaluate("() => document.activeElement.classList.contains('formula')")


def test_dialogs_close_with_escape_trap_the_focus_and_return_it_to_the_opener(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    page.locator(".brand").click()
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowRight")  # Data
    page.keyboard.press("Enter")
    assert focused_text(page) == "Dummy Coding..."
    page.keyboard.press("Enter")
    dlg = page.locator("#dlg-dummy")
    expect(dlg).to_be_visible()
    expect(dlg.locator("table.dummy-spec tbody tr")).not_to_have_count(0)
    inside = "() => document.activeElement && document.activeElement.closest('#dlg-dummy') !== null"
    for _ in range(40):  # more presses than the dialog has controls: Tab wraps around inside it
        page.keyboard.press("Tab")
        assert page.evaluate(inside)
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside)
    page.keyboard.press("Escape")
    expect(dlg).to_be_hidden()
    assert focused_text(page) == "Data"  # where the focus was when the menu opened

    # a dialog opened from a button: focus returns to that button
    page.locator("#dataset-list button.open", has_text="school scores").click()
    button = page.locator(".tabpanel:not([hidden]) button", has_text="Dummy Coding...")
    button.focus()
    page.keyboard.press("Enter")
    expect(dlg).to_be_visible()
    page.keyboard.press("Escape")
    expect(dlg).to_be_hidden()
    assert focused_text(page) == "Dummy Coding..."
    assert page.evaluate("() => document.activeElement.closest('.tabpanel') !== null")


def test_tabs_work_with_the_keyboard(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    for name in ("school scores", "clinic recovery", "regional incidents"):
        page.locator("#dataset-list button.open", has_text=name).click()
    strip = page.locator("[role=tablist]")
    tabs = strip.locator("[role=tab]")
    expect(tabs).to_have_count(3)
    assert tabs.evaluate_all("ts => ts.map(t => t.tabIndex)") == [-1, -1, 0]  # one tab stop: the active tab
    assert tabs.evaluate_all("ts => ts.every(t => document.getElementById(t.getAttribute('aria-controls'))"
                             ".getAttribute('role') === 'tabpanel')")
    tabs.nth(2).focus()
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("() => document.activeElement.id") == tabs.nth(1).get_attribute("id")
    expect(tabs.nth(2)).to_have_attribute("aria-selected", "true")  # moving does not switch
    page.keyboard.press("Enter")
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    expect(page.locator(".tabpanel:not([hidden]) .ds-title")).to_have_text("clinic recovery")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # wraps to the first
    page.keyboard.press(" ")
    expect(tabs.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    page.keyboard.press("Delete")  # closes the focused tab; the focus stays in the strip
    expect(tabs).to_have_count(2)
    expect(strip.locator(".tab-label")).to_have_text(["school scores", "clinic recovery"])
    assert page.evaluate("() => document.activeElement.getAttribute('role')") == "tab"
