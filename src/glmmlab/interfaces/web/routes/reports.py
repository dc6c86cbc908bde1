"""Reports: create, read, rename, delete; add, move and remove items; export as one self-contained HTML file.
``GET /api/reports`` (the list) lives in catalog.py."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.services.workbench import reports

router = APIRouter(prefix="/api/reports", tags=["reports"])


class NewReport(BaseModel):
    name: str = Field("Report", description="The report's name.")


class Item(BaseModel):
    kind: Literal["table", "plot"]
    title: str
    payload: dict[str, Any] = Field(description="table: {columns, rows, note?}; plot: {png_base64, note?}")


class Items(BaseModel):
    items: list[Item]


class Move(BaseModel):
    direction: Literal["up", "down"]


class Order(BaseModel):
    item_ids: list[int]


class Rename(BaseModel):
    name: str


@router.post("", status_code=201, summary="Create a report")
def create(request: Request, body: Optional[NewReport] = None) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.create_report(project, (body or NewReport()).name))


@router.get("/{report_id}", summary="A report with its items in order")
def get(report_id: int, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.get_report(project, report_id))


@router.patch("/{report_id}", summary="Rename a report")
def rename(report_id: int, body: Rename, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.rename_report(project, report_id, body.name))


@router.delete("/{report_id}", summary="Delete a report and its items")
def delete(report_id: int, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.delete_report(project, report_id))


@router.post("/{report_id}/items", summary="Append tables or plots to a report")
def add(report_id: int, body: Items, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.add_items(project, report_id, [i.model_dump() for i in body.items]))


@router.post("/{report_id}/items/{item_id}/move", summary="Move an item one place up or down")
def move(report_id: int, item_id: int, body: Move, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.move_item(project, report_id, item_id, body.direction))


@router.put("/{report_id}/order", summary="Put the items in the given order")
def order(report_id: int, body: Order, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.reorder(project, report_id, body.item_ids))


@router.delete("/{report_id}/items/{item_id}", summary="Remove an item from a report")
def remove(report_id: int, item_id: int, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(reports.remove_item(project, report_id, item_id))


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@router.get("/{report_id}/export", summary="The report as one self-contained HTML file, or (format=docx) as a Word "
                                          "document with tables as Word tables and plots as pictures (a download)",
            response_class=Response, responses={200: {"content": {"text/html": {}, DOCX: {}}}})
def export(report_id: int, request: Request, format: Literal["html", "docx"] = "html"):
    with workbench(request).project() as project:
        report = reports.get_report(project, report_id)
        if format == "docx":
            return Response(reports.export_docx(project, report_id), media_type=DOCX,
                            headers={"Content-Disposition": attachment(report["name"], ".docx")})
        page = reports.export_html(project, report_id)
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": attachment(report["name"], ".html")})


def attachment(name: str, suffix: str) -> str:
    """A Content-Disposition for a download named after ``name``: an ASCII ``filename`` for old clients and the
    full name as ``filename*`` (RFC 6266/5987), since header values must be Latin-1 and names may be any text."""
    plain = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "report"
    full = re.sub(r'[\x00-\x1f\x7f/\\"]+', "_", name).strip() or plain
    return f"attachment; filename=\"{plain}{suffix}\"; filename*=UTF-8''{quote(full + suffix, safe='')}"
