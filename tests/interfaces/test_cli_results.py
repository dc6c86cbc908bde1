"""The command line and the Python result in issue 19's spirit (point 9): --blups, --version, the omnibus tests in
the text and the JSON, the statsmodels and lme4 names on a result, dir(result) without internals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.interfaces.cli import main
from tests.conftest import MODELS

SLEEP = str(MODELS / "sleepstudy_slope.csv")
CBPP = str(MODELS / "cbpp_trials.csv")
SLEEP_F = "Reaction ~ Days + (Days | Subject)"
CBPP_F = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_blups_default_first_ten_then_all_none_and_n(capsys):
    code, text, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F)
    assert code == 0
    lines = text.splitlines()
    start = lines.index("BLUP: Subject")
    assert lines[start + 3].startswith("308") and lines[start + 12].startswith("337")
    assert lines[start + 13] == "... 8 more of 18 levels not shown (--blups all shows every level)"
    _, every, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "all")
    assert "more of" not in every and len(every.splitlines()) == len(lines) + 8 - 1
    _, none, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "none")
    assert "BLUP: Subject: 18 levels not shown (--blups all or --blups N shows them)" in none
    assert "\n308 " not in none
    _, three, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "3")
    assert "... 15 more of 18 levels not shown" in three
    code, _, err = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "some")
    assert code == 2 and err.startswith("error: --blups must be all, none or a whole number")
    # the JSON keeps every BLUP
    _, doc, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "none", "--format", "json",
                    "--diagnostics", "none")
    assert len(json.loads(doc)["blup"]) == 36


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"glmmlab {glmmlab.__version__}"


def test_omnibus_tests_in_text_and_json(capsys):
    code, text, _ = run(capsys, "fit", CBPP, "--formula", CBPP_F, "--family", "binomial", "--blups", "none")
    assert code == 0
    lines = text.splitlines()
    i = lines.index("Omnibus Tests (Type III)")
    assert lines[i + 1].split() == ["Term", "Df", "Chisq", "Pr(>Chisq)"]
    assert lines[i + 3].split()[:2] == ["period", "3"]
    _, doc, _ = run(capsys, "fit", CBPP, "--formula", CBPP_F, "--family", "binomial", "--format", "json",
                    "--diagnostics", "none")
    d = json.loads(doc)
    a = d["anova_terms"]
    assert a["test"] == "Chisq" and a["type"] == "III" and a["contrasts"] == "treatment"
    assert [(r["term"], r["df"]) for r in a["rows"]] == [("period", 3)]
    # the contract's keys are all still there
    assert {"model", "method", "fixed_effects", "random_effects", "icc", "fit", "blup", "timing"} <= set(d)
    # Gaussian: F with Satterthwaite's df, and the fixed effects' t tests (df with 2 decimals in the text)
    _, text, _ = run(capsys, "fit", SLEEP, "--formula", SLEEP_F, "--blups", "none")
    lines = text.splitlines()
    i = lines.index("Omnibus Tests (Type III)")
    assert lines[i + 1].split() == ["Term", "Df", "DenDF", "F", "Pr(>F)"]
    assert lines[i + 3].split()[:4] == ["Days", "1", "17.00", "45.8530"]
    fe = lines.index("Fixed Effects")
    assert lines[fe + 1].split()[:6] == ["Variable", "Estimate", "Std.", "Error", "df", "t"]


def test_statsmodels_and_lme4_names():
    data = pd.read_csv(SLEEP)
    res = glmmlab.glmm(SLEEP_F, data)
    assert res.llf == res.log_likelihood and res.nobs == 180
    v = res.vcov
    assert isinstance(v, pd.DataFrame) and list(v.index) == list(v.columns) == ["(Intercept)", "Days"]
    assert res.cov_params().equals(v)
    np.testing.assert_allclose(np.sqrt(np.diag(v)), res.bse, rtol=1e-12)
    assert res.fixef["cond"].equals(res.params) and res.fixef["zi"].empty and res.fixef["disp"].empty
    assert res.sigma == pytest.approx(np.sqrt(res.var_residual))
    assert isinstance(res.fittedvalues, pd.Series) and len(res.fittedvalues) == 180
    np.testing.assert_allclose(res.resid, data["Reaction"] - res.fittedvalues.to_numpy(), atol=1e-8)
    coef = res.coef["Subject"]
    blup = res.ranef.set_index(["group", "term"])["value"]
    assert coef.loc["308", "Days"] == pytest.approx(res.params["Days"] + blup[("308", "Days")], rel=1e-12)
    cbpp = glmmlab.glmm(CBPP_F, pd.read_csv(CBPP), family="binomial")
    assert cbpp.sigma == 1.0  # lme4's sigma() of a binomial fit
    assert list(cbpp.coef["herd"].columns) == list(cbpp.names)


def test_dir_shows_the_public_names_only():
    res = glmmlab.glmm(SLEEP_F, pd.read_csv(SLEEP))
    names = dir(res)
    for public in ("params", "bse", "pvalues", "conf_int", "anova", "emmeans", "pairs", "effects", "vcov", "llf",
                   "fixef", "coef", "sigma", "summary", "predict", "to_dict"):
        assert public in names
    for internal in ("frame", "frame_loader", "spec", "predictor", "varpar_model", "vcov_matrix", "r2_values",
                     "model_frame", "profile_arguments", "require_frame", "_satterthwaite"):
        assert internal not in names
    assert all(hasattr(res, n) for n in names)
