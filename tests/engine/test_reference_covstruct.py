"""Covariance structures (us, diag, cs, ar1, toep) against glmmTMB 1.1.5.

Cases: every case of ../shared/reference/breadth whose README tags it ``covstruct`` (sleepstudy_us,
sleepstudy_diag, sleepstudy_cs, sim_cs_conditions, ovary_ar1, sim_longitudinal_ar1, sim_poisson_toep), each
fitted as a user would: ``glmm(formula, read_table(csv), family=..., reml=False)``. The references are maximum
likelihood fits (glmmTMB has no REML here), so the Gaussian cases are fitted with ``reml=False``.

Also the cases of tests/reference/covstruct_local (made by the same glmmTMB with make_reference.R there) for what
the shared set has no case of: a binomial ar1 model, ``ou`` over unequally spaced times (glmmTMB's
``ou(numFactor(hours) + 0 | id)``, here ``ou(0 + hours | id)``) and an ar1 model by REML (glmmTMB's REML = TRUE),
compared at the same tolerances (log-likelihood, k, fixed effects, SEs: the Hessian's for the binomial, SDs and
every implied correlation).

Tolerances (the issue's "Agreement", the same as for lme4's Laplace cases), never loosened to pass:
- log-likelihood never more than 1e-3 below glmmTMB's, nor more than 0.05 above it;
- fixed effects within 0.03 of their (glmmTMB) standard error;
- standard errors within 2 % (relative). glmmTMB's come from the Hessian of the Laplace (ML) deviance over every
  parameter. For the Poisson case that is the engine's ``se="hessian"`` (``std_error_hessian``; the default
  working-weight SEs differ by 6-7 % there); for the Gaussian cases the default, sigma^2 (X'V^-1X)^-1 at the ML
  estimates, which is the fixed effects' block of that inverse Hessian up to the (small) coupling of beta and
  the covariance parameters at the optimum;
- every random-effect SD and correlation (glmmTMB's varcorr and covstruct: sd, rho) within 3 % (relative; a
  correlation below 0.05 in size within 0.0015 absolute, 3 % of 0.05);
- the implied covariance matrix entrywise within 6 % (twice the SDs' 3 %: a variance is a square) or 3 % of
  its largest entry;
- conditional modes within 0.03 of their spread (the SD of glmmTMB's modes of the term), and their conditional
  SDs given the estimates (``condsd_given_params``) within 3 %: every level gets the whole block (ovary_ar1: 11
  mares x 31 visits = 341 modes, the unobserved visits predicted from the correlation);
- exactly: k (glmmTMB's df: the structure's parameters counted), the structure and column names of every term,
  the number of levels, the varcorr rows in glmmTMB's order (variances, then covariances (1,2), (1,3), ..., (2,3)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import glmmlab
from glmmlab.interfaces.cli import read_table
from tests.conftest import REFERENCE, missing_reference, reference_files

BREADTH = REFERENCE / "breadth"
LOCAL = Path(__file__).resolve().parents[1] / "reference" / "covstruct_local"
LOGLIK_BELOW, LOGLIK_ABOVE = 1e-3, 0.05
EST_SE, SE_REL, VC_REL, SMALL_CORR, MODE_SPREAD = 0.03, 0.02, 0.03, 0.05, 0.03


def _cases() -> list:
    cases = [p for p in reference_files(BREADTH) if "covstruct" in json.loads(p.read_text()).get("needs", [])]
    if not cases:
        return [missing_reference(BREADTH)]
    return [pytest.param(p, id=p.stem) for p in cases]


_fits: dict = {}


def _fit(path):
    if path not in _fits:
        ref = json.loads(path.read_text())
        se = "working" if ref["family"] == "gaussian" else "hessian"
        res = glmmlab.glmm(ref["formula"], read_table(str(path.with_suffix(".csv"))), family=ref["family"],
                           link=ref["link"], reml=False, se=se)
        _fits[path] = (ref, ref["results"]["ML"], res, res.to_dict(diagnostics=False))
    return _fits[path]


def _close(mine: float, theirs: float) -> bool:
    if abs(theirs) < SMALL_CORR:
        return abs(mine - theirs) <= VC_REL * SMALL_CORR
    return abs(mine / theirs - 1.0) <= VC_REL


def test_all_seven_cases_present():
    assert {p.id for p in _cases()} == {"sleepstudy_us", "sleepstudy_diag", "sleepstudy_cs", "sim_cs_conditions",
                                       "ovary_ar1", "sim_longitudinal_ar1", "sim_poisson_toep"}


@pytest.mark.parametrize("path", _cases())
def test_structure(path):
    ref, r, res, doc = _fit(path)
    assert doc["converged"] is True, doc["warnings"]
    assert doc["method"] == ("ML" if ref["family"] == "gaussian" else "Laplace")
    assert [f["variable"] for f in doc["fixed_effects"]] == list(r["fixef"]["cond"])
    assert doc["n_obs"] == r["nobs"] and doc["groups"] == r["ngroups"]
    assert doc["fit"]["k"] == r["df"]
    assert doc["singular"] == r["singular"]
    mine = doc["covariance_structures"]
    assert len(mine) == len(r["covstruct"])
    for m, t in zip(mine, r["covstruct"]):
        assert (m["component"], m["term"], m["structure"], m["dim"], m["n_levels"], m["names"]) == \
            (t["component"], t["term"], t["structure"], t["dim"], t["nlevels"], t["names"])
        assert (m["rho"] is None) == ("rho" not in t)
    # glmmTMB's varcorr rows, in its order: each term's variances, then its covariances (1,2), (1,3), ..., (2,3)
    var_rows = [(v["component"], v["var1"]) for v in r["varcorr"] if v["var2"] is None and v["grp"] != "Residual"]
    cov_rows = [(v["component"], v["var1"], v["var2"]) for v in r["varcorr"] if v["var2"] is not None]
    assert [(x["component"], x["term"]) for x in doc["random_effects"] if x["component"] != "Residual"] == var_rows
    assert [(c["component"], c["term1"], c["term2"]) for c in doc["random_correlations"]] == cov_rows


@pytest.mark.parametrize("path", _cases())
def test_values(path):
    ref, r, res, doc = _fit(path)
    ll = doc["fit"]["log_likelihood"]
    assert r["logLik"] - LOGLIK_BELOW <= ll <= r["logLik"] + LOGLIK_ABOVE, (ll, r["logLik"])
    se_hessian = doc.get("std_error_hessian")
    for f in doc["fixed_effects"]:
        name = f["variable"]
        assert abs(f["estimate"] - r["fixef"]["cond"][name]) <= EST_SE * r["se"]["cond"][name], name
        se = f["std_error"] if ref["family"] == "gaussian" else se_hessian[name]
        assert se == pytest.approx(r["se"]["cond"][name], rel=SE_REL), name
    sds = {(x["component"], x["term"]): x["std_dev"] for x in doc["random_effects"]}
    cors = {(c["component"], c["term1"], c["term2"]): c["correlation"] for c in doc["random_correlations"]}
    for v in r["varcorr"]:
        if v["grp"] == "Residual":
            assert res.sigma == pytest.approx(v["sdcor"], rel=VC_REL)
        elif v["var2"] is None:
            assert _close(sds[(v["component"], v["var1"])], v["sdcor"]), v
        else:
            assert _close(cors[(v["component"], v["var1"], v["var2"])], v["sdcor"]), v
    for m, t in zip(doc["covariance_structures"], r["covstruct"]):
        assert all(_close(a, b) for a, b in zip(m["sd"], t["sd"])), (m["sd"], t["sd"])
        if "rho" in t:
            theirs = np.atleast_1d(t["rho"])
            ours = np.atleast_1d(m["rho"])
            assert ours.shape == theirs.shape
            assert all(_close(a, b) for a, b in zip(ours, theirs)), (ours, theirs)
        assert np.allclose(m["cov"], t["cov"], rtol=2 * VC_REL, atol=VC_REL * np.max(np.abs(t["cov"])))


@pytest.mark.parametrize("path", _cases())
def test_conditional_modes(path):
    ref, r, res, doc = _fit(path)
    rr = r["ranef"]
    blups = {(b["component"], b["term"], b["group"]): (b["value"], b["std_error"]) for b in doc["blup"]}
    assert len(blups) == len(rr["grp"])
    spread = {t: float(np.std([cv for tt, cv in zip(rr["term"], rr["condval"]) if tt == t])) for t in rr["term"]}
    for g, t, lv, cv, sd in zip(rr["grpvar"], rr["term"], rr["grp"], rr["condval"], rr["condsd_given_params"]):
        value, se = blups[(g, t, lv)]
        assert abs(value - cv) <= MODE_SPREAD * spread[t], (g, t, lv)
        assert se == pytest.approx(sd, rel=VC_REL), (g, t, lv)


@pytest.mark.parametrize("path", sorted(LOCAL.glob("*.json")), ids=lambda p: p.stem)
def test_local_cases(path):
    ref = json.loads(path.read_text())
    r = ref["results"]
    gaussian = ref["family"] == "gaussian"
    res = glmmlab.glmm(ref["formula"], read_table(str(LOCAL / ref["csv"])), family=ref["family"], link=ref["link"],
                       reml=ref["reml"], se="working" if gaussian else "hessian")
    doc = res.to_dict(diagnostics=False)
    ll = doc["fit"]["log_likelihood"]
    assert r["logLik"] - LOGLIK_BELOW <= ll <= r["logLik"] + LOGLIK_ABOVE, (ll, r["logLik"])
    assert doc["fit"]["k"] == r["df"] and doc["converged"]
    se = {f["variable"]: f["std_error"] for f in doc["fixed_effects"]} if gaussian else doc["std_error_hessian"]
    for f in doc["fixed_effects"]:
        name = f["variable"]
        assert abs(f["estimate"] - r["fixef"][name]) <= EST_SE * r["se"][name], name
        assert se[name] == pytest.approx(r["se"][name], rel=SE_REL), name
    (entry,) = doc["covariance_structures"]
    assert all(_close(a, b) for a, b in zip(entry["sd"], r["sd"]))
    ours, theirs = np.array(entry["corr"]), np.array(r["corr"])
    assert all(_close(a, b) for a, b in zip(ours.ravel(), theirs.ravel()))
