"""`audit list` read by a person: who each record is about, columns kept whole on an
80-column terminal, and `--user` finding a person under any identifier they ever had."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from entrasync.domain.audit import AuditEvent
from entrasync.store.db import Store
from entrasync.store.schema import IdentifierRow, RetiredIdentifierRow, UserRow

DAY = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONG_REASON = (
    "member of Delete group 'Leavers' (73f6e53d-1c2b-4a8e-9d7f-0b1c2d3e4f50) since "
    "2026-05-31 12:00 UTC (purge delay 24h passed); every agent and its history removed"
)
JANE = [1, 2, 5, 6]  # Jane's own records, those of the two merged into hers, her preregistration


def _users(store: Store) -> None:
    """Jane (1) has a retired UPN; 2 was merged into her and 4 into 2; Bob (3) is apart."""
    with store.unit_of_work(DAY) as uow:
        s = uow.session
        s.add(UserRow(id=1, created_at=DAY, entra_object_id="o-jane", display_name="Jane Doe"))
        s.add(UserRow(id=3, created_at=DAY, display_name="Bob"))
        s.flush()
        s.add(UserRow(id=2, created_at=DAY, merged_into_id=1))
        s.flush()
        s.add(UserRow(id=4, created_at=DAY, merged_into_id=2))
        s.flush()
        s.add_all(
            [
                IdentifierRow(user_id=1, kind="upn", value="jane@x.test"),
                IdentifierRow(user_id=2, kind="email", value="jd@x.test"),
                IdentifierRow(user_id=2, kind="employee_id", value="1234"),
                IdentifierRow(user_id=4, kind="logon", value="contoso\\jd"),
                IdentifierRow(user_id=3, kind="upn", value="bob@x.test"),
                RetiredIdentifierRow(
                    user_id=1,
                    kind="upn",
                    value="jane.old@x.test",
                    retired_at=DAY,
                    reason="renamed",
                ),
            ]
        )


@pytest.fixture
def log(store: Store) -> Store:
    _users(store)
    upn = [{"kind": "upn", "value": "jane.old@x.test"}]
    events = [
        (1, AuditEvent("user.untracked", LONG_REASON, user_id=1, identifiers=upn)),
        (
            2,
            AuditEvent(
                "user.merged",
                "same person",
                2,
                identifiers=[{"kind": "email", "value": "jd@x.test"}],
            ),
        ),
        (
            3,
            AuditEvent(
                "pending.queued",
                "over the license count",
                3,
                identifiers=[{"kind": "upn", "value": "bob@x.test"}],
            ),
        ),
        (4, AuditEvent("account.settings_changed", "the [account] section changed")),
        (
            5,
            AuditEvent(
                "user.purged",
                "history removed",
                4,
                identifiers=[{"kind": "logon", "value": "contoso\\jd"}],
            ),
        ),
        (6, AuditEvent("user.tracked", "preregistered", entra_object_id="o-jane")),
    ]
    for hours, event in events:
        with store.unit_of_work(DAY + timedelta(hours=hours), actor="admin:alice") as uow:
            uow.audit(event)
    return store


def seqs(result: Any) -> list[int]:
    assert result.code == 0, result.err
    return [r["seq"] for r in result.json()]


@pytest.mark.usefixtures("log")
@pytest.mark.parametrize(
    "ident",
    [
        "jane@x.test",
        "JANE@X.test",  # identifiers are matched case-insensitively
        "jane.old@x.test",  # retired
        "jd@x.test",  # of a record merged into hers
        "1234",  # an employee id of a merged record
        "CONTOSO\\JD",  # a logon, two merges away
        "o-jane",
        "entra:o-jane",
        "id:1",
        "1",
        "upn:jane.old@x.test",
    ],
)
def test_user_finds_a_person_under_any_identifier(es: Any, ident: str) -> None:
    assert seqs(es("audit", "list", "--user", ident, "--json")) == JANE


@pytest.mark.usefixtures("log")
def test_user_keeps_people_apart(es: Any) -> None:
    assert seqs(es("audit", "list", "--user", "bob@x.test", "--json")) == [3]
    assert seqs(es("audit", "list", "--user", "3", "--json")) == [3]
    assert seqs(es("audit", "list", "--user", "nobody@x.test", "--json")) == []
    assert seqs(es("audit", "list", "--user", "email:jane@x.test", "--json")) == []
    assert seqs(es("audit", "list", "--user", "id:jane", "--json")) == []
    combined = es("audit", "list", "--user", "jd@x.test", "--action", "user.*", "--json")
    assert seqs(combined) == [1, 2, 5, 6]
    assert seqs(
        es("audit", "list", "--user", "jd@x.test", "--action", "user.purged", "--json")
    ) == [5]


@pytest.mark.usefixtures("log")
def test_json_names_the_person_and_keeps_its_keys(es: Any) -> None:
    records = es("audit", "list", "--json").json()
    keys = {"seq", "at", "run_id", "actor", "action", "user_id", "reason", "details"}
    assert all(set(r) >= keys | {"person", "identifiers", "hash"} for r in records)
    assert [r["person"] for r in records] == [
        "jane.old@x.test",  # the UPN at the time, not today's
        "jd@x.test",
        "bob@x.test",
        "",
        "contoso\\jd",
        "o-jane",
    ]
    assert es("audit", "show", "1", "--json").json()["person"] == "jane.old@x.test"
    assert "jane.old@x.test" in es("audit", "show", "1").out


@pytest.mark.usefixtures("log")
def test_table_on_80_columns_keeps_columns_whole_and_wraps_the_reason(
    es: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = es("audit", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["seq", "time", "(UTC)", "actor", "action", "person"]
    assert all(len(line) <= 80 for line in lines)
    for whole in (
        "user.untracked",
        "account.settings_changed",
        "pending.queued",
        "jane.old@x.test",
        "contoso\\jd",
        "admin:alice",
        "2026-06-01 13:00",
    ):
        assert any(whole in line for line in lines), whole
    first = lines[1].split()
    assert first == ["1", "2026-06-01", "13:00", "admin:alice", "user.untracked", "jane.old@x.test"]
    # The reason wraps under its record on whole words, indented past the seq column.
    reason_lines = lines[2 : lines.index(next(x for x in lines[2:] if x.startswith("2 ")))]
    assert len(reason_lines) >= 2
    assert all(x.startswith("   ") for x in reason_lines)
    assert " ".join(x.strip() for x in reason_lines) == LONG_REASON
