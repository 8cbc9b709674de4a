"""The retention step: pending users' data older than account.pending_retention goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pending_support import account_toml, audit_actions, chain_ok, ingest, make_config
from sqlalchemy import select
from testkit import report, write_config

from entrasync.services.pending import expire_pending_data
from entrasync.store import queries
from entrasync.store.db import Store
from entrasync.store.schema import ActivityRow, AgentRow, AuditRow

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _starts(store: Store, ident: str) -> list[datetime]:
    with store.reading() as session:
        user = queries.find_user(session, ident)
        return sorted(
            session.scalars(
                select(ActivityRow.start)
                .join(AgentRow, AgentRow.id == ActivityRow.agent_id)
                .where(AgentRow.user_id == user.id)
            )
        )


def _seed(store: Store, store_url: str, now: datetime) -> None:
    """ann is licensed, pat waits; both hold rows 40, 30 (exactly at the cutoff) and 5 days
    old; pat's rows come from two agents."""
    config = make_config(store_url, account_toml(1))
    ages = (40, 30, 5)
    lines = [
        report("CONTOSO\\ann", "PC-1", upn="ann@contoso.com", start=_iso(now - timedelta(days=d)))
        for d in ages
    ]
    lines += [
        report("CONTOSO\\pat", "PC-2", upn="pat@contoso.com", start=_iso(now - timedelta(days=d)))
        for d in ages
    ]
    lines.append(
        report("WS-3\\pat", "WS-3", upn="pat@contoso.com", start=_iso(now - timedelta(days=50)))
    )
    ingest(store, config, now - timedelta(days=1), *lines)


def test_expires_only_old_rows_of_pending_users(store: Store, store_url: str) -> None:
    _seed(store, store_url, T0)
    ann_before = _starts(store, "ann@contoso.com")
    assert len(ann_before) == 3 and len(_starts(store, "pat@contoso.com")) == 4

    dry = expire_pending_data(store, T0, timedelta(days=30), dry_run=True)
    assert (dry.applied, dry.rows_deleted) == (False, 2)
    assert len(_starts(store, "pat@contoso.com")) == 4
    audits_before = len(audit_actions(store))

    result = expire_pending_data(store, T0, timedelta(days=30))
    assert result.applied and result.rows_deleted == 2
    assert result.cutoff == T0 - timedelta(days=30)
    pat = _starts(store, "pat@contoso.com")
    assert pat == [T0 - timedelta(days=30), T0 - timedelta(days=5)]  # the cutoff row stays
    assert _starts(store, "ann@contoso.com") == ann_before  # licensed: untouched
    with store.reading() as session:
        pat_id = queries.find_user(session, "pat@contoso.com").id
        (record,) = session.scalars(select(AuditRow).where(AuditRow.action == "pending.expired"))
    assert result.users == {pat_id: 2}
    assert (record.user_id, record.actor, record.details["rows_deleted"]) == (
        pat_id,
        "entrasync",
        2,
    )
    assert len(audit_actions(store)) == audits_before + 1
    assert chain_ok(store)

    # Rolling: nothing more is due now, and a run with nothing to do writes nothing …
    again = expire_pending_data(store, T0, timedelta(days=30))
    assert again.rows_deleted == 0 and again.audit_seqs == []
    assert len(audit_actions(store)) == audits_before + 1
    # … but a day later yesterday's cutoff row has aged out.
    later = expire_pending_data(store, T0 + timedelta(days=1), timedelta(days=30))
    assert later.rows_deleted == 1
    assert _starts(store, "pat@contoso.com") == [T0 - timedelta(days=5)]
    # The pending user stays in the queue, with what is left.
    with store.reading() as session:
        assert queries.pending_users(session) == 1


def test_cli_expire_uses_the_configured_retention(
    cli: Any, store: Store, store_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    _seed(store, store_url, now)
    cfg = write_config(
        tmp_path / "e.toml", store_url, account_toml(1) + 'pending_retention = "10d"\n'
    )
    dry = cli("--config", str(cfg), "pending", "expire", "--dry-run", "--json")
    assert dry.code == 0 and dry.json()["rows_deleted"] == 3 and not dry.json()["applied"]
    done = cli("--config", str(cfg), "pending", "expire", "--actor", "alex")
    assert done.code == 0 and done.out.startswith("deleted 3 activity rows of 1 pending users")
    assert len(_starts(store, "pat@contoso.com")) == 1
    assert len(_starts(store, "ann@contoso.com")) == 3
    assert ("pending.expired", "admin:alex") in [(a, b) for a, b, _ in audit_actions(store)]
