"""Licensing rules: who consumes a license, compliance (grace and lockout), pending routing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

GRACE_PERIOD = timedelta(days=30)
FREE_PLAN_LICENSES = 3


class Compliance(StrEnum):
    OK = "ok"
    GRACE = "grace"
    LOCKED = "locked"


@dataclass(frozen=True)
class AccountTerms:
    purchased: int
    plan: str  # "paid" | "free"
    pending_mode: bool
    manual_review: bool

    @property
    def limit(self) -> int:
        """Licenses the account may use: a free plan always has three."""
        return FREE_PLAN_LICENSES if self.plan == "free" else self.purchased


@dataclass(frozen=True)
class ComplianceState:
    state: Compliance
    grace_started_at: datetime | None
    grace_ends: datetime | None


def evaluate_compliance(
    used: int, terms: AccountTerms, grace_started_at: datetime | None, now: datetime
) -> ComplianceState:
    """The account's state and the grace clock to persist.

    Within the limit the grace clock resets. Over it, a paid plan starts (or continues) a
    30-day grace period and is locked when it expires; a free plan has no grace period.
    """
    if used <= terms.limit:
        return ComplianceState(Compliance.OK, None, None)
    if terms.plan == "free":
        return ComplianceState(Compliance.LOCKED, None, None)
    started = grace_started_at or now
    ends = started + GRACE_PERIOD
    state = Compliance.GRACE if now < ends else Compliance.LOCKED
    return ComplianceState(state, started, ends)


def route_new_user(used: int, terms: AccountTerms) -> str:
    """Status for a new user who is about to consume a license: "active" or "pending".

    Only with pending mode on: manual review holds everyone new; otherwise only the user
    who would push usage over the purchased count waits in the queue.
    """
    if not terms.pending_mode:
        return "active"
    if terms.manual_review or used + 1 > terms.limit:
        return "pending"
    return "active"
