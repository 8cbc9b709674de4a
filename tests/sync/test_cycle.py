"""End-to-end sync cycles against the emulator, through MSAL and the Graph SDK."""

from __future__ import annotations

from sqlalchemy import func, select
from syncworld import T0, World, later, report

from entrasync.services.audit_review import verify
from entrasync.services.users import show_user
from entrasync.store.schema import AuditRow, RunRow


def audit_count(world: World) -> int:
    with world.store.reading() as s:
        return int(s.scalar(select(func.count(AuditRow.seq))) or 0)


def actions(world: World) -> list[str]:
    with world.store.reading() as s:
        return list(s.scalars(select(AuditRow.action).order_by(AuditRow.seq)))


def test_dnt_and_delete_with_delay_then_steady_state(world: World) -> None:
    t = world.tenant
    alice = t.add_user("alice@contoso.com")
    carol = t.add_user("carol@contoso.com")
    bob = t.add_user("bob@contoso.com")
    t.add_user("dave@contoso.com")
    t.add_member(world.dnt, alice)
    t.add_members(world.delete, [carol, bob])
    world.ingest(
        report("CONTOSO\\alice", "PC-1", upn="alice@contoso.com"),
        report("CONTOSO\\carol", "PC-2", upn="carol@contoso.com", events=3),
        report("CONTOSO\\dave", "PC-3", upn="dave@contoso.com"),
    )

    first = world.sync(later(0))
    assert first.status == "ok"
    assert first.applied["untrack"] == 2  # alice (DNT), carol (Delete)
    assert first.applied["preregister"] == 1  # bob: in Delete, never seen by the store
    assert first.applied.get("purge", 0) == 0  # delay not passed
    assert [s.licenses for s in first.plan.scheduled] == [1]
    assert show_user(world.store, "alice@contoso.com")["tracking"] == "untracked"
    bob_view = show_user(world.store, "bob@contoso.com")
    assert bob_view["tracking"] == "untracked" and bob_view["entra_object_id"] == bob
    assert show_user(world.store, "dave@contoso.com")["tracking"] == "tracked"

    records = audit_count(world)
    second = world.sync(later(1))
    assert second.plan.actions == [] and sum(second.applied.values()) == 0
    assert audit_count(world) == records  # a cycle with no changes writes nothing

    third = world.sync(later(25))  # the purge delay has passed
    assert third.applied["purge"] == 1
    carol_view = show_user(world.store, "carol@contoso.com")
    assert carol_view["agents"] == [] and carol_view["licenses"] == 0
    assert {"kind": "upn", "value": "carol@contoso.com"} in carol_view["identifiers"]
    # A later report from carol is recognised and dropped.
    world.ingest(report("CONTOSO\\carol", "PC-2", upn="carol@contoso.com"), now=later(26))
    assert show_user(world.store, "carol@contoso.com")["agents"] == []
    assert verify(world.store).problem is None


def test_leaving_delete_before_delay_cancels_purge_and_retracks(world: World) -> None:
    t = world.tenant
    erin = t.add_user("erin@contoso.com")
    stays = t.add_user("stays@contoso.com")  # the group is not emptied (see failed reads)
    t.add_members(world.delete, [erin, stays])
    world.ingest(report("CONTOSO\\erin", "PC-9", upn="erin@contoso.com", events=2))
    world.sync(later(0))
    assert show_user(world.store, "erin@contoso.com")["tracking"] == "untracked"
    t.remove_member(world.delete, erin)
    result = world.sync(later(2))
    assert result.applied["retrack"] == 1
    world.sync(later(30))  # well past the delay: nothing is purged
    view = show_user(world.store, "erin@contoso.com")
    assert view["tracking"] == "tracked" and view["agents"][0]["activity_rows"] == 2


def test_admin_untracking_is_never_undone_by_a_sync(world: World) -> None:
    from entrasync.services.users import untrack

    t = world.tenant
    frank = t.add_user("frank@contoso.com")
    world.ingest(report("CONTOSO\\frank", "PC-5", upn="frank@contoso.com"))
    untrack(
        world.store,
        world.config(),
        "frank@contoso.com",
        actor="admin:it",
        now=later(0),
        dry_run=False,
    )
    t.add_member(world.dnt, frank)
    world.sync(later(1))
    t.remove_member(world.dnt, frank)
    result = world.sync(later(2))
    assert result.applied.get("retrack", 0) == 0
    assert show_user(world.store, "frank@contoso.com")["tracking"] == "untracked"


