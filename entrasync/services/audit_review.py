"""Reviewing the audit log: filtered listing, one record, export, chain verification."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from entrasync.domain.audit import ChainBreak, format_at, verify_chain
from entrasync.domain.durations import parse_duration
from entrasync.errors import InputError, NotFound
from entrasync.store import audit
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow


def parse_moment(text: str, option: str, now: datetime) -> str:
    """`--since 24h` (that long ago), `2026-06-01` or a full ISO time -> the stored format."""
    try:
        return format_at(now - parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{option} {text!r}: expected a duration such as 24h or an ISO date/time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_at(moment)


@dataclass(frozen=True)
class AuditFilter:
    since: str | None = None
    until: str | None = None
    action: str | None = None
    user_id: int | None = None
    run_id: str | None = None


def records(store: Store, flt: AuditFilter, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Matching records in seq order, streamed."""
    last = 0
    with store.reading() as session:
        while True:
            query = select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
            if flt.since:
                query = query.where(AuditRow.at >= flt.since)
            if flt.until:
                query = query.where(AuditRow.at < flt.until)
            if flt.action:
                query = query.where(AuditRow.action.like(_like(flt.action), escape="\\"))
            if flt.user_id is not None:
                query = query.where(AuditRow.user_id == flt.user_id)
            if flt.run_id:
                query = query.where(AuditRow.run_id == flt.run_id)
            rows = session.scalars(query).all()
            if not rows:
                return
            for row in rows:
                yield audit.as_dict(row)
            last = rows[-1].seq


def _like(pattern: str) -> str:
    """`pending.*` -> a LIKE pattern; `_` and `%` in action names match only themselves."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def show(store: Store, seq: int) -> dict[str, Any]:
    with store.reading() as session:
        row = session.get(AuditRow, seq)
        if row is None:
            raise NotFound(f"no audit record {seq}")
        return audit.as_dict(row)


@dataclass(frozen=True)
class Verification:
    records: int
    problem: ChainBreak | None


def verify(store: Store) -> Verification:
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        with store.reading() as session:
            for record in audit.iter_all(session):
                count += 1
                yield record

    problem = verify_chain(counted())
    return Verification(count, problem)
