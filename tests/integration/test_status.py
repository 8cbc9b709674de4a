"""`status --json` and the compliance clock (grace start, reset, lockout), with `now` driven
through the service functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from testkit import report, write_config

from entrasync.config import AccountConfig, Config, parse_config
from entrasync.domain.licensing import Compliance
from entrasync.domain.reports import parse_reports
from entrasync.services import users
from entrasync.services.ingest import ingest_reports
from entrasync.store import account
from entrasync.store.db import Store
from entrasync.store.schema import AuditRow, RunRow

T0 = datetime.now(UTC) - timedelta(days=60)


def _config(store_url: str, purchased: int, plan: str = "paid") -> Config:
    return parse_config(
        {"store": {"url": store_url}, "account": {"purchased_licenses": purchased, "plan": plan}}
    )


def _ingest(store: Store, config: Config, logons: list[str], now: datetime) -> None:
    lines = [report(logon, "PC") for logon in logons]
    ingest_reports(store, config, parse_reports(lines), now, source="test")


def _actions(es: Any, action: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = es("audit", "list", "--action", action, "--json").json()
    return result


def test_status_json_shape(es: Any, ingest: Any) -> None:
    ingest(report("C\\a", "PC"), report("C\\b", "PC"))
    status = es("status", "--json").json()
    assert status == {
        "licenses": {"used": 2, "purchased": 10, "pending": 0},
        "compliance": "ok",
        "grace_ends": None,
        "last_run": None,
        "suspect_groups": [],
        "settings_differ": {},
    }
    text = es("status").out
    assert "2/10" in text
    assert "compliance ok" in text
    assert "settings" not in text  # the file agrees with the store: nothing to say


def test_status_shows_the_last_run(es: Any, store: Store) -> None:
    started = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    with store.transaction() as session:
        for index, status in enumerate(["failed", "held"]):
            session.add(
                RunRow(
                    id=f"run-{index}",
                    kind="sync",
                    status=status,
                    started_at=started + timedelta(minutes=index),
                    finished_at=started + timedelta(minutes=index, seconds=30),
                    counts={"purged": 1},
                    held={},
                )
            )
    last_run = es("status", "--json").json()["last_run"]
    assert last_run["id"] == "run-1"
    assert last_run["status"] == "held"
    assert last_run["started_at"].startswith("2026-06-01T09:01:00")


def test_overage_starts_grace_once_and_status_shows_its_end(
    cli: Any, tmp_path: Path, store_url: str
) -> None:
    config = write_config(tmp_path / "one.toml", store_url, "[account]\npurchased_licenses = 1\n")
    reports = tmp_path / "r.jsonl"
    reports.write_text(report("C\\a", "PC") + "\n" + report("C\\b", "PC") + "\n", encoding="utf-8")
    assert cli("--config", str(config), "ingest", str(reports)).code == 0
    status = cli("--config", str(config), "status", "--json").json()
    assert status["licenses"]["used"] == 2
    assert status["licenses"]["purchased"] == 1
    assert status["compliance"] == "grace"
    ends = datetime.fromisoformat(status["grace_ends"])
    assert timedelta(days=29, hours=23) < ends - datetime.now(UTC) <= timedelta(days=30)
    cli("--config", str(config), "status")
    started = cli(
        "--config", str(config), "audit", "list", "--action", "account.grace_started", "--json"
    ).json()
    assert len(started) == 1
    assert started[0]["details"]["used"] == 2


def test_grace_then_locked_then_reset(
    store: Store, store_url: str, cli: Any, tmp_path: Path
) -> None:
    config = _config(store_url, purchased=1)
    path = write_config(tmp_path / "one.toml", store_url, "[account]\npurchased_licenses = 1\n")

    def es(*args: str) -> Any:
        return cli("--config", str(path), *args)

    _ingest(store, config, ["C\\a", "C\\b"], T0)
    with store.unit_of_work(T0 + timedelta(days=29)) as uow:
        state = uow.refresh_compliance(None).compliance
    assert state.state is Compliance.GRACE
    assert state.grace_started_at == T0
    assert state.grace_ends == T0 + timedelta(days=30)
    with store.unit_of_work(T0 + timedelta(days=30)) as uow:
        state = uow.refresh_compliance(None).compliance
    assert state.state is Compliance.LOCKED
    # The CLI (real clock, 60 days later) agrees: locked, grace ended at T0 + 30d.
    status = es("status", "--json").json()
    assert status["compliance"] == "locked"
    assert datetime.fromisoformat(status["grace_ends"]) == T0 + timedelta(days=30)
    # Data is still collected while locked.
    _ingest(store, config, ["C\\a"], T0 + timedelta(days=31))
    with store.reading() as session:
        assert account.license_status(session, T0 + timedelta(days=31)).used == 2
    # Back within: purging one user frees a license; the clock resets (audited).
    users.purge(store, config, "c\\b", actor="admin:t", now=T0 + timedelta(days=32), dry_run=False)
    assert es("status", "--json").json()["compliance"] == "ok"
    assert len(_actions(es, "account.grace_started")) == 1
    assert len(_actions(es, "account.grace_reset")) == 1
    # Locking and unlocking are recorded once each, however often status is asked.
    assert len(_actions(es, "account.locked")) == 1
    assert len(_actions(es, "account.unlocked")) == 1
    # Over again later: a fresh grace period from that moment.
    later = T0 + timedelta(days=40)
    _ingest(store, config, ["C\\c"], later)
    with store.reading() as session:
        again = account.license_status(session, later).compliance
    assert again.state is Compliance.GRACE
    assert again.grace_ends == later + timedelta(days=30)
    assert len(_actions(es, "account.grace_started")) == 2


def test_free_plan_locks_at_once_above_three(store: Store, store_url: str) -> None:
    config = _config(store_url, purchased=100, plan="free")
    _ingest(store, config, ["C\\a", "C\\b", "C\\c"], T0)
    with store.reading() as session:
        status = account.license_status(session, T0)
    assert (status.used, status.purchased, status.compliance.state) == (3, 3, Compliance.OK)
    _ingest(store, config, ["C\\d"], T0)
    with store.reading() as session:
        status = account.license_status(session, T0)
    assert status.compliance.state is Compliance.LOCKED
    assert status.compliance.grace_ends is None
    with store.unit_of_work(T0) as uow:
        uow.refresh_compliance(None)
        uow.refresh_compliance(None)
    with store.reading() as session:
        locked = session.scalars(
            select(AuditRow.reason).where(AuditRow.action == "account.locked")
        ).all()
    assert len(locked) == 1 and "free plan" in locked[0]


@pytest.mark.parametrize("purchased", [0, 5])
def test_settings_change_is_audited_once(store: Store, store_url: str, purchased: int) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for _ in range(2):
        with store.unit_of_work(now) as uow:
            uow.account(AccountConfig(purchased_licenses=purchased + 1))
    with store.reading() as session:
        from entrasync.store import audit

        records = [r for r in audit.iter_all(session) if r["action"] == "account.settings_changed"]
    assert len(records) == 1
    assert records[0]["details"]["purchased_licenses"]["after"] == purchased + 1
