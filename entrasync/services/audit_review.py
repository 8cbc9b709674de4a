"""Reviewing the audit log: filtered listing, one record, export, chain verification."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entrasync.domain.audit import ChainBreak, format_at, verify_chain
from entrasync.domain.durations import parse_duration
from entrasync.errors import InputError, NotFound
from entrasync.store import audit
from entrasync.store.audit import AuditFilter
from entrasync.store.db import Store

__all__ = [
    "AuditFilter",
    "Verification",
    "listing",
    "parse_moment",
    "person",
    "records",
    "show",
    "verify",
]

# Which identifier names the person best, most readable first.
_PERSON_ORDER = ("upn", "email", "employee_id", "logon")


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


def listing(store: Store, flt: AuditFilter, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """`records`, each with the `person` it concerns added for reading."""
    for record in records(store, flt, batch):
        yield {**record, "person": person(record)}


def person(record: Mapping[str, Any]) -> str:
    """Who a record is about, as it named them then: the UPN, else the display name, else the
    first identifier; the store id or Entra object id when it holds none; "" for no one."""
    by_kind = {i.get("kind"): i.get("value") for i in record.get("identifiers") or []}
    details = record.get("details") or {}
    names = [by_kind.get(kind) for kind in _PERSON_ORDER[:1]]
    names.append(details.get("display_name") if isinstance(details, dict) else None)
    names += [by_kind.get(kind) for kind in _PERSON_ORDER[1:]]
    names += [v for k, v in by_kind.items() if k not in _PERSON_ORDER]
    for name in names:
        if isinstance(name, str) and name:
            return name
    if record.get("user_id") is not None:
        return f"#{record['user_id']}"
    return str(record.get("entra_object_id") or "")


def show(store: Store, seq: int) -> dict[str, Any]:
    with store.reading() as session:
        found = audit.record(session, seq)
    if found is None:
        raise NotFound(f"no audit record {seq}")
    return {**found, "person": person(found)}


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
