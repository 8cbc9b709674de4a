"""The account row: settings from the config file, and the compliance (grace) clock.

Writers reach these through their unit of work (`uow.account(...)`, and the tail every unit
of work runs on commit); readers call `license_status` / `settings_differ` with a session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from entrasync.config import AccountConfig, NotifyConfig
from entrasync.domain.audit import SYSTEM_ACTOR, AuditEvent
from entrasync.domain.licensing import (
    AccountTerms,
    Compliance,
    ComplianceState,
    evaluate_compliance,
)
from entrasync.store.outbox import enqueue
from entrasync.store.queries import pending_users, used_licenses
from entrasync.store.schema import AccountRow, AuditRow

if TYPE_CHECKING:
    from entrasync.store.uow import UnitOfWork

_SETTINGS = ("purchased_licenses", "plan", "pending_mode", "manual_review")
# What an account row starts with, before a writer applies `[account]` to it.
_NEW_ACCOUNT = AccountTerms(purchased=0, plan="paid", pending_mode=False, manual_review=False)


def account_row(session: Session) -> AccountRow:
    """The account row, created (for writers only) when the store has none yet."""
    row = session.get(AccountRow, 1)
    if row is None:
        row = AccountRow(
            id=1,
            purchased_licenses=_NEW_ACCOUNT.purchased,
            plan=_NEW_ACCOUNT.plan,
            pending_mode=_NEW_ACCOUNT.pending_mode,
        )
        row.manual_review = _NEW_ACCOUNT.manual_review
        session.add(row)
        session.flush()
    return row


def terms_of(row: AccountRow) -> AccountTerms:
    return AccountTerms(row.purchased_licenses, row.plan, row.pending_mode, row.manual_review)


def apply_settings(uow: UnitOfWork, cfg: AccountConfig) -> AccountRow:
    """Bring the account row in line with `[account]`; a change is audited once.

    Takes the audit lock first: two processes starting on a fresh store must not both insert
    the account row, nor both audit the same change."""
    uow.lock()
    row = account_row(uow.session)
    wanted = {name: getattr(cfg, name) for name in _SETTINGS}
    before = {name: getattr(row, name) for name in _SETTINGS}
    if wanted != before:
        for name, value in wanted.items():
            setattr(row, name, value)
        row.updated_at = uow.now
        changed = {
            k: {"before": before[k], "after": v} for k, v in wanted.items() if before[k] != v
        }
        event = AuditEvent(
            "account.settings_changed", "the [account] section changed", details=changed
        )
        uow.audit(event, actor=SYSTEM_ACTOR)
    return row


@dataclass(frozen=True)
class LicenseStatus:
    used: int
    purchased: int
    pending: int
    compliance: ComplianceState


def refresh_compliance(uow: UnitOfWork, notify: NotifyConfig | None = None) -> LicenseStatus:
    """Recompute usage and persist the grace clock. Starting or ending grace, and locking or
    unlocking, are audited; the admins are told when grace starts and when the account locks."""
    uow.lock()  # transitions are read and recorded by one writer at a time
    session, now = uow.session, uow.now
    row = account_row(session)
    used = used_licenses(session)
    terms = terms_of(row)
    state = evaluate_compliance(used, terms, row.grace_started_at, now)
    if state.grace_started_at != row.grace_started_at:
        event = _grace_event(row, state, used, terms)
        row.grace_started_at = state.grace_started_at
        uow.audit(event, actor=SYSTEM_ACTOR)
        if state.grace_started_at is not None and notify is not None:
            enqueue(
                session,
                topic="grace",
                subject=f"entrasync: license overage {used}/{terms.limit}, grace period started",
                body=(
                    f"{used} licenses are in use and {terms.limit} are purchased.\n"
                    f"The grace period ends {state.grace_ends:%Y-%m-%d %H:%M} UTC; after that "
                    "the account is locked. Buy licenses, or free some (untrack and purge "
                    "users, merge duplicates).\n"
                ),
                recipients=notify.admins,
                now=now,
            )
    _record_lock_transition(uow, state, used, terms, notify)
    return LicenseStatus(used, terms.limit, pending_users(session), state)


def _record_lock_transition(
    uow: UnitOfWork,
    state: ComplianceState,
    used: int,
    terms: AccountTerms,
    notify: NotifyConfig | None,
) -> None:
    """The lock has no column of its own: the audit log's latest lock record is the state."""
    last = uow.session.scalar(
        select(AuditRow.action)
        .where(AuditRow.action.in_(["account.locked", "account.unlocked"]))
        .order_by(AuditRow.seq.desc())
        .limit(1)
    )
    locked = state.state == Compliance.LOCKED
    if locked == (last == "account.locked"):
        return
    details = {"used": used, "purchased": terms.limit, "plan": terms.plan}
    if not locked:
        event = AuditEvent(
            "account.unlocked", "usage is back within the purchased count", details=details
        )
        uow.audit(event, actor=SYSTEM_ACTOR)
        return
    why = "free plan over its 3 licenses" if terms.plan == "free" else "the grace period ended"
    event = AuditEvent(
        "account.locked", f"{used} licenses used, {terms.limit} purchased: {why}", details=details
    )
    uow.audit(event, actor=SYSTEM_ACTOR)
    if notify is not None:
        enqueue(
            uow.session,
            topic="locked",
            subject=f"entrasync: account locked, {used}/{terms.limit} licenses used",
            body=(
                f"{used} licenses are in use and {terms.limit} are purchased ({why}).\n"
                "Data is still collected. Buy licenses, or free some (untrack and purge users, "
                "merge duplicates) to unlock.\n"
            ),
            recipients=notify.admins,
            now=uow.now,
        )


def _grace_event(
    row: AccountRow, state: ComplianceState, used: int, terms: AccountTerms
) -> AuditEvent:
    details = {"used": used, "purchased": terms.limit, "plan": terms.plan}
    if state.grace_started_at is None:
        return AuditEvent(
            "account.grace_reset", "usage is back within the purchased count", details=details
        )
    ends = state.grace_ends.isoformat() if state.grace_ends else None
    return AuditEvent(
        "account.grace_started",
        f"{used} licenses used, {terms.limit} purchased",
        details={**details, "grace_ends": ends},
    )


def license_status(session: Session, now: datetime) -> LicenseStatus:
    """What `status` and the daemon's metrics show, writing nothing (not even a missing
    account row): usage against the stored terms and the stored grace clock. A clock that ran
    out shows as locked; the next writer records the lock."""
    row = session.get(AccountRow, 1)
    terms = terms_of(row) if row is not None else _NEW_ACCOUNT
    grace_started_at = row.grace_started_at if row is not None else None
    used = used_licenses(session)
    state = evaluate_compliance(used, terms, grace_started_at, now)
    return LicenseStatus(used, terms.limit, pending_users(session), state)


def settings_differ(session: Session, cfg: AccountConfig) -> dict[str, dict[str, Any]]:
    """The `[account]` settings whose value in the file differs from the stored one, as
    {name: {"stored": …, "config": …}} ({} when they agree). Readers report this; the next
    writer applies the file (`apply_settings`)."""
    row = session.get(AccountRow, 1)
    stored = terms_of(row) if row is not None else _NEW_ACCOUNT
    values = {
        "purchased_licenses": stored.purchased,
        "plan": stored.plan,
        "pending_mode": stored.pending_mode,
        "manual_review": stored.manual_review,
    }
    return {
        name: {"stored": values[name], "config": getattr(cfg, name)}
        for name in _SETTINGS
        if values[name] != getattr(cfg, name)
    }
