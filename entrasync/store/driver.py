"""A DB-API cursor for what SQLAlchemy cannot send (PostgreSQL's COPY), failing as
SQLAlchemy would fail.

A driver error raised through a raw cursor is a bare `psycopg.Error`: `Store.transaction`
would not see a refused write (exit 78) or a lost server (exit 69), the daemon's
`STORE_ERRORS` would take it for a bug, and the pool would keep a dead connection. So the
error is raised again as the `DBAPIError` subclass SQLAlchemy would have raised
(`IntegrityError`, `OperationalError`, …), and a disconnect invalidates the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


@contextmanager
def raw_cursor(session: Session, statement: str) -> Iterator[Any]:
    """A cursor on the session's connection (in its transaction); `statement` names what
    it runs in an error."""
    connection = session.connection()
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dbapi_error as exc:
        lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, connection_invalidated=lost, dialect=dialect
        ) from exc
    finally:
        if not cursor.closed:
            cursor.close()
