"""Export to one file and import again; damaged or foreign files are refused."""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest

from glmmlab.services.errors import ServiceError
from glmmlab.services.project import catalogue, dummy, editing, importing, samples
from glmmlab.services.workbench import project_io


def test_roundtrip_keeps_datasets_types_scales_lineage_models_and_ids(project, tmp_path):
    samples.create_sample_datasets(project)
    frame = pd.DataFrame({'a"; --': [1.5, None], "d": pd.to_datetime(["2020-01-01", None])})
    weird = catalogue.store_frame(project, frame, "wéird 'name'", operation={"type": "test"})
    editing.set_column_scale(project, weird.id, 'a"; --', "interval")
    coded = dummy.create_dummy_coded(project, 1, [{"column": "track", "action": "dummy_drop"}])
    result = _real_result()  # an import checks that a model's result can be shown, so it must be a real one
    with project.write() as cur:
        cur.execute("INSERT INTO models (id, name, dataset_id, spec, result) VALUES (?, 'm', ?, ?, ?)",
                    [project.next_id(cur, "model"), coded.id, json.dumps({"family": "gaussian"}), json.dumps(result)])
        cur.execute("INSERT INTO reports (id, name) VALUES (?, 'r')", [project.next_id(cur, "report")])
    summary = project_io.export_project(project, tmp_path / "out.glmmlab")
    assert summary["datasets"] == 6 and summary["models"] == 1 and summary["reports"] == 1

    with project_io.import_project(tmp_path / "out.glmmlab", tmp_path / "copy.duckdb") as copy:
        assert catalogue.list_datasets(copy) == catalogue.list_datasets(project)
        for info in catalogue.list_datasets(project):
            pd.testing.assert_frame_equal(catalogue.read_frame(copy, info.id), catalogue.read_frame(project, info.id))
        with copy.read() as cur:
            assert cur.execute("SELECT name, dataset_id, spec FROM models").fetchall() == [
                ("m", coded.id, json.dumps({"family": "gaussian"}))]
        # new ids continue after the imported ones
        assert importing.import_dataset(copy, b"a\n1\n", "new", fmt="csv").id == coded.id + 1
        assert catalogue.get_dataset(copy, coded.id).read_only


def _real_result() -> dict:
    import numpy as np

    import glmmlab

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"y": rng.normal(size=120), "x": rng.normal(size=120),
                          "g": [f"g{i % 12}" for i in range(120)]})
    result = glmmlab.fit_glmm(frame, "y", "g", ["x"]).to_dict()
    result.pop("diagnostics", None)
    return json.loads(json.dumps(result, default=float))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a zip"), "not a ZIP archive"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("x.txt", "hi"), "no manifest.json"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("manifest.json", "{bad json"), "cannot be read"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("manifest.json", json.dumps({"format": "other"})),
     "does not describe a glmmlab project"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("manifest.json", json.dumps(
        {"format": "glmmlab-project", "format_version": 99, "schema_version": 1})), "newer glmmlab"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("manifest.json", json.dumps(
        {"format": "glmmlab-project", "format_version": 1, "schema_version": 1,
         "datasets": [{"id": 1, "name": "lost", "n_rows": 1}]})), "data of dataset 'lost' are missing"),
])
def test_bad_files_are_refused_and_leave_nothing(tmp_path, make, message):
    src = tmp_path / "bad.glmmlab"
    make(src)
    with pytest.raises(ServiceError, match=message):
        project_io.import_project(src, tmp_path / "new.duckdb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.glmmlab"]


