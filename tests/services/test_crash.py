"""A process killed in the middle of an import leaves the project as it was; committed work survives a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project import datasets as D
from glmmlab.services.project.store import Project

SRC = str(Path(__file__).resolve().parents[2] / "src")

IMPORTER = textwrap.dedent("""
    import sys
    from glmmlab.services.project.store import Project
    from glmmlab.services.project import datasets
    project = Project.open(sys.argv[1])
    def progress(stage, fraction):
        print(stage, fraction, flush=True)
    datasets.import_dataset(project, sys.argv[2], "big", progress=progress)
    print("finished", flush=True)
""")


def _env():
    """The child imports glmmlab from where this test process does (the source tree as a fallback)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [SRC])
    return env


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.csv"
    duckdb.connect().execute(
        "COPY (SELECT i AS id, 'school ' || (i % 500) AS school, (i % 97) * 0.25 AS hours, i % 2 = 0 AS flag, "
        "DATE '2020-01-01' + (i % 900)::INT AS day, 'note ' || i AS note FROM range(1500000) t(i)) "
        f"TO '{path}' (HEADER)")
    return path


def _kill_when(project_path: Path, csv_path: Path, stage: str) -> list[str]:
    """Run the importer in a child process and SIGKILL it as soon as it reports ``stage``."""
    child = subprocess.Popen([sys.executable, "-c", IMPORTER, str(project_path), str(csv_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    seen = []
    try:
        for line in child.stdout:
            seen.append(line.strip())
            if line.startswith(stage):
                time.sleep(0.05)
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL, (seen, child.stderr.read())
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["reading 0.", "checking types", "storing"])
def test_killed_import_leaves_the_project_intact(tmp_path, big_csv, stage):
    path = tmp_path / "p.duckdb"
    with Project.open(path) as project:
        before = D.import_dataset(project, b"a,b\n1,x\n2,y\n", "before", fmt="csv")
    seen = _kill_when(path, big_csv, stage)
    assert "finished" not in seen
    with Project.open(path) as project:
        assert D.list_datasets(project) == [before]
        assert D.read_rows(project, before.id)["rows"] == [[1, "x"], [2, "y"]]
        with project.read() as cur:
            tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'ds_%'")
                      .fetchall()}
        assert tables == {f"ds_{before.id}"}
        after = D.import_dataset(project, b"c\n3\n", "after", fmt="csv")
        assert [d.name for d in D.list_datasets(project)] == ["before", "after"]
    with Project.open(path) as project:
        assert D.read_rows(project, after.id)["rows"] == [[3]]


def test_committed_work_survives_a_kill(tmp_path):
    path = tmp_path / "p.duckdb"
    script = textwrap.dedent("""
        import os, sys
        from glmmlab.services.project.store import Project
        from glmmlab.services.project import datasets
        project = Project.open(sys.argv[1])
        info = datasets.import_dataset(project, b"a\\n1\\n2\\n", "kept", fmt="csv")
        datasets.set_column_scale(project, info.id, "a", "nominal")
        os.kill(os.getpid(), 9)  # no close, no checkpoint
    """)
    child = subprocess.run([sys.executable, "-c", script, str(path)], env=_env(), capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Project.open(path) as project:
        (info,) = D.list_datasets(project)
        assert info.name == "kept" and info.columns[0].scale == "nominal" and info.n_rows == 2


def test_a_project_open_in_another_process_is_refused_with_a_message(tmp_path):
    path = tmp_path / "p.duckdb"
    Project.open(path).close()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from glmmlab.services.project.store import Project\n"
                               "p = Project.open(sys.argv[1])\nprint('open', flush=True)\ntime.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ServiceError, match="open in another program"):
            Project.open(path)
    finally:
        holder.kill()
        holder.wait(10)
    Project.open(path).close()
