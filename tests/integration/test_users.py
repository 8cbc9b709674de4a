"""`users show/list` shapes and the audited admin actions: untrack, track, purge, merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from testkit import report, sql, write_config

SHOW_KEYS = {"id", "tracking", "status", "entra_object_id", "identifiers", "agents", "licenses"}


@pytest.fixture
def people(ingest: Any) -> None:
    """jdoe: one agent on three domain-joined PCs; amy: two standalone laptops."""
    ingest(
        *[report("CONTOSO\\jdoe", f"PC-{i}", upn="jdoe@contoso.com", events=2) for i in range(3)],
        report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com", employee_id="E42"),
        report("LAPTOP-2\\amy", "LAPTOP-2", email="amy@contoso.com"),
    )


def _check_show_shape(view: dict[str, Any]) -> None:
    assert set(view) >= SHOW_KEYS
    assert isinstance(view["id"], int)
    assert view["tracking"] in {"tracked", "untracked"}
    assert view["status"] in {"active", "pending"}
    assert view["entra_object_id"] is None or isinstance(view["entra_object_id"], str)
    for ident in view["identifiers"]:
        assert set(ident) == {"kind", "value"}
    for agent in view["agents"]:
        assert set(agent) == {"id", "logons", "activity_rows"}
        assert isinstance(agent["id"], int)
        assert all(isinstance(logon, str) for logon in agent["logons"])
        assert isinstance(agent["activity_rows"], int)
    assert isinstance(view["licenses"], int)


@pytest.mark.usefixtures("people")
def test_users_show_json_shape(es: Any) -> None:
    view = es("users", "show", "jdoe@contoso.com", "--json").json()
    _check_show_shape(view)
    assert view["tracking"] == "tracked"
    assert view["status"] == "active"
    assert view["entra_object_id"] is None
    assert {"kind": "upn", "value": "jdoe@contoso.com"} in view["identifiers"]
    assert [(a["logons"], a["activity_rows"]) for a in view["agents"]] == [(["contoso\\jdoe"], 6)]
    assert view["licenses"] == 1


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    "ident", ["AMY@contoso.com", "e42", "employee_id:E42", "LAPTOP-2\\Amy", "logon:laptop-1\\amy"]
)
def test_users_show_finds_any_identifier_or_logon(es: Any, ident: str) -> None:
    view = es("users", "show", ident, "--json").json()
    assert {"kind": "email", "value": "amy@contoso.com"} in view["identifiers"]
    assert view["licenses"] == 2
    by_id = es("users", "show", str(view["id"]), "--json").json()
    assert by_id == view
    assert es("users", "show", f"id:{view['id']}", "--json").json() == view


@pytest.mark.usefixtures("people")
def test_users_show_text(es: Any) -> None:
    result = es("users", "show", "amy@contoso.com")
    assert result.code == 0
    assert "licenses: 2" in result.out
    assert "laptop-1\\amy" in result.out


@pytest.mark.usefixtures("people")
def test_users_list_json_items_have_the_show_shape(es: Any) -> None:
    rows = es("users", "list", "--json").json()
    assert len(rows) == 2
    for row in rows:
        _check_show_shape(row)
        shown = es("users", "show", str(row["id"]), "--json").json()
        assert {k: v for k, v in row.items() if k != "activity_rows"} == shown
    assert [row["licenses"] for row in rows] == [1, 2]
    assert [len(row["agents"]) for row in rows] == [1, 2]


@pytest.mark.usefixtures("people")
def test_users_list_filters_and_formats(es: Any) -> None:
    assert es("users", "untrack", "amy@contoso.com").code == 0
    untracked = es("users", "list", "--tracking", "untracked", "--json").json()
    assert [
        {"kind": "email", "value": "amy@contoso.com"} in r["identifiers"] for r in untracked
    ] == [True]
    assert len(es("users", "list", "--tracking", "tracked", "--json").json()) == 1
    csv_out = es("users", "list", "--csv").out.splitlines()
    assert csv_out[0].startswith("id,tracking,status")
    assert len(csv_out) == 3
    table = es("users", "list").out
    assert "jdoe@contoso.com" in table


@pytest.mark.parametrize("ident", ["nobody@contoso.com", "999", "id:abc", "X\\nobody"])
@pytest.mark.usefixtures("people")
def test_unknown_ident_exits_1_with_a_clear_message(es: Any, ident: str) -> None:
    for args in (["users", "show", ident], ["users", "untrack", ident]):
        result = es(*args)
        assert result.code == 1
        assert f"no user matches {ident!r}" in result.err
        assert "Traceback" not in result.err


@pytest.mark.usefixtures("people")
def test_untrack_and_track_are_audited_as_the_admin(es: Any) -> None:
    result = es("users", "untrack", "jdoe@contoso.com", "--actor", "alice", "--json").json()
    assert result["applied"] is True
    assert result["details"]["after"] == {"tracking": "untracked", "untracked_by": "admin"}
    view = es("users", "show", "jdoe@contoso.com", "--json").json()
    assert view["tracking"] == "untracked"
    assert view["licenses"] == 1  # history kept, still consumes
    record = es("audit", "show", str(result["audit_seq"]), "--json").json()
    assert record["action"] == "user.untracked"
    assert record["actor"] == "admin:alice"
    assert record["user_id"] == view["id"]
    assert {"kind": "upn", "value": "jdoe@contoso.com"} in record["identifiers"]

    tracked = es("users", "track", "jdoe@contoso.com", "--actor", "bob", "--json").json()
    assert tracked["audit_seq"] == result["audit_seq"] + 1
    assert es("users", "show", "jdoe@contoso.com", "--json").json()["tracking"] == "tracked"
    assert es("audit", "show", str(tracked["audit_seq"]), "--json").json()["actor"] == "admin:bob"


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    "args",
    [
        ["users", "untrack", "jdoe@contoso.com"],
        ["users", "track", "jdoe@contoso.com"],
        ["users", "purge", "amy@contoso.com"],
        ["users", "merge", "amy@contoso.com", "jdoe@contoso.com"],
    ],
)
def test_dry_run_changes_nothing(es: Any, dump: Any, args: list[str]) -> None:
    before = dump()
    result = es(*args, "--dry-run", "--json")
    assert result.code == 0, result.err
    assert result.json()["applied"] is False
    assert result.json()["audit_seq"] is None
    assert dump() == before


@pytest.mark.usefixtures("people")
def test_dry_run_says_what_would_happen(es: Any) -> None:
    purge = es("users", "purge", "amy@contoso.com", "--dry-run", "--json").json()["details"]
    assert purge["rows_purged"] == 2
    assert purge["agents_removed"] == 2
    assert purge["licenses_freed"] == 2
    merge = es(
        "users", "merge", "amy@contoso.com", "jdoe@contoso.com", "--dry-run", "--json"
    ).json()["details"]
    assert merge["licenses_before"] == 3
    assert merge["licenses_after"] == 1
    assert merge["licenses_freed"] == 2
    text = es("users", "purge", "amy@contoso.com", "--dry-run").out
    assert text.startswith("would apply user.purged")


@pytest.mark.usefixtures("people")
def test_purge_keeps_identifiers_and_a_later_report_is_dropped(es: Any, ingest: Any) -> None:
    before = es("users", "show", "amy@contoso.com", "--json").json()
    result = es("users", "purge", "amy@contoso.com", "--yes", "--json").json()
    assert result["details"]["licenses_freed"] == 2
    after = es("users", "show", "amy@contoso.com", "--json").json()
    assert after["id"] == before["id"]
    assert after["tracking"] == "untracked"
    assert after["untracked_by"] == "admin"
    assert after["agents"] == []
    assert after["licenses"] == 0
    assert after["identifiers"] == before["identifiers"]  # logons kept too
    assert es("status", "--json").json()["licenses"]["used"] == 1
    # The same logon reports again (no upn/email in the report): recognised, dropped.
    again = ingest(report("LAPTOP-1\\AMY", "LAPTOP-1", events=3)).json()
    assert again["reports_dropped"] == 1
    assert again["users_created"] == 0
    assert es("users", "show", "amy@contoso.com", "--json").json()["agents"] == []
    assert es("status", "--json").json()["licenses"]["used"] == 1
    record = es("audit", "list", "--action", "user.purged", "--json").json()
    assert [r["details"]["rows_purged"] for r in record] == [2]


@pytest.mark.usefixtures("people")
def test_a_second_purge_of_a_person_without_agents_is_an_empty_one(es: Any) -> None:
    """Purging again (nothing left: no agents) is audited with nothing removed, not a
    failure. PostgreSQL aggregates no agents to NULL, SQLite to []: both read as none."""
    assert es("users", "purge", "amy@contoso.com", "--yes").code == 0
    again = es("users", "purge", "amy@contoso.com", "--yes", "--json")
    assert again.code == 0, again.err
    details = again.json()["details"]
    assert (details["rows_purged"], details["agents_removed"], details["licenses_freed"]) == (
        0,
        0,
        0,
    )
    assert details["before"]["tracking"] == "untracked"
    records = es("audit", "list", "--action", "user.purged", "--json").json()
    assert [r["details"]["rows_purged"] for r in records] == [2, 0]
    assert es("status", "--json").json()["licenses"]["used"] == 1
    assert es("audit", "verify").code == 0


def test_purge_without_yes_and_without_a_terminal_exits_2(es: Any, dump: Any) -> None:
    before = dump()
    result = es("users", "purge", "anyone@contoso.com")
    assert result.code == 2
    assert "--yes" in result.err
    merge = es("users", "merge", "a@contoso.com", "b@contoso.com")
    assert merge.code == 2
    assert "--yes" in merge.err
    assert dump() == before


@pytest.mark.usefixtures("people")
def test_merge_all_moves_identifiers_and_agents_into_one_license(es: Any, ingest: Any) -> None:
    amy = es("users", "show", "amy@contoso.com", "--json").json()
    jdoe = es("users", "show", "jdoe@contoso.com", "--json").json()
    result = es("users", "merge", "amy@contoso.com", "jdoe@contoso.com", "--yes", "--json").json()
    assert result["user_id"] == amy["id"]
    assert result["details"]["licenses_freed"] == 2
    survivor = es("users", "show", "amy@contoso.com", "--json").json()
    assert survivor["id"] == jdoe["id"]
    assert es("users", "show", str(amy["id"]), "--json").json()["id"] == jdoe["id"]
    assert {(i["kind"], i["value"]) for i in survivor["identifiers"]} == {
        (i["kind"], i["value"]) for i in amy["identifiers"] + jdoe["identifiers"]
    }
    assert len(survivor["agents"]) == 1
    assert sorted(survivor["agents"][0]["logons"]) == [
        "contoso\\jdoe",
        "laptop-1\\amy",
        "laptop-2\\amy",
    ]
    assert survivor["agents"][0]["activity_rows"] == 8
    assert survivor["licenses"] == 1
    assert [u["id"] for u in es("users", "list", "--json").json()] == [jdoe["id"]]
    assert es("status", "--json").json()["licenses"]["used"] == 1
    # Future reports under an old identifier land on the survivor.
    ingest(report("LAPTOP-3\\amy", "LAPTOP-3", email="amy@contoso.com"))
    assert len(es("users", "show", "jdoe@contoso.com", "--json").json()["agents"]) == 2
    record = es("audit", "list", "--action", "user.merged", "--json").json()
    assert len(record) == 1
    assert record[0]["details"]["target_user_id"] == jdoe["id"]


def test_merge_none_keeps_agents_apart(
    cli: Any, tmp_path: Path, store_url: str, ingest: Any
) -> None:
    ingest(
        report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com"),
        report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com"),
    )
    config = write_config(
        tmp_path / "none.toml",
        store_url,
        '[account]\npurchased_licenses = 10\n[merge]\nagent_merge = "none"\n',
    )
    result = cli(
        "--config", str(config), "users", "merge", "amy@contoso.com", "jdoe@contoso.com", "--yes"
    )
    assert result.code == 0, result.err
    view = cli("--config", str(config), "users", "show", "amy@contoso.com", "--json").json()
    assert len(view["agents"]) == 2
    assert view["licenses"] == 2


def test_merge_of_records_linked_to_different_entra_objects_is_refused(
    es: Any, ingest: Any, store_url: str, dump: Any
) -> None:
    ingest(
        report("CONTOSO\\jdoe", "PC-1", upn="jdoe@contoso.com"),
        report("CONTOSO\\jdoe2", "PC-2", upn="jdoe2@contoso.com"),
    )
    a = es("users", "show", "jdoe@contoso.com", "--json").json()["id"]
    b = es("users", "show", "jdoe2@contoso.com", "--json").json()["id"]
    sql(store_url, "UPDATE users SET entra_object_id = 'aaaa' WHERE id = :id", id=a)
    sql(store_url, "UPDATE users SET entra_object_id = 'bbbb' WHERE id = :id", id=b)
    before = dump()
    result = es("users", "merge", str(a), str(b), "--yes")
    assert result.code == 1
    assert "different Entra objects" in result.err
    assert dump() == before
    assert es("users", "merge", str(a), "entra:AAAA", "--yes").code == 1  # into itself


def test_merge_moves_the_entra_link_to_the_survivor(es: Any, ingest: Any, store_url: str) -> None:
    ingest(
        report("OLDCO\\jdoe", "PC-1", upn="jdoe@oldco.com"),
        report("NEWCO\\jdoe", "PC-2", upn="jdoe@newco.com"),
    )
    old = es("users", "show", "jdoe@oldco.com", "--json").json()["id"]
    sql(store_url, "UPDATE users SET entra_object_id = 'obj-1' WHERE id = :id", id=old)
    assert es("users", "merge", "jdoe@oldco.com", "jdoe@newco.com", "--yes").code == 0
    view = es("users", "show", "entra:obj-1", "--json").json()
    assert view["entra_object_id"] == "obj-1"
    assert view["id"] != old
    assert view["licenses"] == 1
