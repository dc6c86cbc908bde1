"""A factor's reference level (R's ``relevel`` in data preparation): ``reference_levels={"f": "b"}`` in Python,
``--reference f=b`` on the command line, carried by ModelSpec into the model frame and its recipe.

Checked against lme4 1.1-31 on tests/references/relevel (relevel.R made relevel.json from relevel.csv), with the
tolerances of ../shared/reference/models/README.md: REML log-likelihood within 1e-4, estimates within 1e-3 SE,
SEs and variances within 1e-3 relative; Laplace log-likelihood not more than 1e-3 below lme4's (nor 0.05 above),
estimates within 0.03 SE, SEs within 2 %, variances within 3 %. Coefficient names exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.interfaces.cli import read_table
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.modeling.prediction import prediction_design

HERE = Path(__file__).resolve().parents[1] / "references" / "relevel"
REF = json.loads((HERE / "relevel.json").read_text())


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return read_table(str(HERE / "relevel.csv"))


def test_gaussian_interaction_equals_lme4(data):
    want = REF["gaussian"]
    res = glmmlab.glmm(want["formula"], data, reference_levels={"f": "b"})
    doc = res.to_dict()
    assert [r["variable"] for r in doc["fixed_effects"]] == list(want["fixef"])
    assert abs(doc["fit"]["log_likelihood"] - want["logLik"]) < 1e-4
    for r in doc["fixed_effects"]:
        se = want["se"][r["variable"]]
        assert abs(r["estimate"] - want["fixef"][r["variable"]]) < 1e-3 * se
        assert abs(r["std_error"] - se) < 1e-3 * se
    got = [r["variance"] for r in doc["random_effects"]]
    assert np.allclose(got, want["varcorr"], rtol=1e-3)
    assert doc["model"]["reference_levels"] == {"f": "b"} and doc["model"]["formula"] == want["formula"]


def test_poisson_laplace_equals_lme4(data):
    want = REF["poisson"]
    doc = glmmlab.glmm(want["formula"], data, family="poisson", reference_levels={"f": "b"}).to_dict()
    assert [r["variable"] for r in doc["fixed_effects"]] == list(want["fixef"])
    assert -1e-3 < doc["fit"]["log_likelihood"] - want["logLik"] < 0.05
    for r in doc["fixed_effects"]:
        se = want["se"][r["variable"]]
        assert abs(r["estimate"] - want["fixef"][r["variable"]]) < 0.03 * se
        assert abs(r["std_error"] - se) < 0.02 * se
    assert np.allclose(doc["random_effects"][0]["variance"], want["varcorr"], rtol=0.03)


def test_the_same_model_as_the_default_coding(data):
    """Another reference level reparametrises the same model: the likelihood and fitted values do not change,
    and the coefficients are the default coding's, moved (fa = -(fb of the default coding))."""
    a = glmmlab.glmm("y ~ x * f + (1 | g)", data)
    b = glmmlab.glmm("y ~ x * f + (1 | g)", data, reference_levels={"f": "b"})
    assert abs(a.to_dict()["fit"]["log_likelihood"] - b.to_dict()["fit"]["log_likelihood"]) < 1e-6
    pa, pb = a.params, b.params
    assert abs(pb["fa"] + pa["fb"]) < 1e-6 and abs(pb["fc"] - (pa["fc"] - pa["fb"])) < 1e-6
    assert np.allclose(a.predict(data.head(20)), b.predict(data.head(20)), atol=1e-7)


def test_the_recipe_codes_new_rows_with_the_reference(data):
    mf = build_model_frame(data, "y ~ x * f + (1 | g)", reference_levels={"f": "b"})
    assert mf.x_names == ["(Intercept)", "x", "fa", "fc", "x:fa", "x:fc"]
    assert mf.recipe.factors["f"] == {"levels": ["a", "b", "c"], "reference": "b"}
    new = pd.DataFrame({"x": [1.0, 2.0, 3.0], "f": ["c", "b", "a"], "g": ["G01", "G02", "new"]})
    X = prediction_design(mf.recipe, new).X
    assert X.tolist() == [[1, 1, 0, 1, 0, 1], [1, 2, 0, 0, 0, 0], [1, 3, 1, 0, 3, 0]]


def test_indicator_coding_puts_the_reference_first(data):
    """Without an intercept R codes the first factor by all its levels, in the relevelled order."""
    mf = build_model_frame(data, "y ~ 0 + f + x + (1 | g)", reference_levels={"f": "c"})
    assert mf.x_names == ["fc", "fa", "fb", "x"]


def test_levels_of_booleans_numbers_and_factor_calls():
    df = pd.DataFrame({"y": np.arange(12.0), "flag": [True, False] * 6, "dose": [1, 2, 3] * 4,
                       "g": list("aabbccddeeff")})
    mf = build_model_frame(df, "y ~ flag + factor(dose) + (1 | g)",
                           reference_levels={"flag": True, "factor(dose)": 2})
    assert mf.x_names == ["(Intercept)", "flagFALSE", "factor(dose)1", "factor(dose)3"]


@pytest.mark.parametrize("refs, words", [
    ({"f": "z"}, ["'z' is not a level of 'f'", "'a', 'b', 'c'"]),
    ({"x": "1"}, ["'x' is a numeric column", "factor"]),
    ({"g": "G01"}, ["'g' is not a factor", "The formula's factors: 'f'"]),
    ({"nope": "a"}, ["'nope' is not a factor"]),
    ({"f": None}, ["reference level of 'f'"]),
    ("f=b", ["must map factor columns"]),
])
def test_bad_reference_levels_are_explained(data, refs, words):
    with pytest.raises(glmmlab.GlmmInputError) as e:
        glmmlab.glmm("y ~ x + f + (1 | g)", data, reference_levels=refs)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_random_intercept_form_takes_reference_levels(data):
    a = glmmlab.fit_glmm(data, "y", "g", ["x", "f"], reference_levels={"f": "c"})
    b = glmmlab.glmm("y ~ x + f + (1 | g)", data, reference_levels={"f": "c"})
    assert list(a.params.index) == ["(Intercept)", "x", "fa", "fb"]
    assert np.allclose(a.params, b.params, atol=1e-8)


def test_the_command_line_takes_reference(data, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(HERE / "relevel.csv"),
                               *args], capture_output=True, text=True, timeout=120)

    p = cli("--formula", "y ~ x * f + (1 | g)", "--reference", "f=b", "--format", "json", "--diagnostics", "none")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["variable"] for r in doc["fixed_effects"]] == list(REF["gaussian"]["fixef"])
    assert doc["model"]["reference_levels"] == {"f": "b"}
    p = cli("--formula", "y ~ x * f + (1 | g)", "--reference", "f=b")
    assert p.returncode == 0 and "GLMM: y ~ x * f + (1 | g)   reference level f = b   family gaussian" in p.stdout
    for args, words in ((["--reference", "f"], "COLUMN=LEVEL"), (["--reference", "f=q"], "'q' is not a level")):
        p = cli("--formula", "y ~ x * f + (1 | g)", *args)
        assert p.returncode == 2 and p.stderr.startswith("error:") and words in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
