"""glmmlab's parametric bootstrap against lme4's ``bootMer`` (default run, nsim = 1000 as in R), and the random
effects it simulates.

- Moments (cbpp_trials, dyestuff; sleepstudy_slope marked slow; tests/reference/bootstrap/bootmer.json, made
  by make_bootstrap.R there): for each parameter (random-effect SDs and correlations, sigma, fixed effects) the
  mean and SD of glmmlab's 1000 bootstrap replicates agree with lme4's within their Monte Carlo error. Rule,
  with n1, n2 the successful refits of each run:
  |mean1 - mean2| <= 4 sqrt(sd1^2 / n1 + sd2^2 / n2), and |sd1 - sd2| <= 4 sqrt(se1^2 + se2^2), the Monte Carlo
  SE of a sample SD being se = sd sqrt((kurtosis - 1) / (4 n)) (sd / sqrt(2 n) for a normal; each run's own
  kurtosis, since a binomial fixed effect's near-separated replicates give heavy tails). Two runs estimating the
  same distribution fail one comparison with probability about 6e-5.
- The simulated random effects (glmmlab.engine.inference.intervals.Simulator): for a correlated random slope, the sample
  covariance of many draws of one level's effects is the fitted Sigma within Monte Carlo error (it would not be
  with the identity, with the Cholesky factor transposed, or with the SDs alone: checked by hand on such
  mutants of Simulator).
- A refit from the fit's theta reaches the optimum (it used to stop at theta = 0 below it, where the deviance,
  even in theta, has zero slope; the general engine now probes off that boundary).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.inference.intervals import Simulator, VarianceLayout
from glmmlab.engine.model.terms import merge_terms
from tests.conftest import REFERENCE

BOOTMER = Path(__file__).resolve().parents[1] / "reference" / "bootstrap" / "bootmer.json"
REF = json.loads(BOOTMER.read_text())
FAMILY = {"binomial": "binomial", "gaussian": "gaussian"}


def _moments(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    t = t[np.all(np.isfinite(t), axis=1)]
    c = t - t.mean(axis=0)
    kurt = np.mean(c ** 4, axis=0) / np.mean(c ** 2, axis=0) ** 2
    return t.mean(axis=0), t.std(axis=0, ddof=1), kurt, t.shape[0]


# the random slope takes ~2 x as long as the other two together (7-14 s): slow; the simulated effects of a random
# slope are checked in the default run by the last test
@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c == "sleepstudy_slope" else [])
                                  for c in REF])
def test_bootstrap_moments_match_bootmer(case):
    rb = REF[case]
    res = glmmlab.glmm(rb["formula"], pd.read_csv(REFERENCE / rb["data"]), family=FAMILY[rb["family"].lower()])
    start = time.perf_counter()
    ci = res.conf_int(method="boot", nsim=rb["nsim"], seed=20261130)
    seconds = time.perf_counter() - start
    assert list(ci.index) == rb["names"]
    assert ci.attrs["failed"] == 0 and rb["failed"] == 0
    m1, s1, k1, n1 = _moments(np.asarray(ci.attrs["replicates"], dtype=float))
    m2, s2, k2, n2 = np.array(rb["mean"]), np.array(rb["sd"]), np.array(rb["kurtosis"]), rb["n"]
    assert n1 == rb["nsim"]
    bad = []
    for j, name in enumerate(rb["names"]):
        tol_mean = 4 * math.sqrt(s1[j] ** 2 / n1 + s2[j] ** 2 / n2)
        tol_sd = 4 * math.hypot(s1[j] * math.sqrt((k1[j] - 1) / (4 * n1)), s2[j] * math.sqrt((k2[j] - 1) / (4 * n2)))
        if abs(m1[j] - m2[j]) > tol_mean:
            bad.append(f"{name} mean {m1[j]:.5g} vs lme4 {m2[j]:.5g} (tolerance {tol_mean:.3g})")
        if abs(s1[j] - s2[j]) > tol_sd:
            bad.append(f"{name} SD {s1[j]:.5g} vs lme4 {s2[j]:.5g} (tolerance {tol_sd:.3g})")
    assert not bad, "; ".join(bad) + f" [{seconds:.1f} s]"


def test_simulated_random_effects_are_normal_with_the_fitted_covariance():
    data = pd.read_csv(REFERENCE / "models" / "sleepstudy_slope.csv")
    res = glmmlab.glmm("Reaction ~ Days + (Days | Subject)", data)
    mf = res.model_frame()
    layout = VarianceLayout.of(merge_terms(mf.terms))
    sd_cor = layout.values(res.random_effects_table(), res.correlations or [])
    sd0, cor, sd1 = sd_cor  # lme4's order: sd_(Intercept), cor_Days.(Intercept), sd_Days
    sigma = np.array([[sd0 ** 2, cor * sd0 * sd1], [cor * sd0 * sd1, sd1 ** 2]])
    assert abs(cor) > 0.03 and sd0 / sd1 > 2  # a fit where the identity or a transposed factor would show
    sim = Simulator(mf, "gaussian", "identity", sd_cor, dict(zip(res.names, res.beta)), 0.0, None)
    # the effects are what draw() adds to eta (no residual: var_residual 0): per subject, the intercept shift
    # at Days = 0 and the slope from the difference at Days = 1, recovered from the rows of that design
    (block,) = merge_terms(mf.terms)
    assert block.q == 2 and np.all(block.Z[:, 0] == 1)
    days, codes = block.Z[:, 1], np.asarray(block.codes)
    first = codes == 0
    i0 = np.flatnonzero(first & (days == 0))[0]
    i1 = np.flatnonzero(first & (days == 1))[0]
    rng = np.random.default_rng(17)
    n = 40000
    draws = np.empty((n, 2))
    for k in range(n):
        y = sim.draw(rng) - sim.eta
        draws[k] = (y[i0], y[i1] - y[i0])
    assert np.all(np.abs(draws.mean(axis=0)) <= 4 * np.sqrt(np.diag(sigma) / n))
    S = np.cov(draws, rowvar=False)
    # Monte Carlo SE of a sample covariance of normals: sqrt((s_ij^2 + s_ii s_jj) / n)
    se = np.sqrt((sigma ** 2 + np.outer(np.diag(sigma), np.diag(sigma))) / n)
    assert np.all(np.abs(S - sigma) <= 4 * se), (S, sigma)
    # and the tests above would catch the usual mistakes: the identity, or the transposed Cholesky factor
    L = np.linalg.cholesky(sigma)
    for wrong in (np.eye(2), L.T @ L):
        assert np.any(np.abs(wrong - sigma) > 4 * se)


def test_bootstrap_refit_from_the_fits_theta_reaches_the_optimum():
    """cbpp_trials, replicates 19 and 92 of seed 20261130: a default-start fit, and lme4's refit() of the same
    responses, reach theta = 0.260 and 0.243 (-76.353, -73.694); glmmlab's refit from the original theta stopped
    at theta = 0 (-76.819 and -73.932) before the boundary probe, which gave its bootstrap 6.3% singular
    replicates of the herd SD against lme4's 1.5%."""
    import dataclasses

    from glmmlab.services.modeling import bootstrap as boot
    from glmmlab.services.modeling.fitting import fit_frame_spec

    rb = REF["cbpp_trials"]
    res = glmmlab.glmm(rb["formula"], pd.read_csv(REFERENCE / rb["data"]), family="binomial")
    payload = boot._payload(res)
    boot._init_worker(payload)
    try:
        seeds = np.random.SeedSequence(20261130).spawn(rb["nsim"])
        for i in (19, 92):
            y = boot._WORKER["simulator"].draw(np.random.default_rng(seeds[i]))
            mf = dataclasses.replace(payload["frame"], y=y)
            refit = fit_frame_spec(mf, payload["spec"], n_blocks=1, theta_start=payload["thetas"])
            fresh = fit_frame_spec(mf, payload["spec"], n_blocks=1)
            assert refit.log_likelihood >= fresh.log_likelihood - 1e-6, (i, refit.theta, fresh.theta)
    finally:
        boot._WORKER["blas"].restore_original_limits()
        boot._WORKER.clear()
