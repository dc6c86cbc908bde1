"""Reports: ordered lists of tables and plots collected from models, exported as one self-contained HTML file.

An item is ``{"kind": "table", "title", "payload": {"columns": [...], "rows": [[...]], "note": "..."}}`` or
``{"kind": "plot", "title", "payload": {"png_base64": "...", "note": "..."}}``. Positions are kept dense (0, 1, ...)
so moving and removing are simple swaps. :func:`export_html` writes a page with inline CSS and images (data: URIs)
and no scripts or external references, so it opens anywhere.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import html
import io
import json
import math
import re
import urllib.parse
from typing import Any

from glmmlab.engine.model.limits import shorten
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project.store import Project
from glmmlab.services.views.numbers import KINDS as NUMBER_KINDS
from glmmlab.services.views.numbers import format_rows, numeric_kind, spreadsheet_safe

KINDS = ("table", "plot")
MAX_TITLE = 300
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _id(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise NotFound(f"There is no {what} with id {value!r}.") from None


def _name(name: Any, what: str = "report") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError(f"Give the {what} a name.")
    name = name.strip()
    if len(name) > MAX_TITLE:
        raise ServiceError(f"The {what} name is too long (at most {MAX_TITLE} characters).")
    return name


def create_report(project: Project, name: str) -> dict[str, Any]:
    name = _name(name)
    with project.write() as cur:
        rid = project.next_id(cur, "report")
        cur.execute("INSERT INTO reports (id, name) VALUES (?, ?)", [rid, name])
    return get_report(project, rid)


def list_reports(project: Project) -> list[dict[str, Any]]:
    with project.read() as cur:
        rows = cur.execute("SELECT r.id, r.name, r.created_at, count(i.id) FROM reports r "
                           "LEFT JOIN report_items i ON i.report_id = r.id GROUP BY r.id, r.name, r.created_at "
                           "ORDER BY r.id").fetchall()
    return [{"id": int(r[0]), "name": r[1], "created_at": _iso(r[2]), "n_items": int(r[3])} for r in rows]


def _iso(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def get_report(project: Project, report_id: int) -> dict[str, Any]:
    """A report with its items in order (each with ``id``, ``position``, ``kind``, ``title``, ``payload``)."""
    rid = _id(report_id, "report")
    with project.read() as cur:
        row = cur.execute("SELECT id, name, created_at FROM reports WHERE id = ?", [rid]).fetchone()
        if row is None:
            raise NotFound(f"There is no report with id {rid}; it may have been deleted.")
        items = cur.execute("SELECT id, position, kind, title, payload FROM report_items WHERE report_id = ? "
                            "ORDER BY position, id", [rid]).fetchall()
    return {"id": int(row[0]), "name": row[1], "created_at": _iso(row[2]), "items": [_read_item(i) for i in items]}


def _read_item(row: Any) -> dict[str, Any]:
    """One stored item as pages show it. An item that cannot be read (stored before items were checked, or
    damaged) is shown as invalid, with an empty payload, so the report itself stays readable, exportable and
    deletable: {"invalid": "why"}."""
    item = {"id": int(row[0]), "position": int(row[1]), "kind": row[2], "title": row[3]}
    try:
        payload = json.loads(row[4]) if row[4] else {}
        kind, _, payload = _check_item(row[2], row[3] or "untitled", payload)
        return dict(item, payload=_with_cells(kind, payload))
    except (ServiceError, ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {shorten(str(exc), 80)}"
        return dict(item, payload={}, invalid=f"This item cannot be read ({why}); remove it.")


def _with_cells(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A table item's payload with its ``kinds`` and its values written (``cells``), as every page shows them."""
    if kind != "table" or "columns" not in payload:
        return payload
    return dict(payload, kinds=table_kinds(payload), cells=table_cells(payload))


def default_report(project: Project) -> dict[str, Any]:
    """The newest report, or a new one called 'Report' when the project has none."""
    reports = list_reports(project)
    return get_report(project, reports[-1]["id"]) if reports else create_report(project, "Report")


