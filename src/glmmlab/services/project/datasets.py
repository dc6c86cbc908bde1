"""Datasets in a project: import, inspect, page through, retype, rescale, rename, and delete with lineage.

Column types (``dtype``): ``boolean``, ``int64``, ``float64``, ``date``, ``datetime``, ``string``.
Numeric columns are ``int64`` and ``float64`` (see :attr:`ColumnInfo.numeric`).

Measurement scales (``scale``): ``nominal``, ``ordinal``, ``interval``, ``ratio``. The scale chosen on import is
(:func:`default_scale`):

- ``string`` and ``boolean`` columns: ``nominal``;
- ``date`` and ``datetime`` columns: ``interval``;
- ``int64`` and ``float64`` columns: ``ratio`` when no value is negative, else ``interval``. Integer columns are not
  guessed to be categories from how few values they have (a count and a code look alike); change the scale to
  ``nominal`` for integer codes such as a group id.

Which scales a type may take is in :data:`SCALES_BY_DTYPE`. A column is categorical (usable as a group variable) when
its scale is nominal or ordinal or its type is string (:attr:`ColumnInfo.categorical`).

Code that makes datasets (samples, model diagnostics) stores a pandas DataFrame with :func:`store_frame`, inside a
``project.write()`` block when it belongs to a larger change.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from glmmlab.services.errors import NotFound, ServiceError, disk_full, is_disk_full
from glmmlab.services.project import formats
from glmmlab.services.project.store import Project, data_column, data_table

DTYPES = ("boolean", "int64", "float64", "date", "datetime", "string")
SCALES = ("nominal", "ordinal", "interval", "ratio")
SCALES_BY_DTYPE: dict[str, tuple[str, ...]] = {
    "string": ("nominal", "ordinal"),
    "boolean": ("nominal", "ordinal"),
    "int64": SCALES,
    "float64": SCALES,
    "date": ("ordinal", "interval"),
    "datetime": ("ordinal", "interval"),
}
MAX_PAGE_ROWS = 10_000
MAX_OFFSET = (1 << 63) - 1
MAX_COLUMNS = 10_000  # an import's time and memory grow with the columns (10,000 text columns: ~40 s, ~0.6 GB)

Source = Union[str, os.PathLike, bytes, bytearray, BinaryIO]
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a dataset: its place, the user's name, its type and its measurement scale."""

    position: int
    name: str
    dtype: str
    scale: str

    @property
    def numeric(self) -> bool:
        """True for int64 and float64 columns (the ones a response or fixed effect may use)."""
        return self.dtype in ("int64", "float64")

    @property
    def categorical(self) -> bool:
        """True when the scale is nominal or ordinal or the type is string (usable as a group variable)."""
        return self.scale in ("nominal", "ordinal") or self.dtype == "string"

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "name": self.name, "dtype": self.dtype, "scale": self.scale,
                "numeric": self.numeric, "categorical": self.categorical}


@dataclass(frozen=True)
class DatasetInfo:
    """The catalogue entry of a dataset.

    ``kind`` is ``"primary"`` (imported or a sample) or ``"derived"`` (made from ``parent_id`` by ``operation``).
    ``operation`` is a JSON-ready dict whose ``"type"`` is ``"import"``, ``"sample"``, ``"dummy_coding"`` or
    ``"model_diagnostics"``. ``created_at`` is an ISO 8601 string.
    """

    id: int
    name: str
    n_rows: int
    parent_id: int | None
    operation: dict[str, Any]
    read_only: bool
    created_at: str
    columns: tuple[ColumnInfo, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return "derived" if self.parent_id is not None else "primary"

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def column(self, name: str) -> ColumnInfo:
        """The column called ``name``; :class:`NotFound` naming the dataset when there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise NotFound(f"Dataset '{self.name}' has no column named '{name}'.")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "n_rows": self.n_rows, "n_columns": self.n_columns,
                "parent_id": self.parent_id, "operation": self.operation, "read_only": self.read_only,
                "kind": self.kind, "created_at": self.created_at,
                "columns": [c.to_dict() for c in self.columns]}


# -- type rules for text -------------------------------------------------------------------------------------------
#
# Each rule says, in SQL over a VARCHAR expression ``v``, whether a cell fits a type (blank cells always fit, they
# become null) and how to convert it. Inference tries them in the order of ``_INFERENCE_ORDER``; the same rules convert
# a string column when the user changes its type.

_INT_RE = r"\s*([+-]?[0-9]{1,18})?\s*"
_FLOAT_RE = (r"\s*([+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?|[+-]?(?i:nan|inf|infinity))?\s*")
_DATE_RE = r"\s*([0-9]{4}-[0-9]{2}-[0-9]{2})?\s*"
_DATETIME_RE = r"\s*([0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?)?\s*"
_SQL_TYPES = {"boolean": "BOOLEAN", "int64": "BIGINT", "float64": "DOUBLE", "date": "DATE",
              "datetime": "TIMESTAMP", "string": "VARCHAR"}
_INFERENCE_ORDER = ("boolean", "int64", "float64", "date", "datetime", "string")
_FAMILY = {"boolean": "text", "string": "text", "int64": "number", "float64": "number", "date": "time",
           "datetime": "time"}


# Cells that mean "missing" in text files: empty or blank, R's NA, SPSS/Stata's ".", and the usual hand-written
# ways (compared without case and surrounding blanks). They count as missing when a column's type is inferred or
# changed; a column that stays text keeps them as they are.
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", ".", "#n/a")
# A regular expression rather than an IN list: DuckDB turns a long IN list into a join, which loses the row order
# of CREATE TABLE ... AS SELECT.
_MISSING_RE = r"\s*(" + "|".join(re.escape(t).replace(r"\.", "[.]") for t in MISSING_TOKENS if t) + r")?\s*"


def _blank(v: str) -> str:
    """SQL: the trimmed text ``v``, or null when it is one of :data:`MISSING_TOKENS`."""
    return f"(CASE WHEN regexp_full_match({v}, {_sql_string(_MISSING_RE)}, 'i') THEN NULL ELSE trim({v}) END)"


def _text_fits(v: str, dtype: str) -> str:
    """SQL that is true when the text ``v`` (null or blank included) can become ``dtype``."""
    missing = f"{_blank(v)} IS NULL"
    if dtype == "boolean":
        return f"({missing} OR lower(trim({v})) IN ('true', 'false'))"
    if dtype == "int64":
        return f"({missing} OR regexp_full_match({v}, '{_INT_RE}'))"
    if dtype == "float64":
        return f"({missing} OR regexp_full_match({v}, '{_FLOAT_RE}'))"
    if dtype == "date":
        return (f"({missing} OR (regexp_full_match({v}, '{_DATE_RE}')"
                f" AND try_cast(trim({v}) AS DATE) IS NOT NULL))")
    if dtype == "datetime":
        return (f"({missing} OR (regexp_full_match({v}, '{_DATETIME_RE}')"
                f" AND try_cast(trim({v}) AS TIMESTAMP) IS NOT NULL))")
    return "TRUE"


def _text_convert(v: str, dtype: str) -> str:
    """SQL converting the text ``v`` (which fits ``dtype``) to ``dtype``; blank cells become null."""
    if dtype == "boolean":
        return f"CASE lower(trim({v})) WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"
    if dtype == "string":
        return f"CASE WHEN trim({v}) = '' THEN NULL ELSE {v} END"
    return f"CAST({_blank(v)} AS {_SQL_TYPES[dtype]})"


def default_scale(dtype: str, has_negative: bool = False) -> str:
    """The scale a new column of type ``dtype`` gets (rule in the module docstring)."""
    if dtype in ("string", "boolean"):
        return "nominal"
    if dtype in ("date", "datetime"):
        return "interval"
    return "interval" if has_negative else "ratio"


# -- small helpers -------------------------------------------------------------------------------------------------

def _dataset_id(dataset_id: Any) -> int:
    try:
        return int(dataset_id)
    except (TypeError, ValueError, OverflowError):
        raise NotFound(f"There is no dataset with id {dataset_id!r}.") from None


def _sql_string(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _check_name(name: Any, what: str = "dataset") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError(f"Give the {what} a name (it cannot be empty).")
    name = name.strip()
    if len(name) > 200:
        raise ServiceError(f"The {what} name '{name[:40]}...' is too long; use at most 200 characters.")
    if "\x00" in name:
        raise ServiceError(f"The {what} name cannot contain the NUL character.")
    return name


def _unique_name(cur, name: str) -> str:
    taken = {r[0] for r in cur.execute("SELECT name FROM datasets").fetchall()}
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def _unique_column_names(names: list[str]) -> list[str]:
    """Blank names become ``column_<n>``; repeated names get ``_2``, ``_3`` ... so every name is unique."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names):
        name = raw.strip() if isinstance(raw, str) else str(raw)
        name = name.replace("\x00", "")
        if not name:
            name = f"column_{i + 1}"
        candidate, n = name, 2
        while candidate in seen:
            candidate = f"{name}_{n}"
            n += 1
        seen.add(candidate)
        out.append(candidate)
    return out


def _now_iso(value) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "isoformat") else str(value)


