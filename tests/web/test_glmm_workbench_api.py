"""Issue 19's workbench points that the server answers: numeric identifiers as groups, every family and link of the
engine with the dispersion option, formula messages naming the dataset's columns, and plots of a fit right after
a run (PNG and SVG; binned residuals and no Normal Q-Q for a binomial model)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from glmmlab.engine.families.catalogue import FAMILIES
from tests.web.test_glmm_api import run, wait_fit


def sleepstudy_like(seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(301, 319), 10)  # numeric identifiers, as sleepstudy's Subject
    days = np.tile(np.arange(10), 18)
    reaction = 250 + 10 * days + rng.normal(0, 25, 18)[subject - 301] + rng.normal(0, 20, subject.size)
    return pd.DataFrame({"Reaction": reaction.round(3), "Days": days, "Subject": subject}).to_csv(index=False)


def cbpp_like(seed: int = 5) -> str:
    rng = np.random.default_rng(seed)
    herd = np.repeat(np.arange(1, 16), 4)
    period = np.tile(np.arange(1, 5), 15)
    size = rng.integers(5, 30, herd.size)
    incidence = rng.binomial(size, 0.1)
    return pd.DataFrame({"herd": herd, "incidence": incidence, "size": size, "period": period}).to_csv(index=False)


def test_a_numeric_identifier_is_a_group_in_the_form_and_in_a_formula(client):
    ds = client.import_dataset(sleepstudy_like(), "sleep")
    assert {c["name"]: c["numeric"] for c in ds["columns"]}["Subject"] is True
    job = run(client, dataset_id=ds["id"], response="Reaction", fixed=["Days"], group="Subject")
    assert job["result"]["n_groups"] == 18
    check = client.post("/api/glmm/formula",
                        json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (Days | Subject)"})
    assert check.status_code == 200, check.text
    form = check.json()["form"]
    assert form is not None, check.json()["not_form"]
    assert form["group"] == "Subject" and form["first"]["slopes"] == ["Days"]


def test_options_list_every_family_and_link_of_the_engine_and_the_dispersion_choice(client):
    o = client.get("/api/glmm/options").json()
    assert [f["value"] for f in o["general_families"]] == list(FAMILIES)
    assert {f["value"]: f["links"] for f in o["general_families"]} == {k: list(f.links) for k, f in FAMILIES.items()}
    gauss = next(f for f in o["general_families"] if f["value"] == "gaussian")
    assert gauss["dispersion_links"] == ["log", "inverse"]
    assert next(f for f in o["general_families"] if f["value"] == "gamma")["dispersion_links"] == ["inverse", "log",
                                                                                                  "identity"]
    assert o["dispersion"]["choices"] == ["estimated", "lme4"] and o["dispersion"]["default"] == "estimated"


def test_the_dispersion_option_is_checked_and_named(client):
    ds = client.import_dataset(sleepstudy_like(), "sleep")
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (1 | Subject)",
                                            "family": "gaussian", "link": "identity", "dispersion": "lme4"})
    assert r.status_code == 422 and r.json()["field"] == "dispersion"
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (1 | Subject)",
                                            "family": "gaussian", "link": "log", "dispersion": "bogus"})
    assert r.status_code == 422 and r.json()["field"] == "dispersion" and "estimated, lme4" in r.json()["message"]
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (1 | Subject)",
                                            "family": "gamma", "link": "log", "dispersion": "lme4"})
    assert r.status_code == 202, r.text
    job = wait_fit(client, r.json()["id"], timeout=120)
    assert job["state"] == "done", job
    assert job["result"]["model"].get("dispersion", "lme4") == "lme4"


def test_a_formula_message_names_every_column_of_the_dataset(client):
    ds = client.import_dataset(cbpp_like(), "cbpp")
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": "incidence ~ perod + (1 | herd)",
                                               "family": "poisson"})
    assert r.status_code == 422 and r.json()["field"] == "formula"
    msg = r.json()["message"]
    assert "did you mean 'period'" in msg and "Columns: herd, incidence, size, period." in msg
    other = client.import_dataset(sleepstudy_like(), "sleep")
    r = client.post("/api/glmm/formula", json={"dataset_id": other["id"], "formula": "incidence ~ perod + (1 | herd)"})
    assert "Columns: Reaction, Days, Subject." in r.json()["message"]


def test_plots_of_a_fit_right_after_the_run_as_png_and_svg(client):
    ds = client.import_dataset(cbpp_like(), "cbpp")
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "cbind(incidence, size - incidence) ~ "
                                            "factor(period) + (1 | herd)", "family": "binomial"})
    assert r.status_code == 202, r.text
    job = wait_fit(client, r.json()["id"], timeout=120)
    assert job["state"] == "done", job
    listed = client.get(f"/api/glmm/fits/{job['id']}/plots").json()["plots"]
    kinds = [p["kind"] for p in listed]
    assert kinds == ["residuals", "caterpillar", "observed"]  # binned residuals, no Normal Q-Q
    assert listed[0]["title"] == "Binned Residuals vs Fitted"
    png = client.get(listed[0]["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = client.get(listed[1]["svg_url"])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
    assert client.get(f"/api/glmm/fits/{job['id']}/plots/nonsense.png").status_code == 404

    ds2 = client.import_dataset(sleepstudy_like(), "sleep")
    job = run(client, dataset_id=ds2["id"], response="Reaction", fixed=["Days"], group="Subject")
    kinds = [p["kind"] for p in client.get(f"/api/glmm/fits/{job['id']}/plots").json()["plots"]]
    assert kinds == ["residuals", "qq", "caterpillar", "observed"]
    assert client.get(f"/api/glmm/fits/{job['id']}/plots/caterpillar.png").content.startswith(b"\x89PNG")