MAX_COLUMNS = 200  # a report table's columns
MAX_ROWS = 100_000  # a report table's rows
MAX_CELL_CHARS = 10_000  # one text cell (or column name, or note)
MAX_INT = 2 ** 53  # integers beyond this are not exact as numbers in a browser (and a 400-digit one overflows float)


def _check_cell(v: Any, where: str) -> None:
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, int):
        if abs(v) > MAX_INT:
            raise ServiceError(f"{where} holds an integer of {len(str(abs(v))):,} digits; report tables hold "
                               f"integers up to 2^53 ({MAX_INT:,}).")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ServiceError(f"{where} holds {v!r}; report tables hold finite numbers (leave a missing value "
                               "as null).")
        return
    if isinstance(v, str):
        if len(v) > MAX_CELL_CHARS:
            raise ServiceError(f"{where} holds text of {len(v):,} characters (at most {MAX_CELL_CHARS:,}).")
        return
    raise ServiceError(f"{where} holds a {type(v).__name__}; a cell is a number, text, true/false or null.")


def _check_kinds(kinds: Any, n_columns: int, n_rows: int) -> None:
    if kinds is None:
        return
    if not isinstance(kinds, list) or len(kinds) != n_columns:
        raise ServiceError(f"A table item's 'kinds' must be a list of one kind per column ({n_columns}).")
    for j, k in enumerate(kinds):
        if isinstance(k, str) and k in NUMBER_KINDS:
            continue
        if isinstance(k, list) and len(k) == n_rows and all(isinstance(x, str) and x in NUMBER_KINDS for x in k):
            continue
        raise ServiceError(f"Kind {j + 1} of a table item must be one of {', '.join(NUMBER_KINDS)} (or a list of "
                           f"them, one per row); got {shorten(repr(k), 60)}.")


def _check_item(kind: Any, title: Any, payload: Any) -> tuple[str, str, dict]:
    if kind not in KINDS:
        raise ServiceError(f"A report item is a table or a plot, not {shorten(repr(kind), 60)}.")
    title = _name(title, "item")
    if not isinstance(payload, dict):
        raise ServiceError("A report item needs a payload object.")
    note = payload.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_CELL_CHARS):
        raise ServiceError(f"A report item's 'note' must be text of at most {MAX_CELL_CHARS:,} characters.")
    if kind == "table":
        cols, rows = payload.get("columns"), payload.get("rows")
        if not isinstance(cols, list) or not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise ServiceError("A table item needs 'columns' (a list of names) and 'rows' (a list of lists).")
        if any(len(r) != len(cols) for r in rows):
            raise ServiceError("Every row of a table item must have one value per column.")
        if len(cols) > MAX_COLUMNS or len(rows) > MAX_ROWS:
            raise ServiceError(f"A table item holds at most {MAX_COLUMNS} columns and {MAX_ROWS:,} rows.")
        for j, c in enumerate(cols):
            if not isinstance(c, str) or len(c) > MAX_CELL_CHARS:
                raise ServiceError(f"Column name {j + 1} of a table item must be text (at most "
                                   f"{MAX_CELL_CHARS:,} characters).")
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                _check_cell(v, f"Row {i + 1}, column {j + 1} of the table")
        _check_kinds(payload.get("kinds"), len(cols), len(rows))
        payload = {k: v for k, v in payload.items() if k != "cells"}  # the written values are derived, not stored
    else:
        data = payload.get("png_base64")
        try:
            raw = base64.b64decode(data or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raw = b""
        if not raw.startswith(PNG_MAGIC):
            raise ServiceError("A plot item needs 'png_base64', a PNG image in base64.")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"A report item's payload cannot be stored ({shorten(str(exc), 80)}).") from None
    return kind, title, payload


def check_item(kind: Any, title: Any, payload: Any) -> None:
    """Raise :class:`ServiceError` unless this is a valid report item (used on items from a project import)."""
    _check_item(kind, title, payload)


