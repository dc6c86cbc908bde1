"""Cumulative-link (ordinal) mixed models against ``ordinal::clmm`` 2022.11-16.

Cases: every case of ../shared/reference/breadth tagged ``ordinal`` (wine_clmm_logit, wine_clmm_probit: the
Laplace approximation), and those of tests/reference/ordinal_local, made by the same R with make_reference.R
there: clmm with nAGQ = 10 (logit and probit), the wine model without predictors (wine_clmm_null: thresholds
and the judge SD only; glmmlab's log-likelihood is 1.1e-3 above clmm's there because clmm's modes stop at its
inner gradient tolerance, gradTol = 1e-4: with clmm.control(gradTol = 1e-10) clmm gives -102.986885, 6e-7 from
glmmlab's, and -81.5654128 on wine_clmm_logit, 3e-10 from glmmlab's), crossed random intercepts
(sim_clmm_crossed: 40 judges x 30 items, 1,200 rows) and nested ones (sim_clmm_nested: 60 classes in 20
schools, 600 rows), and clm (no random effects; logit, probit, cloglog). Each clmm case is fitted as a user
would: ``glmm(formula, read_table(csv), family="ordinal", link=...)``.

Tolerances (the breadth README's, as for lme4's Laplace cases), never loosened to pass:
- log-likelihood never more than 1e-3 below clmm's, nor more than 0.05 above it;
- slopes and thresholds within 0.03 of their (clmm) standard error;
- standard errors within 2 % (relative): slopes', thresholds' and the random term's log SD's. clmm's come from
  the inverse Hessian of its deviance over (thresholds, slopes, log SDs); ours from the inverse Hessian over
  glmmlab's parameters (theta, the scaled slopes, the thresholds' first value and log increments), transformed
  to clmm's parameters by the Jacobians (exact at the optimum, where the gradient is zero). (clmm optimises the
  log SD of one random term but the SDs themselves for several, and its vcov follows: make_reference.R puts the
  latter on the log scale, SE(SD) / SD, as the breadth set's se_log_sd);
- the random effect's SD within 3 %; conditional modes within 0.03 of their spread (the SD of clmm's modes),
  their conditional SDs within 3 %;
- category probabilities, the fitted P(Y = y_i) and the linear predictors: within 1e-3 (absolute);
- exactly: k (clmm's df), the names of the slopes and thresholds (clmm's "1|2", ...), n_obs, groups.

Without R: the first three eta derivatives of the row log-probability of every link against central differences,
the exact gradient of the Laplace deviance in the thresholds against differences of the deviance, the Laplace and
quadrature log-likelihoods of a cloglog fit against a brute-force integral (clmm's cloglog is not clm's; see the
test), the order of the categories (an ordered categorical, the levels option), and bad input.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES, resolve
from glmmlab.engine.families.ordinal import ORDINAL_LINKS, category_probabilities, row_terms
from glmmlab.interfaces import cli
from glmmlab.interfaces.cli import read_table
from tests.conftest import REFERENCE, missing_reference, reference_files
from tests.gradients import central_differences

BREADTH = REFERENCE / "breadth"
LOCAL = Path(__file__).resolve().parents[1] / "reference" / "ordinal_local"
WINE = BREADTH / "wine_clmm_logit.csv"
FORMULA = "rating ~ temp + contact + (1 | judge)"

LOGLIK_BELOW, LOGLIK_ABOVE = 1e-3, 0.05
EST_SE, SE_REL, SD_REL, MODE_SPREAD, CONDSD_REL, PROB_ABS = 0.03, 0.02, 0.03, 0.03, 0.03, 1e-3


def _cases() -> list:
    shared = [p for p in reference_files(BREADTH) if "ordinal" in json.loads(p.read_text()).get("needs", [])]
    if not shared:
        return [missing_reference(BREADTH)]
    local = reference_files(LOCAL, "wine_clmm_*.json") + reference_files(LOCAL, "sim_clmm_*.json")
    return [pytest.param(p, id=p.stem) for p in shared + local]


def _laplace_cases() -> list:  # the cases with the modes (the nAGQ cases keep the estimates only)
    return [c for c in _cases() if not str(c.id).endswith("agq10")]


_fits: dict = {}


def _fit(path):
    if path not in _fits:
        ref = json.loads(Path(path).read_text())
        csv = BREADTH / ref["csv"] if ref.get("csv") else Path(path).with_suffix(".csv")
        res = glmmlab.glmm(ref["formula"], read_table(str(csv)), family="ordinal", link=ref["link"],
                           nagq=ref.get("nagq", 1))
        _fits[path] = (ref, ref["results"]["ML"], res, res.to_dict())
    return _fits[path]


@pytest.mark.parametrize("path", _cases())
def test_structure(path):
    ref, r, res, doc = _fit(path)
    assert doc["model"]["family"] == "ordinal" and doc["model"]["link"] == ref["link"]
    assert doc["converged"] is True, doc["warnings"]
    assert doc["method"] == ("AGQ" if ref.get("nagq", 1) > 1 else "Laplace")
    assert [f["variable"] for f in doc["fixed_effects"]] == list(r["fixef"]["cond"])  # no (Intercept)
    assert [t["threshold"] for t in doc["thresholds"]] == list(r["thresholds"])
    assert list(res.thresholds.index) == list(r["thresholds"])
    assert list(res.fixef["cond"].index) == list(r["fixef"]["cond"])  # glmmTMB's form of fixef: by model part
    assert res.fixef["cond"].to_numpy() == pytest.approx([f["estimate"] for f in doc["fixed_effects"]])
    assert doc["fit"]["k"] == r["df"] == len(r["thresholds"]) + len(r["fixef"]["cond"]) + len(r["varcorr"])
    if "nobs" in r:
        assert doc["n_obs"] == r["nobs"] and doc["groups"] == r["ngroups"]
        assert doc["ordinal"]["levels"] == ref["response_levels"]
        assert doc["fit"]["aic"] == pytest.approx(r["AIC"], abs=2 * (LOGLIK_BELOW + LOGLIK_ABOVE))
        assert doc["fit"]["bic"] == pytest.approx(r["BIC"], abs=2 * (LOGLIK_BELOW + LOGLIK_ABOVE))
        assert doc["singular"] == r.get("singular", False)
    assert doc["family_parameter"] is None and res.family_params == {}
    assert "Hessian" in res.se_kind
    assert res.llf == doc["fit"]["log_likelihood"]


@pytest.mark.parametrize("path", _cases())
def test_values(path):
    ref, r, res, doc = _fit(path)
    ll = doc["fit"]["log_likelihood"]
    assert r["logLik"] - LOGLIK_BELOW <= ll <= r["logLik"] + LOGLIK_ABOVE, (ll, r["logLik"])
    for f in doc["fixed_effects"]:
        name = f["variable"]
        assert abs(f["estimate"] - r["fixef"]["cond"][name]) <= EST_SE * r["se"]["cond"][name], name
        assert f["std_error"] == pytest.approx(r["se"]["cond"][name], rel=SE_REL), name
    for t in doc["thresholds"]:
        name = t["threshold"]
        assert abs(t["estimate"] - r["thresholds"][name]) <= EST_SE * r["se_thresholds"][name], name
        assert t["std_error"] == pytest.approx(r["se_thresholds"][name], rel=SE_REL), name
    for name, se in r["se_log_sd"].items():
        assert doc["ordinal"]["se_log_sd"][name] == pytest.approx(se, rel=SE_REL), name
    sd_ref = {v["grp"]: v["sdcor"] for v in r["varcorr"]}
    for v in doc["random_effects"]:
        assert v["std_dev"] == pytest.approx(sd_ref[v["component"]], rel=SD_REL)


@pytest.mark.parametrize("path", _laplace_cases())
def test_modes_and_probabilities(path):
    ref, r, res, doc = _fit(path)
    re_all = pd.DataFrame(r["ranef"])
    by_factor = {m.component: m for m in res.modes}
    assert set(by_factor) == set(re_all["grpvar"])
    for factor, re_ref in re_all.groupby("grpvar"):
        modes = by_factor[factor]
        got = dict(zip(modes.levels, modes.values[:, 0]))
        got_sd = dict(zip(modes.levels, modes.std_errors[:, 0]))
        spread = float(np.std(re_ref["condval"], ddof=1))
        assert len(got) == len(re_ref)
        for level, value, sd in zip(re_ref["grp"].astype(str), re_ref["condval"], re_ref["condsd"]):
            assert abs(got[level] - value) <= MODE_SPREAD * spread, (factor, level)
            assert got_sd[level] == pytest.approx(sd, rel=CONDSD_REL), (factor, level)
    if "category_probs" not in r:  # the local cases keep the modes only
        return
    assert list(np.asarray(res.rows)) == r["rows"]
    probs = np.asarray(doc["ordinal"]["category_probabilities"], dtype=float)
    assert probs.shape == (r["nobs"], len(ref["response_levels"]))
    assert np.max(np.abs(probs - np.asarray(r["category_probs"]))) <= PROB_ABS
    assert np.max(np.abs(np.asarray(doc["ordinal"]["fitted_probability"]) - np.asarray(r["fitted"]))) <= PROB_ABS
    assert np.max(np.abs(np.asarray(doc["ordinal"]["linear_predictor"]) - np.asarray(r["eta"]))) <= PROB_ABS
    assert np.allclose(res.category_probs.to_numpy(), probs) and np.allclose(probs.sum(axis=1), 1.0)


# -- without R ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("link", ORDINAL_LINKS)
def test_row_derivatives(link):
    """d/deta, d2/deta2, d3/deta3 of log P(Y = c) against central differences, every category, far into the
    tails too."""
    th = np.array([-1.3, 0.2, 0.9, 2.5])
    codes = np.repeat(np.arange(1, 6), 9)
    eta = np.tile(np.linspace(-6.0, 7.0, 9), 5)
    lp, l1, l2, l3 = row_terms(link, th, codes, eta, third=True)
    h = 1e-4
    up, dn = row_terms(link, th, codes, eta + h, third=True), row_terms(link, th, codes, eta - h, third=True)
    for k, d in enumerate((l1, l2, l3)):
        num = (up[k] - dn[k]) / (2 * h)
        assert np.allclose(d, num, rtol=1e-5, atol=1e-6), (link, k)
    probs = category_probabilities(link, th, eta)
    assert np.allclose(np.exp(lp), probs[np.arange(eta.size), codes - 1], rtol=1e-10, atol=1e-14)


def test_extreme_rows_stay_finite():
    """A row far into a tail keeps a finite log-probability and derivatives (the side of F that does not
    cancel; for the logit, the logarithmic path where the logistic functions underflow)."""
    th = np.array([-1.0, 1.0])
    for link in ORDINAL_LINKS:
        far = ((1, 790.0),) if link == "cloglog" else ((1, 790.0), (3, -790.0))  # cloglog's upper tail is
        # exp(-e^x): below every double beyond x = 709
        for code, eta in ((1, -60.0), (3, 60.0), (2, 0.0), (1, 30.0), (3, -30.0)) + far:
            out = row_terms(link, th, np.array([code]), np.array([eta]), third=True)
            assert all(np.isfinite(v).all() for v in out), (link, code, eta)


def test_threshold_gradient_is_exact():
    """The gradient of the Laplace deviance in (theta, beta, thresholds) against differences of the deviance, and
    the exact threshold gradient (OrdinalLaplace) against the general one (central differences of row states)."""
    from glmmlab.engine.model.terms import ModelFrame, RandomTerm, ones_column
    from glmmlab.engine.solvers.blocked_cholesky import Structure
    from glmmlab.engine.solvers.laplace import GeneralLaplace
    from glmmlab.engine.solvers.likelihood import Likelihood
    from glmmlab.engine.solvers.ordinal_fit import OrdinalLaplace
    from glmmlab.engine.solvers.row_blocks import BlockedLaplace

    df = read_table(str(WINE))
    X = np.column_stack([(df.temp == "warm").astype(float), (df.contact == "yes").astype(float)])
    codes, levels = pd.factorize(df.judge, sort=True)
    mf = ModelFrame("rating", df.rating.to_numpy(float), X, ["tempwarm", "contactyes"],
                    [RandomTerm("judge", codes, [str(v) for v in levels], ones_column(len(df)), ["(Intercept)"])],
                    np.arange(len(df)), len(df))
    from glmmlab.engine.model.terms import merge_terms

    ONES = np.ones(len(df))
    for link in ORDINAL_LINKS:
        fam0, lk = resolve("ordinal", link)
        base = fam0.for_levels(["1", "2", "3", "4", "5"], link)
        st = Structure(merge_terms(mf.terms))
        lap = OrdinalLaplace(st, X, mf.y, ONES, np.zeros(len(df)), base, lk)
        lap.psi_gradient = True
        obj = BlockedLaplace([lap], Likelihood(base, mf.y, ONES), st.n_theta, threads=False)
        general = GeneralLaplace(st, X, mf.y, ONES, np.zeros(len(df)), base, lk)  # central differences in psi
        general.psi_gradient = True
        general_obj = BlockedLaplace([general], Likelihood(base, mf.y, ONES), st.n_theta, threads=False)

        def value(z, obj=obj, base=base):
            f = base.with_parameters(base.from_internal(z[3:]))
            obj.set_family(f, Likelihood(f, mf.y, ONES))
            return obj.value(z[:3])

        z = np.concatenate([[0.9, 1.5, 0.8], base.to_internal([-1.2, 1.0, 3.5, 5.0])])
        f = base.with_parameters(base.from_internal(z[3:]))
        obj.set_family(f, Likelihood(f, mf.y, ONES))
        _, g = obj.value_and_grad(z[:3])
        num = central_differences(value, z, h=1e-5)
        assert np.allclose(g, num, rtol=1e-4, atol=1e-5), (link, g, num)
        general_obj.set_family(f, Likelihood(f, mf.y, ONES))
        assert np.allclose(g, general_obj.value_and_grad(z[:3])[1], rtol=1e-6, atol=1e-8), link
        obj.close()
        general_obj.close()


def _brute_force_loglik(link, th, beta, sd, X, y, g, nodes=80):
    """log prod_j int prod_i P(Y_i = y_i | u) phi(u) du by Gauss-Hermite with many nodes (not adaptive)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    total = 0.0
    for j in np.unique(g):
        m = g == j
        eta0 = X[m] @ beta
        vals = [np.prod(category_probabilities(link, th, eta0 + sd * zk)[np.arange(m.sum()), y[m] - 1]) for zk in z]
        total += float(np.log(np.dot(w, vals)))
    return total


