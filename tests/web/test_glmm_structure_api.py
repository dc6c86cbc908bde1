"""The GLMM form's covariance-structure choice, server side: a typed structured formula is described as the form's
controls (a cluster row with ``structure`` and, for ar1/toep/ou, ``time``), its signature differs from the
unstructured term's, a structured fit runs as a web job with its Covariance Structures table, and a structure
the data cannot carry is refused inline (422, naming the term)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import REFERENCE
from tests.web.test_glmm_api import run

CASE = REFERENCE / "breadth" / "sim_longitudinal_ar1.csv"


@pytest.fixture
def ds(client):
    return client.import_dataset(pd.read_csv(CASE).to_csv(index=False), name="ar1")


def check(client, ds, formula, **body):
    return client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": formula, **body})


@pytest.mark.parametrize("formula, first", [
    ("y ~ tnum + trt + ar1(0 + time | id)",
     {"intercept": False, "slopes": [], "correlated": True, "structure": "ar1", "time": "time"}),
    ("y ~ tnum + trt + ou(0 + tnum | id)",
     {"intercept": False, "slopes": [], "correlated": True, "structure": "ou", "time": "tnum"}),
    ("y ~ tnum + trt + diag(1 + tnum | id)",
     {"intercept": True, "slopes": ["tnum"], "correlated": True, "structure": "diag"}),
    ("y ~ tnum + trt + (1 + tnum | id)", {"intercept": True, "slopes": ["tnum"], "correlated": True}),
])
def test_a_structured_formula_is_described_as_the_form(client, ds, formula, first):
    r = check(client, ds, formula)
    assert r.status_code == 200, r.text
    assert r.json()["form"]["group"] == "id" and r.json()["form"]["first"] == first


def test_the_signature_tells_the_structures_apart(client, ds):
    sig = {t: check(client, ds, t).json()["signature"] for t in (
        "y ~ tnum + (0 + time | id)", "y ~ tnum + ar1(0 + time | id)", "y ~ tnum + toep(0 + time | id)",
        "y ~ tnum + us(0 + time | id)")}
    assert len(set(sig.values())) == 3
    assert sig["y ~ tnum + (0 + time | id)"] == sig["y ~ tnum + us(0 + time | id)"]


def test_a_structured_fit_runs_and_shows_its_structure(client, ds):
    job = run(client, dataset_id=ds["id"], formula="y ~ tnum + trt + ar1(0 + time | id)")
    got = job["result"]
    (entry,) = got["covariance_structures"]
    assert entry["structure"] == "ar1" and entry["dim"] == 8 and 0.5 < entry["rho"] < 0.9
    assert got["fit"]["k"] == 6


def test_a_structure_the_data_cannot_carry_is_refused_inline(client, ds):
    r = check(client, ds, "y ~ tnum + ar1(0 + tnum | id)")
    assert r.status_code == 422
    assert "ar1(0 + tnum | id)" in r.json()["message"] and "factor" in r.json()["message"]
