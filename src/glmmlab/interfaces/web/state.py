"""The workbench's server-side state: the open project, the projects directory it may touch, background jobs.

One ``Workbench`` object belongs to one app (``app.state.workbench``). Every view reaches the project through
``workbench.project()``, a context manager that holds a shared hold on the open project: many requests (and a
background import) use it at once, since ``Project`` itself serialises writes and gives each reader its own cursor;
switching to another project takes the exclusive hold, so it never happens under a running request.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterator

from glmmlab.services import errors as service_errors
from glmmlab.services.project.store import Project
from glmmlab.services.workbench import fits
from glmmlab.services.workbench.jobs import Job, JobRunner

PROJECT_SUFFIX = ".duckdb"
UPLOAD_DIR_NAME = ".uploads"
OWNER_FILE = ".owner"
WRITE_WAIT = 5.0  # seconds a request waits for another change to the project before it answers "busy" (503)
MAX_NAME_BYTES = 255 - len(".importing.wal") - 1
_NAME_PART = re.compile(r"^[^\x00-\x1f<>:\"|?*]+$")


class PathNotAllowed(service_errors.ServiceError):
    """A requested project path lies outside the projects directory or is malformed."""


class Busy(service_errors.ServiceError):
    """The workbench cannot do this now (for example, switching projects while an import runs)."""


class SharedLock:
    """Many holders at once (``shared()``), or one alone (``exclusive()``); re-entrant for the exclusive holder."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._owner: int | None = None
        self._depth = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:
                while self._owner is not None:
                    self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
            else:
                while self._owner is not None or self._shared:
                    self._cond.wait()
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                self._cond.notify_all()


