"""The result as Python users read it (issue 10, point 10): summary(), repr, _repr_html_, and the statsmodels-style
accessors as pandas objects, checked against lme4's numbers where the reference has them."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmlab
from glmmlab.services.views.text import render
from tests.conftest import MODELS, load_case
from tests.engine.test_reference_models import blup_spreads


def _sleepstudy():
    ref = json.loads((MODELS / "sleepstudy_slope.json").read_text())
    data = pd.read_csv(MODELS / "sleepstudy_slope.csv")
    return ref, ref["results"]["nAGQ1"], data


@pytest.fixture(scope="module")
def sleep():
    ref, r, data = _sleepstudy()
    return r, glmmlab.glmm(ref["formula"], data, ddf="none")  # lme4's Wald statistic (the default is Satterthwaite)


@pytest.fixture(scope="module")
def cbpp():
    ref, data = load_case("cbpp_binomial_logit")
    return glmmlab.fit_glmm(data, "y", "herd", ref["fixed"], family="binomial")


def test_params_bse_tvalues_pvalues_are_series_by_coefficient_and_match_lme4(sleep):
    r, res = sleep
    names = ["(Intercept)", "Days"]
    for s in (res.params, res.bse, res.tvalues, res.pvalues):
        assert isinstance(s, pd.Series)
        assert list(s.index) == names
        assert s.dtype == np.float64
    for name in names:
        assert abs(res.params[name] - r["fixef"][name]) <= 1e-3 * r["se"][name]
        assert res.bse[name] == pytest.approx(r["se"][name], rel=1e-3)
    np.testing.assert_allclose(res.tvalues, res.params / res.bse, rtol=1e-12)
    np.testing.assert_allclose(res.pvalues, 2 * stats.norm.sf(np.abs(res.params / res.bse)), rtol=1e-10)
    fixed = {row["variable"]: row for row in res.to_dict()["fixed_effects"]}
    for name in names:  # the same numbers as the JSON document and the tables
        assert res.pvalues[name] == pytest.approx(fixed[name]["p_value"], rel=1e-12)
        assert res.tvalues[name] == pytest.approx(fixed[name]["statistic"], rel=1e-12)


def test_conf_int_is_a_wald_dataframe_at_any_level(sleep):
    _, res = sleep
    ci = res.conf_int()
    assert isinstance(ci, pd.DataFrame)
    assert list(ci.columns) == ["lower", "upper"] and list(ci.index) == ["(Intercept)", "Days"]
    z95 = stats.norm.ppf(0.975)
    np.testing.assert_allclose(ci["lower"], res.params - z95 * res.bse, rtol=1e-12)
    np.testing.assert_allclose(ci["upper"], res.params + z95 * res.bse, rtol=1e-12)
    fixed = res.to_dict()["fixed_effects"]
    np.testing.assert_allclose(ci["lower"], [f["lower"] for f in fixed], rtol=1e-12)
    ci90 = res.conf_int(level=0.90, method="wald")
    z90 = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci90["upper"] - ci90["lower"], 2 * z90 * res.bse, rtol=1e-12)
    assert (ci90["lower"] > ci["lower"]).all() and (ci90["upper"] < ci["upper"]).all()
    pd.testing.assert_frame_equal(res.conf_int(0.95, method="Wald"), ci)


@pytest.mark.parametrize("kwargs,words", [
    ({"level": 95}, ["level must be between 0.5 and 0.9999", "use 0.95"]),
    ({"level": 0.3}, ["level must be", "got 0.3"]),
    ({"level": "high"}, ["level must be"]),
    ({"level": 1.0}, ["level must be"]),
    ({"method": "bca"}, ["method must be 'wald', 'profile' or 'boot'", "'bca'"]),
    ({"method": None}, ["method must be 'wald', 'profile' or 'boot'"]),
    ({"method": "boot", "nsim": 0}, ["nsim must be an integer from 10"]),
    ({"method": "boot", "nsim": 2.5}, ["nsim must be"]),
    ({"method": "boot", "seed": -1}, ["seed must be an integer >= 0"]),
])
def test_conf_int_refuses_bad_arguments_by_name(sleep, kwargs, words):
    _, res = sleep
    with pytest.raises(glmmlab.GlmmInputError) as info:
        res.conf_int(**kwargs)
    message = str(info.value)
    for w in words:
        assert w in message
    assert "conf_level" not in message  # named as the argument is named here


def test_ranef_is_the_long_blup_table_and_matches_lme4(sleep):
    r, res = sleep
    re = res.ranef
    assert isinstance(re, pd.DataFrame)
    assert list(re.columns) == ["component", "group", "term", "value", "std_error"]
    assert len(re) == 36 and re["value"].dtype == np.float64 and re["std_error"].dtype == np.float64
    mine = {(row.component, row.term, row.group): (row.value, row.std_error) for row in re.itertuples()}
    rr = r["ranef"]
    spread = blup_spreads(r)  # per (component, term): the Days slopes' spread is a quarter of the intercepts'
    for g, t, lv, cv, cs in zip(rr["grpvar"], rr["term"], rr["grp"], rr["condval"], rr["condsd"]):
        value, se = mine[(g, t, lv)]
        assert abs(value - cv) <= 1e-3 * spread[(g, t)]
        assert se == pytest.approx(cs, rel=1e-3)


def test_varcorr_and_correlations_match_lme4(sleep):
    r, res = sleep
    vc = res.varcorr
    assert list(vc.columns) == ["component", "term", "variance", "std_dev"]
    assert list(vc["component"]) == ["Subject", "Subject", "Residual"]
    assert list(vc["term"][:2]) == ["(Intercept)", "Days"] and pd.isna(vc["term"].iloc[2])
    np.testing.assert_allclose(vc["std_dev"], np.sqrt(vc["variance"]), rtol=1e-12)
    expected = [v["vcov"] for v in r["varcorr"] if v["var2"] is None]
    np.testing.assert_allclose(vc["variance"], expected, rtol=1e-3)
    rc = res.re_correlations
    assert list(rc.columns) == ["component", "term1", "term2", "correlation"]
    assert len(rc) == 1 and rc.iloc[0]["component"] == "Subject"
    lme4_corr = next(v["sdcor"] for v in r["varcorr"] if v["var2"] is not None)
    assert abs(rc.iloc[0]["correlation"] - lme4_corr) <= 1e-3


def test_random_intercept_fit_has_the_same_accessors(cbpp):
    res = cbpp
    assert list(res.varcorr["component"]) == ["herd"] and list(res.varcorr["term"]) == ["(Intercept)"]
    assert res.varcorr["variance"].iloc[0] == pytest.approx(res.variances[0]["variance"], rel=1e-12)
    assert len(res.re_correlations) == 0 and list(res.re_correlations.columns) == ["component", "term1", "term2",
                                                                                   "correlation"]
    re = res.ranef
    assert list(re.columns) == ["component", "group", "term", "value", "std_error"]
    assert len(re) == res.n_groups and set(re["term"]) == {"(Intercept)"}
    np.testing.assert_allclose(re["value"], res.modes[0].values[:, 0], rtol=1e-12)
    assert list(res.params.index) == res.names
    np.testing.assert_allclose(res.params, res.beta)
    np.testing.assert_allclose(res.pvalues, 2 * stats.norm.sf(np.abs(res.beta / res.se)), rtol=1e-10)


def test_summary_is_the_command_lines_tables_without_blups(sleep):
    _, res = sleep
    text = res.summary()
    assert isinstance(text, str)
    assert "Reaction ~ Days + (Days | Subject)" in text
    for piece in ["Random Effects", "Groups", "Name", "Variance", "Std.Dev.", "Corr", "Subject", "Residual",
                  "Fixed Effects", "Estimate", "Std. Error", "REML Log-Likelihood"]:
        assert piece in text, piece
    assert "BLUP (Random Effect Predictions)" not in text
    assert "result.ranef" in text
    full = render(res)  # the command line's text: one renderer for both
    # the command line's text up to its first BLUP table ("BLUP (Random Effect Predictions)", or "BLUP: Subject"
    # for a model with slopes; it prints them since --blups shows the first levels by default)
    assert re.split(r"\nBLUP[ :]", full)[0].rstrip() in text
    lines = text.splitlines()
    days = next(line for line in lines if line.strip().startswith("Days") and "0.07" in line)
    assert days.split()[-1] == "0.07"  # the correlation in lme4's place, on the second term's row


def test_summary_shows_warnings():
    ref, data = load_case("dyestuff2_singular")
    res = glmmlab.fit_glmm(data, "Yield", "Batch")
    assert "Warning: Singular fit" in res.summary()


def test_repr_is_one_short_line(sleep, cbpp):
    _, res = sleep
    text = repr(res)
    assert "\n" not in text and len(text) < 200
    for piece in ["GlmmResult", "Reaction ~ Days + (Days | Subject)", "REML", "180 obs", "Subject 18", "converged"]:
        assert piece in text
    assert "herd 15" in repr(cbpp) and "Laplace" in repr(cbpp)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.captions: list[str] = []
        self.text: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_caption = tag == "caption"

    def handle_endtag(self, tag):
        self._in_caption = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_caption:
            self.captions.append(data)


def test_repr_html_is_escaped_tables():
    _, _, data = _sleepstudy()
    data["f"] = np.where(data["Days"] > 4, "<b>late&</b>", "0 early")  # a factor level that is markup
    res = glmmlab.glmm("Reaction ~ f + (1 | Subject)", data)
    assert res.names == ["(Intercept)", "f<b>late&</b>"]
    out = res._repr_html_()
    assert "<b>" not in out and "f&lt;b&gt;late&amp;&lt;/b&gt;" in out
    p = _Collect()
    p.feed(out)
    assert set(p.tags) <= {"div", "p", "table", "caption", "thead", "tbody", "tr", "th", "td", "strong"}
    assert p.captions[:2] == ["Random Effects", "ICC"] and "Fixed Effects" in p.captions
    assert "Model Fit" in p.captions and not any("BLUP" in c for c in p.captions)
    assert "f<b>late&</b>" in "".join(p.text)  # the name reads back exactly


def test_an_engine_result_says_what_needs_the_services(sleep):
    """The engine's result holds the estimates; what needs the services (the text view, R², omnibus tests,
    refit intervals) says so, and every front door returns the fitted model that has them."""
    from glmmlab.engine.inference.results import GlmmResult
    from glmmlab.services.modeling.fitted import FittedModel

    _, res = sleep
    assert isinstance(res, FittedModel)
    raw = res.record
    assert type(raw) is GlmmResult and raw.beta is res.beta
    assert raw.spec is None and raw.model_frame() is None and raw.predictor is None and raw.fit_seconds is None
    assert res.spec is not None and res.model_frame() is not None and res.fit_seconds > 0
    for record in (raw, res):  # frozen: a changed copy is dataclasses.replace's
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.converged = False
    assert dataclasses.replace(res, converged=False).converged is False and res.converged
    for call in (raw.summary, raw.anova, lambda: raw.emmeans("Days"), lambda: raw.conf_int(method="boot")):
        with pytest.raises(RuntimeError, match="glmmlab's services"):
            call()
    assert raw.r2()["reason"].startswith("R² is computed by glmmlab's services")
    assert raw.anova_terms_document() is None
    assert raw._repr_html_().startswith("<pre>&lt;GlmmResult")
    assert "Fixed Effects" in res.summary() and res.r2()["marginal"] is not None


def test_fit_cancelled_is_exported_and_stops_a_fit():
    from glmmlab.engine.progress import FitCancelled

    assert glmmlab.FitCancelled is FitCancelled and "FitCancelled" in glmmlab.__all__
    _, _, data = _sleepstudy()

    def stop(stage, fraction):
        raise glmmlab.FitCancelled()

    with pytest.raises(glmmlab.FitCancelled):
        glmmlab.glmm("Reaction ~ Days + (Days | Subject)", data, progress=stop)


def test_public_names_resolve():
    for name in glmmlab.__all__:
        assert getattr(glmmlab, name) is not None
    assert set(glmmlab.__all__) <= set(dir(glmmlab))
    with pytest.raises(AttributeError):
        glmmlab.no_such_name  # noqa: B018
