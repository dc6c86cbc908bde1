"""Opening a project (issue 23): each kind of path that is not a writable glmmlab project gets its own true
sentence and exit status 2 from `glmmlab serve --project`, at once (a FIFO must not block), and no DuckDB
extension is ever loaded or downloaded to read a file; a project with an unreadable report item can be exported
and imported back."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project.store import Project
from glmmlab.services.workbench import project_io, reports

GLMMLAB = [sys.executable, "-m", "glmmlab.interfaces.cli"]


def serve(project: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`glmmlab serve --project`; a refusal ends it before it listens (else it would serve until the timeout)."""
    start = time.perf_counter()
    from tests.web.conftest import free_port

    p = subprocess.run(GLMMLAB + ["serve", "--project", str(project), "--port", str(free_port())], capture_output=True,
                       text=True, timeout=timeout, cwd=str(project.parent if project.parent.exists() else "/"))
    p.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
    return p


def refused(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in p.stderr and "the fit failed" not in p.stderr


def chattr(flag: str, path: Path) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(["chattr", flag, str(path)],
                                                                 capture_output=True).returncode == 0


def test_duckdb_is_opened_without_extensions(tmp_path):
    from glmmlab.services.project.store import NO_EXTENSIONS

    assert NO_EXTENSIONS == {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    with Project.open(tmp_path / "p.duckdb") as p, p.read() as cur:
        settings = dict(cur.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                    "('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


def test_a_sqlite_file_named_duckdb(tmp_path):
    path = tmp_path / "s.duckdb"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ServiceError, match="it is a SQLite database"):
        Project.open(path)
    refused(serve(path), "s.duckdb is not a glmmlab project file: it is a SQLite database")


def test_a_fifo_does_not_block(tmp_path):
    path = tmp_path / "f.duckdb"
    os.mkfifo(path)
    p = serve(path, timeout=30)
    refused(p, "is a FIFO (named pipe), not a project file")
    assert p.seconds < 20  # type: ignore[attr-defined]


def test_a_folder_without_a_suffix_is_not_replaced_by_a_new_project_beside_it(tmp_path):
    folder = tmp_path / "myproject"
    folder.mkdir()
    refused(serve(folder), "is a folder, not a project file")
    assert not (tmp_path / "myproject.duckdb").exists()


def test_a_symlink_loop(tmp_path):
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ServiceError, match="symbolic link that leads back to itself"):
        Project.open(a)
    refused(serve(a), "a.duckdb is a symbolic link that leads back to itself (a loop)")


def test_an_immutable_project_file_is_read_only_not_damaged(tmp_path):
    path = tmp_path / "ro.duckdb"
    Project.open(path).close()
    if not chattr("+i", path):
        pytest.skip("chattr +i is not available here")
    try:
        with pytest.raises(ServiceError) as info:
            Project.open(path)
        assert "is read-only" in str(info.value) and "damaged" not in str(info.value)
        refused(serve(path), "The project file", "is read-only")
    finally:
        chattr("-i", path)


def test_a_project_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    Project.open(folder / "p.duckdb").close()
    if not chattr("+i", folder):
        pytest.skip("chattr +i is not available here")
    try:
        refused(serve(folder / "p.duckdb"), f"The folder {folder} is read-only")
        refused(serve(folder / "new.duckdb"), f"The folder {folder} is read-only")
    finally:
        chattr("-i", folder)


def test_a_project_with_an_unreadable_report_item_is_exported_and_imported_back(tmp_path):
    with Project.open(tmp_path / "p.duckdb") as project:
        rid = reports.create_report(project, "R")["id"]
        reports.add_items(project, rid, [{"kind": "table", "title": "good", "payload": {"columns": ["a"],
                                                                                       "rows": [[1.5]]}}])
        with project.write() as cur:  # as an older version stored it, unchecked
            cur.execute("INSERT INTO report_items (id, report_id, position, kind, title, payload) VALUES "
                        "(?, ?, 1, 'table', 'bad', ?)", [project.next_id(cur, "report_item"), rid,
                                                        json.dumps({"columns": ["a"], "rows": [[1]], "kinds": [1]})])
        summary = project_io.export_project(project, tmp_path / "out.glmmlab")
    assert summary["left_out"] == ["report item 'bad' of report 'R' (it cannot be read)"]
    with project_io.import_project(tmp_path / "out.glmmlab", tmp_path / "back.duckdb") as back:
        items = reports.get_report(back, rid)["items"]
    assert [i["title"] for i in items] == ["good"] and items[0]["payload"]["cells"] == [["1.5000"]]
