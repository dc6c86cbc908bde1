"""glmmTMB's extra families (nbinom1, beta_family, betabinomial, t_family, tweedie) against glmmTMB 1.1.5.

Cases: every case of ../shared/reference/breadth whose README tags it ``family`` and nothing else (no zi, disp
or covstruct: sim_beta, sim_betabinomial, cbpp_betabinomial, sim_t, sim_tweedie), and those of
tests/reference/breadth_local, made by the same glmmTMB with make_reference.R there, for what the breadth set has
no case of: nbinom1 without zero-inflation (owls_nbinom1, sim_nbinom1) and a Tweedie power held at 1.5
(sim_tweedie_power). Each is fitted as a user would: ``glmm(formula, read_table(csv), family=...)``.

Tolerances (issue 20, "Agreement with glmmTMB"), never loosened to pass:
- log-likelihood never more than 1e-3 below glmmTMB's, nor more than 0.05 above it;
- fixed effects within 0.03 of their (glmmTMB) standard error; standard errors within 2 % (relative);
- variance components within 3 %; every family parameter (phi; sigma and df; phi and power) within 3 %;
- conditional modes within 0.03 of their spread (the SD of glmmTMB's modes of the term);
- fitted means within 0.03 SD of glmmTMB's fitted means;
- exactly: k (glmmTMB's df), the names of the coefficients, groups and family parameters, n_obs.
cbpp_betabinomial is singular (the README's quirk: the herd SD runs to the boundary and phi absorbs it): only its
log-likelihood, fixed effects, SEs and phi are compared, and the fit must say singular.

Without R: each family's density against scipy.stats (the Tweedie's: its series against a brute-force sum, and
its probabilities summing to 1), the first three eta derivatives of every member's row state against central
differences, and the exact gradient of the Laplace deviance, the family's parameters included, against
differences of the deviance; bad input and the front doors' names.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES, resolve
from glmmlab.engine.families.glmmtmb import (
    beta_family,
    betabinomial_family,
    nbinom1_family,
    t_family,
    tweedie_family,
    tweedie_log_series,
    tweedie_sample,
)
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from glmmlab.engine.model.options import OPTIONS
from glmmlab.interfaces import cli
from glmmlab.interfaces.cli import read_table
from tests.conftest import REFERENCE, missing_reference, reference_files
from tests.gradients import central_differences

BREADTH = REFERENCE / "breadth"
LOCAL = Path(__file__).resolve().parents[1] / "reference" / "breadth_local"
GLMMTMB_FAMILIES = ("nbinom1", "beta_family", "betabinomial", "t_family", "tweedie")

LOGLIK_BELOW, LOGLIK_ABOVE = 1e-3, 0.05
EST_SE, SE_REL, VAR_REL, PARAM_REL, MODE_SPREAD, FITTED_SD = 0.03, 0.02, 0.03, 0.03, 0.03, 0.03


def _cases() -> list:
    shared = [p for p in reference_files(BREADTH) if json.loads(p.read_text()).get("needs") == ["family"]]
    if not shared:
        return [missing_reference(BREADTH)]
    local = [p for p in reference_files(LOCAL)  # the zero and dispersion models' are test_reference_zi's
             if not {"zi", "hurdle", "disp"} & set(json.loads(p.read_text()).get("needs", []))]
    return [pytest.param(p, id=p.stem) for p in shared + local
            if json.loads(p.read_text())["family"] in GLMMTMB_FAMILIES]


_fits: dict = {}


def _fit(path):
    if path not in _fits:
        ref = json.loads(path.read_text())
        csv = REFERENCE / ref["csv"] if ref.get("csv") else path.with_suffix(".csv")
        res = glmmlab.glmm(ref["formula"], read_table(str(csv)), family=ref["family"], link=ref["link"],
                           tweedie_power=ref.get("tweedie_power"))
        _fits[path] = (ref, ref["results"]["ML"], res, res.to_dict())
    return _fits[path]


@pytest.mark.parametrize("path", _cases())
def test_structure(path):
    ref, r, res, doc = _fit(path)
    assert doc["model"]["family"] == ref["family"] and doc["model"]["link"] == ref["link"]
    assert doc["converged"] is True, doc["warnings"]
    assert doc["method"] == "Laplace"
    assert [f["variable"] for f in doc["fixed_effects"]] == list(r["fixef"]["cond"])
    assert doc["n_obs"] == r["nobs"] and doc["groups"] == r["ngroups"]
    assert doc["fit"]["k"] == r["df"]
    assert doc["fit"]["aic"] == pytest.approx(r["AIC"], abs=2 * (LOGLIK_BELOW + LOGLIK_ABOVE))
    assert doc["singular"] == r["singular"]
    assert [x["component"] for x in doc["random_effects"]] == [v["component"] for v in r["varcorr"]]  # no Residual
    assert list(doc["family_parameter"]["parameters"]) == list(r["family_parameter"])
    assert res.family_params == doc["family_parameter"]["parameters"]
    assert doc["family_parameter"]["name"] == next(iter(r["family_parameter"]))
    assert res.sigma == 1.0 and doc["icc"] is None
    assert "Hessian" in res.se_kind


@pytest.mark.parametrize("path", _cases())
def test_values(path):
    ref, r, res, doc = _fit(path)
    ll = doc["fit"]["log_likelihood"]
    assert r["logLik"] - LOGLIK_BELOW <= ll <= r["logLik"] + LOGLIK_ABOVE, (ll, r["logLik"])
    for f in doc["fixed_effects"]:
        name = f["variable"]
        assert abs(f["estimate"] - r["fixef"]["cond"][name]) <= EST_SE * r["se"]["cond"][name], name
        assert f["std_error"] == pytest.approx(r["se"]["cond"][name], rel=SE_REL), name
    for name, value in r["family_parameter"].items():
        assert res.family_params[name] == pytest.approx(value, rel=PARAM_REL), name
    if r["singular"]:
        return  # cbpp_betabinomial: the herd SD and the modes carry no information (README)
    mine = {(x["component"], x["term"]): x["variance"] for x in doc["random_effects"]}
    for v in r["varcorr"]:
        assert mine[(v["component"], v["var1"])] == pytest.approx(v["vcov"], rel=VAR_REL), v
    rr = r["ranef"]
    spread = {t: float(np.std([cv for tt, cv in zip(rr["term"], rr["condval"]) if tt == t])) for t in rr["term"]}
    blups = {(b["component"], b["term"], b["group"]): b["value"] for b in doc["blup"]}
    for g, t, lv, cv in zip(rr["grpvar"], rr["term"], rr["grp"], rr["condval"]):
        assert abs(blups[(g, t, lv)] - cv) <= MODE_SPREAD * spread[t], (g, t, lv)
    fitted = np.array(doc["diagnostics"]["fitted_values"])
    assert doc["diagnostics"]["row"] == r["rows"]
    assert np.max(np.abs(fitted - np.array(r["fitted"]))) <= FITTED_SD * np.std(r["fitted"])


# -- the families without R ---------------------------------------------------------------------------------------
def _response(fam, y, trials=None) -> Response:
    return Response(np.asarray(y, dtype=float), fam, trials)


def _members():
    rng = np.random.default_rng(20261205)
    n = 60
    eta = rng.normal(0.0, 0.8, n)
    out = []
    mu_c = np.exp(eta + 1.0)
    yc = rng.negative_binomial(mu_c / 2.5, 1 / 3.5).astype(float)
    out.append(("nbinom1-log", nbinom1_family(2.5), yc, None, eta + 1.0, "log",
                lambda m: stats.nbinom.logpmf(yc, m / 2.5, 1 / 3.5)))
    mu, phi = special.expit(eta), 7.3
    y = rng.beta(mu * phi, (1 - mu) * phi)
    out.append(("beta-logit", beta_family(phi), y, None, eta, "logit",
                lambda m: stats.beta.logpdf(y, m * phi, (1 - m) * phi)))
    out.append(("beta-probit", beta_family(phi), y, None, 0.6 * eta, "probit",
                lambda m: stats.beta.logpdf(y, m * phi, (1 - m) * phi)))
    nt = rng.integers(1, 25, n).astype(float)
    k = rng.binomial(nt.astype(int), mu).astype(float)
    out.append(("betabinomial-logit", betabinomial_family(phi), k / nt, nt, eta, "logit",
                lambda m: stats.betabinom.logpmf(k, nt, m * phi, (1 - m) * phi)))
    yt = 2.0 + eta + 1.3 * rng.standard_t(3.5, n)
    out.append(("t-identity", t_family(1.3, 3.5), yt, None, 2.0 + eta + 0.3 * rng.normal(size=n), "identity",
                lambda m: stats.t.logpdf(yt, 3.5, m, 1.3)))
    yw = tweedie_sample(rng, np.exp(eta + 0.5), 1.2, 1.45)
    out.append(("tweedie-log", tweedie_family(1.2, 1.45), yw, None, eta + 0.5, "log", None))
    return out


MEMBERS = _members()


@pytest.mark.parametrize("case", MEMBERS, ids=[m[0] for m in MEMBERS])
def test_density_and_eta_derivatives(case):
    _, fam, y, trials, eta, link, reference = case
    resp = _response(fam, y, trials)
    lk = LINKS[link]
    rs = row_state(resp, eta, lk)
    if reference is not None:  # log f = c - dev / 2, c the response's constant
        np.testing.assert_allclose(resp.sat - 0.5 * rs.dev, reference(rs.mu), rtol=1e-12, atol=1e-11)
    h = 1e-5
    up, down = row_state(resp, eta + h, lk), row_state(resp, eta - h, lk)
    from glmmlab.engine.families.distributions import dev_eta3
    for exact, diff in ((rs.dev_eta, (up.dev - down.dev) / (2 * h)),
                        (rs.dev_eta2, (up.dev_eta - down.dev_eta) / (2 * h)),
                        (dev_eta3(fam, lk, resp.y, rs), (up.dev_eta2 - down.dev_eta2) / (2 * h))):
        np.testing.assert_allclose(exact, diff, rtol=1e-6, atol=1e-6 * (1 + np.max(np.abs(diff))))


@pytest.mark.parametrize("link", ["identity", "log"])
def test_t_parameter_partials_against_differences(link):
    """The t's closed-form partials of (log f, dev_eta, dev_eta2) in log sigma and log df (the gradient's) equal
    central differences of the row state in those parameters."""
    from glmmlab.engine.families.glmmtmb import t_family

    rng = np.random.default_rng(11)
    eta = rng.normal(1.0, 0.5, 80)
    lk = LINKS[link]
    y = lk.linkinv(eta) + 1.3 * rng.standard_t(3.0, eta.size)
    fam = t_family(1.3, 4.2)
    resp = _response(fam, y, None)
    exact = fam.parameter_partials(resp, row_state(resp, eta, lk))
    x = fam.to_internal(fam.parameters)
    h = 1e-5
    assert len(exact) == x.size == 2
    for k in range(x.size):
        sides = []
        for sign in (1.0, -1.0):
            xk = x.copy()
            xk[k] += sign * h
            rs = row_state(resp.with_family(fam.with_parameters(fam.from_internal(xk))), eta, lk)
            sides.append((resp.sat - 0.5 * rs.dev, rs.dev_eta, rs.dev_eta2))
        for j in range(3):
            diff = (sides[0][j] - sides[1][j]) / (2 * h)
            np.testing.assert_allclose(exact[k][j], diff, rtol=1e-6, atol=1e-7 * (1 + np.max(np.abs(diff))))


def test_tweedie_series_and_density():
    """The series summed over its window equals the sum of its first 200,000 terms, and the density with the
    point mass at 0 integrates to 1."""
    for p in (1.05, 1.3, 1.5, 1.9, 1.99):
        for phi in (0.05, 1.2, 20.0):
            y = np.array([1e-6, 0.01, 0.3, 1.0, 4.0, 30.0, 200.0])
            a = (2 - p) / (1 - p)
            logz = -a * np.log(y) + a * np.log(p - 1) - (1 - a) * np.log(phi) - np.log(2 - p)
            j = np.arange(1, 200_001)[None, :]
            brute = special.logsumexp(j * logz[:, None] - special.gammaln(j + 1) - special.gammaln(-a * j), axis=1)
            np.testing.assert_allclose(tweedie_log_series(y, phi, p), brute, rtol=1e-13, atol=1e-12)
    for mu, phi, p in ((2.3, 1.2, 1.4), (0.4, 0.7, 1.8), (10.0, 3.0, 1.2)):
        fam = tweedie_family(phi, p)
        mass0 = math.exp(fam.logpdf(np.array([0.0]), np.array([mu]), 1.0)[0])
        def density(v, fam=fam, mu=mu):
            return math.exp(fam.logpdf(np.array([v]), np.array([mu]), 1.0)[0])

        body = integrate.quad(density, 0, np.inf, limit=400, epsabs=1e-12)[0]
        assert mass0 + body == pytest.approx(1.0, abs=1e-8), (mu, phi, p)


def _laplace(path):
    """The engine's Laplace deviance of a case (one block) and a point near its optimum."""
    from glmmlab.engine.model.terms import merge_terms
    from glmmlab.engine.solvers.blocked_cholesky import Structure
    from glmmlab.engine.solvers.laplace import GeneralLaplace
    from glmmlab.engine.solvers.likelihood import Likelihood
    from glmmlab.engine.solvers.row_blocks import BlockedLaplace
    from glmmlab.engine.solvers.scaling import scaled_design
    from glmmlab.services.modeling.modelframe import build_model_frame

    ref, r, res, _ = _fit(path)
    csv = REFERENCE / ref["csv"] if ref.get("csv") else path.with_suffix(".csv")
    fam, lk = resolve(ref["family"], ref["link"])
    mf = build_model_frame(read_table(str(csv)), ref["formula"], family=ref["family"])
    Xs, T, _, _ = scaled_design(np.asarray(mf.X, dtype=float), list(mf.x_names))
    st = Structure(merge_terms(mf.terms))
    pw = np.ones(mf.n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
    trials = None
    if fam.trials_from_weights:
        trials, pw = pw, np.ones(mf.n)
    off = np.zeros(mf.n) if mf.offset is None else np.asarray(mf.offset, dtype=float)
    member = fam.with_parameters(tuple(res.family_params.values()))
    lap = GeneralLaplace(st, Xs, mf.y, pw, off, member, lk, trials=trials)
    lap.psi_gradient = True
    obj = BlockedLaplace([lap], Likelihood(member, mf.y, pw), st.n_theta, threads=False)
    x = np.concatenate([np.asarray(res.theta) * 0.8 + 0.02, np.linalg.solve(T, np.asarray(res.beta)) + 0.01,
                        member.to_internal(member.parameters) + 0.05])
    m = member.to_internal(member.parameters).size

    def value(v):
        f = member.with_parameters(member.from_internal(v[-m:]))
        obj.set_family(f, Likelihood(f, mf.y, pw))
        return obj.value(v[:-m])

    def value_and_grad(v):
        value(v)
        return obj.value_and_grad(v[:-m])

    return value, value_and_grad, x


@pytest.mark.parametrize("path", _cases())
def test_exact_gradient_with_the_family_parameters(path):
    """The Laplace deviance's gradient over (theta, beta, the family's parameters on glmmTMB's scale) against
    central differences of the deviance (h = 1e-5: errors of about 1e-6 relative), near each case's optimum."""
    value, value_and_grad, x = _laplace(path)
    _, g = value_and_grad(x)
    gn = central_differences(value, x)
    np.testing.assert_allclose(g, gn, rtol=1e-4, atol=1e-4 * np.max(np.abs(gn)))


@pytest.mark.parametrize("path", [
    pytest.param(LOCAL / "sim_nbinom1.json", id="sim_nbinom1"),
    pytest.param(BREADTH / "sim_betabinomial.json", id="sim_betabinomial"),
    pytest.param(BREADTH / "sim_t.json", id="sim_t"),
])
def test_blocks_do_not_change_the_fit(path):
    """Three blocks of whole groups in threads (each with its rows' trials) give the one block's fit."""
    if not path.exists():
        pytest.fail(f"no reference case {path}")
    ref = json.loads(path.read_text())
    data = read_table(str(path.with_suffix(".csv")))
    a, b = (glmmlab.glmm(ref["formula"], data, family=ref["family"], link=ref["link"], n_blocks=k) for k in (1, 3))
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-5)
    for name, value in a.family_params.items():
        assert b.family_params[name] == pytest.approx(value, rel=1e-7), name


