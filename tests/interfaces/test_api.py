"""The Python API: DataFrame kinds, the formula front door, prediction, progress and the GLM comparison."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import glmmlab
from tests.conftest import load_case


def test_polars_arrow_and_dict_give_the_same_fit():
    pl = pytest.importorskip("polars")
    ref, data = load_case("cbpp_binomial_logit")
    base = glmmlab.fit_glmm(data, "y", "herd", ref["fixed"], family="binomial")
    for other in (pl.from_pandas(data), pa.Table.from_pandas(data), {c: data[c].to_numpy() for c in data}):
        res = glmmlab.fit_glmm(other, "y", "herd", ref["fixed"], family="binomial")
        assert res.log_likelihood == pytest.approx(base.log_likelihood, rel=1e-12)


def test_to_dict_is_valid_json():
    ref, data = load_case("sim_gamma_log")
    doc = glmmlab.fit_glmm(data, "y", "grp", ref["fixed"], family="gamma", link="log").to_dict()
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["fixed_effects"][0]["variable"] == "(Intercept)"
    assert doc["icc"] is None and [r["component"] for r in doc["random_effects"]] == ["grp", "Residual"]
    assert set(doc["fixed_effects"][0]) >= {"exp_estimate", "exp_lower", "exp_upper"}


def test_formula_front_door():
    ref, data = load_case("cbpp_binomial_logit")
    a = glmmlab.glmm("y ~ period2 + period3 + period4 + (1 | herd)", data, family="binomial")
    b = glmmlab.fit_glmm(data, "y", "herd", ref["fixed"], family="binomial")
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)
    c = glmmlab.glmm("y ~ 0 + period2 + (1|herd)", data, family="binomial")
    assert c.names == ["period2"]
    d = glmmlab.glmm("y ~ period2 - 1 + (1|herd)", data, family="binomial")
    assert d.names == ["period2"]
    # the whole of lme4's language now: random slopes and interactions fit ...
    e = glmmlab.glmm("y ~ period2 + (period2 | herd)", data, family="binomial")
    assert [(r["component"], r["term"]) for r in e.to_dict()["random_effects"]] == \
        [("herd", "(Intercept)"), ("herd", "period2")]
    # period2 and period3 never meet: their interaction is refused by name (an all-zero column)
    with pytest.raises(glmmlab.GlmmInputError, match=r"period2:period3.*zero on every row"):
        glmmlab.glmm("y ~ period2 * period3 + (1 | herd)", data, family="binomial")
    # ... but a model needs a random-effects term
    with pytest.raises(glmmlab.GlmmInputError, match=r"no random term"):
        glmmlab.glmm("y ~ period2", data, family="binomial")


def test_predict_with_and_without_random_effects():
    ref, data = load_case("grouseticks_poisson_log")
    res = glmmlab.fit_glmm(data, "TICKS", "BROOD", ref["fixed"], family="poisson")
    pred = res.predict(data)
    np.testing.assert_allclose(pred[res.rows], res.fitted, rtol=1e-10)
    unseen = data.head(3).copy()
    unseen["BROOD"] = "never-seen"
    pop = res.predict(unseen)
    np.testing.assert_allclose(pop, res.predict(data.head(3), include_random=False), rtol=1e-12)
    eta = res.predict(data.head(3), include_random=False, type="link")
    X = np.column_stack([np.ones(3), data.head(3)[ref["fixed"]].to_numpy()])
    np.testing.assert_allclose(eta, X @ res.beta, rtol=1e-12)


def test_progress_reports_stages_in_order():
    ref, data = load_case("sim_binomial_probit")
    seen = []
    glmmlab.fit_glmm(data, "y", "grp", ref["fixed"], family="binomial", link="probit",
                     progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    assert stages[0] == "Preparing data" and stages[-1] == "Done"
    assert any(s.startswith("Optimizing Laplace") for s in stages)
    fractions = [f for _, f in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_glm_comparison_and_design_effect():
    ref, data = load_case("exam_gaussian")
    res = glmmlab.fit_glmm(data, "normexam", "school", ref["fixed"])
    c = res.glm_comparison
    assert c["lrt_statistic"] == pytest.approx(2 * (res.log_likelihood - c["glm_log_likelihood"]))
    assert c["lrt_statistic"] > 100 and c["lrt_p_value"] < 1e-10
    assert c["design_effect"] == pytest.approx(1 + (res.n_obs / res.n_groups - 1) * res.icc)
    # The GLM's REML fit is an ordinary least-squares fit: check its log-likelihood from first principles.
    X = np.column_stack([np.ones(len(data)), data[ref["fixed"]].to_numpy()])
    y = data["normexam"].to_numpy()
    n, p = X.shape
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    s2 = np.sum((y - X @ beta) ** 2) / (n - p)
    reml = -0.5 * ((n - p) * (1 + np.log(2 * np.pi * s2)) + np.linalg.slogdet(X.T @ X)[1])
    assert c["glm_log_likelihood"] == pytest.approx(reml, rel=1e-9)


def test_glm_comparison_for_a_glmm_matches_an_irls_glm():
    ref, data = load_case("cbpp_binomial_logit")
    res = glmmlab.fit_glmm(data, "y", "herd", ref["fixed"], family="binomial")
    sm = pytest.importorskip("statsmodels.api")
    X = sm.add_constant(data[ref["fixed"]])
    glm = sm.GLM(data["y"], X, family=sm.families.Binomial()).fit()
    assert res.glm_comparison["glm_log_likelihood"] == pytest.approx(glm.llf, rel=1e-8)
    assert res.glm_comparison["lrt_p_value"] < 0.01


def test_confidence_level_changes_only_intervals():
    ref, data = load_case("sleepstudy_gaussian")
    res = glmmlab.fit_glmm(data, "Reaction", "Subject", ["Days"], conf_level=0.95)
    t90 = res.fixed_effects_table(0.90)
    t95 = res.fixed_effects_table()
    assert t90[1]["estimate"] == t95[1]["estimate"]
    assert t90[1]["upper"] - t90[1]["lower"] < t95[1]["upper"] - t95[1]["lower"]
    assert res.to_dict(conf_level=0.9)["model"]["conf_level"] == 0.9