def test_domain_migration_merges_duplicates_and_frees_licenses(world: World) -> None:
    t = world.tenant
    people = [t.add_user(f"user{i}@oldco.com") for i in range(5)]
    world.ingest(
        *(report(f"OLDCO\\user{i}", f"PC-{i}", upn=f"user{i}@oldco.com") for i in range(5))
    )
    world.sync(later(0))  # links the records to their Entra users
    for i, person in enumerate(people):
        t.rename_upn(person, f"user{i}@newco.com")
    # After the migration the agents report the new UPN under a new logon: duplicates.
    world.ingest(
        *(report(f"NEWCO\\user{i}", f"PC-{i}", upn=f"user{i}@newco.com") for i in range(5)),
        now=later(1),
    )
    from entrasync.store.account import license_status

    with world.store.transaction() as s:
        assert license_status(s, later(1)).used == 10
    planned = world.sync(later(2), dry_run=True)
    merges = planned.plan.of_kind(
        __import__("entrasync.domain.actions", fromlist=["ActionKind"]).ActionKind.MERGE
    )
    assert len(merges) == 5 and sum(a.licenses_freed for a in merges) == 5
    result = world.sync(later(2))
    assert result.applied["merge"] == 5
    with world.store.transaction() as s:
        assert license_status(s, later(2)).used == 5
    view = show_user(world.store, "user3@newco.com")
    assert view["licenses"] == 1 and view["entra_object_id"] == people[3]
    assert {"kind": "upn", "value": "user3@oldco.com"} in view["identifiers"]
    assert show_user(world.store, "user3@oldco.com")["id"] == view["id"]
    assert verify(world.store).problem is None


def test_domain_map_merges_without_proxy_evidence(world: World) -> None:
    world.configure('[merge]\ndomain_map = { "oldco.com" = "newco.com" }\n')
    t = world.tenant
    # Unlinked old record and a new record; Entra only knows the new address.
    t.add_user("gina@newco.com", proxy_addresses=["SMTP:gina@newco.com"])
    world.ingest(
        report("OLDCO\\gina", "PC-1", upn="gina@oldco.com", start="2026-05-01T09:00:00Z"),
        report("NEWCO\\gina", "PC-1", upn="gina@newco.com", start="2026-05-20T09:00:00Z"),
    )
    result = world.sync(later(0))
    assert result.applied["merge"] == 1
    merged = actions(world)
    assert "user.merged" in merged
    view = show_user(world.store, "gina@oldco.com")
    assert view["licenses"] == 1 and len(view["agents"]) == 1


def test_upn_reuse_is_never_merged(world: World) -> None:
    t = world.tenant
    old = t.add_user("sam@contoso.com")
    world.ingest(report("CONTOSO\\sam", "PC-1", upn="sam@contoso.com"))
    world.sync(later(0))
    t.delete_user(old, permanent=True)
    newcomer = t.add_user("sam@contoso.com")
    world.ingest(report("CONTOSO\\sam2", "PC-7", email="samuel@contoso.com"), now=later(1))
    t.update_user(newcomer, proxy_addresses=["SMTP:sam@contoso.com", "smtp:samuel@contoso.com"])
    result = world.sync(later(2))
    assert result.applied.get("merge", 0) == 0
    assert "identifier.retired" in actions(world)
    departed = show_user(world.store, "contoso\\sam")
    assert departed["entra_object_id"] == old
    assert [i["value"] for i in departed["retired_identifiers"]] == ["sam@contoso.com"]
    assert show_user(world.store, "samuel@contoso.com")["entra_object_id"] == newcomer


