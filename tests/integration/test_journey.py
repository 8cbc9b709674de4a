"""Issue 2 "tried as a new user would", end to end through the CLI: ingest, merge, purge, and
`status`, `users show` and `audit list` telling the truth at every step; then tampering."""

from __future__ import annotations

from typing import Any

from testkit import report, sql


def test_new_user_journey(es: Any, ingest: Any, store_url: str) -> None:
    def used() -> str:
        status = es("status", "--json").json()
        assert status["compliance"] == "ok"
        return f"{status['licenses']['used']}/{status['licenses']['purchased']}"

    def show(ident: str) -> dict[str, Any]:
        result = es("users", "show", ident, "--json")
        assert result.code == 0, result.err
        view: dict[str, Any] = result.json()
        return view

    def actions() -> list[str]:
        return [r["action"] for r in es("audit", "list", "--json").json()]

    assert es("db", "upgrade").code == 0  # as installed: applies [account] too
    assert used() == "0/10"
    assert es("users", "list", "--json").json() == []

    # 1. A person on three domain-joined computers: one agent, one license.
    ingest(*[report("CONTOSO\\jdoe", f"PC-{i}", upn="jdoe@contoso.com") for i in (1, 2, 3)])
    assert used() == "1/10"
    jdoe = show("jdoe@contoso.com")
    assert (len(jdoe["agents"]), jdoe["licenses"]) == (1, 1)
    assert jdoe["agents"][0]["activity_rows"] == 3
    assert actions()[-1] == "ingest.completed"
    assert "1/10 used" in es("status").out

    # 2. A person on two standalone computers (each its own domain): two licenses.
    ingest(
        report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com"),
        report("LAPTOP-2\\amy", "LAPTOP-2", email="amy@contoso.com"),
    )
    assert used() == "3/10"
    assert show("amy@contoso.com")["licenses"] == 2
    assert actions().count("ingest.completed") == 2

    # 3. jdoe's UPN changes: the agent reports a new logon and UPN, a second record appears.
    ingest(report("NEWCO\\jdoe", "PC-1", upn="jdoe@newco.com"))
    assert used() == "4/10"
    assert show("jdoe@newco.com")["id"] != jdoe["id"]
    assert len(es("users", "list", "--json").json()) == 3

    # 4. Merge the old record into the new one: one person, one license again.
    preview = es("users", "merge", "jdoe@contoso.com", "jdoe@newco.com", "--dry-run", "--json")
    assert preview.json()["details"]["licenses_freed"] == 1
    assert used() == "4/10"  # a dry run changed nothing
    merged = es("users", "merge", "jdoe@contoso.com", "jdoe@newco.com", "--yes", "--actor", "ann")
    assert merged.code == 0, merged.err
    assert used() == "3/10"
    survivor = show("jdoe@contoso.com")
    assert survivor == show("jdoe@newco.com")
    assert survivor["licenses"] == 1
    assert {"jdoe@contoso.com", "jdoe@newco.com"} <= {i["value"] for i in survivor["identifiers"]}
    assert sorted(survivor["agents"][0]["logons"]) == ["contoso\\jdoe", "newco\\jdoe"]
    record = es("audit", "list", "--action", "user.merged", "--json").json()
    assert [(r["actor"], r["details"]["licenses_freed"]) for r in record] == [("admin:ann", 1)]

    # 5. Purge amy: both licenses freed; she stays known, untracked, and is not tracked again.
    purged = es("users", "purge", "amy@contoso.com", "--yes", "--actor", "ann", "--json")
    assert purged.json()["details"]["licenses_freed"] == 2
    assert used() == "1/10"
    amy = show("amy@contoso.com")
    assert (amy["tracking"], amy["agents"], amy["licenses"]) == ("untracked", [], 0)
    assert actions()[-1] == "user.purged"
    again = ingest(report("LAPTOP-1\\amy", "LAPTOP-1", email="amy@contoso.com")).json()
    assert again["reports_dropped"] == 1
    assert used() == "1/10"
    assert show("amy@contoso.com")["agents"] == []

    # 6. The log is intact; editing one row by hand is detected and named.
    verified = es("audit", "verify")
    assert verified.code == 0, verified.out
    records = es("audit", "list", "--json").json()
    target = next(r for r in records if r["action"] == "user.purged")
    sql(
        store_url,
        "UPDATE audit_log SET reason = 'routine cleanup' WHERE seq = :seq",
        seq=target["seq"],
    )
    broken = es("audit", "verify")
    assert broken.code == 1
    assert f"BROKEN at record {target['seq']}" in broken.out
