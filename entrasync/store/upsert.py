"""`INSERT … ON CONFLICT` for the store's dialect (both SQLite and PostgreSQL spell it the same
way, through their own dialect's `insert`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from entrasync.store.driver import on_postgresql


def insert_for(session: Session, table: Any) -> Any:
    return (pg_insert if on_postgresql(session) else sqlite_insert)(table)
