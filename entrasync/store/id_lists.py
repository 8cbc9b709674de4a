"""Lists of ids in SQL conditions: chunked under every backend's parameter limit (`chunks`),
or sent whole as one parameter (`one_of`, no limit): a `bigint[]` on PostgreSQL, a JSON array
read by `json_each` on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Dialect, any_, bindparam, func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import UserDefinedType

from entrasync.store.driver import IdArray, on_postgresql

T = TypeVar("T")
_CHUNK = 500  # keeps IN lists under every backend's parameter limit


def chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def one_of(
    session: Session, column: InstrumentedAttribute[int], ids: Sequence[int]
) -> ColumnElement[bool]:
    """`column IN (ids)`. On PostgreSQL as `column = ANY(:ids)`, one `bigint[]` parameter
    (`driver.IdArray`): an IN list of 500 ids is 500 bound parameters, each rendered by
    SQLAlchemy and the query text re-parsed by psycopg (too long for its cache), about 2 ms
    of client CPU per statement, more than several of a purge batch's statements take in
    the server. The plan is the same (PostgreSQL turns an IN list into `= ANY(ARRAY[…])`),
    and the text no longer changes with the batch, so psycopg caches its conversion. (Sent
    as text with a cast instead, the list's length is lost: `array_in` is not folded at
    plan time.)

    On SQLite as `column IN (SELECT value FROM json_each(:ids))`, one JSON text parameter:
    the same plan as an IN list (the list probes `column`'s index), without SQLAlchemy
    expanding 500 parameters per statement and sqlite3 preparing a new text each time
    (about 15 ms of a 500-user purge batch's 190; bench: purge). `json_each` is SQLite's
    JSON1, which SQLAlchemy's JSON type already needs (built in since SQLite 3.38)."""
    postgresql = on_postgresql(session)
    return _listed(postgresql, column, literal(ids, _ids_type(postgresql)))


def one_of_bound(
    postgresql: bool, column: InstrumentedAttribute[int], key: str
) -> ColumnElement[bool]:
    """`one_of` with the ids bound when the statement runs, as parameter `key`: for a
    statement built once and run again and again (SQLAlchemy then skips rebuilding it and
    deriving its cache key: about 0.15 ms a statement)."""
    return _listed(postgresql, column, bindparam(key, type_=_ids_type(postgresql)))


def _ids_type(postgresql: bool) -> _BigIntArray | _IdJson:
    return _BigIntArray() if postgresql else _IdJson()


def _listed(
    postgresql: bool, column: InstrumentedAttribute[int], ids: ColumnElement[Any]
) -> ColumnElement[bool]:
    if postgresql:
        return column == any_(ids)
    return column.in_(select(func.json_each(ids).table_valued("value").c.value))


class _BigIntArray(UserDefinedType[Sequence[int]]):
    """A `bigint[]` bound as `IdArray`, typed by its dumper (no cast in the SQL)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "BIGINT[]"

    def bind_processor(self, dialect: Dialect) -> Any:
        return IdArray


class _IdJson(UserDefinedType[Sequence[int]]):
    """Ids bound as one JSON array text (SQLite's `json_each`)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "TEXT"

    def bind_processor(self, dialect: Dialect) -> Any:
        return _json_ids


def _json_ids(ids: Sequence[int]) -> str:
    return json.dumps([int(i) for i in ids])
