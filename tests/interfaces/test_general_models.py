"""General models through the front doors: glmmlab.glmm, predict, and glmmlab fit --formula."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.interfaces.cli import read_table
from tests.conftest import MODELS


def case(name: str):
    ref = json.loads((MODELS / f"{name}.json").read_text())
    return ref, read_table(str(MODELS / f"{name}.csv"))


def fit(name: str, **extra):
    ref, data = case(name)
    return ref, data, glmmlab.glmm(ref["formula"], data, family=ref["family"].lower(), link=ref["link"],
                                   weights=ref["weights"], offset=ref["offset"], **extra)


@pytest.mark.parametrize("name", ["sleepstudy_slope", "contraception_slope", "mmmec_offset", "cbpp_trials",
                                  "grouseticks_nested", "exam_interaction", "sim_poisson_crossed_slope"])
def test_predict_on_the_fitted_rows_gives_the_fitted_values(name):
    _, data, res = fit(name)
    rows = np.asarray(res.rows)
    np.testing.assert_allclose(res.predict(data.iloc[rows]), res.fitted, rtol=1e-10, atol=1e-12)


def test_predict_new_levels_get_zero_for_that_factor():
    ref, data, res = fit("sleepstudy_slope")
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["nobody", "nobody"]})
    b = {r["variable"]: r["estimate"] for r in res.to_dict()["fixed_effects"]}
    np.testing.assert_allclose(res.predict(new), b["(Intercept)"] + b["Days"] * new["Days"], rtol=1e-12)
    known = pd.DataFrame({"Days": [5.0], "Subject": ["308"]})
    blup = {(r["group"], r["term"]): r["value"] for r in res.to_dict()["blup"]}
    expected = b["(Intercept)"] + blup[("308", "(Intercept)")] + 5.0 * (b["Days"] + blup[("308", "Days")])
    assert res.predict(known)[0] == pytest.approx(expected, rel=1e-12)
    # include_random=False: the population level for every row
    np.testing.assert_allclose(res.predict(known, include_random=False), b["(Intercept)"] + 5 * b["Days"])


def test_predict_names_a_missing_column():
    _, data, res = fit("contraception_slope")
    with pytest.raises(GlmmInputError, match="urban"):
        res.predict(data.drop(columns=["urban"]).iloc[:5])


def test_offset_of_new_data_is_used():
    _, data, res = fit("mmmec_offset")
    rows = data.iloc[np.asarray(res.rows)[:3]].copy()
    base = res.predict(rows, type="link")
    rows["expected"] = rows["expected"] * np.e
    np.testing.assert_allclose(res.predict(rows, type="link"), base + 1.0, rtol=1e-12)


def test_nagq_above_one_is_refused_for_random_slopes():
    ref, data = case("sim_binomial_slope")
    with pytest.raises(GlmmInputError, match=r"nagq > 1.*one scalar"):
        glmmlab.glmm(ref["formula"], data, family="binomial", nagq=5)


def test_random_intercept_formula_equals_the_random_intercept_form():
    ref, data = case("exam_interaction")
    a = glmmlab.glmm("normexam ~ standLRT + (1 | school)", data)
    b = glmmlab.fit_glmm(data, "normexam", "school", ["standLRT"])
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-12)
    # The column form gathers its design column-major (a faster gather) and scales it in its own memory; the
    # formula's frame is row-major. BLAS rounds the two layouts' products differently in the last bit, and the
    # value-only optimiser fixes theta only to about 1e-9 relative at a flat optimum (33 against 46 evaluations
    # here, theta 1.3e-9 apart), so beta is compared in units of its standard error, 1e-8 of it: far below any
    # difference a model difference would make (the intercept, 0.0023, differs by 9.5e-12; its SE is 0.04)
    np.testing.assert_allclose(np.asarray(a.theta), np.asarray(b.theta), rtol=1e-8)
    assert np.max(np.abs(np.asarray(a.beta) - np.asarray(b.beta)) / np.asarray(b.se)) < 1e-8
    assert a.to_dict()["model"]["fixed"] == ["standLRT"] and a.to_dict()["model"]["group"] == "school"


def test_general_model_document_is_valid_json_with_version_2_keys():
    _, _, res = fit("sim_poisson_crossed_slope")
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["model"]["fixed"] is None and doc["model"]["group"] is None
    assert doc["groups"] == {"a": 100, "b": 30} and doc["n_groups"] == 100
    assert doc["icc"] is None and doc["glm_comparison"] is None
    assert {(c["component"], c["term1"], c["term2"]) for c in doc["random_correlations"]} == \
        {("a", "(Intercept)", "x")}
    assert len(doc["diagnostics"]["group_random_effect"]) == doc["n_obs"]
    # k = 2 fixed effects + 3 (correlated intercept and slope on a) + 1 (intercept on b)
    assert doc["fit"]["k"] == 6


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_formula_json_and_text():
    ref, _ = case("sleepstudy_slope")
    p = run_cli("fit", MODELS / "sleepstudy_slope.csv", "--formula", ref["formula"], "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["fit"]["log_likelihood"] == pytest.approx(ref["results"]["nAGQ1"]["logLik"], abs=1e-4)
    assert doc["model"]["formula"] == ref["formula"]
    p = run_cli("fit", MODELS / "sleepstudy_slope.csv", "--formula", ref["formula"])
    assert p.returncode == 0, p.stderr
    assert "Groups" in p.stdout and "Corr" in p.stdout and "Residual" in p.stdout


def test_cli_weights_offset_and_bad_input(tmp_path):
    ref, _ = case("sim_lmm_weights")
    p = run_cli("fit", MODELS / "sim_lmm_weights.csv", "--formula", ref["formula"], "--weights", "w",
                "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model"]["weights"] == "w"
    p = run_cli("fit", MODELS / "sim_lmm_weights.csv", "--formula", ref["formula"], "--weights", "nope")
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "nope" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_cli("fit", MODELS / "sim_lmm_weights.csv", "--formula", ref["formula"], "--response", "y")
    assert p.returncode == 2 and "either --formula" in p.stderr
    p = run_cli("fit", MODELS / "sim_binomial_slope.csv", "--formula", "y ~ x1 + (1 + x1 | g)", "--family",
                "binomial", "--nagq", "3")
    assert p.returncode == 2 and "nagq" in p.stderr


def test_cli_reads_r_style_missing_values(tmp_path):
    ref, data = case("sleepstudy_slope")
    text = data.to_csv(index=False).splitlines()
    cells = text[1].split(",")
    cells[0] = "NA"
    text[1] = ",".join(cells)
    cells = text[2].split(",")
    cells[0] = "."
    text[2] = ",".join(cells)
    path = tmp_path / "s.csv"
    path.write_text("\n".join(text) + "\n")
    p = run_cli("fit", path, "--formula", ref["formula"], "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["n_excluded"] == 2 and doc["diagnostics"]["row"][:2] == [2, 3]


def test_one_model_spec_for_every_front_door():
    ref, data = case("cbpp_trials")
    spec = glmmlab.ModelSpec(ref["formula"], family="binomial")
    a = glmmlab.fit(spec, data)
    b = glmmlab.glmm(ref["formula"], data, family="binomial")
    assert a.log_likelihood == b.log_likelihood and a.to_dict()["model"] == b.to_dict()["model"]
    ri = glmmlab.ModelSpec.random_intercept("incidence", "herd", ["size", "period"], family="poisson")
    assert ri.formula == "incidence ~ size + period + (1 | herd)"
    assert glmmlab.fit(ri, data).names == ["(Intercept)", "size", "periodP2", "periodP3", "periodP4"]
    with pytest.raises(GlmmInputError, match=r"nagq must be an integer from 1 to 50"):
        glmmlab.fit(glmmlab.ModelSpec(ref["formula"], family="binomial", nagq=0), data)
    with pytest.raises(GlmmInputError, match=r"spec must be a glmmlab.ModelSpec"):
        glmmlab.fit({"formula": ref["formula"]}, data)


def test_a_backquoted_column_name_fits_in_both_engines():
    ref, data = case("sleepstudy_slope")
    data = data.rename(columns={"Days": "a b"})
    ri = glmmlab.glmm("Reaction ~ `a b` + (1 | Subject)", data)
    slope = glmmlab.glmm("Reaction ~ `a b` + (`a b` | Subject)", data)
    assert ri.names == ["(Intercept)", "`a b`"] == slope.names
    assert ri.to_dict()["model"]["formula"] == "Reaction ~ `a b` + (1 | Subject)"