def _load_info(cur, dataset_id: int) -> DatasetInfo:
    row = cur.execute("SELECT id, name, n_rows, parent_id, operation, read_only, created_at FROM datasets "
                      "WHERE id = ?", [dataset_id]).fetchone()
    if row is None:
        raise NotFound(f"There is no dataset with id {dataset_id}; it may have been deleted. Reload the list.")
    cols = cur.execute("SELECT position, name, dtype, scale FROM columns WHERE dataset_id = ? ORDER BY position",
                       [dataset_id]).fetchall()
    return _info_from_rows(row, cols)


def _info_from_rows(row, cols) -> DatasetInfo:
    return DatasetInfo(id=int(row[0]), name=row[1], n_rows=int(row[2]),
                       parent_id=None if row[3] is None else int(row[3]),
                       operation=json.loads(row[4]) if row[4] else {}, read_only=bool(row[5]),
                       created_at=_now_iso(row[6]),
                       columns=tuple(ColumnInfo(int(c[0]), c[1], c[2], c[3]) for c in cols))


def _register_dataset(cur, dataset_id: int, name: str, columns: list[tuple[str, str, str]], *,
                      parent_id: int | None, operation: dict, read_only: bool) -> None:
    """Write the catalogue rows of a dataset whose table ``ds_<id>`` already exists (same transaction)."""
    n_rows = cur.execute(f"SELECT count(*) FROM {data_table(dataset_id)}").fetchone()[0]
    cur.execute("INSERT INTO datasets (id, name, n_rows, parent_id, operation, read_only) VALUES (?, ?, ?, ?, ?, ?)",
                [dataset_id, name, n_rows, parent_id, json.dumps(operation, default=str), read_only])
    if columns:  # one statement for all columns (executemany runs one per row: seconds for thousands of columns)
        cur.execute("INSERT INTO columns (dataset_id, position, name, dtype, scale) "
                    "SELECT ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                    [dataset_id, list(range(len(columns))), [c[0] for c in columns], [c[1] for c in columns],
                     [c[2] for c in columns]])


def _negative_columns(cur, table: str, dtypes: list[str]) -> set[int]:
    numeric = [i for i, d in enumerate(dtypes) if d in ("int64", "float64")]
    if not numeric:
        return set()
    row = _batched(cur, table, [f"coalesce(bool_or({data_column(i)} < 0), FALSE)" for i in numeric])
    return {i for i, neg in zip(numeric, row) if neg}


# -- storing a DataFrame as a dataset (samples, derived datasets, model diagnostics) ---------------------------------

