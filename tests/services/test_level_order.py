"""Issue 19.8: numeric identifiers turned into text keep their numeric order ("1", "2", ..., "10", not "1", "10",
"2"): in a formula's factors and grouping factors, in the random-intercept form's groups, in the formula check's
levels (the Reference level select) and in Dummy Coding. Other text keeps code-point order."""

from __future__ import annotations

import numpy as np
import pandas as pd

import glmmlab
from glmmlab.services.modeling.frames import group_codes
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.project import catalogue, dummy
from glmmlab.services.workbench.model_form import factor_levels

IDS = [str(i) for i in range(1, 13)]


def _frame(seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    herd = np.repeat(np.arange(1, 13), 8)
    period = np.tile(np.arange(1, 11), 10)[: herd.size]
    y = rng.normal(size=herd.size) + rng.normal(0, 1, 12)[herd - 1]
    return pd.DataFrame({"y": y, "herd": herd.astype(str), "period": period.astype(str),
                         "word": rng.choice(["b10", "b2", "B1"], herd.size)})


def test_numbers_as_text_sort_by_their_numbers_other_text_by_code_point():
    from glmmlab.services.modeling.frames import level_order, numeric_text_order

    assert numeric_text_order(["10", "2", "1", "1.5", "-3", "1e1"]) == [4, 2, 3, 1, 0, 5]
    assert numeric_text_order(["1", "10", "a"]) is None and numeric_text_order([]) is None
    labels = ["10", "2", "1"]
    assert [labels[i] for i in level_order(labels)] == ["1", "2", "10"]
    words = ["b10", "b2", "B1"]
    assert [words[i] for i in level_order(words)] == ["B1", "b10", "b2"]


def test_a_formulas_factors_and_groups_of_numbers_as_text_are_in_numeric_order():
    df = _frame()
    mf = build_model_frame(df, "y ~ period + word + (1 | herd)", family="gaussian")
    assert mf.terms[0].levels == IDS  # the BLUP table's rows
    assert factor_levels(mf)["period"]["levels"] == [str(i) for i in range(1, 11)]  # the Reference level select
    assert factor_levels(mf)["word"]["levels"] == ["B1", "b10", "b2"]
    assert list(mf.x_names)[1:4] == ["period2", "period3", "period4"]
    fit = glmmlab.glmm("y ~ period + (1 | herd)", df)
    assert [r["group"] for r in fit.blup_table()][:3] == ["1", "2", "3"]


def test_the_random_intercept_forms_groups_of_numbers_as_text_are_in_numeric_order():
    df = _frame()
    codes, levels = group_codes(df, "herd")
    assert levels == IDS and codes[0] == 0 and codes[-1] == 11
    fit = glmmlab.fit_glmm(df, response="y", group="herd")
    assert [r["group"] for r in fit.blup_table()] == IDS


def test_dummy_coding_lists_numbers_as_text_in_numeric_order(project):
    frame = pd.DataFrame({"herd": ["10", "2", "1", "2", "11"], "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    source = catalogue.store_frame(project, frame, "herds", operation={"type": "test"})
    preview = dummy.preview_dummy_coding(project, source.id, [{"column": "herd", "action": "dummy_drop"}])
    enc = preview["encodings"][0]
    assert enc["levels"] == ["1", "2", "10", "11"] and enc["reference"] == "1"
    assert enc["new_columns"] == ["herd_2", "herd_10", "herd_11"]
