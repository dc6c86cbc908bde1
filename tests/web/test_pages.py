"""The workbench page as HTML: menus, sidebar with lineage, dialogs, and how a tab module plugs in."""

from __future__ import annotations

import re
import sys
import types

from fastapi import APIRouter

from glmmlab.interfaces.web.deps import dataset_tree


def test_the_page_has_the_menus_and_their_items(client):
    html = client.get("/").text
    assert 'role="menubar"' in html
    for title in ("File", "Data", "Analysis", "Help"):
        assert re.search(f'class="menu-title" role="menuitem" aria-haspopup="menu" aria-expanded="false" '
                         f'tabindex="-?[01]">{title}</button>', html)
    for action, label in [("new-project", "New Project..."), ("open-project", "Open Project..."),
                          ("export-project", "Export Project"), ("import-project", "Import Project..."),
                          ("import-data", "Import Data..."), ("dummy-coding", "Dummy Coding..."),
                          ("open-glmm", "Mixed Effects Model (GLMM)..."), ("about", "About glmmlab")]:
        assert f'data-action="{action}">{label}</button>' in html
    for dialog in ("dlg-import", "dlg-dummy", "dlg-delete", "dlg-new-project", "dlg-open-project",
                   "dlg-import-project", "dlg-about"):
        assert f'<dialog id="{dialog}"' in html
    assert 'id="tabstrip"' in html and 'id="tabpanels"' in html
    assert "No datasets yet." in html and "No saved models." in html and "No reports." in html


def test_the_api_reference_page_lists_every_endpoint_offline(client):
    spec = client.get("/openapi.json").json()
    html = client.get("/api-reference").text
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in html
    assert "<code>cascade</code> (query)" in html and "application/json: ColumnChange" in html
    assert '<h3 id="DummyBody">DummyBody</h3>' in html
    assert "http" not in "".join(__import__("re").findall(r'(?:src|href)="([^"]*)"', html))
    page = client.get("/").text
    assert 'href="/api-reference"' in page and 'href="/docs"' in page


def test_the_sidebar_shows_lineage(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "track", "action": "dummy_drop"}]})
    html = client.get("/").text
    assert 'data-kind="dataset" data-id="1" style="--depth: 0"' in html
    assert 'class="item dataset derived" data-kind="dataset" data-id="2" style="--depth: 1"' in html
    assert "6 rows · dummy coding of scores · read-only" in html


def test_dataset_tree_orders_children_after_their_parent():
    def d(i, parent=None, op="import"):
        return {"id": i, "name": f"d{i}", "n_rows": i, "parent_id": parent, "operation": {"type": op},
                "read_only": parent is not None, "columns": []}

    tree = dataset_tree([d(1), d(2), d(3, 1, "dummy_coding"), d(4, 3, "dummy_coding"), d(5, 2, "model_diagnostics"),
                         d(6, 99, "dummy_coding")])
    assert [(t["id"], t["depth"], t["parent_name"]) for t in tree] == [
        (1, 0, None), (3, 1, "d1"), (4, 2, "d3"), (2, 0, None), (5, 1, "d2"), (6, 0, None)]
    assert tree[4]["operation_label"] == "model diagnostics"
    assert tree[0]["rows_text"] == "1 row" and tree[3]["rows_text"] == "2 rows"


def test_a_tab_module_plugs_in_with_its_routes_and_scripts(make_client, monkeypatch):
    module = types.ModuleType("glmmlab.interfaces.web.routes.faketab")
    module.router = APIRouter(prefix="/api/faketab")

    @module.router.get("/ping")
    def ping():
        return {"pong": True}

    module.scripts = ["faketab.js"]
    module.styles = ["faketab.css"]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    c = make_client(extensions=("faketab", "not_there"))
    assert c.get("/api/faketab/ping").json() == {"pong": True}
    html = c.get("/").text
    core = html.index('<script src="/static/dialogs.js">')
    assert html.index('<script src="/static/faketab.js">') > core
    assert html.index("window.glmmlab.start()") > html.index('<script src="/static/faketab.js">')
    assert '<link rel="stylesheet" href="/static/faketab.css">' in html


def test_the_glmm_tab_module_is_picked_up_when_it_exists(client):
    from glmmlab.interfaces.web.app import EXTENSIONS

    assert "glmm" in EXTENSIONS
