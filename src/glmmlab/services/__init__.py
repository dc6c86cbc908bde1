"""Services: from a table to a fit, and the workbench's projects, kept in one embedded DuckDB database per project.

- :mod:`.modeling`: the one way from a table to a fit, the fitted model every front door returns, and what a fit
  needs the data again for (prediction, marginal means, R², bootstrap, profiles).
- :mod:`.distributed`: the same fits on a Dask cluster.
- :mod:`.project`: :class:`Project` (the only owner of a project's DuckDB connection), datasets, dummy coding,
  the sample datasets.
- :mod:`.workbench`: fits as jobs, saved models, comparison, plots, reports, project export and import.
- :mod:`.views`: the one view of a result's tables, numbers, JSON values and plain text.
- :mod:`.errors`: :class:`ServiceError` (a user-facing message) and :class:`NotFound`.

DuckDB is imported with :mod:`.project.store`, on first use of ``Project``: a fit from the command line or Python,
which imports :mod:`.modeling.fitting`, does not load it.
"""

from __future__ import annotations

from typing import Any

from glmmlab.services.errors import NotFound, ServiceError

__all__ = ["Project", "ServiceError", "NotFound"]


def __getattr__(name: str) -> Any:
    if name == "Project":
        from glmmlab.services.project.store import Project

        return Project
    raise AttributeError(f"module 'glmmlab.services' has no attribute {name!r}")
