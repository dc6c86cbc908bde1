"""Errors raised by the services layer.

Every message is meant for the person using the workbench: it names the dataset, column, line or option that is
wrong and says what to do about it. Interfaces show the message as it is.
"""


class ServiceError(ValueError):
    """A request the services cannot carry out; ``str(error)`` is a user-facing sentence."""


class NotFound(ServiceError):
    """A dataset, model, report or project file that does not exist."""


class ProjectDamaged(ServiceError):
    """The project file is damaged: part of it (or all of it) cannot be read. The message says what can be saved."""

    status = 409
