"""`audit list/show/export/verify`, including tampering by hand with SQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit import sql

from entrasync.domain.audit import GENESIS, AuditEvent, record_hash
from entrasync.store.db import Store

DAY = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EXPORT_KEYS = {
    "seq",
    "at",
    "run_id",
    "actor",
    "action",
    "user_id",
    "reason",
    "details",
    "prev_hash",
    "hash",
}


@pytest.fixture
def log(store: Store) -> Store:
    """Six records on three days, two runs, three users, three actions."""
    plan = [
        (DAY, "run-a", "entrasync", AuditEvent("user.untracked", "dnt group", user_id=1)),
        (DAY, "run-a", "entrasync", AuditEvent("user.purged", "delete group", user_id=2)),
        (DAY + timedelta(days=1), None, "admin:alice", AuditEvent("user.tracked", "x", 1)),
        (
            DAY + timedelta(days=1, hours=1),
            "run-b",
            "entrasync",
            AuditEvent("user.merged", "rename", user_id=3, details={"n": 1, "é": ["ü"]}),
        ),
        (DAY + timedelta(days=2), "run-b", "entrasync", AuditEvent("user.purged", "y", 3)),
        (DAY + timedelta(days=2), None, "entrasync", AuditEvent("pending.queued", "z", 4)),
    ]
    for moment, run_id, actor, event in plan:
        with store.unit_of_work(moment, actor=actor, run_id=run_id) as uow:
            uow.audit(event)
    return store


def seqs(result: Any) -> list[int]:
    assert result.code == 0, result.err
    return [r["seq"] for r in result.json()]


@pytest.mark.usefixtures("log")
def test_list_filters(es: Any) -> None:
    assert seqs(es("audit", "list", "--json")) == [1, 2, 3, 4, 5, 6]
    assert seqs(es("audit", "list", "--action", "user.purged", "--json")) == [2, 5]
    assert seqs(es("audit", "list", "--action", "user.*", "--json")) == [1, 2, 3, 4, 5]
    assert seqs(es("audit", "list", "--action", "pending.*", "--json")) == [6]
    assert seqs(es("audit", "list", "--action", "user_purged", "--json")) == []  # _ is literal
    assert seqs(es("audit", "list", "--action", "user.%", "--json")) == []  # so is %
    assert seqs(es("audit", "list", "--user", "3", "--json")) == [4, 5]
    assert seqs(es("audit", "list", "--run", "run-a", "--json")) == [1, 2]
    assert seqs(es("audit", "list", "--since", "2026-06-02", "--json")) == [3, 4, 5, 6]
    assert seqs(es("audit", "list", "--until", "2026-06-02", "--json")) == [1, 2]
    assert seqs(
        es("audit", "list", "--since", "2026-06-02T12:30:00Z", "--until", "2026-06-03", "--json")
    ) == [4]
    assert seqs(es("audit", "list", "--since", "2026-06-02", "--run", "run-b", "--json")) == [4, 5]
    # Relative: everything here is months before the real clock.
    assert seqs(es("audit", "list", "--since", "24h", "--json")) == []
    assert seqs(es("audit", "list", "--since", "10000d", "--json")) == [1, 2, 3, 4, 5, 6]


@pytest.mark.usefixtures("log")
def test_list_bad_time_is_a_clear_error(es: Any) -> None:
    result = es("audit", "list", "--since", "last tuesday")
    assert result.code == 1
    assert "--since 'last tuesday'" in result.err


@pytest.mark.usefixtures("log")
def test_list_table(es: Any) -> None:
    result = es("audit", "list", "--action", "user.merged")
    assert result.code == 0
    assert "user.merged" in result.out
    assert "admin:alice" not in result.out


@pytest.mark.usefixtures("log")
def test_show(es: Any) -> None:
    record = es("audit", "show", "4", "--json").json()
    assert record["seq"] == 4
    assert record["action"] == "user.merged"
    assert record["details"] == {"n": 1, "é": ["ü"]}
    assert record["run_id"] == "run-b"
    assert record["at"] == "2026-06-02T13:00:00.000000Z"
    assert record["hash"] == record_hash(record, record["prev_hash"])
    text = es("audit", "show", "4").out
    assert "user.merged" in text and record["hash"] in text
    missing = es("audit", "show", "99")
    assert missing.code == 1
    assert "no audit record 99" in missing.err


@pytest.mark.usefixtures("log")
def test_export_jsonl(es: Any) -> None:
    result = es("audit", "export", "--format", "jsonl")
    assert result.code == 0
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records:
        assert set(record) >= EXPORT_KEYS
        assert record["hash"] == record_hash(record, record["prev_hash"])
    assert records[0]["prev_hash"] == GENESIS
    assert records[3]["details"] == {"n": 1, "é": ["ü"]}
    assert es("audit", "export").out == result.out  # jsonl is the default


@pytest.mark.usefixtures("log")
def test_export_csv(es: Any) -> None:
    result = es("audit", "export", "--format", "csv")
    assert result.code == 0
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert len(rows) == 6
    assert set(rows[0]) >= EXPORT_KEYS
    assert rows[3]["action"] == "user.merged"
    assert json.loads(rows[3]["details"]) == {"n": 1, "é": ["ü"]}
    assert rows[2]["run_id"] == ""
    assert rows[5]["prev_hash"] == rows[4]["hash"]


def test_export_bad_format_is_a_usage_error(es: Any) -> None:
    result = es("audit", "export", "--format", "xml")
    assert result.code == 2
    assert "jsonl or csv" in result.err


@pytest.mark.usefixtures("log")
def test_verify_intact(es: Any) -> None:
    result = es("audit", "verify")
    assert result.code == 0
    assert "6 records verified" in result.out
    assert es("audit", "verify", "--json").json() == {
        "records": 6,
        "ok": True,
        "first_bad_seq": None,
        "problem": None,
    }


def _broken(es: Any, seq: int) -> None:
    result = es("audit", "verify")
    assert result.code == 1
    assert f"BROKEN at record {seq}" in result.out
    as_json = es("audit", "verify", "--json")
    assert as_json.code == 1
    assert as_json.json()["ok"] is False
    assert as_json.json()["first_bad_seq"] == seq


@pytest.mark.usefixtures("log")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET reason = 'nothing happened' WHERE seq = 3",
        "UPDATE audit_log SET actor = 'entrasync' WHERE seq = 3",
        "UPDATE audit_log SET user_id = 99 WHERE seq = 3",
        "UPDATE audit_log SET at = '2026-06-02T12:00:00.000001Z' WHERE seq = 3",
        "UPDATE audit_log SET details = '{\"rows_purged\": 0}' WHERE seq = 3",
    ],
)
def test_verify_detects_an_edited_row(es: Any, store_url: str, statement: str) -> None:
    sql(store_url, statement)
    _broken(es, 3)


@pytest.mark.usefixtures("log")
def test_verify_detects_a_deleted_middle_row(es: Any, store_url: str) -> None:
    sql(store_url, "DELETE FROM audit_log WHERE seq = 3")
    _broken(es, 4)


@pytest.mark.usefixtures("log")
def test_verify_detects_swapped_rows(es: Any, store_url: str) -> None:
    # Swap the contents of records 3 and 4 (each keeps the other's seq).
    sql(store_url, "UPDATE audit_log SET seq = -3 WHERE seq = 3")
    sql(store_url, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    sql(store_url, "UPDATE audit_log SET seq = 4 WHERE seq = -3")
    assert es("audit", "show", "3", "--json").json()["action"] == "user.merged"
    _broken(es, 3)


@pytest.mark.usefixtures("log")
def test_verify_detects_a_rehashed_edit(es: Any, store_url: str, store: Store) -> None:
    record = es("audit", "show", "2", "--json").json()
    record["reason"] = "forged"
    forged = record_hash(record, record["prev_hash"])
    sql(
        store_url,
        "UPDATE audit_log SET reason = 'forged', hash = :h WHERE seq = 2",
        h=forged,
    )
    _broken(es, 3)
