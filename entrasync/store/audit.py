"""Appending to and reading the hash-chained audit log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    CompoundSelect,
    Select,
    false,
    literal,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Session

from entrasync.domain.audit import (
    FIELDS,
    GENESIS,
    AuditEvent,
    canonical_json,
    format_at,
    hash_of_texts,
)
from entrasync.domain.identity import IdentifierKind, normalize, normalize_logon
from entrasync.store.driver import on_postgresql, raw_cursor
from entrasync.store.schema import (
    AgentLogonRow,
    AgentRow,
    AuditRow,
    IdentifierRow,
    RetiredIdentifierRow,
    UserRow,
)


def append_locked(
    session: Session,
    events: Sequence[AuditEvent],
    *,
    actor: str,
    now: datetime,
    run_id: str | None = None,
) -> list[int]:
    """Chain `events` onto the log; the caller holds the audit lock.

    The head is read under the audit lock, so concurrent writers queue instead of forking;
    the primary key would reject a fork even if they did not (the next `seq` comes from the
    same head as `prev_hash`).
    """
    return Chain.at_head(session, actor=actor, now=now, run_id=run_id).append(session, events)


@dataclass(frozen=True)
class Chain:
    """The log's head as read under the audit lock, and who writes onto it: `records`
    builds the next records without touching the store (a purge batch builds them while the
    server deletes), `insert_records` writes them. Nothing else may append in between: the
    records' `seq`s would be taken, and the primary key rejects them."""

    seq: int
    prev_hash: str
    actor: str
    at: str
    run_id: str | None

    @classmethod
    def at_head(cls, session: Session, *, actor: str, now: datetime, run_id: str | None) -> Chain:
        head = session.execute(_HEAD).first()
        seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
        return cls(seq, prev_hash, actor, format_at(now), run_id)

    def records(self, events: Sequence[AuditEvent]) -> list[Sealed]:
        """The records of `events`, hashed, each value encoded once: the JSON columns are
        stored as the canonical text the hash covers (a purge batch builds 500 records)."""
        records = []
        seq, prev_hash = self.seq, self.prev_hash
        shared = {"at": self.at, "run_id": self.run_id, "actor": self.actor}
        shared_texts = {name: canonical_json(value) for name, value in shared.items()}
        for event in events:
            seq += 1
            texts = shared_texts | {
                "seq": str(seq),
                "action": canonical_json(event.action),
                "user_id": canonical_json(event.user_id),
                "entra_object_id": canonical_json(event.entra_object_id),
                "identifiers": canonical_json(event.identifiers),
                "reason": canonical_json(event.reason),
                "details": canonical_json(event.details),
            }
            digest = hash_of_texts(texts, prev_hash)
            stored = shared | {
                "seq": seq,
                "action": event.action,
                "user_id": event.user_id,
                "entra_object_id": event.entra_object_id,
                "identifiers": texts["identifiers"],
                "reason": event.reason,
                "details": texts["details"],
                "prev_hash": prev_hash,
                "hash": digest,
            }
            records.append(Sealed(seq, _ROW(stored)))
            prev_hash = digest
        return records

    def append(self, session: Session, events: Sequence[AuditEvent]) -> list[int]:
        return insert_records(session, self.records(events))


# Built once: every audited action reads the head.
_HEAD = select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)


@dataclass(frozen=True)
class Sealed:
    """A record built by `Chain.records`: its seq, and the row `_insert` writes (built
    with the record, so that a purge batch does this work while the server deletes)."""

    seq: int
    row: tuple[Any, ...]

    def field(self, name: str) -> Any:
        """A column's value as written (the JSON columns as their text)."""
        return self.row[_COLUMNS.index(name)]


def insert_records(session: Session, records: list[Sealed]) -> list[int]:
    """Write records built by `Chain.records`; returns their seqs."""
    _insert(session, records)
    return [r.seq for r in records]


_COLUMNS = (*FIELDS, "prev_hash", "hash")
_ROW = itemgetter(*_COLUMNS)  # a record's values as `_insert` writes them


def _insert(session: Session, records: list[Sealed]) -> None:
    """The records' rows in bulk, no ORM object or type conversion per record: a purge of a
    whole Delete group writes thousands of records in one transaction, and SQLAlchemy's
    work per record (the JSON columns, the ORM's bulk path) cost more than the database's
    insert (bench: purge). On PostgreSQL one COPY (an executemany sends one prepared
    statement per record); on SQLite one executemany of a plain INSERT."""
    session.flush()  # as the ORM insert would: pending changes reach the database first
    if not on_postgresql(session):
        session.connection().exec_driver_sql(_INSERT, [r.row for r in records])
        return
    with raw_cursor(session, _COPY) as cursor, cursor.copy(_COPY) as copy:
        for record in records:
            copy.write_row(record.row)


