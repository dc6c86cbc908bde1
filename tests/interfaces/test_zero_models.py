"""Zero-inflation, hurdle and dispersion models at every front door: Python (``glmm(..., zi=, disp=)``, the
``fixef`` dict, ``family_params``), the command line (``--zi``, ``--disp``, the JSON document's tables and per-row
predictions, exit status 2 on bad input), the spec; and bad input refused in words before anything is fitted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.spec import ModelSpec
from tests.conftest import REFERENCE

CSV = REFERENCE / "breadth" / "salamanders_zinb2.csv"


@pytest.fixture(scope="module")
def sal() -> pd.DataFrame:
    if not CSV.exists():
        pytest.fail(f"reference data missing: {CSV}")
    return pd.read_csv(CSV)


@pytest.fixture(scope="module")
def zinb(sal):
    return glmmlab.glmm("count ~ mined + (1 | site)", sal, family="nbinom2", zi="~ mined")


def test_python_accessors(zinb):
    fx = zinb.fixef
    assert list(fx) == ["cond", "zi", "disp"]
    assert list(fx["cond"].index) == ["(Intercept)", "minedyes"] and fx["cond"].equals(zinb.params)
    assert list(fx["zi"].index) == ["(Intercept)", "minedyes"] and fx["disp"].empty
    assert set(zinb.family_params) == {"theta"} and zinb.family_params["theta"] > 0
    doc = zinb.to_dict()
    assert doc["model"]["zi"] == "~ mined" and "disp" not in doc["model"]
    assert [r["variable"] for r in doc["zi_fixed_effects"]] == ["(Intercept)", "minedyes"]
    assert "disp_fixed_effects" not in doc
    d = doc["diagnostics"]
    p, cond, mean = (np.array(d[k]) for k in ("zi_prob", "fitted_conditional", "fitted_values"))
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(mean, (1 - p) * cond, rtol=1e-12)  # the mean of y with the zero model
    assert zinb.llf == doc["fit"]["log_likelihood"]


def test_spec_document_keeps_keys(sal):
    plain = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="poisson").to_dict()
    assert "zi" not in plain["model"] and "zi_fixed_effects" not in plain
    assert "zi_prob" not in plain["diagnostics"]


def test_dispersion_model(sal):
    res = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="nbinom2", disp="~ mined")
    assert list(res.fixef["disp"].index) == ["(Intercept)", "minedyes"] and res.fixef["zi"].empty
    assert res.family_params == {}  # the dispersion varies by row
    doc = res.to_dict()
    theta = np.array(doc["diagnostics"]["dispersion"])
    est = res.fixef["disp"].to_numpy()
    mined = (sal["mined"] == "yes").to_numpy()[np.array(doc["diagnostics"]["row"])]
    np.testing.assert_allclose(theta, np.exp(est[0] + est[1] * mined), rtol=1e-12)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_zi_json(zinb):
    out = _cli(str(CSV), "--formula", "count ~ mined + (1 | site)", "--family", "nbinom2", "--zi", "~ mined",
               "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [r["estimate"] for r in doc["zi_fixed_effects"]] == pytest.approx(list(zinb.fixef["zi"]), rel=1e-6)
    assert doc["fit"]["log_likelihood"] == pytest.approx(zinb.llf, abs=1e-6)


def test_cli_text_tables():
    out = _cli(str(CSV), "--formula", "count ~ mined + (1 | site)", "--family", "truncated_nbinom2",
               "--zi", "~ mined")
    assert out.returncode == 0, out.stderr
    assert "Zero Model (hurdle: P(y = 0))" in out.stdout and "Odds ratio" in out.stdout


@pytest.mark.parametrize("args, words", [
    (["--family", "poisson", "--zi", "~ minde"], "'minde'"),
    (["--family", "gaussian", "--zi", "~ mined"], "zero-inflation model (zi) is offered for the count families"),
    (["--family", "poisson", "--disp", "~ mined"], "no dispersion parameter"),
    (["--family", "truncated_poisson"], "zero-truncated family truncated_poisson"),
    (["--family", "poisson", "--zi", "count ~ mined"], "must be one-sided"),
])
def test_cli_bad_input(args, words):
    out = _cli(str(CSV), "--formula", "count ~ mined + (1 | site)", *args)
    assert out.returncode == 2 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_cli_zi_needs_formula():
    out = _cli(str(CSV), "--response", "count", "--group", "site", "--zi", "~ mined")
    assert out.returncode == 2 and "--zi and --disp go with --formula" in out.stderr


def test_bad_input_messages(sal):
    positive = sal[sal["count"] > 0]
    with pytest.raises(GlmmInputError, match="has no zeros: a hurdle model"):
        glmmlab.glmm("count ~ mined + (1 | site)", positive, family="truncated_poisson", zi="~ mined")
    with pytest.raises(GlmmInputError, match="must lie strictly between 0 and 1"):
        glmmlab.glmm("count ~ mined + (1 | site)", sal, family="beta_family", disp="~ mined")
    with pytest.raises(GlmmInputError, match="tweedie_power must be a number between 1 and 2"):
        glmmlab.glmm("count ~ mined + (1 | site)", sal, family="tweedie", tweedie_power=2.5)
    with pytest.raises(GlmmInputError, match="zi must be a one-sided formula"):
        ModelSpec("count ~ mined + (1 | site)", family="poisson", zi=" ").check()


def test_zero_truncated_without_zero_model(sal):
    """A zero-truncated family alone (no zeros in the data, no zero model) is the zero-truncated count model."""
    positive = sal[sal["count"] > 0]
    res = glmmlab.glmm("count ~ mined + (1 | site)", positive, family="truncated_poisson")
    assert res.fixef["zi"].empty and res.converged
    d = res.to_dict()["diagnostics"]
    assert "zi_prob" in d and max(d["zi_prob"]) == 0.0
    assert min(d["fitted_values"]) > 1.0  # the truncated mean exceeds 1


def test_refits_refused_in_words(zinb):
    """Profile and bootstrap intervals (which would refit without the zero model) are refused, Wald ones given."""
    assert list(zinb.conf_int().index) == ["(Intercept)", "minedyes"]
    for method in ("profile", "boot"):
        with pytest.raises(GlmmInputError, match="not available yet for a model with a zero or dispersion model"):
            zinb.conf_int(method=method, nsim=10)
    with pytest.raises(GlmmInputError, match="type='link' gives the mean's linear predictor"):
        zinb.predict(pd.DataFrame({"mined": ["yes"], "site": ["R-1"]}))
    assert zinb.r2()["marginal"] is None and "zero" in zinb.r2()["reason"]


def test_dask_refuses_in_words(sal):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(sal, npartitions=2)
    with pytest.raises(GlmmInputError, match="fitted in memory"):
        glmmlab.glmm("count ~ mined + (1 | site)", ddf, family="nbinom2", zi="~ mined")
    with pytest.raises(GlmmInputError, match="not available on a Dask DataFrame"):
        glmmlab.glmm("count ~ mined + (1 | site)", ddf, family="truncated_poisson")


def test_quadrature_refused(sal):
    with pytest.raises(GlmmInputError, match="nagq > 1 .* is not available for a model with a zero"):
        glmmlab.glmm("count ~ mined + (1 | site)", sal, family="poisson", zi="~ mined", nagq=5)
