"""Start the workbench: ``serve()`` is what ``glmmlab serve`` calls; ``python -m glmmlab.interfaces.web.server`` too."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

DEFAULT_PROJECT = Path("projects") / "default.duckdb"


def prepare_project(project_path: str | Path | None) -> Path:
    """The project file to open: ``projects/default.duckdb`` under the current directory unless one is given.

    A missing project is created, with the sample datasets, so a first start shows something to work with.
    """
    from glmmlab.services.errors import ServiceError
    from glmmlab.services.project import samples
    from glmmlab.services.project.store import Project

    path = Path(project_path) if project_path else Path.cwd() / DEFAULT_PROJECT
    path = path.expanduser().absolute()
    if path.is_dir():  # not a new project beside it without a word
        raise ServiceError(f"{path} is a folder, not a project file; give a file such as "
                           f"{path / 'project.duckdb'}.")
    if path.suffix == "" and not path.is_symlink() and not path.exists():
        path = path.with_suffix(".duckdb")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"The folder {path.parent} cannot be created ({exc.strerror or exc}).") from None
    if not path.exists() and not path.is_symlink():
        project = Project.open(path, create=True)
        try:
            samples.create_sample_datasets(project)
        finally:
            project.close()
    return path


def serve(project_path: str | Path | None = None, host: str = "127.0.0.1", port: int = 8765,
          max_upload_bytes: int | None = None, log_level: str = "warning", header_timeout: float | None = None,
          body_timeout: float | None = None, max_connections: int | None = None) -> None:
    """Open (or create) the project and serve the workbench at http://host:port until interrupted.

    Request headers must arrive within ``header_timeout`` seconds and a body must not stall for ``body_timeout``
    seconds (else 408); at most ``max_connections`` connections are open at once (see ``connections.py``).
    """
    import uvicorn

    from glmmlab.interfaces.web.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
    from glmmlab.interfaces.web.connections import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, GuardedH11Protocol
    from glmmlab.interfaces.web.security import DEFAULT_BODY_TIMEOUT
    from glmmlab.services.errors import ServiceError

    everywhere = host in ("0.0.0.0", "::", "")
    shown = f"[{host}]" if ":" in host else host
    problem = _port_problem(host, port)
    if problem:
        print(f"error: cannot listen on {shown}:{port}: {problem}. Is the workbench already running there (open "
              f"http://{shown}:{port}/)? Otherwise choose another port with --port.", file=sys.stderr)
        raise SystemExit(2)
    try:
        path = prepare_project(project_path)
        app = create_app(path, max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
                         allowed_hosts=["*"] if everywhere else [host],
                         body_timeout=body_timeout or DEFAULT_BODY_TIMEOUT)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"glmmlab workbench: http://{shown}:{port}/  (project {path}; press Ctrl+C to stop)", flush=True)
    if everywhere:
        print(f"warning: listening on all network interfaces ({host}); anyone who can reach this machine can use "
              "the workbench and its project files.", file=sys.stderr, flush=True)
    limit = max_connections or DEFAULT_MAX_CONNECTIONS
    _raise_file_limit(limit + 256)  # room for the connections, the project, uploads and the Python runtime
    protocol = GuardedH11Protocol.configured(header_timeout or DEFAULT_HEADER_TIMEOUT, limit)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3, http=protocol,
                backlog=min(2048, limit * 2))


def _raise_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (within the hard limit), so the cap is what bounds."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None when it can (checked before the project is opened)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glmmlab.interfaces.web.server", description=serve.__doc__)
    parser.add_argument("--project", default=None, help="project file (default: projects/default.duckdb)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-upload-mb", type=int, default=None, help="upload size limit in MiB (default 1024)")
    parser.add_argument("--header-timeout", type=float, default=None, help="seconds for a request's headers (10)")
    parser.add_argument("--body-timeout", type=float, default=None, help="seconds a body may stall (60)")
    parser.add_argument("--max-connections", type=int, default=None, help="open connections at most (512)")
    args = parser.parse_args(argv)
    serve(args.project, host=args.host, port=args.port,
          max_upload_bytes=args.max_upload_mb * (1 << 20) if args.max_upload_mb else None,
          header_timeout=args.header_timeout, body_timeout=args.body_timeout, max_connections=args.max_connections)


if __name__ == "__main__":
    main()
