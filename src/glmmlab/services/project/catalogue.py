"""The catalogue of a project's datasets: their entries, a new dataset from a pandas DataFrame, and reading them.

An entry is a :class:`DatasetInfo` with its :class:`ColumnInfo` columns (types and scales: :mod:`column_types
<glmmlab.services.project.column_types>`). :func:`list_datasets` and :func:`get_dataset` give entries,
:func:`read_rows` a page of rows ready for JSON, :func:`read_frame` a pandas DataFrame.

Code that makes datasets (samples, model diagnostics) stores a pandas DataFrame with :func:`store_frame`, inside a
``project.write()`` block when it belongs to a larger change. Files are imported by
:mod:`~glmmlab.services.project.importing`; datasets are changed by :mod:`~glmmlab.services.project.editing` and
deleted with what depends on them by :mod:`~glmmlab.services.project.lineage`.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.project.column_types import _SQL_TYPES, _check_scale, _negative_columns, default_scale
from glmmlab.services.project.store import Project, data_column, data_table

MAX_PAGE_ROWS = 10_000
MAX_OFFSET = (1 << 63) - 1


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


# -- entries and names -------------------------------------------------------------------------------------------------

def _dataset_id(dataset_id: Any) -> int:
    try:
        return int(dataset_id)
    except (TypeError, ValueError, OverflowError):
        raise NotFound(f"There is no dataset with id {dataset_id!r}.") from None


def _check_name(name: Any, what: str = "dataset") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError(f"Give the {what} a name (it cannot be empty).")
    name = name.strip()
    if len(name) > 200:
        raise ServiceError(f"The {what} name '{name[:40]}...' is too long; use at most 200 characters.")
    if "\x00" in name:
        raise ServiceError(f"The {what} name cannot contain the NUL character.")
    return name


def free_name(base: str, taken: set[str], pattern: str = "{base}_{n}") -> str:
    """``base`` if no name in ``taken`` has it, else the first of ``pattern`` with n = 2, 3, ... that is free."""
    if base not in taken:
        return base
    n = 2
    while pattern.format(base=base, n=n) in taken:
        n += 1
    return pattern.format(base=base, n=n)


def _unique_name(cur, name: str) -> str:
    taken = {r[0] for r in cur.execute("SELECT name FROM datasets").fetchall()}
    return free_name(name, taken, "{base} ({n})")


def _unique_column_names(names: list[str]) -> list[str]:
    """Blank names become ``column_<n>``; repeated names get ``_2``, ``_3`` ... so every name is unique."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names):
        name = raw.strip() if isinstance(raw, str) else str(raw)
        name = name.replace("\x00", "")
        if not name:
            name = f"column_{i + 1}"
        candidate = free_name(name, seen)
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
