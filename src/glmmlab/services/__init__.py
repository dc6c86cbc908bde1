"""Services: projects, datasets, saved models and reports, kept in one embedded DuckDB database per project.

- :mod:`.store`: :class:`Project`, the only owner of a project's DuckDB connection (one writer, many readers).
- :mod:`.datasets`: import, page through, retype, rescale, rename and delete datasets (with their dependents);
  ``store_frame`` for code that makes datasets from a DataFrame.
- :mod:`.dummy`: preview and create dummy-coded derived datasets.
- :mod:`.samples`: the sample datasets of a new project.
- :mod:`.project_io`: export a project to one file and import it again.
- :mod:`.errors`: :class:`ServiceError` (a user-facing message) and :class:`NotFound`.

DuckDB is imported with :mod:`.store`, on first use of ``Project``: a fit from the command line or Python, which
imports :mod:`.fitting` and :mod:`.frames`, does not load it.
"""

from __future__ import annotations

from typing import Any

from glmmlab.services.errors import NotFound, ServiceError

__all__ = ["Project", "ServiceError", "NotFound"]


def __getattr__(name: str) -> Any:
    if name == "Project":
        from glmmlab.services.store import Project

        return Project
    raise AttributeError(f"module 'glmmlab.services' has no attribute {name!r}")
