"""Errors raised by the services layer.

Every message is meant for the person using the workbench: it names the dataset, column, line or option that is
wrong and says what to do about it. Interfaces show the message as it is.
"""


class ServiceError(ValueError):
    """A request the services cannot carry out; ``str(error)`` is a user-facing sentence.

    ``details`` (a dict, empty by default) carries facts an interface may offer a way out with, for example how
    many cells a type change would turn into missing values.
    """

    def __init__(self, message: str = "", **details):
        super().__init__(message)
        self.details = details


class NotFound(ServiceError):
    """A dataset, model, report or project file that does not exist."""
