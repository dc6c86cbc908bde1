"""Covariance structures without R: the maps from a structure's parameters to Lambda and their derivatives, the
Laplace deviance's exact gradient through them (against central differences), the formula keywords, the
equivalences between structures (us = (x | g), diag = (x || g), ou on equally spaced times = ar1), REML, and bad
input refused with a message naming the term."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.covstruct import CovStructure
from glmmlab.engine.model.formula import parse_formula
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.glm_start import glm_irls
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.interfaces.cli import read_table
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.conftest import REFERENCE
from tests.gradients import central_differences

BREADTH = REFERENCE / "breadth"

STRUCTS = [CovStructure("cs", 4), CovStructure("ar1", 5), CovStructure("toep", 4),
           CovStructure("ou", 4, (0.0, 0.5, 2.0, 3.5))]


@pytest.mark.parametrize("s", STRUCTS, ids=lambda s: s.kind)
def test_factor_gives_the_structure_and_its_jacobian_its_derivative(s):
    rng = np.random.default_rng(3)
    phi = np.concatenate([rng.uniform(0.5, 2.0, s.n_sd), rng.uniform(-0.4, 0.4, s.n_cor)])
    lam, dlams = s.factor_and_jacobian(phi)
    assert np.allclose(lam, np.tril(lam))
    sd = s.sds(phi)
    R = s.correlation(phi)
    assert np.allclose(lam @ lam.T, np.outer(sd, sd) * R, atol=1e-12)
    if s.kind == "ar1":
        rho = s.rho(phi)[0]
        assert np.allclose(R, rho ** np.abs(np.subtract.outer(np.arange(5), np.arange(5))))
    if s.kind == "ou":
        t = np.array(s.times)
        assert np.allclose(R, np.exp(-np.abs(np.subtract.outer(t, t)) / s.range(phi)))
        assert s.rho(phi)[0] == pytest.approx(np.exp(-1.0 / s.range(phi)))
    assert len(dlams) == s.n_params
    for k in range(s.n_params):
        h = 1e-6
        up, down = phi.copy(), phi.copy()
        up[k] += h
        down[k] -= h
        numeric = (s.factor(up) - s.factor(down)) / (2 * h)
        np.testing.assert_allclose(dlams[k], numeric, atol=1e-7)


def test_cs_rho_range_and_toep_not_positive_definite_is_refused():
    cs = CovStructure("cs", 4)
    assert cs.rho(np.array([1, 1, 1, 1, -50.0]))[0] == pytest.approx(-1 / 3)
    toep = CovStructure("toep", 3)
    with pytest.raises(ValueError):
        toep.factor(np.array([1.0, 1.0, 1.0, 5.0, -5.0]))  # rho_1 ~ 0.98, rho_2 ~ -0.98: not a correlation


def _poisson_panel(seed=1, n_id=60, n_t=5, crossed=False):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_id), n_t)
    t = np.tile(np.arange(n_t), n_id)
    rho = 0.6
    C = rho ** np.abs(np.subtract.outer(np.arange(n_t), np.arange(n_t)))
    b = rng.multivariate_normal(np.zeros(n_t), 0.5 * C, size=n_id)
    eta = 0.5 + 0.1 * t + b[ids, t]
    site = rng.integers(0, 7, ids.size)
    if crossed:
        eta = eta + rng.normal(0, 0.4, 7)[site]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "tnum": t.astype(float), "time": [f"t{k + 1}" for k in t],
                         "id": [f"s{i:03d}" for i in ids], "site": [f"c{k}" for k in site]})


@pytest.mark.parametrize("formula,family", [
    ("y ~ tnum + ar1(0 + time | id)", "poisson"),
    ("y ~ tnum + toep(0 + time | id)", "poisson"),
    ("y ~ tnum + cs(0 + time | id) + (1 | site)", "poisson"),  # two factors: the split gradient
    ("y ~ tnum + ar1(0 + time | id) + (1 | site)", "poisson"),
    ("y ~ tnum + ou(0 + tnum | id)", "poisson"),
    ("y ~ tnum + ar1(0 + time | id)", "gamma"),  # an estimated dispersion: the direct gradient too
])
def test_exact_gradient_through_the_structures(formula, family):
    data = _poisson_panel(crossed="site" in formula)
    if family == "gamma":
        data["y"] = data["y"] + 0.5
    mf = build_model_frame(data, formula, family=family)
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    st = Structure(merge_terms(mf.terms))
    fam, lk = FAMILIES[family], LINKS["log"]
    pw, off = np.ones(mf.n), np.zeros(mf.n)
    lap = GeneralLaplace(st, Xs, mf.y, pw, off, fam, lk)
    b0, _ = glm_irls(Xs, mf.y, pw, off, fam, lk)
    th = st.theta_start()
    th = np.where(st.theta_lower() == 0.0, 0.6 * th + 0.05, 0.3)  # SDs off 1, correlation parameters off 0
    x = np.concatenate([th, b0 + 0.001])
    _, g = lap.value_and_grad(x)
    gn = central_differences(lap.value, x)
    np.testing.assert_allclose(g, gn, rtol=1e-4, atol=1e-4 * np.max(np.abs(gn)))


def _case(name):
    ref = json.loads((BREADTH / f"{name}.json").read_text())
    return ref, read_table(str(BREADTH / f"{name}.csv"))


def test_us_is_the_plain_term_and_diag_the_double_bar():
    _, data = _case("sleepstudy_us")
    for reml in (True, False):
        us = glmmlab.glmm("Reaction ~ Days + us(Days | Subject)", data, reml=reml)
        plain = glmmlab.glmm("Reaction ~ Days + (Days | Subject)", data, reml=reml)
        diag = glmmlab.glmm("Reaction ~ Days + diag(Days | Subject)", data, reml=reml)
        bars = glmmlab.glmm("Reaction ~ Days + (Days || Subject)", data, reml=reml)
        assert us.llf == pytest.approx(plain.llf, abs=1e-8)
        assert diag.llf == pytest.approx(bars.llf, abs=1e-8)
        assert us.to_dict()["fit"]["k"] == 6 and diag.to_dict()["fit"]["k"] == 5


def test_reml_fits_a_structured_model():
    ref, data = _case("sim_longitudinal_ar1")
    ml = glmmlab.glmm(ref["formula"], data, reml=False)
    reml = glmmlab.glmm(ref["formula"], data)
    assert reml.method == "REML" and reml.converged
    assert ml.llf == pytest.approx(ref["results"]["ML"]["logLik"], abs=1e-6)
    rho_ml = ml.to_dict()["covariance_structures"][0]["rho"]
    rho_reml = reml.to_dict()["covariance_structures"][0]["rho"]
    assert 0.5 < rho_ml < 0.9 and abs(rho_reml - rho_ml) < 0.05  # REML moves rho a little, not far


def test_ou_on_equally_spaced_times_is_ar1():
    ref, data = _case("sim_longitudinal_ar1")  # tnum = 1, ..., 8 and time = t1, ..., t8 on the same rows
    ar1 = glmmlab.glmm("y ~ tnum + trt + ar1(0 + time | id)", data, reml=False)
    ou = glmmlab.glmm("y ~ tnum + trt + ou(0 + tnum | id)", data, reml=False)
    assert ou.llf == pytest.approx(ar1.llf, abs=1e-6)
    a, o = ar1.to_dict()["covariance_structures"][0], ou.to_dict()["covariance_structures"][0]
    assert o["structure"] == "ou" and o["names"][:2] == ["tnum1", "tnum2"] and o["times"][:2] == [1.0, 2.0]
    assert o["rho"] == pytest.approx(a["rho"], rel=1e-4)
    assert o["range"] == pytest.approx(-1.0 / np.log(a["rho"]), rel=1e-4)


def test_ou_on_unequal_times_fits():
    ref, data = _case("sim_longitudinal_ar1")
    data = data.assign(hours=data["tnum"] ** 1.5)
    res = glmmlab.glmm("y ~ tnum + trt + ou(0 + hours | id)", data, reml=False)
    e = res.to_dict()["covariance_structures"][0]
    assert res.converged and e["dim"] == 8 and 0 < e["rho"] < 1
    corr = np.array(e["corr"])
    t = np.array(e["times"])
    assert np.allclose(corr, np.exp(-np.abs(np.subtract.outer(t, t)) / e["range"]), atol=1e-10)


def test_formula_keywords():
    f = parse_formula("y ~ x + ar1(0 + time | id) + diag(x | g) + (us(1 | h)) + cs(x | a/b)")
    assert [(r.kind, r.component) for r in f.random] == [("ar1", "id"), ("diag", "g"), ("us", "h"),
                                                          ("cs", "a"), ("cs", "b:a")]
    assert [r.kind for r in parse_formula("y ~ (x | g) + (x || h)").random] == ["us", "diag", "diag"]
    assert parse_formula("y ~ ar1(0 + time | id)").columns() == ["y", "time", "id"]


@pytest.mark.parametrize("formula,words", [
    ("y ~ tnum + foo(0 + time | id)", ["unknown covariance structure foo()", "ar1()"]),
    ("y ~ tnum + ar1(0 + time || id)", ["one '|'", "ar1(0 + time || id)"]),
    ("y ~ tnum + ar1(0 + tnum | id)", ["tnum", "ar1(0 + tnum | id)", "numeric", "factor"]),
    ("y ~ tnum + toep(0 + tnum | id)", ["toep(0 + tnum | id)", "factor"]),
    ("y ~ tnum + toep(tnum | id)", ["tnum in the random term toep(tnum | id)", "numeric", "toep(0 + factor(tnum)"]),
    ("y ~ tnum + ar1(1 + time | id)", ["an ar1 structure", "intercept", "ar1(0 + time | id)"]),
    ("y ~ tnum + ar1(0 + time:gap | id)", ["ar1(0 + time:gap | id)", "one variable"]),
    ("y ~ tnum + ar1(time | id)", ["ar1(time | id)", "intercept", "ar1(0 + time | id)"]),
    ("y ~ tnum + ar1(1 | id)", ["ar1(1 | id)", "intercept"]),
    ("y ~ tnum + ou(0 + time | id)", ["ou(0 + time | id)", "numeric column of times"]),
    ("y ~ tnum + cs(1 | id)", ["cs(1 | id)", "two or more"]),
    ("y ~ tnum + ar1(0 + gap | id)", ["ar1(0 + gap | id)", "not equally spaced", "ou("]),
    ("y ~ tnum + ar1(0 + sorted_badly | id)", ["not equally spaced", "t1, t10, t2"]),
])
def test_bad_input_names_the_term(formula, words):
    data = _poisson_panel(n_t=4)
    data["gap"] = data["tnum"].map({0.0: "1", 1.0: "2", 2.0: "4", 3.0: "5"})
    data["sorted_badly"] = data["tnum"].map({0.0: "t1", 1.0: "t2", 2.0: "t10", 3.0: "t3"})
    with pytest.raises(GlmmInputError) as e:
        glmmlab.glmm(formula, data, family="poisson")
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_equally_spaced_numeric_levels_are_accepted():
    data = _poisson_panel(n_t=4)
    data["visit"] = data["tnum"].map({0.0: "v01", 1.0: "v02", 2.0: "v03", 3.0: "v04"})
    res = glmmlab.glmm("y ~ tnum + ar1(0 + visit | id)", data, family="poisson")
    assert res.to_dict()["covariance_structures"][0]["names"] == ["visitv01", "visitv02", "visitv03", "visitv04"]


@pytest.mark.parametrize("formula", ["y ~ tnum + trt + ar1(0 + time | id)", "y ~ tnum + trt + ou(0 + tnum | id)",
                                     "y ~ tnum + trt + toep(0 + time | id)"])
def test_predictions_on_the_fitted_rows_are_the_fitted_values(formula):
    _, data = _case("sim_longitudinal_ar1")
    res = glmmlab.glmm(formula, data, reml=False)
    np.testing.assert_allclose(np.asarray(res.predict(data)), np.asarray(res.fittedvalues), rtol=1e-10, atol=1e-10)
    if "ou(" in formula:
        with pytest.raises(GlmmInputError, match="tnum2.5"):
            res.predict(data.assign(tnum=data["tnum"] + 0.5).head(3))


def test_profile_intervals_say_they_are_not_available_yet_and_the_bootstrap_works():
    _, data = _case("sim_longitudinal_ar1")
    res = glmmlab.glmm("y ~ tnum + trt + toep(0 + time | id)", data.loc[data["tnum"] <= 4], reml=False)
    assert list(res.conf_int().index) == ["(Intercept)", "tnum", "trttrt"]
    with pytest.raises(GlmmInputError, match="toep covariance structure"):
        res.conf_int(method="profile")
    # the bootstrap: responses simulated from the structured covariance, refitted with it; intervals of the SDs
    # and correlations it implies (lme4's names), of sigma and of the fixed effects
    ci = res.conf_int(method="boot", nsim=40, seed=7)
    names = list(ci.index)
    assert names[:5] == ["sd_timet1|id", "cor_timet2.timet1|id", "cor_timet3.timet1|id", "cor_timet4.timet1|id",
                         "sd_timet2|id"] and names[-4:] == ["sigma", "(Intercept)", "tnum", "trttrt"]
    assert ci.attrs["failed"] == 0
    e = res.to_dict(diagnostics=False)["covariance_structures"][0]
    est = {"sd_timet1|id": e["sd"][0], "cor_timet2.timet1|id": e["corr"][1][0], "tnum": float(res.params["tnum"])}
    for name, value in est.items():
        assert ci.loc[name, "lower"] < value < ci.loc[name, "upper"], name


def test_the_covstruct_accessor():
    ref, data = _case("sim_cs_conditions")
    res = glmmlab.glmm(ref["formula"], data, reml=False)
    cs = res.covstruct
    assert list(cs["structure"]) == ["cs"] and cs["dim"][0] == 4 and cs["cov"][0].shape == (4, 4)
    assert cs["rho"][0] == pytest.approx(ref["results"]["ML"]["covstruct"][0]["rho"], rel=1e-3)
    assert "covstruct" in dir(res)
    text = res.summary()
    assert "Covariance Structures" in text and "0 + cond | id" in text


def test_a_factor_under_the_double_bar_stays_one_correlated_term():
    """lme4's quirk kept: (0 + f || g) is one correlated term of the factor's columns (|| splits terms, not a
    factor's columns); diag(0 + f | g) is the diagonal one."""
    _, data = _case("sim_cs_conditions")
    bars = glmmlab.glmm("y ~ cond + (0 + cond || id)", data, reml=False)
    us = glmmlab.glmm("y ~ cond + (0 + cond | id)", data, reml=False)
    diag = glmmlab.glmm("y ~ cond + diag(0 + cond | id)", data, reml=False)
    assert bars.llf == pytest.approx(us.llf, abs=1e-8) and bars.to_dict()["fit"]["k"] == 4 + 10 + 1
    assert diag.to_dict()["fit"]["k"] == 4 + 4 + 1 and diag.llf < us.llf


def test_the_command_line_fits_a_structure_and_refuses_a_bad_one(capsys):
    import io
    from contextlib import redirect_stdout

    from glmmlab.interfaces import cli

    ref, _ = _case("ovary_ar1")
    csv = str(BREADTH / "ovary_ar1.csv")
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(["fit", csv, "--formula", ref["formula"], "--reml", "false", "--format", "json",
                           "--diagnostics", "none"])
    assert status == 0
    doc = json.loads(out.getvalue())
    r = ref["results"]["ML"]
    assert doc["fit"]["k"] == r["df"] and abs(doc["fit"]["log_likelihood"] - r["logLik"]) < 1e-3
    (entry,) = doc["covariance_structures"]
    assert entry["structure"] == "ar1" and entry["dim"] == 31 and entry["n_levels"] == 11
    with redirect_stdout(io.StringIO()):
        status = cli.main(["fit", csv, "--formula", "follicles ~ Time + ar1(0 + Time | Mare)"])
    assert status == 2
    assert "ar1(0 + Time | Mare)" in capsys.readouterr().err


def test_a_toep_estimate_on_the_edge_of_its_range_has_no_satterthwaite_df_and_says_why():
    _, data = _case("sim_longitudinal_ar1")
    res = glmmlab.glmm("y ~ tnum + trt + toep(0 + time | id)", data.loc[data["tnum"] <= 4], reml=False)
    corr = np.array(res.structures[0]["corr"])
    assert np.linalg.eigvalsh(corr)[0] < 1e-3  # nearly singular: the optimum lies on the edge
    assert any("Satterthwaite's degrees of freedom are not available" in w for w in res.warnings)
    assert all(f["df"] is None for f in res.to_dict(diagnostics=False)["fixed_effects"])


def test_simulations_draw_the_random_effects_from_the_structured_covariance():
    """DHARMa-style residuals and the bootstrap draw b ~ N(0, Sigma) with the covariance the structure implies."""
    from glmmlab.engine.inference.simulate_models import random_parts

    ref, data = _case("sim_poisson_toep")
    res = glmmlab.glmm(ref["formula"], data, family="poisson")
    (part,) = random_parts(res, res.require_frame("simulation").terms)
    L = part.chol
    np.testing.assert_allclose(L @ L.T, np.array(res.structures[0]["cov"]), rtol=1e-8, atol=1e-10)
    sim = res.simulate_residuals(n_sim=50, seed=3)
    assert np.all((sim.residuals >= 0) & (sim.residuals <= 1))
