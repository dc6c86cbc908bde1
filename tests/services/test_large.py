"""A million-row CSV imports in seconds and any page of it reads at once."""

from __future__ import annotations

import time

import duckdb
import pytest

from glmmlab.services.project import catalogue, dummy, importing


@pytest.mark.slow
def test_million_rows_import_and_page_read(project, tmp_path):
    path = tmp_path / "million.csv"
    duckdb.connect().execute(
        "COPY (SELECT i AS id, 'school ' || (i % 1000) AS school, round((i % 97) * 0.25 + 0.1, 2) AS hours, "
        "i % 3 AS k, CASE i % 3 WHEN 0 THEN 'A' WHEN 1 THEN 'B' ELSE 'C' END AS track, "
        "CASE WHEN i % 10 = 0 THEN NULL ELSE 50 + (i % 50) END AS score "
        f"FROM range(1000000) t(i)) TO '{path}' (HEADER)")
    started = time.perf_counter()
    info = importing.import_dataset(project, path, "million")
    import_seconds = time.perf_counter() - started
    assert info.n_rows == 1_000_000
    assert {c.name: c.dtype for c in info.columns} == {"id": "int64", "school": "string", "hours": "float64",
                                                       "k": "int64", "track": "string", "score": "int64"}
    assert import_seconds < 20, import_seconds

    started = time.perf_counter()
    page = catalogue.read_rows(project, info.id, offset=999_900, limit=100)
    page_seconds = time.perf_counter() - started
    assert page["total"] == 1_000_000 and len(page["rows"]) == 100
    assert page["rows"][0][0] == 999_900 and page["rows"][-1][0] == 999_999
    assert page["rows"][0][5] is None  # 999900 % 10 == 0
    assert page_seconds < 0.5, page_seconds

    started = time.perf_counter()
    preview = dummy.preview_dummy_coding(project, info.id, [{"column": "track", "action": "dummy_drop"}])
    assert preview["encodings"][0]["counts"] == [333334, 333333, 333333]
    assert time.perf_counter() - started < 2
