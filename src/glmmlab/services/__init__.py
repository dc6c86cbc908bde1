"""Services: projects, datasets, saved models and reports, kept in one embedded DuckDB database per project.

- :mod:`.store`: :class:`Project`, the only owner of a project's DuckDB connection (one writer, many readers).
- :mod:`.datasets`: import, page through, retype, rescale, rename and delete datasets (with their dependents);
  ``store_frame`` for code that makes datasets from a DataFrame.
- :mod:`.dummy`: preview and create dummy-coded derived datasets.
- :mod:`.samples`: the sample datasets of a new project.
- :mod:`.project_io`: export a project to one file and import it again.
- :mod:`.errors`: :class:`ServiceError` (a user-facing message) and :class:`NotFound`.
"""

from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.store import Project

__all__ = ["Project", "ServiceError", "NotFound"]
