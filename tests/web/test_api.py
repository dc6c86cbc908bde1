"""The JSON API, in process: every endpoint, its answers and its error cases."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest

# ---- project information ---------------------------------------------------------------------------------------

def test_token_project_and_vocabulary(client):
    assert client.get("/api/token").json()["csrf_token"] == client.workbench.csrf_token
    info = client.get("/api/project").json()
    assert info["name"] == "test"
    assert info["max_upload_bytes"] == 1 << 30
    vocab = client.get("/api/vocabulary").json()
    assert vocab["dtypes"] == ["boolean", "int64", "float64", "date", "datetime", "string"]
    assert vocab["scales"] == ["nominal", "ordinal", "interval", "ratio"]
    assert [a["value"] for a in vocab["dummy_actions"]] == ["exclude", "as_is", "dummy_drop", "dummy_keep"]
    assert client.get("/api/models").json() == {"models": []}
    assert client.get("/api/reports").json() == {"reports": []}
    assert client.get("/api/jobs").json() == []


# ---- import ----------------------------------------------------------------------------------------------------

def test_import_csv_infers_types_and_scales(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores", filename="scores.csv")
    assert ds["name"] == "scores" and ds["n_rows"] == 6 and ds["parent_id"] is None and not ds["read_only"]
    types = {c["name"]: c["dtype"] for c in ds["columns"]}
    assert types == {"student": "string", "school": "string", "track": "string", "hours": "float64",
                     "score": "float64", "passed": "boolean", "exam_date": "date"}
    scales = {c["name"]: c["scale"] for c in ds["columns"]}
    assert scales["school"] == "nominal" and scales["hours"] == "ratio"
    listed = client.get("/api/datasets").json()["datasets"]
    assert [d["name"] for d in listed] == ["scores"]
    assert listed[0]["depth"] == 0 and listed[0]["rows_text"] == "6 rows"


def test_import_reports_progress_phases(client, scores_csv):
    job = client.import_text(scores_csv, name="s")
    assert job["state"] == "done" and job["fraction"] == 1.0 and job["kind"] == "import"
    assert job["error"] is None and job["elapsed_seconds"] >= 0


def test_import_tsv_parquet_and_multipart(client, scores_csv):
    tsv = scores_csv.replace(",", "\t")
    assert client.import_dataset(tsv, name="tab", filename="scores.tsv")["n_rows"] == 6
    buf = io.BytesIO()
    pd.DataFrame({"g": ["a", "b", "c"], "y": [1.5, 2.0, None], "n": [1, 2, 3]}).to_parquet(buf)
    pq = client.import_dataset(buf.getvalue(), name="pq", filename="frame.parquet")
    assert {c["name"]: c["dtype"] for c in pq["columns"]} == {"g": "string", "y": "float64", "n": "int64"}
    r = client.post("/api/datasets/import", files={"file": ("upload.csv", scores_csv.encode(), "text/csv")})
    assert r.status_code == 202
    job = client.wait_job(r.json()["id"])
    assert job["state"] == "done" and job["result"]["dataset"]["name"] == "upload"
    # an explicit format wins over the file name
    assert client.import_dataset(tsv, name="explicit", filename="whatever.dat", format="tsv")["n_rows"] == 6


def test_malformed_csv_names_the_line_and_imports_nothing(client):
    bad = "a,b\n1,2\n3,4\n5,6,7\n8,9\n"
    job = client.import_text(bad, name="bad", filename="bad.csv")
    assert job["state"] == "failed"
    assert "line 4" in job["error"].lower()
    assert client.get("/api/datasets").json()["datasets"] == []
    assert list(client.workbench.upload_dir.iterdir()) == []  # the upload is cleaned away


def test_import_needs_a_known_format_and_a_name(client):
    r = client.post("/api/datasets/import", params={"filename": "data.xlsx"}, content=b"a\n1\n")
    assert r.status_code == 400 and ".csv" in r.json()["error"]
    r = client.post("/api/datasets/import", params={"format": "csv"}, content=b"a\n1\n")
    assert r.status_code == 400 and "name" in r.json()["error"]
    r = client.post("/api/datasets/import", params={"filename": "x.csv", "format": "xlsx"}, content=b"a\n1\n")
    assert r.status_code == 422 and "format" in r.json()["error"]
    r = client.post("/api/datasets/import", files={"other": ("x.csv", b"a\n1\n")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]
    assert list(client.workbench.upload_dir.iterdir()) == []


def test_unknown_job_is_404(client):
    r = client.get("/api/jobs/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]


# ---- reading ---------------------------------------------------------------------------------------------------

def test_rows_are_paginated(client):
    text = "i,x\n" + "".join(f"{i},{i / 2}\n" for i in range(250))
    ds = client.import_dataset(text, name="seq")
    page = client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": 100, "limit": 50}).json()
    assert page["total"] == 250 and page["offset"] == 100 and page["limit"] == 50
    assert [r[0] for r in page["rows"]] == list(range(100, 150))
    assert [c["name"] for c in page["columns"]] == ["i", "x"]
    tail = client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": 240, "limit": 100}).json()
    assert len(tail["rows"]) == 10
    default = client.get(f"/api/datasets/{ds['id']}/rows").json()
    assert len(default["rows"]) == 100
    assert client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": -1}).status_code == 422
    assert client.get(f"/api/datasets/{ds['id']}/rows", params={"limit": 0}).status_code == 422
    assert client.get(f"/api/datasets/{ds['id']}/rows", params={"limit": 100000}).status_code == 422


def test_nulls_and_dates_come_back_as_json(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    rows = client.get(f"/api/datasets/{ds['id']}/rows").json()["rows"]
    assert rows[3][3] is None  # empty hours
    assert rows[0][6] == "2024-05-01"
    assert rows[0][5] is True


def test_a_million_rows_page_fast(client, tmp_path):
    n = 1_000_000
    frame = pd.DataFrame({"g": (pd.RangeIndex(n) % 997).astype(str), "x": pd.RangeIndex(n) * 0.5})
    path = tmp_path / "big.parquet"
    frame.to_parquet(path)
    ds = client.import_dataset(path.read_bytes(), name="big", filename="big.parquet")
    assert ds["n_rows"] == n
    t0 = time.perf_counter()
    last = client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": n - 100, "limit": 100}).json()
    middle = client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": n // 2, "limit": 1000}).json()
    elapsed = time.perf_counter() - t0
    assert last["rows"][-1] == [str((n - 1) % 997), (n - 1) * 0.5] and last["total"] == n
    assert len(middle["rows"]) == 1000
    assert elapsed < 1.0, f"two pages of a million-row dataset took {elapsed:.2f} s"


def test_unknown_dataset_is_404_json(client):
    for method, url in [("get", "/api/datasets/999"), ("get", "/api/datasets/999/rows"),
                        ("get", "/api/datasets/999/dependents"), ("delete", "/api/datasets/999")]:
        r = getattr(client, method)(url)
        assert r.status_code == 404, url
        assert set(r.json()) == {"error"}
    assert client.get("/api/datasets/abc").status_code == 404


# ---- changing columns and names --------------------------------------------------------------------------------

def test_change_scale_and_type(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    url = f"/api/datasets/{ds['id']}/columns"
    r = client.patch(url, json={"column": "hours", "scale": "interval"})
    assert r.status_code == 200
    assert {c["name"]: c["scale"] for c in r.json()["columns"]}["hours"] == "interval"
    r = client.patch(url, json={"column": "score", "dtype": "string"})
    assert r.status_code == 200
    col = {c["name"]: c for c in r.json()["columns"]}["score"]
    assert col["dtype"] == "string" and col["scale"] in ("nominal", "ordinal")
    again = client.get(f"/api/datasets/{ds['id']}").json()
    assert {c["name"]: c["dtype"] for c in again["columns"]}["score"] == "string"


def test_change_column_errors(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    url = f"/api/datasets/{ds['id']}/columns"
    r = client.patch(url, json={"column": "school", "scale": "ratio"})
    assert r.status_code == 400 and "school" in r.json()["error"]
    r = client.patch(url, json={"column": "school", "dtype": "int64"})
    assert r.status_code == 400 and "North" in r.json()["error"]
    r = client.patch(url, json={"column": "nope", "scale": "nominal"})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.patch(url, json={"column": "school", "scale": "cardinal"})
    assert r.status_code == 422 and "scale" in r.json()["error"]
    r = client.patch(url, json={"column": "school"})
    assert r.status_code == 400 and "dtype" in r.json()["error"]
    r = client.patch(url, content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_rename(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    r = client.patch(f"/api/datasets/{ds['id']}", json={"name": "exam scores"})
    assert r.status_code == 200 and r.json()["name"] == "exam scores"
    other = client.import_dataset(scores_csv, name="other")
    r = client.patch(f"/api/datasets/{other['id']}", json={"name": "exam scores"})
    assert r.status_code == 400
    assert client.patch(f"/api/datasets/{ds['id']}", json={"name": ""}).status_code == 422


# ---- dummy coding ----------------------------------------------------------------------------------------------

def test_dummy_preview_then_create(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    spec = [{"column": "track", "action": "dummy_drop"}, {"column": "student", "action": "exclude"}]
    r = client.post("/api/dummy/preview", json={"dataset_id": ds["id"], "spec": spec})
    assert r.status_code == 200, r.text
    preview = r.json()
    enc = preview["encodings"][0]
    assert enc["reference"] == "academic" and enc["new_columns"] == ["track_general", "track_vocational"]
    names = [c["name"] for c in preview["columns"]]
    assert "track" not in names and "student" not in names and "track_general" in names
    assert len(preview["rows"]) == 6
    assert client.get("/api/datasets").json()["datasets"][-1]["name"] == "scores"  # nothing created yet

    spec[0]["reference"] = "vocational"
    r = client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": spec, "name": "scores coded"})
    assert r.status_code == 201, r.text
    derived = r.json()["dataset"]
    assert derived["parent_id"] == ds["id"] and derived["read_only"] and derived["name"] == "scores coded"
    assert derived["operation"]["type"] == "dummy_coding"
    assert "track_academic" in [c["name"] for c in derived["columns"]]
    tree = client.get("/api/datasets").json()["datasets"]
    assert [(d["name"], d["depth"], d["parent_name"]) for d in tree] == [
        ("scores", 0, None), ("scores coded", 1, "scores")]
    assert tree[1]["operation_label"] == "dummy coding"
    # derived datasets are read-only
    r = client.patch(f"/api/datasets/{derived['id']}/columns", json={"column": "hours", "scale": "interval"})
    assert r.status_code == 400 and "read-only" in r.json()["error"]


def test_dummy_errors(client, scores_csv):
    one_value = "g,y\na,1\na,2\n"
    ds = client.import_dataset(one_value, name="one")
    r = client.post("/api/dummy/preview",
                    json={"dataset_id": ds["id"], "spec": [{"column": "g", "action": "dummy_drop"}]})
    assert r.status_code == 400 and "g" in r.json()["error"]
    r = client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "g", "action": "dummy_drop"}]})
    assert r.status_code == 400
    r = client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "g", "action": "explode"}]})
    assert r.status_code == 422 and "action" in r.json()["error"]
    r = client.post("/api/dummy/preview", json={"dataset_id": 999, "spec": []})
    assert r.status_code == 404
    assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == ["one"]


# ---- deletion with lineage -------------------------------------------------------------------------------------

def test_delete_lists_dependents_then_cascades(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    keep = client.import_dataset(scores_csv, name="keep")
    spec = [{"column": "track", "action": "dummy_keep"}]
    child = client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": spec}).json()["dataset"]
    grandchild = client.post("/api/dummy", json={"dataset_id": child["id"], "spec": [
        {"column": "school", "action": "dummy_drop"}]}).json()["dataset"]
    deps = client.get(f"/api/datasets/{ds['id']}/dependents").json()
    assert {d["id"] for d in deps["datasets"]} == {child["id"], grandchild["id"]} and deps["models"] == []

    r = client.delete(f"/api/datasets/{ds['id']}")
    assert r.status_code == 409
    assert child["name"] in r.json()["error"] and r.json()["dependents"]["datasets"]
    assert len(client.get("/api/datasets").json()["datasets"]) == 4

    r = client.delete(f"/api/datasets/{ds['id']}", params={"cascade": "true"})
    assert r.status_code == 200
    assert {d["id"] for d in r.json()["deleted"]["datasets"]} == {ds["id"], child["id"], grandchild["id"]}
    assert [d["id"] for d in client.get("/api/datasets").json()["datasets"]] == [keep["id"]]
    # a dataset without dependents goes without cascade
    assert client.delete(f"/api/datasets/{keep['id']}").status_code == 200
    assert client.get("/api/datasets").json()["datasets"] == []


# ---- samples and projects --------------------------------------------------------------------------------------

def test_samples_are_added_once(client):
    r = client.post("/api/samples")
    assert r.status_code == 201
    names = [d["name"] for d in r.json()["datasets"]]
    assert len(names) == 4
    assert client.post("/api/samples").json()["datasets"] == []
    assert len(client.get("/api/datasets").json()["datasets"]) == 4


def test_new_open_and_list_projects(client, scores_csv):
    client.import_dataset(scores_csv, name="in test")
    r = client.post("/api/projects/new", json={"name": "study", "samples": True})
    assert r.status_code == 201 and r.json()["name"] == "study"
    assert len(client.get("/api/datasets").json()["datasets"]) == 4
    r = client.post("/api/projects/new", json={"name": "empty"})
    assert r.status_code == 201 and client.get("/api/datasets").json()["datasets"] == []
    assert client.post("/api/projects/new", json={"name": "study"}).status_code == 400
    listed = client.get("/api/projects").json()
    assert [p["name"] for p in listed] == ["empty", "study", "test"]
    assert [p["name"] for p in listed if p["current"]] == ["empty"]
    r = client.post("/api/projects/open", json={"name": "test"})
    assert r.status_code == 200 and r.json()["name"] == "test"
    assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == ["in test"]
    r = client.post("/api/projects/open", json={"name": "missing"})
    assert r.status_code == 404 and "missing" in r.json()["error"]
    r = client.post("/api/projects/new", json={})
    assert r.status_code == 422


def test_export_and_import_project(client, scores_csv):
    ds = client.import_dataset(scores_csv, name="scores")
    client.post("/api/dummy", json={"dataset_id": ds["id"], "spec": [{"column": "track", "action": "dummy_drop"}]})
    r = client.get("/api/project/export")
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment") and "test.glmmlab" in disposition
    exported = r.content
    assert exported[:2] == b"PK"
    assert list(client.workbench.upload_dir.iterdir()) == []

    r = client.post("/api/projects/import", params={"filename": "test.glmmlab", "name": "copy"}, content=exported)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "copy"
    tree = client.get("/api/datasets").json()["datasets"]
    assert [(d["name"], d["depth"]) for d in tree] == [("scores", 0), ("scores (dummy coded)", 1)]
    rows = client.get(f"/api/datasets/{tree[0]['id']}/rows").json()
    assert rows["total"] == 6
    # the name is taken now; a damaged file is refused and leaves nothing behind
    r = client.post("/api/projects/import", params={"filename": "test.glmmlab", "name": "copy"}, content=exported)
    assert r.status_code == 400 and "already exists" in r.json()["error"]
    r = client.post("/api/projects/import", params={"name": "broken"}, content=b"not a zip")
    assert r.status_code == 400
    assert not (client.workbench.projects_dir / "broken.duckdb").exists()
    assert client.get("/api/project").json()["name"] == "copy"
    r = client.post("/api/projects/import", files={"file": ("again.glmmlab", exported)})
    assert r.status_code == 201 and r.json()["name"] == "again"


# ---- documentation and generic errors ------------------------------------------------------------------------

def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    paths = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    expected = {
        ("/api/token", "GET"), ("/api/project", "GET"), ("/api/projects", "GET"), ("/api/projects/new", "POST"),
        ("/api/projects/open", "POST"), ("/api/project/export", "GET"), ("/api/projects/import", "POST"),
        ("/api/vocabulary", "GET"), ("/api/datasets", "GET"), ("/api/datasets/{id}", "GET"),
        ("/api/datasets/{id}", "PATCH"), ("/api/datasets/{id}", "DELETE"), ("/api/datasets/{id}/rows", "GET"),
        ("/api/datasets/{id}/columns", "PATCH"), ("/api/datasets/{id}/dependents", "GET"),
        ("/api/datasets/import", "POST"), ("/api/jobs/{id}", "GET"), ("/api/jobs", "GET"),
        ("/api/dummy/preview", "POST"), ("/api/dummy", "POST"), ("/api/samples", "POST"),
        ("/api/models", "GET"), ("/api/reports", "GET"),
    }
    assert expected <= paths, expected - paths
    assert all(p.startswith("/api/") for p, _ in paths)
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op.get("summary"), path
    assert "ColumnChange" in spec["components"]["schemas"] and "DummyBody" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = client.put("/api/datasets")
    assert r.status_code == 405 and "error" in r.json()


def test_an_unexpected_failure_is_a_json_500_without_traceback(client, monkeypatch):
    from glmmlab.services.project import catalogue

    def boom(project):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(catalogue, "list_datasets", boom)
    r = client.get("/api/datasets")
    assert r.status_code == 500
    assert r.json() == {"error": "Internal error (RuntimeError); the server log has the details."}
    assert "Traceback" not in r.text


# -- issue 13.11: bad input is a 4xx that names the field, never a 500 ---------------------------------------------

@pytest.mark.parametrize("raw", ["²", "١٢", "99999999999999999999999", "Infinity"])
def test_dataset_ids_that_are_not_plain_integers_are_404(client, raw):
    for url in (f"/api/datasets/{raw}", f"/api/datasets/{raw}/rows", f"/api/datasets/{raw}/dependents"):
        r = client.get(url)
        assert r.status_code == 404, (url, r.text)
        assert "no dataset with id" in r.json()["error"]


@pytest.mark.parametrize("offset", ["9223372036854775808", "18446744073709551616", "99999999999999999999999999"])
def test_row_offsets_past_64_bits_are_refused_by_name(client, offset):
    ds = client.import_dataset("a\n1\n", name="one")
    r = client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": offset})
    assert r.status_code == 400 and "row offset" in r.json()["error"], r.text
    assert client.get(f"/api/datasets/{ds['id']}/rows", params={"offset": 2 ** 63 - 1}).json()["rows"] == []


@pytest.mark.parametrize("value", ["1e400", "Infinity", "-Infinity", "NaN"])
def test_non_finite_json_numbers_as_ids_are_4xx(client, value):
    headers = {"content-type": "application/json"}
    r = client.post("/api/glmm/fits", content=f'{{"dataset_id": {value}, "response": "y", "group": "g"}}',
                    headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "dataset_id", r.text
    r = client.post("/api/dummy", content=f'{{"dataset_id": {value}, "spec": []}}', headers=headers)
    assert 400 <= r.status_code < 500 and "dataset" in r.json()["error"], r.text


@pytest.mark.parametrize("name", ["x" * 250, "ü" * 120, "a/" + "b" * 240])
def test_project_names_too_long_for_the_file_system_are_refused(client, name):
    for url in ("/api/projects/new", "/api/projects/open"):
        r = client.post(url, json={"name": name})
        assert r.status_code == 400 and "project name is too long" in r.json()["error"], r.text
    r = client.post("/api/projects/import", params={"name": name, "filename": "p.glmmlab"}, content=b"PK")
    assert r.status_code == 400 and "project name is too long" in r.json()["error"], r.text
    assert client.post("/api/projects/new", json={"name": "x" * 200}).status_code == 201


def test_a_report_with_a_non_latin_name_exports_with_its_name(client):
    from urllib.parse import unquote

    r = client.post("/api/reports", json={"name": "Ωmega 报告"})
    assert r.status_code == 201, r.text
    r = client.get(f"/api/reports/{r.json()['id']}/export")
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="mega.html"; ')  # an ASCII fallback for old clients
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Ωmega 报告.html"


def test_a_damaged_project_opens_with_a_warning_and_its_intact_data_can_be_exported(make_client, tmp_path):
    # issue 13.5: a flipped data block made the rows and the export answer 500, so nothing could be rescued
    import numpy as np
    import pandas as pd

    from glmmlab.services.project import catalogue, importing
    from glmmlab.services.project.store import Project

    path = tmp_path / "projects" / "hurt.duckdb"
    path.parent.mkdir(parents=True)
    with Project.open(path) as p:
        small = importing.import_dataset(p, b"a,b\n1,x\n2,y\n", "small", fmt="csv").id
        big = catalogue.store_frame(p, pd.DataFrame({"x": np.random.default_rng(1).normal(size=400_000)}), "big",
                                    operation={"type": "test"}).id
    # inside a block that holds the big dataset's values (a fixed fraction of the file can land in a free block)
    from tests.services.test_damaged import _flip_block_of

    _flip_block_of(path, big)
    client = make_client(path)
    info = client.get("/api/project").json()
    assert "hurt.duckdb is damaged: dataset 'big'" in info["damaged"]
    page = client.get("/")
    assert page.status_code == 200 and "is damaged: dataset" in page.text
    r = client.get(f"/api/datasets/{big}/rows")
    assert r.status_code == 409 and "is damaged" in r.json()["error"]
    assert client.get(f"/api/datasets/{small}/rows").json()["rows"] == [[1, "x"], [2, "y"]]
    r = client.get("/api/project/export")
    assert r.status_code == 200 and r.headers["x-glmmlab-left-out"] == "dataset%20%27big%27"
    r = client.post("/api/projects/import", params={"filename": "rescued.glmmlab"}, content=r.content)
    assert r.status_code == 201, r.text
    assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == ["small"]


def test_opening_a_truncated_project_is_refused_with_a_message(client, tmp_path):
    from glmmlab.services.project import samples
    from glmmlab.services.project.store import Project

    path = client.workbench.projects_dir / "cut.duckdb"
    with Project.open(path) as p:
        samples.create_sample_datasets(p)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    r = client.post("/api/projects/open", json={"name": "cut"})
    assert r.status_code == 409 and "cut.duckdb is damaged" in r.json()["error"], r.text
    assert client.get("/api/datasets").status_code == 200  # the open project stays open


def test_upload_of_a_txt_file_is_tab_separated_like_the_importer_and_the_cli(client):
    """services/project/formats.py is the one suffix table: a .txt upload is tab-separated text, as for the CLI."""
    ds = client.import_dataset("y\tx\tg\n1.5\t2\ta\n2.5\t3\tb\n", name="export", filename="export.txt")
    assert [c["name"] for c in ds["columns"]] == ["y", "x", "g"]