def _arrow_dtype(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float64"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_null(t):
        return "string"
    return None


def store_frame(project: Project, frame: pd.DataFrame, name: str, *, parent_id: int | None = None,
                operation: dict[str, Any], read_only: bool | None = None,
                scales: dict[str, str] | None = None) -> DatasetInfo:
    """Store a pandas DataFrame as a new dataset and return its entry.

    For code that makes datasets (samples, model diagnostics): column types follow the frame's dtypes (bool, ints,
    floats, dates, datetimes, strings; anything else is stored as text), scales follow :func:`default_scale` unless
    given in ``scales``. ``read_only`` defaults to true for derived datasets (``parent_id`` given). Call it inside a
    ``project.write()`` block to make it part of a larger change (for example saving a model together with its
    diagnostics dataset).
    """
    name = _check_name(name)
    names = _unique_column_names([str(c) for c in frame.columns])
    arrays, dtypes = [], []
    for i in range(frame.shape[1]):
        series = frame.iloc[:, i].reset_index(drop=True)
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        try:
            column = pa.array(series, from_pandas=True)
            dtype = _arrow_dtype(column.type)
        except (pa.ArrowException, TypeError, ValueError):
            dtype = None
        if dtype is None:  # mixed or unusual objects: stored as their text
            column = pa.array([None if pd.isna(v) else str(v) for v in series.astype(object)], type=pa.string())
            dtype = "string"
        elif pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        arrays.append(column)
        dtypes.append(dtype)
    staged = pa.Table.from_arrays(arrays, names=[data_column(i) for i in range(len(arrays))])
    if read_only is None:
        read_only = parent_id is not None
    with project.write() as cur:
        dataset_id = project.next_id(cur, "dataset")
        table_name = data_table(dataset_id)
        view = f"_frame_{dataset_id}"
        cur.register(view, staged)
        try:
            select = ", ".join(f"CAST({data_column(i)} AS {_SQL_TYPES[d]}) AS {data_column(i)}"
                               for i, d in enumerate(dtypes))
            cur.execute(f"CREATE TABLE {table_name} AS SELECT {select or '1 AS _empty'} FROM {view}")
        finally:
            cur.unregister(view)
        negative = _negative_columns(cur, table_name, dtypes)
        scales = scales or {}
        columns = []
        for i, (n, d) in enumerate(zip(names, dtypes)):
            scale = scales.get(n) or default_scale(d, i in negative)
            _check_scale(name, n, d, scale)
            columns.append((n, d, scale))
        unique = _unique_name(cur, name)
        _register_dataset(cur, dataset_id, unique, columns, parent_id=parent_id, operation=operation,
                          read_only=read_only)
        return _load_info(cur, dataset_id)


def _check_scale(dataset_name: str, column: str, dtype: str, scale: str) -> None:
    if scale not in SCALES:
        raise ServiceError(f"'{scale}' is not a measurement scale; use one of {', '.join(SCALES)} "
                           f"(column '{column}' of dataset '{dataset_name}').")
    if scale not in SCALES_BY_DTYPE[dtype]:
        raise ServiceError(f"Column '{column}' of dataset '{dataset_name}' is {dtype}, which cannot be on the "
                           f"{scale} scale; choose {' or '.join(SCALES_BY_DTYPE[dtype])}, or change the type first.")


# -- import --------------------------------------------------------------------------------------------------------

@contextmanager
def _source_path(source: Source, fmt: str | None) -> Iterator[tuple[Path, str]]:
    """Yield a path to the source's bytes on disk and the format; bytes and file objects go to a temporary file."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise NotFound(f"There is no file at {path}; check the path.")
        yield path, _format_of(fmt, path.name)
        return
    filename = getattr(source, "name", None)
    fmt = _format_of(fmt, filename if isinstance(filename, str) else None)
    handle = tempfile.NamedTemporaryFile(prefix="glmmlab-import-", suffix="." + fmt, delete=False)
    try:
        with handle:
            if isinstance(source, (bytes, bytearray, memoryview)):
                handle.write(source)
            elif hasattr(source, "read"):
                shutil.copyfileobj(source, handle, 1 << 20)
            else:
                raise ServiceError("The data to import must be a file path, bytes or a binary file object.")
        yield Path(handle.name), fmt
    finally:
        with suppress(OSError):
            os.unlink(handle.name)


@contextmanager
def _full_disk(display: str) -> Iterator[None]:
    """Turn a full disk met while copying files (OSError) into a clear :class:`DiskFull` naming the import."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(f"'{display}' could not be imported") from None
        raise


def _format_of(fmt: str | None, filename: str | None) -> str:
    if fmt is None:
        fmt = formats.format_of_name(filename)
        if fmt is None:
            shown = f"'{Path(filename).name}'" if filename else "The data"
            raise ServiceError(f"{shown} is not a {formats.KNOWN} file; say which format it is "
                               "(csv, tsv or parquet).")
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in formats.FORMATS:
        raise ServiceError(f"'{fmt}' is not a format glmmlab reads; use csv, tsv or parquet.")
    return fmt


def _read_header(path: Path, delim: str) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if not head.strip():
        raise ServiceError(f"The file '{path.name}' is empty; it needs a header row with the column names.")
    if len(head) == 1 << 20 and b"\n" not in head and b"\r" not in head:
        raise ServiceError(f"The first line of '{path.name}' is longer than 1 MiB, so it is not a header row glmmlab "
                           f"can read (at most {MAX_COLUMNS:,} columns). Nothing was imported.")
    text = head.decode("utf-8", errors="replace")
    first_bad = head.find(b"\n")
    try:
        head[: first_bad if first_bad >= 0 else len(head)].decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ServiceError(f"Line 1 of '{path.name}' is not valid UTF-8 text; save the file as UTF-8 (CSV UTF-8) "
                           "and import it again.") from None
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar='"', doublequote=True, strict=False)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ServiceError(f"Line 1 of '{path.name}' is not a header row ({exc}); the first line must hold the "
                           "column names.") from None
    if not header or all(not h.strip() for h in header):
        raise ServiceError(f"Line 1 of '{path.name}' is empty; the first line must hold the column names.")
    return header


_COUNT_CHUNK = 8 << 20


def _count_records(path: Path) -> int:
    """The number of non-empty records in a CSV/TSV file (header included), counted independently of DuckDB.

    A record ends at a line break (``\\n``, ``\\r`` or ``\\r\\n``) outside double quotes; quotes are RFC 4180
    (a doubled quote inside a quoted value flips the state twice, so the parity of the quotes seen so far says
    whether a byte is inside quotes). Empty lines are not records, as in DuckDB's reader for files of several
    columns (for files of one column DuckDB reads some empty lines as missing values; the caller allows for that).
    The file is read in chunks with numpy, so the count costs about as much as reading the file once.
    """
    import numpy as np

    count = 0
    in_quote = 0          # 1 when the previous chunk ended inside quotes
    prev_break = True     # the byte before this chunk (or the start of the file) was a line break outside quotes
    with open(path, "rb") as fh:
        while chunk := fh.read(_COUNT_CHUNK):
            a = np.frombuffer(chunk, dtype=np.uint8)
            quotes = np.flatnonzero(a == 34)
            breaks = np.flatnonzero((a == 10) | (a == 13))
            # a break is outside quotes when the quotes before it (and the carried state) are even in number
            breaks = breaks[(np.searchsorted(quotes, breaks) + in_quote) % 2 == 0]
            # a record starts at every byte that is not an outside break but follows one (or the start)
            if breaks.size == 0:
                count += int(prev_break)
                prev_break = False
            else:
                count += int(prev_break and breaks[0] != 0)
                count += int(np.count_nonzero(np.diff(breaks) != 1))
                last = int(breaks[-1])
                if last != a.size - 1:
                    count += 1
                prev_break = last == a.size - 1
            in_quote = (in_quote + quotes.size) % 2
    return count


def _header_end(path: Path) -> tuple[int, bool]:
    """(byte offset where the header record's text ends, whether that record spans several physical lines)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    in_quote = False
    for i, b in enumerate(head):
        if b == 34:
            in_quote = not in_quote
        elif b in (10, 13) and not in_quote:
            return i, any(c in (10, 13) for c in head[:i])
    return len(head), any(c in (10, 13) for c in head)


@contextmanager
def _plain_header(path: Path, names: list[str], delim: str) -> Iterator[Path]:
    """The file itself, or (when its header holds a quoted line break) a copy whose header is plain column ids.

    DuckDB 1.x-2.x reads a CRLF file whose quoted header name holds a bare LF as having no rows at all; the names are
    taken from our own header parser anyway, so the copy's header only needs the right number of fields.
    """
    end, multiline = _header_end(path)
    if not multiline:
        yield path
        return
    handle = tempfile.NamedTemporaryFile(prefix="glmmlab-header-", suffix=path.suffix, delete=False)
    try:
        with handle, open(path, "rb") as src:
            handle.write(delim.join(data_column(i) for i in range(len(names))).encode())
            src.seek(end)
            shutil.copyfileobj(src, handle, 1 << 20)
        yield Path(handle.name)
    finally:
        with suppress(OSError):
            os.unlink(handle.name)


def _check_width(n_columns: int, display: str) -> None:
    if n_columns > MAX_COLUMNS:
        raise ServiceError(f"'{display}' has {n_columns:,} columns; glmmlab imports at most {MAX_COLUMNS:,}. Keep the "
                           "columns the analysis needs (the response, predictors and group) and import that file. "
                           "Nothing was imported.")


def _record_to_line(path: Path, record: int, delim: str) -> int:
    """The physical line on which record number ``record`` (1-based, header included) starts."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=delim, quotechar='"', doublequote=True, strict=False)
            start = 1
            for number, _ in enumerate(reader, start=1):
                if number == record:
                    return start
                start = reader.line_num + 1
    except (OSError, csv.Error):
        pass
    return record


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")