def test_threshold_holds_one_kind_and_approve_releases(world: World) -> None:
    text = world.config_path.read_text().replace("max_untracks = 50", "max_untracks = 1")
    world.config_path.write_text(text)
    t = world.tenant
    ids = [t.add_user(f"h{i}@contoso.com") for i in range(3)]
    world.ingest(*(report(f"CONTOSO\\h{i}", "PC", upn=f"h{i}@contoso.com") for i in range(3)))
    newbie = t.add_user("new@contoso.com")
    t.add_members(world.dnt, [*ids, newbie])
    result = world.sync(later(0))
    assert result.status == "held" and result.held == {"untrack": 3}
    assert result.applied["preregister"] == 1  # the other kinds proceeded
    assert show_user(world.store, "h0@contoso.com")["tracking"] == "tracked"
    assert "action.held" in actions(world)
    with world.store.reading() as s:
        assert s.get(RunRow, result.run_id).status == "held"  # type: ignore[union-attr]

    t.remove_member(world.dnt, ids[2])  # no longer valid when approved
    from entrasync.graph import GraphClient, settings_from_config
    from entrasync.sync.approve import approve

    config = world.config()
    settings = settings_from_config(
        config.entra, {"ENTRASYNC_CLIENT_SECRET": "Sync~Test.Secret-Not-In-Logs_77"}
    )
    approved = approve(world.store, config, lambda: GraphClient(settings), result.run_id, later(1))
    assert approved.applied["untrack"] == 2
    assert show_user(world.store, "h0@contoso.com")["tracking"] == "untracked"
    assert show_user(world.store, "h2@contoso.com")["tracking"] == "tracked"
    assert verify(world.store).problem is None


def test_emptied_group_by_explicit_removals_is_empty_not_suspect(world: World) -> None:
    t = world.tenant
    ids = [t.add_user(f"e{i}@contoso.com") for i in range(3)]
    world.ingest(*(report(f"CONTOSO\\e{i}", "PC", upn=f"e{i}@contoso.com") for i in range(3)))
    t.add_members(world.dnt, ids)
    world.sync(later(0))
    for user in ids:
        t.remove_member(world.dnt, user)
    result = world.sync(later(1))
    assert result.applied.get("retrack", 0) == 3 and result.suspect == {}
    assert result.status == "ok"
    assert all(
        show_user(world.store, f"e{i}@contoso.com")["tracking"] == "tracked" for i in range(3)
    )


