"""Reviewing the audit log: filtered listing, one record, export, chain verification."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entrasync.domain.audit import ChainBreak, format_at, verify_chain
from entrasync.domain.durations import parse_duration
from entrasync.errors import InputError, NotFound
from entrasync.store import audit
from entrasync.store.audit import AuditFilter
from entrasync.store.db import Store

__all__ = ["AuditFilter", "Verification", "parse_moment", "records", "show", "verify"]


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


def records(store: Store, flt: AuditFilter, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Matching records in seq order, streamed."""
    with store.reading() as session:
        yield from audit.iter_matching(session, flt, batch)


def show(store: Store, seq: int) -> dict[str, Any]:
    with store.reading() as session:
        found = audit.record(session, seq)
    if found is None:
        raise NotFound(f"no audit record {seq}")
    return found


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
