"""Ingest's store side: the lookups a plan is made from, and writing the plan, set-based.

Each event once (DESIGN.md, "Ingestion is idempotent"): activity rows are inserted with ON
CONFLICT DO NOTHING against the event identity index (store/schema.py, ActivityRow), so a
file ingested again, or re-run after an interrupted load, adds only what is not stored yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from entrasync.domain.ingestion import IngestPlan, KnownUser, Lookups
from entrasync.domain.reports import AgentReport
from entrasync.domain.status import Tracking, UserStatus
from entrasync.store import queries, tally
from entrasync.store.driver import on_postgresql, raw_cursor
from entrasync.store.schema import (
    ActivityRow,
    AgentLogonRow,
    AgentRow,
    IdentifierRow,
    RetiredIdentifierRow,
    UserRow,
    event_identity_sql,
)


def lookups(session: Session, reports: Sequence[AgentReport]) -> Lookups:
    logons = sorted({report.logon for report in reports})
    keys = sorted(
        {(str(kind), value) for report in reports for kind, value in report.identifiers}
        | {("logon", logon) for logon in logons}
    )
    logon_agents = queries.logon_agents(session, logons)
    identifier_users = queries.identifier_users(session, keys)
    stale = queries.stale_identifiers(session, identifier_users)
    user_ids = {uid for _, uid in logon_agents.values()} | set(identifier_users.values())
    licensed = queries.user_license_counts(session, sorted(user_ids))
    users = {
        uid: KnownUser(tracking, status, licensed.get(uid, 0) > 0)
        for uid, (tracking, status) in queries.user_states(session, sorted(user_ids)).items()
    }
    agent_ids = sorted({aid for aid, _ in logon_agents.values()})
    return Lookups(
        logon_agents=logon_agents,
        identifier_users=identifier_users,
        users=users,
        agents_with_history=frozenset(queries.agents_with_history(session, agent_ids)),
        used_licenses=queries.used_licenses(session),
        stale=frozenset(stale),
    )


def write(session: Session, plan: IngestPlan, now: datetime) -> tuple[dict[int, int], int]:
    """Insert what the plan creates, set-based; returns plan refs -> new store ids, and the
    number of activity rows stored."""
    # Existing records whose agents gain history or who join the queue: the license tally
    # recounts them (and the new records) at the end of the transaction.
    tally.before(session, {u for _, u, _ in plan.accepted if u > 0} | set(plan.queued))
    ids: dict[int, int] = {}
    if plan.new_users:
        rows = [
            {
                "tracking": Tracking.TRACKED.value,
                "status": user.status,
                "pending_since": now if user.status == UserStatus.PENDING else None,
                "created_at": now,
            }
            for user in plan.new_users
        ]
        new_ids = session.scalars(
            insert(UserRow).returning(UserRow.id, sort_by_parameter_order=True), rows
        ).all()
        ids.update(zip((u.ref for u in plan.new_users), new_ids, strict=True))
        tally.created(session, new_ids)
    _retire(session, plan, ids, now)
    identifiers = [
        {"user_id": ids[u.ref], "kind": kind, "value": value}
        for u in plan.new_users
        for kind, value in u.identifiers
    ] + [
        {"user_id": user_id, "kind": kind, "value": value}
        for user_id, (kind, value) in plan.learned
    ]
    if identifiers:
        session.execute(insert(IdentifierRow), identifiers)
    if plan.new_agents:
        agent_rows = [
            {"user_id": ids.get(a.user, a.user), "created_at": now} for a in plan.new_agents
        ]
        new_ids = session.scalars(
            insert(AgentRow).returning(AgentRow.id, sort_by_parameter_order=True), agent_rows
        ).all()
        ids.update(zip((a.ref for a in plan.new_agents), new_ids, strict=True))
        session.execute(
            insert(AgentLogonRow),
            [{"logon": a.logon, "agent_id": ids[a.ref]} for a in plan.new_agents],
        )
    return ids, _write_activity(session, plan, ids, now)


def _retire(session: Session, plan: IngestPlan, ids: dict[int, int], now: datetime) -> None:
    """Move stale identifiers off their old records (kept there as retired)."""
    for old, (kind, value), new in plan.retired:
        session.execute(
            delete(IdentifierRow).where(
                IdentifierRow.user_id == old,
                IdentifierRow.kind == kind,
                IdentifierRow.value == value,
            )
        )
        session.add(
            RetiredIdentifierRow(
                user_id=old,
                kind=kind,
                value=value,
                retired_at=now,
                reason=retired_reason(kind, value, ids.get(new, new)),
            )
        )
    session.flush()


def retired_reason(kind: str, value: str, new_user: int) -> str:
    return (
        f"a report from a new logon under {kind} {value}, whose record's Entra account is "
        f"deleted or no longer holds it, started record {new_user}: {kind} retired here"
    )


_ACTIVITY_COLUMNS = ("agent_id", "device", "start", "duration_s", "app", "title", "received_at")
_Latest = dict[int, datetime]  # user id -> their newest event


def _write_activity(session: Session, plan: IngestPlan, ids: dict[int, int], now: datetime) -> int:
    """Activity rows with one `executemany` on the driver (SQLite) or one COPY and one
    INSERT … SELECT (PostgreSQL, `_copy_activity`); returns how many were new. The values are
    converted with the columns' own bind processors (so they are stored exactly as an
    ORM/Core insert would store them: the identity index compares the stored form), but
    without SQLAlchemy's per-row parameter machinery, which cost three times the INSERT
    itself (bench: ingest)."""
    table = cast(Table, ActivityRow.__table__)
    dialect = session.get_bind().dialect
    processor = table.c.start.type.dialect_impl(dialect).bind_processor(dialect)

    def to_db(moment: datetime) -> Any:
        return processor(moment) if processor is not None else moment

    received = to_db(now)
    rows: list[tuple[Any, ...]] = []
    latest: _Latest = {}
    for agent, user, report in plan.accepted:
        agent_id, user_id = ids.get(agent, agent), ids.get(user, user)
        for event in report.events:
            rows.append(
                (
                    agent_id,
                    report.device,
                    to_db(event.start),
                    event.duration_s,
                    event.app,
                    event.title,
                    received,
                )
            )
            if user_id not in latest or event.start > latest[user_id]:
                latest[user_id] = event.start
    stored = _insert_activity(session, table.name, dialect, rows) if rows else 0
    _touch_last_activity(session, latest)
    return stored


def _insert_activity(
    session: Session, table: str, dialect: Dialect, rows: list[tuple[Any, ...]]
) -> int:
    """An event already stored (or earlier in this file) conflicts with the unique index
    `uq_activity_event` and is skipped (ON CONFLICT DO NOTHING, SQLite >= 3.24). The conflict
    target names that index, so that nothing else is skipped silently and PostgreSQL checks
    one index before each insert, not the primary key too."""
    columns = ", ".join(_ACTIVITY_COLUMNS)
    conflict = f"ON CONFLICT ({event_identity_sql(dialect.name)}) DO NOTHING"
    if on_postgresql(session):
        return _copy_activity(session, table, rows, conflict)
    marks = ", ".join("?" for _ in _ACTIVITY_COLUMNS)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks}) {conflict}"  # noqa: S608
    # The driver sums the rows of an executemany (checked in tests: rows_stored).
    return int(session.connection().exec_driver_sql(sql, rows).rowcount)


_STAGE = "ingest_activity_stage"


def _copy_activity(session: Session, table: str, rows: list[tuple[Any, ...]], conflict: str) -> int:
    """PostgreSQL: the rows go to a temporary table with COPY, then into `table` with one
    INSERT … SELECT that skips the events already stored. An executemany sends one prepared
    statement per row, and psycopg's Python work per row cost as much as the server's insert
    (bench: ingest). The stage has the activity columns' own types (and `n`, the row's place
    in the file, so rows are inserted in file order as before); it lives in this transaction
    only. Events repeated within the file conflict with each other and are stored once (DO
    NOTHING, unlike DO UPDATE, accepts that within one statement)."""
    columns = ", ".join(_ACTIVITY_COLUMNS)
    with raw_cursor(session, f"COPY {_STAGE} (n, {columns}) FROM STDIN") as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_STAGE} ON COMMIT DROP AS "  # noqa: S608 - fixed names
            f"SELECT 0::bigint AS n, {columns} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {_STAGE} (n, {columns}) FROM STDIN") as copy:
            for n, row in enumerate(rows):
                copy.write_row((n, *row))
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "  # noqa: S608 - fixed names
            f"SELECT {columns} FROM {_STAGE} ORDER BY n {conflict}"
        )
        stored = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {_STAGE}")
        return stored


def _touch_last_activity(session: Session, latest: _Latest) -> None:
    if not latest:
        return
    users = cast(Table, UserRow.__table__)
    session.execute(
        update(users)
        .where(users.c.id == bindparam("uid"))
        .where((users.c.last_activity_at.is_(None)) | (users.c.last_activity_at < bindparam("t")))
        .values(last_activity_at=bindparam("t")),
        [{"uid": uid, "t": moment} for uid, moment in latest.items()],
    )


def queue_existing(session: Session, user_ids: list[int], now: datetime) -> None:
    if user_ids:
        tally.before(session, user_ids)
        session.execute(
            update(UserRow)
            .where(UserRow.id.in_(user_ids))
            .values(status=UserStatus.PENDING.value, pending_since=now)
        )
