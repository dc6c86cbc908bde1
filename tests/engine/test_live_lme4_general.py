"""Adaptive quadrature for models with binomial trials and offsets, checked against lme4 run live (the stored
references have no nAGQ > 1 for these). Runs only where Rscript with lme4 and jsonlite is installed.

Tolerances as in test_reference_lme4.py: fixed effects within 0.02 SE, theta within 0.5 %. lme4's AGQ value
leaves out the constant of the density (sum of log choose(m, k) + saturated terms for binomial trials,
sum(y log y - y - log y!) for Poisson); we keep it, so the constant is added to lme4's before comparing, and our
log-likelihood must not be below lme4's by more than 1e-3.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from scipy.special import gammaln, xlogy

import glmmlab
from glmmlab.interfaces.cli import read_table
from tests.conftest import MODELS

R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(args[1])
fam <- switch(args[3], binomial=binomial(), poisson=poisson())
m <- glmer(as.formula(args[2]), data=d, family=fam, nAGQ=as.integer(args[4]),
           control=glmerControl(optimizer="bobyqa"))
cat(toJSON(list(logLik=as.numeric(logLik(m)), fixef=as.list(fixef(m)),
  se=as.list(sqrt(diag(as.matrix(vcov(m, use.hessian=FALSE))))), theta=unname(getME(m, "theta"))),
  digits=15, auto_unbox=TRUE))
"""


def _have_lme4() -> bool:
    if not shutil.which("Rscript"):
        return False
    return subprocess.run(["Rscript", "-e", "library(lme4); library(jsonlite)"], capture_output=True).returncode == 0


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _have_lme4(), reason="Rscript with lme4 not installed")]


@pytest.mark.parametrize("name,family", [("cbpp_trials", "binomial"), ("mmmec_offset", "poisson")])
def test_agq_with_trials_and_offsets_equals_lme4(tmp_path, name, family):
    ref = json.loads((MODELS / f"{name}.json").read_text())
    script = tmp_path / "fit.R"
    script.write_text(R_SCRIPT)
    p = subprocess.run(["Rscript", str(script), str(MODELS / f"{name}.csv"), ref["formula"], family, "10"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lme4 = json.loads(p.stdout)
    data = read_table(str(MODELS / f"{name}.csv"))
    res = glmmlab.glmm(ref["formula"], data, family=family, nagq=10)
    assert res.method == "AGQ" and res.converged
    if family == "binomial":
        s, f = data["incidence"].to_numpy(float), (data["size"] - data["incidence"]).to_numpy(float)
        m, y = s + f, s / (s + f)
        const = float(np.sum(gammaln(m + 1) - gammaln(s + 1) - gammaln(f + 1)
                             + m * (xlogy(y, y) + xlogy(1 - y, 1 - y))))
    else:
        y = data["deaths"].to_numpy(float)
        const = float(np.sum(xlogy(y, y) - y - gammaln(y + 1)))
    assert res.log_likelihood >= lme4["logLik"] + const - 1e-3
    assert res.log_likelihood <= lme4["logLik"] + const + 0.05
    for name_, b, _se in zip(res.names, res.beta, res.se):
        assert abs(b - lme4["fixef"][name_]) <= 0.02 * lme4["se"][name_], name_
    assert res.theta[0] == pytest.approx(lme4["theta"], rel=5e-3)


def test_singular_random_slope_fit_equals_lmer(tmp_path):
    """A random slope with no variance: a boundary fit that must still converge to lmer's optimum."""
    rng = np.random.default_rng(3)
    n, G = 3000, 60
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    y = 0.2 + 0.5 * x + rng.normal(scale=0.6, size=G)[g] + rng.normal(size=n)
    import pandas as pd

    path = tmp_path / "sing.csv"
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(path, index=False)
    script = tmp_path / "fit.R"
    script.write_text('suppressMessages({library(lme4); library(jsonlite)}); d <- read.csv(commandArgs(TRUE)[1]);'
                      'm <- lmer(y ~ x + (1 + x | g), d); cat(toJSON(list(logLik=as.numeric(logLik(m)),'
                      'singular=isSingular(m), fixef=unname(fixef(m))), digits=15, auto_unbox=TRUE))')
    p = subprocess.run(["Rscript", str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lme4 = json.loads(p.stdout)
    res = glmmlab.glmm("y ~ x + (1 + x | g)", read_table(str(path)))
    assert res.singular is True and lme4["singular"] is True and res.converged
    assert abs(res.log_likelihood - lme4["logLik"]) <= 1e-4
    assert any(w.startswith("Singular fit") for w in res.warnings)
    np.testing.assert_allclose(res.beta, lme4["fixef"], rtol=1e-4)


def _have_glmmtmb() -> bool:
    return shutil.which("Rscript") is not None and subprocess.run(
        ["Rscript", "-e", "library(glmmTMB); library(jsonlite)"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _have_glmmtmb(), reason="Rscript with glmmTMB not installed")
def test_negative_binomial_identity_link_equals_glmmtmb(tmp_path):
    """The negative binomial with the identity link (the references have the log link only)."""
    import pandas as pd

    rng = np.random.default_rng(2)
    n, G = 800, 40
    g = rng.integers(0, G, n)
    x = rng.uniform(0, 1, n)
    mu = 3 + 4 * x + rng.normal(scale=0.8, size=G)[g]
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    path = tmp_path / "nb.csv"
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(path, index=False)
    script = tmp_path / "fit.R"
    script.write_text('suppressMessages({library(glmmTMB); library(jsonlite)}); d <- read.csv(commandArgs(TRUE)[1]);'
                      'm <- glmmTMB(y ~ x + (1 | g), d, family = nbinom2(link = "identity"));'
                      'cat(toJSON(list(logLik=as.numeric(logLik(m)), fixef=unname(fixef(m)$cond),'
                      'theta=sigma(m), sd=sqrt(VarCorr(m)$cond$g[1])), digits=15, auto_unbox=TRUE))')
    p = subprocess.run(["Rscript", str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    tmb = json.loads(p.stdout)
    res = glmmlab.glmm("y ~ x + (1 | g)", read_table(str(path)), family="negbin", link="identity")
    assert res.converged and res.log_likelihood >= tmb["logLik"] - 1e-3
    assert res.log_likelihood <= tmb["logLik"] + 0.05
    np.testing.assert_allclose(res.beta, tmb["fixef"], rtol=1e-4)
    assert res.family_parameter["value"] == pytest.approx(tmb["theta"], rel=1e-3)
    assert res.theta[0] == pytest.approx(tmb["sd"], rel=1e-3)