# -- front doors and bad input ------------------------------------------------------------------------------------
def test_the_families_are_offered_by_every_front_door_with_glmmTMBs_spellings():
    for name in GLMMTMB_FAMILIES:
        assert name in FAMILIES and name in OPTIONS["family"].choices
    for alias, name in (("nbinom2", "negbin"), ("beta", "beta_family"), ("t", "t_family")):  # glmmTMB's
        assert resolve(alias, None)[0].name == name
        assert OPTIONS["family"].check(alias) == name
    from glmmlab.services.workbench.glmm_form import form_options

    general = {f["value"] for f in form_options()["general_families"]}
    simple = {f["value"] for f in form_options()["families"]}
    assert set(GLMMTMB_FAMILIES) <= general and not set(GLMMTMB_FAMILIES) & simple


def test_the_command_line_fits_glmmTMBs_families_by_their_names(tmp_path):
    csv = BREADTH / "sim_beta.csv"
    if not csv.exists():
        pytest.fail(f"no reference case {csv}")
    p = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(csv), "--formula",
                        "y ~ x + (1 | g)", "--family", "beta", "--format", "json", "--diagnostics", "none"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    ref = json.loads((BREADTH / "sim_beta.json").read_text())["results"]["ML"]
    assert doc["model"]["family"] == "beta_family"
    assert doc["family_parameter"]["parameters"]["phi"] == pytest.approx(ref["family_parameter"]["phi"], rel=1e-3)


