"""POST /api/models/compare: saved models of one dataset refitted from the project's data and compared as
glmmlab.anova compares them; different datasets or responses refused with a sentence (400, never a 500)."""

from __future__ import annotations

import pytest

import glmmlab
from tests.web.test_glmm_api import frame_of, run, samples  # noqa: F401  (samples: the sample datasets fixture)


def save(client, job, name):
    r = client.post("/api/models", json={"fit_id": job["id"], "name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_compare_saved_models(client, samples):
    ds = samples["school scores"]
    small = save(client, run(client, dataset_id=ds["id"], response="score", fixed=[], group="school"), "null")
    big = save(client, run(client, dataset_id=ds["id"], formula="score ~ study_hours + (study_hours | school)"),
               "slopes")
    r = client.post("/api/models/compare", json={"model_ids": [big, small]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["columns"] == ["Model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    assert [row[0] for row in out["rows"]] == ["null", "slopes"]
    assert out["notes"] == ["refitting model(s) with ML (instead of REML)"]
    assert out["reading"].startswith("The model slopes fits better than null: χ²(3) = ")
    frame = frame_of(client, ds["id"], ["score", "study_hours", "school"])
    with pytest.warns(UserWarning, match="refitting"):
        want = glmmlab.anova(null=glmmlab.glmm("score ~ 1 + (1 | school)", frame),
                             slopes=glmmlab.glmm("score ~ study_hours + (study_hours | school)", frame))
    assert out["rows"][1][6] == pytest.approx(want.loc["slopes", "Chisq"], rel=1e-9)
    assert out["cells"][0][6] == "" or out["cells"][0][6] in ("—", "N/A")


def test_refusals_are_sentences(client, samples):
    a = save(client, run(client, dataset_id=samples["school scores"]["id"], response="score", fixed=[],
                         group="school"), "scores")
    b = save(client, run(client, dataset_id=samples["clinic recovery"]["id"], response="recovered", fixed=[],
                         group="clinic", family="binomial"), "recovery")
    r = client.post("/api/models/compare", json={"model_ids": [a, b]})
    assert r.status_code == 400 and "same data" in r.json()["error"], r.text
    r = client.post("/api/models/compare", json={"model_ids": [a]})
    assert r.status_code == 400 and "at least two" in r.json()["error"]
    c = save(client, run(client, dataset_id=samples["school scores"]["id"], response="study_hours", fixed=[],
                         group="school"), "hours")
    r = client.post("/api/models/compare", json={"model_ids": [a, c]})
    assert r.status_code == 400 and "different responses" in r.json()["error"], r.text


def test_model_fit_shows_r2(client, samples):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], response="score", fixed=["study_hours"], group="school")
    want = glmmlab.fit_glmm(frame_of(client, ds["id"], ["score", "study_hours", "school"]), "score", "school",
                            ["study_hours"]).r2()
    fit_table = next(t for t in job["display"]["tables"] if t["name"] == "model-fit")
    assert fit_table["rows"][-2:] == [["Marginal R² (Nakagawa)", pytest.approx(want["marginal"], rel=1e-9)],
                                      ["Conditional R² (Nakagawa)", pytest.approx(want["conditional"], rel=1e-9)]]
    model_id = save(client, job, "scores")
    detail = client.get(f"/api/models/{model_id}").json()
    rows = next(t for t in detail["display"]["tables"] if t["name"] == "model-fit")["rows"]
    assert rows[-1][0] == "Conditional R² (Nakagawa)"


def _k_data(client):
    """y on an int64 k (0, 1, 2: a slope) in 6 groups; k as string would be a 3-level factor (2 more parameters)."""
    lines = ["y,k,g"] + [f"{(i * 7919) % 13 / 3 + (i % 3) + (i % 6) / 2:.3f},{i % 3},g{i % 6}" for i in range(60)]
    return client.import_dataset("\n".join(lines) + "\n", name="kdata")


def test_a_saved_model_refuses_to_refit_when_a_columns_type_changed(client):
    """issue 23: k int64 -> string after the save: Compare Models and profile intervals refuse, naming the column
    (before: npar 6 instead of 4, intervals of another model)."""
    ds = _k_data(client)
    m0 = save(client, run(client, dataset_id=ds["id"], formula="y ~ 1 + (1 | g)"), "m0")
    m1 = save(client, run(client, dataset_id=ds["id"], formula="y ~ k + (1 | g)"), "m1")
    r = client.post("/api/models/compare", json={"model_ids": [m0, m1]})
    assert r.status_code == 200 and r.json()["rows"][1][1] == 4, r.text
    r = client.patch(f"/api/datasets/{ds['id']}/columns", json={"column": "k", "dtype": "string"})
    assert r.status_code == 200, r.text
    r = client.post("/api/models/compare", json={"model_ids": [m0, m1]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (
        "The dataset of model 'm1' has changed since the model was saved: column 'k' was int64 and is now string; "
        "its saved results no longer describe these data. Run the model again on the current data and save it anew "
        "(or undo the change) to compare it or compute its intervals.")
    r = client.post(f"/api/models/{m1}/intervals", json={"method": "profile"})
    assert r.status_code == 400 and "column 'k' was int64 and is now string" in r.json()["error"], r.text
    r = client.post(f"/api/models/{m0}/intervals", json={"method": "profile"})  # m0 does not use k
    assert r.status_code == 202, r.text


def test_a_saved_model_refuses_to_refit_when_its_values_changed_and_old_models_still_refit(client):
    """issue 23: the checksum of the used columns' values; a model saved before fingerprints has none and refits."""
    from glmmlab.services.errors import ServiceError
    from glmmlab.services.project import catalogue
    from glmmlab.services.project.store import data_column, data_table
    from glmmlab.services.workbench import fit_analyses, models

    ds = _k_data(client)
    m1 = save(client, run(client, dataset_id=ds["id"], formula="y ~ k + (1 | g)"), "m1")
    with client.workbench.project() as project:
        model = models.get_model(project, m1)
        fp = model["spec"]["data_fingerprint"]
        assert fp["n_rows"] == 60 and {c: v["dtype"] for c, v in fp["columns"].items()} == \
            {"y": "float64", "k": "int64", "g": "string"}
        assert models.refit_model(project, model).n_obs == 60
        info = catalogue.get_dataset(project, ds["id"])
        with project.write() as cur:
            cur.execute(f"UPDATE {data_table(ds['id'])} SET {data_column(info.column('y').position)} = 100 "
                        f"WHERE {data_column(info.column('k').position)} = 2")
        with pytest.raises(ServiceError, match=r"^The dataset of model 'm1' has changed since the model was saved: "
                                               r"the values of column\(s\) 'y' differ; "):
            models.refit_model(project, model)
        with pytest.raises(ServiceError, match="the values of column"):
            fit_analyses.saved_fit(project, model)
        old = dict(model, spec={k: v for k, v in model["spec"].items() if k != "data_fingerprint"})
        assert models.refit_model(project, old).n_obs == 60  # saved before: not checked, as before