def _csv_error(exc: Exception, path: Path, display: str, delim: str) -> ServiceError:
    if is_disk_full(exc):
        return disk_full(f"'{display}' could not be imported")
    text = str(exc)
    match = _CSV_LINE.search(text)
    if not match:
        first = text.splitlines()[0] if text else type(exc).__name__
        return ServiceError(f"'{display}' could not be read: {first.removeprefix('Invalid Input Error: ')}. "
                            "Check that it is a UTF-8 CSV/TSV file with a header row.")
    line = _record_to_line(path, int(match.group(1)), delim)
    fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if fields:
        want, got = fields.groups()
        reason = (f"it has {got} field{'s' if got != '1' else ''} but the header has {want}; "
                  "fix that line (a missing or extra separator, or an unquoted separator inside a value) and import "
                  "again")
    elif "unicode" in text.lower() or "utf-8" in text.lower():
        reason = "it is not valid UTF-8 text; save the file as UTF-8 (CSV UTF-8) and import it again"
    elif "unterminated quote" in text.lower():
        reason = ("a double quote is out of place (a quoted value must be closed, and followed by a separator or the "
                  "end of the line); fix the quotes on that line and import again")
    else:
        detail = [ln for ln in text.splitlines()[2:] if ln.strip()]
        reason = (detail[0].rstrip(".") if detail else "it cannot be read") + "; fix that line and import again"
    return ServiceError(f"Line {line} of '{display}' is malformed: {reason}. Nothing was imported.")


class _ProgressPoller:
    """Reports DuckDB's progress on the running query of ``cur`` as ``progress(stage, lo + share * (hi - lo))``."""

    def __init__(self, cur, progress: Progress | None, stage: str, lo: float, hi: float):
        self.cur, self.progress, self.stage, self.lo, self.hi = cur, progress, stage, lo, hi
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if self.progress is not None:
            self.progress(self.stage, self.lo)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        progress = self.progress
        assert progress is not None  # the poller only runs for a progress callback
        last = -1.0
        while not self._stop.wait(0.1):
            try:
                pct = self.cur.query_progress()
            except Exception:  # noqa: BLE001 - progress is best effort
                return
            if pct is not None and pct >= 0 and pct / 100 > last + 0.01:
                last = min(pct / 100, 1.0)
                with suppress(Exception):
                    progress(self.stage, self.lo + last * (self.hi - self.lo))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False


_BATCH = 200  # expressions per query: DuckDB's cost per expression grows with their number in one query


def _batched(cur, relation: str, exprs: list[str]) -> list[Any]:
    """``SELECT expr, ... FROM relation`` in batches of :data:`_BATCH` expressions; the one row's values in order.

    One query with thousands of expressions costs DuckDB time quadratic in their number; batches keep it linear.
    """
    out: list[Any] = []
    for b in range(0, len(exprs), _BATCH):
        out.extend(cur.execute(f"SELECT {', '.join(exprs[b:b + _BATCH])} FROM {relation}").fetchone())
    return out


def _create_converted(cur, table: str, source: str, exprs: list[str]) -> None:
    """``CREATE TABLE table AS SELECT exprs FROM source``, built in batches of columns for wide sources.

    Each batch becomes a temporary table in the source's row order; a positional join puts them side by side.
    """
    if len(exprs) <= _BATCH:
        cur.execute(f"CREATE TABLE {table} AS SELECT {', '.join(exprs) or '1 AS _empty'} FROM {source}")
        return
    parts = []
    try:
        for b in range(0, len(exprs), _BATCH):
            part = f"_part_{table}_{b // _BATCH}"
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {part} AS SELECT {', '.join(exprs[b:b + _BATCH])} FROM {source}")
            parts.append(part)
        cur.execute(f"CREATE TABLE {table} AS SELECT * FROM {' POSITIONAL JOIN '.join(parts)}")
    finally:
        for part in parts:
            with suppress(duckdb.Error):
                cur.execute(f"DROP TABLE IF EXISTS {part}")


def _sample_fits(cur, relation: str, n: int, rows: int) -> tuple[list[dict[str, bool]], list[int]]:
    """For the first ``rows`` rows: per column, which types every cell fits, and how many cells are not blank.

    The sample is unpivoted (one row per cell, in batches of columns), so the same six expressions serve every
    column and the cost is linear in the number of cells.
    """
    fits: list[dict[str, bool]] = [dict() for _ in range(n)]
    counts = [0] * n
    kinds = _INFERENCE_ORDER[:-1]
    step = 1000
    for b in range(0, n, step):
        cols = ", ".join(f"{data_column(i)} AS \"{i}\"" for i in range(b, min(n, b + step)))
        conds = ", ".join(f"bool_and({_text_fits('v', t)})" for t in kinds)
        result = cur.execute(
            f"SELECT CAST(k AS INTEGER), {conds}, count({_blank('v')}) FROM (UNPIVOT (SELECT {cols} FROM {relation} "
            f"LIMIT {rows}) ON COLUMNS(*) INTO NAME k VALUE v) GROUP BY k").fetchall()
        for row in result:
            i = int(row[0])
            fits[i] = {t: row[1 + j] is not False for j, t in enumerate(kinds)}
            counts[i] = int(row[-1])
    for i in range(n):  # a column with no values in the sample (all null) fits everything so far
        if not fits[i]:
            fits[i] = {t: True for t in kinds}
    return fits, counts


def _choose_types(cur, relation: str, n: int) -> list[str]:
    """Infer the type of each VARCHAR column c0..c{n-1} of ``relation``: the first type that every cell fits."""
    if n == 0:
        return []
    # A first guess from the first rows, then a check of that guess over all rows (one condition per column);
    # columns whose guess fails move on to the next type that fits everything.
    fits, counts = _sample_fits(cur, relation, n, 2000)
    candidates = [tuple(t for t in _INFERENCE_ORDER[:-1] if fits[i][t]) + ("string",) for i in range(n)]
    chosen = [c[0] for c in candidates]
    pending = [i for i in range(n) if chosen[i] != "string"]
    if pending:
        row = _batched(cur, relation, [f"coalesce(bool_and({_text_fits(data_column(i), chosen[i])}), TRUE)"
                                       for i in pending])
        failed = [i for i, ok in zip(pending, row) if not ok]
        if failed:
            checks = [(i, t) for i in failed for t in candidates[i][1:-1]]
            if checks:
                row = _batched(cur, relation, [f"coalesce(bool_and({_text_fits(data_column(i), t)}), TRUE)"
                                               for i, t in checks])
                ok = {(i, t) for (i, t), good in zip(checks, row) if good}
            else:
                ok = set()
            for i in failed:
                chosen[i] = next((t for t in candidates[i][1:-1] if (i, t) in ok), "string")
    # A column with no values at all stays text.
    empty = [i for i in range(n) if counts[i] == 0]
    if empty:
        full = _batched(cur, relation, [f"count({_blank(data_column(i))})" for i in empty])
        for i, c in zip(empty, full):
            if c == 0:
                chosen[i] = "string"
    return chosen


