"""Simulated (DHARMa) residuals in the workbench's API: the tests' table and both plots of a finished fit and of a
saved model, at the seed and number of simulations asked for, equal to ``result.simulate_residuals``; bad settings
answered with a message naming the field."""

from __future__ import annotations

import pytest

import glmmlab
from tests.web.test_glmm_api import frame_of, run, samples  # noqa: F401  (the samples fixture)


@pytest.fixture
def fitted(client, samples):  # noqa: F811
    ds = samples["clinic recovery"]
    job = run(client, dataset_id=ds["id"], response="recovered", fixed=["age"], group="clinic", family="binomial")
    local = glmmlab.fit_glmm(frame_of(client, ds["id"], ["recovered", "clinic", "age"]), "recovered", "clinic",
                             ["age"], family="binomial")
    return job, local


def test_a_finished_fit_has_simulated_residuals_equal_to_the_api(client, fitted):
    job, local = fitted
    r = client.get(f"/api/glmm/fits/{job['id']}/simulated-residuals", params={"n_sim": 120, "seed": 7})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["settings"]["n_sim"] == 120 and doc["settings"]["seed"] == 7 and doc["settings"]["conditional"] is True
    want = local.simulate_residuals(120, seed=7).to_dict()["tests"]
    for key in ("uniformity", "dispersion", "zero_inflation", "outliers"):
        assert doc["tests"][key]["p_value"] == pytest.approx(want[key]["p_value"], abs=1e-12)
        assert doc["tests"][key]["statistic"] == pytest.approx(want[key]["statistic"], rel=1e-9)
    assert doc["table"]["columns"] == ["Test", "Statistic", "p-value", "Reading"]
    assert [row[0] for row in doc["table"]["cells"]] == ["Uniformity (Kolmogorov-Smirnov)", "Dispersion",
                                                          "Zero-inflation", "Outliers"]
    assert [p["kind"] for p in doc["plots"]] == ["simulated-qq", "simulated-predicted"]
    for p in doc["plots"]:
        png = client.get(p["url"])
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        svg = client.get(p["svg_url"])
        assert svg.status_code == 200 and b"<svg" in svg.content[:400]
    fresh = client.get(f"/api/glmm/fits/{job['id']}/simulated-residuals",
                       params={"n_sim": 120, "seed": 7, "conditional": "false"}).json()
    assert fresh["settings"]["conditional"] is False and fresh["tests"] != doc["tests"]


def test_a_saved_model_has_simulated_residuals(client, fitted):
    job, local = fitted
    model = client.post("/api/models", json={"fit_id": job["id"], "name": "recovery"}).json()
    doc = client.get(f"/api/models/{model['id']}/simulated-residuals").json()
    assert doc["settings"]["n_sim"] == 250 and doc["settings"]["seed"] == 123  # DHARMa's defaults
    want = local.simulate_residuals().to_dict()["tests"]
    assert doc["tests"]["dispersion"]["p_value"] == pytest.approx(want["dispersion"]["p_value"], abs=1e-12)
    png = client.get(doc["plots"][1]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


@pytest.mark.parametrize("params, message", [
    ({"n_sim": 1}, "Simulations must be a whole number from 2"),
    ({"n_sim": "ten"}, "Simulations must be a whole number"),
    ({"seed": -4}, "Random Seed must be a whole number"),
])
def test_bad_settings_name_the_field(client, fitted, params, message):
    job, _ = fitted
    r = client.get(f"/api/glmm/fits/{job['id']}/simulated-residuals", params=params)
    assert r.status_code == 400 and message in r.json()["error"]
    r = client.get(f"/api/glmm/fits/{job['id']}/simulated-residuals/simulated-qq.png", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_an_unknown_plot_is_not_found(client, fitted):
    job, _ = fitted
    r = client.get(f"/api/glmm/fits/{job['id']}/simulated-residuals/histogram.png")
    assert r.status_code == 404 and "simulated-qq" in r.json()["error"]


def test_simulated_residuals_go_into_a_report_once(client, fitted):
    job, _ = fitted
    model = client.post("/api/models", json={"fit_id": job["id"], "name": "recovery"}).json()
    params = {"n_sim": 100, "seed": 3}
    r = client.post(f"/api/models/{model['id']}/simulated-residuals/report", params=params, json={})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["added"] == ["recovery: Simulated Residuals (DHARMa)", "recovery: Simulated Residuals: Uniform Q-Q",
                            "recovery: Simulated Residuals vs Predicted"]
    again = client.post(f"/api/models/{model['id']}/simulated-residuals/report", params=params, json={}).json()
    assert again["added"] == [] and len(again["skipped"]) == 3
    other = client.post(f"/api/glmm/fits/{job['id']}/simulated-residuals/report",
                        params={**params, "name": "run 1"}, json={"report_id": rep["id"]}).json()
    assert other["added"][0] == "run 1: Simulated Residuals (DHARMa)"
    html = client.get(f"/api/reports/{rep['id']}/export")
    assert html.status_code == 200 and "Simulated Residuals vs Predicted" in html.text
