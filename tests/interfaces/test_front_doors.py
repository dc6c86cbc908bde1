"""Every front door gives the same fit (issue 17, point 3).

For every family and link that :data:`glmmlab.engine.families.catalogue.FAMILIES` offers (read when the tests are
collected, so a link added later is covered without editing this file), a small simulated data set (300 rows,
20 groups, one numeric ``x``; a response the family accepts, with means well inside the link's range) is fitted
as ``y ~ x + (1 | g)`` through:

- ``glmmlab.glmm(formula, df)`` (the reference of the comparison),
- ``glmmlab.fit_glmm(df, "y", "g", ["x"])``,
- ``glmmlab.fit(glmmlab.ModelSpec(formula), df)``,
- the command line, in process (``main()`` on a temporary CSV, the JSON read from stdout): ``fit --formula`` and
  ``fit --response y --group g --fixed x``,
- the web API (``POST /api/glmm/fits``, polled until done): the Model formula, and the simple form
  (response/group/fixed) for the families the simple form offers (not the negative binomial, by design),
- Dask (a dask DataFrame of 2 partitions on a local cluster of 2 workers): ``glmm(formula, ddf)`` and
  ``fit_glmm(ddf, ...)``; glmmTMB's families are fitted in memory only, and both refuse them in words.

glmmTMB's families simulate with their own parameters (``PARAMETERS``); the beta-binomial's response is a proportion
of 5 to 15 trials given as prior weights at every door.

Compared with the reference, from each door's JSON document: the log-likelihood to 1e-6 relative; the fixed-effect
estimates and standard errors, the random-effects variances (Residual too) and ``family_parameter`` (present for
the families with parameters of their own, and then the same first parameter) to 1e-5 relative (floored at 1e-5
of the largest value for numbers near 0); the same names, number of observations and method, and a variance away
from 0 (a singular fit's variance of 1e-34 has no digits to compare). Measured (``pytest -s`` prints each pair's
differences): in memory every door gives exactly the reference's numbers (difference 0: they reach the same
engine, the general one, on the same doubles; the CSV and the web's dataset store round-trip them exactly). On
Dask the sums run in another order: log-likelihood within 3e-14 relative, estimates, SEs, variances and theta
within 1e-15 (binomial probit, Poisson log, Gamma log) to 2e-8 (Gamma identity; binomial logit 1e-11, negative
binomial 6e-9); the same tolerances hold there. The module runs in about 60 s (a local Dask cluster and a web
app are started once).
"""

from __future__ import annotations

import io
import json
import logging
import time
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.modelled import HURDLE_BASE
from glmmlab.interfaces import cli

FORMULA = "y ~ x + (1 | g)"
LOGLIK_REL = 1e-6
REL = 1e-5


def pairs() -> list:
    # the hurdle families need a zero model and zeros in the data: their front doors are tests/interfaces/
    # test_zero_models.py and tests/web/test_glmm_zero_browser.py
    return [pytest.param(f, lk, id=f"{f}-{lk}") for f, fam in FAMILIES.items() for lk in fam.links
            if f not in HURDLE_BASE]


# -- the data ---------------------------------------------------------------------------------------------------
# every other family: 5 (counts, positive amounts and Gaussian values alike)
TYPICAL_MEAN = {"binomial": 0.4, "beta_family": 0.4, "betabinomial": 0.4}
# the simulation's values of the families' own parameters (glmmTMB's names, in the family's order)
PARAMETERS = {"negbin": (3.0,), "nbinom1": (1.5,), "beta_family": (8.0,), "betabinomial": (5.0,),
              "t_family": (1.0, 5.0), "tweedie": (1.2, 1.5)}
# a column of prior weights the doors pass: the beta-binomial's trials (its response a proportion of them)
WEIGHTS = {"betabinomial": "n"}


