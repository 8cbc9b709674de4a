"""Lists of ids in SQL conditions: chunked under every backend's parameter limit, or sent
to PostgreSQL as one array parameter."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Dialect, any_, literal
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import UserDefinedType

from entrasync.store.driver import IdArray, on_postgresql

T = TypeVar("T")
_CHUNK = 500  # keeps IN lists under every backend's parameter limit


def chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def id_chunks(session: Session, ids: Sequence[int]) -> Iterable[Sequence[int]]:
    """`ids` in chunks for `one_of`: all at once on PostgreSQL (one array parameter, no
    limit), `chunks` of IN lists elsewhere."""
    if not on_postgresql(session):
        return chunks(ids)
    return [ids] if ids else []


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
    plan time.)"""
    if on_postgresql(session):
        return column == any_(literal(ids, _BigIntArray()))
    return column.in_(ids)


class _BigIntArray(UserDefinedType[Sequence[int]]):
    """A `bigint[]` bound as `IdArray`, typed by its dumper (no cast in the SQL)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "BIGINT[]"

    def bind_processor(self, dialect: Dialect) -> Any:
        return IdArray
