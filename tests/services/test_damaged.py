"""Damaged project files (issue 13.5): a damaged file says so and what can be saved; the rest stays usable."""

from __future__ import annotations

import json
import shutil
import zipfile

import duckdb
import numpy as np
import pandas as pd
import pytest

from glmmlab.services.errors import ProjectDamaged, ServiceError
from glmmlab.services.project import catalogue, importing
from glmmlab.services.project.store import Project, data_table
from glmmlab.services.workbench import models, project_io, reports


def _make(path):
    with Project.open(path) as p:
        small = importing.import_dataset(p, b"a,b\n1,x\n2,y\n", "small", fmt="csv")
        rng = np.random.default_rng(1)
        big = catalogue.store_frame(p, pd.DataFrame({"x": rng.normal(size=400_000), "g": rng.integers(0, 99, 400_000)}),
                                    "big", operation={"type": "test"})
        return small.id, big.id


_HEADERS = 3 * 4096  # DuckDB's file starts with a main header and two database headers; blocks follow


def _flip_block_of(path, dataset_id: int) -> None:
    """Flip 64 bytes inside a block that holds values of dataset ``dataset_id`` (where DuckDB put them).

    Where a table's blocks lie in the file depends on DuckDB's threads and free list, so a fixed fraction of the
    file can land in a free block (then nothing is damaged and the test would be about luck); the storage table
    names the blocks.
    """
    with duckdb.connect(str(path), read_only=True) as con:
        size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        blocks = sorted({int(r[0]) for r in con.execute(
            f"SELECT block_id FROM pragma_storage_info('{data_table(dataset_id)}') "
            "WHERE block_id >= 0 AND segment_type = 'DOUBLE'").fetchall()})
    assert blocks, "the dataset has no blocks of its own"
    with open(path, "r+b") as f:
        at = _HEADERS + blocks[len(blocks) // 2] * size + size // 2
        f.seek(at)
        block = f.read(64)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in block))


def test_a_flipped_data_block_is_found_on_opening_and_the_rest_can_be_read_and_exported(tmp_path):
    small, big = _make(tmp_path / "p.duckdb")
    _flip_block_of(tmp_path / "p.duckdb", big)
    with Project.open(tmp_path / "p.duckdb") as p:
        assert set(p.damaged) == {big}
        assert "The project file p.duckdb is damaged: dataset 'big'" in p.damaged_message()
        with pytest.raises(ProjectDamaged, match="dataset 'big'.*Export Project"):
            catalogue.read_rows(p, big)
        with pytest.raises(ProjectDamaged):
            catalogue.read_frame(p, big)
        assert catalogue.read_rows(p, small)["rows"] == [[1, "x"], [2, "y"]]
        summary = project_io.export_project(p, tmp_path / "rescue.glmmlab")
        assert summary["left_out"] == ["dataset 'big'"] and summary["datasets"] == 1
    with project_io.import_project(tmp_path / "rescue.glmmlab", tmp_path / "rescued.duckdb") as rescued:
        assert [d.name for d in catalogue.list_datasets(rescued)] == ["small"]
        assert catalogue.read_rows(rescued, small)["rows"] == [[1, "x"], [2, "y"]]


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_project_file_says_it_is_damaged(tmp_path, keep):
    _make(tmp_path / "p.duckdb")
    path = tmp_path / "cut.duckdb"
    shutil.copy(tmp_path / "p.duckdb", path)
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep) // 4096 * 4096)
    try:
        p = Project.open(path)
    except ProjectDamaged as exc:
        assert "The project file cut.duckdb is damaged" in str(exc)
        return
    with p:  # it opened: what it cannot do says that the file is damaged, never a raw DuckDB error
        for info in catalogue.list_datasets(p):
            try:
                catalogue.read_rows(p, info.id)
            except ProjectDamaged as exc:
                assert "is damaged" in str(exc)
        try:
            importing.import_dataset(p, b"a\n1\n", "new", fmt="csv")
        except ProjectDamaged as exc:
            assert "is damaged" in str(exc) and "nothing was changed" in str(exc)


# -- crafted exports are checked in full before they are accepted ---------------------------------------------------

def _export(tmp_path, project):
    project_io.export_project(project, tmp_path / "out.glmmlab")
    with zipfile.ZipFile(tmp_path / "out.glmmlab") as zf:
        return json.loads(zf.read("manifest.json")), {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}


def _rewrite(tmp_path, manifest, members):
    with zipfile.ZipFile(tmp_path / "crafted.glmmlab", "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, b in members.items():
            zf.writestr(n, b)
    return tmp_path / "crafted.glmmlab"


def _with_model_and_report(project):
    import glmmlab

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"y": rng.normal(size=100), "x": rng.normal(size=100),
                          "g": [f"g{i % 10}" for i in range(100)]})
    info = catalogue.store_frame(project, frame, "d", operation={"type": "test"})
    result = json.loads(json.dumps(glmmlab.fit_glmm(frame, "y", "g", ["x"]).to_dict(), default=float))
    models.save_model(project, "m", info.id, {"response": "y"}, result)
    report = reports.create_report(project, "r")
    reports.add_items(project, report["id"], [{"kind": "table", "title": "t", "payload": {"columns": ["a"],
                                                                                          "rows": [[1]]}}])


@pytest.mark.parametrize("craft, words", [
    (lambda m: m["models"][0].update(result="[]"), "model 'm': the model result is damaged"),
    (lambda m: m["models"][0].update(result=json.dumps({"model": {"family": "nope"}})), "model result is damaged"),
    (lambda m: m["models"][0].update(dataset_id=999), "entry of model 'm' is damaged"),
    (lambda m: m["report_items"][0].update(kind="script"), "item of a report is damaged"),
    (lambda m: m["report_items"][0].update(kind="plot", payload=json.dumps({"png_base64": "%%%not base64"})),
     "item of a report is damaged"),
    (lambda m: m["report_items"][0].update(report_id=77), "report item entry is damaged"),
    (lambda m: m["datasets"][0].update(parent_id=555), "entry of dataset 'd' is damaged"),
])
def test_a_crafted_export_is_refused_before_it_becomes_a_project(project, tmp_path, craft, words):
    _with_model_and_report(project)
    manifest, members = _export(tmp_path, project)
    assert project_io.import_project(_rewrite(tmp_path, manifest, members), tmp_path / "ok.duckdb").close() is None
    craft(manifest)
    with pytest.raises(ServiceError, match=words):
        project_io.import_project(_rewrite(tmp_path, manifest, members), tmp_path / "new.duckdb")
    assert not (tmp_path / "new.duckdb").exists()
