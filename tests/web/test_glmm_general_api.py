"""The general GLMM form's API (issue 11): a Model formula is checked against the dataset with the fit's own model
frame builder before anything runs (422 naming the field), and a formula runs as typed through ModelSpec/fit_spec."""

from __future__ import annotations

import pytest

import glmmlab
from tests.web.test_glmm_api import close, frame_of, run, samples, wait_fit  # noqa: F401  (fixture)


def check(client, **body):
    return client.post("/api/glmm/formula", json=body)


@pytest.mark.parametrize("formula, words", [
    ("score ~ study_hours + nope + (1 | school)", "nope"),
    ("score ~ study_hours + (1 | school", ""),
    ("score ~ study_hours", "random"),
    ("", "Model formula"),
    ("score ~ log(track) + (1 | school)", "track"),
])
def test_a_bad_formula_is_explained_naming_the_field(client, samples, formula, words):
    ds = samples["school scores"]
    r = check(client, dataset_id=ds["id"], formula=formula)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "formula" and body["message"] and words in body["message"]
    assert body["error"].startswith("Model formula: ")
    # the same answer from Run, and nothing runs
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": formula})
    assert r.status_code == 422 and r.json()["field"] == "formula"
    assert client.get("/api/glmm/fits").json()["fits"] == []


def test_a_good_formula_is_described(client, samples):
    ds = samples["school scores"]
    r = check(client, dataset_id=ds["id"], formula="score ~ study_hours * track + (1 + study_hours | school)")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["response"] == "score" and d["fixed_effects"][0] == "(Intercept)"
    assert d["random_terms"] == [{"component": "school", "terms": ["(Intercept)", "study_hours"],
                                  "levels": d["random_terms"][0]["levels"], "correlated": True}]


def test_weights_and_dataset_are_checked(client, samples):
    ds = samples["school scores"]
    r = check(client, dataset_id=ds["id"], formula="score ~ study_hours + (1 | school)", weights="school")
    assert r.status_code == 422 and r.json()["field"] == "weights"
    r = check(client, dataset_id=ds["id"], formula="score ~ study_hours + (1 | school)", weights="nope")
    assert r.status_code == 422 and r.json()["field"] == "weights"
    r = check(client, dataset_id=999, formula="score ~ study_hours + (1 | school)")
    assert r.status_code == 422 and r.json()["field"] == "dataset_id"
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "score ~ (1 | school)",
                                            "family": "binomial", "link": "log"})
    assert r.status_code == 422 and r.json()["field"] == "link"


def test_a_typed_formula_runs_as_typed_and_equals_glmm(client, samples):
    ds = samples["school scores"]
    formula = "score ~ study_hours * track + (1 + study_hours | school)"
    job = run(client, dataset_id=ds["id"], formula=formula, conf_level=0.9, ddf="none")  # lme4's Wald z tests
    got = job["result"]
    want = glmmlab.glmm(formula, frame_of(client, ds["id"], ["score", "study_hours", "track", "school"]),
                        conf_level=0.9, ddf="none").to_dict()
    assert got["model"]["formula"] == formula and job["label"].startswith(formula)
    assert [r["variable"] for r in got["fixed_effects"]] == [r["variable"] for r in want["fixed_effects"]]
    for a, b in zip(got["fixed_effects"], want["fixed_effects"], strict=True):
        assert all(close(a[k], b[k], 1e-7) for k in ("estimate", "std_error", "statistic", "p_value", "lower"))
    for a, b in zip(got["random_effects"], want["random_effects"], strict=True):
        assert (a["component"], a["term"]) == (b["component"], b["term"]) and close(a["variance"], b["variance"], 1e-7)
    names = [t["name"] for t in job["display"]["tables"]]
    # (issue 19 point 8: no "ICC: N/A" section for a model with slopes, where no ICC is defined)
    assert names == ["random-effects", "fixed-effects", "omnibus", "model-fit", "blup-school"]
    re_table = job["display"]["tables"][0]
    assert re_table["columns"] == ["Component", "Term", "Variance", "Std.Dev.", "Corr"]
    blup = job["display"]["tables"][-1]
    assert blup["columns"] == ["Level", "(Intercept)", "study_hours", "Std. Error ((Intercept))",
                               "Std. Error (study_hours)"]
    # saved, it has a caterpillar plot per term, the Model Detail recompute and a report
    model = client.post("/api/models", json={"fit_id": job["id"], "name": "slopes"}).json()
    d = client.get(f"/api/models/{model['id']}/diagnostics").json()
    kinds = [p["kind"] for p in d["plots"]]
    assert kinds == ["residuals", "qq", "caterpillar-1", "caterpillar-2", "observed"]
    for k in kinds:
        r = client.get(f"/api/models/{model['id']}/plots/{k}.png")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    fe = client.get(f"/api/models/{model['id']}/fixed-effects", params={"conf_level": 0.99}).json()
    assert fe["columns"][5] == "Lower 99%"
    r = client.post(f"/api/models/{model['id']}/report", json={"conf_level": 0.99})
    assert r.status_code in (200, 201), r.text


def test_negative_binomial_only_with_a_formula(client, samples):
    ds = samples["school scores"]
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "response": "score", "group": "school",
                                            "family": "negbin"})
    assert r.status_code == 422 and "Model formula" in r.json()["message"]
    options = client.get("/api/glmm/options").json()
    fams = [f["value"] for f in options["general_families"]]
    assert "negbin" in fams and "negbin" not in [f["value"] for f in options["families"]]
