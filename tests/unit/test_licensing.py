"""Compliance (grace period, lockout) and pending routing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from entrasync.domain.licensing import (
    FREE_PLAN_LICENSES,
    GRACE_PERIOD,
    AccountTerms,
    Compliance,
    evaluate_compliance,
    route_new_user,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PAID = AccountTerms(purchased=10, plan="paid", pending_mode=False, manual_review=False)
FREE = AccountTerms(purchased=50, plan="free", pending_mode=False, manual_review=False)


def test_within_the_purchased_count_is_ok() -> None:
    state = evaluate_compliance(10, PAID, None, NOW)
    assert state.state is Compliance.OK
    assert state.grace_started_at is None
    assert state.grace_ends is None


def test_overage_starts_a_30_day_grace_period_now() -> None:
    state = evaluate_compliance(11, PAID, None, NOW)
    assert state.state is Compliance.GRACE
    assert state.grace_started_at == NOW
    assert state.grace_ends == NOW + timedelta(days=30)
    assert timedelta(days=30) == GRACE_PERIOD


def test_grace_continues_from_when_it_started() -> None:
    started = NOW - timedelta(days=29, hours=23)
    state = evaluate_compliance(11, PAID, started, NOW)
    assert state.state is Compliance.GRACE
    assert state.grace_started_at == started
    assert state.grace_ends == started + GRACE_PERIOD


def test_grace_resets_when_back_within() -> None:
    state = evaluate_compliance(10, PAID, NOW - timedelta(days=20), NOW)
    assert state.state is Compliance.OK
    assert state.grace_started_at is None
    # Over again later: a fresh 30 days, not the rest of the old period.
    later = NOW + timedelta(days=1)
    again = evaluate_compliance(11, PAID, state.grace_started_at, later)
    assert again.grace_ends == later + GRACE_PERIOD


@pytest.mark.parametrize("elapsed", [timedelta(days=30), timedelta(days=30, seconds=1)])
def test_grace_expiry_locks_the_account(elapsed: timedelta) -> None:
    started = NOW - elapsed
    state = evaluate_compliance(11, PAID, started, NOW)
    assert state.state is Compliance.LOCKED
    assert state.grace_started_at == started  # the clock is kept while locked


def test_locked_account_unlocks_when_back_within() -> None:
    state = evaluate_compliance(10, PAID, NOW - timedelta(days=90), NOW)
    assert state.state is Compliance.OK


def test_free_plan_has_three_licenses_whatever_was_purchased() -> None:
    assert FREE.limit == FREE_PLAN_LICENSES == 3
    assert PAID.limit == 10
    assert evaluate_compliance(3, FREE, None, NOW).state is Compliance.OK


def test_free_plan_locks_at_once_above_three() -> None:
    state = evaluate_compliance(4, FREE, None, NOW)
    assert state.state is Compliance.LOCKED
    assert state.grace_started_at is None
    assert state.grace_ends is None


def test_zero_purchased_paid_plan_goes_into_grace_with_the_first_license() -> None:
    terms = AccountTerms(0, "paid", False, False)
    assert evaluate_compliance(0, terms, None, NOW).state is Compliance.OK
    assert evaluate_compliance(1, terms, None, NOW).state is Compliance.GRACE


def test_route_new_user_without_pending_mode_is_always_active() -> None:
    assert route_new_user(10, PAID) == "active"
    assert route_new_user(1000, PAID) == "active"


def test_route_new_user_pending_mode_only_over_the_limit() -> None:
    terms = AccountTerms(10, "paid", pending_mode=True, manual_review=False)
    assert route_new_user(8, terms) == "active"
    assert route_new_user(9, terms) == "active"  # takes the tenth license
    assert route_new_user(10, terms) == "pending"  # would be the eleventh


def test_route_new_user_free_plan_uses_three() -> None:
    terms = AccountTerms(50, "free", pending_mode=True, manual_review=False)
    assert route_new_user(2, terms) == "active"
    assert route_new_user(3, terms) == "pending"


def test_manual_review_holds_every_new_user() -> None:
    terms = AccountTerms(10, "paid", pending_mode=True, manual_review=True)
    assert route_new_user(0, terms) == "pending"
