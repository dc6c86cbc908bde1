"""Paging, frames, changing types and scales, renaming, read-only derived datasets."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project import catalogue, editing, importing


@pytest.fixture
def table(project, write_file):
    text = ("id,score,code,flag,when,at,label\n"
            "1,2.0,7,true,2020-01-01,2020-01-01 00:00,true\n"
            "2,3.5,0,false,2020-02-01,2020-01-02 00:00,false\n"
            "3,,1,,2020-03-01,,\n")
    return importing.import_dataset(project, write_file("t.csv", text), "table")


def test_read_rows_pages_and_is_json_safe(project, table):
    page = catalogue.read_rows(project, table.id, offset=1, limit=1)
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 1
    assert page["rows"] == [[2, 3.5, 0, False, "2020-02-01", "2020-01-02T00:00:00", False]]
    assert [c["name"] for c in page["columns"]] == ["id", "score", "code", "flag", "when", "at", "label"]
    json.dumps(catalogue.read_rows(project, table.id), allow_nan=False)
    assert catalogue.read_rows(project, table.id, offset=10)["rows"] == []
    with pytest.raises(ServiceError, match="negative"):
        catalogue.read_rows(project, table.id, offset=-1)
    assert catalogue.read_rows(project, table.id, limit=10**9)["limit"] == catalogue.MAX_PAGE_ROWS


def test_unknown_dataset_and_column_are_not_found(project, table):
    with pytest.raises(NotFound, match="no dataset with id 999"):
        catalogue.get_dataset(project, 999)
    with pytest.raises(NotFound, match="no dataset"):
        catalogue.get_dataset(project, "abc")
    with pytest.raises(NotFound, match="Dataset 'table' has no column named 'nope'"):
        catalogue.read_frame(project, table.id, columns=["nope"])


def test_read_frame_types(project, table):
    frame = catalogue.read_frame(project, table.id)
    assert frame["id"].dtype == "int64" and frame["score"].dtype == "float64" and math.isnan(frame["score"][2])
    assert pd.api.types.is_datetime64_any_dtype(frame["when"])
    assert list(catalogue.read_frame(project, table.id, columns=["label", "id"]).columns) == ["label", "id"]


def test_set_column_type_converts_the_stored_values(project, table):
    info = editing.set_column_type(project, table.id, "code", "string")
    assert info.column("code").dtype == "string" and info.column("code").scale == "nominal"
    info = editing.set_column_type(project, table.id, "code", "float64")
    assert info.column("code").scale == "ratio"
    assert catalogue.read_frame(project, table.id)["code"].tolist() == [7.0, 0.0, 1.0]
    info = editing.set_column_type(project, table.id, "code", "int64")
    assert catalogue.read_frame(project, table.id)["code"].tolist() == [7, 0, 1]
    info = editing.set_column_type(project, table.id, "label", "boolean")
    assert catalogue.read_rows(project, table.id)["rows"][0][6] is True
    info = editing.set_column_type(project, table.id, "at", "date")
    assert catalogue.read_rows(project, table.id)["rows"][1][5] == "2020-01-02"
    info = editing.set_column_scale(project, table.id, "id", "nominal")
    info = editing.set_column_type(project, table.id, "id", "float64")
    assert info.column("id").dtype == "float64" and info.column("id").scale == "nominal"  # same family: kept


def test_a_value_that_cannot_be_converted_is_named(project, table):
    with pytest.raises(ServiceError) as err:
        editing.set_column_type(project, table.id, "score", "int64")
    assert "Column 'score' of dataset 'table' cannot become int64: the value '3.5'" in str(err.value)
    with pytest.raises(ServiceError, match="the value '7' is not 0 or 1"):
        editing.set_column_type(project, table.id, "code", "boolean")
    with pytest.raises(ServiceError, match="is date and cannot become int64"):
        editing.set_column_type(project, table.id, "when", "int64")
    with pytest.raises(ServiceError, match="not a column type"):
        editing.set_column_type(project, table.id, "when", "text")
    assert catalogue.get_dataset(project, table.id) == table  # nothing changed


def test_string_to_number_names_the_first_bad_value_and_counts_the_rest(project, write_file):
    info = importing.import_dataset(project, write_file("s.csv", "v\n1\nabc\n2\nxyz\n"), "s")
    with pytest.raises(ServiceError, match=r"the value 'abc' \(and 1 other value\) is not a number"):
        editing.set_column_type(project, info.id, "v", "float64")


def test_set_column_scale(project, table):
    assert editing.set_column_scale(project, table.id, "code", "nominal").column("code").categorical
    editing.set_column_type(project, table.id, "code", "string")
    with pytest.raises(ServiceError, match="is string, which cannot be on the ratio scale"):
        editing.set_column_scale(project, table.id, "code", "ratio")
    with pytest.raises(ServiceError, match="not a measurement scale"):
        editing.set_column_scale(project, table.id, "id", "cardinal")


def test_rename_dataset(project, table, write_file):
    assert editing.rename_dataset(project, table.id, "  renamed ").name == "renamed"
    other = importing.import_dataset(project, write_file("o.csv", "a\n1\n"), "other")
    with pytest.raises(ServiceError, match="already called 'renamed'"):
        editing.rename_dataset(project, other.id, "renamed")
    with pytest.raises(ServiceError, match="cannot be empty"):
        editing.rename_dataset(project, other.id, "")


def test_derived_datasets_are_read_only(project, table):
    derived = catalogue.store_frame(project, pd.DataFrame({"a": [1, 2]}), "derived", parent_id=table.id,
                                    operation={"type": "test"})
    assert derived.read_only and derived.kind == "derived"
    with pytest.raises(ServiceError, match="Dataset 'derived' is read-only"):
        editing.set_column_type(project, derived.id, "a", "string")
    with pytest.raises(ServiceError, match="read-only"):
        editing.set_column_scale(project, derived.id, "a", "nominal")


def test_weird_column_names_work_everywhere(project):
    names = ['a"; drop table x; --', "Robert'); DROP TABLE datasets;--", "ÄÖÜ ✓", "A", "a", "c0", "ds_1", " "]
    frame = pd.DataFrame({n: [1, 2, 3] for n in names[:-1]} | {names[-1]: ["x", "y", "x"]})
    info = catalogue.store_frame(project, frame, 'na"me\'; --', operation={"type": "test"})
    assert [c.name for c in info.columns] == names[:-1] + ["column_8"]
    for name in names[:-1]:
        editing.set_column_scale(project, info.id, name, "nominal")
        editing.set_column_type(project, info.id, name, "float64")
    assert catalogue.read_frame(project, info.id, columns=[names[0]])[names[0]].tolist() == [1.0, 2.0, 3.0]
    assert editing.rename_dataset(project, info.id, "x'); DROP TABLE columns; --").name.startswith("x')")
    assert len(catalogue.list_datasets(project)) == 1


def test_store_frame_handles_mixed_objects_categories_and_time_zones(project):
    frame = pd.DataFrame({"mix": [1, "a", None], "cat": pd.Categorical(["x", "y", "x"]),
                          "tz": pd.to_datetime(["2020-01-01 10:00"] * 3).tz_localize("Europe/Berlin"),
                          "n": pd.array([1, None, 3], dtype="Int64")})
    info = catalogue.store_frame(project, frame, "mixed", operation={"type": "test"})
    assert {c.name: c.dtype for c in info.columns} == {"mix": "string", "cat": "string", "tz": "datetime",
                                                       "n": "int64"}
    assert catalogue.read_rows(project, info.id)["rows"][1] == ["a", "y", "2020-01-01T09:00:00", None]
