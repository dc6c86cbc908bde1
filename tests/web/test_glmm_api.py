"""The GLMM tab's JSON API, in process: run a fit, poll it, save it, read it back, recompute intervals, report."""

from __future__ import annotations

import math
import time

import pytest

import glmmlab
from glmmlab.services.project import catalogue


def wait_fit(client, fit_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/glmm/fits/{fit_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError("the fit did not finish")


@pytest.fixture
def samples(client):
    r = client.post("/api/samples")
    assert r.status_code == 201, r.text
    return {d["name"]: d for d in r.json()["datasets"]}


def frame_of(client, dataset_id, columns):
    with client.workbench.project() as project:
        return catalogue.read_frame(project, dataset_id, columns)


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def run(client, **body) -> dict:
    r = client.post("/api/glmm/fits", json=body)
    assert r.status_code == 202, r.text
    job = wait_fit(client, r.json()["id"])
    assert job["state"] == "done", job
    return job


def test_options_list_families_with_canonical_links_first(client):
    o = client.get("/api/glmm/options").json()
    fams = {f["value"]: f for f in o["families"]}
    assert fams["gaussian"]["label"] == "Gaussian (Normal)"
    assert fams["gaussian"]["links"] == ["identity", "log", "inverse"]  # the engine's links (issue 19)
    assert fams["binomial"]["links"] == ["logit", "probit"]
    assert fams["poisson"]["links"] == ["log", "identity"]
    assert fams["gamma"]["links"] == ["inverse", "log", "identity"]
    assert o["defaults"] == {"family": "gaussian", "intercept": True, "conf_level": 0.95, "max_iter": 100,
                             "tol": 1e-6, "nagq": 1}


def test_a_fit_through_the_api_equals_fit_glmm_then_save_read_and_recompute(client, samples):
    ds = samples["clinic recovery"]
    job = run(client, dataset_id=ds["id"], response="recovered", fixed=["age"], group="clinic", family="binomial")
    got = job["result"]
    want = glmmlab.fit_glmm(frame_of(client, ds["id"], ["recovered", "clinic", "age"]), "recovered", "clinic",
                            ["age"], family="binomial").to_dict()
    assert got["n_obs"] == want["n_obs"] and got["n_groups"] == want["n_groups"]
    for a, b in zip(got["fixed_effects"], want["fixed_effects"]):
        assert a["variable"] == b["variable"]
        for k in ("estimate", "std_error", "lower", "upper", "exp_estimate", "exp_lower", "exp_upper"):
            assert close(a[k], b[k]), (k, a, b)
    assert close(got["fit"]["log_likelihood"], want["fit"]["log_likelihood"])
    assert close(got["icc"], want["icc"])
    assert [b["rank"] for b in got["blup"]] == [b["rank"] for b in want["blup"]]
    assert "diagnostics" not in got
    assert job["display"]["fixed_effects_headers"] == ["Variable", "Estimate", "Std. Error", "z", "p", "Lower 95%",
                                                       "Upper 95%", "OR", "exp(Lower 95%)", "exp(Upper 95%)"]
    assert job["display"]["log_likelihood_label"] == "Log-Likelihood (Laplace)"
    assert got["glm_comparison"]["lrt_p_value"] is not None

    r = client.post("/api/models", json={"fit_id": job["id"], "name": "recovery by age"})
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["name"] == "recovery by age" and model["dataset_id"] == ds["id"]
    diag = client.get(f"/api/datasets/{model['diagnostics_dataset_id']}").json()
    assert [c["name"] for c in diag["columns"]] == ["row", "fitted_values", "deviance_residuals",
                                                    "pearson_residuals", "group_random_effect"]
    assert diag["read_only"] and diag["parent_id"] == ds["id"] and diag["n_rows"] == got["n_obs"]
    assert [m["name"] for m in client.get("/api/models").json()["models"]] == ["recovery by age"]

    detail = client.get(f"/api/models/{model['id']}").json()
    assert detail["saved_conf_level"] == 0.95 and detail["fixed_effects"]["level_text"] == "95%"
    for a, b in zip(detail["fixed_effects"]["rows"], want["fixed_effects"]):
        assert close(a["lower"], b["lower"], 1e-9) and close(a["upper"], b["upper"], 1e-9)

    at90 = client.get(f"/api/models/{model['id']}/fixed-effects", params={"conf_level": 0.9}).json()
    assert at90["headers"][3:7] == ["z", "p", "Lower 90%", "Upper 90%"] and at90["headers"][8] == "exp(Lower 90%)"
    want90 = glmmlab.fit_glmm(frame_of(client, ds["id"], ["recovered", "clinic", "age"]), "recovered", "clinic",
                              ["age"], family="binomial").fixed_effects_table(0.9)
    for a, b, c in zip(at90["rows"], want90, detail["fixed_effects"]["rows"]):
        assert close(a["lower"], b["lower"], 1e-9) and close(a["upper"], b["upper"], 1e-9)
        assert a["lower"] > c["lower"] and a["upper"] < c["upper"]
    again = client.get(f"/api/models/{model['id']}").json()
    assert again["saved_conf_level"] == 0.95 and again["result"]["model"]["conf_level"] == 0.95
    assert client.get(f"/api/models/{model['id']}/fixed-effects", params={"conf_level": 0.3}).status_code == 400

    # tables and a plot into a report, reorder, export
    # (issue 10.3: Add to Report adds every table of the model, not only the fixed effects and the BLUPs)
    rep = client.post(f"/api/models/{model['id']}/report", json={"conf_level": 0.9}).json()
    assert [i["title"] for i in rep["items"]] == [
        "recovery by age: Random Effects", "recovery by age: ICC", "recovery by age: Fixed Effects",
        "recovery by age: Omnibus Tests (Type III)", "recovery by age: Model Fit",
        "recovery by age: Comparison with GLM (no random intercept)",
        "recovery by age: BLUP (Random Effect Predictions)"]
    assert rep["items"][2]["payload"]["columns"][5] == "Lower 90%"
    assert len(rep["items"][6]["payload"]["rows"]) == got["n_groups"]
    png = client.get(f"/api/models/{model['id']}/plots/caterpillar.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    rep = client.post(f"/api/models/{model['id']}/plots/qq/report", json={}).json()
    assert [i["kind"] for i in rep["items"]] == ["table"] * 7 + ["plot"]
    plot_id = rep["items"][7]["id"]
    rep = client.post(f"/api/reports/{rep['id']}/items/{plot_id}/move", json={"direction": "up"}).json()
    assert [i["kind"] for i in rep["items"]] == ["table"] * 6 + ["plot", "table"]
    page = client.get(f"/api/reports/{rep['id']}/export")
    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    assert "data:image/png;base64," in page.text and "<script" not in page.text and "Lower 90%" in page.text


def test_gaussian_fit_shows_reml_and_no_exp_columns(client, samples):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school",
              conf_level=0.9, ddf="none")
    assert job["display"]["fixed_effects_headers"] == ["Variable", "Estimate", "Std. Error", "z", "p", "Lower 90%",
                                                       "Upper 90%"]
    assert job["display"]["log_likelihood_label"] == "REML Log-Likelihood"
    assert [r["component"] for r in job["result"]["random_effects"]] == ["school", "Residual"]


@pytest.mark.parametrize("change, field", [
    ({"response": None}, "response"),
    ({"response": "school"}, "response"),
    ({"fixed": ["score"]}, "fixed"),
    ({"fixed": ["track"]}, "fixed"),
    ({"group": None}, "group"),
    ({"group": "study_hours"}, "group"),
    ({"family": "negbin"}, "family"),  # not in the GLMM tab until the general form (issue 11)
    ({"link": "logit"}, "link"),
    ({"conf_level": 0.3}, "conf_level"),
    ({"conf_level": 1.0}, "conf_level"),
    ({"max_iter": 0}, "max_iter"),
    ({"tol": -1}, "tol"),
    ({"dataset_id": 999}, "dataset_id"),
])
def test_bad_form_input_is_refused_naming_the_field(client, samples, change, field):
    body = {"dataset_id": samples["school scores"]["id"], "response": "score", "fixed": ["study_hours"],
            "group": "school", **change}
    r = client.post("/api/glmm/fits", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and r.json()["error"]


def slow_fit(*args, progress=None, **kwargs):
    """A fit that reports progress for 5 s and never finishes on its own (it must be cancelled)."""
    for i in range(500):
        progress(f"Slow stage {i}", i / 500)
        time.sleep(0.01)
    raise AssertionError("not cancelled")


def test_cancel_stops_a_running_fit(client, samples, monkeypatch):
    from glmmlab.services.workbench import fits

    monkeypatch.setattr(fits, "fit_columns", slow_fit)
    ds = samples["school scores"]
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "response": "score", "group": "school"})
    fit_id = r.json()["id"]
    while client.get(f"/api/glmm/fits/{fit_id}").json()["state"] != "running":
        time.sleep(0.01)
    assert client.post(f"/api/glmm/fits/{fit_id}/cancel").status_code == 200
    job = wait_fit(client, fit_id, timeout=10)
    assert job["state"] == "cancelled" and job["error"] == "The fit was cancelled."
    r = client.post("/api/models", json={"fit_id": fit_id, "name": "x"})
    assert r.status_code == 400 and "finished" in r.json()["error"]


def test_delete_model_removes_its_diagnostics_and_dataset_delete_cascades(client, samples):
    ds = samples["regional incidents"]
    job = run(client, dataset_id=ds["id"], response="incidents", fixed=["population_k"], group="region",
              family="poisson")
    assert job["display"]["fixed_effects_headers"][7] == "IRR"
    m1 = client.post("/api/models", json={"fit_id": job["id"], "name": "a"}).json()
    m2 = client.post("/api/models", json={"fit_id": job["id"], "name": "b"}).json()
    assert client.delete(f"/api/models/{m1['id']}").status_code == 200
    assert client.get(f"/api/datasets/{m1['diagnostics_dataset_id']}").status_code == 404
    assert client.get(f"/api/models/{m1['id']}").status_code == 404
    deps = client.get(f"/api/datasets/{ds['id']}/dependents").json()
    assert [m["name"] for m in deps["models"]] == ["b"]
    assert client.delete(f"/api/datasets/{ds['id']}", params={"cascade": "true"}).status_code == 200
    assert client.get(f"/api/models/{m2['id']}").status_code == 404
    assert client.get(f"/api/datasets/{m2['diagnostics_dataset_id']}").status_code == 404


def test_a_fit_is_saved_only_into_the_project_it_was_made_on(client, samples):
    # issue 13.2: the fit used to be attached to whatever dataset had the same id in the newly opened project.
    ds = samples["clinic recovery"]
    job = run(client, dataset_id=ds["id"], response="recovered", fixed=["age"], group="clinic", family="binomial")
    start = client.get("/api/project").json()["name"]
    r = client.post("/api/projects/new", json={"name": "other", "samples": True})
    assert r.status_code == 201, r.text
    other_ids = {d["id"] for d in client.get("/api/datasets").json()["datasets"]}
    assert ds["id"] in other_ids  # the same id exists in the new project: the trap
    r = client.post("/api/models", json={"fit_id": job["id"], "name": "misplaced"})
    assert r.status_code == 400, r.text
    assert f"belongs to the project '{start}'" in r.json()["error"] and "'other' is open now" in r.json()["error"]
    assert client.get("/api/models").json()["models"] == []
    assert len(client.get("/api/datasets").json()["datasets"]) == len(other_ids)  # no diagnostics dataset either
    # back on its own project, the fit saves
    assert client.post("/api/projects/open", json={"name": start}).status_code == 200
    r = client.post("/api/models", json={"fit_id": job["id"], "name": "at home"})
    assert r.status_code == 201, r.text
    assert [m["name"] for m in client.get("/api/models").json()["models"]] == ["at home"]


def test_a_fit_started_before_a_project_switch_does_not_read_the_new_project(client, samples, monkeypatch):
    ds = samples["clinic recovery"]
    import threading

    gate = threading.Event()
    runner = client.workbench.jobs
    outer = runner._slots["fit"]

    class Gated:
        def __enter__(self_inner):
            gate.wait(10)
            return outer.__enter__()

        def __exit__(self_inner, *a):
            return outer.__exit__(*a)

    monkeypatch.setitem(runner._slots, "fit", Gated())
    r = client.post("/api/glmm/fits", json=dict(dataset_id=ds["id"], response="recovered", fixed=["age"],
                                                group="clinic", family="binomial"))
    assert r.status_code == 202, r.text
    assert client.post("/api/projects/new", json={"name": "other2", "samples": True}).status_code == 201
    gate.set()
    job = wait_fit(client, r.json()["id"])
    assert job["state"] == "failed" and "belongs to the project" in job["error"], job


def test_a_finished_fit_keeps_its_per_row_diagnostics_on_disk_not_in_memory(client, samples):
    # issue 13.8: 20 finished 1M-row fits held 4.3 GB, mostly the per-row diagnostics lists
    from glmmlab.services.workbench.jobs import Job

    ds = samples["clinic recovery"]
    job = run(client, dataset_id=ds["id"], response="recovered", fixed=["age"], group="clinic", family="binomial")
    kept = client.workbench.jobs.get(job["id"], "fit")
    path = kept.kept["diagnostics_path"]
    assert kept.result is not None and "diagnostics" not in kept.result
    assert path is not None and path.is_file()
    assert path.parent.parent == client.workbench.upload_dir
    full = client.get(f"/api/glmm/fits/{job['id']}", params={"diagnostics": True}).json()["result"]["diagnostics"]
    want = glmmlab.fit_glmm(frame_of(client, ds["id"], ["recovered", "clinic", "age"]), "recovered", "clinic",
                            ["age"], family="binomial").to_dict()["diagnostics"]
    assert full["row"] == want["row"]
    assert all(close(a, b) for a, b in zip(full["fitted_values"], want["fitted_values"]))
    r = client.post("/api/models", json={"fit_id": job["id"], "name": "kept"})
    assert r.status_code == 201, r.text
    saved = client.get(f"/api/datasets/{r.json()['diagnostics_dataset_id']}").json()
    assert saved["n_rows"] == job["result"]["n_obs"] == len(full["row"])
    # the fits of an app are forgotten (with their files) after the newest 50
    kept.finished_at = 1.0
    for n in range(50):
        client.workbench.jobs.add(Job(id=f"x{n}", kind="fit", label="", state="done", finished_at=time.time()))
    assert kept.id not in [j.id for j in client.workbench.jobs.jobs("fit")]
    assert not path.exists()


def test_imports_and_fits_are_jobs_of_one_runner_with_one_progress_vocabulary(client, samples, scores_csv):
    """issue 10.12: one job object (services/workbench/jobs.py) for imports and fits: state, stage and fraction."""
    imported = client.import_text(scores_csv, name="again")
    fit = run(client, dataset_id=samples["school scores"]["id"], response="score", fixed=["study_hours"],
              group="school")
    for job in (imported, fit):
        assert {"id", "kind", "label", "state", "stage", "fraction", "error", "result", "elapsed_seconds"} <= set(job)
        assert "phase" not in job and job["state"] == "done" and job["stage"] == "Done" and job["fraction"] == 1.0
    assert (imported["kind"], fit["kind"]) == ("import", "fit")
    assert client.get(f"/api/jobs/{fit['id']}").json()["kind"] == "fit"  # one runner answers for both
    assert client.get(f"/api/glmm/fits/{imported['id']}").status_code == 404  # the fits route serves fits only
    assert {j.id for j in client.workbench.jobs.jobs()} >= {imported["id"], fit["id"]}


def test_a_saved_model_keeps_the_form_record_and_can_be_renamed(client, samples):
    ds = samples["school scores"]
    form = {"dataset_id": str(ds["id"]), "response": "score", "model_open": True, "interactions": [["a", "b"]]}
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school", form=form)
    assert job["spec"]["form"] == form
    m = client.post("/api/models", json={"fit_id": job["id"], "name": "first"}).json()
    client.post("/api/models", json={"fit_id": job["id"], "name": "second"})
    assert client.get(f"/api/models/{m['id']}").json()["spec"]["form"] == form
    r = client.patch(f"/api/models/{m['id']}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    r = client.patch(f"/api/models/{m['id']}", json={"name": "Second"})
    assert r.status_code == 400 and "already a model called 'second'" in r.json()["error"]
    assert [x["name"] for x in client.get("/api/models").json()["models"]] == ["renamed", "second"]


def test_a_removed_fit_is_forgotten_with_its_diagnostics_file(client, samples, monkeypatch):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school")
    path = client.workbench.jobs.get(job["id"], "fit").kept["diagnostics_path"]
    assert path.is_file()
    r = client.delete(f"/api/glmm/fits/{job['id']}")
    assert r.status_code == 200 and r.json()["removed"] is True
    assert client.get(f"/api/glmm/fits/{job['id']}").status_code == 404
    assert not path.exists()
    assert client.post("/api/models", json={"fit_id": job["id"], "name": "x"}).status_code == 404

    # a running fit is cancelled and dropped when it has stopped
    from glmmlab.services.workbench import fits

    monkeypatch.setattr(fits, "fit_columns", slow_fit)
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "response": "score", "group": "school"})
    kept = client.workbench.jobs.get(r.json()["id"], "fit")
    assert client.delete(f"/api/glmm/fits/{kept.id}").status_code == 200
    deadline = time.time() + 10
    while kept.state != "cancelled":
        assert time.time() < deadline
        time.sleep(0.02)
    assert client.get(f"/api/glmm/fits/{kept.id}").status_code == 404