def _duck_dtype(type_name: str) -> str | None:
    t = type_name.upper()
    if t == "BOOLEAN":
        return "boolean"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "HUGEINT", "UHUGEINT"):
        return "int64"
    if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
        return "float64"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "datetime"
    if t in ("VARCHAR", "NULL") or t.startswith("ENUM"):
        return "string"
    return None


def import_dataset(project: Project, source: Source, name: str, fmt: str | None = None,
                   progress: Progress | None = None) -> DatasetInfo:
    """Import a CSV, TSV or Parquet file as a new primary dataset called ``name`` and return its entry.

    ``source`` is a path, the file's bytes, or a binary file object. ``fmt`` is ``'csv'``, ``'tsv'`` or
    ``'parquet'``; when None it comes from the file extension of a path (bytes and file objects need ``fmt``
    unless the object has a ``name`` with an extension). CSV/TSV files are UTF-8 with a header row; types are
    inferred per column from all rows (rules in :func:`_text_fits`: ``true``/``false`` in any case is boolean; whole
    numbers of up to 18 digits int64; decimals, exponents and ``inf`` float64 (so integers mixed with
    decimals are float64); ``YYYY-MM-DD`` date; ``YYYY-MM-DD HH:MM[:SS[.fff]]`` (or with ``T``) datetime; anything
    else string). Empty or blank cells and the :data:`MISSING_TOKENS` (``NA``, ``N/A``, ``NaN``, ``NULL``, ``.``,
    ``#N/A`` in any case) are missing (null) in a column of any type but string. Blank or repeated header names are
    made unique (``column_3``, ``score_2``). ``progress(stage, fraction)`` is called now and then with ``stage`` one of
    ``'reading'``, ``'checking types'``, ``'storing'``, ``'done'`` and ``fraction`` the overall share done,
    from 0.0 to 1.0.

    A malformed file raises :class:`ServiceError` naming the line, and nothing is imported. If the name is already
    taken, a number is added (``'scores (2)'``).
    """
    name = _check_name(name)
    display = name
    if isinstance(source, (str, os.PathLike)):
        display = Path(source).name
    elif isinstance(source_name := getattr(source, "name", None), str):
        display = Path(source_name).name
    with _full_disk(display), _source_path(source, fmt) as (path, fmt):
        if fmt == "parquet":
            info = _import_parquet(project, path, name, display, progress)
        else:
            info = _import_text(project, path, name, display, fmt, progress)
    if progress:
        progress("done", 1.0)
    return info


def _configure_progress(cur, on: bool) -> None:
    if on:
        cur.execute("SET enable_progress_bar = true")
        cur.execute("SET enable_progress_bar_print = false")


def _import_text(project: Project, path: Path, name: str, display: str, fmt: str,
                 progress: Progress | None) -> DatasetInfo:
    delim = "\t" if fmt == "tsv" else ","
    header = _read_header(path, delim)
    _check_width(len(header), display)
    names = _unique_column_names(header)
    n = len(names)
    columns_arg = "{" + ", ".join(f"'{data_column(i)}': 'VARCHAR'" for i in range(n)) + "}"
    relation = (f"read_csv({_sql_string(str(path))}, header = true, delim = {_sql_string(delim)}, quote = '\"', "
                f"escape = '\"', auto_detect = false, columns = {columns_arg}, strict_mode = true, "
                "null_padding = false, ignore_errors = false, encoding = 'utf-8')")
    with project.write() as cur, _full_disk(display), _plain_header(path, names, delim) as readable:
        _configure_progress(cur, progress is not None)
        relation = relation.replace(_sql_string(str(path)), _sql_string(str(readable)), 1)
        try:
            # Reading the text once into a temporary table makes the type checks and the typed copy fast.
            with _ProgressPoller(cur, progress, "reading", 0.0, 0.6):
                cur.execute(f"CREATE OR REPLACE TEMP TABLE _import_text AS SELECT * FROM {relation}")
        except duckdb.Error as exc:
            raise _csv_error(exc, path, display, delim) from None
        try:
            _check_row_count(cur, path, display, n)
            if progress:
                progress("checking types", 0.6)
            dtypes = _choose_types(cur, "_import_text", n)
            dataset_id = project.next_id(cur, "dataset")
            table = data_table(dataset_id)
            try:
                with _ProgressPoller(cur, progress, "storing", 0.8, 0.98):
                    _create_converted(cur, table, "_import_text",
                                      [f"{_text_convert(data_column(i), d)} AS {data_column(i)}"
                                       for i, d in enumerate(dtypes)])
            except duckdb.ConversionException as exc:
                raise ServiceError(f"'{display}' could not be stored: {exc}. Nothing was imported.") from None
            negative = _negative_columns(cur, table, dtypes)
            columns = [(nm, d, default_scale(d, i in negative)) for i, (nm, d) in enumerate(zip(names, dtypes))]
            unique = _unique_name(cur, name)
            _register_dataset(cur, dataset_id, unique, columns, parent_id=None, read_only=False,
                              operation={"type": "import", "source": display, "format": fmt})
            return _load_info(cur, dataset_id)
        finally:
            with suppress(duckdb.Error):
                cur.execute("DROP TABLE IF EXISTS _import_text")


def _check_row_count(cur, path: Path, display: str, n_columns: int) -> None:
    """Refuse the import when DuckDB read another number of rows than the file has records (never lose rows)."""
    expected = max(_count_records(path) - 1, 0)  # less the header
    if n_columns == 1:  # DuckDB reads some empty lines of a one-column file as missing values
        read, with_value = cur.execute(
            "SELECT count(*), count(c0) FROM _import_text").fetchone()
        ok = with_value <= expected <= read
    else:
        read = cur.execute("SELECT count(*) FROM _import_text").fetchone()[0]
        ok = read == expected
    if not ok:
        raise ServiceError(
            f"'{display}' could not be read reliably: the file has {expected:,} data row"
            f"{'' if expected == 1 else 's'} but {read:,} were read, so nothing was imported. Save it again as a "
            "plain UTF-8 CSV (one line per row, no line breaks inside the header names) and import it again.")


