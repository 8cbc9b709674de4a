"""The outbox sender against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pending_support import Mailbox, SmtpServer, free_port, smtp_server, tls_files, tls_server
from sqlalchemy import select

from entrasync.config import NotifyConfig
from entrasync.errors import ConfigError
from entrasync.notify import backoff, flush_outbox
from entrasync.notify.smtp import CLAIM_LEASE, _claim
from entrasync.sim.certs import TlsFiles
from entrasync.store.db import Store
from entrasync.store.outbox import enqueue
from entrasync.store.schema import OutboxRow

__all__ = ["smtp_server", "tls_files"]  # fixtures used by name

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADMINS = ["it@contoso.com", "sec@contoso.com"]


def notify_for(port: int, **extra: object) -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "from": "entrasync@contoso.com",
            "admins": ADMINS,
            **extra,
        }
    )


def queue(store: Store, subject: str, recipients: list[str] = ADMINS, now: datetime = T0) -> int:
    with store.transaction() as session:
        row = enqueue(
            session,
            topic="test",
            subject=subject,
            body=f"body of {subject}\n",
            recipients=recipients,
            now=now,
        )
        assert row is not None
        session.flush()
        return row.id


def outbox(store: Store) -> dict[int, OutboxRow]:
    with store.reading() as session:
        return {row.id: row for row in session.scalars(select(OutboxRow))}


def test_sends_each_due_email_once_to_its_recipients(store: Store, smtp_server: SmtpServer) -> None:
    first, second = queue(store, "first"), queue(store, "second")
    result = flush_outbox(store, notify_for(smtp_server.port), T0)
    assert (result.sent, result.failed) == (2, 0)
    mails = smtp_server.mailbox.messages
    assert [m[2]["Subject"] for m in mails] == ["first", "second"]
    assert all(m[0] == "entrasync@contoso.com" and m[1] == ADMINS for m in mails)
    assert mails[0][2]["Message-ID"].startswith(f"<outbox-{first}-")
    assert "body of first" in mails[0][2].get_payload()
    rows = outbox(store)
    assert rows[first].sent_at == T0 and rows[second].sent_at == T0
    assert rows[first].attempts == 1 and rows[first].last_error is None
    # Sent rows are never sent again.
    assert flush_outbox(store, notify_for(smtp_server.port), T0 + timedelta(hours=2)).sent == 0
    assert len(mails) == 2


def test_server_down_then_up_retries_with_backoff(store: Store) -> None:
    mailbox = Mailbox()
    server = SmtpServer(free_port(), mailbox)
    notify = notify_for(server.port)
    row_id = queue(store, "waiting users")

    down = flush_outbox(store, notify, T0)
    assert (down.sent, down.failed) == (0, 1)
    row = outbox(store)[row_id]
    assert row.attempts == 1 and row.sent_at is None
    assert row.last_error is not None and "ConnectionRefused" in row.last_error
    assert row.next_attempt_at == T0 + backoff(1) == T0 + timedelta(seconds=30)

    down_again = flush_outbox(store, notify, T0 + timedelta(seconds=30))
    assert down_again.failed == 1
    assert outbox(store)[row_id].next_attempt_at == T0 + timedelta(seconds=90)  # 30 s + 60 s

    server.start()
    try:
        not_due = flush_outbox(store, notify, T0 + timedelta(seconds=60))
        assert (not_due.sent, not_due.failed) == (0, 0)  # still backing off
        assert mailbox.messages == []
        up = flush_outbox(store, notify, T0 + timedelta(seconds=90))
        assert up.sent == 1
    finally:
        server.stop()
    assert [m[2]["Subject"] for m in mailbox.messages] == ["waiting users"]
    final = outbox(store)[row_id]
    assert final.sent_at == T0 + timedelta(seconds=90) and final.attempts == 3


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(8) == timedelta(hours=1)
    assert backoff(500) == timedelta(hours=1)


def test_a_claimed_but_unsent_row_is_not_lost_and_not_sent_twice(
    store: Store, smtp_server: SmtpServer
) -> None:
    """A flusher that claimed a row and died before sending: nobody sends it during the
    lease (no duplicate with a live flusher), and it goes out once the lease expires."""
    row_id = queue(store, "crash window")
    claimed = _claim(store, T0, batch=10)
    assert [e.id for e in claimed] == [row_id]
    notify = notify_for(smtp_server.port)
    assert flush_outbox(store, notify, T0 + timedelta(minutes=1)).sent == 0
    assert smtp_server.mailbox.messages == []
    assert flush_outbox(store, notify, T0 + CLAIM_LEASE).sent == 1
    assert len(smtp_server.mailbox.messages) == 1


def test_a_refused_message_fails_alone(store: Store, smtp_server: SmtpServer) -> None:
    smtp_server.mailbox.refuse = {"gone@contoso.com"}
    bad = queue(store, "to nobody", recipients=["gone@contoso.com"])
    good = queue(store, "to admins")
    result = flush_outbox(store, notify_for(smtp_server.port), T0)
    assert (result.sent, result.failed) == (1, 1)
    rows = outbox(store)
    assert rows[good].sent_at == T0
    assert rows[bad].sent_at is None and rows[bad].attempts == 1
    last_error = rows[bad].last_error
    assert last_error is not None and "550" in last_error
    assert [m[2]["Subject"] for m in smtp_server.mailbox.messages] == ["to admins"]


def test_starttls_and_login(
    store: Store, tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_file))
    password_file = tmp_path / "smtp-password"
    password_file.write_text("s3cret-pw\n", encoding="utf-8")
    mailbox = Mailbox()
    server = tls_server(tls_files, mailbox, user="relay", password="s3cret-pw")
    server.start()
    try:
        queue(store, "over TLS")
        notify = notify_for(
            server.port, starttls=True, username="relay", password_file=str(password_file)
        )
        assert flush_outbox(store, notify, T0).sent == 1
    finally:
        server.stop()
    assert [m[2]["Subject"] for m in mailbox.messages] == ["over TLS"]


def test_login_failure_is_recorded_without_the_password(
    store: Store,
    tls_files: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_file))
    password_file = tmp_path / "smtp-password"
    password_file.write_text("wrong-pw-123\n", encoding="utf-8")
    server = tls_server(tls_files, Mailbox(), user="relay", password="right-pw")
    server.start()
    try:
        row_id = queue(store, "never")
        notify = notify_for(
            server.port, starttls=True, username="relay", password_file=str(password_file)
        )
        with caplog.at_level(logging.DEBUG):
            result = flush_outbox(store, notify, T0)
    finally:
        server.stop()
    assert result.failed == 1
    row = outbox(store)[row_id]
    assert row.last_error is not None and "SMTPAuthenticationError" in row.last_error
    assert "wrong-pw-123" not in row.last_error
    assert "wrong-pw-123" not in caplog.text


def test_login_without_starttls_is_refused(store: Store, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("pw", encoding="utf-8")
    queue(store, "x")
    notify = notify_for(free_port(), username="relay", password_file=str(password_file))
    with pytest.raises(ConfigError, match="starttls"):
        flush_outbox(store, notify, T0)
    assert outbox(store).popitem()[1].attempts == 0  # nothing was touched


def test_no_smtp_host_sends_nothing_and_keeps_the_rows(store: Store) -> None:
    row_id = queue(store, "kept")
    result = flush_outbox(store, NotifyConfig(admins=ADMINS), T0)
    assert result.skipped is not None and result.sent == 0
    row = outbox(store)[row_id]
    assert row.sent_at is None and row.attempts == 0
