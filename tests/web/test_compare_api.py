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
