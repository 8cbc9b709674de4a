"""`entrasync ingest FILE`: agent reports into the store, all or nothing, each event once.

All or nothing: the file is parsed completely before anything is written, and written in one
transaction. Each event once (DESIGN.md, "Ingestion is idempotent"): activity rows are
inserted with ON CONFLICT DO NOTHING against the event identity index (store/schema.py,
ActivityRow), so a file ingested again, or re-run after an interrupted load, adds only what is
not stored yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.orm import Session

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.domain.ingestion import IngestPlan, KnownUser, Lookups, plan_ingest
from entrasync.domain.reports import AgentReport, ReportError, parse_reports
from entrasync.errors import InputError
from entrasync.store import queries
from entrasync.store.account import terms_of
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.schema import (
    ActivityRow,
    AgentLogonRow,
    AgentRow,
    IdentifierRow,
    RetiredIdentifierRow,
    UserRow,
    event_identity_sql,
)


@dataclass(frozen=True)
class IngestSummary:
    reports: int
    rows_stored: int  # new activity rows
    reports_dropped: int
    users_created: int
    agents_created: int
    pending: int
    # Events of accepted reports that were stored before (an earlier ingest, or earlier in
    # this file): skipped, not doubled.
    rows_already_stored: int = 0


# How report files are opened: a UTF-8 BOM is skipped, and undecodable bytes reach the parser
# as lone surrogates so that it names their line (a strict decoder fails without one).
ENCODING = "utf-8-sig"
DECODE_ERRORS = "surrogateescape"
Opener = Callable[[Path], TextIO]


def open_reports(path: Path) -> TextIO:
    return path.open(encoding=ENCODING, errors=DECODE_ERRORS)


def read_reports(path: Path, opener: Opener = open_reports) -> list[AgentReport]:
    """Every report of the file, or InputError naming the file and, for a bad line, the
    line (exit code 1)."""
    try:
        with opener(path) as handle:
            return parse_reports(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file of agent reports") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ReportError as exc:
        raise InputError(f"{path}: {exc}; nothing from this file was stored") from None


def ingest_file(store: Store, config: Config, path: Path, now: datetime) -> IngestSummary:
    return ingest_reports(store, config, read_reports(path), now, source=str(path))


def ingest_reports(
    store: Store, config: Config, reports: Sequence[AgentReport], now: datetime, source: str
) -> IngestSummary:
    with store.unit_of_work(now, account=config.account, notify=config.notify) as uow:
        session = uow.session
        # Pending routing reads the license count: hold the audit lock from here to the commit
        # so a concurrent `pending approve` cannot take the same free license (PostgreSQL).
        uow.lock()
        account = uow.account(config.account)
        plan = plan_ingest(list(reports), _lookups(session, reports), terms_of(account))
        ids, stored = _write(session, plan, now)
        pending = [ids[user.ref] for user in plan.pending_users] + plan.queued
        _queue_existing(session, plan.queued, now)
        events = sum(len(report.events) for _, _, report in plan.accepted)
        summary = IngestSummary(
            reports=len(reports),
            rows_stored=stored,
            reports_dropped=len(plan.dropped),
            users_created=len(plan.new_users),
            agents_created=len(plan.new_agents),
            pending=len(pending),
            rows_already_stored=events - stored,
        )
        records = [_pending_event(session, user_id) for user_id in pending]
        records += _retired_events(plan, ids)
        records.append(
            AuditEvent(
                "ingest.completed",
                f"agent reports from {source}",
                details={"source": source, **summary.__dict__},
            )
        )
        uow.audit(*records)
        if pending:
            _notify_pending(session, config, pending, now)
    return summary


def _lookups(session: Session, reports: Sequence[AgentReport]) -> Lookups:
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
        row.id: KnownUser(row.tracking, row.status, licensed.get(row.id, 0) > 0)
        for row in queries.users_by_id(session, sorted(user_ids))
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


def _write(session: Session, plan: IngestPlan, now: datetime) -> tuple[dict[int, int], int]:
    """Insert what the plan creates, set-based; returns plan refs -> new store ids, and the
    number of activity rows stored."""
    ids: dict[int, int] = {}
    if plan.new_users:
        rows = [
            {
                "tracking": "tracked",
                "status": user.status,
                "pending_since": now if user.status == "pending" else None,
                "created_at": now,
            }
            for user in plan.new_users
        ]
        new_ids = session.scalars(
            insert(UserRow).returning(UserRow.id, sort_by_parameter_order=True), rows
        ).all()
        ids.update(zip((u.ref for u in plan.new_users), new_ids, strict=True))
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
                reason=_retired_reason(kind, value, ids.get(new, new)),
            )
        )
    session.flush()


def _retired_reason(kind: str, value: str, new_user: int) -> str:
    return (
        f"a report from a new logon under {kind} {value}, whose record's Entra account is "
        f"deleted or no longer holds it, started record {new_user}: {kind} retired here"
    )


def _retired_events(plan: IngestPlan, ids: dict[int, int]) -> list[AuditEvent]:
    return [
        AuditEvent(
            "identifier.retired",
            _retired_reason(kind, value, ids.get(new, new)),
            user_id=old,
            identifiers=[{"kind": kind, "value": value}],
            details={"kind": kind, "value": value, "new_owner_user_id": ids.get(new, new)},
        )
        for old, (kind, value), new in plan.retired
    ]


_ACTIVITY_COLUMNS = ("agent_id", "device", "start", "duration_s", "app", "title", "received_at")


def _write_activity(session: Session, plan: IngestPlan, ids: dict[int, int], now: datetime) -> int:
    """Activity rows with one `executemany` on the driver; returns how many were new. The
    values are converted with the columns' own bind processors (so they are stored exactly
    as an ORM/Core insert would store them: the identity index compares the stored form),
    but without SQLAlchemy's per-row parameter machinery, which cost three times the INSERT
    itself (bench: ingest). An event already stored (or earlier in this file) conflicts with
    the unique index `uq_activity_event` and is skipped (ON CONFLICT DO NOTHING, SQLite >=
    3.24). The conflict target names that index, so that nothing else is skipped silently
    and PostgreSQL checks one index before each insert, not the primary key too."""
    table = cast(Table, ActivityRow.__table__)
    dialect = session.get_bind().dialect
    processor = table.c.start.type.dialect_impl(dialect).bind_processor(dialect)

    def to_db(moment: datetime) -> Any:
        return processor(moment) if processor is not None else moment

    received = to_db(now)
    rows: list[tuple[Any, ...]] = []
    latest: dict[int, datetime] = {}
    for agent, user, report in plan.accepted:
        agent_id, user_id = ids.get(agent, agent), ids.get(user, user)
        device = report.device
        for event in report.events:
            rows.append(
                (
                    agent_id,
                    device,
                    to_db(event.start),
                    event.duration_s,
                    event.app,
                    event.title,
                    received,
                )
            )
            if user_id not in latest or event.start > latest[user_id]:
                latest[user_id] = event.start
    stored = 0
    if rows:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        columns, marks = ", ".join(_ACTIVITY_COLUMNS), ", ".join(mark for _ in _ACTIVITY_COLUMNS)
        sql = (
            f"INSERT INTO {table.name} ({columns}) VALUES ({marks}) "  # noqa: S608 - fixed names
            f"ON CONFLICT ({event_identity_sql(dialect.name)}) DO NOTHING"
        )
        # Both drivers sum the rows of an executemany (checked in tests: rows_stored).
        stored = session.connection().exec_driver_sql(sql, rows).rowcount
    if latest:
        users = cast(Table, UserRow.__table__)
        session.execute(
            update(users)
            .where(users.c.id == bindparam("uid"))
            .where(
                (users.c.last_activity_at.is_(None)) | (users.c.last_activity_at < bindparam("t"))
            )
            .values(last_activity_at=bindparam("t")),
            [{"uid": uid, "t": moment} for uid, moment in latest.items()],
        )
    return stored


def _queue_existing(session: Session, user_ids: list[int], now: datetime) -> None:
    if user_ids:
        session.execute(
            update(UserRow)
            .where(UserRow.id.in_(user_ids))
            .values(status="pending", pending_since=now)
        )


def _pending_event(session: Session, user_id: int) -> AuditEvent:
    return AuditEvent(
        "pending.queued",
        "new user would exceed the purchased licenses (or manual review is on)",
        user_id=user_id,
        identifiers=queries.identifiers_of(session, user_id),
    )


def _notify_pending(session: Session, config: Config, user_ids: list[int], now: datetime) -> None:
    lines = []
    for user_id in user_ids:
        names = ", ".join(i["value"] for i in queries.identifiers_of(session, user_id))
        lines.append(f"  user {user_id}: {names}")
    enqueue(
        session,
        topic="pending",
        subject=f"entrasync: {len(user_ids)} new user(s) waiting in the Pending Licenses queue",
        body=(
            "These users reported in and wait for a decision "
            "(entrasync pending approve|assign|merge|remove):\n" + "\n".join(lines) + "\n"
        ),
        recipients=config.notify.admins,
        now=now,
    )
