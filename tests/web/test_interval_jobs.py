"""Interval jobs (issue 23): bad choices named (seed true is not an integer), unknown or foreign job ids 404,
jobs queue (LIMITS.interval_jobs at once), a cancel ends the bootstrap's worker processes, and a server stopped
by SIGTERM takes every worker process with it. Each wait is bounded."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from glmmlab.engine.model.limits import LIMITS
from tests.web.test_intervals_api import SLEEP, sleep_model, start, wait  # noqa: F401  (fixture)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def pool_workers(pid: int, before: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """The worker processes under ``pid``: every descendant but the fork server and the resource tracker
    (multiprocessing's idle helpers, children of ``pid``); workers forked from the fork server are its children.
    ``before``: processes that were there before the test's jobs started (in a full run the test process also
    holds the browser tests' Playwright driver and chromium) are not workers."""
    out = []
    for p in descendants(pid):
        if p.pid in before:
            continue
        try:
            cmd = p.cmdline()
            helper = p.ppid() == pid and any(w in " ".join(cmd) for w in ("forkserver", "resource_tracker"))
            # the pool's workers run this Python; chromium (a browser test's, in a full run) starts helper
            # processes of its own whenever it likes, which are no workers of the pool
            python = bool(cmd) and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable)
        except psutil.Error:
            continue
        if python and not helper:
            out.append(p)
    return out


def until(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.mark.parametrize("body, field", [
    ({"method": "boot", "seed": True}, "seed"),
    ({"method": "boot", "nsim": True}, "nsim"),
    ({"method": "boot", "nsim": 20.0}, "nsim"),
    ({"method": "boot", "nsim": LIMITS and 100_001}, "nsim"),
])
def test_booleans_and_floats_are_not_integers(client, sleep_model, body, field):
    r = client.post(f"/api/models/{sleep_model['id']}/intervals", json=body)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert client.workbench.jobs.jobs("interval") == []


def test_unknown_and_foreign_job_ids_are_404(client, sleep_model):
    mid = sleep_model["id"]
    for url in (f"/api/models/{mid}/intervals/nope", f"/api/models/{mid + 1000}/intervals/nope"):
        assert client.get(url).status_code == 404
        assert client.post(url + "/cancel").status_code == 404
    job_id = start(client, mid, method="wald")
    wait(client, f"/api/models/{mid}/intervals/{job_id}")
    other = client.post("/api/models", json={"fit_id": client.get("/api/glmm/fits").json()["fits"][0]["id"],
                                             "name": "again"}).json()
    r = client.get(f"/api/models/{other['id']}/intervals/{job_id}")
    assert r.status_code == 404 and "no interval computation" in r.json()["error"]


def test_interval_jobs_queue_and_a_cancel_ends_the_pool_processes(client, sleep_model):
    import os

    mid = sleep_model["id"]
    me = os.getpid()
    before = frozenset(p.pid for p in descendants(me))
    first = start(client, mid, method="boot", nsim=20_000, seed=1)
    second = start(client, mid, method="boot", nsim=20_000, seed=2)
    assert until(lambda: client.get(f"/api/models/{mid}/intervals/{first}").json()["fraction"] > 0.11, 60)
    assert client.get(f"/api/models/{mid}/intervals/{second}").json()["state"] == "queued"
    assert until(lambda: len(pool_workers(me, before)) > 0, 10)
    for job_id in (second, first):
        client.post(f"/api/models/{mid}/intervals/{job_id}/cancel")
    assert wait(client, f"/api/models/{mid}/intervals/{first}", timeout=30)["state"] == "cancelled"
    assert wait(client, f"/api/models/{mid}/intervals/{second}", timeout=30)["state"] == "cancelled"
    # the pool's processes end with the cancel (before, they ran their chunks on for minutes)
    assert until(lambda: pool_workers(me, before) == [], 10), [p.cmdline() for p in pool_workers(me, before)]


def test_sigterm_takes_the_servers_worker_processes_with_it(live_server_factory):
    server = live_server_factory()
    api = server.api()
    r = api.post("/api/datasets/import", params={"filename": "sleep.csv", "name": "sleep"},
                 content=SLEEP.read_bytes())
    assert r.status_code == 202, r.text
    assert until(lambda: api.get(f"/api/jobs/{r.json()['id']}").json()["state"] == "done", 60)
    ds = api.get(f"/api/jobs/{r.json()['id']}").json()["result"]["dataset"]
    fit = api.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (Days | Subject)"})
    assert until(lambda: api.get(f"/api/glmm/fits/{fit.json()['id']}").json()["state"] == "done", 60)
    model = api.post("/api/models", json={"fit_id": fit.json()["id"], "name": "sleep"}).json()
    job = api.post(f"/api/models/{model['id']}/intervals", json={"method": "boot", "nsim": 20_000, "seed": 1})
    assert job.status_code == 202, job.text
    url = f"/api/models/{model['id']}/intervals/{job.json()['id']}"
    assert until(lambda: api.get(url).json()["fraction"] > 0.11, 60)
    pid = server.proc.pid
    family = descendants(pid)
    assert family, "the bootstrap runs in worker processes"
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(20)
    left = lambda: [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # noqa: E731
    assert until(lambda: left() == [], 15), [(p.pid, p.cmdline()) for p in left()]
