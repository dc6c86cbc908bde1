"""A long change does not stall the workbench (issue 13.9): a project import is built without the exclusive hold, and
requests that would wait behind a long write answer "busy" instead of using up the request threads."""

from __future__ import annotations

import threading
import time

from glmmlab.services.workbench import project_io


def test_pages_answer_while_a_project_import_is_being_built(client, monkeypatch, scores_csv):
    client.import_dataset(scores_csv, name="scores")
    exported = client.get("/api/project/export").content
    real = project_io.import_project
    building = threading.Event()

    def slow_import(src, dest, work_dir=None):
        building.set()
        time.sleep(3)
        return real(src, dest, work_dir=work_dir)

    monkeypatch.setattr(project_io, "import_project", slow_import)
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("r", client.post(
        "/api/projects/import", params={"filename": "copy.glmmlab", "name": "copy"}, content=exported)))
    t.start()
    assert building.wait(10)
    start = time.monotonic()
    r = client.get("/api/datasets")
    assert r.status_code == 200 and time.monotonic() - start < 1.5, "the GET waited for the import's build"
    assert [d["name"] for d in r.json()["datasets"]] == ["scores"]
    t.join(30)
    assert answer["r"].status_code == 201, answer["r"].text
    assert client.get("/api/project").json()["name"] == "copy"


def test_a_write_behind_a_long_change_answers_busy_and_reads_go_on(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    with client.workbench.project() as project:
        project.write_wait = 0.5
    held, release = threading.Event(), threading.Event()

    def long_change():
        with client.workbench.project() as project, project.write():
            held.set()
            release.wait(20)

    t = threading.Thread(target=long_change)
    t.start()
    try:
        assert held.wait(10)
        start = time.monotonic()
        r = client.post("/api/reports", json={"name": "while busy"})
        assert r.status_code == 503 and "is busy with another change" in r.json()["error"], r.text
        assert time.monotonic() - start < 3
        assert client.get(f"/api/datasets/{ds['id']}/rows").status_code == 200  # reads do not wait
        # a background import queues instead, and finishes once the change is done
        r = client.post("/api/datasets/import", params={"filename": "later.csv"}, content=b"a\n1\n")
        assert r.status_code == 202
        time.sleep(1)
        assert client.get(f"/api/jobs/{r.json()['id']}").json()["state"] == "running"
    finally:
        release.set()
        t.join(10)
    assert client.wait_job(r.json()["id"])["state"] == "done"
    assert client.post("/api/reports", json={"name": "after"}).status_code == 201