def test_cloglog_against_brute_force():
    """No clmm reference for cloglog: ordinal 2022.11-16's clmm with link = "cloglog" fits another model than its
    clm (its logLik on the wine data, -82.729, is that of F(x) = exp(-exp(-x)), the loglog link, by brute-force
    integration). glmmlab's cloglog is clm's, F(x) = 1 - exp(-exp(x)): the model without random effects agrees
    with clm, and the AGQ log-likelihood (15 nodes) at the fit's estimates agrees with a brute-force integral."""
    clm = json.loads((LOCAL / "wine_clm.json").read_text())["fits"]
    df = read_table(str(WINE))
    X = np.column_stack([(df.temp == "warm").astype(float), (df.contact == "yes").astype(float)])
    y = df.rating.to_numpy().astype(int)
    for link, ref in clm.items():
        fam = FAMILIES["ordinal"].for_levels(["1", "2", "3", "4", "5"], link)
        beta, member, m2 = fam.fixed_effects_fit(X, y.astype(float), np.ones(len(y)), np.zeros(len(y)))
        assert -0.5 * m2 == pytest.approx(ref["logLik"], abs=1e-6), link
        assert np.allclose(member.parameters, list(ref["thresholds"].values()), atol=1e-4), link
        assert np.allclose(beta, list(ref["fixef"].values()), atol=1e-4), link
    res = glmmlab.glmm(FORMULA, df, family="ordinal", link="cloglog", nagq=15)
    g = pd.factorize(df.judge, sort=True)[0]
    sd = res.random_effects_table()[0]["std_dev"]
    exact = _brute_force_loglik("cloglog", res.thresholds.to_numpy(), res.beta, sd, X, y, g)
    assert res.llf == pytest.approx(exact, abs=1e-6)
    lap = glmmlab.glmm(FORMULA, df, family="ordinal", link="cloglog")
    assert abs(lap.llf - res.llf) < 0.05  # the Laplace approximation is close here (8 rows per judge)