def test_tampered_data_is_refused(project, tmp_path):
    importing.import_dataset(project, b"a,b\n1,x\n2,y\n", "t", fmt="csv")
    project_io.export_project(project, tmp_path / "out.glmmlab")
    with zipfile.ZipFile(tmp_path / "out.glmmlab") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        data = zf.read("data/ds_1.parquet")
    manifest["datasets"][0]["n_rows"] = 5
    with zipfile.ZipFile(tmp_path / "tampered.glmmlab", "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("data/ds_1.parquet", data)
    with pytest.raises(ServiceError, match="should have 5 rows but has 2"):
        project_io.import_project(tmp_path / "tampered.glmmlab", tmp_path / "new.duckdb")
    assert not (tmp_path / "new.duckdb").exists()


def test_import_refuses_an_existing_destination(project, tmp_path):
    project_io.export_project(project, tmp_path / "out.glmmlab")
    with pytest.raises(ServiceError, match="already a file"):
        project_io.import_project(tmp_path / "out.glmmlab", project.path)


# -- issue 13.7: zip bombs -------------------------------------------------------------------------------------------

def test_a_manifest_bomb_is_refused_while_streaming_without_taking_its_size_in_memory(tmp_path, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(project_io, "MAX_MANIFEST_BYTES", 4 << 20)
    bomb = tmp_path / "bomb.glmmlab"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("manifest.json", "w") as member:  # valid JSON, 64 MiB of it white space
            member.write(b'{"format": "glmmlab-project"')
            for _ in range(64):
                member.write(b" " * (1 << 20))
            member.write(b"}")
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ServiceError, match="manifest.json' unpacks to more than 4 MiB.*zip bomb"):
            project_io.import_project(bomb, tmp_path / "new.duckdb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.glmmlab"]


def test_data_members_share_one_unpacking_budget(project, tmp_path, monkeypatch):
    importing.import_dataset(project, b"a,b\n1,x\n2,y\n", "t", fmt="csv")
    project_io.export_project(project, tmp_path / "out.glmmlab")
    with zipfile.ZipFile(tmp_path / "out.glmmlab") as zf:
        manifest = zf.read("manifest.json")
    bomb = tmp_path / "bomb.glmmlab"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest)
        with zf.open("data/ds_1.parquet", "w", force_zip64=True) as member:
            for _ in range(48):
                member.write(b"\0" * (1 << 20))
    monkeypatch.setattr(project_io, "MAX_INFLATED_BYTES", 8 << 20)
    with pytest.raises(ServiceError, match="ds_1.parquet' unpacks to more than 8 MiB"):
        project_io.import_project(bomb, tmp_path / "new.duckdb")
    assert not [p.name for p in tmp_path.iterdir() if "new.duckdb" in p.name]


def test_an_export_of_a_version_1_project_is_imported_with_the_diagnostics_stored_once(project, tmp_path):
    """Version 1 repeated the per-row diagnostics in each model's document; the import keeps one store (the
    diagnostics dataset) and reads them back from it."""
    import glmmlab
    from glmmlab.services.workbench import models

    samples.create_sample_datasets(project)
    ds = next(d for d in catalogue.list_datasets(project) if d.name == "school scores")
    doc = glmmlab.fit_glmm(catalogue.read_frame(project, ds.id, ["score", "school"]), "score", "school").to_dict()
    doc = json.loads(json.dumps(doc))
    model = models.save_model(project, "old", ds.id, {}, doc)
    src, old = tmp_path / "new.glmmlab", tmp_path / "old.glmmlab"
    project_io.export_project(project, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w") as zout:  # as version 1 wrote it
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["schema_version"] = 1
                for m in manifest["models"]:
                    m["result"] = json.dumps(doc)
                data = json.dumps(manifest).encode()
            zout.writestr(info, data)
    with project_io.import_project(old, tmp_path / "imported.duckdb") as again:
        with again.read() as cur:
            stored = cur.execute("SELECT result FROM models WHERE id = ?", [model["id"]]).fetchone()[0]
        assert '"diagnostics"' not in stored
        back = models.diagnostics_of(again, models.get_model(again, model["id"]))
        assert back["row"] == doc["diagnostics"]["row"]
        assert back["fitted_values"] == pytest.approx(doc["diagnostics"]["fitted_values"], rel=1e-15)
