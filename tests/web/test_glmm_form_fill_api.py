"""The general GLMM form's server side for issue 11, points 2 and 5: a factor's reference level reaches the fit
(and is checked with the formula, 422 naming Reference level), and the formula check describes a typed formula
as the form's controls (``form``) with the model's ``signature``, or says why the form cannot show it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import glmmlab
from tests.web.test_glmm_api import close, run

RELEVEL = Path(__file__).resolve().parents[1] / "references" / "relevel" / "relevel.csv"


@pytest.fixture
def ds(client):
    df = pd.read_csv(RELEVEL)
    df["h"] = df["g"].str[:2]  # G0, G1: an outer factor for g
    df["n"] = df["count"] + 3
    return client.import_dataset(df.to_csv(index=False), name="relevel")


def check(client, ds, formula, **body):
    return client.post("/api/glmm/formula", json={"dataset_id": ds["id"], "formula": formula, **body})


def test_a_reference_level_reaches_the_fit(client, ds):
    formula = "y ~ x * f + (1 | g)"
    job = run(client, dataset_id=ds["id"], formula=formula, reference_levels={"f": "b"})
    got = job["result"]
    want = glmmlab.glmm(formula, pd.read_csv(RELEVEL), reference_levels={"f": "b"}).to_dict()
    assert [r["variable"] for r in got["fixed_effects"]] == ["(Intercept)", "x", "fa", "fc", "x:fa", "x:fc"]
    for a, b in zip(got["fixed_effects"], want["fixed_effects"], strict=True):
        assert close(a["estimate"], b["estimate"], 1e-7) and close(a["std_error"], b["std_error"], 1e-7)
    assert got["model"]["reference_levels"] == {"f": "b"} and job["spec"]["reference_levels"] == {"f": "b"}


def test_the_check_lists_factor_levels_and_refuses_a_bad_reference(client, ds):
    r = check(client, ds, "y ~ x * f + (1 | g)", reference_levels={"f": "c"})
    assert r.status_code == 200, r.text
    assert r.json()["factors"] == {"f": {"levels": ["a", "b", "c"], "reference": "c"}}
    assert r.json()["fixed_effects"][2:4] == ["fa", "fb"]
    r = check(client, ds, "y ~ x * f + (1 | g)", reference_levels={"f": "q"})
    assert r.status_code == 422 and r.json()["field"] == "reference_levels"
    assert r.json()["error"].startswith("Reference level: ") and "'q' is not a level of 'f'" in r.json()["message"]
    r = client.post("/api/glmm/fits", json={"dataset_id": ds["id"], "formula": "y ~ x + (1 | g)",
                                            "reference_levels": {"f": "b"}})
    assert r.status_code == 422 and r.json()["field"] == "reference_levels"


@pytest.mark.parametrize("formula, family, form", [
    ("y ~ x * f + (1 + x | g) + (1 | h)", "gaussian",
     {"response": "y", "trials": None, "intercept": True, "fixed": ["x"], "factors": ["f"],
      "interactions": [["x", "f"]], "terms": [["x"], ["f"], ["x", "f"]], "group": "g",
      "first": {"intercept": True, "slopes": ["x"], "correlated": True},
      "rows": [{"group": "h", "nested_in": None, "intercept": True, "slopes": [], "correlated": True}],
      "offset": None}),
    ("cbind(count, n - count) ~ 0 + x + offset(x) + (x || g) + (1 | h/g)", "binomial",
     {"response": "count", "trials": "n", "intercept": False, "fixed": ["x"], "factors": [], "interactions": [],
      "terms": [["x"]], "group": "g", "first": {"intercept": True, "slopes": ["x"], "correlated": False},
      "rows": [{"group": "h", "nested_in": None, "intercept": True, "slopes": [], "correlated": True},
               {"group": "g", "nested_in": "h", "intercept": True, "slopes": [], "correlated": True}],
      "offset": "x"}),
])
def test_a_formula_the_form_can_show_is_described_as_the_form(client, ds, formula, family, form):
    r = check(client, ds, formula, family=family)
    assert r.status_code == 200, r.text
    assert r.json()["form"] == form and r.json()["not_form"] == ""


@pytest.mark.parametrize("formula, why", [
    ("y ~ I(x^2) + (1 | g)", "I(x^2) (a fixed effect) is not a plain column"),
    ("y ~ x:f + (1 | g)", "the interaction x:f needs x, f as a fixed effect too"),
    ("y ~ x + (1 | g:h:f)", "nests more than two variables"),
    ("y ~ x + (1 + f | g)", "the random slope f of g is not a fixed effect"),
])
def test_a_formula_the_form_cannot_show_says_why(client, ds, formula, why):
    r = check(client, ds, formula)
    assert r.status_code == 200, r.text
    assert r.json()["form"] is None and why in r.json()["not_form"]


@pytest.mark.parametrize("a, b, same", [
    ("y ~ x + (x || g)", "y ~ x + (1 | g) + (0 + x | g)", True),
    ("y ~ x + (1 | h/g)", "y ~ x + (1 | h) + (1 | g:h)", True),
    ("y ~ x * f + (1 | g)", "y~x+f+x:f+(1|g)", True),
    ("y ~ x + f + (1 | g)", "y ~ f + x + (1 | g)", False),  # another column order
    ("y ~ x + (1 | h/g)", "y ~ x + (1 | h) + (1 | h:g)", False),  # levels named h:g, not g:h
])
def test_the_signature_is_the_model_not_the_text(client, ds, a, b, same):
    sa, sb = (check(client, ds, t).json()["signature"] for t in (a, b))
    assert (sa == sb) is same


def test_the_form_keeps_the_term_order_of_the_formula(client, ds):
    """Issue 19.1: the check lists the fixed terms in the formula's expanded order, so the controls show ``y ~ f +
    x`` as written (a model the controls build round-trips through its formula)."""
    r = check(client, ds, "y ~ f + x + f:x + (1 | g)")
    assert r.status_code == 200, r.text
    assert r.json()["form"]["terms"] == [["f"], ["x"], ["f", "x"]]
    assert r.json()["form"]["factors"] == ["f"] and r.json()["form"]["fixed"] == ["x"]
