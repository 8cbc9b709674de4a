"""Sending the outbox over SMTP.

Emails are written to the ``outbox`` table in the same transaction as their cause (a pending
user queued, a grace period started, …), so a crash before the commit loses the cause and the
email together, and a crash after it loses neither. ``flush_outbox`` then delivers them:

1. **Claim** the due rows in one short transaction: ``next_attempt_at`` is pushed a lease
   (5 minutes) into the future with a compare-and-set ``UPDATE … RETURNING``, so two flushers
   (a second daemon, an admin's ``entrasync`` run) never send the same row at once, and a
   flusher that dies mid-way releases its rows when the lease runs out.
2. **Send** each email on one SMTP connection (STARTTLS and login when configured).
3. **Mark it sent** in its own transaction right after the server accepted it. A flush stops
   sending after half the lease and releases what it has not tried, so a slow server never
   lets a row's lease run out while it is still being sent.

Delivery is **at least once**. The only window for a duplicate is a crash (or lost store
connection) between the server's "250 accepted" and the commit of step 3; the row is then
sent again when its lease expires. Every send of a row carries the same ``Message-ID``
(derived from the row), so a duplicate is recognisable and mail systems that deduplicate drop
it. We chose this over at-most-once (mark first, then send) because an admin missing a
"users are waiting for a license" email is worse than seeing one twice.

Failures increment ``attempts``, record ``last_error`` (the exception class and the server's
reply: never the password, which is also scrubbed defensively) and back off exponentially:
30 s, 1 min, 2 min, … capped at one hour. Rows are retried until they are sent.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from entrasync.config import NotifyConfig, parse_config
from entrasync.errors import ConfigError
from entrasync.store import outbox
from entrasync.store.db import Store
from entrasync.store.outbox import Email

log = logging.getLogger("entrasync.notify")

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
CLAIM_LEASE = timedelta(minutes=5)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class FlushResult:
    """What one flush did: emails accepted by the server, failed attempts, and rows that were
    claimed but not tried because the connection broke (they are due again at once)."""

    sent: int = 0
    failed: int = 0
    released: int = 0
    skipped: str | None = None  # why nothing was attempted (e.g. no SMTP host configured)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones (1 -> 30 s, doubling, capped)."""
    if attempts < 1:
        return timedelta(0)
    exponent = min(attempts - 1, 16)  # 30 s * 2**16 is far past the cap already
    delay: timedelta = BACKOFF_BASE * (2**exponent)
    return min(delay, BACKOFF_CAP)


def read_password(notify: NotifyConfig) -> str | None:
    """The SMTP password from `notify.password_file` (trailing newline stripped)."""
    if notify.password_file is None:
        return None
    try:
        return notify.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"notify.password_file: {notify.password_file} cannot be read ({exc.strerror})"
        ) from None


def check_notify_config(notify: NotifyConfig) -> None:
    """Refuse settings that would leak the password (login needs STARTTLS). The rule is the
    config file's own, checked when a file is loaded; a section built on its own is checked
    by the same rule here."""
    parse_config({"notify": notify}, source="[notify]")


def flush_outbox(
    store: Store,
    notify: NotifyConfig,
    now: datetime,
    *,
    batch: int = 100,
    timeout: float = 30.0,
) -> FlushResult:
    """Send the emails that are due; returns the counts. Never raises for SMTP trouble (that
    is recorded on the rows and retried); raises ConfigError for a bad `[notify]` section and
    StoreUnavailable when the store cannot be reached."""
    if not notify.smtp_host:
        return FlushResult(skipped="notify.smtp_host is not set")
    check_notify_config(notify)
    password = read_password(notify)
    emails = _claim(store, now, batch)
    if not emails:
        return FlushResult()
    try:
        smtp = _connect(notify, password, timeout)
    except (OSError, smtplib.SMTPException) as exc:
        reason = _describe(exc, password)
        log.warning(
            "outbox: cannot reach SMTP %s:%s: %s", notify.smtp_host, notify.smtp_port, reason
        )
        _record_failures(store, emails, now, reason)
        return FlushResult(failed=len(emails))
    try:
        return _send_all(store, smtp, emails, _Sending(notify, now, password))
    finally:
        _quit(smtp)


@dataclass(frozen=True)
class _Sending:
    notify: NotifyConfig
    now: datetime
    password: str | None


def _send_all(
    store: Store, smtp: smtplib.SMTP, emails: Sequence[Email], sending: _Sending
) -> FlushResult:
    notify, now = sending.notify, sending.now
    sent = failed = 0
    deadline = time.monotonic() + CLAIM_LEASE.total_seconds() / 2
    for index, email in enumerate(emails):
        if time.monotonic() > deadline:
            # Stay well inside the lease so no other flusher can claim a row we still send.
            _release(store, emails[index:], now)
            return FlushResult(sent, failed, len(emails) - index)
        try:
            refused = smtp.send_message(
                _message(email, notify), notify.from_address, email.recipients
            )
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as exc:
            # The server refused this message (sender, every recipient, content): the
            # session is still usable.
            failed += 1
            _record_failures(store, [email], now, _describe(exc, sending.password))
            _reset(smtp)
            continue
        except OSError as exc:
            # SMTPServerDisconnected, timeouts, resets (all OSError): the connection is
            # gone. This one failed; the rest were never tried and are released.
            _record_failures(store, [email], now, _describe(exc, sending.password))
            _release(store, emails[index + 1 :], now)
            return FlushResult(sent, failed + 1, len(emails) - index - 1)
        note = f"refused recipients: {sorted(refused)}" if refused else None
        with store.unit_of_work(now) as uow:
            outbox.mark_sent(uow.session, email.id, now, note)
        sent += 1
    return FlushResult(sent, failed)


# --- store side: each step its own short transaction ----------------------------------------


def _claim(store: Store, now: datetime, batch: int) -> list[Email]:
    with store.unit_of_work(now) as uow:
        return outbox.claim(uow.session, now, now + CLAIM_LEASE, batch)


def _record_failures(store: Store, emails: Sequence[Email], now: datetime, reason: str) -> None:
    with store.unit_of_work(now) as uow:
        for email in emails:
            outbox.record_failure(uow.session, email, reason, now + backoff(email.attempts + 1))


def _release(store: Store, emails: Sequence[Email], now: datetime) -> None:
    if not emails:
        return
    with store.unit_of_work(now) as uow:
        outbox.release(uow.session, [e.id for e in emails], now)


# --- SMTP side -----------------------------------------------------------------------------


def _connect(notify: NotifyConfig, password: str | None, timeout: float) -> smtplib.SMTP:
    smtp = smtplib.SMTP(notify.smtp_host, notify.smtp_port, timeout=timeout)
    try:
        smtp.ehlo()
        if notify.starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if notify.username:
            smtp.login(notify.username, password or "")
    except BaseException:
        _quit(smtp)
        raise
    return smtp


def _message(email: Email, notify: NotifyConfig) -> EmailMessage:
    message = EmailMessage()
    message["From"] = notify.from_address
    message["To"] = ", ".join(email.recipients)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.created_at)
    domain = notify.from_address.rpartition("@")[2] or "entrasync.invalid"
    stamp = int(email.created_at.timestamp())
    message["Message-ID"] = f"<outbox-{email.id}-{stamp}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.body)
    return message


def _describe(exc: BaseException, password: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if password:
        text = text.replace(password, "***")
    return text[:MAX_ERROR_CHARS]


def _reset(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        smtp.rset()


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
