"""Dependents and cascade delete, including models and their diagnostics datasets."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from glmmlab.services.errors import NotFound
from glmmlab.services.project import catalogue, dummy, lineage


def add_model(project, name, dataset_id, diagnostics_id=None):
    with project.write() as cur:
        model_id = project.next_id(cur, "model")
        cur.execute("INSERT INTO models (id, name, dataset_id, spec, result, diagnostics_dataset_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [model_id, name, dataset_id, json.dumps({}), None, diagnostics_id])
    return model_id


@pytest.fixture
def family(project):
    """base -> coded -> coded2; a model on coded with a diagnostics dataset, and a derived dataset of that."""
    base = catalogue.store_frame(project, pd.DataFrame({"g": ["a", "b", "a"], "y": [1.0, 2.0, 3.0]}), "base",
                                 operation={"type": "test"})
    other = catalogue.store_frame(project, pd.DataFrame({"z": [1]}), "other", operation={"type": "test"})
    coded = dummy.create_dummy_coded(project, base.id, [{"column": "g", "action": "dummy_keep"}])
    coded2 = dummy.create_dummy_coded(project, coded.id, [{"column": "g", "action": "dummy_drop"}])
    diag = catalogue.store_frame(project, pd.DataFrame({"fitted_values": [1.0, 2.0, 3.0]}), "m1 diagnostics",
                                 parent_id=coded.id, operation={"type": "model_diagnostics"})
    model = add_model(project, "m1", coded.id, diag.id)
    from_diag = catalogue.store_frame(project, pd.DataFrame({"r": [0.1]}), "from diagnostics", parent_id=diag.id,
                                      operation={"type": "test"})
    model2 = add_model(project, "m2", from_diag.id)
    unrelated = add_model(project, "m3", other.id)
    return {"base": base, "other": other, "coded": coded, "coded2": coded2, "diag": diag, "from_diag": from_diag,
            "model": model, "model2": model2, "unrelated": unrelated}


def test_dependents_are_transitive(project, family):
    deps = lineage.dependents(project, family["base"].id)
    assert {d["id"] for d in deps["datasets"]} == {family[k].id for k in ("coded", "coded2", "diag", "from_diag")}
    assert {m["id"] for m in deps["models"]} == {family["model"], family["model2"]}
    assert lineage.dependents(project, family["coded2"].id) == {"datasets": [], "models": []}


def test_delete_removes_everything_that_depends_in_one_go(project, family):
    deleted = lineage.delete_dataset(project, family["base"].id)
    assert deleted["datasets"][0]["id"] == family["base"].id and len(deleted["datasets"]) == 5
    assert len(deleted["models"]) == 2
    assert [d.name for d in catalogue.list_datasets(project)] == ["other"]
    with project.read() as cur:
        assert cur.execute("SELECT id FROM models").fetchall() == [(family["unrelated"],)]
        tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'ds_%'")
                  .fetchall()}
        assert tables == {f"ds_{family['other'].id}"}
        assert cur.execute("SELECT count(*) FROM columns WHERE dataset_id <> ?",
                           [family["other"].id]).fetchall()[0][0] == 0
    with pytest.raises(NotFound):
        catalogue.get_dataset(project, family["coded"].id)


def test_deleting_a_diagnostics_dataset_unlinks_its_model(project, family):
    lineage.delete_dataset(project, family["diag"].id)
    with project.read() as cur:
        row = cur.execute("SELECT diagnostics_dataset_id FROM models WHERE id = ?", [family["model"]]).fetchall()
    assert row == [(None,)]
    assert family["coded"].id in [d.id for d in catalogue.list_datasets(project)]


def test_a_failing_delete_changes_nothing(project, family, monkeypatch):
    calls = {"n": 0}
    real = lineage._lineage_dict

    def failing(*args):
        calls["n"] += 1
        raise RuntimeError("disk full")

    monkeypatch.setattr(lineage, "_lineage_dict", failing)
    with pytest.raises(RuntimeError):
        lineage.delete_dataset(project, family["base"].id)
    monkeypatch.setattr(lineage, "_lineage_dict", real)
    assert len(catalogue.list_datasets(project)) == 6
    assert catalogue.read_frame(project, family["coded2"].id).shape == (3, 3)