def test_the_command_line_holds_the_tweedie_power():
    path = LOCAL / "sim_tweedie_power.json"
    ref = json.loads(path.read_text())
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(["fit", str(REFERENCE / ref["csv"]), "--formula", ref["formula"], "--family", "tweedie",
                           "--tweedie-power", "1.5", "--format", "json", "--diagnostics", "none"])
    assert status == 0
    doc = json.loads(out.getvalue())
    r = ref["results"]["ML"]
    assert doc["model"]["tweedie_power"] == 1.5 and doc["fit"]["k"] == r["df"]
    assert r["logLik"] - LOGLIK_BELOW <= doc["fit"]["log_likelihood"] <= r["logLik"] + LOGLIK_ABOVE
    assert doc["family_parameter"]["parameters"] == pytest.approx(r["family_parameter"], rel=PARAM_REL)


def _frame(y, **cols):
    import pandas as pd

    g = [f"g{i % 5}" for i in range(len(y))]
    return pd.DataFrame({"y": y, "x": np.linspace(-1, 1, len(y)), "g": g, **cols})


@pytest.mark.parametrize("family,y,pattern", [
    ("beta_family", [0.2, 0.5, 1.0, 0.3] * 5, r"beta_family response 'y' must lie strictly between 0 and 1; row 3 "),
    ("beta", [0.2, 0.0, 0.4, 0.3] * 5, r"beta_family response 'y' must lie strictly between 0 and 1; row 2 "),
    ("tweedie", [0.2, 1.5, -0.1, 0.0] * 5, r"tweedie response 'y' must be >= 0 .*row 3 has -0.1"),
    ("nbinom1", [1, 2, -1, 0] * 5, r"nbinom1 response 'y' must be counts >= 0; row 3"),
    ("betabinomial", [0.2, 1.5, 0.5, 0.0] * 5, r"betabinomial response 'y' must lie in \[0, 1\]"),
])
def test_a_response_outside_the_familys_range_is_refused_naming_the_column(family, y, pattern):
    with pytest.raises(GlmmInputError, match=pattern):
        glmmlab.glmm("y ~ x + (1 | g)", _frame(np.asarray(y, dtype=float)), family=family)