_TARGET = f"{AuditRow.__tablename__} ({', '.join(_COLUMNS)})"
_COPY = f"COPY {_TARGET} FROM STDIN"
_INSERT = f"INSERT INTO {_TARGET} VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608 - fixed names


def as_dict(row: AuditRow) -> dict[str, Any]:
    """The hashed fields, then the chain's links: what `verify_chain` checks."""
    return {name: getattr(row, name) for name in (*FIELDS, "prev_hash", "hash")}


@dataclass(frozen=True)
class AuditFilter:
    since: str | None = None
    until: str | None = None
    action: str | None = None  # `pending.*`: `*` matches anything
    user_id: int | None = None
    run_id: str | None = None
    # Any identifier of a person (store id, UPN, email, employee id, logon, Entra object id,
    # current or retired, `kind:` prefix optional): their records and those of every record
    # merged into theirs.
    person: str | None = None


def iter_all(session: Session, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every record in seq order, streamed in batches (the log grows without bound)."""
    return iter_matching(session, AuditFilter(), batch)


def iter_matching(
    session: Session, flt: AuditFilter, batch: int = 5000
) -> Iterator[dict[str, Any]]:
    """The records `flt` matches, in seq order, streamed in batches."""
    last = 0
    while True:
        rows = session.scalars(_filtered(flt).where(AuditRow.seq > last).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield as_dict(row)
        last = rows[-1].seq


def _filtered(flt: AuditFilter) -> Select[AuditRow]:
    query = select(AuditRow).order_by(AuditRow.seq)
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
    if flt.person is not None:
        family = merge_family(seeds(flt.person.strip()))
        query = query.where(
            or_(
                AuditRow.user_id.in_(select(family.c.id)),
                AuditRow.entra_object_id.in_(
                    select(UserRow.entra_object_id).where(UserRow.id.in_(select(family.c.id)))
                ),
            )
        )
    return query


def seeds(ident: str) -> CompoundSelect[Any]:
    """Ids of the records `ident` names: as a store id, an Entra object id, a current or a
    retired identifier, or an agent's logon. A `kind:` prefix narrows it to that kind."""
    kind, sep, rest = ident.partition(":")
    if not (sep and kind in {"id", "entra", *IdentifierKind}):
        kind, rest = "", ident
    parts: list[Select[Any]] = [select(UserRow.id).where(false())]
    if kind in {"", "id"} and rest.isdigit():
        # The id itself, even without a user row: an older record may name an id that a
        # hand-edited or restored store no longer holds.
        parts.append(select(literal(int(rest), BigInteger).label("id")))
    if kind in {"", "entra"}:
        parts.append(select(UserRow.id).where(UserRow.entra_object_id == rest.lower()))
    if kind not in {"id", "entra"}:
        kinds = [kind] if kind else [k.value for k in IdentifierKind]
        values = _identifier_values(kind, rest)
        for table in (IdentifierRow, RetiredIdentifierRow):
            parts.append(
                select(table.user_id).where(table.value.in_(values), table.kind.in_(kinds))
            )
        if IdentifierKind.LOGON in kinds:
            parts.append(
                select(AgentRow.user_id)
                .join(AgentLogonRow, AgentLogonRow.agent_id == AgentRow.id)
                .where(AgentLogonRow.logon.in_(values))
            )
    return union(*parts)


def _identifier_values(kind: str, value: str) -> list[str]:
    values = [normalize(value)]
    if kind in {"", IdentifierKind.LOGON} and "\\" in value:
        with suppress(ValueError):  # not a DOMAIN-backslash-user logon
            values.append(normalize_logon(value))
    return values


def merge_family(seeds: CompoundSelect[Any]) -> CTE:
    """The seeds, every record they were merged into, and every record merged into those:
    a person's whole history, followed both ways along `users.merged_into_id`."""
    seed = seeds.subquery()
    up = select(seed.c[0].label("id")).cte("audit_up", recursive=True)
    up = up.union(
        select(UserRow.merged_into_id).where(
            UserRow.id == up.c.id, UserRow.merged_into_id.is_not(None)
        )
    )
    down = select(up.c.id).cte("audit_down", recursive=True)
    return down.union(select(UserRow.id).where(UserRow.merged_into_id == down.c.id))


def _like(pattern: str) -> str:
    """`pending.*` -> a LIKE pattern; `_` and `%` in action names match only themselves."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def record(session: Session, seq: int) -> dict[str, Any] | None:
    row = session.get(AuditRow, seq)
    return as_dict(row) if row is not None else None
