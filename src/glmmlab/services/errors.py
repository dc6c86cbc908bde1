"""Errors raised by the services layer.

Every message is meant for the person using the workbench: it names the dataset, column, line or option that is
wrong and says what to do about it. Interfaces show the message as it is.
"""

import errno

_FULL_WORDS = ("no space left on device", "disk quota exceeded", "not enough space on the disk")


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


class ProjectBusy(ServiceError):
    """Another change to the project is running and did not finish within the time a caller may wait."""

    status = 503


class ProjectDamaged(ServiceError):
    """The project file is damaged: part of it (or all of it) cannot be read. The message says what can be saved."""

    status = 409


class DiskFull(ServiceError):
    """The disk is full (or the quota used up): nothing was changed; free some space and try again."""

    status = 507


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError of a full disk or quota, and for DuckDB's errors that report one."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(w in str(exc).lower() for w in _FULL_WORDS)


def disk_full(what: str) -> DiskFull:
    return DiskFull(f"{what}: the disk is full. Nothing was changed; free some space (or choose a disk with more room) "
                    "and try again.")
