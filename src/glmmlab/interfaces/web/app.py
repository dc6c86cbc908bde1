"""The app factory: ``create_app(project_path)`` builds the workbench as a FastAPI app.

Route modules live in ``routes/``; each defines ``router``. Optional extension modules (``EXTENSIONS``, e.g. the GLMM
tab's ``routes/glmm.py``) are included when present and may also define ``scripts`` and ``styles``: lists of file
names under ``static/`` that the workbench page loads after its own, so a tab can plug in without editing the page.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Iterable

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.security import DEFAULT_BODY_TIMEOUT, BodyTimeout, BodyTooLarge, Guard
from glmmlab.interfaces.web.state import Busy, PathNotAllowed, Workbench
from glmmlab.services.errors import NotFound, ServiceError, disk_full, is_disk_full

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
CORE_ROUTES = ("pages", "projects", "datasets", "imports", "dummy")
EXTENSIONS = ("glmm",)
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30

log = logging.getLogger("glmmlab.web")

DESCRIPTION = """
The JSON API of the glmmlab workbench: everything the pages do.

* Errors are JSON `{"error": "message"}` with a 4xx status.
* POST, PUT, PATCH and DELETE need the header `X-CSRF-Token`; get the token from `GET /api/token`.
* Imports run in the background: `POST /api/datasets/import` answers `202` with a job; poll `GET /api/jobs/{id}`.
"""


def create_app(project_path: str | Path, *, projects_dir: str | Path | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, allowed_hosts: Iterable[str] = (),
               extensions: Iterable[str] = EXTENSIONS, body_timeout: float = DEFAULT_BODY_TIMEOUT) -> FastAPI:
    """Build the workbench app for the project at ``project_path`` (created if missing).

    ``projects_dir`` is the only directory requests may open, create or import projects in (default: the project's
    own directory). ``max_upload_bytes`` limits every request body. ``allowed_hosts`` adds names the ``Host`` header
    may carry besides 127.0.0.1, localhost and [::1].
    """
    workbench = Workbench(project_path, projects_dir=projects_dir, max_upload_bytes=max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        # the jobs' worker processes go with the server: cancel the jobs, end their pools' processes (a job's
        # thread would otherwise wait for its pool, and interpreter exit for the pool's tasks, minutes)
        workbench.jobs.cancel_all()
        from glmmlab.services.modeling.bootstrap import stop_all_pools

        stop_all_pools()
        workbench.close()

    app = FastAPI(title="glmmlab workbench", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.workbench = workbench
    app.state.templates = Jinja2Templates(env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True, undefined=jinja2.StrictUndefined))
    app.state.scripts = []
    app.state.styles = []

    # Extensions come before the catalogue, so that a tab module may answer /api/models and /api/reports itself.
    for name in CORE_ROUTES:
        module = importlib.import_module(f"glmmlab.interfaces.web.routes.{name}")
        app.include_router(module.router)
    for name in extensions:
        module = _optional_module(f"glmmlab.interfaces.web.routes.{name}")
        if module is None:
            continue
        if hasattr(module, "router"):
            app.include_router(module.router)
        app.state.scripts.extend(getattr(module, "scripts", []))
        app.state.styles.extend(getattr(module, "styles", []))
    app.include_router(importlib.import_module("glmmlab.interfaces.web.routes.catalog").router)

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _install_error_handlers(app)
    app.add_middleware(Guard, csrf_token=workbench.csrf_token, max_body_bytes=max_upload_bytes,
                       allowed_hosts=allowed_hosts, body_timeout=body_timeout)
    return app


def _optional_module(dotted: str) -> Any:
    """The extension module, or None when it does not exist or fails to import (then the log says why)."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name == dotted:
            return None
        log.exception("the workbench extension %s failed to load and is left out", dotted)
    except Exception:  # noqa: BLE001 - a broken tab module must not take the workbench down
        log.exception("the workbench extension %s failed to load and is left out", dotted)
    return None


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("glmmlab")
    except Exception:  # noqa: BLE001 - not installed: a source checkout
        return "0"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return error(404, str(exc))

    @app.exception_handler(PathNotAllowed)
    async def path_not_allowed(request: Request, exc: PathNotAllowed):
        return error(400, str(exc))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return error(409, str(exc))

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        response = error(getattr(exc, "status", 400), str(exc))
        details = getattr(exc, "details", None)
        if details:
            return JSONResponse(jsonable({**details, "error": str(exc)}), status_code=response.status_code)
        return response

    @app.exception_handler(BodyTimeout)
    async def body_timeout(request: Request, exc: BodyTimeout):
        return JSONResponse({"error": str(exc)}, status_code=408, headers={"connection": "close"})

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return error(413, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = f"There is nothing at {request.url.path}."
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error(422, "Invalid request: " + "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        if is_disk_full(exc):
            return error(507, str(disk_full(f"{request.method} {request.url.path} failed")))
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, f"Internal error ({exc.__class__.__name__}); the server log has the details.")
