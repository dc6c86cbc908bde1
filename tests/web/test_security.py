"""Safety: cross-site request protection, Host check, path confinement, upload size limit, escaping."""

from __future__ import annotations

import os
import re

import pytest

from glmmlab.interfaces.web.state import PathNotAllowed

EVIL = "<script>alert(1)</script>"


# ---- cross-site requests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,url,body", [
    ("post", "/api/projects/new", {"name": "x"}),
    ("post", "/api/datasets/import?filename=a.csv", None),
    ("patch", "/api/datasets/1/columns", {"column": "a", "scale": "nominal"}),
    ("delete", "/api/datasets/1", None),
    ("put", "/api/datasets/1", None),
    ("post", "/api/dummy", {"dataset_id": 1, "spec": []}),
])
def test_state_changes_need_the_csrf_token(client, method, url, body):
    bare = client.without_token()
    kwargs = {"json": body} if body is not None else {}
    r = getattr(bare, method)(url, **kwargs)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["error"]
    r = getattr(bare, method)(url, headers={"X-CSRF-Token": "wrong"}, **kwargs)
    assert r.status_code == 403
    assert client.get("/api/projects").json()[0]["name"] == "test"
    assert len(client.get("/api/projects").json()) == 1


def test_cross_origin_requests_are_refused_even_with_the_token(client):
    r = client.post("/api/samples", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    r = client.post("/api/samples", headers={"Origin": "null"})
    assert r.status_code == 403
    r = client.post("/api/samples", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert client.get("/api/datasets").json()["datasets"] == []
    r = client.post("/api/samples", headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201


def test_reads_need_no_token_but_a_local_host(client):
    assert client.without_token().get("/api/datasets").status_code == 200
    r = client.get("/api/datasets", headers={"Host": "rebinding.example:8765"})
    assert r.status_code == 400 and "not allowed" in r.json()["error"]
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200


def test_extra_allowed_hosts(make_client):
    c = make_client(allowed_hosts=["workbench.lan"])
    assert c.get("/api/project", headers={"Host": "workbench.lan:8765"}).status_code == 200


def test_a_server_bound_to_all_interfaces_accepts_any_host(make_client):
    c = make_client(allowed_hosts=["*"])
    assert c.get("/api/project", headers={"Host": "192.168.1.20:8765"}).status_code == 200
    # cross-site protection still holds
    r = c.post("/api/samples", headers={"Host": "192.168.1.20:8765", "Origin": "http://evil.example"})
    assert r.status_code == 403


def test_the_page_carries_the_token(client):
    html = client.get("/").text
    assert f'<meta name="csrf-token" content="{client.workbench.csrf_token}">' in html


# ---- project paths stay inside the projects directory ---------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../outside", "../../etc/passwd", "a/../../x", "..", "sub/../../x", "..\\outside", "/etc/passwd",
    "/tmp/elsewhere.duckdb", "", "   ", ".hidden", ".uploads/x", "bad\x00name", "a<b", "x" * 300,
])
def test_project_paths_outside_or_malformed_are_refused(client, name):
    for url in ("/api/projects/new", "/api/projects/open"):
        r = client.post(url, json={"name": name})
        assert r.status_code == 400, (url, name, r.text)
        assert "error" in r.json()
    r = client.post("/api/projects/import", params={"name": name}, content=b"PK")
    assert r.status_code in (400, 422), (name, r.text)
    assert client.get("/api/project").json()["name"] == "test"


def test_symbolic_links_out_of_the_directory_are_refused(client, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, client.workbench.projects_dir / "link")
    r = client.post("/api/projects/new", json={"name": "link/p"})
    assert r.status_code == 400 and "outside" in r.json()["error"]
    assert list(outside.iterdir()) == []


def test_paths_inside_the_directory_are_fine(client):
    wb = client.workbench
    assert wb.confine("study") == wb.projects_dir / "study.duckdb"
    assert wb.confine("2024/study.duckdb") == wb.projects_dir / "2024" / "study.duckdb"
    assert wb.confine(str(wb.projects_dir / "abs")) == wb.projects_dir / "abs.duckdb"
    with pytest.raises(PathNotAllowed):
        wb.confine(str(wb.projects_dir.parent / "abs"))
    r = client.post("/api/projects/new", json={"name": "2024/study"})
    assert r.status_code == 201 and r.json()["name"] == "2024/study"


# ---- upload size limit ----------------------------------------------------------------------------------------

def test_uploads_over_the_limit_are_refused_with_a_clear_message(make_client):
    c = make_client(max_upload_bytes=1000)
    assert c.get("/api/project").json()["max_upload_bytes"] == 1000
    big = ("a,b\n" + "1,2\n" * 400).encode()
    r = c.post("/api/datasets/import", params={"filename": "big.csv"}, content=big)
    assert r.status_code == 413
    assert r.json()["error"].startswith("The upload is larger than the limit of 1000 bytes.")
    r = c.post("/api/datasets/import", files={"file": ("big.csv", big)})
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(8):
            yield big[:400]

    r = c.post("/api/datasets/import", params={"filename": "big.csv"}, content=chunks())
    assert r.status_code == 413 and "1000 bytes" in r.json()["error"]
    r = c.post("/api/projects/import", params={"name": "p"}, content=big)
    assert r.status_code == 413
    assert c.get("/api/datasets").json()["datasets"] == []
    assert list(c.workbench.upload_dir.iterdir()) == []
    ok = c.post("/api/datasets/import", params={"filename": "small.csv"}, content=b"a,b\n1,2\n")
    assert ok.status_code == 202
    assert c.get("/").text.count('content="1000 bytes"') == 1


def test_the_default_limit_is_one_gibibyte(client):
    assert client.workbench.max_upload_bytes == 1 << 30
    assert 'name="max-upload-human" content="1 GiB"' in client.get("/").text
    r = client.post("/api/datasets/import", params={"filename": "x.csv"}, content=b"",
                    headers={"Content-Length": str((1 << 30) + 1)})
    assert r.status_code == 413 and "1 GiB" in r.json()["error"]


# ---- escaping ---------------------------------------------------------------------------------------------------

def test_user_text_is_escaped_in_the_page(client):
    csv = '"<img src=x onerror=alert(2)>",g\n1,a\n2,b\n'
    ds = client.import_dataset(csv, name=EVIL, filename="evil.csv")
    assert ds["name"] == EVIL
    client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "g", "action": "dummy_drop"}]})
    html = client.get("/").text
    assert EVIL not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r"dummy coding of &lt;script&gt;alert\(1\)&lt;/script&gt;", html)
    # the API returns the text as it is; the page's JavaScript puts it in with textContent
    assert client.get("/api/datasets").json()["datasets"][0]["name"] == EVIL


