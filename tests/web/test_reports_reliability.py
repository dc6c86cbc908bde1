"""Reports stay readable (issue 23): items are validated when added (kinds, cell types, finite numbers, integers
up to 2^53), an item stored before that (or damaged) does not break GET, export, Add to Report or DELETE, and
every CSV or tab-separated text the product writes neutralises cells a spreadsheet would run as formulas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from glmmlab.services.workbench import reports

GLMM_JS = Path(reports.__file__).resolve().parents[2] / "interfaces" / "web" / "static" / "glmm.js"
EVIL = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


def table(rows, **extra):
    return {"kind": "table", "title": "t", "payload": {"columns": ["a", "b"], "rows": rows, **extra}}


@pytest.fixture
def report(client):
    return client.post("/api/reports", json={"name": "R"}).json()


@pytest.mark.parametrize("item, words", [
    (table([[1, 2]], kinds=[1, "text"]), "Kind 1 of a table item must be one of"),
    (table([[1, 2]], kinds=[None, None]), "Kind 1 of a table item must be one of"),
    (table([[int("9" * 400), 2]]), "an integer of 400 digits"),
    (table([[[1], 2]]), "holds a list"),
    (table([[{"x": 1}, 2]]), "holds a dict"),
    ({"kind": "table", "title": "t", "payload": {"columns": [1, "b"], "rows": []}}, "Column name 1"),
    ({"kind": 7, "title": "t", "payload": {}}, "'table' or 'plot'"),
])
def test_a_bad_item_is_refused_and_nothing_is_stored(client, report, item, words):
    r = client.post(f"/api/reports/{report['id']}/items", json={"items": [item]})
    assert 400 <= r.status_code < 500, r.text
    assert words in r.text, r.text
    got = client.get(f"/api/reports/{report['id']}")
    assert got.status_code == 200 and got.json()["items"] == []


def test_an_infinite_number_is_refused_with_a_4xx(client, report):
    body = '{"items": [{"kind": "table", "title": "t", "payload": {"columns": ["a"], "rows": [[1e309]]}}]}'
    r = client.post(f"/api/reports/{report['id']}/items", content=body,
                    headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert client.get(f"/api/reports/{report['id']}").json()["items"] == []


def store_unreadable_items(client, report_id):
    """Items as an older version (or a damaged file) left them: no check ran when they were added."""
    bad = [{"columns": ["a"], "rows": [[1]], "kinds": [1]}, {"columns": ["a"], "rows": [[int("9" * 400)]]},
           {"columns": ["a"]}]
    with client.workbench.project() as project, project.write() as cur:
        for k, payload in enumerate(bad):
            iid = project.next_id(cur, "report_item")
            cur.execute("INSERT INTO report_items (id, report_id, position, kind, title, payload) VALUES "
                        "(?, ?, ?, 'table', ?, ?)", [iid, report_id, k, f"bad {k}", json.dumps(payload)])
        iid = project.next_id(cur, "report_item")
        cur.execute("INSERT INTO report_items (id, report_id, position, kind, title, payload) VALUES "
                    "(?, ?, 3, 'table', 'good', ?)", [iid, report_id, json.dumps({"columns": ["a"], "rows": [[1.5]]})])


def test_unreadable_items_do_not_break_the_report(client, report):
    rid = report["id"]
    store_unreadable_items(client, rid)
    got = client.get(f"/api/reports/{rid}")
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert [bool(i.get("invalid")) for i in items] == [True, True, True, False]
    assert "cannot be read" in items[0]["invalid"] and items[3]["payload"]["cells"] == [["1.5000"]]
    page = client.get(f"/api/reports/{rid}/export")
    assert page.status_code == 200 and "cannot be read" in page.text and "1.5000" in page.text
    # Add to Report goes to the newest report: this one
    r = client.post(f"/api/reports/{rid}/items", json={"items": [table([[1, 2]])]})
    assert r.status_code == 200, r.text
    assert client.get("/api/reports").status_code == 200
    r = client.delete(f"/api/reports/{rid}/items/{items[0]['id']}")
    assert r.status_code == 200 and len(r.json()["items"]) == 4
    assert client.delete(f"/api/reports/{rid}").status_code == 200
    assert client.get(f"/api/reports/{rid}").status_code == 404


# ---- CSV injection ---------------------------------------------------------------------------------------------

def test_spreadsheet_safe_prefixes_formula_starts_and_leaves_numbers():
    from glmmlab.services.views.numbers import spreadsheet_safe

    assert [spreadsheet_safe(v) for v in EVIL] == ["'" + v for v in EVIL]
    for v in ["-1.5", "+2", "-3e-05", ".5", "1,5", "plain", "", "a=b", -1.5, 7, None, True]:
        assert spreadsheet_safe(v) == v


def test_the_exported_reports_csv_and_tsv_neutralise_formulas(client, report):
    rows = [[v, -1.5] for v in EVIL] + [["-1.5", 2]]
    r = client.post(f"/api/reports/{report['id']}/items",
                    json={"items": [{"kind": "table", "title": "evil", "payload": {"columns": ["=label", "x"],
                                                                                    "rows": rows}}]})
    assert r.status_code == 200, r.text
    page = client.get(f"/api/reports/{report['id']}/export").text
    href = re.search(r'href="data:text/csv;charset=utf-8,([^"]+)"', page).group(1)
    csv_text = urllib.parse.unquote(href.replace("&amp;", "&"))
    lines = csv_text.split("\r\n")
    assert lines[0] == "'=label,x"
    assert lines[1].startswith("\"'=HYPERLINK(") and lines[1].endswith(",-1.5")
    assert lines[2] == "'+cmd|' /C calc'!A0,-1.5" and lines[3] == "'-2+3,-1.5" and lines[4] == "'@SUM(A1:A2),-1.5"
    assert lines[5] == "'\tx,-1.5" and lines[7] == "-1.5,2"
    tsv = reports.table_tsv({"columns": ["=label", "x"], "rows": rows})
    assert tsv.splitlines()[0] == "'=label\tx"
    assert tsv.splitlines()[1].startswith("'=HYPERLINK(") and tsv.splitlines()[3] == "'-2+3\t-1.5000"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's CSV functions")
def test_the_pages_csv_and_copy_buttons_neutralise_formulas():
    source = GLMM_JS.read_text()
    functions = "\n".join(re.search(rf"  function {name}\(.*?\n  }}\n", source, re.S).group(0)
                          for name in ("spreadsheetSafe", "tsvOf", "csvOf"))
    t = {"columns": ["=label", "x"], "rows": [[v, -1.5] for v in EVIL] + [["-1.5", 2]],
         "cells": [[v, "-1.5000"] for v in EVIL] + [["-1.5", "2"]]}
    script = functions + f"\nconst t = {json.dumps(t)};\nprocess.stdout.write(JSON.stringify([csvOf(t), tsvOf(t)]));"
    csv_text, tsv = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30,
                                              check=True).stdout)
    lines = csv_text.split("\r\n")
    assert lines[0] == "'=label,x" and lines[1].startswith("\"'=HYPERLINK(") and lines[3] == "'-2+3,-1.5"
    assert lines[2] == "'+cmd|' /C calc'!A0,-1.5"
    assert lines[4] == "'@SUM(A1:A2),-1.5" and lines[5] == "'\tx,-1.5" and lines[7] == "-1.5,2"
    assert tsv.splitlines()[0] == "'=label\tx" and tsv.splitlines()[3] == "'-2+3\t-1.5000"
    assert tsv.splitlines()[7] == "-1.5\t2"
