"""`entrasync ingest FILE`: agent reports into the store, all or nothing, each event once.

All or nothing: the file is parsed completely before anything is written, and written in one
transaction. Each event once: see store/ingest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.domain.ingestion import IngestPlan, plan_ingest
from entrasync.domain.reports import AgentReport, ReportError, parse_reports
from entrasync.errors import InputError
from entrasync.store import ingest as ingest_rows
from entrasync.store import queries
from entrasync.store.account import terms_of
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.uow import UnitOfWork


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


def ingest_reports(
    store: Store, config: Config, reports: Sequence[AgentReport], now: datetime, source: str
) -> IngestSummary:
    with store.unit_of_work(now, account=config.account, notify=config.notify) as uow:
        session = uow.session
        # Pending routing reads the license count: hold the audit lock from here to the commit
        # so a concurrent `pending approve` cannot take the same free license (PostgreSQL).
        uow.lock()
        account = uow.account(config.account)
        plan = plan_ingest(list(reports), ingest_rows.lookups(session, reports), terms_of(account))
        ids, stored = ingest_rows.write(session, plan, now)
        pending = [ids[user.ref] for user in plan.pending_users] + plan.queued
        ingest_rows.queue_existing(session, plan.queued, now)
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
        records = [_pending_event(uow, user_id) for user_id in pending]
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
            _notify_pending(uow, config, pending)
    return summary


def _retired_events(plan: IngestPlan, ids: dict[int, int]) -> list[AuditEvent]:
    return [
        AuditEvent(
            "identifier.retired",
            ingest_rows.retired_reason(kind, value, ids.get(new, new)),
            user_id=old,
            identifiers=[{"kind": kind, "value": value}],
            details={"kind": kind, "value": value, "new_owner_user_id": ids.get(new, new)},
        )
        for old, (kind, value), new in plan.retired
    ]


def _pending_event(uow: UnitOfWork, user_id: int) -> AuditEvent:
    return AuditEvent(
        "pending.queued",
        "new user would exceed the purchased licenses (or manual review is on)",
        user_id=user_id,
        identifiers=queries.identifiers_of(uow.session, user_id),
    )


def _notify_pending(uow: UnitOfWork, config: Config, user_ids: list[int]) -> None:
    lines = []
    for user_id in user_ids:
        names = ", ".join(i["value"] for i in queries.identifiers_of(uow.session, user_id))
        lines.append(f"  user {user_id}: {names}")
    enqueue(
        uow.session,
        topic="pending",
        subject=f"entrasync: {len(user_ids)} new user(s) waiting in the Pending Licenses queue",
        body=(
            "These users reported in and wait for a decision "
            "(entrasync pending approve|assign|merge|remove):\n" + "\n".join(lines) + "\n"
        ),
        recipients=config.notify.admins,
        now=uow.now,
    )