def simulate(family: str, link: str, n: int = 300, groups: int = 20, seed: int = 17) -> pd.DataFrame:
    """``y ~ x + (1 | g)`` data: x and the group effect (SD 1) move the mean by 25 % (binomial: 0.12) per unit
    around a typical mean, through the link's own derivative there, so every link keeps its means inside its
    range (both clipped at 2.5)."""
    rng = np.random.default_rng(seed)
    fam, lk = FAMILIES[family], LINKS[link]
    if family == "ordinal":  # five ordered categories from a latent scale with the link's distribution
        return simulate_ordinal(rng, link, n, groups)
    g = rng.integers(0, groups, n)
    x = np.clip(rng.normal(size=n), -2.5, 2.5)
    u = np.clip(rng.normal(size=groups), -2.5, 2.5)[g]
    mu0 = TYPICAL_MEAN.get(family, 5.0)
    spread = 0.12 if mu0 < 1 else 0.25 * mu0
    eta0 = float(lk.linkfun(np.array([mu0]))[0])
    slope = spread / float(lk.mu_eta(np.array([eta0]))[0])  # d eta for a change of `spread` in the mean
    mu = lk.linkinv(eta0 + slope * (0.5 * x + u))
    lo, hi = fam.mean_range
    assert np.all((mu > lo) & (mu < hi)), (family, link)
    if fam.parameter_names:
        fam = fam.with_parameters(PARAMETERS[family])
    phi = (0.2 * mu0) ** 2 if family == "gaussian" else 0.2  # Gaussian variance; Gamma: shape 5
    trials = rng.integers(5, 16, n).astype(float) if family in WEIGHTS else np.ones(n)
    y = fam.sample(rng, mu, trials, phi)
    df = pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})
    if family in WEIGHTS:
        df[WEIGHTS[family]] = trials
    return df


def simulate_ordinal(rng: np.random.Generator, link: str, n: int, groups: int) -> pd.DataFrame:
    """``y ~ x + (1 | g)`` for the ordinal family: y = 1 + the thresholds (-1, 0, 1, 2) below x + u + e, with e
    logistic, standard normal or Gumbel-minimum (log of an exponential: P(e <= t) = 1 - exp(-exp(t)), cloglog)."""
    g = rng.integers(0, groups, n)
    x = np.clip(rng.normal(size=n), -2.5, 2.5)
    u = rng.normal(size=groups)[g]
    e = {"logit": rng.logistic, "probit": rng.normal}.get(link, lambda size: np.log(rng.exponential(size=size)))(
        size=n)
    y = 1 + np.searchsorted([-1.0, 0.0, 1.0, 2.0], 0.8 * x + u + e)
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{k:02d}" for k in g]})


# -- what is compared -------------------------------------------------------------------------------------------
def summary(doc: dict) -> dict:
    fp = doc.get("family_parameter")
    return {"loglik": doc["fit"]["log_likelihood"], "names": [f["variable"] for f in doc["fixed_effects"]],
            "estimates": [f["estimate"] for f in doc["fixed_effects"]],
            "se": [f["std_error"] for f in doc["fixed_effects"]],
            "re_names": [(r["component"], r["term"]) for r in doc["random_effects"]],
            "variances": [r["variance"] for r in doc["random_effects"]],
            "family_parameter": None if fp is None else (fp["name"], fp["value"]), "n_obs": doc["n_obs"],
            "method": doc["method"], "family": doc["model"]["family"], "link": doc["model"]["link"]}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0:
        return 0.0
    scale = np.maximum(np.abs(b), np.max(np.abs(b)) * 1e-5 + 1e-300)
    return float(np.max(np.abs(a - b) / scale))


def assert_same_fit(door: str, got: dict, ref: dict) -> dict:
    """Assert ``got`` is the reference's fit within the module's tolerances; the measured differences."""
    for key in ("names", "re_names", "n_obs", "method", "family", "link"):
        assert got[key] == ref[key], (door, key, got[key], ref[key])
    assert (got["family_parameter"] is None) == (ref["family_parameter"] is None), (door, got["family_parameter"])
    errs = {"loglik": rel_err(got["loglik"], ref["loglik"]), "estimates": rel_err(got["estimates"], ref["estimates"]),
            "se": rel_err(got["se"], ref["se"]), "variances": rel_err(got["variances"], ref["variances"]),
            "family_parameter": 0.0 if ref["family_parameter"] is None else
            rel_err(got["family_parameter"][1], ref["family_parameter"][1])}
    if got["family_parameter"] is not None:
        assert got["family_parameter"][0] == ref["family_parameter"][0], door
    assert errs["loglik"] <= LOGLIK_REL, (door, errs)
    for key in ("estimates", "se", "variances", "family_parameter"):
        assert errs[key] <= REL, (door, key, errs)
    return errs


# -- the doors --------------------------------------------------------------------------------------------------
def python_doors(df: pd.DataFrame, family: str, link: str) -> dict:
    kw = dict(family=family, link=link, weights=WEIGHTS.get(family))
    return {"glmm": glmmlab.glmm(FORMULA, df, **kw).to_dict(diagnostics=False),
            "fit_glmm": glmmlab.fit_glmm(df, "y", "g", ["x"], **kw).to_dict(diagnostics=False),
            "fit(ModelSpec)": glmmlab.fit(glmmlab.ModelSpec(FORMULA, **kw), df).to_dict(diagnostics=False)}


def run_cli(args: list[str]) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(args)
    assert status == 0, (args, status)
    return json.loads(out.getvalue())