# -- the order of the categories and the front doors ----------------------------------------------------------------
def test_category_order_and_levels_option():
    """An ordered categorical keeps its order; text levels are sorted; the levels option orders them. Reversing
    the order reverses the thresholds' signs and the slopes' (P(Y <= j) becomes P(Y >= j))."""
    df = read_table(str(WINE))
    base = glmmlab.glmm(FORMULA, df, family="ordinal")
    names = {1: "a-low", 2: "b", 3: "c", 4: "d", 5: "e-high"}
    text = df.assign(rating=df.rating.map(names))
    as_text = glmmlab.glmm(FORMULA, text, family="ordinal")
    assert list(as_text.thresholds.index) == ["a-low|b", "b|c", "c|d", "d|e-high"]
    assert np.allclose(as_text.thresholds.to_numpy(), base.thresholds.to_numpy(), atol=1e-6)
    order = ["e-high", "d", "c", "b", "a-low"]
    rev = text.assign(rating=pd.Categorical(text.rating, categories=order, ordered=True))
    flipped = glmmlab.glmm(FORMULA, rev, family="ordinal")
    assert list(flipped.thresholds.index) == ["e-high|d", "d|c", "c|b", "b|a-low"]
    assert np.allclose(flipped.thresholds.to_numpy(), -base.thresholds.to_numpy()[::-1], atol=1e-4)
    assert np.allclose(flipped.beta, -base.beta, atol=1e-4)
    assert flipped.llf == pytest.approx(base.llf, abs=1e-6)
    given = glmmlab.glmm(FORMULA, text, family="ordinal", levels=order)
    assert list(given.thresholds.index) == list(flipped.thresholds.index)
    assert given.to_dict()["model"]["levels"] == order
    numeric_order = glmmlab.glmm(FORMULA, df, family="ordinal", levels=[5, 4, 3, 2, 1])
    assert list(numeric_order.thresholds.index) == ["5|4", "4|3", "3|2", "2|1"]


