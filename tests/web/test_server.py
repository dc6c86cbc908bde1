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
    from glmmlab.services import datasets
    from glmmlab.services.store import Project

    monkeypatch.chdir(tmp_path)
    path = prepare_project(None)
    assert path == tmp_path / "projects" / "default.duckdb"
    with Project.open(path) as p:
        names = [d.name for d in datasets.list_datasets(p)]
        assert len(names) == 4
        datasets.delete_dataset(p, datasets.list_datasets(p)[0].id)
    assert prepare_project(None) == path  # an existing project is opened as it is
    with Project.open(path) as p:
        assert len(datasets.list_datasets(p)) == 3
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
