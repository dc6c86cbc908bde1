"""Fixtures for the web tests: in-process clients on a temporary project, and a real server in a subprocess.

- ``make_client(**options)`` builds ``create_app`` on a fresh project in a temporary projects directory and returns
  a ``TestClient`` that sends the CSRF token (``client.without_token()`` gives one that does not).
- ``live_server_factory(project=None)`` starts ``python -m glmmlab.interfaces.web.server`` on a free port and
  waits until it answers; ``.kill()`` sends SIGKILL, ``.start()`` starts it again on the same project.
- ``browser`` is Debian's chromium driven by Playwright (the browser tests are skipped when it is absent).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():  # Starlette suggests httpx2; the httpx test client works the same for these tests
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from glmmlab.interfaces.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# ---- in-process clients ----------------------------------------------------------------------------------------

class Client(TestClient):
    """A TestClient that knows its workbench and sends the CSRF token."""

    def without_token(self) -> TestClient:
        other = TestClient(self.app, base_url=str(self.base_url))
        return other

    @property
    def workbench(self):
        return self.app.state.workbench

    def import_text(self, text: str | bytes, name: str = "data", filename: str = "data.csv", **params) -> dict:
        """Import ``text`` through the API and wait for the job; returns the finished job."""
        body = text.encode() if isinstance(text, str) else text
        r = self.post("/api/datasets/import", params={"filename": filename, "name": name, **params}, content=body)
        assert r.status_code == 202, r.text
        return self.wait_job(r.json()["id"])

    def wait_job(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.get(f"/api/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")

    def import_dataset(self, text: str | bytes, name: str = "data", filename: str = "data.csv", **params) -> dict:
        job = self.import_text(text, name, filename, **params)
        assert job["state"] == "done", job
        return job["result"]["dataset"]


@pytest.fixture
def make_client(tmp_path):
    made: list[Client] = []

    def make(project: str | Path | None = None, **options) -> Client:
        projects_dir = options.pop("projects_dir", tmp_path / "projects")
        options.setdefault("allowed_hosts", ["testserver"])  # the test client's Host; the app itself does not allow it
        project = Path(project) if project else Path(projects_dir) / "test.duckdb"
        app = create_app(project, projects_dir=projects_dir, **options)
        client = Client(app, raise_server_exceptions=False)
        client.__enter__()
        client.headers["X-CSRF-Token"] = app.state.workbench.csrf_token
        made.append(client)
        return client

    yield make
    for c in made:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> Client:
    return make_client()


SCORES_CSV = """student,school,track,hours,score,passed,exam_date
s1,North,academic,4.5,71.2,true,2024-05-01
s2,North,vocational,3,64,false,2024-05-01
s3,South,general,6.25,80.5,true,2024-05-02
s4,South,academic,,58,false,2024-05-02
s5,East,general,2,69.75,true,2024-05-03
s6,East,vocational,5,,true,2024-05-03
"""


@pytest.fixture
def scores_csv() -> str:
    return SCORES_CSV


# ---- a real server in a subprocess -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, project: Path, log_path: Path, extra_args: list[str] | None = None):
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "LiveServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glmmlab.interfaces.web.server", "--project", str(self.project),
             "--port", str(self.port), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.project.parent))
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/project", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs, as when the machine loses power or the process is killed."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self) -> str:
        return httpx.get(self.url + "/api/token").json()["csrf_token"]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-CSRF-Token": self.token()}, timeout=60)


@pytest.fixture
def live_server_factory(tmp_path):
    servers: list[LiveServer] = []

    def make(project: Path | None = None, extra_args: list[str] | None = None) -> LiveServer:
        project = project or tmp_path / "projects" / "default.duckdb"
        project.parent.mkdir(parents=True, exist_ok=True)
        server = LiveServer(project, tmp_path / f"server-{len(servers)}.log", extra_args).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


# ---- the browser -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: (errors.append(f"unexpected browser dialog: {d.message}"), d.dismiss()))
    pg.js_errors = errors
    yield pg
    context.close()
    assert not errors, errors
