"""Dummy coding: levels, reference, readable unique names, nulls, refusals, read-only derived result, lineage."""

from __future__ import annotations

import pandas as pd
import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project import catalogue, dummy, editing, lineage


@pytest.fixture
def source(project):
    frame = pd.DataFrame({"region": ["North", "south", "East", None, "North"], "k": [1, 2, 3, 1, 10],
                          "y": [1.0, 2.0, 3.0, 4.0, 5.0], "region_North": [0, 0, 0, 0, 0],
                          "same": ["x"] * 5, "flag": [True, False, True, False, None]})
    return catalogue.store_frame(project, frame, "survey", operation={"type": "test"})


def test_default_reference_is_first_in_alphabetical_order(project, source):
    preview = dummy.preview_dummy_coding(project, source.id, [{"column": "region", "action": "dummy_drop"}])
    enc = preview["encodings"][0]
    assert enc["levels"] == ["East", "North", "south"] and enc["reference"] == "East"
    assert enc["counts"] == [1, 2, 1]
    # region_North is taken by an existing column, so the indicator gets a suffix
    assert enc["new_columns"] == ["region_North_2", "region_south"]
    assert [c["name"] for c in preview["columns"]] == ["region_North_2", "region_south", "k", "y", "region_North",
                                                       "same", "flag"]
    assert preview["rows"][0][:2] == [1, 0] and preview["rows"][3][:2] == [None, None]


def test_numbers_sort_numerically_and_reference_can_be_chosen(project, source):
    spec = [{"column": "k", "action": "dummy_keep", "reference": "2", "scale": "nominal"},
            {"column": "flag", "action": "dummy_drop"}]
    preview = dummy.preview_dummy_coding(project, source.id, spec)
    k, flag = preview["encodings"]
    assert k["levels"] == [1, 2, 3, 10] and k["reference"] == 2 and k["new_columns"] == ["k_1", "k_3", "k_10"]
    assert flag["levels"] == [False, True] and flag["reference"] is False and flag["new_columns"] == ["flag_true"]
    kept = next(c for c in preview["columns"] if c["name"] == "k")
    assert kept["scale"] == "nominal" and kept["dtype"] == "int64"


def test_create_makes_a_read_only_derived_dataset_with_its_lineage(project, source):
    spec = [{"column": "region", "action": "dummy_drop", "reference": "North"},
            {"column": "same", "action": "exclude"}, {"column": "region_North", "action": "exclude"}]
    info = dummy.create_dummy_coded(project, source.id, spec)
    assert info.name == "survey (dummy coded)" and info.parent_id == source.id and info.read_only
    assert info.kind == "derived" and info.n_rows == 5
    assert [c.name for c in info.columns] == ["region_East", "region_south", "k", "y", "flag"]
    assert all(c.dtype == "int64" and c.numeric for c in info.columns[:2])
    op = info.operation
    assert op["type"] == "dummy_coding" and op["source"] == "survey"
    assert {"column": "region", "scale": "nominal", "action": "dummy_drop", "reference": "North"} in op["spec"]
    assert op["encodings"][0]["new_columns"] == ["region_East", "region_south"]
    frame = catalogue.read_frame(project, info.id)
    assert frame["region_East"].tolist()[:3] == [0, 0, 1] and pd.isna(frame["region_East"][3])
    assert info.id in [d.id for d in catalogue.list_datasets(project)]
    assert lineage.dependents(project, source.id)["datasets"] == [{"id": info.id, "name": info.name,
                                                                   "parent_id": source.id}]
    with pytest.raises(ServiceError, match="read-only"):
        editing.set_column_scale(project, info.id, "k", "nominal")
    again = dummy.create_dummy_coded(project, source.id, spec)
    assert again.name == "survey (dummy coded) (2)"
    named = dummy.create_dummy_coded(project, info.id, [{"column": "flag", "action": "dummy_drop"}], name="twice")
    assert named.name == "twice" and named.parent_id == info.id


def test_single_valued_column_is_refused_by_name(project, source):
    with pytest.raises(ServiceError, match="Column 'same' of dataset 'survey' has only one distinct value"):
        dummy.preview_dummy_coding(project, source.id, [{"column": "same", "action": "dummy_drop"}])
    before = len(catalogue.list_datasets(project))
    with pytest.raises(ServiceError, match="only one distinct value"):
        dummy.create_dummy_coded(project, source.id, [{"column": "same", "action": "dummy_keep"}])
    assert len(catalogue.list_datasets(project)) == before


@pytest.mark.parametrize("spec, message", [
    ([{"column": "nope", "action": "dummy_drop"}], "no column named 'nope'"),
    ([{"column": "region", "action": "explode"}], "'explode' is not a dummy coding action"),
    ([{"column": "region", "action": "dummy_drop", "reference": "West"}],
     "'West' is not a value of column 'region' in dataset 'survey'.*East, North, south"),
    ([{"column": "region", "action": "as_is", "scale": "ratio"}], "cannot be on the ratio scale"),
    ([{"column": "region", "action": "exclude"}, {"column": "region", "action": "as_is"}], "appears twice"),
    ([{"column": c, "action": "exclude"} for c in ["region", "k", "y", "region_North", "same", "flag"]],
     "result would be empty"),
    ("region", "must be a list"),
])
def test_bad_specs_are_refused_with_a_message(project, source, spec, message):
    with pytest.raises(ServiceError, match=message):
        dummy.preview_dummy_coding(project, source.id, spec)


def test_too_many_levels_are_refused(project):
    info = catalogue.store_frame(project, pd.DataFrame({"id": [f"p{i}" for i in range(dummy.MAX_LEVELS + 5)]}), "many",
                                 operation={"type": "test"})
    with pytest.raises(ServiceError, match="more than 200 distinct values"):
        dummy.preview_dummy_coding(project, info.id, [{"column": "id", "action": "dummy_drop"}])


def test_weird_names_and_values(project):
    col = 'a"; drop table x; --'
    frame = pd.DataFrame({col: ["it's", 'say "hi"', "it's", None], "y": [1, 2, 3, 4]})
    src = catalogue.store_frame(project, frame, "weird", operation={"type": "test"})
    info = dummy.create_dummy_coded(project, src.id, [{"column": col, "action": "dummy_drop"}])
    assert [c.name for c in info.columns] == [f"{col}_say \"hi\"", "y"]
    assert catalogue.read_frame(project, info.id).iloc[:, 0].tolist()[:3] == [0, 1, 0]