def _import_parquet(project: Project, path: Path, name: str, display: str,
                    progress: Progress | None) -> DatasetInfo:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise ServiceError(f"'{display}' is not a readable Parquet file ({exc}); check the file and import it "
                           "again.") from None
    _check_width(len(schema.names), display)
    names = _unique_column_names(list(schema.names))
    n = len(names)
    if n == 0:
        raise ServiceError(f"'{display}' has no columns; there is nothing to import.")
    aliases = ", ".join(data_column(i) for i in range(n))
    relation = f"(SELECT * FROM read_parquet({_sql_string(str(path))}) AS _p({aliases}))"
    with project.write() as cur:
        _configure_progress(cur, progress is not None)
        try:
            described = cur.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        except duckdb.Error as exc:
            raise ServiceError(f"'{display}' is not a readable Parquet file ({str(exc).splitlines()[0]}).") from None
        dtypes, exprs = [], []
        for i, row in enumerate(described):
            col, type_name = data_column(i), str(row[1])
            dtype = _duck_dtype(type_name)
            if dtype is None:
                dtype, expr = "string", f"CAST({col} AS VARCHAR)"
            elif type_name.upper() == "TIMESTAMP WITH TIME ZONE":
                expr = f"CAST(timezone('UTC', {col}) AS TIMESTAMP)"
            else:
                expr = f"CAST({col} AS {_SQL_TYPES[dtype]})"
            dtypes.append(dtype)
            exprs.append(f"{expr} AS {col}")
        dataset_id = project.next_id(cur, "dataset")
        table = data_table(dataset_id)
        try:
            with _ProgressPoller(cur, progress, "storing", 0.0, 0.95):
                cur.execute(f"CREATE TABLE {table} AS SELECT {', '.join(exprs)} FROM {relation}")
        except duckdb.Error as exc:
            if is_disk_full(exc):
                raise disk_full(f"'{display}' could not be imported") from None
            raise ServiceError(f"'{display}' could not be read: {str(exc).splitlines()[0]}. Nothing was "
                               "imported.") from None
        negative = _negative_columns(cur, table, dtypes)
        columns = [(nm, d, default_scale(d, i in negative)) for i, (nm, d) in enumerate(zip(names, dtypes))]
        unique = _unique_name(cur, name)
        _register_dataset(cur, dataset_id, unique, columns, parent_id=None, read_only=False,
                          operation={"type": "import", "source": display, "format": "parquet"})
        return _load_info(cur, dataset_id)


# -- reading -------------------------------------------------------------------------------------------------------

def list_datasets(project: Project) -> list[DatasetInfo]:
    """All datasets of the project, primary and derived, oldest first."""
    with project.read() as cur:
        rows = cur.execute("SELECT id, name, n_rows, parent_id, operation, read_only, created_at FROM datasets "
                           "ORDER BY id").fetchall()
        cols = cur.execute("SELECT dataset_id, position, name, dtype, scale FROM columns "
                           "ORDER BY dataset_id, position").fetchall()
    by_dataset: dict[int, list] = {}
    for c in cols:
        by_dataset.setdefault(int(c[0]), []).append(c[1:])
    return [_info_from_rows(r, by_dataset.get(int(r[0]), [])) for r in rows]


def get_dataset(project: Project, dataset_id: int) -> DatasetInfo:
    """The dataset with id ``dataset_id``; :class:`NotFound` when there is none."""
    dataset_id = _dataset_id(dataset_id)
    with project.read() as cur:
        return _load_info(cur, dataset_id)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    return str(value)


