"""The issue's "Done when", tried as a new user would: through the CLI, a real store on both
backends and a real SMTP server on loopback for the admins' mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pending_support import SmtpServer, account_toml, notify_toml, smtp_server, write_reports
from testkit import report, write_config

from entrasync.config import load_config
from entrasync.notify import flush_outbox
from entrasync.store.db import Store

__all__ = ["smtp_server"]

ADMINS = ["it@contoso.com", "sec@contoso.com"]


def _status(cli: Any, cfg: Path) -> dict[str, Any]:
    result = cli("--config", str(cfg), "status", "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def _ingest(cli: Any, cfg: Path, path: Path) -> dict[str, Any]:
    result = cli("--config", str(cfg), "ingest", str(path), "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def test_pending_queue_end_to_end(
    cli: Any, store_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    cfg = tmp_path / "entrasync.toml"
    notify = notify_toml(smtp_server.port, ADMINS)
    write_config(cfg, store_url, account_toml(2) + notify)
    admin = ("--actor", "alex")

    # Three people report in with 2 purchased licenses: two licensed, one waits.
    batch1 = write_reports(
        tmp_path / "b1.jsonl",
        report("CONTOSO\\alice", "PC-1", upn="alice@contoso.com", events=3),
        report("CONTOSO\\bob", "PC-2", upn="bob@contoso.com", events=2),
        report("CONTOSO\\carol", "PC-3", upn="carol@contoso.com", events=4),
    )
    summary = _ingest(cli, cfg, batch1)
    assert summary["users_created"] == 3 and summary["pending"] == 1
    status = _status(cli, cfg)
    assert status["licenses"] == {"used": 2, "purchased": 2, "pending": 1}
    assert status["compliance"] == "ok"

    listing = cli("--config", str(cfg), "pending", "list", "--json")
    assert listing.code == 0, listing.err
    (carol,) = listing.json()
    assert {"kind": "upn", "value": "carol@contoso.com"} in carol["identifiers"]
    assert carol["activity_rows"] == 4 and carol["agents"] == 1
    assert carol["agents_with_history"] == 1 and carol["waiting_s"] >= 0
    table = cli("--config", str(cfg), "pending", "list").out
    assert "waiting" in table and "carol@" in table

    # Approving fails while no license is free …
    refused = cli("--config", str(cfg), "pending", "approve", "carol@contoso.com", *admin)
    assert refused.code == 1
    assert "no license is free" in refused.err and "2 of 2" in refused.err
    assert _status(cli, cfg)["licenses"]["pending"] == 1
    # … a dry run of the purge that frees one changes nothing …
    dry = cli("--config", str(cfg), "users", "purge", "bob@contoso.com", "--dry-run")
    assert dry.code == 0 and _status(cli, cfg)["licenses"]["used"] == 2
    # … then a license is freed and approval succeeds.
    purged = cli("--config", str(cfg), "users", "purge", "bob@contoso.com", "--yes", *admin)
    assert purged.code == 0, purged.err
    assert _status(cli, cfg)["licenses"]["used"] == 1
    dry_approve = cli(
        "--config", str(cfg), "pending", "approve", "carol@contoso.com", "--dry-run", "--json"
    )
    assert dry_approve.code == 0 and dry_approve.json()["applied"] is False
    assert _status(cli, cfg)["licenses"] == {"used": 1, "purchased": 2, "pending": 1}
    approved = cli(
        "--config", str(cfg), "pending", "approve", "carol@contoso.com", "--json", *admin
    )
    assert approved.code == 0, approved.err
    assert approved.json()["applied"] is True
    status = _status(cli, cfg)
    assert status["licenses"] == {"used": 2, "purchased": 2, "pending": 0}
    assert status["compliance"] == "ok"

    # Manual review holds newcomers even with a free license: one email for the batch.
    write_config(cfg, store_url, account_toml(3, manual_review=True) + notify)
    batch2 = write_reports(
        tmp_path / "b2.jsonl",
        report("CONTOSO\\dave", "PC-4", upn="dave@contoso.com"),
        report("CONTOSO\\erin", "PC-5", upn="erin@contoso.com"),
        report("CONTOSO\\alice", "PC-1", upn="alice@contoso.com"),  # existing: unaffected
    )
    summary = _ingest(cli, cfg, batch2)
    assert summary["pending"] == 2 and summary["users_created"] == 2
    assert _status(cli, cfg)["licenses"] == {"used": 2, "purchased": 3, "pending": 2}

    # Removing dave keeps him out: his next report is dropped.
    unconfirmed = cli("--config", str(cfg), "pending", "remove", "dave@contoso.com")
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.err  # no terminal to ask on
    removed = cli("--config", str(cfg), "pending", "remove", "dave@contoso.com", "--yes", *admin)
    assert removed.code == 0, removed.err
    approved = cli("--config", str(cfg), "pending", "approve", "erin@contoso.com", *admin)
    assert approved.code == 0, approved.err
    batch3 = write_reports(
        tmp_path / "b3.jsonl",
        report("CONTOSO\\dave", "PC-4", upn="dave@contoso.com", events=5),
        report("CONTOSO\\dave2", "PC-9", upn="dave@contoso.com", events=1),  # new logon too
    )
    summary = _ingest(cli, cfg, batch3)
    assert summary["reports_dropped"] == 2 and summary["users_created"] == 0
    assert summary["pending"] == 0 and summary["rows_stored"] == 0
    dave = cli("--config", str(cfg), "users", "show", "dave@contoso.com", "--json").json()
    assert dave["tracking"] == "untracked" and dave["status"] == "active"
    assert dave["agents"] == [] and dave["licenses"] == 0
    assert _status(cli, cfg)["licenses"] == {"used": 3, "purchased": 3, "pending": 0}

    # The admins' mailbox: exactly one email per batch that queued someone.
    store = Store(store_url)
    try:
        sent = flush_outbox(store, load_config(cfg).notify, datetime.now(UTC))
    finally:
        store.engine.dispose()
    assert sent.sent == 2
    mails = smtp_server.mailbox.messages
    assert len(mails) == 2
    assert all(rcpts == ADMINS for _, rcpts, _ in mails)
    first, second = (m[2].get_payload() for m in mails)
    assert "carol@contoso.com" in first and "dave@contoso.com" not in first
    assert "dave@contoso.com" in second and "erin@contoso.com" in second
    assert "1 new user" in mails[0][2]["Subject"] and "2 new user" in mails[1][2]["Subject"]

    # Everything audited, by the named admin, and the chain verifies.
    records = cli("--config", str(cfg), "audit", "list", "--action", "pending.*", "--json").json()
    actions = [(r["action"], r["actor"]) for r in records]
    assert actions.count(("pending.queued", "entrasync")) == 3
    assert ("pending.approved", "admin:alex") in actions
    assert actions.count(("pending.approved", "admin:alex")) == 2
    assert ("pending.removed", "admin:alex") in actions
    purges = cli("--config", str(cfg), "audit", "list", "--action", "user.purged", "--json")
    assert [r["actor"] for r in purges.json()] == ["admin:alex"]
    verify = cli("--config", str(cfg), "audit", "verify", "--json")
    assert verify.code == 0 and verify.json()["ok"] is True


def test_legacy_account_without_pending_mode(cli: Any, store_url: str, tmp_path: Path) -> None:
    """Pending mode off: everyone is licensed; over the limit a paid plan goes into grace and
    a free plan (3 licenses, no grace) is locked."""
    cfg = tmp_path / "entrasync.toml"
    write_config(cfg, store_url, account_toml(2, pending_mode=False))
    people = [report(f"CONTOSO\\u{i}", f"PC-{i}", upn=f"u{i}@contoso.com") for i in range(4)]
    summary = _ingest(cli, cfg, write_reports(tmp_path / "a.jsonl", *people[:3]))
    assert summary["pending"] == 0
    status = _status(cli, cfg)
    assert status["licenses"] == {"used": 3, "purchased": 2, "pending": 0}
    assert status["compliance"] == "grace"
    ends = datetime.fromisoformat(status["grace_ends"])
    assert timedelta(days=29) < ends - datetime.now(UTC) <= timedelta(days=30)
    assert cli("--config", str(cfg), "pending", "list", "--json").json() == []

    write_config(cfg, store_url, account_toml(2, plan="free", pending_mode=False))
    status = _status(cli, cfg)  # a reader: the stored paid plan still holds until a writer
    assert status["compliance"] == "grace"
    assert status["settings_differ"] == {"plan": {"stored": "paid", "config": "free"}}
    _ingest(cli, cfg, write_reports(tmp_path / "b.jsonl", people[3]))
    status = _status(cli, cfg)
    assert status["licenses"] == {"used": 4, "purchased": 3, "pending": 0}
    assert status["compliance"] == "locked"
    records = cli("--config", str(cfg), "audit", "list", "--json").json()
    assert "account.grace_started" in [r["action"] for r in records]
    assert cli("--config", str(cfg), "audit", "verify").code == 0
