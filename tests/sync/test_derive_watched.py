"""The watched rows of a group, derived in SQL (`store/groups.py` `derive_watched`), equal
the pure transitive membership (`domain/entra.py` `effective_members`) on both stores:
users of the group and of every group nested in it (cycles included), nothing else (devices,
the nested groups themselves), each once; continuing members keep `first_seen_at`."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, text

from entrasync.domain.entra import MembershipEdge, effective_members, reachable_groups
from entrasync.store import groups as group_rows
from entrasync.store import mirror as mirror_rows
from entrasync.store.db import Store
from entrasync.store.schema import EntraMemberRow, WatchedMemberRow

T0 = datetime(2026, 6, 1, tzinfo=UTC)
GROUPS = ["g0", "g1", "g2", "g3"]
USERS = [f"u{i}" for i in range(8)]
ROOT = "g0"


def _write_edges(store: Store, edges: set[tuple[str, str, str]], now: datetime) -> None:
    with store.unit_of_work(now) as uow:
        uow.session.execute(delete(EntraMemberRow))
        for group, member, kind in sorted(edges):
            uow.session.add(
                EntraMemberRow(
                    group_id=group, member_id=member, member_type=kind, first_seen_at=now
                )
            )


def _derive(store: Store, now: datetime) -> tuple[int, int]:
    with store.unit_of_work(now) as uow:
        nesting = mirror_rows.mirror_edges(uow.session, member_type="group")
        inside = sorted(reachable_groups(nesting, [ROOT]))
        return group_rows.derive_watched(uow.session, "delete", ROOT, inside, now)


def _rows(store: Store) -> dict[str, datetime]:
    with store.reading() as session:
        rows = session.execute(
            select(WatchedMemberRow.object_id, WatchedMemberRow.first_seen_at).where(
                WatchedMemberRow.via_group == ROOT
            )
        )
        return {o: t for o, t in rows}  # noqa: C416 (rows are Row objects, not pairs for dict())


def test_nested_users_once_devices_and_groups_never_and_first_seen_kept(store: Store) -> None:
    edges = {
        ("g0", "u0", "user"),
        ("g0", "u1", "user"),
        ("g0", "d0", "device"),
        ("g0", "g1", "group"),
        ("g1", "u1", "user"),  # also a direct member: one row
        ("g1", "u2", "user"),
        ("g1", "g0", "group"),  # a cycle ends
        ("g2", "u3", "user"),  # not nested in g0
    }
    _write_edges(store, edges, T0)
    assert _derive(store, T0) == (3, 0)
    assert _rows(store) == {"u0": T0, "u1": T0, "u2": T0}

    later = T0 + timedelta(hours=1)
    _write_edges(store, (edges - {("g1", "u2", "user")}) | {("g1", "u4", "user")}, later)
    assert _derive(store, later) == (1, 1)
    assert _rows(store) == {"u0": T0, "u1": T0, "u4": later}


edge_sets = st.sets(
    st.one_of(
        st.tuples(st.sampled_from(GROUPS), st.sampled_from(USERS), st.just("user")),
        st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS[1:]), st.just("group")),
        st.tuples(st.sampled_from(GROUPS), st.just("d0"), st.just("device")),
    ),
    max_size=24,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=edge_sets, then=edge_sets)
def test_derived_rows_equal_the_pure_transitive_membership(
    store: Store, first: set[tuple[str, str, str]], then: set[tuple[str, str, str]]
) -> None:
    with store.unit_of_work(T0) as uow:
        uow.session.execute(delete(WatchedMemberRow))
    for step, edges in enumerate((first, then)):
        now = T0 + timedelta(hours=step)
        before = set(_rows(store))
        _write_edges(store, edges, now)
        added, removed = _derive(store, now)
        pure = effective_members([MembershipEdge(g, m, k) for g, m, k in edges], [ROOT])[ROOT]  # type: ignore[arg-type]
        assert set(_rows(store)) == pure
        assert (added, removed) == (len(pure - before), len(before - pure))


def _plan(store: Store, statement: Any, *, hashed: bool) -> str:
    with store.unit_of_work(T0) as uow:
        session = uow.session
        sql = statement.compile(
            dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        guard = group_rows.hashed_anti_join(session) if hashed else contextlib.nullcontext()
        with guard:
            lines = session.scalars(text(f"EXPLAIN {sql}")).all()
        uow.discard()
    return "\n".join(lines)


@pytest.mark.postgres
def test_postgresql_removes_stale_rows_with_a_hash_anti_join_on_stale_statistics(
    make_store_url: Any,
) -> None:
    """A group that grew since the last ANALYZE (here: tables never analyzed) looks like one
    row to PostgreSQL's planner, which then loops over it once per member (members squared:
    480 s for 100,000). Under `hashed_anti_join` the DELETE hashes; without it, this very
    statement is planned as a nested loop, so the test would see the guard go."""
    url = make_store_url("postgresql")
    Store(url, check_schema=False).upgrade()
    store = Store(url)
    members = [f"u{i:05}" for i in range(3_000)]
    with store.unit_of_work(T0) as uow:
        for table in ("entra_members", "watched_members"):  # statistics stay as stale as they are
            uow.session.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        uow.session.execute(
            insert(EntraMemberRow),
            [
                {"group_id": ROOT, "member_id": m, "member_type": "user", "first_seen_at": T0}
                for m in members
            ],
        )
        uow.session.execute(
            insert(WatchedMemberRow),
            [
                {"via_group": ROOT, "object_id": m, "kind": "delete", "first_seen_at": T0}
                for m in members
            ],
        )
    statement = group_rows.stale_watched(ROOT, [ROOT])
    guarded = _plan(store, statement, hashed=True)
    assert "Nested Loop" not in guarded and "Hash" in guarded and "Anti Join" in guarded, guarded
    assert "Nested Loop" in _plan(store, statement, hashed=False)
    store.engine.dispose()
