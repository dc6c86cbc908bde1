"""Issue 19.8: a destructive type change says how many values it turns into missing, of how many, and the last type
change of a dataset's column can be undone: its values (those turned into missing too), its type and its scale
come back exactly; nothing else to undo is a clear sentence."""

from __future__ import annotations

import pandas as pd
import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project import catalogue, editing, lineage
from glmmlab.services.project.store import Project


def _herds(project: Project):
    frame = pd.DataFrame({"herd": [f"h{i}" for i in range(1, 57)], "ids": [str(i) for i in range(56)],
                          "x": [float(i) / 3 for i in range(56)]})
    return catalogue.store_frame(project, frame, "herds", operation={"type": "import"})


def _tables(project: Project) -> set[str]:
    with project.read() as cur:
        return {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_a_refused_change_counts_the_values_that_do_not_fit_of_those_present(project):
    info = _herds(project)
    with pytest.raises(ServiceError) as err:
        editing.set_column_type(project, info.id, "herd", "int64")
    assert err.value.details["invalid_count"] == 56 and err.value.details["present_count"] == 56
    assert editing.column_undo(project, info.id) is None  # refused: nothing changed, nothing to undo


def test_values_turned_into_missing_come_back_with_undo(project):
    info = _herds(project)
    before = catalogue.read_rows(project, info.id, limit=100)["rows"]
    editing.set_column_scale(project, info.id, "herd", "ordinal")
    after = editing.set_column_type(project, info.id, "herd", "int64", invalid="missing")
    assert after.column("herd").dtype == "int64"
    assert all(r[0] is None for r in catalogue.read_rows(project, info.id, limit=100)["rows"])
    assert editing.column_undo(project, info.id) == {"column": "herd", "dtype": "string", "scale": "ordinal",
                                                     "to_dtype": "int64", "made_missing": 56}
    restored = editing.undo_column_type(project, info.id)
    assert (restored.column("herd").dtype, restored.column("herd").scale) == ("string", "ordinal")
    assert catalogue.read_rows(project, info.id, limit=100)["rows"] == before
    assert editing.column_undo(project, info.id) is None
    with pytest.raises(ServiceError, match="has no column type change to undo"):
        editing.undo_column_type(project, info.id)


def test_the_last_change_is_undone_and_a_column_changed_since_is_left_alone(project):
    info = _herds(project)
    editing.set_column_type(project, info.id, "ids", "int64")  # every value fits: nothing missing, still undoable
    assert editing.column_undo(project, info.id)["made_missing"] == 0
    editing.set_column_type(project, info.id, "x", "string")
    assert editing.column_undo(project, info.id)["column"] == "x"  # the last change
    editing.set_column_type(project, info.id, "x", "float64")  # x changed again: that change is the one to undo
    editing.undo_column_type(project, info.id)
    info = catalogue.get_dataset(project, info.id)
    assert (info.column("ids").dtype, info.column("x").dtype) == ("int64", "string")
    assert catalogue.read_rows(project, info.id, limit=3)["rows"][1][2] == "0.3333333333333333"


def test_deleting_a_dataset_deletes_what_its_undo_kept(project):
    info = _herds(project)
    editing.set_column_type(project, info.id, "herd", "int64", invalid="missing")
    assert {f"undo_ds_{info.id}", f"undo_ds_{info.id}_info"} <= _tables(project)
    lineage.delete_dataset(project, info.id)
    assert not {t for t in _tables(project) if t.startswith("undo_")}
