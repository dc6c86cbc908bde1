"""Issue 10, point 1: the ways files mark missing values import as missing, and a type change can turn the values
that do not fit into missing ones, saying how many."""

from __future__ import annotations

import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project import catalogue, editing, importing

TEXT = ("g,hours,count,flag,day,label\n"
        "a,1.5,1,TRUE,2024-01-01,NA\n"
        "a,NA,NA,NA,NA,x\n"
        "b,.,.,.,.,.\n"
        "b,,,,,\n"
        "c, n/a ,N/A,n/a,N/A,y\n"
        "c,NaN,NULL,null,#N/A,z\n"
        "d,#N/A,7,false,2024-01-03,w\n")


def test_r_spss_and_hand_written_missing_markers_are_missing(project, write_file):
    info = importing.import_dataset(project, write_file("m.csv", TEXT), "m")
    assert {c.name: c.dtype for c in info.columns} == {"g": "string", "hours": "float64", "count": "int64",
                                                       "flag": "boolean", "day": "date", "label": "string"}
    rows = catalogue.read_rows(project, info.id)["rows"]
    assert [r[1] for r in rows] == [1.5, None, None, None, None, None, None]
    assert [r[2] for r in rows] == [1, None, None, None, None, None, 7]
    assert [r[3] for r in rows] == [True, None, None, None, None, None, False]
    assert [r[4] for r in rows] == ["2024-01-01", None, None, None, None, None, "2024-01-03"]
    assert [r[5] for r in rows] == ["NA", "x", ".", None, "y", "z", "w"]  # a text column keeps its text


def test_one_na_no_longer_makes_a_number_column_text(project, write_file):
    info = importing.import_dataset(project, write_file("h.csv", "hours\n" + "2.5\n" * 500 + "NA\n"), "h")
    assert info.columns[0].dtype == "float64"
    frame = catalogue.read_frame(project, info.id)
    assert frame["hours"].isna().sum() == 1 and frame["hours"].dtype == "float64"


def test_a_type_change_counts_the_cells_that_do_not_fit_and_can_make_them_missing(project, write_file):
    info = importing.import_dataset(project, write_file("t.csv", "v\n1\n2.5\nabc\nNA\nxyz\n-\n"), "t")
    assert info.columns[0].dtype == "string"
    with pytest.raises(ServiceError, match="Turn the 3 values that are not a number into missing") as err:
        editing.set_column_type(project, info.id, "v", "float64")
    assert err.value.details["invalid_count"] == 3 and err.value.details["example"] == "abc"
    assert catalogue.get_dataset(project, info.id).columns[0].dtype == "string"  # refused: nothing changed
    info = editing.set_column_type(project, info.id, "v", "float64", invalid="missing")
    assert info.columns[0].dtype == "float64"
    assert [r[0] for r in catalogue.read_rows(project, info.id)["rows"]] == [1.0, 2.5, None, None, None, None]
    with pytest.raises(ServiceError, match="'refuse' or 'missing'"):
        editing.set_column_type(project, info.id, "v", "int64", invalid="drop")