def test_export_before_purge(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip
    import json
    import stat

    export = tmp_path / "exports"
    world.config_path.write_text(
        world.config_path.read_text().replace(
            'purge_delay = "24h"', f'purge_delay = "0s"\nexport_dir = "{export}"'
        )
    )
    t = world.tenant
    ivy = t.add_user("ivy@contoso.com")
    t.add_member(world.delete, ivy)
    world.ingest(report("CONTOSO\\ivy", "PC-4", upn="ivy@contoso.com", events=4))
    result = world.sync(later(0))
    assert result.applied["purge"] == 1
    files = list(export.iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    lines = gzip.decompress(files[0].read_bytes()).decode().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["device"] == "PC-4"
    with world.store.reading() as s:
        details = s.scalar(select(AuditRow.details).where(AuditRow.action == "user.purged"))
    assert details is not None and details["exported_to"] == str(files[0])


def test_nested_groups_and_resync_without_spurious_actions(world: World) -> None:
    t = world.tenant
    child = t.add_group("DNT contractors")
    t.add_member(world.dnt, child)
    kim = t.add_user("kim@contoso.com")
    t.add_member(child, kim)
    t.add_member(child, world.dnt)  # a cycle in nesting
    world.ingest(report("CONTOSO\\kim", "PC", upn="kim@contoso.com"))
    first = world.sync(later(0))
    assert first.applied["untrack"] == 1
    records = audit_count(world)
    t.expire_delta_tokens()
    resync = world.sync(later(1))
    assert resync.resync is True
    assert resync.plan.actions == [] and audit_count(world) == records


def test_deleted_entra_user_untracked_then_purged_after_delay(world: World) -> None:
    world.configure('[sync]\non_user_deleted = "purge"\n')
    t = world.tenant
    lee = t.add_user("lee@contoso.com")
    t.add_user("keep@contoso.com")
    world.ingest(
        report("CONTOSO\\lee", "PC", upn="lee@contoso.com", events=2),
        report("CONTOSO\\keep", "PC", upn="keep@contoso.com"),
    )
    world.sync(later(0))
    t.delete_user(lee)  # soft delete: the recycle bin
    first = world.sync(later(1))
    assert first.applied["untrack"] == 1 and first.applied.get("purge", 0) == 0
    assert [s.user_id for s in first.plan.scheduled] == [
        show_user(world.store, "lee@contoso.com")["id"]
    ]
    later_run = world.sync(later(30))
    assert later_run.applied["purge"] == 1
    assert show_user(world.store, "lee@contoso.com")["agents"] == []
    assert show_user(world.store, "keep@contoso.com")["tracking"] == "tracked"


def test_pending_user_resolved_by_merge_instead_of_waiting(world: World) -> None:
    text = world.config_path.read_text().replace(
        "purchased_licenses = 100", "purchased_licenses = 1\npending_mode = true"
    )
    world.config_path.write_text(text)
    t = world.tenant
    pat = t.add_user("pat@newco.com", proxy_addresses=["SMTP:pat@newco.com", "smtp:pat@oldco.com"])
    world.ingest(report("OLDCO\\pat", "PC", upn="pat@oldco.com"))
    world.sync(later(0))
    # The renamed person reports under a new logon: a new user over the limit -> pending.
    world.ingest(report("NEWCO\\pat", "PC", upn="pat@newco.com"), now=later(1))
    assert show_user(world.store, "pat@newco.com")["status"] == "pending"
    result = world.sync(later(2))
    assert result.applied["merge"] == 1
    view = show_user(world.store, "pat@newco.com")
    assert view["status"] == "active" and view["licenses"] == 1
    assert view["entra_object_id"] == pat


def test_preregistered_user_carries_all_identifiers_and_stays_untracked(world: World) -> None:
    t = world.tenant
    quinn = t.add_user(
        "quinn@contoso.com",
        proxy_addresses=[
            "SMTP:quinn@contoso.com",
            "smtp:q.smith@contoso.com",
            "SIP:quinn@contoso.com",
        ],
        on_premises_user_principal_name="quinn@corp.contoso.com",
        on_premises_sam_account_name="qsmith",
        on_premises_domain_name="corp.contoso.com",
        employee_id="E-42",
    )
    t.add_member(world.delete, quinn)
    result = world.sync(later(0))
    assert result.applied["preregister"] == 1
    view = show_user(world.store, "quinn@contoso.com")
    values = {(i["kind"], i["value"]) for i in view["identifiers"]}
    assert {
        ("upn", "quinn@contoso.com"),
        ("email", "q.smith@contoso.com"),
        ("upn", "quinn@corp.contoso.com"),
        ("logon", "corp\\qsmith"),
        ("employee_id", "e-42"),
    } <= values
    assert not any("sip:" in v for _, v in values)
    # Their first login, under any of those identifiers, is recognised and not tracked.
    world.ingest(report("CORP\\qsmith", "LAPTOP-1"), now=later(1))
    world.ingest(report("OTHER\\q", "KIOSK", email="q.smith@contoso.com"), now=later(1))
    view = show_user(world.store, "quinn@contoso.com")
    assert view["tracking"] == "untracked" and view["agents"] == []


def test_pending_user_in_the_delete_group_is_removed_from_the_queue(world: World) -> None:
    text = world.config_path.read_text().replace(
        "purchased_licenses = 100", "purchased_licenses = 0\npending_mode = true"
    )
    world.config_path.write_text(text.replace('purge_delay = "24h"', 'purge_delay = "0s"'))
    t = world.tenant
    rae = t.add_user("rae@contoso.com")
    t.add_members(world.delete, [rae, t.add_user("other@contoso.com")])
    world.ingest(report("CONTOSO\\rae", "PC", upn="rae@contoso.com", events=2))
    assert show_user(world.store, "rae@contoso.com")["status"] == "pending"
    result = world.sync(later(0))
    assert result.applied["purge"] == 1
    view = show_user(world.store, "rae@contoso.com")
    assert (view["status"], view["tracking"], view["agents"]) == ("active", "untracked", [])
    world.ingest(report("CONTOSO\\rae", "PC", upn="rae@contoso.com"), now=later(1))
    assert show_user(world.store, "rae@contoso.com")["agents"] == []


def test_purges_run_in_batches_with_one_record_per_user(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from entrasync.services.users import untrack
    from entrasync.sync import apply

    monkeypatch.setattr(apply, "PURGE_BATCH", 2)  # three users: two transactions
    world.config_path.write_text(
        world.config_path.read_text().replace('purge_delay = "24h"', 'purge_delay = "0s"')
    )
    t = world.tenant
    names = ["pia", "quin", "rex"]
    t.add_members(world.delete, [t.add_user(f"{n}@contoso.com") for n in names])
    world.ingest(
        report("CONTOSO\\pia", "PC-1", upn="pia@contoso.com", events=2),
        report("CONTOSO\\pia2", "PC-9", upn="pia@contoso.com", events=3),  # a second agent
        report("CONTOSO\\quin", "PC-2", upn="quin@contoso.com", events=4),
        report("CONTOSO\\rex", "PC-3", upn="rex@contoso.com", events=1),
    )
    untrack(
        world.store, world.config(), "rex@contoso.com", actor="admin:ann", now=T0, dry_run=False
    )

    result = world.sync(later(0))

    assert result.applied["purge"] == 3
    with world.store.reading() as s:
        purged = {
            next(i["value"] for i in row.identifiers if i["kind"] == "upn").split("@")[
                0
            ]: row.details
            for row in s.scalars(select(AuditRow).where(AuditRow.action == "user.purged"))
        }
    assert {n: (d["agents_removed"], d["rows_purged"]) for n, d in purged.items()} == {
        "pia": (2, 5),
        "quin": (1, 4),
        "rex": (1, 1),
    }
    # Untracked users still hold their licenses until purged; an admin's untracking keeps
    # its author through the sync's purge.
    assert [purged[n]["licenses_freed"] for n in names] == [2, 1, 1]
    assert show_user(world.store, "rex@contoso.com")["untracked_by"] == "admin"
    assert all(show_user(world.store, f"{n}@contoso.com")["agents"] == [] for n in names)
    again = world.sync(later(1))
    assert again.applied.get("purge", 0) == 0  # nothing left: no second record
    assert verify(world.store).problem is None


def test_a_purge_naming_a_merged_record_purges_and_names_the_survivor(world: World) -> None:
    """A purge planned for a record that was merged away before it ran (an approve after a
    later merge, say) follows the merge: the survivor is purged, and its audit record names
    the survivor by the identifiers it has then, not the empty list of a record read
    without them."""
    import uuid

    from entrasync.domain.actions import ActionKind
    from entrasync.domain.planning import PlannedAction
    from entrasync.services.users import merge
    from entrasync.store.queries import find_user
    from entrasync.sync.apply import ActionApplier

    world.ingest(
        report("CONTOSO\\ole", "PC-1", upn="ole@contoso.com", events=2),
        report("NEWCO\\ole", "PC-2", upn="ole@newco.com", events=3),
    )
    with world.store.reading() as s:
        old = find_user(s, "ole@contoso.com").id
    config = world.config()
    merge(
        world.store,
        config,
        "ole@contoso.com",
        "ole@newco.com",
        actor="admin:ann",
        now=T0,
        dry_run=False,
    )
    applier = ActionApplier(world.store, config, str(uuid.uuid4()), later(1))

    done = applier.apply_purges([PlannedAction(ActionKind.PURGE, "member of Delete", old, None)])

    assert len(done) == 1
    with world.store.reading() as s:
        record = s.scalars(select(AuditRow).where(AuditRow.action == "user.purged")).one()
        survivor = find_user(s, "ole@newco.com").id
    assert record.user_id == survivor
    assert {"kind": "upn", "value": "ole@newco.com"} in record.identifiers
    assert {"kind": "upn", "value": "ole@contoso.com"} in record.identifiers  # moved over
    assert record.details["rows_purged"] == 5
    assert show_user(world.store, "ole@newco.com")["agents"] == []
    assert verify(world.store).problem is None
