"""Failure classes and the exit code each one maps to (the documented contract).

Every error message must name what is wrong and where, and must never carry a secret.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    HELD = 3
    UNAVAILABLE = 69
    INTERNAL = 70
    PERMISSION = 77
    CONFIG = 78
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class EntrasyncError(Exception):
    """Base class: carries the exit code the CLI uses for it, declared once on each class
    (`class X(EntrasyncError, exit_code=ExitCode.CONFIG)`); a subclass inherits its parent's."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init_subclass__(cls, *, exit_code: ExitCode | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code


class InternalError(EntrasyncError, exit_code=ExitCode.INTERNAL):
    """A bug: an exception the code did not expect. The CLI reports it in one line (type and
    where), never as a bare traceback."""


class ConfigError(EntrasyncError, exit_code=ExitCode.CONFIG):
    """The configuration file is missing, unreadable or invalid."""


class SchemaOutOfDate(EntrasyncError, exit_code=ExitCode.CONFIG):
    """The store's schema is behind the code: `entrasync db upgrade` is needed."""


class StoreUnavailable(EntrasyncError, exit_code=ExitCode.UNAVAILABLE):
    """The database cannot be reached."""


class GraphUnavailable(EntrasyncError, exit_code=ExitCode.UNAVAILABLE):
    """Microsoft Graph or the identity platform cannot be reached."""


class CollectorUnavailable(EntrasyncError, exit_code=ExitCode.UNAVAILABLE):
    """The audit collector (`audit.forward`) cannot be reached or answered with a transient
    failure; nothing was lost, the records wait in the store."""


class CollectorRefused(EntrasyncError, exit_code=ExitCode.CONFIG):
    """The audit collector refused the records (a bad token, path or certificate): the
    configuration must change before forwarding can continue."""


class PayloadTooLarge(CollectorRefused):
    """The collector refused a batch as too large (HTTP 413): sent again in smaller batches,
    down to one record; a single record it refuses is named."""


class GraphPermissionDenied(EntrasyncError, exit_code=ExitCode.PERMISSION):
    """Token refused (bad secret/certificate) or a Graph permission is missing."""


class ChainContradicted(EntrasyncError):
    """The audit chain no longer matches a signed checkpoint (records cut or rewritten): nothing
    is signed over it until an admin has looked."""


class InputError(EntrasyncError):
    """Bad input from the user (an input file line, an unknown identifier)."""


class NotFound(EntrasyncError):
    """The named user, agent, record or run does not exist."""


class ActionRefused(EntrasyncError):
    """A licensing rule forbids the requested action (e.g. no free license)."""