def test_cli_and_text():
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["fit", str(WINE), "--formula", FORMULA, "--family", "ordinal", "--link", "probit",
                         "--format", "json", "--diagnostics", "none"])
    assert code == 0
    doc = json.loads(out.getvalue())
    assert [t["threshold"] for t in doc["thresholds"]] == ["1|2", "2|3", "3|4", "4|5"]
    assert doc["ordinal"]["levels"] == ["1", "2", "3", "4", "5"] and "category_probabilities" not in doc["ordinal"]
    text = glmmlab.glmm(FORMULA, read_table(str(WINE)), family="ordinal").summary()
    assert "Thresholds" in text and "1|2" in text and "(Intercept)" not in text
    bad = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(WINE), "--formula", FORMULA,
                          "--family", "ordinal", "--link", "log"], capture_output=True, text=True)
    assert bad.returncode == 2 and "link 'log' is not available for the ordinal family" in bad.stderr


@pytest.mark.parametrize("change, message", [
    (dict(data=lambda d: d.assign(rating=3)), "single category ('3')"),
    (dict(data=lambda d: d.assign(rating=np.arange(len(d)) * 0.5)), "at most 50 categories"),
    (dict(formula="rating ~ 0 + temp + contact + (1 | judge)"), "no intercept of its own"),
    (dict(link="identity"), "link 'identity' is not available for the ordinal family"),
    (dict(levels=[1, 2, 3, 4]), "values '5' that are not among the levels given"),
    (dict(levels="12345"), "levels must list the ordinal response's categories"),
    (dict(levels=[1, 1, 2, 3, 4, 5]), "must be distinct"),
    (dict(family="binomial", levels=[0, 1]), "levels orders the categories of an ordinal response"),
    (dict(formula="cbind(rating, rating) ~ temp + (1 | judge)"), "the ordinal family needs one column"),
])
def test_bad_input(change, message):
    df = read_table(str(WINE))
    data = change.get("data", lambda d: d)(df)
    with pytest.raises(GlmmInputError) as err:
        glmmlab.glmm(change.get("formula", FORMULA), data, family=change.get("family", "ordinal"),
                     link=change.get("link"), levels=change.get("levels"))
    assert message in str(err.value)


