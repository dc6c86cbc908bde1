"""Issue 19 point 8's slips in the services: tiny R² written as 0 (the ``proportion`` kind), the ICC table only where
an ICC is defined, and an interval note that speaks of the model's family."""

from __future__ import annotations

import numpy as np
import pandas as pd

import glmmlab
from glmmlab.services.views.numbers import format_column, format_rows
from glmmlab.services.views.result_view import intervals_table, result_tables


def _frame(seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    u0, u1 = rng.normal(0, 1, 12), rng.normal(0, .5, 12)
    y = 1 + u0[g] + (0.5 + u1[g]) * x + rng.normal(0, .7, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "s": (y > 1).astype(int)})


def test_an_intercept_only_models_marginal_r2_is_0_in_model_fit():
    """A proportion (R², ICC) is never scientific: rounding noise reads 0; other decimals keep their notation."""
    assert format_column([2.6757e-30], "proportion") == ["0.0000"]
    assert format_column([-1e-17, 0.25], "proportion") == ["0.0000", "0.2500"]  # no "-0.0000"
    assert format_column([2.6757e-30]) == ["2.6757e-30"]  # a decimal of other units keeps its scientific notation
    rows = [["Marginal R² (Nakagawa)", 2.6757e-30], ["Conditional R² (Nakagawa)", 0.61]]
    assert format_rows(rows, ["text", ["proportion", "proportion"]]) == [
        ["Marginal R² (Nakagawa)", "0.0000"], ["Conditional R² (Nakagawa)", "0.6100"]]
    doc = glmmlab.glmm("y ~ 1 + (1 | g)", _frame()).to_dict()
    fit = {t["name"]: t for t in result_tables(doc)}["model-fit"]
    cells = dict((r[0], c[1]) for r, c in zip(fit["rows"], fit["cells"]))
    assert abs(doc["r2"]["marginal"] or 0.0) < 1e-12 and cells["Marginal R² (Nakagawa)"] == "0.0000"


def test_the_icc_table_only_where_an_icc_is_defined():
    slopes = glmmlab.glmm("y ~ x + (x | g)", _frame()).to_dict()
    assert slopes["icc"] is None
    assert [t["name"] for t in result_tables(slopes)][:3] == ["random-effects", "fixed-effects", "omnibus"]
    one = glmmlab.glmm("y ~ x + (1 | g)", _frame()).to_dict()
    names = [t["name"] for t in result_tables(one)]
    assert names[:4] == ["random-effects", "icc", "fixed-effects", "omnibus"]


def test_the_profile_note_speaks_of_the_models_family():
    doc = {"method": "profile", "level": 0.95, "rows": [{"parameter": "x", "lower": 0.1, "upper": 0.9}]}
    binomial = intervals_table(doc, "binomial")["note"]
    assert "Gaussian" not in binomial and "Laplace" in binomial
    assert "Gaussian models are profiled on the ML deviance" in intervals_table(doc, "gaussian")["note"]
