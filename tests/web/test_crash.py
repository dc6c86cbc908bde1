"""Killing the server (SIGKILL) in the middle of an upload or an import never loses committed work and never leaves
a half-imported dataset behind."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def wait_job(api: httpx.Client, job_id: str) -> dict:
    while True:
        job = api.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)


def snapshot(api: httpx.Client) -> list[tuple]:
    return [(d["id"], d["name"], d["n_rows"], d["parent_id"], tuple((c["name"], c["dtype"], c["scale"])
                                                                   for c in d["columns"]))
            for d in api.get("/api/datasets").json()["datasets"]]


def big_csv(path, rows: int) -> None:
    block = "".join(f"g{i % 5000},{i * 0.001:.3f},{i % 7},level{i % 3}\n" for i in range(50_000))
    with open(path, "w") as f:
        f.write("group,x,count,label\n")
        for _ in range(rows // 50_000):
            f.write(block)


def committed_work(api: httpx.Client, scores_csv: str) -> None:
    r = api.post("/api/datasets/import", params={"filename": "scores.csv", "name": "scores"},
                 content=scores_csv.encode())
    ds = wait_job(api, r.json()["id"])["result"]["dataset"]
    api.patch(f"/api/datasets/{ds['id']}/columns", json={"column": "hours", "scale": "interval"}).raise_for_status()
    api.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "track", "action": "dummy_drop"}]}
             ).raise_for_status()


def check_intact(server, before: list[tuple]) -> None:
    with server.api() as api:
        assert snapshot(api) == before
        for d in api.get("/api/datasets").json()["datasets"]:
            page = api.get(f"/api/datasets/{d['id']}/rows", params={"limit": 5}).json()
            assert page["total"] == d["n_rows"]
        # the project still takes new work
        r = api.post("/api/datasets/import", params={"filename": "after.csv"}, content=b"a,b\n1,x\n2,y\n")
        assert wait_job(api, r.json()["id"])["state"] == "done"
    uploads = server.project.parent / ".uploads"
    assert [p.name for p in uploads.iterdir()] == [], "uploads left by the killed server are cleared on start"


def test_kill_during_a_large_import_keeps_the_project_intact(live_server_factory, tmp_path, scores_csv):
    server = live_server_factory()
    with server.api() as api:
        committed_work(api, scores_csv)
        before = snapshot(api)
        path = tmp_path / "big.csv"
        big_csv(path, 4_000_000)
        with open(path, "rb") as f:
            r = api.post("/api/datasets/import", params={"filename": "big.csv", "name": "big"}, content=f)
        assert r.status_code == 202
        job_id = r.json()["id"]
        deadline = time.time() + 30
        job = api.get(f"/api/jobs/{job_id}").json()
        while job["state"] == "queued" or job["stage"] in ("Waiting to start", "Waiting for the project"):
            assert time.time() < deadline
            time.sleep(0.01)
            job = api.get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "running", f"the import finished before the kill, so this test proves nothing: {job}"
    server.kill()
    assert (server.project.parent / ".uploads").exists()

    server.start()
    check_intact(server, before)


def test_kill_during_an_upload_keeps_the_project_intact(live_server_factory, scores_csv):
    server = live_server_factory()
    with server.api() as api:
        committed_work(api, scores_csv)
        before = snapshot(api)
    sent = threading.Event()

    def slow_body():
        yield b"a,b\n"
        for i in range(200):
            yield b"1,2\n" * 50_000
            if i == 3:
                sent.set()
            time.sleep(0.05)

    def upload():
        with server.api() as api:
            try:
                api.post("/api/datasets/import", params={"filename": "slow.csv"}, content=slow_body())
            except httpx.HTTPError:
                pass  # the server is gone

    t = threading.Thread(target=upload)
    t.start()
    assert sent.wait(30)
    uploads = server.project.parent / ".uploads"
    assert any(uploads.rglob("slow.csv")), "the upload is being written to the upload area"
    server.kill()
    t.join(30)
    server.start()
    check_intact(server, before)
