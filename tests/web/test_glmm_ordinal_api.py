"""The GLMM form with an ordinal response: the Ordinal family is offered with a Model formula (not by the simple
random-intercept form), the formula check shows the response's categories in the order the fit uses, a typed order
(``levels``) is checked and fitted, and the result shows the Thresholds table after the fixed effects."""

from __future__ import annotations

import pandas as pd

import glmmlab
from tests.conftest import REFERENCE
from tests.web.test_glmm_api import run, wait_fit  # noqa: F401

WINE = REFERENCE / "breadth" / "wine_clmm_logit.csv"
NAMES = {1: "a-poor", 2: "b-fair", 3: "c-good", 4: "d-very good", 5: "e-excellent"}
FORMULA = "rating ~ temp + contact + (1 | judge)"


def _dataset(client) -> tuple[dict, pd.DataFrame]:
    df = pd.read_csv(WINE)
    df["rating"] = df["rating"].map(NAMES)
    return client.import_dataset(df.to_csv(index=False), name="wine"), df


def test_ordinal_is_offered_with_a_formula_only(client):
    o = client.get("/api/glmm/options").json()
    general = {f["value"]: f for f in o["general_families"]}
    assert general["ordinal"]["links"] == ["logit", "probit", "cloglog"]
    assert "ordinal" not in [f["value"] for f in o["families"]]


def test_the_check_shows_the_order_and_takes_another(client):
    ds, _ = _dataset(client)
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": FORMULA, "family": "ordinal"})
    assert r.status_code == 200, r.text
    assert r.json()["response_levels"] == list(NAMES.values())
    assert r.json()["fixed_effects"] == ["tempwarm", "contactyes"]  # no intercept: the thresholds take its place
    order = list(NAMES.values())[::-1]
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": FORMULA, "family": "ordinal",
                                               "levels": order})
    assert r.json()["response_levels"] == order
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": FORMULA, "family": "ordinal",
                                               "levels": order[:3]})
    assert r.status_code == 422 and r.json()["field"] == "levels", r.text
    assert "not among the levels given" in r.json()["message"]
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": FORMULA, "family": "gaussian"})
    assert r.status_code == 422 and "ordinal" in r.json()["message"]  # a categorical response needs it


def test_an_ordinal_fit_runs_and_shows_its_thresholds(client):
    ds, df = _dataset(client)
    order = list(NAMES.values())[::-1]
    job = run(client, dataset_id=ds["id"], formula=FORMULA, family="ordinal", link="probit", levels=order)
    got = job["result"]
    want = glmmlab.glmm(FORMULA, df, family="ordinal", link="probit", levels=order).to_dict()
    assert [t["threshold"] for t in got["thresholds"]] == [f"{a}|{b}" for a, b in zip(order[:-1], order[1:])]
    assert all(abs(a["estimate"] - b["estimate"]) < 1e-7 for a, b in zip(got["thresholds"], want["thresholds"]))
    assert got["model"]["levels"] == order and got["ordinal"]["levels"] == order
    names = [t["name"] for t in job["display"]["tables"]]
    assert names.index("thresholds") == names.index("fixed-effects") + 1
    table = job["display"]["tables"][names.index("thresholds")]
    assert table["columns"][0] == "Threshold" and table["cells"][0][0] == f"{order[0]}|{order[1]}"


def test_a_saved_ordinal_model_has_its_diagnostics_and_report(client):
    ds, _ = _dataset(client)
    job = run(client, dataset_id=ds["id"], formula=FORMULA, family="ordinal")
    model = client.post("/api/models", json={"fit_id": job["id"], "name": "wine"})
    assert model.status_code in (200, 201), model.text
    mid = model.json()["id"]
    d = client.get(f"/api/models/{mid}/diagnostics")
    assert d.status_code == 200, d.text
    for k in [p["kind"] for p in d.json()["plots"]]:
        r = client.get(f"/api/models/{mid}/plots/{k}.png")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG", k
    r = client.post(f"/api/models/{mid}/report", json={"conf_level": 0.95})
    assert r.status_code in (200, 201), r.text