def test_what_follows_from_a_fit():
    """predict gives each category's probability (at the modes for the fit's own rows), the linear predictor with
    type='link'; Wald intervals, omnibus tests and model comparison work; what is not available yet says so."""
    df = read_table(str(WINE))
    res = glmmlab.glmm(FORMULA, df, family="ordinal")
    probs = res.predict(df)
    assert list(probs.columns) == ["1", "2", "3", "4", "5"]
    assert np.allclose(probs.to_numpy(), res.category_probs.to_numpy(), atol=1e-12)
    assert np.allclose(res.predict(df, type="link"), res.to_dict()["ordinal"]["linear_predictor"])
    assert list(res.conf_int().index) == ["tempwarm", "contactyes"]
    assert list(res.anova().index) == ["temp", "contact"]
    assert list(res.emmeans("temp", type="link")["temp"]) == ["cold", "warm"]
    smaller = glmmlab.glmm("rating ~ temp + (1 | judge)", df, family="ordinal")
    assert list(glmmlab.anova(smaller, res)["npar"]) == [6, 7]
    for call, words in ((lambda: res.conf_int(method="profile"), "not available for ordinal models"),
                        (lambda: res.emmeans("temp"), "use type='link'"),
                        (lambda: res.predict(df, interval="confidence"), "without intervals")):
        with pytest.raises(GlmmInputError, match=words):
            call()


