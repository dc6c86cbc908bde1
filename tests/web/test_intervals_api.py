"""Model Detail's confidence intervals (issue 12.2) through the API: a saved model is refitted on its dataset
(models keep JSON only) and profiled or bootstrapped in the background, with progress, cancel and the same
numbers as result.conf_int; bad choices answer 422 naming the field."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS

ROOT = Path(__file__).resolve().parents[2]
SLEEP = MODELS / "sleepstudy_slope.csv"
REF = ROOT / "tests" / "reference" / "intervals" / "sleepstudy_slope.json"


def wait(client, url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(url).json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{url} did not finish in {timeout} s")


@pytest.fixture
def sleep_model(client):
    ds = client.import_dataset(SLEEP.read_text(), name="sleepstudy", filename="sleepstudy.csv")
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "Reaction ~ Days + (Days | Subject)"})
    assert r.status_code == 202, r.text
    fit = wait(client, f"/api/glmm/fits/{r.json()['id']}")
    assert fit["state"] == "done", fit
    return client.post("/api/models", json={"fit_id": fit["id"], "name": "sleep"}).json()


def start(client, model_id, **body):
    r = client.post(f"/api/models/{model_id}/intervals", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_profile_intervals_of_a_saved_model_match_lme4(client, sleep_model):
    mid = sleep_model["id"]
    job = wait(client, f"/api/models/{mid}/intervals/{start(client, mid, method='profile')}")
    assert job["state"] == "done", job
    ref = json.loads(REF.read_text())["profile"]
    rows = job["intervals"]["rows"]
    assert [r["parameter"] for r in rows] == ref["names"]
    width = np.array(ref["upper"]) - np.array(ref["lower"])
    assert np.all(np.abs([r["lower"] for r in rows] - np.array(ref["lower"])) < 0.01 * width)
    assert np.all(np.abs([r["upper"] for r in rows] - np.array(ref["upper"])) < 0.01 * width)
    t = job["table"]
    assert t["title"] == "Confidence Intervals (Profile likelihood, 95%)"
    assert t["columns"] == ["Parameter", "Lower 95%", "Upper 95%"] and t["cells"][0][0] == "sd_(Intercept)|Subject"


def test_bootstrap_with_a_seed_is_reproducible_and_wald_needs_no_refit(client, sleep_model):
    mid = sleep_model["id"]
    a = wait(client, f"/api/models/{mid}/intervals/{start(client, mid, method='boot', nsim=20, seed=5)}")
    b = wait(client, f"/api/models/{mid}/intervals/{start(client, mid, method='boot', nsim=20, seed=5)}")
    assert a["state"] == "done" and a["intervals"]["rows"] == b["intervals"]["rows"]
    assert a["intervals"]["nsim"] == 20 and a["intervals"]["failed"] == 0 and a["intervals"]["seed"] == 5
    assert "20 simulated refits (seed 5)" in a["table"]["note"]
    w = wait(client, f"/api/models/{mid}/intervals/{start(client, mid, method='wald', conf_level=0.9)}")
    fe = client.get(f"/api/models/{mid}/fixed-effects", params={"conf_level": 0.9}).json()
    assert [r["lower"] for r in w["intervals"]["rows"]] == [r["lower"] for r in fe["rows"]]
    assert w["table"]["title"] == "Confidence Intervals (Wald, 90%)"


def test_a_bootstrap_can_be_cancelled(client, sleep_model):
    mid = sleep_model["id"]
    job_id = start(client, mid, method="boot", nsim=5000, seed=1)
    deadline = time.time() + 60
    while client.get(f"/api/models/{mid}/intervals/{job_id}").json()["fraction"] < 0.11 and time.time() < deadline:
        time.sleep(0.05)
    client.post(f"/api/models/{mid}/intervals/{job_id}/cancel")
    job = wait(client, f"/api/models/{mid}/intervals/{job_id}")
    assert job["state"] == "cancelled" and job["fraction"] < 1.0


@pytest.mark.parametrize("body, field, words", [
    ({"method": "bca"}, "method", "method must be 'wald', 'profile' or 'boot'"),
    ({"method": "boot", "nsim": 3}, "nsim", "nsim must be an integer from 10"),
    ({"method": "boot", "seed": -2}, "seed", "seed must be an integer >= 0"),
])
def test_bad_choices_name_the_field(client, sleep_model, body, field, words):
    r = client.post(f"/api/models/{sleep_model['id']}/intervals", json=body)
    assert r.status_code == 422 and r.json()["field"] == field and words in r.json()["error"]


def test_profile_intervals_of_a_saved_model_above_the_parallel_threshold(client):
    """From 2,000 rows the profile runs in worker processes started from a fork server (the web server runs
    threads), so the refitted model must pickle (issue 23: "Can't pickle <function <lambda>")."""
    from tests.interfaces.test_profile_parallel import big_frame

    ds = client.import_dataset(big_frame().to_csv(index=False), name="big", filename="big.csv")
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "y ~ x + (1 | g)"})
    assert r.status_code == 202, r.text
    fit = wait(client, f"/api/glmm/fits/{r.json()['id']}")
    assert fit["state"] == "done", fit
    mid = client.post("/api/models", json={"fit_id": fit["id"], "name": "big"}).json()["id"]
    job = wait(client, f"/api/models/{mid}/intervals/{start(client, mid, method='profile')}")
    assert job["state"] == "done", job
    rows = job["intervals"]["rows"]
    assert [r["parameter"] for r in rows] == ["sd_(Intercept)|g", "sigma", "(Intercept)", "x"]
    assert all(r["lower"] < r["upper"] for r in rows), rows
