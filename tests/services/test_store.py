"""The project store: opening, schema, one writer with transactions, many readers."""

from __future__ import annotations

import threading

import duckdb
import pytest

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project.store import SCHEMA_VERSION, Project, quote_ident


def test_new_project_has_schema_and_reopens(tmp_path):
    path = tmp_path / "p.duckdb"
    with Project.open(path) as p:
        assert p.schema_version() == SCHEMA_VERSION
        with p.read() as cur:
            tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert {"datasets", "columns", "models", "reports", "report_items", "schema_version", "meta"} <= tables
    with Project.open(path, create=False) as p:
        assert p.schema_version() == SCHEMA_VERSION


def test_missing_project_without_create_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no project file"):
        Project.open(tmp_path / "nope.duckdb", create=False)
    assert not (tmp_path / "nope.duckdb").exists()


def test_foreign_duckdb_file_is_refused(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(ServiceError, match="not a glmmlab project"):
        Project.open(path)


def test_non_database_file_is_refused(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("hello, I am a text file\n" * 100)
    with pytest.raises(ServiceError, match="not a glmmlab project"):
        Project.open(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "p.duckdb"
    with Project.open(path) as p, p.write() as cur:
        cur.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(ServiceError, match="newer glmmlab"):
        Project.open(path)


def test_write_rolls_back_on_error(project):
    with pytest.raises(RuntimeError):
        with project.write() as cur:
            cur.execute("INSERT INTO meta VALUES ('a', '1')")
            raise RuntimeError("boom")
    assert project.get_meta("a") is None
    project.set_meta("a", {"x": 1})
    assert project.get_meta("a") == {"x": 1}


def test_nested_write_joins_and_read_inside_write_sees_changes(project):
    with pytest.raises(RuntimeError):
        with project.write():
            project.set_meta("inner", 1)  # nested write() joins the outer transaction
            assert project.get_meta("inner") == 1  # read() inside write() sees the change
            raise RuntimeError("undo both")
    assert project.get_meta("inner") is None


def test_readers_see_committed_data_only_while_a_writer_works(project):
    started, release = threading.Event(), threading.Event()

    def writer():
        with project.write() as cur:
            cur.execute("INSERT INTO meta VALUES ('w', '1')")
            started.set()
            release.wait(5)

    t = threading.Thread(target=writer)
    t.start()
    assert started.wait(5)
    seen = []
    readers = [threading.Thread(target=lambda: seen.append(project.get_meta("w"))) for _ in range(4)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(5)
    assert seen == [None] * 4
    release.set()
    t.join(5)
    assert project.get_meta("w") == 1


def test_closed_project_says_so(tmp_path):
    p = Project.open(tmp_path / "p.duckdb")
    p.close()
    p.close()
    with pytest.raises(ServiceError, match="closed"):
        p.get_meta("x")


def test_quote_ident_handles_quotes():
    con = duckdb.connect()
    name = 'a"; drop table x; --'
    con.execute(f"CREATE TABLE t ({quote_ident(name)} INT)")
    assert con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 't'").fetchall() == [
        (name,)]


def test_two_project_objects_on_one_file_share_the_writer(tmp_path):
    path = tmp_path / "p.duckdb"
    with Project.open(path) as a, Project.open(path) as b:
        with a.write():
            a.set_meta("from", "a")
            blocked = threading.Thread(target=lambda: b.set_meta("from", "b"))
            blocked.start()
            blocked.join(0.3)
            assert blocked.is_alive()  # b waits for a's transaction instead of conflicting with it
        blocked.join(5)
        assert b.get_meta("from") == "b" and a.get_meta("from") == "b"