class Workbench:
    """Owns the open ``Project`` and confines every project path to ``projects_dir``."""

    def __init__(self, project_path: str | Path, projects_dir: str | Path | None = None,
                 max_upload_bytes: int = 1 << 30):
        project_path = Path(project_path).expanduser().absolute()
        self.projects_dir = Path(projects_dir or project_path.parent).expanduser().resolve()
        self.max_upload_bytes = int(max_upload_bytes)
        self.csrf_token = secrets.token_urlsafe(32)
        self._lock = SharedLock()
        self.jobs = JobRunner(**fits.runner_limits())  # imports and fits
        self._jobs_lock = threading.Lock()
        self._project: Project | None = None
        self._key = ""
        self._building: set[Path] = set()  # project files being built by an import (outside the exclusive hold)
        self._key_names: dict[str, str] = {}
        self._owned: dict[Path, Any] = {}  # folder in the upload area -> the open lock file that marks it ours
        self._owned_lock = threading.Lock()
        # Open (and so lock) the project first: a second server on the same project stops here, before it touches
        # anything, and the leftovers it then removes are only those no living process owns. Project.open resolves
        # the path and refuses what is not a writable project file (a link loop, a FIFO, a read-only folder) with
        # its own sentence, so it comes before any folder is made.
        self.projects_dir.mkdir(parents=True, exist_ok=True)
        self._open(project_path, create=True)  # the path the person started with; requests are confined
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers()

    # ---- paths -------------------------------------------------------------------------------------------------

    @property
    def upload_dir(self) -> Path:
        return self.projects_dir / UPLOAD_DIR_NAME

    def confine(self, name: str) -> Path:
        """Turn a user-given project name or path into a path inside ``projects_dir``, or refuse it.

        Accepted: ``"study"``, ``"study.duckdb"``, ``"2024/study"``, or an absolute path inside the projects
        directory. Refused: empty names, ``..`` anywhere, control characters, and anything that resolves (symbolic
        links included) outside the projects directory.
        """
        if not isinstance(name, str) or not name.strip():
            raise PathNotAllowed("Give a project name.")
        name = name.strip()
        if len(name) > 255:
            raise PathNotAllowed("The project name is too long (at most 255 characters).")
        parts = set(PurePosixPath(name).parts) | set(PureWindowsPath(name).parts)
        if ".." in parts:
            raise PathNotAllowed("A project path must not contain '..'.")
        if not all(_NAME_PART.match(p) for p in PurePath(name).parts if p != "/"):
            raise PathNotAllowed("A project name must not contain control characters or any of < > : \" | ? *.")
        candidate = Path(name) if Path(name).is_absolute() else self.projects_dir / name
        if candidate.suffix != PROJECT_SUFFIX:
            candidate = candidate.with_name(candidate.name + PROJECT_SUFFIX)
        # the file system takes at most 255 bytes per name; the import builds ".NAME.importing.wal" beside it
        if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in candidate.parts):
            raise PathNotAllowed(f"The project name is too long: each part of it can be at most "
                                 f"{MAX_NAME_BYTES - len(PROJECT_SUFFIX)} bytes (letters outside A-Z take 2-4).")
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:
            raise PathNotAllowed(f"The project name '{name[:60]}' cannot be used ({exc.__class__.__name__}).") \
                from None
        if not resolved.is_relative_to(self.projects_dir) or resolved == self.projects_dir:
            raise PathNotAllowed(f"Projects live in {self.projects_dir}; '{name}' is outside it.")
        if any(part.startswith(".") for part in resolved.relative_to(self.projects_dir).parts):
            raise PathNotAllowed("A project name must not start with '.'.")
        return resolved

    def display_name(self, path: Path) -> str:
        path = Path(path).resolve()
        if not path.is_relative_to(self.projects_dir):
            return path.stem
        rel = path.relative_to(self.projects_dir).as_posix()
        return rel[: -len(PROJECT_SUFFIX)] if rel.endswith(PROJECT_SUFFIX) else rel

    def list_projects(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.projects_dir.rglob("*" + PROJECT_SUFFIX)):
            rel = p.relative_to(self.projects_dir)
            if any(part.startswith(".") for part in rel.parts):
                continue
            stat = p.stat()
            out.append({"name": self.display_name(p), "size_bytes": stat.st_size,
                        "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stat.st_mtime)),
                        "current": self._project is not None and p.resolve() == Path(self._project.path).resolve()})
        return out

    def new_upload_path(self, filename: str | None = None) -> Path:
        """A fresh path in the upload area that keeps the (sanitised) name of the uploaded file.

        Its folder is this process's (a lock on ``.owner`` in it says so, for as long as the process lives), so
        scratch files of the same job (an export's Parquet files) can go there too; :meth:`discard_upload` removes
        the folder with everything in it.
        """
        base = PurePath((filename or "upload").replace("\\", "/")).name
        base = re.sub(r"[^\w .()+-]", "_", base).strip(" .")[:120] or "upload"
        if base == OWNER_FILE:
            base = "upload"
        folder = self.upload_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        owner = open(folder / OWNER_FILE, "wb")
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with self._owned_lock:
            self._owned[folder] = owner
        return folder / base

    def discard_upload(self, path: Path) -> None:
        """Remove an uploaded file and its folder (with any scratch files in it) in the upload area."""
        path = Path(path)
        folder = path.parent
        if folder.parent == self.upload_dir:
            shutil.rmtree(folder, ignore_errors=True)
            with self._owned_lock:
                owner = self._owned.pop(folder, None)
            if owner is not None:
                owner.close()
        else:
            with contextlib.suppress(OSError):
                path.unlink()

    def _clear_leftovers(self) -> None:
        """Remove what killed processes left behind; never what a living process (another server) is using.

        - folders in the upload area whose ``.owner`` lock no process holds (uploads, export scratch files);
        - unmarked entries there (from older versions) that have not changed for an hour;
        - half-built project imports (``.NAME.duckdb.importing`` and its ``.wal``) that no process has open and
          that have not changed for a minute.
        """
        now = time.time()
        for p in self.upload_dir.iterdir():
            with contextlib.suppress(OSError):
                if p.is_dir() and (p / OWNER_FILE).exists():
                    with open(p / OWNER_FILE, "rb") as fh:
                        try:
                            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError:
                            continue  # a living process owns it
                        shutil.rmtree(p, ignore_errors=True)
                elif now - p.stat().st_mtime > 3600:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()
        for p in self.projects_dir.rglob(".*.importing*"):
            with contextlib.suppress(OSError):
                if not p.is_file() or now - p.stat().st_mtime < 60:
                    continue
                with open(p, "rb+") as fh:
                    try:
                        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # DuckDB holds this lock while it is open
                    except OSError:
                        continue
                    p.unlink()

    # ---- the open project --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def project(self) -> Iterator[Project]:
        """The open project; it stays open (no project switch) for the duration of the ``with`` block."""
        with self._lock.shared():
            if self._project is None:
                raise Busy("No project is open. Use File > New Project or File > Open Project.")
            yield self._project

    @contextlib.contextmanager
    def project_for(self, key: str, what: str = "This fit") -> Iterator[Project]:
        """The open project, provided it is the one ``key`` (from :meth:`project_key`) names; else a refusal.

        Work made on one project (a fit) must never land in another one that happens to be open later, even when
        that one has a dataset with the same id.
        """
        with self.project() as project:
            if self._key != key:
                made_on = self._key_names.get(key, "another project")
                raise service_errors.ServiceError(
                    f"{what} belongs to the project '{made_on}', but '{self.display_name(Path(project.path))}' is "
                    f"open now; open '{made_on}' again to use it, or run it again on this project.")
            yield project

    def project_key(self) -> str:
        """Names the open project: its path and the id stored in it (a copy or a re-created file differs)."""
        with self._lock.shared():
            if self._project is None:
                raise Busy("No project is open. Use File > New Project or File > Open Project.")
            return self._key

    def _set_key(self) -> None:
        """Called under the exclusive hold after a project is opened: give the project a lasting id."""
        assert self._project is not None
        uid = self._project.get_meta("project_uid")
        if not isinstance(uid, str) or not uid:
            uid = uuid.uuid4().hex
            try:
                self._project.set_meta("project_uid", uid)
            except service_errors.ServiceError:  # a damaged file that can be read but not written: this opening only
                pass
        self._key = f"{self._project.path}#{uid}"
        self._key_names[self._key] = self.display_name(Path(self._project.path))

    def project_info(self) -> dict[str, Any]:
        with self._lock.shared():
            path = Path(self._project.path) if self._project is not None else None
            return {"name": self.display_name(path) if path else None,
                    "path": str(path) if path else None,
                    "damaged": self._project.damaged_message() if self._project is not None else None,
                    "projects_dir": str(self.projects_dir),
                    "max_upload_bytes": self.max_upload_bytes}

    def _open(self, path: Path, create: bool) -> None:
        with self._lock.exclusive():
            project = Project.open(path, create=create)
            project.write_wait = WRITE_WAIT
            if self._project is not None:
                self._project.close()
            self._project = project
            self._set_key()

    def switch(self, path: Path, create: bool, setup: Callable[[Project], Any] | None = None,
               make: Callable[[Path], Project] | None = None) -> None:
        """Make the project at ``path`` the current one.

        ``create``: create it when missing (and then run ``setup`` on it). ``make``: build a new project file at
        ``path`` (which must not exist) and return it open, e.g. from an export file. The build runs without the
        exclusive hold (pages keep answering from the open project); only the swap takes it.
        """
        if make is not None:
            self._build_and_swap(path, make)
            return
        with self._lock.exclusive():
            if self.running_jobs():
                raise Busy("An import is still running; wait for it to finish before switching projects.")
            existed = path.exists()
            if not create and not existed:
                raise service_errors.NotFound(f"There is no project named '{self.display_name(path)}'.")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open(path, create=True)
            if setup is not None and not existed:
                assert self._project is not None  # just opened
                setup(self._project)

    def _build_and_swap(self, path: Path, make: Callable[[Path], Project]) -> None:
        if self.running_jobs():
            raise Busy("An import is still running; wait for it to finish before switching projects.")
        with self._jobs_lock:
            if path.exists() or path in self._building:
                raise service_errors.ServiceError(
                    f"A project named '{self.display_name(path)}' already exists; choose another name.")
            self._building.add(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            project = make(path)
        finally:
            with self._jobs_lock:
                self._building.discard(path)
        project.write_wait = WRITE_WAIT
        with self._lock.exclusive():
            if self.running_jobs():
                project.close()
                raise Busy(f"The project was imported as '{self.display_name(path)}', but an import into the open "
                           "project is still running, so it was not opened; open it when that import has finished.")
            if self._project is not None:
                self._project.close()
            self._project = project
            self._set_key()

    def close(self) -> None:
        with self._lock.exclusive():
            if self._project is not None:
                self._project.close()
                self._project = None
        with self._owned_lock:
            owned, self._owned = dict(self._owned), {}
        for folder, owner in owned.items():
            shutil.rmtree(folder, ignore_errors=True)
            owner.close()

    # ---- background jobs ---------------------------------------------------------------------------------------

    def running_jobs(self) -> list[Job]:
        """Running imports (a project switch waits for them; fits belong to their project and need not)."""
        return self.jobs.running("import")

    def get_job(self, job_id: str) -> Job:
        return self.jobs.get(job_id)

    def start_job(self, kind: str, label: str, work: Callable[[Job], dict[str, Any] | None],
                  cleanup: Callable[[], None] | None = None) -> Job:
        """Run ``work(job)`` in a thread; it reports through ``job.report(stage, fraction)`` and returns the result."""
        return self.jobs.start(kind, label, work, cleanup=cleanup)
