"""Plain JSON values for the web answers: the services' one converter (:mod:`glmmlab.services.views.jsonable`)."""

from glmmlab.services.views.jsonable import jsonable, rows_jsonable

__all__ = ["jsonable", "rows_jsonable"]
