"""Dummy coding: turn categorical columns into 0/1 indicator columns in a new, read-only derived dataset.

A spec is a list with one entry per column of the source dataset::

    {"column": "region", "scale": "nominal", "action": "dummy_drop", "reference": "North"}

``action`` is one of

- ``"exclude"``: the column is not included;
- ``"as_is"``: the column is copied unchanged (with the scale given);
- ``"dummy_drop"``: k - 1 indicator columns replace the column;
- ``"dummy_keep"``: the column is kept and followed by its k - 1 indicator columns.

``scale`` (optional) sets the scale of the copied column; ``reference`` (optional) is the level that gets no
indicator column; by default it is the first level in alphabetical order (numbers in numeric order, false before
true). Columns not named in the spec are copied as they are.

Indicator columns are int64 with 1 where the source equals the level, 0 where it differs and null where the source
is null; each is named ``<column>_<level>`` (``region_North``), with ``_2``, ``_3`` ... added when a name is taken.
A column with a single distinct value (or none) cannot be dummy-coded, nor one with more than
:data:`MAX_LEVELS` levels.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Any

from glmmlab.services.errors import ServiceError
from glmmlab.services.modeling.frames import numeric_text_order
from glmmlab.services.project.catalogue import (
    DatasetInfo,
    _check_name,
    _dataset_id,
    _json_value,
    _load_info,
    _register_dataset,
    _unique_name,
    free_name,
)
from glmmlab.services.project.column_types import _SQL_TYPES, SCALES_BY_DTYPE, _check_scale
from glmmlab.services.project.store import Project, data_column, data_table, quote_literal

ACTIONS = ("exclude", "as_is", "dummy_drop", "dummy_keep")
MAX_LEVELS = 200
PREVIEW_ROWS = 10
INDICATOR_SCALE = "nominal"


@dataclass
class _Output:
    name: str
    dtype: str
    scale: str
    sql: str
    source: str


@dataclass
class _Plan:
    info: DatasetInfo
    spec: list[dict[str, Any]] = field(default_factory=list)
    encodings: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[_Output] = field(default_factory=list)


def _label(value: Any) -> str:
    """How a level reads in a column name and in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:g}" if value == int(value) and abs(value) < 1e15 else repr(value) if math.isfinite(value) \
            else ("inf" if value > 0 else "-inf")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _sort_key(value: Any):
    if isinstance(value, str):
        return (value.casefold(), value)
    if isinstance(value, float) and math.isnan(value):
        return (math.inf, 1)
    return (value, 0)


def _literal(value: Any, dtype: str) -> str:
    if dtype == "string":
        return quote_literal(value)
    if dtype == "float64":
        text = repr(float(value))
    elif dtype in ("date", "datetime"):
        text = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    else:
        text = _label(value)
    return f"CAST({quote_literal(text)} AS {_SQL_TYPES[dtype]})"


def _matches(level: Any, reference: Any) -> bool:
    if reference is None:
        return False
    if isinstance(reference, bool) or isinstance(level, bool):
        return str(reference).lower() == _label(level)
    if reference == _json_value(level):
        return True
    return str(reference) in (_label(level), str(_json_value(level)))


