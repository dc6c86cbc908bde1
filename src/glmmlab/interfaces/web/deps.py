"""Small helpers the route modules share: the workbench of a request, dataset ids, uploads, the dataset tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.state import Workbench
from glmmlab.services.errors import ServiceError, disk_full, is_disk_full

OPERATION_LABELS = {"dummy_coding": "dummy coding", "model_diagnostics": "model diagnostics", "import": "imported",
                    "sample": "sample data"}


def workbench(request: Request) -> Workbench:
    return request.app.state.workbench


def dataset_id(raw: str) -> Any:
    """Dataset ids arrive as path text; the store's ids are integers when they look like integers.

    Only ASCII digits count (``'²'.isdigit()`` is true, but ``int('²')`` fails); anything else goes to the store
    as it is, which answers that there is no such dataset.
    """
    return int(raw) if raw.isascii() and raw.isdigit() else raw


def dataset_tree(infos: list[Any]) -> list[dict[str, Any]]:
    """Datasets in display order: each primary dataset followed by what was derived from it, indented by depth."""
    items = [jsonable(i) for i in infos]
    by_id = {str(d["id"]): d for d in items}
    children: dict[str, list[dict]] = {}
    roots = []
    for d in items:
        parent = d.get("parent_id")
        if parent is not None and str(parent) in by_id:
            children.setdefault(str(parent), []).append(d)
        else:
            roots.append(d)
    out: list[dict[str, Any]] = []

    def walk(d: dict, depth: int) -> None:
        if any(o is d for o in out):  # a cycle cannot happen in a sane store; do not loop if it does
            return
        parent = by_id.get(str(d.get("parent_id")))
        n = d.get("n_rows") or 0
        out.append({**d, "depth": depth, "parent_name": parent["name"] if parent else None,
                    "rows_text": f"{n:,} row" + ("" if n == 1 else "s"),
                    "operation_label": operation_label(d.get("operation"))})
        for child in children.get(str(d["id"]), []):
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    return out


def operation_label(operation: Any) -> str | None:
    if operation is None:
        return None
    kind = (operation.get("type") or operation.get("kind")) if isinstance(operation, dict) else operation
    kind = str(kind) if kind is not None else "derived"
    return OPERATION_LABELS.get(kind, kind.replace("_", " "))


async def receive_upload(request: Request, wb: Workbench, filename: str | None) -> tuple[Path, str | None]:
    """Store the request's file under the projects directory's upload area; returns (path, original file name).

    The page sends the file as the raw body (so it can show upload progress); scripts may send either that or a
    multipart form with a ``file`` field. The body size limit is enforced by the ``Guard`` middleware.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ServiceError("The form has no file; send it in a field named 'file'.")
        filename = filename or upload.filename
        dest = wb.new_upload_path(filename)
        try:
            with open(dest, "wb") as out:
                while chunk := await upload.read(1 << 20):
                    out.write(chunk)
        except Exception as exc:
            wb.discard_upload(dest)
            if is_disk_full(exc):
                raise disk_full("The upload could not be stored") from None
            raise
        finally:
            await upload.close()
        return dest, filename
    dest = wb.new_upload_path(filename)
    try:
        with open(dest, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except (ClientDisconnect, Exception) as exc:
        wb.discard_upload(dest)
        if is_disk_full(exc):
            raise disk_full("The upload could not be stored") from None
        raise
    return dest, filename
