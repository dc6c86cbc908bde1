"""Changing a dataset: a column's type (and undoing the last such change), a column's scale, the dataset's name.

Derived datasets are read-only. A type change keeps the column's values before it in two tables per dataset
(:func:`_undo_tables`), outside the catalogue, so that :func:`undo_column_type` can restore them.
"""

from __future__ import annotations

from typing import Any

from glmmlab.services.errors import ServiceError
from glmmlab.services.project.catalogue import ColumnInfo, DatasetInfo, _check_name, _dataset_id, _load_info
from glmmlab.services.project.column_types import (
    _FAMILY,
    _SQL_TYPES,
    DTYPES,
    SCALES_BY_DTYPE,
    _check_scale,
    _negative_columns,
    _text_convert,
    _text_fits,
    default_scale,
)
from glmmlab.services.project.store import Project, data_column, data_table


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

