"""Real-browser tests: Debian's chromium (headless, via Playwright) against a real server in a subprocess."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def ready(page, url=None):
    if url:
        page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def menu(page, title, item):
    page.locator(f'.menu-title:text-is("{title}")').click()
    page.locator(f'.menu.open [role=menuitem]:text-is("{item}")').click()


def active_panel(page):
    return page.locator(".tabpanel:not([hidden])")


def sidebar_item(page, dataset_id):
    return page.locator(f'#dataset-list li.item[data-id="{dataset_id}"]')


def test_import_types_scale_dummy_coding_delete_and_persistence(page, live_server_factory, tmp_path, scores_csv):
    server = live_server_factory(extra_args=["--max-upload-mb", "1"])
    api = server.api()
    ready(page, server.url)
    expect(page.locator("#dataset-list li.item")).to_have_count(4)  # the sample datasets of a new project
    expect(page.locator("#project-name")).to_have_text("default")

    # import a CSV through the page; the name comes from the file name
    csv = tmp_path / "exam scores.csv"
    csv.write_text(scores_csv)
    menu(page, "File", "Import Data...")
    page.set_input_files("#dlg-import input[type=file]", str(csv))
    expect(page.locator("#dlg-import input[name=name]")).to_have_value("exam scores")
    page.locator("#dlg-import [data-submit]").click()
    panel = active_panel(page)
    expect(panel.locator(".ds-title")).to_have_text("exam scores")
    expect(page.locator("#dlg-import")).to_be_hidden()
    ds_id = next(d["id"] for d in api.get("/api/datasets").json()["datasets"] if d["name"] == "exam scores")

    # the inferred types and the row count
    for column, dtype in [("student", "string"), ("hours", "float64"), ("score", "float64"),
                          ("passed", "boolean"), ("exam_date", "date")]:
        expect(panel.locator(f'th[data-column="{column}"] select.dtype')).to_have_value(dtype)
    expect(panel.locator(".range")).to_have_text("Rows 1–6 of 6")
    expect(panel.locator("tbody tr")).to_have_count(6)
    expect(panel.locator(".ds-lineage")).to_have_text("6 rows × 7 columns")
    expect(sidebar_item(page, ds_id).locator(".meta")).to_have_text("6 rows")

    # change a measurement scale
    panel.locator('th[data-column="hours"] select.scale').select_option("interval")
    expect(page.locator("#statusbar")).to_contain_text("hours: scale interval")
    assert {c["name"]: c["scale"] for c in api.get(f"/api/datasets/{ds_id}").json()["columns"]}["hours"] == "interval"

    # dummy-code a column: preview first, pick another reference category, then create
    menu(page, "Data", "Dummy Coding...")
    dlg = page.locator("#dlg-dummy")
    expect(dlg.locator("select[name=dataset]")).to_have_value(str(ds_id))
    track = dlg.locator('tr[data-column="track"]')
    track.locator("select.action").select_option("dummy_drop")
    expect(dlg.locator(".encodings")).to_contain_text(
        "reference academic; 2 new columns: track_general, track_vocational")
    expect(track.locator("select.reference option").first).to_have_text("academic (first alphabetical)")
    track.locator("select.reference").select_option(label="vocational")
    expect(dlg.locator(".encodings")).to_contain_text("2 new columns: track_academic, track_general")
    expect(dlg.locator(".preview-rows thead")).to_contain_text("track_academic")
    expect(dlg.locator(".preview-rows tbody tr")).to_have_count(6)
    dlg.locator('tr[data-column="student"] select.action').select_option("exclude")
    expect(dlg.locator(".preview-status")).to_contain_text("6 rows × 7 columns")
    dlg.locator("input[name=name]").fill("exam scores coded")
    dlg.locator("[data-submit]").click()
    expect(dlg).to_be_hidden()

    # the derived dataset opens, read-only, showing its parent; the sidebar shows the lineage
    panel = active_panel(page)
    expect(panel.locator(".ds-title")).to_have_text("exam scores coded")
    expect(panel.locator(".ds-lineage")).to_have_text("6 rows × 7 columns · dummy coding of exam scores · read-only")
    expect(panel.locator("thead")).to_contain_text("track_academic")
    expect(panel.locator("select.dtype")).to_have_count(0)
    expect(panel.locator('th[data-column="track_academic"] .col-type')).to_have_text("int64 · nominal")
    derived = page.locator("#dataset-list li.derived", has_text="exam scores coded")
    expect(derived.locator(".meta")).to_have_text("6 rows · dummy coding of exam scores · read-only")
    expect(page.locator(".tab")).to_have_count(2)

    # errors are shown inline: a type that does not fit the values, a column with a single value
    page.locator(".tab", has_text="exam scores").first.click()
    panel = active_panel(page)
    panel.locator('th[data-column="school"] select.dtype').select_option("int64")
    expect(panel.locator(".error")).to_contain_text("North")
    expect(panel.locator('th[data-column="school"] select.dtype')).to_have_value("string")
    const = api.post("/api/datasets/import", params={"filename": "const.csv", "name": "constant"},
                     content=b"g,y\na,1\na,2\n").json()
    while const["state"] not in ("done", "failed"):
        const = api.get(f"/api/jobs/{const['id']}").json()
    menu(page, "Data", "Dummy Coding...")
    dlg.locator("select[name=dataset]").select_option(str(const["result"]["dataset"]["id"]))
    dlg.locator('tr[data-column="g"] select.action').select_option("dummy_drop")
    expect(dlg.locator(".error")).to_contain_text("g")
    expect(dlg.locator(".error")).to_be_visible()
    dlg.locator("[data-submit]").click()
    expect(dlg.locator(".error")).to_be_visible()
    dlg.locator("[data-close]").click()
    api.delete(f"/api/datasets/{const['result']['dataset']['id']}")

    # reload: everything is still there, including the open tabs
    page.reload()
    ready(page)
    expect(page.locator("#dataset-list li.item")).to_have_count(6)
    expect(page.locator(".tab")).to_have_count(2)
    page.locator(".tab", has_text="exam scores").first.click()
    panel = active_panel(page)
    expect(panel.locator('th[data-column="hours"] select.scale')).to_have_value("interval")
    expect(page.locator("#dataset-list li.derived", has_text="exam scores coded")).to_be_visible()

    # delete the primary dataset: the prompt lists the derived one; both go
    item = sidebar_item(page, ds_id)
    item.hover()
    item.locator("button.delete").click()
    dlg = page.locator("#dlg-delete")
    expect(dlg.locator(".question")).to_contain_text("Delete the dataset “exam scores” (6 rows)?")
    expect(dlg.locator(".cascade-list")).to_have_text("Dataset: exam scores coded")
    expect(dlg.locator("[data-submit]")).to_have_text("Delete all 2")
    dlg.locator("[data-submit]").click()
    expect(dlg).to_be_hidden()
    expect(page.locator("#dataset-list li.item")).to_have_count(4)
    expect(page.locator(".tab")).to_have_count(0)
    expect(page.locator("#welcome")).to_be_visible()
    page.reload()
    ready(page)
    expect(page.locator("#dataset-list li.item")).to_have_count(4)
    expect(page.locator("#dataset-list")).not_to_contain_text("exam scores")

    # a malformed file: the message names the line, and nothing is imported
    bad = tmp_path / "broken.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n6,7\n")
    menu(page, "File", "Import Data...")
    page.set_input_files("#dlg-import input[type=file]", str(bad))
    page.locator("#dlg-import [data-submit]").click()
    expect(page.locator("#dlg-import .error")).to_contain_text("Line 3")
    expect(page.locator("#dlg-import .error")).to_contain_text("Nothing was imported")
    expect(page.locator("#dlg-import .progress-box")).to_be_hidden()

    # a file over the upload limit (1 MiB for this server) is refused with a clear message
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" + "12345,67890\n" * 150_000)
    page.set_input_files("#dlg-import input[type=file]", str(big))
    page.locator("#dlg-import [data-submit]").click()
    expect(page.locator("#dlg-import .error")).to_contain_text("larger than the upload limit of 1 MiB")
    page.locator("#dlg-import [data-close]").click()
    assert len(api.get("/api/datasets").json()["datasets"]) == 4


def test_a_large_file_imports_with_a_progress_bar_and_pages_fast(page, live_server_factory, tmp_path):
    rows = 1_000_000
    path = tmp_path / "large.csv"
    block = "".join(f"g{i % 3000},{i % 1000 / 8},{i % 9}\n" for i in range(50_000))
    path.write_text("group,x,k\n" + block * (rows // 50_000))
    server = live_server_factory()
    ready(page, server.url)
    menu(page, "File", "Import Data...")
    page.set_input_files("#dlg-import input[type=file]", str(path))
    # record what the progress bar shows while the upload and the server-side import run
    # every text the bar shows, as it changes (a MutationObserver: polling every 15 ms could miss a stage that
    # lasts less, e.g. the server-side import on a fast machine)
    page.evaluate("""() => {
        window.__seen = [];
        const box = document.querySelector('#dlg-import .progress-box');
        const text = box.querySelector('.progress-text');
        const record = () => { if (!box.hidden) window.__seen.push(text.textContent); };
        window.__observer = new MutationObserver(record);
        window.__observer.observe(box, {subtree: true, childList: true, characterData: true, attributes: true});
        window.__timer = setInterval(record, 15);
    }""")
    page.locator("#dlg-import [data-submit]").click()
    panel = active_panel(page)
    expect(panel.locator(".ds-title")).to_have_text("large", timeout=60_000)
    seen = page.evaluate("clearInterval(window.__timer), window.__observer.disconnect(), window.__seen")
    assert any(t.startswith("Uploading") for t in seen), seen
    assert any(t.startswith("Importing") for t in seen), seen
    expect(panel.locator(".range")).to_have_text("Rows 1–100 of 1,000,000")
    t0 = time.perf_counter()
    panel.locator("button[title='Last page']").click()
    expect(panel.locator(".range")).to_have_text("Rows 999,901–1,000,000 of 1,000,000")
    panel.locator("input.goto").fill("500001")
    panel.locator("input.goto").press("Enter")
    expect(panel.locator(".range")).to_have_text("Rows 500,001–500,100 of 1,000,000")
    expect(panel.locator("tbody tr").first.locator("th")).to_have_text("500,001")
    assert time.perf_counter() - t0 < 5
    panel.locator("select[aria-label='Rows per page']").select_option("1000")
    expect(panel.locator(".range")).to_have_text("Rows 500,001–501,000 of 1,000,000")
    expect(panel.locator("tbody tr")).to_have_count(1000)


def test_user_text_renders_as_text(page, live_server_factory):
    server = live_server_factory()
    api = server.api()
    csv = '"<img src=x onerror=""window.__xss=1"">",group\n"<b>bold</b>",a\n"<i>x</i>",b\n'
    r = api.post("/api/datasets/import", params={"filename": "x.csv", "name": EVIL}, content=csv.encode())
    job = r.json()
    while job["state"] not in ("done", "failed"):
        job = api.get(f"/api/jobs/{job['id']}").json()
    ds = job["result"]["dataset"]
    ready(page, server.url)
    item = sidebar_item(page, ds["id"])
    expect(item.locator(".open")).to_have_text(EVIL)
    item.locator(".open").click()
    panel = active_panel(page)
    expect(panel.locator(".ds-title")).to_have_text(EVIL)
    expect(page.locator(".tab.active .tab-label")).to_have_text(EVIL)
    expect(panel.locator("thead .col-name").first).to_have_text('<img src=x onerror="window.__xss=1">')
    expect(panel.locator("tbody td").first).to_have_text("<b>bold</b>")
    assert page.locator("#dataset-list script, .tabpanel script, .tabpanel img, .tabpanel b").count() == 0
    # the dummy-coding dialog and the delete prompt show it as text too
    menu(page, "Data", "Dummy Coding...")
    expect(page.locator('#dlg-dummy select[name=dataset] option[value="%s"]' % ds["id"])).to_have_text(EVIL)
    page.locator("#dlg-dummy [data-close]").click()
    item.hover()
    item.locator("button.delete").click()
    expect(page.locator("#dlg-delete .question")).to_contain_text(EVIL)
    page.locator("#dlg-delete [data-close]").click()
    page.reload()
    ready(page)
    assert page.evaluate("window.__xss") is None
    # (the page fixture fails the test if any alert() ran)


def test_analysis_menu_and_the_tab_registry(page, live_server_factory):
    server = live_server_factory()
    ready(page, server.url)
    has_glmm = page.evaluate("window.glmmlab.hasTab('glmm')")
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    expect(page.locator(".tab")).to_have_count(1)
    if not has_glmm:
        expect(active_panel(page)).to_contain_text("not available yet")
    # a tab module registers a kind; the menu then opens it, several at once
    page.evaluate("""() => {
        window.glmmlab.registerTab('glmm', {
            title: () => 'GLMM',
            open(panel, params, tab) {
                panel.appendChild(window.glmmlab.el('p', {class: 'probe'}, 'form for ',
                                                    params.dataset || 'no dataset'));
                tab.onClose(() => { window.__closed = (window.__closed || 0) + 1; });
            },
        });
    }""")
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    menu(page, "Analysis", "Mixed Effects Model (GLMM)...")
    expect(page.locator(".tab")).to_have_count(3)
    expect(active_panel(page).locator(".probe")).to_have_text("form for no dataset")
    page.locator(".tab.active .tab-close").click()
    expect(page.locator(".tab")).to_have_count(2)
    assert page.evaluate("window.__closed") == 1
    # dataset tabs have a key: opening the same dataset twice focuses the open tab
    page.locator("#dataset-list li.item .open").first.click()
    page.locator("#dataset-list li.item .open").first.click()
    expect(page.locator('.tab[data-kind="dataset"]')).to_have_count(1)
    # Help > About and the API docs link
    menu(page, "Help", "About glmmlab")
    expect(page.locator("#dlg-about")).to_contain_text("glmmlab")
    page.locator("#dlg-about button").click()
    assert page.locator('.menu a[href="/docs"]').count() == 1
    assert page.locator('.menu a[href="/api-reference"]').count() == 1


def test_projects_new_open_export_import(page, live_server_factory, tmp_path):
    server = live_server_factory()
    ready(page, server.url)
    menu(page, "File", "New Project...")
    page.locator("#dlg-new-project input[name=name]").fill("../escape")
    page.locator("#dlg-new-project [data-submit]").click()
    expect(page.locator("#dlg-new-project .error")).to_contain_text("'..'")
    page.locator("#dlg-new-project input[name=name]").fill("second")
    page.locator("#dlg-new-project [data-submit]").click()
    expect(page.locator("#project-name")).to_have_text("second")
    expect(page.locator("#dataset-list li.empty")).to_have_text("No datasets yet.")

    menu(page, "File", "Open Project...")
    options = page.locator("#dlg-open-project select option")
    expect(options).to_have_text(["default", "second (open now)"])
    page.locator("#dlg-open-project select").select_option("default")
    page.locator("#dlg-open-project [data-submit]").click()
    expect(page.locator("#project-name")).to_have_text("default")
    expect(page.locator("#dataset-list li.item")).to_have_count(4)

    with page.expect_download() as download:
        menu(page, "File", "Export Project")
    saved = tmp_path / "exported.glmmlab"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "default.glmmlab"

    menu(page, "File", "Import Project...")
    page.set_input_files("#dlg-import-project input[type=file]", str(saved))
    page.locator("#dlg-import-project input[name=name]").fill("restored")
    page.locator("#dlg-import-project [data-submit]").click()
    expect(page.locator("#project-name")).to_have_text("restored")
    expect(page.locator("#dataset-list li.item")).to_have_count(4)


def test_screenshots(page, live_server_factory, tmp_path):
    """Pictures of the main pages. Set GLMMLAB_SCREENSHOTS=1 to write them to docs/ (otherwise to a temp folder)."""
    out = DOCS if os.environ.get("GLMMLAB_SCREENSHOTS") == "1" else tmp_path
    server = live_server_factory()
    with server.api() as api:
        school = next(d for d in api.get("/api/datasets").json()["datasets"] if d["name"] == "school scores")
        api.post("/api/dummy", json={"dataset_id": school["id"], "spec": [
            {"column": "track", "action": "dummy_drop"}]}).raise_for_status()
    ready(page, server.url)
    page.locator("#dataset-list li.item .open", has_text="school").first.click()
    panel = active_panel(page)
    expect(panel.locator("tbody tr").first).to_be_visible()
    page.locator("#dataset-list li.item .open", has_text="clinic").first.click()
    page.locator(".tab").first.click()
    page.screenshot(path=str(out / "workbench.png"))

    menu(page, "Data", "Dummy Coding...")
    dlg = page.locator("#dlg-dummy")
    dlg.locator('tr[data-column="track"] select.action').select_option("dummy_drop")
    dlg.locator('tr[data-column="student"] select.action').select_option("exclude")
    expect(dlg.locator(".encodings .encoding")).to_have_count(1)
    expect(dlg.locator(".preview-rows tbody tr").first).to_be_visible()
    page.screenshot(path=str(out / "dummy-coding.png"))
    for name in ("workbench.png", "dummy-coding.png"):
        size = (out / name).stat().st_size
        assert 10_000 < size < 400_000, (name, size)
