"""Stalled and piled-up connections (issue 13.10): a half-sent request does not stay open forever, a stalled body is
answered 408, and many stalled connections do not lock out a normal request (the server runs under a 256-file
limit here, as a 1,024-file limit would with 1,100 stalled connections)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.web.conftest import free_port

pytestmark = pytest.mark.slow


def _limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@pytest.fixture
def guarded_server(tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "glmmlab.interfaces.web.server", "--project", str(tmp_path / "p.duckdb"),
         "--port", str(port), "--header-timeout", "2", "--body-timeout", "2", "--max-connections", "100"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_limit_files, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/api/project", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError((tmp_path / "server.log").read_text())
    yield port, url
    proc.terminate()
    proc.wait(10)
    log.close()


def _stalled(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/project HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
    return s


def test_stalled_connections_neither_stay_open_nor_lock_out_a_normal_request(guarded_server):
    port, url = guarded_server
    sockets = []
    try:
        for _ in range(300):  # more than the server's file limit allows
            sockets.append(_stalled(port))
        start = time.monotonic()
        r = httpx.get(url + "/api/project", timeout=10)
        assert r.status_code == 200 and time.monotonic() - start < 5
        # each stalled one is closed: evicted at once to make room, or answered 408 when its deadline passes
        deadline = time.monotonic() + 10
        for s in sockets:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = s.recv(4096)
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
    finally:
        for s in sockets:
            s.close()


def test_a_stalled_body_is_answered_408(guarded_server):
    port, url = guarded_server
    token = httpx.get(url + "/api/token").json()["csrf_token"]
    for path in ("/api/datasets/import?filename=x.csv", "/api/reports"):
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF-Token: {token}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": ".encode())
            s.settimeout(10)
            start = time.monotonic()
            data = b""
            while b"stopped arriving" not in data and (chunk := s.recv(4096)):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408"), data[:200]
            assert b"stopped arriving" in data and time.monotonic() - start < 6
        finally:
            s.close()
    assert httpx.get(url + "/api/datasets").json()["datasets"] is not None