def item_key(kind: str, title: str, payload: dict[str, Any]) -> str:
    """What makes two items the same: the ``source`` the server gave an item (owner, choice and level), or else the
    item's whole content (kind, title and payload)."""
    source = payload.get("source")
    if isinstance(source, str) and source:
        return "source:" + source
    content = json.dumps([kind, title, payload], sort_keys=True, allow_nan=False, separators=(",", ":"))
    return "content:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def add_items(project: Project, report_id: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Append items (each ``{"kind", "title", "payload"}``) to the end of the report, in one transaction. An item
    the report already holds (the same :func:`item_key`) is not added again, so adding twice changes nothing; the
    answer is the report with ``added`` and ``skipped`` (the titles of each)."""
    checked = [_check_item(i.get("kind"), i.get("title"), i.get("payload")) for i in items]
    rid = _id(report_id, "report")
    added: list[str] = []
    skipped: list[str] = []
    with project.write() as cur:
        if cur.execute("SELECT 1 FROM reports WHERE id = ?", [rid]).fetchone() is None:
            raise NotFound(f"There is no report with id {rid}; it may have been deleted.")
        held = {item_key(k, t, json.loads(p) if p else {}) for k, t, p in
                cur.execute("SELECT kind, title, payload FROM report_items WHERE report_id = ?", [rid]).fetchall()}
        pos = int(cur.execute("SELECT coalesce(max(position) + 1, 0) FROM report_items WHERE report_id = ?",
                              [rid]).fetchone()[0])  # type: ignore[index]  # an aggregate: one row
        for kind, title, payload in checked:
            key = item_key(kind, title, payload)
            if key in held:
                skipped.append(title)
                continue
            held.add(key)
            iid = project.next_id(cur, "report_item")
            cur.execute("INSERT INTO report_items (id, report_id, position, kind, title, payload) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [iid, rid, pos, kind, title, json.dumps(payload, allow_nan=False)])
            added.append(title)
            pos += 1
    return dict(get_report(project, rid), added=added, skipped=skipped)


def target_report(project: Project, report_id: Any = None, new_report: Any = None) -> dict[str, Any]:
    """The report to add to: ``new_report`` (a name) creates one, else ``report_id``, else the newest (one called
    'Report' is created when the project has none)."""
    if new_report is not None:
        return create_report(project, new_report)
    return get_report(project, report_id) if report_id is not None else default_report(project)


def _renumber(cur, rid: int, ids: list[int]) -> None:
    for pos, iid in enumerate(ids):
        cur.execute("UPDATE report_items SET position = ? WHERE id = ?", [pos, iid])


def move_item(project: Project, report_id: int, item_id: int, direction: str) -> dict[str, Any]:
    """Move an item one place ``"up"`` or ``"down"`` (nothing happens at either end)."""
    if direction not in ("up", "down"):
        raise ServiceError("Move an item 'up' or 'down'.")
    report = get_report(project, report_id)
    ids = [i["id"] for i in report["items"]]
    iid = _id(item_id, "report item")
    if iid not in ids:
        raise NotFound(f"Report '{report['name']}' has no item {iid}.")
    k = ids.index(iid)
    j = k - 1 if direction == "up" else k + 1
    if 0 <= j < len(ids):
        ids[k], ids[j] = ids[j], ids[k]
    with project.write() as cur:
        _renumber(cur, report["id"], ids)
    return get_report(project, report["id"])


def reorder(project: Project, report_id: int, item_ids: list[int]) -> dict[str, Any]:
    """Put the items in the order of ``item_ids`` (which must name each item once)."""
    report = get_report(project, report_id)
    current = sorted(i["id"] for i in report["items"])
    wanted = [_id(i, "report item") for i in item_ids]
    if sorted(wanted) != current:
        raise ServiceError("Give every item of the report exactly once to reorder it.")
    with project.write() as cur:
        _renumber(cur, report["id"], wanted)
    return get_report(project, report["id"])


def remove_item(project: Project, report_id: int, item_id: int) -> dict[str, Any]:
    report = get_report(project, report_id)
    iid = _id(item_id, "report item")
    ids = [i["id"] for i in report["items"]]
    if iid not in ids:
        raise NotFound(f"Report '{report['name']}' has no item {iid}.")
    with project.write() as cur:
        cur.execute("DELETE FROM report_items WHERE id = ?", [iid])
        _renumber(cur, report["id"], [i for i in ids if i != iid])
    return get_report(project, report["id"])


def rename_report(project: Project, report_id: int, name: str) -> dict[str, Any]:
    report = get_report(project, report_id)
    with project.write() as cur:
        cur.execute("UPDATE reports SET name = ? WHERE id = ?", [_name(name), report["id"]])
    return get_report(project, report["id"])


def delete_report(project: Project, report_id: int) -> dict[str, Any]:
    report = get_report(project, report_id)
    with project.write() as cur:
        cur.execute("DELETE FROM report_items WHERE report_id = ?", [report["id"]])
        cur.execute("DELETE FROM reports WHERE id = ?", [report["id"]])
    return {"id": report["id"], "name": report["name"]}


# -- export --------------------------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1d2430;
  margin: 0 auto; max-width: 1000px; padding: 24px 28px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.meta, .note { color: #5f6b7a; font-size: 12.5px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid #d9dee5; padding: 3px 10px; text-align: left; }
th { background: #f4f6f9; }
td.num { text-align: right; }
img { width: 504px; max-width: 100%; height: auto; border: 1px solid #e3e7ec; } /* plots are drawn at 2x */
.tools { margin: 4px 0 0; font-size: 12.5px; }
details.copy { font-size: 12.5px; color: #5f6b7a; }
details.copy textarea { width: 100%; font: 12px ui-monospace, Menlo, Consolas, monospace; }
@media print { section { break-inside: avoid; } .tools, details.copy { display: none; } }
"""


