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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Union
import os

import pandas as pd

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.store import Project

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
FORMATS = ("csv", "tsv", "parquet")

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


def default_scale(dtype: str, has_negative: bool = False) -> str:
    """The scale a new column of type ``dtype`` gets (rule in the module docstring)."""
    raise NotImplementedError


def import_dataset(project: Project, source: Source, name: str, fmt: str | None = None,
                   progress: Progress | None = None) -> DatasetInfo:
    """Import a CSV, TSV or Parquet file as a new primary dataset called ``name`` and return its entry.

    ``source`` is a path, the file's bytes, or a binary file object. ``fmt`` is ``'csv'``, ``'tsv'`` or
    ``'parquet'``; when None it comes from the file extension of a path (bytes and file objects need ``fmt``
    unless the object has a ``name`` with an extension). CSV/TSV files are UTF-8 with a header row; types are
    inferred per column from all rows, empty cells are missing (null). ``progress(stage, fraction)`` is called
    now and then with ``stage`` one of ``'reading'``, ``'checking types'``, ``'storing'``, ``'done'`` and
    ``fraction`` the overall share done, from 0.0 to 1.0.

    A malformed file raises :class:`ServiceError` naming the line, and nothing is imported. If the name is already
    taken, a number is added (``'scores (2)'``).
    """
    raise NotImplementedError


def list_datasets(project: Project) -> list[DatasetInfo]:
    """All datasets of the project, primary and derived, oldest first."""
    raise NotImplementedError


def get_dataset(project: Project, dataset_id: int) -> DatasetInfo:
    """The dataset with id ``dataset_id``; :class:`NotFound` when there is none."""
    raise NotImplementedError


def read_rows(project: Project, dataset_id: int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """One page of rows, ready for JSON.

    Returns ``{"columns": [ColumnInfo.to_dict(), ...], "rows": [[value, ...], ...], "total": n_rows,
    "offset": offset, "limit": limit}``. Dates and datetimes are ISO 8601 strings; NaN and infinities are None.
    ``limit`` is at most 10,000.
    """
    raise NotImplementedError


def read_frame(project: Project, dataset_id: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The dataset (or the named ``columns``, in that order) as a pandas DataFrame with the users' column names.

    int64 columns with missing values come back as float64 with NaN; strings as Python objects.
    """
    raise NotImplementedError


def set_column_type(project: Project, dataset_id: int, column: str, dtype: str) -> DatasetInfo:
    """Convert the stored values of ``column`` to ``dtype`` and return the updated entry.

    A value that cannot be converted raises :class:`ServiceError` naming the column and that value, and nothing
    changes. When the current scale does not suit the new type, the column gets the new type's default scale.
    Derived datasets are read-only.
    """
    raise NotImplementedError


def set_column_scale(project: Project, dataset_id: int, column: str, scale: str) -> DatasetInfo:
    """Set the measurement scale of ``column`` (one of :data:`SCALES_BY_DTYPE` for its type)."""
    raise NotImplementedError


def rename_dataset(project: Project, dataset_id: int, name: str) -> DatasetInfo:
    """Give the dataset a new name (not empty, not used by another dataset)."""
    raise NotImplementedError


def dependents(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """What depends on the dataset, transitively: ``{"datasets": [...], "models": [...]}``.

    Datasets derived from it (and from those, and so on), models fitted on any of them, and the diagnostics
    datasets of those models (with their own dependents). Each entry is ``{"id", "name"}`` (datasets also
    ``"parent_id"``; models also ``"dataset_id"``). The dataset itself is not listed.
    """
    raise NotImplementedError


def delete_dataset(project: Project, dataset_id: int) -> dict[str, list[dict[str, Any]]]:
    """Delete the dataset and everything in :func:`dependents`, in one transaction.

    Returns what was deleted, in the shape of :func:`dependents` with the dataset itself first in ``datasets``.
    """
    raise NotImplementedError