def test_the_page_loads_nothing_from_the_internet(client):
    html = client.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs, "the page should reference its static files"
    for ref in refs:
        assert not re.match(r"(https?:)?//", ref), ref
    for name in ("workbench.js", "datatable.js", "dialogs.js", "workbench.css"):
        assert f"/static/{name}" in html
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    js = "".join(client.get(f"/static/{n}").text for n in ("workbench.js", "datatable.js", "dialogs.js"))
    assert not re.search(r"\.innerHTML\s*=|insertAdjacentHTML|outerHTML\s*=|document\.write", js)


def test_static_files_cannot_escape_their_folder(client):
    for url in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        r = client.get(url)
        assert r.status_code == 404 and "create_app" not in r.text


def test_json_bodies_have_their_own_small_limit_but_uploads_do_not(make_client):
    # issue 13.8: a 200 MB JSON body took 5.9 GB of memory
    client = make_client()
    big = b'{"name": "' + b"x" * (9 << 20) + b'"}'
    r = client.post("/api/reports", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "8 MiB for requests other than uploads" in r.json()["error"], r.text

    def chunks():
        yield big[: 1 << 20]
        yield big[1 << 20:]

    r = client.post("/api/reports", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert client.post("/api/reports", json={"name": "small"}).status_code == 201
    csv = b"a,b\n" + b"1,xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 250_000  # 12 MB: an upload may be large
    assert client.import_dataset(csv, name="large")["n_rows"] == 250_000


def test_every_response_refuses_framing_and_content_sniffing(client):
    # issue 13.12
    for method, url in (("GET", "/"), ("GET", "/api/datasets"), ("GET", "/static/glmm.js"), ("GET", "/nowhere"),
                        ("POST", "/api/samples")):
        r = client.request(method, url, headers={} if method == "GET" else {"X-CSRF-Token": "wrong"})
        assert r.headers["x-frame-options"] == "DENY", url
        assert r.headers["x-content-type-options"] == "nosniff", url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], url


def test_the_test_clients_host_name_is_not_allowed_unless_asked_for(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from glmmlab.interfaces.web.app import create_app

    app = create_app(tmp_path / "p.duckdb")
    with TestClient(app) as plain:  # Host: testserver
        r = plain.get("/api/project")
        assert r.status_code == 400 and "Host 'testserver' is not allowed" in r.json()["error"]
        assert r.headers["x-frame-options"] == "DENY"
        assert plain.get("/api/project", headers={"Host": "127.0.0.1:8765"}).status_code == 200