def read_rows(project: Project, dataset_id: int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """One page of rows, ready for JSON.

    Returns ``{"columns": [ColumnInfo.to_dict(), ...], "rows": [[value, ...], ...], "total": n_rows,
    "offset": offset, "limit": limit}``. Dates and datetimes are ISO 8601 strings; NaN and infinities are None.
    ``limit`` is at most 10,000.
    """
    dataset_id = _dataset_id(dataset_id)
    try:
        offset, limit = int(offset), int(limit)
    except (TypeError, ValueError, OverflowError):
        raise ServiceError("The row offset and limit must be whole numbers.") from None
    if offset < 0 or limit < 0:
        raise ServiceError("The row offset and limit cannot be negative.")
    if offset > MAX_OFFSET:
        raise ServiceError(f"The row offset {offset} is too large; it can be at most {MAX_OFFSET:,}.")
    limit = min(limit, MAX_PAGE_ROWS)
    with project.read() as cur:
        info = _load_info(cur, dataset_id)
        project.check_readable(dataset_id)
        select = ", ".join(data_column(c.position) for c in info.columns)
        rows = cur.execute(f"SELECT {select} FROM {data_table(dataset_id)} LIMIT ? OFFSET ?",
                           [limit, offset]).fetchall() if info.columns else []
    return {"columns": [c.to_dict() for c in info.columns],
            "rows": [[_json_value(v) for v in row] for row in rows],
            "total": info.n_rows, "offset": offset, "limit": limit}


def read_frame(project: Project, dataset_id: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The dataset (or the named ``columns``, in that order) as a pandas DataFrame with the users' column names.

    int64 columns with missing values come back as float64 with NaN (without missing values as int64); booleans
    with missing values as pandas' nullable ``boolean``; strings as pandas strings; dates and datetimes as
    ``datetime64`` (missing: NaT).
    """
    dataset_id = _dataset_id(dataset_id)
    with project.read() as cur:
        info = _load_info(cur, dataset_id)
        project.check_readable(dataset_id)
        wanted = list(info.columns) if columns is None else [info.column(c) for c in columns]
        if not wanted:
            return pd.DataFrame(index=range(info.n_rows))
        select = ", ".join(data_column(c.position) for c in wanted)
        frame = cur.execute(f"SELECT {select} FROM {data_table(dataset_id)}").df()
    frame.columns = [c.name for c in wanted]
    for i, col in enumerate(wanted):
        series = frame.iloc[:, i]
        if col.dtype == "int64" and series.dtype != "int64":
            frame.isetitem(i, series.astype("float64"))
    return frame


# -- changing ------------------------------------------------------------------------------------------------------

def _writable(info: DatasetInfo, what: str) -> None:
    if info.read_only:
        parent = f" from dataset {info.parent_id}" if info.parent_id is not None else ""
        raise ServiceError(f"Dataset '{info.name}' is read-only (it was derived{parent}), so its {what} cannot "
                           "change; change the original dataset and derive it again.")


def _conversion(col: str, src: str, dst: str) -> tuple[str | None, str | None, str]:
    """(SQL condition true for convertible cells, SQL converting them, the rule in words) for ``src`` -> ``dst``.

    The condition is None when the conversion is not offered at all.
    """
    if dst == "string":
        return "TRUE", f"CAST({col} AS VARCHAR)", ""
    if src == "string":
        words = {"boolean": "true or false", "int64": "a whole number", "float64": "a number",
                 "date": "a date written YYYY-MM-DD", "datetime": "a date and time written YYYY-MM-DD HH:MM:SS"}
        return _text_fits(col, dst), _text_convert(col, dst), words[dst]
    if dst == "int64":
        if src == "boolean":
            return "TRUE", f"CAST({col} AS BIGINT)", ""
        if src == "float64":
            return (f"({col} IS NULL OR (isfinite({col}) AND {col} = round({col}) AND abs({col}) < 9.2e18))",
                    f"CAST({col} AS BIGINT)", "a whole number")
    if dst == "float64" and src in ("int64", "boolean"):
        return "TRUE", f"CAST({col} AS DOUBLE)", ""
    if dst == "boolean" and src in ("int64", "float64"):
        return f"({col} IS NULL OR {col} IN (0, 1))", f"{col} = 1", "0 or 1"
    if dst == "datetime" and src == "date":
        return "TRUE", f"CAST({col} AS TIMESTAMP)", ""
    if dst == "date" and src == "datetime":
        return (f"({col} IS NULL OR CAST({col} AS TIME) = TIME '00:00:00')", f"CAST({col} AS DATE)",
                "a date without a time of day")
    return None, None, ""


def set_column_type(project: Project, dataset_id: int, column: str, dtype: str,
                    invalid: str = "refuse") -> DatasetInfo:
    """Convert the stored values of ``column`` to ``dtype`` and return the updated entry.

    With ``invalid="refuse"`` (the default) a value that cannot be converted raises :class:`ServiceError` naming the
    column and that value, with ``details`` ``{"invalid_count": n, "example": value}``, and nothing changes. With
    ``invalid="missing"`` such values become missing (null) instead. The scale is kept when the type stays in the
    same family (numbers; dates and datetimes; text and booleans) and suits the new type; otherwise the column gets
    the new type's default scale (:func:`default_scale`).
    Derived datasets are read-only.

    Offered conversions: anything to string; string to any type (cells must fit the import rules); boolean and
    int64 to float64; boolean and whole-numbered float64 to int64; int64/float64 holding only 0 and 1 to boolean;
    date to datetime; datetime at midnight to date.
    """
    dataset_id = _dataset_id(dataset_id)
    if dtype not in DTYPES:
        raise ServiceError(f"'{dtype}' is not a column type; use one of {', '.join(DTYPES)}.")
    if invalid not in ("refuse", "missing"):
        raise ServiceError(f"invalid must be 'refuse' or 'missing', not {invalid!r}.")
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        col = info.column(column)
        _writable(info, "column types")
        if col.dtype == dtype:
            return info
        stored, table = data_column(col.position), data_table(dataset_id)
        fits, convert, rule = _conversion(stored, col.dtype, dtype)
        if fits is None:
            raise ServiceError(f"Column '{column}' of dataset '{info.name}' is {col.dtype} and cannot become "
                               f"{dtype}; convert it to string first if you need to.")
        n_bad = 0
        if fits != "TRUE":
            bad = cur.execute(f"SELECT CAST({stored} AS VARCHAR), count(*) OVER () FROM {table} "
                              f"WHERE {stored} IS NOT NULL AND NOT coalesce({fits}, FALSE) LIMIT 1").fetchone()
            if bad is not None and invalid == "refuse":
                n_bad = int(bad[1])
                present = int(cur.execute(f"SELECT count({stored}) FROM {table}").fetchone()[0])  # type: ignore[index]
                others = f" (and {n_bad - 1} other value{'s' if n_bad != 2 else ''})" if n_bad > 1 else ""
                raise ServiceError(f"Column '{column}' of dataset '{info.name}' cannot become {dtype}: the value "
                                   f"'{bad[0]}'{others} is not {rule}. Turn the {n_bad:,} value"
                                   f"{'s' if n_bad != 1 else ''} that {'are' if n_bad != 1 else 'is'} not {rule} "
                                   f"into missing values, fix them in the file and import it again, or keep the "
                                   f"type {col.dtype}.", invalid_count=n_bad, present_count=present,
                                   example=bad[0], rule=rule)
            if bad is not None:
                n_bad = int(bad[1])
                convert = f"CASE WHEN coalesce({fits}, FALSE) THEN {convert} END"
        _keep_undo(cur, info, col, dtype, n_bad)
        cur.execute(f"ALTER TABLE {table} ALTER {stored} SET DATA TYPE {_SQL_TYPES[dtype]} USING ({convert})")
        scale = col.scale
        if _FAMILY[col.dtype] != _FAMILY[dtype] or scale not in SCALES_BY_DTYPE[dtype]:
            negative = bool(_negative_columns(cur, table, [dtype if i == col.position else "string"
                                                           for i in range(len(info.columns))]))
            scale = default_scale(dtype, negative)
        cur.execute("UPDATE columns SET dtype = ?, scale = ? WHERE dataset_id = ? AND position = ?",
                    [dtype, scale, dataset_id, col.position])
        return _load_info(cur, dataset_id)


def _undo_tables(dataset_id: int) -> tuple[str, str]:
    """The tables that keep the last type change of a dataset's column: the column's values before it (by row) and
    what changed (one row)."""
    return f"undo_{data_table(dataset_id)}", f"undo_{data_table(dataset_id)}_info"


def _keep_undo(cur: Any, info: DatasetInfo, col: ColumnInfo, dtype: str, made_missing: int) -> None:
    """Keep the column's values and type before a type change, so that :func:`undo_column_type` can restore them
    (the last change of each dataset; the tables are not part of the catalogue and are not exported)."""
    values, what = _undo_tables(info.id)
    cur.execute(f"CREATE OR REPLACE TABLE {values} AS SELECT rowid AS rid, {data_column(col.position)} AS v "
                f"FROM {data_table(info.id)}")
    cur.execute(f"CREATE OR REPLACE TABLE {what} (position INTEGER, name VARCHAR, dtype VARCHAR, scale VARCHAR, "
                "to_dtype VARCHAR, made_missing BIGINT, n_rows BIGINT)")
    cur.execute(f"INSERT INTO {what} VALUES (?, ?, ?, ?, ?, ?, ?)",
                [col.position, col.name, col.dtype, col.scale, dtype, made_missing, info.n_rows])


def _undo_record(cur: Any, info: DatasetInfo) -> dict[str, Any] | None:
    values, what = _undo_tables(info.id)
    tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                        "current_database() AND schema_name = 'main' AND table_name IN (?, ?)",
                                        [values, what]).fetchall()}
    if tables != {values, what}:
        return None
    row = cur.execute(f"SELECT position, name, dtype, scale, to_dtype, made_missing, n_rows FROM {what}").fetchone()
    if row is None:
        return None
    position, name, dtype, scale, to_dtype, made_missing, n_rows = row
    now = next((c for c in info.columns if c.position == position), None)
    if now is None or now.name != name or now.dtype != to_dtype or int(n_rows) != info.n_rows:
        return None  # the column was renamed, changed again or the rows changed since: nothing to restore
    return {"column": name, "position": int(position), "dtype": dtype, "scale": scale, "to_dtype": to_dtype,
            "made_missing": int(made_missing)}


def column_undo(project: Project, dataset_id: int) -> dict[str, Any] | None:
    """What :func:`undo_column_type` would restore: ``{"column", "dtype" (before), "scale" (before), "to_dtype"
    (now), "made_missing" (values the change turned into missing)}``, or None."""
    dataset_id = _dataset_id(dataset_id)
    with project.read() as cur:
        record = _undo_record(cur, _load_info(cur, dataset_id))
    if record is not None:
        record.pop("position")
    return record


def undo_column_type(project: Project, dataset_id: int) -> DatasetInfo:
    """Undo the last type change of a column of the dataset: its values (those the change turned into missing
    too) and its type and scale as they were. Refused when there is none, or when the column changed since."""
    dataset_id = _dataset_id(dataset_id)
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        _writable(info, "column types")
        record = _undo_record(cur, info)
        if record is None:
            raise ServiceError(f"Dataset '{info.name}' has no column type change to undo (only the last change of "
                               "a column can be undone, before anything else changes that column).")
        values, what = _undo_tables(dataset_id)
        table, stored = data_table(dataset_id), data_column(record["position"])
        cur.execute(f"ALTER TABLE {table} ALTER {stored} SET DATA TYPE {_SQL_TYPES[record['dtype']]} USING (NULL)")
        cur.execute(f"UPDATE {table} SET {stored} = u.v FROM {values} u WHERE {table}.rowid = u.rid")
        cur.execute("UPDATE columns SET dtype = ?, scale = ? WHERE dataset_id = ? AND position = ?",
                    [record["dtype"], record["scale"], dataset_id, record["position"]])
        cur.execute(f"DROP TABLE {values}")
        cur.execute(f"DROP TABLE {what}")
        return _load_info(cur, dataset_id)


def set_column_scale(project: Project, dataset_id: int, column: str, scale: str) -> DatasetInfo:
    """Set the measurement scale of ``column`` (one of :data:`SCALES_BY_DTYPE` for its type)."""
    dataset_id = _dataset_id(dataset_id)
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        col = info.column(column)
        _writable(info, "column scales")
        _check_scale(info.name, column, col.dtype, scale)
        cur.execute("UPDATE columns SET scale = ? WHERE dataset_id = ? AND position = ?",
                    [scale, dataset_id, col.position])
        return _load_info(cur, dataset_id)


def rename_dataset(project: Project, dataset_id: int, name: str) -> DatasetInfo:
    """Give the dataset a new name (not empty, not used by another dataset)."""
    dataset_id = _dataset_id(dataset_id)
    name = _check_name(name)
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        if info.name == name:
            return info
        if cur.execute("SELECT 1 FROM datasets WHERE name = ? AND id <> ?", [name, dataset_id]).fetchone():
            raise ServiceError(f"Another dataset is already called '{name}'; choose a different name.")
        cur.execute("UPDATE datasets SET name = ? WHERE id = ?", [name, dataset_id])
        return _load_info(cur, dataset_id)


# -- lineage and deletion ------------------------------------------------------------------------------------------

def _closure(cur, dataset_id: int) -> tuple[list[tuple], list[tuple]]:
    """Datasets (id, name, parent_id) and models (id, name, dataset_id) depending on ``dataset_id``, in order found."""
    datasets = cur.execute("SELECT id, name, parent_id FROM datasets ORDER BY id").fetchall()
    models = cur.execute("SELECT id, name, dataset_id, diagnostics_dataset_id FROM models ORDER BY id").fetchall()
    children: dict[int, list[tuple]] = {}
    for d in datasets:
        if d[2] is not None:
            children.setdefault(int(d[2]), []).append(d)
    by_id = {int(d[0]): d for d in datasets}
    fitted_on: dict[int, list[tuple]] = {}
    for m in models:
        fitted_on.setdefault(int(m[2]), []).append(m)
    seen_d, seen_m = {dataset_id}, set()
    found_d, found_m = [], []
    queue = [dataset_id]
    while queue:
        current = queue.pop(0)
        for child in children.get(current, []):
            if int(child[0]) not in seen_d:
                seen_d.add(int(child[0]))
                found_d.append(child)
                queue.append(int(child[0]))
        for model in fitted_on.get(current, []):
            if int(model[0]) in seen_m:
                continue
            seen_m.add(int(model[0]))
            found_m.append(model[:3])
            diag = model[3]
            if diag is not None and int(diag) not in seen_d and int(diag) in by_id:
                seen_d.add(int(diag))
                found_d.append(by_id[int(diag)])
                queue.append(int(diag))
    return found_d, found_m


def _lineage_dict(datasets: list[tuple], models: list[tuple]) -> dict[str, list[dict[str, Any]]]:
    return {"datasets": [{"id": int(d[0]), "name": d[1], "parent_id": None if d[2] is None else int(d[2])}
                         for d in datasets],
            "models": [{"id": int(m[0]), "name": m[1], "dataset_id": int(m[2])} for m in models]}


def dependents(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """What depends on the dataset, transitively: ``{"datasets": [...], "models": [...]}``.

    Datasets derived from it (and from those, and so on), models fitted on any of them, and the diagnostics
    datasets of those models (with their own dependents). Each entry is ``{"id", "name"}`` (datasets also
    ``"parent_id"``; models also ``"dataset_id"``). The dataset itself is not listed.
    """
    dataset_id = _dataset_id(dataset_id)
    with project.read() as cur:
        _load_info(cur, dataset_id)
        return _lineage_dict(*_closure(cur, dataset_id))


def delete_dataset(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """Delete the dataset and everything in :func:`dependents`, in one transaction.

    Returns what was deleted, in the shape of :func:`dependents` with the dataset itself first in ``datasets``.
    A model whose diagnostics dataset is deleted (but not the model's own data) keeps its results and loses the
    link to the diagnostics.
    """
    dataset_id = _dataset_id(dataset_id)
    with project.write() as cur:
        info = _load_info(cur, dataset_id)
        found_d, found_m = _closure(cur, dataset_id)
        doomed_d = [(info.id, info.name, info.parent_id)] + found_d
        ids = [int(d[0]) for d in doomed_d]
        model_ids = [int(m[0]) for m in found_m]
        for i in ids:
            cur.execute(f"DROP TABLE IF EXISTS {data_table(i)}")
            for undo in _undo_tables(i):
                cur.execute(f"DROP TABLE IF EXISTS {undo}")
        cur.execute("DELETE FROM columns WHERE dataset_id IN (SELECT unnest(?::BIGINT[]))", [ids])
        cur.execute("DELETE FROM datasets WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])
        if model_ids:
            cur.execute("DELETE FROM models WHERE id IN (SELECT unnest(?::BIGINT[]))", [model_ids])
        cur.execute("UPDATE models SET diagnostics_dataset_id = NULL "
                    "WHERE diagnostics_dataset_id IN (SELECT unnest(?::BIGINT[]))", [ids])
        return _lineage_dict(doomed_d, found_m)