def table_kinds(payload: dict[str, Any]) -> list:
    """The number kinds of a table item's columns: as stored (``payload["kinds"]``), or, for items stored without
    them, ``count`` for columns of whole numbers, ``decimal`` for other numbers and ``text`` for the rest."""
    kinds = payload.get("kinds")
    if isinstance(kinds, list) and len(kinds) == len(payload["columns"]):
        return kinds
    out = []
    for j in range(len(payload["columns"])):
        values = [r[j] for r in payload["rows"] if r[j] is not None]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out.append("count" if all(isinstance(v, int) for v in values) else "decimal")
        else:
            out.append("text")
    return out


def table_cells(payload: dict[str, Any]) -> list[list[str]]:
    """A table item's values written by the one number formatter (:mod:`glmmlab.services.views.numbers`)."""
    return format_rows(payload["rows"], table_kinds(payload))


def table_csv(payload: dict[str, Any]) -> str:
    """A table item as CSV: the header and the values at full precision (missing values empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([spreadsheet_safe(c) for c in payload["columns"]])
    writer.writerows([["" if v is None else spreadsheet_safe(v) for v in row] for row in payload["rows"]])
    return out.getvalue()


def table_tsv(payload: dict[str, Any]) -> str:
    """A table item as tab-separated text, the values as shown (pastes into a spreadsheet)."""
    def clean(v: Any) -> str:
        text = " ".join(str(v).split()) if any(c in str(v) for c in "\t\r\n") else str(v)
        return str(spreadsheet_safe(text))

    lines = ["\t".join(clean(c) for c in payload["columns"])]
    lines += ["\t".join(clean(c) for c in row) for row in table_cells(payload)]
    return "\n".join(lines) + "\n"


def _file_stem(title: str) -> str:
    return re.sub(r"[^\w.-]+", "_", title).strip("_") or "table"


def _table_tools_html(title: str, payload: dict[str, Any]) -> str:
    """Without scripts: a CSV download (a data: link) and the tab-separated text ready to select and copy."""
    href = "data:text/csv;charset=utf-8," + urllib.parse.quote(table_csv(payload))
    return (f'<p class="tools"><a class="csv" download="{html.escape(_file_stem(title))}.csv" '
            f'href="{html.escape(href)}">Download CSV</a></p>'
            f'<details class="copy"><summary>Copy as tab-separated text</summary>'
            f'<textarea readonly rows="4">{html.escape(table_tsv(payload))}</textarea></details>')


def _table_html(payload: dict[str, Any]) -> str:
    kinds = table_kinds(payload)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in payload["columns"])
    body = []
    for row in table_cells(payload):
        cells = "".join(f'<td class="num">{html.escape(v)}</td>' if numeric_kind(k) else f"<td>{html.escape(v)}</td>"
                        for v, k in zip(row, kinds))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def export_html(project: Project, report_id: int) -> str:
    """The report as one HTML document: inline CSS, plots as data: URIs, no scripts, no external references."""
    report = get_report(project, report_id)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(report['name'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report['name'])}</h1>",
             f'<p class="meta">glmmlab report · {len(report["items"])} item'
             f'{"" if len(report["items"]) == 1 else "s"} · created {html.escape(report["created_at"][:19])}</p>']
    for item in report["items"]:
        p = item["payload"]
        if item.get("invalid"):
            parts.append(f'<section class="item invalid"><h2>{html.escape(str(item["title"] or ""))}</h2>'
                         f'<p class="note">{html.escape(item["invalid"])}</p></section>')
            continue
        parts.append(f'<section class="item {item["kind"]}"><h2>{html.escape(item["title"] or "")}</h2>')
        if p.get("note"):
            parts.append(f'<p class="note">{html.escape(str(p["note"]))}</p>')
        if item["kind"] == "table":
            parts.append(_table_html(p))
            parts.append(_table_tools_html(item["title"] or "table", p))
        else:
            data = base64.b64encode(base64.b64decode(p["png_base64"])).decode("ascii")
            parts.append(f'<img alt="{html.escape(item["title"] or "plot")}" src="data:image/png;base64,{data}">')
        parts.append("</section>")
    if not report["items"]:
        parts.append('<p class="note">This report is empty.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def export_docx(project: Project, report_id: int) -> bytes:
    """The report as a Word document (python-docx): a heading per item, its note, tables as Word tables (the
    values written as every page shows them, numbers right-aligned) and plots as PNG pictures 6 inches wide."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Inches, Pt, RGBColor

    report = get_report(project, report_id)
    doc = Document()
    doc.core_properties.title = report["name"]
    doc.add_heading(report["name"], level=0)
    n = len(report["items"])
    meta = doc.add_paragraph(f"glmmlab report · {n} item{'' if n == 1 else 's'} · created {report['created_at'][:19]}")
    meta.runs[0].font.color.rgb = RGBColor(0x5F, 0x6B, 0x7A)
    for item in report["items"]:
        p = item["payload"]
        doc.add_heading(item["title"] or "", level=2)
        if p.get("note"):
            note = doc.add_paragraph(str(p["note"]))
            for run in note.runs:
                run.font.size = Pt(9)
                run.font.color.rgb = RGBColor(0x5F, 0x6B, 0x7A)
        if item["kind"] == "table":
            kinds = table_kinds(p)
            cells = table_cells(p)
            table = doc.add_table(rows=1 + len(cells), cols=len(p["columns"]))
            table.style = "Table Grid"
            for j, name in enumerate(p["columns"]):
                cell = table.cell(0, j)
                cell.text = str(name)
                cell.paragraphs[0].runs[0].font.bold = True
            for i, row in enumerate(cells, start=1):
                for j, value in enumerate(row):
                    cell = table.cell(i, j)
                    cell.text = value
                    if numeric_kind(kinds[j]):
                        cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
            for row_ in table.rows:
                for cell in row_.cells:
                    for par in cell.paragraphs:
                        for run in par.runs:
                            run.font.size = Pt(9)
        else:
            doc.add_picture(io.BytesIO(base64.b64decode(p["png_base64"])), width=Inches(6))
    if not report["items"]:
        doc.add_paragraph("This report is empty.")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
