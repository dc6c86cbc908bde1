"""Export a project to one file and import it again.

The export file is a ZIP archive (suggested extension ``.glmmlab``) holding

- ``manifest.json``: ``{"format": "glmmlab-project", "format_version": 1, "schema_version": ..., "datasets": [...],
  "columns": [...], "models": [...], "reports": [...], "report_items": [...], "meta": [...]}`` — the catalogue
  rows as JSON;
- ``data/ds_<id>.parquet``: the rows of each dataset, one Parquet file per dataset.

It is written from one consistent snapshot of the project, so it can be made while the workbench is in use, and it
does not depend on the DuckDB file format, so any glmmlab (or any Parquet reader) can open it.
"""

from __future__ import annotations

import os

from glmmlab.services.store import Project

FORMAT = "glmmlab-project"
FORMAT_VERSION = 1


def export_project(project: Project, dest_path: str | os.PathLike) -> dict:
    """Write the whole project to the single file ``dest_path`` (replaced if it exists).

    Returns ``{"path", "datasets", "models", "reports", "bytes"}``.
    """
    raise NotImplementedError


def import_project(src_path: str | os.PathLike, dest_path: str | os.PathLike) -> Project:
    """Create the project file ``dest_path`` from the export file ``src_path`` and return it open.

    Refuses (``ServiceError``) a file that is not a glmmlab export or is damaged, and a ``dest_path`` that already
    exists; nothing is left behind at ``dest_path`` when it refuses.
    """
    raise NotImplementedError
