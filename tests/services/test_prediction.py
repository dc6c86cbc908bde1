"""Prediction for general models: the fit's design rebuilt for new rows, and predictors that reproduce R's fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.services.modeling.design import DesignRecipe
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.modeling.prediction import make_predictor, prediction_design
from tests.conftest import MODELS, model_case_names

CASES = ["sleepstudy_slope", "contraception_slope", "exam_interaction", "mmmec_offset", "grouseticks_nested",
         "cbpp_trials"]
ALL_CASES = model_case_names()  # a failing param when the folder is missing or empty
INVERSE_LINK = {"identity": lambda e: e, "log": np.exp, "logit": expit}


def _case(case: str) -> tuple[dict, pd.DataFrame, ModelFrame]:
    ref = json.loads((MODELS / f"{case}.json").read_text())
    df = pd.read_csv(MODELS / f"{case}.csv", keep_default_na=True)
    mf = build_model_frame(df, ref["formula"], family=ref["family"], weights=ref["weights"], offset=ref["offset"])
    return ref, df, mf


def _offset(mf: ModelFrame) -> np.ndarray:
    return mf.offset if mf.offset is not None else np.zeros(mf.n)


def _assert_same_design(d, mf: ModelFrame, idx: np.ndarray) -> None:
    """The new design equals the fit's on rows ``idx`` (positions among the rows used), exactly."""
    np.testing.assert_array_equal(d.X, mf.X[idx])
    np.testing.assert_array_equal(d.offset, _offset(mf)[idx])
    assert [t.component for t in d.random] == [t.component for t in mf.terms]
    for new, t in zip(d.random, mf.terms):
        assert new.names == t.names
        np.testing.assert_array_equal(new.codes, t.codes[idx])
        np.testing.assert_array_equal(new.Z, t.Z[idx])


def _r_blups(ref: dict) -> dict:
    ranef = pd.DataFrame(ref["results"]["nAGQ1"]["ranef"])
    out = {}
    for comp, sub in ranef.groupby("grpvar", sort=False):
        wide = sub.pivot(index="grp", columns="term", values="condval")
        names = list(dict.fromkeys(sub.term))
        out[comp] = {"levels": list(wide.index), "names": names, "values": wide[names].to_numpy()}
    return out


# ----------------------------------------------------------------------------------------- reference cases


def test_cases_found():
    for c in CASES:
        assert (MODELS / f"{c}.json").exists(), f"reference case {c} missing under {MODELS}"


@pytest.mark.parametrize("case", ALL_CASES)
def test_same_rows_give_the_fits_design(case):
    _, df, mf = _case(case)
    assert isinstance(mf.recipe, DesignRecipe)
    d = prediction_design(mf.recipe, df.iloc[mf.rows], mf.x_names)
    _assert_same_design(d, mf, np.arange(mf.n))
    assert d.X.shape == (mf.n, len(mf.x_names)) and d.offset.shape == (mf.n,)


