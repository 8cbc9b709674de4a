"""What a store operation may raise, for callers outside store/ that must outlive it (the
daemon's jobs log the error and keep their schedule)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from entrasync.errors import EntrasyncError

# Ours (classified: unreachable, refused, out-of-date schema) and the ones the store layer
# did not classify (a constraint, a driver error).
STORE_ERRORS: tuple[type[Exception], ...] = (EntrasyncError, SQLAlchemyError)


def describe(exc: BaseException) -> str:
    """A store error for the log: ours carry a message; an unclassified one is named by type
    and the driver's own message, without the SQL."""
    if isinstance(exc, EntrasyncError):
        return str(exc)
    origin = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {origin if origin is not None else exc}"
