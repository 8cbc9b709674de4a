"""Audit records read on their own: durations as a config writes them, groups by name and
id, the person a record is about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entrasync.domain.durations import format_duration, parse_duration
from entrasync.domain.groups import GroupKind
from entrasync.domain.planning import Facts, Policy, StoreUser, WatchedMember, plan
from entrasync.services.audit_review import person

NOW = datetime(2026, 6, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=24), "24h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=30), "30d"),
        (timedelta(hours=1), "1h"),
        (timedelta(minutes=5), "5m"),
    ],
)
def test_durations_read_as_the_config_writes_them(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def _delete_member_plan(delay: timedelta) -> list[str]:
    member = StoreUser(1, "o1", "tracked", None, "active", 1, 1, NOW)
    watched = [WatchedMember("o1", GroupKind.DELETE, "g-del", NOW - timedelta(hours=2), member)]
    policy = Policy(
        now=NOW,
        purge_delay=delay,
        retrack_on_removal=True,
        merge_enabled=True,
        agent_merge="all",
        on_user_deleted="ignore",
        group_names={"g-del": "Leavers"},
    )
    return [action.reason for action in plan(Facts(watched=watched), policy).actions]


def test_reasons_say_24h_and_name_the_group() -> None:
    reasons = _delete_member_plan(timedelta(hours=24))
    scheduled = reasons[-1]
    assert "(purge delay 24h)" in scheduled
    assert "'Leavers' (g-del)" in scheduled
    assert all("day," not in r and "0:00:00" not in r for r in reasons)
    assert "(purge delay 1h passed)" in _delete_member_plan(timedelta(hours=1))[-1]


def _record(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"user_id": 7, "entra_object_id": None, "identifiers": []}
    return {**base, **kw}


def test_person_prefers_the_upn_then_a_display_name_then_any_identifier() -> None:
    ids = [{"kind": "email", "value": "j@x.test"}, {"kind": "upn", "value": "jdoe@x.test"}]
    assert person(_record(identifiers=ids)) == "jdoe@x.test"
    named = _record(identifiers=ids[:1], details={"display_name": "Jane Doe"})
    assert person(named) == "Jane Doe"
    assert person(_record(identifiers=ids[:1])) == "j@x.test"
    assert person(_record(identifiers=[{"kind": "logon", "value": "x\\jd"}])) == "x\\jd"
    assert person(_record()) == "#7"
    assert person(_record(user_id=None, entra_object_id="o-1")) == "o-1"
    assert person(_record(user_id=None)) == ""
