"""Turn what the services return into plain JSON values (no NaN, no Infinity, dates as ISO strings)."""

from __future__ import annotations

import datetime as _dt
import decimal
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: NaN/Infinity/NaT become ``None``, dates ISO strings, numpy scalars Python."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    # numpy / pandas scalars and missing markers
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        try:
            return iso()
        except (TypeError, ValueError):  # pandas.NaT
            return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return str(value)


def rows_jsonable(rows: Any) -> list[list[Any]]:
    """Rows from the store as lists of JSON values; accepts lists of tuples or lists of dicts."""
    out = []
    for row in rows:
        if isinstance(row, dict):
            row = list(row.values())
        out.append([jsonable(v) for v in row])
    return out
