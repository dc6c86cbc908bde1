"""Importing CSV, TSV and Parquet: type inference, nulls, names, malformed files, progress."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project import catalogue, importing


def dtypes(info):
    return {c.name: c.dtype for c in info.columns}


def test_type_inference_per_column(project, write_file):
    path = write_file("t.csv",
                      "n,x,when,flag,at,label,blank,mixed,big\n"
                      "1,2,2020-01-05,TRUE,2020-01-01 10:00,a,,1,12345678901234567890\n"
                      "2,2.5,2021-12-31,false,2020-01-01T11:30:15,b,,x,1\n"
                      "-3,,, ,2020-01-02,\"c, d\",,3,2\n")
    info = importing.import_dataset(project, path, "t")
    assert dtypes(info) == {"n": "int64", "x": "float64", "when": "date", "flag": "boolean", "at": "datetime",
                            "label": "string", "blank": "string", "mixed": "string", "big": "float64"}
    page = catalogue.read_rows(project, info.id)
    assert page["rows"] == [
        [1, 2.0, "2020-01-05", True, "2020-01-01T10:00:00", "a", None, "1", 1.2345678901234567e19],
        [2, 2.5, "2021-12-31", False, "2020-01-01T11:30:15", "b", None, "x", 1.0],
        [-3, None, None, None, "2020-01-02T00:00:00", "c, d", None, "3", 2.0],
    ]
    assert info.n_rows == 3 and page["total"] == 3


def test_integers_mixed_with_decimals_are_float64(project, write_file):
    info = importing.import_dataset(project, write_file("m.csv", "v\n1\n2\n3.5\n4\n"), "m")
    assert info.columns[0].dtype == "float64"
    assert catalogue.read_frame(project, info.id)["v"].tolist() == [1.0, 2.0, 3.5, 4.0]


def test_a_decimal_far_down_the_file_still_makes_float64(project, write_file):
    lines = "v,w\n" + "".join(f"{i},{i}\n" for i in range(5000)) + "0.5,x\n"
    info = importing.import_dataset(project, write_file("late.csv", lines), "late")
    assert dtypes(info) == {"v": "float64", "w": "string"}


def test_empty_cells_are_null(project, write_file):
    info = importing.import_dataset(project, write_file("e.csv", 'a,b,c\n1,,x\n,2.5,\n3,"",y\n'), "e")
    assert dtypes(info) == {"a": "int64", "b": "float64", "c": "string"}
    assert catalogue.read_rows(project, info.id)["rows"] == [[1, None, "x"], [None, 2.5, None], [3, None, "y"]]
    frame = catalogue.read_frame(project, info.id)
    assert frame["a"].dtype == "float64" and frame["a"].isna().tolist() == [False, True, False]


def test_number_like_text_that_is_not_a_number_stays_text(project, write_file):
    path = write_file("n.csv", "hex,under,comma,date\n0x1F,1_000,\"1,5\",2020-02-30\n")
    info = importing.import_dataset(project, path, "n")
    assert dtypes(info) == {"hex": "string", "under": "string", "comma": "string", "date": "string"}


def test_nan_and_inf_are_float_and_read_back_as_none(project, write_file):
    info = importing.import_dataset(project, write_file("f.csv", "v\n1.5\nnan\ninf\n-Infinity\n"), "f")
    assert info.columns[0].dtype == "float64"
    assert catalogue.read_rows(project, info.id)["rows"] == [[1.5], [None], [None], [None]]


def test_default_scales(project, write_file):
    text = "g,pos,neg,d,b\nA,1.5,-1,2020-01-01,true\nB,2,3,2020-01-02,false\n"
    info = importing.import_dataset(project, write_file("s.csv", text), "s")
    assert {c.name: c.scale for c in info.columns} == {"g": "nominal", "pos": "ratio", "neg": "interval",
                                                       "d": "interval", "b": "nominal"}
    assert [c.numeric for c in info.columns] == [False, True, True, False, False]
    assert [c.categorical for c in info.columns] == [True, False, False, False, True]


def test_header_names_are_kept_and_made_unique(project, write_file):
    weird = 'a"; drop table x; --'
    text = f'"{weird.replace(chr(34), chr(34) * 2)}",A,a,,a,Größe,"with space"\n1,2,3,4,5,6,7\n'
    info = importing.import_dataset(project, write_file("w.csv", text), "w")
    assert [c.name for c in info.columns] == [weird, "A", "a", "column_4", "a_2", "Größe", "with space"]
    frame = catalogue.read_frame(project, info.id, columns=[weird, "a_2"])
    assert list(frame.columns) == [weird, "a_2"] and frame.iloc[0].tolist() == [1, 5]


def test_bom_crlf_and_tsv(project, write_file):
    info = importing.import_dataset(project, write_file("b.csv", "\ufeffid,v\r\n1,a\r\n2,b\r\n"), "b")
    assert [c.name for c in info.columns] == ["id", "v"]
    tsv = importing.import_dataset(project, write_file("t.tsv", "x\ty, z\n1\ta,b\n"), "t")
    assert [c.name for c in tsv.columns] == ["x", "y, z"]
    assert catalogue.read_rows(project, tsv.id)["rows"] == [[1, "a,b"]]


def test_header_only_file_gives_an_empty_dataset(project, write_file):
    info = importing.import_dataset(project, write_file("h.csv", "a,b\n"), "h")
    assert info.n_rows == 0 and dtypes(info) == {"a": "string", "b": "string"}


@pytest.mark.parametrize("content, line, words", [
    ("a,b,c\n1,x,2.5\n2,y,3\n3,z,4,5\n4,w,1\n", 4, "4 fields but the header has 3"),
    ("a,b\n1,x\n2\n", 3, "1 field but the header has 2"),
    (b"a,b\n1,x\n2,\xff\xfey\n3,z\n", 3, "not valid UTF-8"),
    ('a,b\n1,x\n\n2,y\n3,"unterminated\n4,z\n', 5, "double quote is out of place"),
    ('a,b\n1,x\n3,"x"y\n', 3, "double quote is out of place"),
    ('a,b\n1,"two\nlines"\n2,ok\n3,q,extra\n', 5, "3 fields but the header has 2"),
    (b"a,\xffb\n1,2\n", 1, "not valid UTF-8"),
])
def test_malformed_file_names_the_line_and_imports_nothing(project, write_file, content, line, words):
    importing.import_dataset(project, write_file("ok.csv", "a\n1\n"), "before")
    path = write_file("bad.csv", content)
    with pytest.raises(ServiceError) as err:
        importing.import_dataset(project, path, "bad")
    message = str(err.value)
    assert f"Line {line} of 'bad.csv'" in message and words in message
    assert [d.name for d in catalogue.list_datasets(project)] == ["before"]
    with project.read() as cur:
        tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'ds_%'")
                  .fetchall()}
    assert tables == {f"ds_{catalogue.list_datasets(project)[0].id}"}


def test_empty_file_is_refused(project, write_file):
    with pytest.raises(ServiceError, match="empty"):
        importing.import_dataset(project, write_file("e.csv", ""), "e")


def test_sources_bytes_file_objects_and_formats(project, write_file):
    data = b"a,b\n1,x\n"
    assert importing.import_dataset(project, data, "bytes", fmt="csv").n_rows == 1
    assert importing.import_dataset(project, io.BytesIO(data), "fileobj", fmt="csv").n_rows == 1
    with pytest.raises(ServiceError, match="csv, tsv or parquet"):
        importing.import_dataset(project, data, "nofmt")
    with pytest.raises(ServiceError, match=r"not a \.csv, \.tsv \(\.tab, \.txt\) or \.parquet"):
        importing.import_dataset(project, write_file("x.xlsx", data), "xlsx")
    with pytest.raises(NotFound):
        importing.import_dataset(project, "/no/such/file.csv", "missing")


def test_names_are_made_unique_and_must_not_be_empty(project):
    assert importing.import_dataset(project, b"a\n1\n", "scores", fmt="csv").name == "scores"
    assert importing.import_dataset(project, b"a\n1\n", "scores", fmt="csv").name == "scores (2)"
    with pytest.raises(ServiceError, match="name"):
        importing.import_dataset(project, b"a\n1\n", "  ", fmt="csv")


def test_parquet_import_keeps_types_and_names(project, tmp_path):
    frame = pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int32"), "f": [1.5, float("nan"), 2.0],
                          "s": ["a", None, "c"], "b": [True, False, True],
                          "d": pd.to_datetime(["2020-01-01", "2020-01-02", None]).date,
                          "t": pd.to_datetime(["2020-01-01 10:00", None, "2020-01-03 00:00"]),
                          'we"ird': [1, 2, 3]})
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    info = importing.import_dataset(project, path, "p")
    assert dtypes(info) == {"i": "int64", "f": "float64", "s": "string", "b": "boolean", "d": "date",
                            "t": "datetime", 'we"ird': "int64"}
    assert catalogue.read_rows(project, info.id)["rows"][1] == [None, None, None, False, "2020-01-02", None, 2]


def test_damaged_parquet_is_refused(project, write_file):
    with pytest.raises(ServiceError, match="not a readable Parquet file"):
        importing.import_dataset(project, write_file("x.parquet", b"PAR1 this is not parquet"), "x")
    assert catalogue.list_datasets(project) == []


def test_progress_reports_stages_in_order(project, tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"a": range(50_000), "b": ["x"] * 50_000}).to_csv(path, index=False)
    calls = []
    importing.import_dataset(project, path, "p", progress=lambda stage, fraction: calls.append((stage, fraction)))
    stages = [s for s, _ in calls]
    assert stages[0] == "reading" and stages[-1] == "done" and "checking types" in stages and "storing" in stages
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)


# -- issue 13.1: no silent data loss -------------------------------------------------------------------------------

def _excel_style_csv() -> bytes:
    """What Python's csv module (and Excel) write: CRLF line ends, a quoted line break in a header name."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "score\n(points)", "group"])
    writer.writerows([[1, 2.5, "a"], [2, 3.5, "b"], [3, 4.5, "c"]])
    return buf.getvalue().encode()


