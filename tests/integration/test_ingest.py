"""`entrasync ingest`: agents, licenses, all-or-nothing files, untracked users dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testkit import report


def test_three_domain_joined_computers_are_one_agent_one_license(ingest: Any, es: Any) -> None:
    result = ingest(
        *[report("CONTOSO\\jdoe", f"PC-{i}", upn="jdoe@contoso.com", events=2) for i in range(3)]
    )
    assert result.json() == {
        "reports": 3,
        "rows_stored": 6,
        "reports_dropped": 0,
        "users_created": 1,
        "agents_created": 1,
        "pending": 0,
        "rows_already_stored": 0,
    }
    user = es("users", "show", "jdoe@contoso.com", "--json").json()
    assert user["licenses"] == 1
    assert len(user["agents"]) == 1
    assert user["agents"][0]["logons"] == ["contoso\\jdoe"]
    assert user["agents"][0]["activity_rows"] == 6
    assert es("status", "--json").json()["licenses"]["used"] == 1


def test_two_standalone_computers_are_two_licenses(ingest: Any, es: Any) -> None:
    ingest(
        report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com"),
        report("LAPTOP-2\\amy", "LAPTOP-2", email="amy@contoso.com"),
    )
    user = es("users", "show", "amy@contoso.com", "--json").json()
    assert user["licenses"] == 2
    assert sorted(a["logons"][0] for a in user["agents"]) == ["laptop-1\\amy", "laptop-2\\amy"]
    assert es("status", "--json").json()["licenses"]["used"] == 2


def test_later_files_find_existing_agents_and_users(ingest: Any, es: Any) -> None:
    ingest(report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com"))
    second = ingest(
        report("contoso\\JDOE", "PC-2"),  # same logon, other case
        report("NEWCO\\jdoe", "PC-3", upn="JDoe@Contoso.com", employee_id="E7"),
    ).json()
    assert second["users_created"] == 0
    assert second["agents_created"] == 1
    user = es("users", "show", "E7", "--json").json()
    assert {i["value"] for i in user["identifiers"]} >= {"jdoe@contoso.com", "e7", "newco\\jdoe"}
    assert sorted(a["activity_rows"] for a in user["agents"]) == [1, 2]


def test_malformed_line_stores_nothing_and_leaves_the_audit_log_alone(
    ingest: Any, es: Any, dump: Any, tmp_path: Path
) -> None:
    ingest(report("CONTOSO\\a", "PC"))
    before = dump()
    result = ingest(
        report("CONTOSO\\b", "PC"),
        report("CONTOSO\\c", "PC"),
        '{"device": "PC", "logon": "CONTOSO\\\\d", "events": [{"start": "noon"}]}',
        report("CONTOSO\\e", "PC"),
        expect=1,
    )
    assert "line 3" in result.err
    assert "nothing from this file was stored" in result.err
    assert dump() == before
    assert json.loads(es("audit", "list", "--json").out)[-1]["action"] != "ingest.failed"


def test_missing_file_is_a_clear_failure(es: Any, tmp_path: Path) -> None:
    result = es("ingest", str(tmp_path / "nope.jsonl"))
    assert result.code == 1
    assert "nope.jsonl: no such file" in result.err


def test_untracked_users_reports_are_dropped(ingest: Any, es: Any) -> None:
    ingest(report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com"))
    assert es("users", "untrack", "jdoe@contoso.com").code == 0
    result = ingest(
        report("CONTOSO\\jdoe", "PC-1", events=5),
        report("OTHER\\jdoe", "PC-9", upn="jdoe@contoso.com", events=5),
    ).json()
    assert result["reports_dropped"] == 2
    assert result["rows_stored"] == 0
    assert result["agents_created"] == 0
    user = es("users", "show", "jdoe@contoso.com", "--json").json()
    assert user["tracking"] == "untracked"
    assert [a["activity_rows"] for a in user["agents"]] == [1]
    assert user["licenses"] == 1  # untracked with history still consumes


def test_ingest_is_audited(ingest: Any, es: Any) -> None:
    ingest(report("CONTOSO\\a", "PC"), report("CONTOSO\\b", "PC"))
    records = es("audit", "list", "--action", "ingest.completed", "--json").json()
    assert len(records) == 1
    assert records[0]["actor"] == "entrasync"
    assert records[0]["details"]["users_created"] == 2
    assert records[0]["details"]["rows_stored"] == 2


def test_pending_mode_routes_new_users_over_the_limit(
    cli: Any, tmp_path: Path, store_url: str
) -> None:
    from testkit import write_config

    config = write_config(
        tmp_path / "pending.toml",
        store_url,
        "[account]\npurchased_licenses = 1\npending_mode = true\n",
    )
    path = tmp_path / "r.jsonl"
    path.write_text(report("C\\a", "PC") + "\n" + report("C\\b", "PC") + "\n", encoding="utf-8")
    result = cli("--config", str(config), "ingest", str(path), "--json")
    assert result.code == 0, result.err
    assert result.json()["pending"] == 1
    status = cli("--config", str(config), "status", "--json").json()
    assert status["licenses"] == {"used": 1, "purchased": 1, "pending": 1}
    assert status["compliance"] == "ok"
    pending = cli("--config", str(config), "users", "list", "--status", "pending", "--json").json()
    assert len(pending) == 1
    assert pending[0]["licenses"] == 0
    queued = cli("--config", str(config), "audit", "list", "--action", "pending.queued", "--json")
    assert [r["user_id"] for r in queued.json()] == [pending[0]["id"]]


# -- hostile files and lines: exit 1 with the file or line named, nothing stored ---------------


def _event_report(**event: Any) -> str:
    body = {"start": "2026-06-01T09:00:00Z", "duration_s": 60, "app": "excel.exe", **event}
    return json.dumps({"device": "PC", "logon": "CONTOSO\\x", "events": [body]})


def test_a_directory_is_refused(es: Any, tmp_path: Path) -> None:
    result = es("ingest", str(tmp_path))
    assert result.code == 1
    assert f"{tmp_path}: is a directory, not a file of agent reports" in result.err


def test_a_path_through_a_file_is_refused(es: Any, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("", encoding="utf-8")
    result = es("ingest", str(tmp_path / "plain" / "r.jsonl"))
    assert result.code == 1
    assert "plain/r.jsonl: cannot read (Not a directory)" in result.err


def test_an_unreadable_file_is_refused(es: Any, tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        import pytest

        pytest.skip("root reads any file")
    path = tmp_path / "r.jsonl"
    path.write_text(report("C\\a", "PC") + "\n", encoding="utf-8")
    path.chmod(0)
    result = es("ingest", str(path))
    assert result.code == 1
    assert "r.jsonl: cannot read (Permission denied)" in result.err


def test_a_line_that_is_not_utf8_is_named(es: Any, dump: Any, tmp_path: Path) -> None:
    before = dump()
    path = tmp_path / "r.jsonl"
    good = report("C\\a", "PC").encode()
    path.write_bytes(good + b"\n" + good[:20] + b"\xff\xfe" + good[20:] + b"\n" + good + b"\n")
    result = es("ingest", str(path))
    assert result.code == 1
    assert "line 2: not UTF-8 text (byte 0xff at character 21)" in result.err
    assert "nothing from this file was stored" in result.err
    assert dump() == before


def test_a_byte_order_mark_is_accepted(ingest: Any, es: Any, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + report("C\\a", "PC").encode() + b"\n")
    result = es("ingest", str(path), "--json")
    assert result.code == 0, result.err
    assert result.json()["rows_stored"] == 1


HOSTILE_LINES = [
    (_event_report(duration_s=10**20), "events[0].duration_s must be at most 604800"),
    (_event_report(duration_s=2**31), "events[0].duration_s must be at most 604800"),
    (_event_report(start="0001-01-01T00:00:00+01:00"), "events[0].start '0001-01-01T00:00"),
    (
        _event_report(start="9999-12-31T23:59:59-01:00"),
        "events[0].start '9999-12-31T23:59:59-01:00' is outside 1970-01-01T00:00:00Z",
    ),
    (_event_report(title="nul \u0000 inside"), "events[0].title must not contain NUL"),
    (_event_report(app="\udcff"), "events[0].app is not valid Unicode"),
    (_event_report(app="x" * 300), "events[0].app is longer than 256 characters"),
    (
        json.dumps({"device": "D" * 300, "logon": "C\\x", "events": []}),
        "field 'device' is longer than 256",
    ),
    ("[" * 200_000, "not valid JSON (nested too deeply)"),
    ("42", "expected a JSON object"),
    ('"a string"', "expected a JSON object"),
]


def test_hostile_lines_are_refused_with_the_line_named(ingest: Any, dump: Any) -> None:
    ingest(report("CONTOSO\\a", "PC"))
    before = dump()
    for line, message in HOSTILE_LINES:
        result = ingest(report("CONTOSO\\b", "PC"), line, expect=1)
        assert f"line 2: {message}" in result.err, (line[:80], result.err)
        assert "nothing from this file was stored" in result.err
        assert "Traceback" not in result.err
    assert dump() == before
