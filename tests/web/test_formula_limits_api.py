"""Pathological formulas through the web (issue 23): the formula check (sent by the GLMM page 250 ms after
typing) and Run answer 422 naming the Model formula and the limit, at once, with a short body; nothing runs and
the server stays responsive. The limits themselves: tests/engine/test_formula_limits.py."""

from __future__ import annotations

import time

import pytest

from tests.engine.test_formula_limits import FIFTEEN, REFUSED
from tests.web.test_glmm_api import samples  # noqa: F401  (fixture)

WEB_CASES = REFUSED + [
    ("a huge power typed on the page", "score ~ study_hours^1000000000 + (1|school) + " + "*".join(
        f"v{k}" for k in range(12)), "the limit is 1,000 terms"),
]


@pytest.mark.parametrize("case, formula, words", WEB_CASES, ids=[c[0] for c in WEB_CASES])
def test_check_and_run_refuse_a_pathological_formula_at_once(client, samples, case, formula, words):
    ds = samples["school scores"]
    for url in ("/api/glmm/formula", "/api/glmm/fits"):
        start = time.perf_counter()
        r = client.post(url, json={"dataset_id": ds["id"], "formula": formula})
        assert time.perf_counter() - start < 3.0, f"{case}: {url} took {time.perf_counter() - start:.1f} s"
        assert r.status_code == 422, (case, r.status_code, r.text[:300])
        body = r.json()
        assert body["field"] == "formula" and words in body["message"], body["message"][:300]
        assert len(r.content) < 2_000, f"{case}: a body of {len(r.content):,} bytes"
    assert client.get("/api/glmm/fits").json()["fits"] == []
    assert client.get("/api/project").status_code == 200


def test_the_check_of_a_huge_power_of_one_variable_is_immediate(client, samples):
    ds = samples["school scores"]
    start = time.perf_counter()
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"],
                                               "formula": "score ~ study_hours^1000000000000 + (1|school)"})
    assert r.status_code == 200, r.text
    assert r.json()["fixed_effects"] == ["(Intercept)", "study_hours"]
    assert time.perf_counter() - start < 3.0
    big = f"score ~ ({FIFTEEN.replace('+', ' + ')})^2 + (1|school)"
    r = client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": big})
    assert r.status_code == 422 and "is not in the data" in r.json()["message"]  # names unknown to the data


def test_a_fixed_factor_of_30000_levels_is_refused_by_the_check_and_run(client):
    """The design is sized before it is built (issue 23: a 100,000-level factor took the server past 8 GB)."""
    import numpy as np
    import pandas as pd

    n = 30_000
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"y": rng.normal(size=n), "f": [f"f{k}" for k in range(n)],
                       "g": [f"g{k}" for k in rng.integers(0, 30, n)]})
    ds = client.import_dataset(df.to_csv(index=False), name="wide", filename="wide.csv")
    for url in ("/api/glmm/formula", "/api/glmm/fits"):
        start = time.perf_counter()
        r = client.post(url, json={"dataset_id": ds["id"], "formula": "y ~ f + (1 | g)"})
        assert time.perf_counter() - start < 10
        assert r.status_code == 422, r.text[:300]
        message = r.json()["message"]
        assert r.json()["field"] == "formula"
        assert "factor 'f' has 30,000 levels (29,999 columns)" in message and "2,000 columns" in message, message


def test_a_fit_with_a_wide_design_is_cancelled_promptly(client):
    """1,500 factor levels on 30,000 rows (within the limits): Cancel is seen while the design is prepared and
    while it is fitted (issue 23: a 5,000-level factor sat at "Preparing data" and ignored Cancel for minutes)."""
    import numpy as np
    import pandas as pd

    n = 30_000
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"y": rng.normal(size=n), "f": [f"f{k}" for k in rng.integers(0, 1_500, n)],
                       "g": [f"g{k}" for k in rng.integers(0, 30, n)]})
    ds = client.import_dataset(df.to_csv(index=False), name="wide", filename="wide.csv")
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "y ~ f + (1 | g)"})
    assert r.status_code == 202, r.text
    url = f"/api/glmm/fits/{r.json()['id']}"
    deadline = time.time() + 30
    while client.get(url).json()["stage"] in ("Waiting to start", "Reading data") and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(3.0)  # into the preparation (before: minutes in the collinearity check, without a progress report)
    asked = time.perf_counter()
    assert client.post(url + "/cancel").status_code == 200
    while client.get(url).json()["state"] not in ("cancelled", "done", "failed") and time.time() < deadline + 30:
        time.sleep(0.05)
    job = client.get(url).json()
    assert job["state"] == "cancelled", job
    assert time.perf_counter() - asked < 5.0, f"the cancel took {time.perf_counter() - asked:.1f} s ({job['stage']})"
