"""What a project path is, checked before DuckDB opens it: a symbolic-link loop, a folder, a FIFO (which would
block whoever opens it), a socket or device, a SQLite database or any other file that is not a DuckDB database, a
read-only file or folder. Each is refused with its own sentence; only ``stat()`` and a file's first 16 bytes are
read. Used by :meth:`glmmlab.services.project.store.Project.open`."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from glmmlab.services.errors import ServiceError

_SQLITE_MAGIC = b"SQLite format 3\x00"


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _checked_path(given: str | os.PathLike) -> Path:
    """The project path resolved, refused with its own sentence when it is a symbolic-link loop, a folder, not a
    regular file (a FIFO, which would block whoever opens it; a socket; a device) or a file of another kind (a
    SQLite database, any file that is not a DuckDB database). Only stat() and, for a regular file, its first 16
    bytes are read."""
    shown = Path(given).expanduser()
    try:
        path = shown.resolve()
        info = os.stat(path)
    except FileNotFoundError:
        return path
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
            raise ServiceError(f"{shown} is a symbolic link that leads back to itself (a loop): it points to no "
                               "file. Remove the link or give the project file's own path.") from None
        raise ServiceError(f"{shown} cannot be read ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ServiceError(f"{path} is a folder, not a project file; give a file such as "
                           f"{path / 'project.duckdb'}.")
    for test, kind in _KINDS:
        if test(info.st_mode):
            raise ServiceError(f"{path} is {kind}, not a project file; a glmmlab project is a .duckdb file.")
    if info.st_size:
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ServiceError(f"The project file {path.name} cannot be read ({exc.strerror or exc}).") from None
        if head.startswith(_SQLITE_MAGIC):
            raise ServiceError(f"{path.name} is not a glmmlab project file: it is a SQLite database (a glmmlab "
                               "project is a DuckDB database).")
        if len(head) >= 12 and head[8:12] != b"DUCK":
            raise ServiceError(f"{path.name} is not a glmmlab project file (it is not a DuckDB database).")
    return path


def _check_writable(path: Path, existed: bool) -> None:
    """A project is written (and DuckDB keeps a journal file beside it): refuse a read-only file or folder with
    its own sentence, before DuckDB opens it. Tried, not guessed from the permission bits (which do not tell
    root, an immutable file or a read-only file system)."""
    if existed:
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as exc:
            raise ServiceError(
                f"The project file {path} is read-only ({exc.strerror}): glmmlab writes to its project. Make it "
                "writable, or copy it to a writable folder and open the copy.") from None
    try:
        with tempfile.TemporaryFile(dir=path.parent, prefix=".glmmlab-write-test-"):
            pass
    except OSError as exc:
        raise ServiceError(
            f"The folder {path.parent} is read-only ({exc.strerror}): glmmlab keeps a journal file beside the "
            "project there. Move or copy the project to a writable folder.") from None


def _looks_like_duckdb(path: Path) -> bool:
    """True when the file starts like a DuckDB database (its magic bytes), so a failure to open it means damage."""
    try:
        with open(path, "rb") as fh:
            return fh.read(12)[8:12] == b"DUCK"
    except OSError:
        return False
