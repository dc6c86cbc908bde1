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

from typing import Any

from glmmlab.services.datasets import DatasetInfo
from glmmlab.services.errors import ServiceError
from glmmlab.services.store import Project

ACTIONS = ("exclude", "as_is", "dummy_drop", "dummy_keep")
MAX_LEVELS = 200
PREVIEW_ROWS = 10


def preview_dummy_coding(project: Project, dataset_id: int, spec: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`create_dummy_coded` would make, without making it.

    Returns ``{"dataset_id", "dataset_name", "n_rows",
    "encodings": [{"column", "action", "scale", "levels": [...], "counts": [...], "reference", "new_columns": [...]}
    for each dummy-coded column],
    "columns": [{"name", "dtype", "scale", "source"}] of the result,
    "rows": [[...], ...] the first rows of the result (JSON-ready, as in ``read_rows``)}``.
    Raises :class:`ServiceError` for the same problems as :func:`create_dummy_coded`.
    """
    raise NotImplementedError


def create_dummy_coded(project: Project, dataset_id: int, spec: list[dict[str, Any]],
                       name: str | None = None) -> DatasetInfo:
    """Create the dummy-coded dataset described by ``spec`` and return its entry.

    The new dataset is derived (``parent_id`` is ``dataset_id``), read-only, and records the resolved spec as its
    ``operation`` (``{"type": "dummy_coding", "spec": [...], "encodings": [...]}``). ``name`` defaults to
    ``"<source name> (dummy coded)"``.
    """
    raise NotImplementedError
