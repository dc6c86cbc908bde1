"""Starting the workbench: the default project, ``glmmlab serve``, and clear errors when it cannot start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from glmmlab.interfaces.web.server import prepare_project
from tests.web.conftest import free_port

GLMMLAB = Path(sys.executable).parent / "glmmlab"


def test_the_default_project_is_created_once_with_the_samples(tmp_path, monkeypatch):
    from glmmlab.services.project import catalogue, lineage
    from glmmlab.services.project.store import Project

    monkeypatch.chdir(tmp_path)
    path = prepare_project(None)
    assert path == tmp_path / "projects" / "default.duckdb"
    with Project.open(path) as p:
        names = [d.name for d in catalogue.list_datasets(p)]
        assert len(names) == 4
        lineage.delete_dataset(p, catalogue.list_datasets(p)[0].id)
    assert prepare_project(None) == path  # an existing project is opened as it is
    with Project.open(path) as p:
        assert len(catalogue.list_datasets(p)) == 3
    assert prepare_project(tmp_path / "other") == tmp_path / "other.duckdb"


@pytest.mark.skipif(not GLMMLAB.exists(), reason="the glmmlab command is not installed in this environment")
def test_glmmlab_serve_starts_on_127_0_0_1_and_says_where(tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(GLMMLAB), "serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"glmmlab workbench: http://127.0.0.1:{port}/"), line + proc.stderr.read()
        assert str(tmp_path / "projects" / "default.duckdb") in line
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert r.status_code == 200 and "school scores" in r.text
        # a second server on the same port says so and exits with status 2
        second = subprocess.run([str(GLMMLAB), "serve", "--port", str(port)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert second.stderr.startswith("error: cannot listen on 127.0.0.1:") and "Traceback" not in second.stderr
        # the same project from another process: refused with a message (the project file is locked)
        third = subprocess.run([str(GLMMLAB), "serve", "--port", str(free_port())], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
        assert third.returncode == 2
        assert third.stderr.startswith("error: ") and "Traceback" not in third.stderr
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_refused_second_server_leaves_the_first_ones_uploads_alone(make_client, tmp_path):
    # issue 13.3: the second server used to clear the upload area before finding the project locked
    first = make_client()
    wb = first.workbench
    upload = wb.new_upload_path("in-flight.csv")
    upload.write_bytes(b"a,b\n1,2\n")
    second = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.web.server", "--project",
                             str(wb.project_info()["path"]), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and second.stderr.startswith("error: "), second.stderr
    assert "Traceback" not in second.stderr
    assert upload.read_bytes() == b"a,b\n1,2\n"
    # and the first server's import of it still works
    r = first.post("/api/datasets/import", params={"filename": "after.csv"}, content=b"a,b\n1,x\n")
    assert first.wait_job(r.json()["id"])["state"] == "done"
    assert upload.exists()
    wb.discard_upload(upload)
    assert not upload.parent.exists()


def test_leftovers_of_killed_processes_are_removed_at_start_and_nothing_a_living_one_uses(make_client, tmp_path):
    import fcntl
    import os

    projects = tmp_path / "projects"
    uploads = projects / ".uploads"
    (uploads / "dead").mkdir(parents=True)
    (uploads / "dead" / ".owner").touch()
    (uploads / "dead" / "glmmlab-export-x").mkdir()
    (uploads / "dead" / "glmmlab-export-x" / "ds_1.parquet").write_bytes(b"\0" * 1_000_000)
    (uploads / "alive").mkdir()
    (uploads / "alive" / "big.csv").write_bytes(b"a\n1\n")
    held = open(uploads / "alive" / ".owner", "wb")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another living server would
    (uploads / "old-unmarked").mkdir()
    os.utime(uploads / "old-unmarked", (time.time() - 7200, time.time() - 7200))
    (uploads / "new-unmarked").mkdir()
    stale = projects / ".copy.duckdb.importing"
    stale.write_bytes(b"\0" * 4096)
    stale_wal = projects / ".copy.duckdb.importing.wal"
    stale_wal.write_bytes(b"\0" * 10)
    for p in (stale, stale_wal):
        os.utime(p, (time.time() - 600, time.time() - 600))
    fresh = projects / ".other.duckdb.importing"
    fresh.write_bytes(b"\0")
    try:
        make_client()
        assert sorted(p.name for p in uploads.iterdir()) == ["alive", "new-unmarked"]
        assert (uploads / "alive" / "big.csv").exists()
        assert not stale.exists() and not stale_wal.exists()
        assert fresh.exists()  # may be being built right now
    finally:
        held.close()


def test_export_scratch_files_stay_in_the_servers_own_folder(client, monkeypatch, tmp_path):
    import tempfile as tf

    from glmmlab.services.workbench import project_io

    seen = []
    real = tf.TemporaryDirectory

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(project_io.tempfile, "TemporaryDirectory", spy)
    assert client.get("/api/project/export").status_code == 200
    assert seen and all(d is not None and Path(d).parent == client.workbench.upload_dir for d in seen)