def test_a_beta_response_outside_the_unit_interval_is_refused_by_the_column_form_too():
    with pytest.raises(GlmmInputError, match=r"response 'y' must lie strictly between 0 and 1 for the beta_family"):
        glmmlab.fit_glmm(_frame(np.array([0.2, 0.5, 1.0, 0.3] * 5)), "y", "g", ["x"], family="beta_family")


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(family="tweedie", tweedie_power=2.5), r"tweedie_power must be a number between 1 and 2 \(exclusive\); "
                                                r"got 2.5"),
    (dict(family="tweedie", tweedie_power=1.0), r"tweedie_power must be a number between 1 and 2"),
    (dict(family="gamma", tweedie_power=1.5), r"tweedie_power is for the tweedie family"),
    (dict(family="nbinom1", nagq=5), r"nagq > 1 .* not available for the nbinom1 family"),
    (dict(family="quasibinomial"), r"unknown family 'quasibinomial'"),
    (dict(family="beta_family", link="log"), r"link 'log' is not available for the beta_family family"),
])
def test_bad_options_of_the_new_families(kwargs, pattern):
    y = np.array([0.2, 0.5, 0.7, 0.3] * 5)
    with pytest.raises(GlmmInputError, match=pattern):
        glmmlab.glmm("y ~ x + (1 | g)", _frame(y), **kwargs)


def test_weights_with_a_betabinomial_cbind_response_are_refused():
    data = _frame(np.zeros(20), s=np.arange(20) % 4, f=np.full(20, 3.0), w=np.ones(20))
    with pytest.raises(GlmmInputError, match=r"weights 'w' with the betabinomial response"):
        glmmlab.glmm("cbind(s, f) ~ x + (1 | g)", data, family="betabinomial", weights="w")


def test_profile_intervals_are_refused_and_wald_ones_use_the_hessian_ses():
    _, _, res, _ = _fit(LOCAL / "sim_nbinom1.json")
    with pytest.raises(GlmmInputError, match=r"profile intervals are not available for the nbinom1 family"):
        res.conf_int(method="profile")
    ci = res.conf_int(method="wald")
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(ci["upper"].to_numpy(), np.asarray(res.beta) + z * np.asarray(res.se), rtol=1e-10)
