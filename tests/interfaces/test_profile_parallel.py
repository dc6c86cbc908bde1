"""Profile intervals from 2,000 rows run in worker processes (services/profiling.PARALLEL_ROWS): the fit's family
and link travel there by pickling, so they hold no lambdas (issue 23). Through Python and the command line; the
web API's test is in tests/web/test_intervals_api.py."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.distributions import negbin_family
from glmmlab.engine.families.links import LINKS
from glmmlab.services.modeling.profiling import PARALLEL_ROWS


def big_frame(n: int = PARALLEL_ROWS + 400, seed: int = 3) -> pd.DataFrame:
    """A Gaussian random intercept above the parallel path's threshold (fits and profiles in a few seconds)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 30, n)
    x = rng.normal(size=n)
    u = rng.normal(scale=0.7, size=30)
    return pd.DataFrame({"y": 1.0 + 0.5 * x + u[g] + rng.normal(size=n), "x": x, "g": [f"g{k}" for k in g]})


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson", "gamma", "negbin"])
def test_families_and_links_pickle_with_the_same_numbers(family):
    fam = negbin_family(2.5) if family == "negbin" else FAMILIES[family]
    back = pickle.loads(pickle.dumps(fam))
    mu = np.array([0.2, 0.5, 0.7])
    y = np.array([0.1, 1.0, 0.6])
    assert np.array_equal(back.variance(mu), fam.variance(mu))
    assert np.array_equal(back.variance_d1(mu), fam.variance_d1(mu))
    assert np.array_equal(back.unit_deviance(y, mu), fam.unit_deviance(y, mu))
    assert np.array_equal(back.logpdf(y, mu, 1.3), fam.logpdf(y, mu, 1.3))
    assert np.array_equal(back.mu_valid(mu), fam.mu_valid(mu))
    for link in LINKS.values():
        lk = pickle.loads(pickle.dumps(link))
        assert np.array_equal(lk.linkfun(mu), link.linkfun(mu)) and np.array_equal(lk.linkinv(mu), link.linkinv(mu))


def test_negbin_functions_are_those_of_theta():
    fam = negbin_family(2.0)
    mu = np.array([1.0, 3.0])
    assert np.array_equal(fam.variance(mu), mu + mu * mu / 2.0)
    assert np.array_equal(fam.variance_d1(mu), 1.0 + 2.0 * mu / 2.0)


@pytest.mark.parametrize("family, link", [("gaussian", None), ("gamma", "log")])
def test_profile_intervals_above_the_parallel_threshold_python_with_threads(family, link):
    """With another thread running (a notebook kernel, the web server) the workers start from a fork server, so
    what they need is pickled: the fit's family and link too."""
    df = big_frame()
    if family == "gamma":
        df["y"] = np.exp(df["y"] / 3.0)
    m = glmmlab.glmm("y ~ x + (1 | g)", df, family=family, link=link)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        ci = m.conf_int(method="profile")
    finally:
        stop.set()
        other.join()
    lower, upper = np.asarray(ci["lower"], float), np.asarray(ci["upper"], float)
    assert list(ci.index) == ["sd_(Intercept)|g", "sigma", "(Intercept)", "x"]
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower < upper), ci
    assert lower[3] < float(m.params["x"]) < upper[3] and lower[2] < float(m.params["(Intercept)"]) < upper[2]


def test_profile_intervals_above_the_parallel_threshold_command_line(tmp_path):
    path = tmp_path / "big.csv"
    big_frame().to_csv(path, index=False)
    p = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(path), "--formula",
                        "y ~ x + (1 | g)", "--ci", "profile", "--format", "json", "--diagnostics", "none"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    rows = doc["intervals"]["rows"]
    assert len(rows) == 4 and all(r["lower"] < r["upper"] for r in rows), rows
