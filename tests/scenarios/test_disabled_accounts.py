"""`sync.on_user_disabled`: the offboarding stories an admin lives through (DESIGN.md).

An account is disabled ("block sign-in") days before it is deleted; with `untrack`, entrasync
stops tracking the person at once, keeps their history, and tracks them again when the account
is enabled, unless someone else (an admin, a watched group) decided otherwise. CLI against the
emulator, on both stores."""

from __future__ import annotations

from typing import Any

from syncworld import World
from test_safety_stories import actions, configure, ingest, rows, user, verified
from testkit import report

from entrasync.errors import ExitCode


def _untrack_disabled(world: World) -> None:
    configure(world, "# extra\n", '# extra\n[sync]\non_user_disabled = "untrack"\n')


def _two_people(world: World, es: Any) -> tuple[str, str]:
    t = world.tenant
    ann = t.add_user("ann@contoso.com")
    bob = t.add_user("bob@contoso.com")
    ingest(
        es,
        world,
        report("CONTOSO\\ann", "PC", upn="ann@contoso.com", events=3),
        report("CONTOSO\\bob", "PC", upn="bob@contoso.com", events=2),
    )
    assert es("sync").code == 0
    return ann, bob


def test_disable_untracks_and_enable_tracks_again(world: World, es: Any) -> None:
    _untrack_disabled(world)
    ann, _ = _two_people(world, es)
    world.tenant.set_account_enabled(ann, False)
    disabled = es("sync")
    assert disabled.code == 0, disabled.out
    (untracked,) = actions(es, "user.untracked")
    assert "disabled" in untracked["reason"] and ann in untracked["reason"]
    assert untracked["details"]["after"]["untracked_by"] == "entra-disabled"
    view = user(es, "ann@contoso.com")
    assert view["tracking"] == "untracked" and view["untracked_by"] == "entra-disabled"
    assert rows(view) == 3  # history kept: a disabled account is reversible
    assert user(es, "bob@contoso.com")["tracking"] == "tracked"

    assert es("sync").code == 0  # steady: nothing more
    assert len(actions(es, "user.untracked")) == 1

    world.tenant.set_account_enabled(ann, True)
    enabled = es("sync")
    assert enabled.code == 0, enabled.out
    (tracked,) = actions(es, "user.tracked")
    assert "enabled again" in tracked["reason"]
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    verified(es)


def test_ignore_is_the_default(world: World, es: Any) -> None:
    ann, _ = _two_people(world, es)
    world.tenant.set_account_enabled(ann, False)
    assert es("sync").code == 0
    assert actions(es, "user.untracked") == []
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"


def test_an_admins_untracking_survives_the_enable(world: World, es: Any) -> None:
    """The admin untracked the person by hand while the account was disabled: enabling the
    account does not undo the admin's decision."""
    _untrack_disabled(world)
    ann, _ = _two_people(world, es)
    assert es("users", "untrack", "ann@contoso.com").code == 0
    world.tenant.set_account_enabled(ann, False)
    assert es("sync").code == 0
    world.tenant.set_account_enabled(ann, True)
    assert es("sync").code == 0
    view = user(es, "ann@contoso.com")
    assert view["tracking"] == "untracked" and view["untracked_by"] == "admin"
    assert actions(es, "user.tracked") == []
    (record,) = actions(es, "user.untracked")  # the admin's; the disabled account added none
    assert record["actor"].startswith("admin:")


def test_a_disabled_dnt_member_leaving_the_group_stays_untracked(world: World, es: Any) -> None:
    """Membership wins while it lasts; when the person leaves the DNT group while their
    account is still disabled, they stay untracked, and are tracked again once enabled."""
    _untrack_disabled(world)
    ann, _ = _two_people(world, es)
    world.tenant.add_member(world.dnt, ann)
    world.tenant.set_account_enabled(ann, False)
    assert es("sync").code == 0
    (untracked,) = actions(es, "user.untracked")
    assert "Do Not Track" in untracked["reason"] or world.dnt in untracked["reason"]
    world.tenant.remove_member(world.dnt, ann)
    assert es("sync").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "untracked"
    assert actions(es, "user.tracked") == []
    world.tenant.set_account_enabled(ann, True)
    assert es("sync").code == 0
    assert user(es, "ann@contoso.com")["tracking"] == "tracked"
    assert len(actions(es, "user.tracked")) == 1


def test_disabling_a_department_is_held_by_max_untracks(world: World, es: Any) -> None:
    """Disabling many accounts at once (a script gone wrong, a department sold) is a mass
    change: held by `safety.max_untracks`, released with `approve`."""
    _untrack_disabled(world)
    configure(world, "max_untracks = 50", "max_untracks = 2")
    t = world.tenant
    ids = [t.add_user(f"p{i}@contoso.com") for i in range(4)]
    ingest(es, world, *(report(f"CONTOSO\\p{i}", "PC", upn=f"p{i}@contoso.com") for i in range(4)))
    assert es("sync").code == 0
    for object_id in ids:
        t.set_account_enabled(object_id, False)
    held = es("sync")
    assert held.code == ExitCode.HELD, held.out
    assert actions(es, "user.untracked") == []
    (record,) = actions(es, "action.held")
    run_id = record["run_id"]
    assert {user(es, f"p{i}@contoso.com")["tracking"] for i in range(4)} == {"tracked"}
    released = es("approve", run_id)
    assert released.code == 0, released.out + released.err
    assert len(actions(es, "user.untracked")) == 4
    verified(es)