def test_crlf_file_with_a_line_break_in_a_quoted_header_name_imports_every_row(project, write_file):
    data = _excel_style_csv()
    assert b"\r\n" in data and b'"score\n(points)"' in data
    info = importing.import_dataset(project, write_file("excel.csv", data), "excel")
    assert info.n_rows == 3
    assert [c.name for c in info.columns] == ["id", "score\n(points)", "group"]
    assert dtypes(info) == {"id": "int64", "score\n(points)": "float64", "group": "string"}
    assert catalogue.read_rows(project, info.id)["rows"] == [[1, 2.5, "a"], [2, 3.5, "b"], [3, 4.5, "c"]]


def test_an_import_that_reads_fewer_rows_than_the_file_has_is_refused(project, write_file, monkeypatch):
    # Without the header work-around DuckDB reads this file as 0 rows: the independent count must catch it.
    from contextlib import contextmanager

    @contextmanager
    def as_is(path, names, delim):
        yield path

    monkeypatch.setattr(importing, "_plain_header", as_is)
    with pytest.raises(ServiceError, match=r"has 3 data rows but 0 were read, so nothing was imported"):
        importing.import_dataset(project, write_file("excel.csv", _excel_style_csv()), "excel")
    assert catalogue.list_datasets(project) == []


@pytest.mark.parametrize("content, records", [
    (b"", 0), (b"a", 1), (b"a\n", 1), (b"a\r\nb\r\n", 2), (b"a\rb\r", 2), (b"a\n\n\nb", 2),
    (b'a,"x\r\ny"\nb', 2), (b'"a""\n"\n"b"', 2), (b'h\n"\n\n"', 2), (b"\n\r\n", 0),
])
def test_independent_record_count(write_file, content, records, monkeypatch):
    path = write_file("c.csv", content)
    assert importing._count_records(path) == records
    monkeypatch.setattr(importing, "_COUNT_CHUNK", 1)  # state carried across chunk boundaries
    assert importing._count_records(path) == records


