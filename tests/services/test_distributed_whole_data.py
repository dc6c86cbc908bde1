"""Fixed-effect factors and scale() on a Dask DataFrame (services/distributed/whole_data.py): the factors' levels
and scale()'s moments computed once on the cluster, so the fit equals the in-memory fit to 1e-8 (the same
coefficient names, estimates, per-row results and predictions); what still needs the rows in one place refused in
words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import glmmlab  # noqa: E402
from glmmlab.engine.errors import GlmmInputError  # noqa: E402
from tests.services.test_distributed import client  # noqa: E402,F401  (the local two-worker cluster)
from tests.services.test_distributed_crossed import assert_crossed_fit  # noqa: E402
from tests.services.test_distributed_general import assert_same_fit, load  # noqa: E402


def both(formula: str, df: pd.DataFrame, npartitions: int, **kw):
    a = glmmlab.glmm(formula, df, **kw)
    stages: list[str] = []
    b = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=npartitions), progress=lambda s, f: stages.append(s),
                     **kw)
    assert any(s.startswith("Levels and moments") for s in stages)
    assert b.names == a.names
    return a, b


@pytest.mark.parametrize("formula", [
    "cbind(incidence, size - incidence) ~ period + (1 | herd)",  # the reference: a factor of 4 levels
    "cbind(incidence, size - incidence) ~ period + scale(size) + (1 | herd)",
])
def test_cbpp_factor_and_scale_equal_in_memory(client, formula):  # noqa: F811
    _, df = load("cbpp_trials")
    a, b = both(formula, df, 3, family="binomial")
    assert "periodP4" in b.names
    assert_same_fit(b, a)
    new = df.head(20)
    assert np.max(np.abs(b.predict(new) - a.predict(new))) <= 1e-10


@pytest.mark.slow
def test_interaction_scale_missing_values_and_numeric_factor_equal_in_memory(client):  # noqa: F811
    """A factor in an interaction with a scaled covariate; missing values in another column (scale() centres on
    every row where its argument is present, as in memory, not on the rows used); factor() of a number column,
    whose levels go in numeric order (2 before 10)."""
    _, df = load("exam_interaction")
    df = df.copy()
    df.loc[df.index[::17], "sex"] = np.nan
    df["band"] = np.where(df["standLRT"] > 0.5, 10, np.where(df["standLRT"] < -0.5, 2, 5))
    a, b = both("normexam ~ scale(standLRT) * sex + factor(band) + (1 | school)", df, 4)
    assert b.n_excluded == a.n_excluded > 0
    assert [n for n in b.names if n.startswith("factor(band)")] == ["factor(band)5", "factor(band)10"]
    assert_same_fit(b, a)


@pytest.mark.slow
def test_crossed_model_with_a_fixed_factor_equals_in_memory(client):  # noqa: F811
    ref, df = load("verbagg_crossed")
    df = df.copy()
    df["btype"] = np.where(df["btype_scold"] == 1, "scold", np.where(df["btype_shout"] == 1, "shout", "curse"))
    a, b = both("r2 ~ Anger + Gender_M + btype + situ_self + mode_do + (1 | id) + (1 | item)", df, 3,
                family="binomial")
    assert [n for n in b.names if n.startswith("btype")] == ["btypescold", "btypeshout"]
    assert_crossed_fit(b, a)


def test_what_still_needs_the_rows_in_one_place_is_refused(client):  # noqa: F811
    _, df = load("cbpp_trials")
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(GlmmInputError, match=r"scale\(size\).*fixed part only.*fit in memory"):
        glmmlab.glmm("cbind(incidence, size - incidence) ~ 1 + (scale(size) | herd)", ddf, family="binomial")
    with pytest.raises(GlmmInputError, match=r"'period' is a factor in a random term.*fit in memory"):
        glmmlab.glmm("cbind(incidence, size - incidence) ~ 1 + (period | herd)", ddf, family="binomial")
    one = df.assign(kind="a")
    with pytest.raises(GlmmInputError, match=r"factor 'kind' .* has only one level \('a'\) on the rows used"):
        glmmlab.glmm("cbind(incidence, size - incidence) ~ kind + (1 | herd)", dd.from_pandas(one, npartitions=2),
                     family="binomial")
    with pytest.raises(GlmmInputError, match=r"scale\(k\).*standard deviation is zero"):
        glmmlab.glmm("cbind(incidence, size - incidence) ~ scale(k) + (1 | herd)",
                     dd.from_pandas(df.assign(k=3.0), npartitions=2), family="binomial")