def test_a_model_whose_diagnostics_dataset_was_deleted_says_so_instead_of_plotting(client, samples):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school")
    m = client.post("/api/models", json={"fit_id": job["id"], "name": "lonely"}).json()
    assert client.get(f"/api/models/{m['id']}/diagnostics").json()["note"] is None
    assert client.delete(f"/api/datasets/{m['diagnostics_dataset_id']}", params={"cascade": "true"}).status_code == 200
    d = client.get(f"/api/models/{m['id']}/diagnostics").json()
    assert d["plots"] == [] and d["dataset_id"] is None and "deleted" in d["note"]
    r = client.get(f"/api/models/{m['id']}/plots/qq.png")
    assert r.status_code == 400 and "run the model again" in r.json()["error"]
    assert client.get(f"/api/models/{m['id']}").json()["display"]["tables"]  # the results stay


def test_renaming_a_model_renames_its_diagnostics_dataset(client, samples, scores_csv):
    """issue 23: the diagnostics dataset follows the model's name, so a new model with the old name gets
    "<old> diagnostics" (before: the old dataset kept that name and the new one got "m1 diagnostics (2)")."""
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school")
    m = client.post("/api/models", json={"fit_id": job["id"], "name": "m1"}).json()
    assert client.patch(f"/api/models/{m['id']}", json={"name": "m2"}).status_code == 200
    diag = client.get(f"/api/datasets/{m['diagnostics_dataset_id']}").json()
    assert diag["name"] == "m2 diagnostics"
    assert diag["operation"]["model_name"] == "m2" and diag["operation"]["description"].startswith(
        "Diagnostics of model 'm2' fitted on")
    again = client.post("/api/models", json={"fit_id": job["id"], "name": "m1"}).json()
    assert again["diagnostics_dataset_name"] == "m1 diagnostics"
    client.import_dataset(scores_csv, name="m3 diagnostics")  # a name already taken: made unique as at saving
    assert client.patch(f"/api/models/{m['id']}", json={"name": "m3"}).status_code == 200
    assert client.get(f"/api/datasets/{m['diagnostics_dataset_id']}").json()["name"] == "m3 diagnostics (2)"
    r = client.patch(f"/api/models/{m['id']}", json={"name": "M1"})  # refused: nothing renamed
    assert r.status_code == 400
    assert client.get(f"/api/datasets/{m['diagnostics_dataset_id']}").json()["name"] == "m3 diagnostics (2)"
