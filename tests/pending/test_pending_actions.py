"""Admin actions on pending users: approve, assign, merge into an agent, remove; dry runs,
refusals, audit records, and the CLI wiring."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pending_support import account_toml, audit_actions, chain_ok, ingest, make_config
from sqlalchemy import func, select
from testkit import report, write_config

from entrasync.config import Config
from entrasync.errors import ActionRefused, NotFound
from entrasync.services import pending
from entrasync.store import queries
from entrasync.store.db import Store
from entrasync.store.schema import ActivityRow, AgentLogonRow, AgentRow, AuditRow, UserRow

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = "admin:alex"


@pytest.fixture
def full(store: Store, store_url: str) -> Config:
    """One purchased license, used by jdoe; a newcomer (jdoe under a new UPN, two logons)
    waits in the queue."""
    config = make_config(store_url, account_toml(1))
    ingest(
        store,
        config,
        T0,
        report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com", events=3),
    )
    summary = ingest(
        store,
        config,
        T0 + timedelta(hours=1),
        # later than jdoe's events on PC-1: other events, not copies (ingest_idempotent)
        report(
            "NEWCO\\john.doe",
            "PC-1",
            upn="john.doe@newco.com",
            events=2,
            start="2026-06-01T10:00:00Z",
        ),
        report("LAPTOP-9\\john", "LAPTOP-9", upn="john.doe@newco.com", events=1),
    )
    assert summary.pending == 1
    return config


def snapshot(store: Store) -> dict[str, Any]:
    """Everything an action could change, to prove a dry run or a refusal changed nothing."""
    with store.reading() as session:
        return {
            "users": sorted(
                (u.id, u.status, u.tracking, u.merged_into_id, u.untracked_by)
                for u in session.scalars(select(UserRow))
            ),
            "agents": sorted(session.execute(select(AgentRow.id, AgentRow.user_id))),
            "logons": sorted(session.execute(select(AgentLogonRow.logon, AgentLogonRow.agent_id))),
            "rows": sorted(
                session.execute(
                    select(ActivityRow.agent_id, func.count()).group_by(ActivityRow.agent_id)
                )
            ),
            "audit": session.scalar(select(func.count(AuditRow.seq))),
            "used": queries.used_licenses(session),
            "pending": queries.pending_users(session),
        }


def user_of(store: Store, ident: str) -> UserRow:
    with store.reading() as session:
        return queries.find_user(session, ident)


def test_list_shows_wait_and_data(store: Store, full: Config) -> None:
    (entry,) = pending.list_pending(store, T0 + timedelta(days=2, hours=1))
    assert entry.waiting_s == 2 * 86400
    assert entry.as_dict()["waiting"] == "2d 0h"
    assert entry.as_dict()["licenses_needed"] == 2
    assert (entry.agents, entry.agents_with_history, entry.activity_rows) == (2, 2, 3)
    assert entry.pending_since == T0 + timedelta(hours=1)
    assert entry.oldest_activity == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert {"kind": "upn", "value": "john.doe@newco.com"} in entry.identifiers


def test_approve_needs_a_license_for_each_agent_with_history(
    store: Store, full: Config, store_url: str
) -> None:
    before = snapshot(store)
    with pytest.raises(ActionRefused, match=r"no license is free \(1 of 1 .* needs 2\)"):
        pending.approve(store, full, "john.doe@newco.com", actor=ADMIN, now=T0)
    assert snapshot(store) == before
    # Two more licenses: the newcomer holds two agents with history, so takes both.
    roomy = make_config(store_url, account_toml(3))
    result = pending.approve(store, roomy, "john.doe@newco.com", actor=ADMIN, now=T0)
    assert result.applied and result.details["licenses_granted"] == 2
    assert result.details["licenses_used_after"] == 3
    after = snapshot(store)
    assert (after["used"], after["pending"]) == (3, 0)
    assert user_of(store, "john.doe@newco.com").pending_since is None
    assert ("pending.approved", ADMIN, result.user_id) in audit_actions(store)
    assert chain_ok(store)
    with pytest.raises(ActionRefused, match="not in the pending queue"):
        pending.approve(store, roomy, "john.doe@newco.com", actor=ADMIN, now=T0)


def test_assign_joins_an_existing_user_without_a_new_license(store: Store, full: Config) -> None:
    before = snapshot(store)
    dry = pending.assign(
        store, full, "john.doe@newco.com", "jdoe@contoso.com", actor=ADMIN, now=T0, dry_run=True
    )
    assert not dry.applied and dry.details["licenses_used_after"] == 1
    assert snapshot(store) == before

    result = pending.assign(
        store, full, "john.doe@newco.com", "jdoe@contoso.com", actor=ADMIN, now=T0
    )
    assert result.applied and result.details["licenses_used_after"] == 1
    after = snapshot(store)
    assert (after["used"], after["pending"]) == (1, 0)
    survivor = user_of(store, "john.doe@newco.com")
    assert survivor.id == user_of(store, "jdoe@contoso.com").id != result.user_id
    with store.reading() as session:
        agents = queries.agent_summaries(session, survivor.id)
    # merge.agent_merge = "all": one agent, all 6 rows, every logon.
    assert len(agents) == 1 and agents[0].activity_rows == 6
    assert set(agents[0].logons) == {"contoso\\jdoe", "newco\\john.doe", "laptop-9\\john"}
    assert ("pending.assigned", ADMIN, result.user_id) in audit_actions(store)

    # The newcomer's next report lands on the survivor: no new user, nobody queued.
    summary = ingest(
        store,
        full,
        T0 + timedelta(days=1),
        report("NEWCO\\john.doe", "PC-7", upn="john.doe@newco.com"),
    )
    assert (summary.users_created, summary.pending, summary.agents_created) == (0, 0, 0)
    assert snapshot(store)["used"] == 1
    assert chain_ok(store)


def test_assign_refusals_change_nothing(store: Store, full: Config, store_url: str) -> None:
    before = snapshot(store)
    with pytest.raises(ActionRefused, match="itself"):
        pending.assign(store, full, "john.doe@newco.com", "newco\\john.doe", actor=ADMIN, now=T0)
    with pytest.raises(NotFound):
        pending.assign(store, full, "john.doe@newco.com", "nobody@contoso.com", actor=ADMIN, now=T0)
    with pytest.raises(ActionRefused, match="not in the pending queue"):
        pending.assign(store, full, "jdoe@contoso.com", "john.doe@newco.com", actor=ADMIN, now=T0)
    # Keeping agents apart would add licenses the account does not have.
    apart = make_config(store_url, account_toml(1) + '[merge]\nagent_merge = "none"\n')
    with pytest.raises(ActionRefused, match="would use 3 licenses, 1 are purchased"):
        pending.assign(store, apart, "john.doe@newco.com", "jdoe@contoso.com", actor=ADMIN, now=T0)
    assert snapshot(store) == before


def test_merge_folds_every_agent_into_an_existing_agent(store: Store, full: Config) -> None:
    jdoe = user_of(store, "jdoe@contoso.com")
    with store.reading() as session:
        (target_agent,) = queries.agent_summaries(session, jdoe.id)
    before = snapshot(store)
    dry = pending.merge(
        store, full, "john.doe@newco.com", target_agent.id, actor=ADMIN, now=T0, dry_run=True
    )
    assert not dry.applied and dry.details["rows_moved"] == 3
    assert snapshot(store) == before

    result = pending.merge(store, full, "LAPTOP-9\\john", target_agent.id, actor=ADMIN, now=T0)
    assert result.details["rows_moved"] == 3 and len(result.details["agents_folded"]) == 2
    after = snapshot(store)
    assert (after["used"], after["pending"]) == (1, 0)
    assert after["agents"] == [(target_agent.id, jdoe.id)]
    assert dict(after["logons"]) == {
        "contoso\\jdoe": target_agent.id,
        "newco\\john.doe": target_agent.id,
        "laptop-9\\john": target_agent.id,
    }
    assert after["rows"] == [(target_agent.id, 6)]
    assert user_of(store, "john.doe@newco.com").id == jdoe.id
    assert ("pending.merged", ADMIN, result.user_id) in audit_actions(store)

    summary = ingest(
        store,
        full,
        T0 + timedelta(days=1),
        report(
            "LAPTOP-9\\john", "LAPTOP-9", upn="john.doe@newco.com", start="2026-06-02T09:00:00Z"
        ),
    )
    assert (summary.users_created, summary.agents_created, summary.pending) == (0, 0, 0)
    assert snapshot(store)["rows"] == [(target_agent.id, 7)]
    assert chain_ok(store)


def test_merge_refusals(store: Store, full: Config) -> None:
    newcomer = user_of(store, "john.doe@newco.com")
    with store.reading() as session:
        own = queries.agent_summaries(session, newcomer.id)[0].id
    before = snapshot(store)
    with pytest.raises(NotFound, match="no agent with id 999"):
        pending.merge(store, full, "john.doe@newco.com", 999, actor=ADMIN, now=T0)
    with pytest.raises(ActionRefused, match="belongs to the pending user"):
        pending.merge(store, full, "john.doe@newco.com", own, actor=ADMIN, now=T0)
    assert snapshot(store) == before


def test_remove_purges_and_keeps_them_out(store: Store, full: Config) -> None:
    before = snapshot(store)
    dry = pending.remove(store, full, "john.doe@newco.com", actor=ADMIN, now=T0, dry_run=True)
    assert dry.details["rows_purged"] == 3 and dry.details["agents_removed"] == 2
    assert snapshot(store) == before

    result = pending.remove(store, full, "john.doe@newco.com", actor=ADMIN, now=T0)
    assert result.applied
    gone = user_of(store, "john.doe@newco.com")
    assert (gone.tracking, gone.untracked_by, gone.status) == ("untracked", "admin", "active")
    after = snapshot(store)
    assert (after["used"], after["pending"]) == (1, 0)
    assert len(after["agents"]) == 1  # only jdoe's
    summary = ingest(
        store,
        full,
        T0 + timedelta(days=1),
        report("NEWCO\\john.doe", "PC-1", upn="john.doe@newco.com"),
        report("OTHER\\jd", "PC-8", upn="john.doe@newco.com"),
    )
    assert (summary.reports_dropped, summary.users_created, summary.pending) == (2, 0, 0)
    assert ("pending.removed", ADMIN, result.user_id) in audit_actions(store)
    assert chain_ok(store)


def test_cli_assign_merge_and_help(
    cli: Any, store: Store, full: Config, store_url: str, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "e.toml", store_url, account_toml(1))
    unconfirmed = cli(
        "--config", str(cfg), "pending", "assign", "john.doe@newco.com", "--to", "jdoe@contoso.com"
    )
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.err
    dry = cli(
        "--config",
        str(cfg),
        "pending",
        "merge",
        "john.doe@newco.com",
        "--into-agent",
        "1",
        "--dry-run",
    )
    assert dry.code == 0 and dry.out.startswith("would apply pending.merged")
    assert "rows_moved=3" in dry.out and "licenses used 1 -> 1 of 1" in dry.out
    missing = cli(
        "--config",
        str(cfg),
        "pending",
        "merge",
        "john.doe@newco.com",
        "--into-agent",
        "999",
        "--yes",
    )
    assert missing.code == 1 and "no agent with id 999" in missing.err
    done = cli(
        "--config",
        str(cfg),
        "pending",
        "assign",
        "john.doe@newco.com",
        "--to",
        "jdoe@contoso.com",
        "--yes",
        "--actor",
        "alex",
        "--json",
    )
    assert done.code == 0, done.err
    assert done.json()["action"] == "pending.assigned" and done.json()["audit_seq"] > 0
    assert cli("--config", str(cfg), "pending", "list", "--json").json() == []
    for command in ("list", "approve", "assign", "merge", "remove", "expire"):
        helped = cli("pending", command, "--help")
        assert helped.code == 0 and "Example: entrasync pending " + command in helped.out


def test_concurrent_approvals_cannot_share_the_last_license(store: Store, store_url: str) -> None:
    """Two admins approve two waiting users at once with one free license: exactly one wins
    (each action holds the audit lock from its license check to its commit)."""
    config = make_config(store_url, account_toml(1, manual_review=True))
    ingest(
        store,
        config,
        T0,
        report("CONTOSO\\a", "PC-1", upn="a@contoso.com"),
        report("CONTOSO\\b", "PC-2", upn="b@contoso.com"),
    )
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approve(ident: str) -> None:
        other = Store(store_url)
        try:
            barrier.wait()
            pending.approve(other, config, ident, actor=ADMIN, now=T0)
            outcomes[ident] = "approved"
        except ActionRefused:
            outcomes[ident] = "refused"
        finally:
            other.engine.dispose()

    threads = [
        threading.Thread(target=approve, args=(i,)) for i in ("a@contoso.com", "b@contoso.com")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["approved", "refused"]
    final = snapshot(store)
    assert (final["used"], final["pending"]) == (1, 1)
    assert chain_ok(store)


def test_first_data_after_an_empty_report_is_routed(store: Store, store_url: str) -> None:
    config = make_config(store_url, account_toml(1))
    ingest(
        store,
        config,
        T0,
        report("CONTOSO\\a", "PC-1", upn="a@contoso.com"),
        report("CONTOSO\\b", "PC-2", upn="b@contoso.com", events=0),
    )
    ingest(store, config, T0, report("CONTOSO\\b", "PC-2", upn="b@contoso.com"))
    final = snapshot(store)
    assert (final["used"], final["pending"]) == (1, 1)
