"""`entrasync plan` / `sync` / `approve` as an admin runs them."""

from __future__ import annotations

from typing import Any

import pytest
from syncworld import SECRET, World, report


@pytest.fixture
def run(cli: Any, world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", SECRET)
    return lambda *args: cli("--config", str(world.config_path), *args)


def _migrate(world: World, people: int) -> None:
    t = world.tenant
    ids = [t.add_user(f"p{i}@oldco.com") for i in range(people)]
    world.ingest(*(report(f"OLDCO\\p{i}", "PC", upn=f"p{i}@oldco.com") for i in range(people)))
    world.sync()
    for i, person in enumerate(ids):
        t.rename_upn(person, f"p{i}@newco.com")
    world.ingest(*(report(f"NEWCO\\p{i}", "PC", upn=f"p{i}@newco.com") for i in range(people)))


def test_plan_after_a_domain_migration_says_what_it_frees_and_why(world: World, run: Any) -> None:
    _migrate(world, 4)
    before = run("status", "--json").json()
    shown = run("plan")
    assert shown.code == 0, shown.err
    assert "4 licenses freed" in shown.out
    assert "merge duplicate records (UPN change)" in shown.out
    assert len(shown.out.splitlines()) < 25  # one screen
    planned = run("plan", "--json").json()
    assert planned["actions"]["merge"]["count"] == 4
    assert planned["actions"]["merge"]["licenses_freed"] == 4
    assert (
        "the same Entra object had this UPN" in planned["actions"]["merge"]["actions"][0]["reason"]
    )
    assert run("status", "--json").json() == before  # plan changed nothing

    done = run("sync", "--json")
    assert done.code == 0 and done.json()["applied"]["merge"] == 4
    after = run("status", "--json").json()
    assert after["licenses"]["used"] == before["licenses"]["used"] - 4
    assert after["last_run"]["status"] == "ok" and after["last_run"]["counts"]["merge"] == 4


def test_held_sync_exits_3_and_approve_by_admin_is_audited(world: World, run: Any) -> None:
    text = world.config_path.read_text().replace("max_merges = 50", "max_merges = 1")
    world.config_path.write_text(text)
    _migrate(world, 3)
    held = run("sync")
    assert held.code == 3, held.out + held.err
    assert "HELD" in held.out and "entrasync approve" in held.out
    run_id = run("status", "--json").json()["last_run"]["id"]
    approved = run("approve", run_id, "--actor", "jane")
    assert approved.code == 0, approved.err
    records = run("audit", "list", "--action", "action.released", "--json").json()
    assert [r["actor"] for r in records] == ["admin:jane"]
    merged = run("audit", "list", "--action", "user.merged", "--json").json()
    assert len(merged) == 3 and {r["actor"] for r in merged} == {"admin:jane"}
    assert run("audit", "verify").code == 0
    again = run("approve", run_id)
    assert again.code == 1 and "no held actions" in again.err


def test_wrong_secret_exits_77_without_printing_it(
    world: World, cli: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ENTRASYNC_CLIENT_SECRET", "wrong-" + SECRET)
    result = cli("--config", str(world.config_path), "sync")
    assert result.code == 77
    assert SECRET not in result.out + result.err
