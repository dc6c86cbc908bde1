"""Reports: items in order, moved and removed, exported as one self-contained HTML file."""

from __future__ import annotations

import base64
import re

import pytest

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.workbench import reports

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


def table(title, value=1.5):
    return {"kind": "table", "title": title, "payload": {"columns": ["Variable", "Estimate"],
                                                         "rows": [["x <b>", value]], "note": "a & b"}}


def test_items_keep_their_order_and_can_be_moved_and_removed(project):
    r = reports.create_report(project, "Study")
    r = reports.add_items(project, r["id"], [table("A"), table("B"),
                                             {"kind": "plot", "title": "C", "payload": {"png_base64": PNG}}])
    assert [i["title"] for i in r["items"]] == ["A", "B", "C"]
    ids = [i["id"] for i in r["items"]]
    r = reports.move_item(project, r["id"], ids[2], "up")
    assert [i["title"] for i in r["items"]] == ["A", "C", "B"]
    r = reports.move_item(project, r["id"], ids[0], "up")  # already first: nothing changes
    assert [i["title"] for i in r["items"]] == ["A", "C", "B"]
    r = reports.reorder(project, r["id"], [ids[1], ids[0], ids[2]])
    assert [i["title"] for i in r["items"]] == ["B", "A", "C"]
    r = reports.remove_item(project, r["id"], ids[0])
    assert [i["title"] for i in r["items"]] == ["B", "C"] and [i["position"] for i in r["items"]] == [0, 1]
    assert reports.list_reports(project) == [{"id": r["id"], "name": "Study", "created_at": r["created_at"],
                                              "n_items": 2}]
    with pytest.raises(ServiceError):
        reports.reorder(project, r["id"], [ids[1]])
    with pytest.raises(NotFound):
        reports.remove_item(project, r["id"], 999)


def test_bad_items_are_refused(project):
    r = reports.create_report(project, "R")
    with pytest.raises(ServiceError, match="PNG"):
        reports.add_items(project, r["id"], [{"kind": "plot", "title": "p", "payload": {"png_base64": "abc"}}])
    with pytest.raises(ServiceError, match="one value per column"):
        reports.add_items(project, r["id"], [{"kind": "table", "title": "t",
                                              "payload": {"columns": ["a"], "rows": [[1, 2]]}}])
    with pytest.raises(NotFound):
        reports.add_items(project, 999, [table("A")])
    assert reports.get_report(project, r["id"])["items"] == []


def test_export_is_one_self_contained_html_file(project):
    r = reports.create_report(project, "Study <1>")
    reports.add_items(project, r["id"], [table("Fixed Effects", 0.000012345),
                                         {"kind": "plot", "title": "Q-Q", "payload": {"png_base64": PNG}}])
    page = reports.export_html(project, r["id"])
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<title>Study &lt;1&gt;</title>" in page and "x &lt;b&gt;" in page and "a &amp; b" in page
    assert "1.2345e-05" in page and f"data:image/png;base64,{PNG}" in page
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    assert page.index("Fixed Effects") < page.index("Q-Q")


def test_default_report_is_created_once(project):
    a = reports.default_report(project)
    b = reports.default_report(project)
    assert a["id"] == b["id"] and a["name"] == "Report"
    reports.delete_report(project, a["id"])
    assert reports.list_reports(project) == []
