"""The ingest context's errors, each with its stable code."""

from __future__ import annotations

import asyncpg

from mercato.core.errors import Conflict, NotFound, ValidationFailed


class JobFailed(Exception):
    """An import that cannot go on: the job fails, and nothing of it is loaded.

    Not an HTTP error: it ends a job (its `error_code` and `error_message`), and the CLI
    prints it.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class FileUnreadable(JobFailed):
    """The feed file cannot be parsed (encoding, quoting, JSON syntax)."""


class TooManyCategories(JobFailed):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "IMPORT_TOO_MANY_CATEGORIES",
            f"the feed names more than {limit} different categories; map them with aliases",
        )


class ImportNotFound(NotFound):
    code = "IMPORT_NOT_FOUND"
    message = "No such import job."


class InvalidMapping(ValidationFailed):
    code = "IMPORT_MAPPING_INVALID"
    message = "The mapping is not valid."


class InvalidImportRequest(ValidationFailed):
    code = "IMPORT_REQUEST_INVALID"
    message = "The import request is not valid."


class ImportNotResumable(Conflict):
    code = "IMPORT_NOT_RESUMABLE"
    message = "Only a job that is queued or was interrupted while running can be resumed."


class ImportBusy(Conflict):
    code = "IMPORT_BUSY"
    message = "Another import is running; this one is queued and starts when it ends."


# SQLSTATE classes of failures that say nothing about the file: connection (08), rollback
# (40, e.g. a deadlock), resources (53), operator intervention (57), system (58).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_transient(error: Exception) -> bool:
    """Whether an error while staging would likely not recur on a resume. Any other error
    (raised on the file's contents) would, at every pass of the runner, holding up every job
    queued behind this one; as staging has not touched the catalog, it fails the job."""
    if isinstance(error, OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate)[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False