def test_a_one_column_file_with_blank_lines_still_imports(project, write_file):
    info = importing.import_dataset(project, write_file("one.csv", "v\n1\n\n4\n"), "one")
    assert [r[0] for r in catalogue.read_rows(project, info.id)["rows"] if r[0] is not None] == [1, 4]


# -- issue 13.4: wide files ------------------------------------------------------------------------------------------

def _wide(write_file, name: str, n: int, rows: int = 20):
    kinds = [lambda r, i: str(r * i - 7), lambda r, i: f"{r * 0.25 + i}", lambda r, i: f"t{r}",
             lambda r, i: "true" if (r + i) % 2 else "false", lambda r, i: f"2024-01-{1 + r % 28:02d}", lambda r, i: ""]
    lines = [",".join(f"col{i}" for i in range(n))]
    lines += [",".join(kinds[i % 6](r, i) for i in range(n)) for r in range(rows)]
    return write_file(name, "\n".join(lines) + "\n")


def test_a_wide_file_gets_every_column_typed_and_stored_in_place(project, write_file):
    info = importing.import_dataset(project, _wide(write_file, "wide.csv", 1_000), "wide")
    want = ["int64", "float64", "string", "boolean", "date", "string"]
    assert [c.dtype for c in info.columns] == [want[i % 6] for i in range(1_000)]
    assert [c.name for c in info.columns] == [f"col{i}" for i in range(1_000)]
    rows = catalogue.read_rows(project, info.id, 0, 100)["rows"]
    assert len(rows) == 20
    assert rows[3][:6] == [-7, 1.75, "t3", False, "2024-01-04", None]
    assert rows[5][996:] == [4973, 998.25, "t5", False]  # the columns of the last batch line up


def test_type_inference_time_grows_linearly_with_columns(project, write_file):
    import time

    def seconds(n):
        path = _wide(write_file, f"w{n}.csv", n, rows=5)
        start = time.perf_counter()
        importing.import_dataset(project, path, f"w{n}")
        return time.perf_counter() - start

    seconds(100)  # warm up
    small, large = seconds(300), seconds(1_200)
    # four times the columns: about four times the time when linear (it was sixteen: 1,000 columns took 38 s)
    assert large < 8 * small + 0.5, (small, large)


def test_too_many_columns_are_refused_at_once_with_the_count(project, write_file):
    import time

    header = ",".join(f"c{i}" for i in range(100_000))  # the 889 KB file of the probe took 18 GB
    path = write_file("huge.csv", header + "\n" + ",".join("1" for _ in range(100_000)) + "\n")
    start = time.perf_counter()
    with pytest.raises(ServiceError, match=r"'huge.csv' has 100,000 columns; glmmlab imports at most 10,000"):
        importing.import_dataset(project, path, "huge")
    assert time.perf_counter() - start < 5
    assert catalogue.list_datasets(project) == []
    long_header = write_file("long.csv", "x" * (1 << 21) + "\n1\n")
    with pytest.raises(ServiceError, match="longer than 1 MiB"):
        importing.import_dataset(project, long_header, "long")
