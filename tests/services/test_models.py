"""Saved models: a model and its diagnostics dataset are stored together, and leave together."""

from __future__ import annotations

import pytest

import glmmlab
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project import catalogue, lineage
from glmmlab.services.project.samples import create_sample_datasets
from glmmlab.services.workbench import models


@pytest.fixture
def fitted(project):
    create_sample_datasets(project)
    ds = next(d for d in catalogue.list_datasets(project) if d.name == "school scores")
    frame = catalogue.read_frame(project, ds.id, ["score", "school", "study_hours"])
    frame.loc[3, "score"] = float("nan")  # one excluded row: the diagnostics keep the source row numbers
    result = glmmlab.fit_glmm(frame, "score", "school", ["study_hours"])
    return ds, result


def test_save_model_stores_the_model_and_its_diagnostics_dataset(project, fitted):
    ds, result = fitted
    doc = result.to_dict()
    model = models.save_model(project, "scores", ds.id, {"response": "score"}, doc)
    assert model["name"] == "scores" and model["result"]["n_obs"] == doc["n_obs"]
    diag = catalogue.get_dataset(project, model["diagnostics_dataset_id"])
    assert diag.parent_id == ds.id and diag.read_only and diag.operation["type"] == "model_diagnostics"
    assert [c.name for c in diag.columns] == list(models.DIAGNOSTIC_COLUMNS)
    frame = catalogue.read_frame(project, diag.id)
    assert len(frame) == doc["n_obs"] == ds.n_rows - 1
    assert 3 not in set(frame["row"]) and frame["row"].iloc[3] == 4
    assert frame["fitted_values"].tolist() == pytest.approx(doc["diagnostics"]["fitted_values"])
    assert frame["deviance_residuals"].tolist() == pytest.approx(frame["pearson_residuals"].tolist())
    assert [m["name"] for m in models.list_models(project)] == ["scores"]


def test_save_is_atomic(project, fitted, monkeypatch):
    ds, result = fitted
    before = len(catalogue.list_datasets(project))
    real = catalogue.store_frame

    def store_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(catalogue, "store_frame", store_then_fail)
    with pytest.raises(RuntimeError):
        models.save_model(project, "broken", ds.id, {}, result.to_dict())
    assert models.list_models(project) == [] and len(catalogue.list_datasets(project)) == before

    doc = result.to_dict()
    doc["diagnostics"]["fitted_values"] = doc["diagnostics"]["fitted_values"][:-1]
    monkeypatch.setattr(catalogue, "store_frame", real)
    with pytest.raises(ServiceError, match="incomplete"):
        models.save_model(project, "short", ds.id, {}, doc)
    with pytest.raises(ServiceError, match="name"):
        models.save_model(project, "  ", ds.id, {}, result.to_dict())
    assert models.list_models(project) == [] and len(catalogue.list_datasets(project)) == before


def test_deleting_the_dataset_cascades_to_models_and_diagnostics(project, fitted):
    ds, result = fitted
    model = models.save_model(project, "m", ds.id, {}, result.to_dict())
    deps = lineage.dependents(project, ds.id)
    assert [m["name"] for m in deps["models"]] == ["m"]
    assert model["diagnostics_dataset_id"] in [d["id"] for d in deps["datasets"]]
    lineage.delete_dataset(project, ds.id)
    with pytest.raises(NotFound):
        models.get_model(project, model["id"])
    with pytest.raises(NotFound):
        catalogue.get_dataset(project, model["diagnostics_dataset_id"])


def test_delete_model_and_recompute_intervals(project, fitted):
    ds, result = fitted
    model = models.save_model(project, "m", ds.id, {}, result.to_dict())
    for level in (0.5, 0.9, 0.99, 0.9999):
        got = models.fixed_effects_at(model["result"], level)
        want = result.fixed_effects_table(level)
        for a, b in zip(got, want):
            assert a["lower"] == pytest.approx(b["lower"], rel=1e-12)
            assert a["upper"] == pytest.approx(b["upper"], rel=1e-12)
    with pytest.raises(ServiceError, match="between 50% and 99.99%"):
        models.fixed_effects_at(model["result"], 0.49)
    assert models.get_model(project, model["id"])["result"]["model"]["conf_level"] == 0.95
    models.delete_model(project, model["id"])
    assert models.list_models(project) == []
    with pytest.raises(NotFound):
        catalogue.get_dataset(project, model["diagnostics_dataset_id"])


def test_the_per_row_diagnostics_are_stored_once_and_read_back_from_the_dataset(project, fitted):
    ds, result = fitted
    doc = result.to_dict()
    model = models.save_model(project, "once", ds.id, {}, doc)
    with project.read() as cur:
        stored = cur.execute("SELECT result FROM models WHERE id = ?", [model["id"]]).fetchone()[0]
    assert '"diagnostics"' not in stored  # the diagnostics dataset is the one store
    back = models.diagnostics_of(project, models.get_model(project, model["id"]))
    assert back["row"] == doc["diagnostics"]["row"]
    for key in models.DIAGNOSTIC_COLUMNS[1:]:
        assert back[key] == pytest.approx(doc["diagnostics"][key], rel=1e-15, abs=0)


def test_a_version_1_project_is_migrated_to_diagnostics_stored_once(tmp_path, fitted, project):
    """Version 1 kept the arrays in the model's document too; opening the file moves to one store, except for a
    model whose diagnostics dataset was deleted (its document is then their only copy)."""
    from glmmlab.services.project.store import Project
    from glmmlab.services.workbench import plots

    ds, result = fitted
    doc = result.to_dict()
    keep = models.save_model(project, "keep", ds.id, {}, doc)
    lone = models.save_model(project, "lone", ds.id, {}, doc)
    lineage.delete_dataset(project, lone["diagnostics_dataset_id"])
    with project.write() as cur:  # make the file as version 1 wrote it
        for m in (keep, lone):
            cur.execute("UPDATE models SET result = ? WHERE id = ?", [__import__("json").dumps(doc), m["id"]])
        cur.execute("DELETE FROM schema_version WHERE version = 2")
    path = project.path
    project.close()
    with Project.open(path) as again:
        assert again.schema_version() == 2
        with again.read() as cur:
            rows = dict(cur.execute("SELECT name, result FROM models").fetchall())
        assert '"diagnostics"' not in rows["keep"] and '"diagnostics"' in rows["lone"]
        for name in ("keep", "lone"):
            m = next(x for x in models.list_models(again) if x["name"] == name)
            back = models.diagnostics_of(again, models.get_model(again, m["id"]))
            assert back["row"] == doc["diagnostics"]["row"]
            assert back["fitted_values"] == pytest.approx(doc["diagnostics"]["fitted_values"], rel=1e-15)
            assert plots.plot_png(again, m["id"], "residuals")[:8] == b"\x89PNG\r\n\x1a\n"


def test_rename_model_keeps_names_unique(project, fitted):
    ds, result = fitted
    a = models.save_model(project, "first", ds.id, {}, result.to_dict())
    models.save_model(project, "second", ds.id, {}, result.to_dict())
    assert models.rename_model(project, a["id"], "  renamed ")["name"] == "renamed"
    with pytest.raises(ServiceError, match="already a model called 'second'"):
        models.rename_model(project, a["id"], "SECOND")
    with pytest.raises(ServiceError, match="name"):
        models.rename_model(project, a["id"], " ")
    with pytest.raises(NotFound):
        models.rename_model(project, 999, "x")