@pytest.mark.parametrize("link", ORDINAL_LINKS)
def test_simulated_categories_follow_the_model(link):
    """The family's sampler (the simulations of DHARMa-style residuals, which hand it the linear predictor) draws
    each category with the model's probability: 200,000 draws at four linear predictors (one far beyond where
    the links' inverses round to 1), within 0.005 (about 4 standard errors) of category_probabilities."""
    th = np.array([-1.3, 0.2, 0.9, 2.5])
    fam = FAMILIES["ordinal"].for_levels(["a", "b", "c", "d", "e"], link).with_parameters(th)
    eta = np.array([-1.0, 0.4, 2.0, 45.0])
    y = fam.sample(np.random.default_rng(5), np.repeat(eta[:, None], 200_000, axis=1), np.ones((4, 1)), 1.0)
    freq = np.stack([(y == k).mean(axis=1) for k in range(1, 6)], axis=1)
    assert np.max(np.abs(freq - category_probabilities(link, th, eta))) < 0.005


def test_simulated_residuals_of_an_ordinal_fit():
    """DHARMa-style residuals of the wine fit: simulated from the fit's own member (categories, link,
    thresholds), uniform by the Kolmogorov-Smirnov test (seeded, so the same every run)."""
    res = glmmlab.glmm(FORMULA, read_table(str(WINE)), family="ordinal")
    sim = res.simulate_residuals(n_sim=250)
    assert sim.residuals.shape == (72,) and np.all((sim.residuals >= 0) & (sim.residuals <= 1))
    assert sim.to_dict()["tests"]["uniformity"]["p_value"] > 0.05