@pytest.mark.parametrize("case", CASES)
def test_shuffled_subset_with_levels_absent(case):
    _, df, mf = _case(case)
    rng = np.random.default_rng(7)
    used = df.iloc[mf.rows].reset_index(drop=True)
    keep = np.ones(mf.n, dtype=bool)
    # drop a fixed factor's reference level (its columns must not move) and the first level of each grouping
    for v, levels in mf.recipe.levels.items():
        keep &= used[v.names()[0]].astype(str).to_numpy() != levels[0]
        break
    for t in mf.terms:
        keep &= t.codes != 0
    idx = rng.permutation(np.flatnonzero(keep))[: max(5, int(keep.sum()) // 2)]
    sub = used.iloc[idx]
    if "use" in sub:  # the response is not needed
        sub = sub.drop(columns="use")
    d = prediction_design(mf.recipe, sub, mf.x_names)
    _assert_same_design(d, mf, idx)
    assert all((new.codes > 0).all() for new in d.random)


@pytest.mark.parametrize("case", CASES)
def test_unseen_grouping_level_codes_minus_one(case):
    _, df, mf = _case(case)
    new = df.iloc[mf.rows[:10]].reset_index(drop=True)
    f = mf.recipe.formula
    col = f.random[-1].group[0].names()[0]  # sleepstudy Subject, grouseticks BROOD of BROOD:LOCATION
    new[col] = new[col].astype(object)
    new.loc[[0, 3], col] = 987654 if pd.api.types.is_numeric_dtype(df[col]) else "never seen"
    d = prediction_design(mf.recipe, new, mf.x_names)
    for t, nt in zip(mf.terms, d.random):
        uses_col = any(col in g.names() for r in f.random if r.component == t.component for g in r.group)
        expected = t.codes[:10].copy()
        if uses_col:
            expected[[0, 3]] = -1
        np.testing.assert_array_equal(nt.codes, expected)
        np.testing.assert_array_equal(nt.Z, t.Z[:10])  # the design of a new group is the same
    np.testing.assert_array_equal(d.X, mf.X[:10])


def test_unseen_grouping_label_that_is_not_a_number():
    _, df, mf = _case("sleepstudy_slope")  # Subject is numeric in the fit; a text label is just a new group
    new = df.iloc[:3].astype({"Subject": object})
    new.loc[1, "Subject"] = "new subject"
    new.loc[2, "Subject"] = "309"
    d = prediction_design(mf.recipe, new)
    np.testing.assert_array_equal(d.random[0].codes, [0, -1, 1])


@pytest.mark.parametrize("case,column,level", [
    ("contraception_slope", "livch", "7"), ("contraception_slope", "urban", "U"),
    ("exam_interaction", "sex", "X"), ("cbpp_trials", "period", "P9"),
])
def test_unseen_fixed_factor_level_is_an_error(case, column, level):
    _, df, mf = _case(case)
    new = df.iloc[:6].copy()
    new.loc[new.index[2], column] = level
    with pytest.raises(GlmmInputError) as e:
        prediction_design(mf.recipe, new, mf.x_names)
    msg = str(e.value)
    assert repr(column) in msg and repr(level) in msg and "never saw" in msg and "1 new row" in msg


@pytest.mark.parametrize("case", ALL_CASES)
def test_predictor_reproduces_rs_fitted(case):
    ref, df, mf = _case(case)
    r = ref["results"]["nAGQ1"]
    beta = np.asarray([r["fixef"][n] for n in mf.x_names])
    predictor = make_predictor(mf.recipe, mf.x_names, beta, _r_blups(ref))
    eta_fixed, random_part = predictor(df.iloc[r["rows"]])
    np.testing.assert_allclose(eta_fixed, mf.X @ beta + _offset(mf), rtol=1e-12, atol=1e-12)
    mu = INVERSE_LINK[ref["link"]](eta_fixed + random_part)
    fitted = np.asarray(r["fitted"])
    np.testing.assert_allclose(mu, fitted, rtol=1e-6, atol=1e-9 * np.abs(fitted).max())


def test_predictor_new_group_gets_the_population_prediction():
    ref, df, mf = _case("contraception_slope")
    r = ref["results"]["nAGQ1"]
    beta = np.asarray([r["fixef"][n] for n in mf.x_names])
    predictor = make_predictor(mf.recipe, mf.x_names, beta, _r_blups(ref))
    new = df.iloc[:4].copy()
    new["district"] = [1, 999, 2, 1000]
    eta_fixed, random_part = predictor(new)
    assert random_part[1] == 0.0 and random_part[3] == 0.0
    assert random_part[0] != 0.0 and random_part[2] != 0.0
    np.testing.assert_allclose(eta_fixed, mf.X[:4] @ beta)


# ------------------------------------------------------------------------------------------- rules, checks


def _toy(n: int = 30, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(3, 2, size=n),
        "e": rng.uniform(1, 3, size=n),
        "f": np.tile(["b", "a", "c"], n // 3),
        "h": np.tile(["M", "F"], n // 2),
        "g": np.repeat(np.arange(6), n // 6),
        "k": np.tile(["u", "v", "w", "z", "t"], n // 5),
    })


def test_scale_uses_the_fits_centre_and_scale():
    df = _toy()
    df.loc[4, "y"] = np.nan  # dropped for the fit, yet scale() used every row's x, as R's model.frame does
    mf = build_model_frame(df, "y ~ scale(x) + I(scale(x)^2) + (1 | g)")
    m, sd = df["x"].mean(), df["x"].std(ddof=1)
    [(expr, params)] = mf.recipe.scales.items()
    assert expr.deparse() == "scale(x)"
    np.testing.assert_allclose(params, (m, sd))
    d = prediction_design(mf.recipe, {"x": [m + sd, 0.0], "g": [0, 5]})
    z = -m / sd
    np.testing.assert_allclose(d.X, [[1.0, 1.0, 1.0], [1.0, z, z * z]])


def test_recipe_records_levels_references_terms_and_offsets():
    df = _toy()
    mf = build_model_frame(df, "y ~ x + f * h + offset(log(e)) + (1 + h | g)", offset="x")
    rec = mf.recipe
    assert rec.factors == {"f": {"levels": ["a", "b", "c"], "reference": "a"},
                           "h": {"levels": ["F", "M"], "reference": "F"}}
    assert rec.offsets == ["log(e)", "x"]
    assert [(t.component, t.levels[:2], t.names) for t in rec.terms] == [("g", ("0", "1"), ("(Intercept)", "hM"))]
    assert list(rec.x_names) == mf.x_names
    # new rows with only some levels, in another order: the same columns
    new = pd.DataFrame({"x": [1.0, 2.0], "e": [1.0, np.e], "f": ["c", "b"], "h": ["M", "M"], "g": [3, 3]})
    d = prediction_design(rec, new)
    assert mf.x_names == ["(Intercept)", "x", "fb", "fc", "hM", "fb:hM", "fc:hM"]
    np.testing.assert_array_equal(d.X, [[1, 1, 0, 1, 1, 0, 1], [1, 2, 1, 0, 1, 1, 0]])
    np.testing.assert_allclose(d.offset, [1.0, 3.0])
    np.testing.assert_array_equal(d.random[0].Z, [[1, 1], [1, 1]])
    np.testing.assert_array_equal(d.random[0].codes, [3, 3])


def test_categorical_in_another_order_and_no_intercept():
    df = _toy()
    df["f"] = pd.Categorical(df["f"], categories=["c", "a", "b"])
    mf = build_model_frame(df, "y ~ 0 + f + x + (1 | g)")
    assert mf.x_names == ["fc", "fa", "fb", "x"]
    new = pd.DataFrame({"f": pd.Categorical(["b", "a"], categories=["a", "b"]), "x": [0.5, 1.5], "g": [1, 2]})
    d = prediction_design(mf.recipe, new)
    np.testing.assert_array_equal(d.X, [[0, 0, 1, 0.5], [0, 1, 0, 1.5]])


def test_x_names_leave_out_dropped_columns():
    _, df, mf = _case("contraception_slope")
    names = [n for n in mf.x_names if n != "livch2"]
    d = prediction_design(mf.recipe, df.iloc[:20], names)
    np.testing.assert_array_equal(d.X, mf.X[:20][:, [mf.x_names.index(n) for n in names]])
    with pytest.raises(ValueError, match="livch9"):
        prediction_design(mf.recipe, df.iloc[:20], ["(Intercept)", "livch9"])


def test_nested_grouping_new_combination():
    _, df, mf = _case("grouseticks_nested")
    new = df.iloc[:3].copy()
    # a brood seen in the fit, at a location it was never at: a new BROOD:LOCATION, a known LOCATION
    other = df.loc[df["LOCATION"] != new["LOCATION"].iloc[0], "LOCATION"].iloc[0]
    new.loc[new.index[0], "LOCATION"] = other
    d = prediction_design(mf.recipe, new)
    loc, brood = d.random
    assert loc.component == "LOCATION" and brood.component == "BROOD:LOCATION"
    assert mf.recipe.terms[0].levels[loc.codes[0]] == str(other)
    assert brood.codes[0] == -1
    np.testing.assert_array_equal(brood.codes[1:], mf.terms[1].codes[1:3])


def test_missing_column_names_it_and_response_is_not_needed():
    _, df, mf = _case("mmmec_offset")
    new = df.drop(columns=["deaths"]).iloc[:5]
    prediction_design(mf.recipe, new)  # no response needed
    with pytest.raises(GlmmInputError, match=r"column 'expected' .*not in the new data"):
        prediction_design(mf.recipe, new.drop(columns=["expected"]))
    with pytest.raises(GlmmInputError, match=r"column 'region' .*not in the new data"):
        prediction_design(mf.recipe, new.drop(columns=["region"]))


@pytest.mark.parametrize("column", ["uvb", "expected", "region"])
def test_missing_values_are_an_error_counting_rows(column):
    _, df, mf = _case("mmmec_offset")
    new = df.iloc[:8].copy()
    new[column] = new[column].astype(float)
    new.loc[new.index[[2, 5]], column] = np.nan
    with pytest.raises(GlmmInputError) as e:
        prediction_design(mf.recipe, new)
    msg = str(e.value)
    assert repr(column) in msg and "2 of 8 new row(s), first on row 3; " in msg and "0-based" not in msg


def test_missing_factor_value_is_an_error():
    _, df, mf = _case("contraception_slope")
    new = df.iloc[:5].copy()
    new.loc[new.index[1], "livch"] = None
    with pytest.raises(GlmmInputError, match=r"column 'livch' has missing values on 1 of 5"):
        prediction_design(mf.recipe, new)


def test_numbers_as_text_convert_and_text_is_an_error():
    _, df, mf = _case("contraception_slope")
    new = df.iloc[:5].copy()
    new["age"] = new["age"].map(repr)
    d = prediction_design(mf.recipe, new)
    np.testing.assert_array_equal(d.X, mf.X[:5])
    new.loc[new.index[3], "age"] = "old"
    with pytest.raises(GlmmInputError, match=r"column 'age' .*not numbers: 'old' on row 4$"):
        prediction_design(mf.recipe, new)
    # a factor given as numbers: labels match the fit's ("0", "1", "2", ...)
    new = df.iloc[:40].copy()
    new = new[new["livch"] != "3+"]
    new["livch"] = new["livch"].astype(int)
    d = prediction_design(mf.recipe, new)
    np.testing.assert_array_equal(d.X, mf.X[new.index.to_numpy()])


def test_other_table_types_and_a_single_row():
    pa = pytest.importorskip("pyarrow")
    _, df, mf = _case("exam_interaction")
    sub = df.iloc[:12]
    expected = prediction_design(mf.recipe, sub).X
    np.testing.assert_array_equal(prediction_design(mf.recipe, pa.Table.from_pandas(sub)).X, expected)
    as_dict = {c: sub[c].tolist() for c in sub.columns}
    np.testing.assert_array_equal(prediction_design(mf.recipe, as_dict).X, expected)
    one = {"standLRT": 0.5, "sex": "M", "school": 3}
    np.testing.assert_array_equal(prediction_design(mf.recipe, one).X, [[1.0, 0.5, 1.0, 0.5]])
    with pytest.raises(GlmmInputError, match="must be a table"):
        prediction_design(mf.recipe, [1, 2, 3])


def test_polars():
    pl = pytest.importorskip("polars")
    _, df, mf = _case("cbpp_trials")
    d = prediction_design(mf.recipe, pl.from_pandas(df))
    _assert_same_design(d, mf, np.arange(mf.n))


def test_blups_by_name_in_any_order_and_uncorrelated_terms():
    ref, df, mf = _case("sleepstudy_uncorrelated")  # (Days || Subject): two terms on one factor
    r = ref["results"]["nAGQ1"]
    beta = np.asarray([r["fixef"][n] for n in mf.x_names])
    blups = _r_blups(ref)
    b = blups["Subject"]
    flipped = {"Subject": {"levels": b["levels"][::-1], "names": b["names"][::-1],
                           "values": b["values"][::-1, ::-1]}}
    a = make_predictor(mf.recipe, mf.x_names, beta, blups)(df)
    c = make_predictor(mf.recipe, mf.x_names, beta, flipped)(df)
    np.testing.assert_allclose(a[1], c[1], rtol=1e-14)
    np.testing.assert_allclose(a[0] + a[1], r["fitted"], rtol=1e-6)
    with pytest.raises(ValueError, match="no entry"):
        make_predictor(mf.recipe, mf.x_names, beta, {})
    with pytest.raises(ValueError, match="lack the fit's level"):
        short = {"Subject": {"levels": b["levels"][1:], "names": b["names"], "values": b["values"][1:]}}
        make_predictor(mf.recipe, mf.x_names, beta, short)
    with pytest.raises(ValueError, match="beta has"):
        make_predictor(mf.recipe, mf.x_names, beta[:1], blups)


def test_many_rows_with_an_interaction_grouping_match_the_frame():
    rng = np.random.default_rng(3)
    n = 200_000
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "f": rng.choice(list("abc"), n),
                       "g": rng.integers(0, 300, n), "h": rng.choice(["p", "q", "r"], n)})
    mf = build_model_frame(df, "y ~ x * f + (1 + x | g) + (1 | h:g)")
    perm = rng.permutation(n)
    d = prediction_design(mf.recipe, df.drop(columns="y").iloc[perm])
    _assert_same_design(d, mf, perm)