def _plan(cur, dataset_id: Any, spec: Any) -> _Plan:
    info = _load_info(cur, _dataset_id(dataset_id))
    if not isinstance(spec, (list, tuple)):
        raise ServiceError("The dummy coding spec must be a list with one entry per column.")
    entries: dict[str, dict[str, Any]] = {}
    for entry in spec:
        if not isinstance(entry, dict) or not isinstance(entry.get("column"), str):
            raise ServiceError("Each dummy coding entry needs a \"column\" naming a column of the dataset.")
        name = entry["column"]
        info.column(name)
        if name in entries:
            raise ServiceError(f"Column '{name}' appears twice in the dummy coding spec; give it one entry.")
        action = entry.get("action") or "as_is"
        if action not in ACTIONS:
            raise ServiceError(f"'{action}' is not a dummy coding action (column '{name}'); use one of "
                               f"{', '.join(ACTIONS)}.")
        entries[name] = {**entry, "action": action}

    plan = _Plan(info=info)
    table = data_table(info.id)
    kept_names = [c.name for c in info.columns if entries.get(c.name, {}).get("action", "as_is") != "exclude"
                  and entries.get(c.name, {}).get("action", "as_is") != "dummy_drop"]
    taken = set(kept_names)
    for col in info.columns:
        entry = entries.get(col.name, {"column": col.name, "action": "as_is"})
        action = entry["action"]
        scale = entry.get("scale") or col.scale
        if action != "exclude" and scale not in SCALES_BY_DTYPE.get(col.dtype, ()):
            _check_scale(info.name, col.name, col.dtype, scale)
        stored = data_column(col.position)
        resolved = {"column": col.name, "scale": scale, "action": action, "reference": None}
        if action in ("as_is", "dummy_keep"):
            plan.outputs.append(_Output(col.name, col.dtype, scale, stored, col.name))
        if action in ("dummy_drop", "dummy_keep"):
            rows = cur.execute(f"SELECT {stored}, count(*) FROM {table} WHERE {stored} IS NOT NULL "
                               f"GROUP BY {stored} LIMIT {MAX_LEVELS + 1}").fetchall()
            if len(rows) > MAX_LEVELS:
                raise ServiceError(f"Column '{col.name}' of dataset '{info.name}' has more than {MAX_LEVELS} "
                                   "distinct values; dummy coding makes a column for each, so leave it out or "
                                   "include it as-is.")
            if len(rows) == 0:
                raise ServiceError(f"Column '{col.name}' of dataset '{info.name}' has no values (every cell is "
                                   "empty), so it cannot be dummy-coded; leave it out.")
            if len(rows) == 1:
                raise ServiceError(f"Column '{col.name}' of dataset '{info.name}' has only one distinct value "
                                   f"('{_label(rows[0][0])}'), so it cannot be dummy-coded; include it as-is or "
                                   "leave it out.")
            numeric = numeric_text_order([r[0] for r in rows]) if all(isinstance(r[0], str) for r in rows) else None
            rows = [rows[i] for i in numeric] if numeric is not None else sorted(rows, key=lambda r: _sort_key(r[0]))
            levels = [r[0] for r in rows]
            wanted = entry.get("reference")
            if wanted is None or wanted == "":
                reference = levels[0]
            else:
                found = [lv for lv in levels if _matches(lv, wanted)]
                if not found:
                    shown = ", ".join(_label(lv) for lv in levels[:10]) + (", ..." if len(levels) > 10 else "")
                    raise ServiceError(f"'{wanted}' is not a value of column '{col.name}' in dataset '{info.name}', "
                                       f"so it cannot be the reference; choose one of: {shown}.")
                reference = found[0]
            new_columns = []
            for level in levels:
                if level is reference or level == reference or (_label(level) == _label(reference)):
                    continue
                new_name = free_name(f"{col.name}_{_label(level)}", taken)
                taken.add(new_name)
                new_columns.append(new_name)
                plan.outputs.append(_Output(
                    new_name, "int64", INDICATOR_SCALE,
                    f"CAST(CASE WHEN {stored} IS NULL THEN NULL WHEN {stored} = {_literal(level, col.dtype)} "
                    f"THEN 1 ELSE 0 END AS BIGINT)", col.name))
            resolved["reference"] = _json_value(reference)
            plan.encodings.append({"column": col.name, "dtype": col.dtype, "action": action, "scale": scale,
                                   "levels": [_json_value(lv) for lv in levels],
                                   "counts": [int(r[1]) for r in rows],
                                   "reference": _json_value(reference), "new_columns": new_columns})
        plan.spec.append(resolved)
    if not plan.outputs:
        raise ServiceError(f"Every column of dataset '{info.name}' is left out, so the result would be empty; "
                           "include at least one column.")
    return plan


def _select(plan: _Plan) -> str:
    return ", ".join(f"{o.sql} AS {data_column(i)}" for i, o in enumerate(plan.outputs))


def preview_dummy_coding(project: Project, dataset_id: int, spec: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`create_dummy_coded` would make, without making it.

    Returns ``{"dataset_id", "dataset_name", "n_rows",
    "encodings": [{"column", "dtype", "action", "scale", "levels": [...], "counts": [...], "reference",
    "new_columns": [...]} for each dummy-coded column, levels in the order used],
    "columns": [{"name", "dtype", "scale", "source"}] of the result ("source" is the column it comes from),
    "rows": [[...], ...] the first rows of the result (JSON-ready, as in ``read_rows``)}``.
    Raises :class:`ServiceError` for the same problems as :func:`create_dummy_coded`.
    """
    with project.read() as cur:
        plan = _plan(cur, dataset_id, spec)
        rows = cur.execute(f"SELECT {_select(plan)} FROM {data_table(plan.info.id)} "
                           f"LIMIT {PREVIEW_ROWS}").fetchall()
    return {"dataset_id": plan.info.id, "dataset_name": plan.info.name, "n_rows": plan.info.n_rows,
            "encodings": plan.encodings,
            "columns": [{"name": o.name, "dtype": o.dtype, "scale": o.scale, "source": o.source}
                        for o in plan.outputs],
            "rows": [[_json_value(v) for v in row] for row in rows]}


def create_dummy_coded(project: Project, dataset_id: int, spec: list[dict[str, Any]],
                       name: str | None = None) -> DatasetInfo:
    """Create the dummy-coded dataset described by ``spec`` and return its entry.

    The new dataset is derived (``parent_id`` is ``dataset_id``), read-only, and records the resolved spec as its
    ``operation`` (``{"type": "dummy_coding", "source": <source name>, "spec": [...], "encodings": [...]}``, the
    spec with every column, its action, scale and reference filled in). ``name`` defaults to
    ``"<source name> (dummy coded)"``; a number is added when the name is taken.
    """
    with project.write() as cur:
        plan = _plan(cur, dataset_id, spec)
        name = _check_name(name if name is not None and str(name).strip() else f"{plan.info.name} (dummy coded)")
        new_id = project.next_id(cur, "dataset")
        cur.execute(f"CREATE TABLE {data_table(new_id)} AS SELECT {_select(plan)} FROM {data_table(plan.info.id)}")
        operation = {"type": "dummy_coding", "source": plan.info.name, "spec": plan.spec,
                     "encodings": [{k: e[k] for k in ("column", "levels", "reference", "new_columns")}
                                   for e in plan.encodings]}
        _register_dataset(cur, new_id, _unique_name(cur, name), [(o.name, o.dtype, o.scale) for o in plan.outputs],
                          parent_id=plan.info.id, operation=operation, read_only=True)
        return _load_info(cur, new_id)
