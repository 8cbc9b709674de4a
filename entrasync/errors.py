"""Failure classes and the exit code each one maps to (the documented contract).

Every error message must name what is wrong and where, and must never carry a secret.
"""

from __future__ import annotations

from enum import IntEnum


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
    """Base class: carries the exit code the CLI uses for it."""

    exit_code: ExitCode = ExitCode.FAILURE


class InternalError(EntrasyncError):
    """A bug: an exception the code did not expect. The CLI reports it in one line (type and
    where), never as a bare traceback."""

    exit_code = ExitCode.INTERNAL


class ConfigError(EntrasyncError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = ExitCode.CONFIG


class SchemaOutOfDate(EntrasyncError):
    """The store's schema is behind the code: `entrasync db upgrade` is needed."""

    exit_code = ExitCode.CONFIG


class StoreUnavailable(EntrasyncError):
    """The database cannot be reached."""

    exit_code = ExitCode.UNAVAILABLE


class GraphUnavailable(EntrasyncError):
    """Microsoft Graph or the identity platform cannot be reached."""

    exit_code = ExitCode.UNAVAILABLE


class GraphPermissionDenied(EntrasyncError):
    """Token refused (bad secret/certificate) or a Graph permission is missing."""

    exit_code = ExitCode.PERMISSION


class InputError(EntrasyncError):
    """Bad input from the user (an input file line, an unknown identifier)."""

    exit_code = ExitCode.FAILURE


class NotFound(EntrasyncError):
    """The named user, agent, record or run does not exist."""

    exit_code = ExitCode.FAILURE


class ActionRefused(EntrasyncError):
    """A licensing rule forbids the requested action (e.g. no free license)."""

    exit_code = ExitCode.FAILURE