def cli_doors(csv: str, family: str, link: str) -> dict:
    common = ["--family", family, "--link", link, "--format", "json", "--diagnostics", "none"]
    if family in WEIGHTS:
        common += ["--weights", WEIGHTS[family]]
    return {"cli --formula": run_cli(["fit", csv, "--formula", FORMULA, *common]),
            "cli --response": run_cli(["fit", csv, "--response", "y", "--group", "g", "--fixed", "x", *common])}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from fastapi.testclient import TestClient

    from glmmlab.interfaces.web.app import create_app

    folder = tmp_path_factory.mktemp("web")
    app = create_app(folder / "projects" / "doors.duckdb", projects_dir=folder / "projects",
                     allowed_hosts=["testserver"])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["X-CSRF-Token"] = app.state.workbench.csrf_token
        yield client


def web_fit(client, body: dict, timeout: float = 60) -> dict:
    r = client.post("/api/glmm/fits", json=body)
    assert r.status_code == 202, r.text
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/glmm/fits/{r.json()['id']}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            assert job["state"] == "done", job
            return job["result"]
        time.sleep(0.02)
    raise AssertionError("the fit did not finish")


def web_doors(client, df: pd.DataFrame, family: str, link: str) -> dict:
    r = client.post("/api/datasets/import", params={"filename": "d.csv", "name": f"{family}-{link}"},
                    content=df.to_csv(index=False).encode())
    assert r.status_code == 202, r.text
    deadline = time.time() + 60
    while (job := client.get(f"/api/jobs/{r.json()['id']}").json())["state"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.02)
    assert job["state"] == "done", job
    ds = job["result"]["dataset"]["id"]
    out = {"web formula": web_fit(client, {"dataset_id": ds, "formula": FORMULA, "family": family, "link": link,
                                           "weights": WEIGHTS.get(family)})}
    from glmmlab.services.workbench.glmm_form import FAMILIES as SIMPLE_FORM_FAMILIES

    if family in SIMPLE_FORM_FAMILIES:
        out["web form"] = web_fit(client, {"dataset_id": ds, "response": "y", "group": "g", "fixed": ["x"],
                                           "family": family, "link": link})
    return out


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="2GiB") as cluster, distributed.Client(cluster) as c:
        yield c


def dask_doors(df: pd.DataFrame, family: str, link: str) -> dict:
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(df, npartitions=2)
    kw = dict(family=family, link=link)
    if (FAMILIES[family].parameter_names and family != "negbin") or family == "ordinal":  # in memory only, said so
        for fit in (lambda: glmmlab.glmm(FORMULA, ddf, **kw), lambda: glmmlab.fit_glmm(ddf, "y", "g", ["x"], **kw)):
            with pytest.raises(glmmlab.GlmmInputError, match=f"the {family} family is not available on a Dask"):
                fit()
        return {}
    return {"dask glmm": glmmlab.glmm(FORMULA, ddf, **kw).to_dict(diagnostics=False),
            "dask fit_glmm": glmmlab.fit_glmm(ddf, "y", "g", ["x"], **kw).to_dict(diagnostics=False)}


# -- the test ---------------------------------------------------------------------------------------------------
MEASURED: dict = {}


@pytest.mark.parametrize("family,link", pairs())
def test_every_front_door_gives_the_same_fit(family, link, tmp_path, web, dask_client):
    df = simulate(family, link)
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    docs = python_doors(df, family, link)
    docs.update(cli_doors(str(csv), family, link))
    docs.update(web_doors(web, df, family, link))
    docs.update(dask_doors(df, family, link))
    ref = summary(docs.pop("glmm"))
    assert (ref["family_parameter"] is not None) == bool(FAMILIES[family].parameter_names)
    assert not docs["fit_glmm"]["singular"], "the simulated data must give a variance away from 0"
    MEASURED[(family, link)] = {door: assert_same_fit(door, summary(doc), ref) for door, doc in docs.items()}
    print(json.dumps({f"{family}-{link}": {d: {k: float(f"{v:.1e}") for k, v in e.items()}
                                           for d, e in MEASURED[(family, link)].items()}}))


def test_the_negative_binomial_through_fit_glmm_estimates_theta():
    """The defect of issue 17: fit_glmm fitted the negative binomial with theta fixed at 1."""
    df = simulate("negbin", "log")
    a = glmmlab.fit_glmm(df, "y", "g", ["x"], family="negbin")
    b = glmmlab.glmm(FORMULA, df, family="negbin")
    assert a.family_parameter is not None and a.family_parameter["value"] != 1.0
    assert a.family_parameter == pytest.approx(b.family_parameter)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)
    assert a.to_dict()["family_parameter"]["name"] == "theta"
